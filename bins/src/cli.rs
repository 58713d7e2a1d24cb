//! Argument definitions: every clap structure of the binary.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
EXIT CODES:
  0  success: the backup is verified (and the deploy command, if any, succeeded)
  1  unexpected internal error
  2  usage or configuration error; also `prune --yes` refusing a mass deletion without --force
  3  refused: a backup could not be taken or stored
  4  refused: verification failed
  5  refused: a source or the store is unreachable or misconfigured (preflight)
  6  refused: the lock of this store and environment is held by another run (or was lost
     before the deploy command started); prune --yes, pin, unpin, verify: the environment's
     retention lock is held
  7  check, status: no verified backup matches (status: for at least one project/environment)
  8  restore: the restore failed; the message says whether the target is untouched or was
     swapped back (a damaged backup is 4, a refused confirmation 2, connected sessions 5)
  9  run: the deploy command succeeded, but the lock was lost while it ran (another run may
     have deployed at the same time); the deployment was not recorded
  other  with `run -- CMD`: CMD ran and this is its own exit code (also after a rollback by
         --rollback-on-failure, whether the rollback worked or not)

ENVIRONMENT:
  DATABASE_URL         a source named `db` when no source is configured
  PREDEPLOY_STORE      the store (like --store)
  PREDEPLOY_CONFIG     the config file (like --config)
  PREDEPLOY_ENV        the environment (like --env)
  PREDEPLOY_PROJECT    the project (like --project)
  PREDEPLOY_PG_BINDIR  directory holding pg_dump/pg_restore, overriding discovery
  PREDEPLOY_MYSQL_BINDIR  directory holding mariadb-dump/mysqldump, overriding PATH
  PREDEPLOY_SSH_COMMAND  the ssh of via=ssh:// sources (e.g. ssh -F FILE)
  PREDEPLOY_WAIT_LOCK  like --wait-lock
  PREDEPLOY_METRICS_FILE  like --metrics-file
  PREDEPLOY_PROGRESS_INTERVAL  how often --progress plain reports a running transfer (30s)
  NO_COLOR             no colour in log lines
  GITHUB_STEP_SUMMARY  in GitHub Actions: the job summary gets the outcome and every stage
  PREDEPLOY_LOCK_TTL   lease length of the lock (like [lock] ttl; default 60s)
  AWS_*                S3 settings and credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
                       AWS_REGION, AWS_ENDPOINT_URL, AWS_ALLOW_HTTP)
  PREDEPLOY_CONFIRM_RESTORE=yes  confirms `restore` like --yes
  PG*                  the standard libpq variables (PGPASSWORD, PGHOST, …) and ~/.pgpass";

/// No verified backup, no deploy.
#[derive(Debug, Parser)]
#[command(name = "pre-deploy", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// TOML config file (default: ./predeploy.toml when present)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where backups live: a path, file:///dir, or s3://bucket/prefix[?endpoint=URL&region=R]
    /// (default ./.pre-deploy)
    #[arg(long, global = true, value_name = "URL")]
    pub store: Option<String>,
    /// A thing to back up, NAME=URL, repeatable (postgres://…, mysql://…, mariadb://…, s3://…, file://…)
    #[arg(long = "source", global = true, value_name = "NAME=URL")]
    pub sources: Vec<String>,
    /// Environment name (config section, manifest field)
    #[arg(long, global = true, value_name = "NAME")]
    pub env: Option<String>,
    /// Project of a config with several ([project.NAME] or projects_dir)
    #[arg(long, global = true, value_name = "NAME")]
    pub project: Option<String>,
    /// Server for level-4 test restores, one per kind of database (postgres://…, `local`,
    /// `source`, mysql://…), repeatable (default: PostgreSQL in a throwaway local cluster when
    /// possible, else each source's own server)
    #[arg(long, global = true, value_name = "URL")]
    pub verify_restore_url: Vec<String>,
    /// Wait up to DURATION (e.g. 10m) for another run's lock instead of failing with exit 6
    #[arg(long, global = true, value_name = "DURATION")]
    pub wait_lock: Option<String>,
    /// After backup, run, verify or status: write Prometheus metrics of every configured
    /// project/environment to FILE (node_exporter textfile format, replaced atomically)
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "PREDEPLOY_METRICS_FILE"
    )]
    pub metrics_file: Option<PathBuf>,
    /// Machine-readable output on stdout: one JSON document
    #[arg(long, global = true)]
    pub json: bool,
    /// Stream events on stdout as JSON lines (`ndjson`): each stage's start and end with bytes
    /// and rate, then the result as the last line
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub events: Option<EventsFormat>,
    /// Progress display: auto (bars on a terminal, timestamped lines otherwise), bar, plain
    /// or none
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "MODE",
        default_value_t = ProgressMode::Auto
    )]
    pub progress: ProgressMode,
    /// More detail on stderr (repeat for debug output)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// `--events` formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventsFormat {
    /// One JSON object per line.
    Ndjson,
}

