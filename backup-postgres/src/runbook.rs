//! The rollback steps of a PostgreSQL source: `pre-deploy restore`, and the raw equivalent
//! (`sha256sum`, `age` for an encrypted backup, `zstd`, `createdb`, `pg_restore`, `psql`) for an operator who cannot run the
//! tool. The raw commands run as they are with `sh -e`, connecting through the standard
//! `PGHOST`/`PGPORT`/`PGUSER`/`PGPASSWORD` variables; like the tool, they restore into a new
//! database and swap names in one transaction, keeping the previous database as
//! `<db>__predeploy_before_<backup>`.

use backup_core::runbook::{Reach, RunbookContext, RunbookStep, reach_through_via, shell_quote};
use backup_core::{ArtifactMeta, SourceManifest};
use backup_verify::is_plain_file_name;

use crate::DumpArchive;
use crate::inspector::quote_ident;
use crate::snapshotter::GLOBALS_FORMAT;
use crate::swap::SwapNames;

/// The steps for one PostgreSQL source of `ctx.manifest`.
pub(crate) fn runbook_steps(source: &SourceManifest, ctx: &RunbookContext<'_>) -> Vec<RunbookStep> {
    let mut steps = Vec::new();
    let Some(dump) = DumpArchive::of(source) else {
        return steps;
    };
    steps.push(RunbookStep {
        title: format!(
            "Restore database {} with pre-deploy (safety backup first, restore into a new database, verify, swap names; the old database is kept)",
            source.name
        ),
        commands: vec![ctx.restore_command(source)],
    });
    let reach = reach_of(source, ctx);
    let staged_base = format!("/tmp/predeploy-{}-{}", ctx.manifest.id, source.name);
    let mut commands = Vec::new();
    let mut temps = Vec::new();
    let staged = if dump.is_directory() {
        // A parallel dump: every file of the directory archive, each checked and unpacked.
        if let Some((name, _)) = dump.files().iter().find(|(n, _)| !is_plain_file_name(n)) {
            // Never a path out of the directory in a command meant for `sh -e`.
            steps.push(RunbookStep {
                title: format!(
                    "No raw commands for database {}: its manifest names a dump file {name:?} that is not a plain file name (an altered manifest?); verify the backup",
                    source.name
                ),
                commands: Vec::new(),
            });
            return steps;
        }
        let dir = format!("{staged_base}.d");
        commands.push(format!("mkdir {}", shell_quote(&dir)));
        for (name, a) in dump.files() {
            let (unpack, left) = unpack_commands(ctx, a, &format!("{dir}/{name}"));
            commands.extend(unpack);
            // Removed at once: only the unpacked files are left for pg_restore.
            commands.extend(left.iter().map(|f| format!("rm -f {}", shell_quote(f))));
        }
        dir
    } else {
        let file = format!("{staged_base}.pgc");
        let (unpack, left) = unpack_commands(ctx, dump.head, &file);
        commands.extend(unpack);
        temps.extend(left);
        file
    };
    let db = database_of(&source.location);
    let names = SwapNames::new(&db, ctx.manifest.id.as_str(), ctx.manifest.id.as_str());
    commands.extend(connect_commands(reach.as_ref()));
    commands.push(format!(
        "createdb -T template0 {}",
        shell_quote(&names.restoring)
    ));
    // `-d` takes a connection string when the name holds `=`: give one then.
    let restoring = if names.restoring.contains('=') {
        conninfo_dbname(&names.restoring)
    } else {
        names.restoring.clone()
    };
    commands.push(format!(
        "pg_restore --exit-on-error -j 2 -d {} {}",
        shell_quote(&restoring),
        shell_quote(&staged)
    ));
    commands.push(format!(
        "psql -X -v ON_ERROR_STOP=1 -d postgres -c {}",
        shell_quote(&format!(
            "ALTER DATABASE {} RENAME TO {}; ALTER DATABASE {} RENAME TO {}",
            quote_ident(&names.target),
            quote_ident(&names.before),
            quote_ident(&names.restoring),
            quote_ident(&names.target)
        ))
    ));
    commands.push(format!(
        "rm -{}f {}",
        if dump.is_directory() { "r" } else { "" },
        shell_quote(&staged)
    ));
    for temp in temps {
        commands.push(format!("rm -f {}", shell_quote(&temp)));
    }
    let connect = match &reach {
        Some(r) => format!("the server is reached {}; set PGUSER, PGPASSWORD", r.how),
        None => "set PGHOST, PGPORT, PGUSER, PGPASSWORD for the server".to_owned(),
    };
    steps.push(RunbookStep {
        title: format!(
            "Or without pre-deploy: restore database {} ({}) into a new database, then swap names in one transaction ({connect}; end the sessions on {db} first; the old database stays as {})",
            source.name, source.location, names.before
        ),
        commands,
    });
    if let Some(globals) = source.artifacts.iter().find(|a| a.format == GLOBALS_FORMAT) {
        let location = (ctx.locate)(&globals.key);
        let decrypt = match backup_core::encryption::is_encrypted(globals) {
            true => format!("age -d -i {} | ", backup_core::runbook::AGE_IDENTITY),
            false => String::new(),
        };
        let fetch = if location.starts_with("s3://") {
            format!(
                "{} cp {} - | {decrypt}zstd -dc",
                ctx.aws,
                shell_quote(&location)
            )
        } else if decrypt.is_empty() {
            format!("zstd -dc {}", shell_quote(&location))
        } else {
            format!(
                "age -d -i {} {} | zstd -dc",
                backup_core::runbook::AGE_IDENTITY,
                shell_quote(&location)
            )
        };
        steps.push(RunbookStep {
            title: format!(
                "Only if roles are missing on the target server: recreate them first ({})",
                source.name
            ),
            commands: connect_commands(reach.as_ref())
                .into_iter()
                .chain([format!("{fetch} | psql -X -d postgres")])
                .collect(),
        });
    }
    steps
}

