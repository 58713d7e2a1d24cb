//! Pure construction of the client tools' arguments and environment (no process is started
//! here). Connection settings travel in `PG*` environment variables, never in argv: argv is
//! visible to every user of the machine through `ps`.

use crate::config::PgSourceConfig;

/// Environment variables that point a libpq tool at `cfg`'s database. Through a jump host,
/// `PGHOSTADDR`/`PGPORT` are the tunnel's local end and `PGHOST` stays the URL's host (for
/// `verify-full` and `.pgpass`).
///
/// # Errors
///
/// When `cfg`'s tunnel cannot be opened.
pub fn connection_env(cfg: &PgSourceConfig) -> backup_core::Result<Vec<(&'static str, String)>> {
    let (hostaddr, port) = match cfg.tunnel_endpoint()? {
        Some(e) => (Some(e.addr.to_string()), e.port),
        None => (None, cfg.port),
    };
    let mut env = vec![
        ("PGHOST", cfg.host.clone()),
        ("PGPORT", port.to_string()),
        ("PGUSER", cfg.user.clone()),
        ("PGDATABASE", cfg.dbname.clone()),
        ("PGAPPNAME", "pre-deploy".to_owned()),
        (
            "PGCONNECT_TIMEOUT",
            cfg.connect_timeout.as_secs().to_string(),
        ),
    ];
    env.extend(cfg.tls.tool_env()?);
    if let Some(a) = hostaddr {
        env.push(("PGHOSTADDR", a));
    }
    if let Some(p) = &cfg.password {
        env.push(("PGPASSWORD", p.expose().to_owned()));
    }
    Ok(env)
}

/// Inherited variables removed from a tool's environment so they cannot override `cfg`.
pub const CLEARED_ENV: &[&str] = &[
    "PGHOSTADDR",
    "PGSERVICE",
    "PGOPTIONS",
    "PGPASSWORD",
    "PGSSLROOTCERT",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGSSLCRL",
];

/// `pg_dump` arguments: custom format, no compression of its own (we compress), the exported
/// snapshot, and never a password prompt.
pub fn dump_args(tool_major: u32, snapshot: Option<&str>) -> Vec<String> {
    archive_args("--format=custom", tool_major, snapshot)
}

/// `pg_dump` arguments of a parallel dump: a directory-format archive written by `jobs`
/// workers, uncompressed (the pipeline compresses each file), not fsynced (each file is
/// stored and deleted as soon as it is closed). `--file` is added by the caller.
pub fn parallel_dump_args(tool_major: u32, snapshot: Option<&str>, jobs: u32) -> Vec<String> {
    let mut args = archive_args("--format=directory", tool_major, snapshot);
    args.push(format!("--jobs={jobs}"));
    args.push("--no-sync".to_owned());
    args
}

fn archive_args(format: &str, tool_major: u32, snapshot: Option<&str>) -> Vec<String> {
    let mut args = vec![format.to_owned()];
    // PG ≤ 15 only knows gzip levels; 16+ spells "no compression" differently.
    args.push(
        if tool_major >= 16 {
            "--compress=none"
        } else {
            "-Z0"
        }
        .to_owned(),
    );
    args.push("--no-password".to_owned());
    if let Some(s) = snapshot {
        args.push(format!("--snapshot={s}"));
    }
    args
}

/// `pg_dumpall --globals-only` arguments; `dbname` is the database it connects to (the source's,
/// so access to `postgres` is not required). Non-superusers cannot read password hashes.
pub fn globals_args(dbname: &str, can_read_passwords: bool) -> Vec<String> {
    let mut args = vec![
        "--globals-only".to_owned(),
        "--no-password".to_owned(),
        format!("--database={dbname}"),
    ];
    if !can_read_passwords {
        args.push("--no-role-passwords".to_owned());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use std::time::Duration;

    fn cfg() -> PgSourceConfig {
        PgSourceConfig {
            host: "db".into(),
            port: 5432,
            user: "app".into(),
            password: Some(Secret::new("hunter2")),
            dbname: "shop's".into(),
            tls: crate::tls::TlsConfig::default(),
            connect_timeout: Duration::from_secs(10),
            bin_dir: None,
            docker: None,
            via: None,
        }
    }

    #[test]
    fn the_password_is_in_the_environment_and_never_in_argv() {
        let env = connection_env(&cfg()).expect("no tunnel");
        assert!(env.contains(&("PGPASSWORD", "hunter2".into())));
        for args in [
            dump_args(15, Some("00000003-1")),
            globals_args("shop's", false),
        ] {
            assert!(!args.iter().any(|a| a.contains("hunter2")), "{args:?}");
        }
    }

    #[test]
    fn dump_compression_flag_follows_the_tool_version() {
        assert!(dump_args(15, None).contains(&"-Z0".to_owned()));
        assert!(dump_args(18, None).contains(&"--compress=none".to_owned()));
        assert!(dump_args(15, Some("S")).contains(&"--snapshot=S".to_owned()));
    }

    #[test]
    fn globals_connect_to_the_source_database() {
        let args = globals_args("shop's", false);
        assert!(args.contains(&"--database=shop's".to_owned()), "{args:?}");
        assert!(args.contains(&"--no-role-passwords".to_owned()));
        assert!(!globals_args("x", true).contains(&"--no-role-passwords".to_owned()));
    }
}