/// `--progress` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// Bars when stderr is a terminal, plain lines otherwise.
    Auto,
    /// Progress bars (indicatif) with bytes, rate and ETA.
    Bar,
    /// Timestamped lines every `PREDEPLOY_PROGRESS_INTERVAL` (30s) for a running transfer.
    Plain,
    /// Nothing.
    None,
}

/// Options of a new backup.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// How far to verify: checksum, decompress, archive or restore (default: restore when a
    /// scratch server is usable, else archive)
    #[arg(long, value_name = "LEVEL")]
    pub verify_level: Option<String>,
    /// zstd compression level, 1-19 (default: 3; MySQL/MariaDB dumps 1)
    #[arg(long, value_name = "N")]
    pub zstd_level: Option<i32>,
    /// The application's version, recorded in the manifest
    #[arg(long, value_name = "VERSION", env = "PREDEPLOY_APP_VERSION")]
    pub app_version: Option<String>,
    /// Keep this backup at least this long, e.g. 14d (recorded as its expiry; retention keeps it
    /// until then whatever its other rules say)
    #[arg(long, value_name = "DURATION")]
    pub expire_in: Option<String>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Preflight, back up every source, verify, then run CMD
    Run {
        #[command(flatten)]
        backup: BackupArgs,
        #[command(flatten)]
        rollback: RollbackArgs,
        /// Always take a new backup. Without it, when no source changed since the newest
        /// backup that passed verification (PostgreSQL: the write-ahead log has not moved), the
        /// deploy runs on that backup
        #[arg(long, env = "PREDEPLOY_FRESH", value_parser = clap::builder::BoolishValueParser::new())]
        fresh: bool,
        /// The deploy command and its arguments (after --)
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Back up every source and verify the backup, without a deploy command
    Backup {
        #[command(flatten)]
        backup: BackupArgs,
        /// Kind recorded in the manifest: manual or scheduled (default: manual; scheduled
        /// with --all)
        #[arg(long, value_parser = ["manual", "scheduled", "pre-deploy"])]
        kind: Option<String>,
        /// Back up every configured project and environment, each in its own lock; one
        /// failure does not stop the others
        #[arg(long)]
        all: bool,
    },
    /// List backups, newest first
    List,
    /// Show one backup in full, with the commands to roll back to it
    Show {
        /// A backup id, or `last`
        #[arg(default_value = "last")]
        backup: String,
    },
    /// Re-verify stored backups and record the result
    Verify {
        /// A backup id, or `last`
        #[arg(default_value = "last", conflicts_with = "all")]
        backup: String,
        /// Verify every backup of every configured project and environment (of the one
        /// named by --project / --env when given)
        #[arg(long)]
        all: bool,
        /// checksum, decompress, archive or restore (default: restore when a scratch server is
        /// usable, else archive)
        #[arg(long, value_name = "LEVEL")]
        level: Option<String>,
        /// Decrypt with the age identities of FILE (mode 0600) instead of the configured ones,
        /// proving that this offline recovery key opens the backup; the record names its
        /// fingerprint (`decrypted_with`)
        #[arg(long, value_name = "FILE")]
        recovery_key: Option<std::path::PathBuf>,
    },
    /// Pass (exit 0) only if a backup matching the conditions has a passing verification;
    /// otherwise exit 7 saying what is missing
    Check {
        /// The commit the backup must protect (SHA or a prefix of 7+ hex digits)
        #[arg(long, value_name = "SHA")]
        commit: Option<String>,
        /// How old the backup may be, e.g. 30m, 12h, 7d
        #[arg(long, value_name = "DURATION")]
        max_age: Option<String>,
        /// The level the verification must have reached (default: the level `run` requires)
        #[arg(long, value_name = "LEVEL")]
        level: Option<String>,
    },
    /// For cron monitors: exit 0 only when every configured project and environment has a
    /// verified backup younger than --max-age; otherwise exit 7 naming the stale ones (5 when
    /// a store cannot be read, or holds no backup yet)
    Status {
        /// How old the newest verified backup may be (default 26h)
        #[arg(long, value_name = "DURATION", default_value = "26h")]
        max_age: String,
    },
    /// Apply retention: print the plan with the reason for every backup; remove only with --yes
    Prune(PruneArgs),
    /// Pin a backup: retention never removes it
    Pin {
        /// A backup id, or `last`
        backup: String,
        /// Why it is pinned, recorded with the pin
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
    },
    /// Remove the pin of a backup
    Unpin {
        /// A backup id, or `last`
        backup: String,
    },
    /// Self-test the store and the sources: write, read, list, delete, create-only writes,
    /// multipart, clock skew, permissions, the lock, each source's preflight. Exit 5 when a
    /// probe fails
    Doctor,
    /// Restore a backup: safety backup of the target, restore into a new database, verify, swap
    /// names (the old database is kept); `--source NAME` picks the backup's source
    Restore(RestoreArgs),
    /// Write one self-contained HTML page (no script, nothing fetched) over every configured
    /// project and environment: the backup timeline (kind, verification level, pin, deployed
    /// commit), size and duration charts, the last verification of each source and what
    /// retention would remove next. Reads only: nothing is removed
    Report {
        /// The HTML file to write (replaced atomically)
        #[arg(long, value_name = "FILE")]
        html: PathBuf,
    },
    /// Print the effective configuration and where each value came from (flag, env, file or
    /// default); passwords and secrets are redacted
    Config,
    /// Print a shell completion script (e.g. `pre-deploy completions bash >
    /// /etc/bash_completion.d/pre-deploy`)
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `pre-deploy man > /usr/local/share/man/man1/pre-deploy.1`
    Man,
}

