//! The rollback steps of a MySQL/MariaDB source: `pre-deploy restore`, and the raw equivalent
//! (`sha256sum`, `zstd`, `mariadb-dump`, `mariadb` — or `mysqldump`, `mysql` for MySQL) for an
//! operator who cannot run the tool. Every value comes from a manifest a tampered store
//! controls: the location is parsed and validated, every value shell-quoted, and identifiers
//! SQL-quoted inside the shell-quoted statements. The password is never part of them: the
//! client reads it from `~/.my.cnf` (or a `--defaults-extra-file` the operator adds).

use backup_core::SourceManifest;
use backup_core::runbook::{Reach, RunbookContext, RunbookStep, reach_through_via, shell_quote};

use crate::config::MysqlSourceConfig;
use crate::inspector::quote_ident;
use crate::snapshotter::{DUMP_FORMAT, dump_args};
use crate::tools::Flavour;

/// The steps for one MySQL/MariaDB source of `ctx.manifest`.
pub(crate) fn runbook_steps(source: &SourceManifest, ctx: &RunbookContext<'_>) -> Vec<RunbookStep> {
    let mut steps = Vec::new();
    let Some(dump) = source.artifacts.iter().find(|a| a.format == DUMP_FORMAT) else {
        return steps;
    };
    steps.push(RunbookStep {
        title: format!(
            "Restore database {} with pre-deploy (safety backup first, restore into a new database, verify, swap the tables in one RENAME TABLE; the previous tables are kept)",
            source.name
        ),
        commands: vec![ctx.restore_command(source)],
    });
    let tag = format!("{}-{}", ctx.manifest.id, source.name);
    let Some((connection, db, reach)) = connection_args(&source.location, &tag) else {
        return steps;
    };
    let flavour = match source.extra.get("flavour").and_then(|v| v.as_str()) {
        Some("MySQL") => Flavour::MySql,
        _ => Flavour::MariaDb,
    };
    let (client, dumper) = (flavour.client_tool(), flavour.dump_tool());
    let location = (ctx.locate)(&dump.key);
    let staged = format!("/tmp/predeploy-{}-{}.sql.zst", ctx.manifest.id, source.name);
    let before = format!(
        "/tmp/predeploy-{}-{}-before.sql",
        ctx.manifest.id, source.name
    );
    let mut commands = Vec::new();
    if let Some(r) = &reach {
        commands.extend(r.setup.iter().cloned());
    }
    let compressed = if location.starts_with("s3://") {
        commands.push(format!(
            "{} cp {} {}",
            ctx.aws,
            shell_quote(&location),
            shell_quote(&staged)
        ));
        staged.clone()
    } else {
        location
    };
    commands.push(format!(
        "echo {} | sha256sum -c -",
        shell_quote(&format!("{}  {compressed}", dump.sha256.hex()))
    ));
    let dump_args: Vec<String> = dump_args(flavour, &db)
        .iter()
        .map(|a| shell_quote(a))
        .collect();
    // No pipe: `sh -e` sees the dump tool's own exit status, and the closing line proves the
    // file whole before the database is dropped.
    commands.push(format!(
        "{dumper} {connection} {} {}",
        shell_quote(&format!("--result-file={before}")),
        dump_args.join(" ")
    ));
    commands.push(format!(
        "tail -n 1 {} | grep -q '^-- Dump completed'",
        shell_quote(&before)
    ));
    let charset = crate::verifier::charset_of(source)
        .map(|(cs, coll)| {
            format!(
                " CHARACTER SET {} COLLATE {}",
                quote_ident(&cs),
                quote_ident(&coll)
            )
        })
        .unwrap_or_default();
    commands.push(format!(
        "{client} {connection} -e {}",
        shell_quote(&format!(
            "DROP DATABASE IF EXISTS {q}; CREATE DATABASE {q}{charset}",
            q = quote_ident(&db)
        ))
    ));
    let decompress = if backup_core::encryption::is_encrypted(dump) {
        format!(
            "age -d -i {} {} | zstd -dc",
            backup_core::runbook::AGE_IDENTITY,
            shell_quote(&compressed)
        )
    } else {
        format!("zstd -dc {}", shell_quote(&compressed))
    };
    commands.push(format!(
        "{decompress} | {client} {connection} --binary-mode {}",
        shell_quote(&format!("--database={db}"))
    ));
    let reached = reach
        .as_ref()
        .map(|r| format!("; the server is reached {}", r.how))
        .unwrap_or_default();
    steps.push(RunbookStep {
        title: format!(
            "Or without pre-deploy: dump the current database {db} to {before} first, then recreate it and replay the backup ({}{reached}; credentials from ~/.my.cnf; NOT atomic: stop the application first; to go back, replay {before} the same way)",
            source.location
        ),
        commands,
    });
    steps
}

/// The client's connection options for a stored location (`--host=… --port=… --user=…` or
/// `--socket=…`, each shell-quoted), the database name, and how a server behind `via=` is
/// reached (the options then name that address), when the location is a valid MySQL URL
/// with a database name the server could hold.
fn connection_args(location: &str, tag: &str) -> Option<(String, String, Option<Reach>)> {
    let c = MysqlSourceConfig::parse_url(location).ok()?;
    let db = c.database.clone();
    if db.chars().count() > crate::admin::MAX_NAME_CHARS || db.contains('\0') {
        return None;
    }
    let reach = reach_through_via(location, &c.host, c.port, tag);
    let mut args = Vec::new();
    match (&c.socket, &reach) {
        (_, Some(r)) => {
            // `r.host` is a shell word already (it may expand the setup's variable).
            args.push(format!("--host={}", r.host));
            args.push(format!("--port={}", r.port));
            args.push("--protocol=TCP".to_owned());
        }
        (Some(s), None) => args.push(shell_quote(&format!("--socket={}", s.display()))),
        (None, None) => {
            args.push(shell_quote(&format!("--host={}", c.host)));
            args.push(format!("--port={}", c.port));
            args.push("--protocol=TCP".to_owned());
        }
    }
    if let Some(u) = &c.user {
        args.push(shell_quote(&format!("--user={u}")));
    }
    Some((args.join(" "), db, reach))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_become_quoted_client_options() {
        let (args, db, reach) =
            connection_args("mysql://app@db.example:3307/shop", "t").expect("valid");
        assert_eq!(reach, None);
        assert_eq!(db, "shop");
        assert_eq!(
            args,
            "--host=db.example --port=3307 --protocol=TCP --user=app"
        );
        let (args, db, _) =
            connection_args("mysql://a%27b@h:1/x%3B%20rm%20-rf%20%2F", "t").expect("valid");
        assert_eq!(db, "x; rm -rf /");
        assert!(args.contains("'--user=a'\\''b'"), "{args}");
        assert!(connection_args("postgres://h/x", "t").is_none());
        assert!(connection_args(&format!("mysql://h/{}", "d".repeat(65)), "t").is_none());
    }

    #[test]
    fn a_server_behind_via_is_reached_as_the_setup_says() {
        let (args, _, reach) =
            connection_args("mysql://app@localhost:3306/shop?via=docker://shop-db", "t")
                .expect("valid");
        assert!(reach.is_some());
        assert_eq!(
            args,
            "--host=\"$PREDEPLOY_DB_HOST\" --port=3306 --protocol=TCP --user=app"
        );
        let (args, _, _) =
            connection_args("mysql://app@10.0.0.5:3306/shop?via=ssh://db1", "t").expect("valid");
        assert_eq!(
            args,
            "--host=127.0.0.1 --port=53306 --protocol=TCP --user=app"
        );
    }
}