/// The commands that fetch artifact `a`, check its sha256, decrypt it when it is encrypted and
/// decompress it into `out`; and the files they leave besides `out`.
fn unpack_commands(
    ctx: &RunbookContext<'_>,
    a: &ArtifactMeta,
    out: &str,
) -> (Vec<String>, Vec<String>) {
    let location = (ctx.locate)(&a.key);
    let encrypted = backup_core::encryption::is_encrypted(a);
    let mut commands = Vec::new();
    let mut temps = Vec::new();
    let fetched = if location.starts_with("s3://") {
        let local = format!("{out}.zst{}", if encrypted { ".age" } else { "" });
        commands.push(format!(
            "{} cp {} {}",
            ctx.aws,
            shell_quote(&location),
            shell_quote(&local)
        ));
        temps.push(local.clone());
        local
    } else {
        location
    };
    commands.push(format!(
        "echo {} | sha256sum -c -",
        shell_quote(&format!("{}  {fetched}", a.sha256.hex()))
    ));
    let compressed = if encrypted {
        let decrypted = format!("{out}.zst");
        commands.push(format!(
            "age -d -i {} -o {} {}",
            backup_core::runbook::AGE_IDENTITY,
            shell_quote(&decrypted),
            shell_quote(&fetched)
        ));
        temps.push(decrypted.clone());
        decrypted
    } else {
        fetched
    };
    commands.push(format!(
        "zstd -q -d -f {} -o {}",
        shell_quote(&compressed),
        shell_quote(out)
    ));
    (commands, temps)
}

/// How the raw commands reach a source behind `via=` (a container, a jump host).
fn reach_of(source: &SourceManifest, ctx: &RunbookContext<'_>) -> Option<Reach> {
    let url = url::Url::parse(&source.location).ok()?;
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let tag = format!("{}-{}", ctx.manifest.id, source.name);
    reach_through_via(&source.location, host, url.port().unwrap_or(5432), &tag)
}

/// The setup of `reach`, then `PGHOST`/`PGPORT` pointing at it (nothing without `via=`).
fn connect_commands(reach: Option<&Reach>) -> Vec<String> {
    reach.map_or_else(Vec::new, |r| {
        let mut commands = r.setup.clone();
        commands.push(format!("export PGHOST={} PGPORT={}", r.host, r.port));
        commands
    })
}

/// The database name of a `postgres://…/db?…` location.
fn database_of(location: &str) -> String {
    location
        .split('?')
        .next()
        .unwrap_or(location)
        .rsplit('/')
        .next()
        .filter(|d| !d.is_empty())
        .unwrap_or("postgres")
        .to_owned()
}

/// A libpq connection string naming database `name`, quoted and escaped.
fn conninfo_dbname(name: &str) -> String {
    format!(
        "dbname='{}'",
        name.replace('\\', "\\\\").replace('\'', "\\'")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_read_from_the_location() {
        assert_eq!(database_of("postgres://a@h:5432/shop?host=/tmp"), "shop");
        assert_eq!(database_of("postgres://a@h:5432/"), "postgres");
    }
}