/// Options of `prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove what the plan says (without it, prune only prints the plan)
    #[arg(long)]
    pub yes: bool,
    /// With --yes: apply even a plan that removes more than max-delete-share of a group or more
    /// than max-delete-count backups
    #[arg(long, requires = "yes")]
    pub force: bool,
    /// Only this kind of backup, repeatable (default: every kind); the --keep-* flags apply to
    /// these kinds
    #[arg(long = "kind", value_name = "KIND",
          value_parser = ["pre-deploy", "scheduled", "manual", "safety"])]
    pub kinds: Vec<String>,
    /// Keep the N newest verified backups (replaces the configured rules of the kinds)
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep every verified backup within DURATION of the newest one, e.g. 30d, 12h, 6mo
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Keep the newest backup of each of the last N hours that have one
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest backup of each of the last N days that have one
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the last N ISO weeks that have one
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the last N months that have one
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest backup of each of the last N years that have one
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
}

/// Options of `restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A backup id, or `last` (the newest backup that is not a safety backup)
    #[arg(default_value = "last")]
    pub backup: String,
    /// The target database, postgres://… (default: the configured source of the same name)
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// Do not ask: the restore is confirmed (like PREDEPLOY_CONFIRM_RESTORE=yes)
    #[arg(long)]
    pub yes: bool,
    /// Needed to restore into a production environment
    #[arg(long)]
    pub allow_production: bool,
    /// End other sessions on the target for the swap (without it, connected sessions refuse)
    #[arg(long)]
    pub terminate_connections: bool,
    /// Print the plan (after its preflight) and change nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// Options of `run` for a failed deploy.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// When the deploy command fails, restore the backup taken for this run (after a safety
    /// backup of the failed state); the exit code stays the deploy command's
    #[arg(long)]
    pub rollback_on_failure: bool,
    /// With --rollback-on-failure: end other sessions on the databases for the swap
    #[arg(long, requires = "rollback_on_failure")]
    pub terminate_connections: bool,
}
