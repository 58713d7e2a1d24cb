//! The runbook: the exact commands to roll back to a backup, including raw equivalents for an
//! operator who cannot run this tool.

use backup_core::Manifest;
use backup_objectstore::StoreUrl;
use backup_postgres::{DUMP_FORMAT, GLOBALS_FORMAT, SwapNames, quote_ident};
use serde::Serialize;

use crate::deploy::artifact_location;

/// One step of a rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunbookStep {
    /// What the step does.
    pub title: String,
    /// Shell commands, in order.
    pub commands: Vec<String>,
}

/// The rollback procedure for one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Runbook {
    /// Steps, in order.
    pub steps: Vec<RunbookStep>,
}

/// Builds the runbook for `manifest`: the code checkout, `pre-deploy restore` per PostgreSQL
/// source, and the raw equivalent (`sha256sum`, `zstd`, `createdb`, `pg_restore`, `psql`) for an
/// operator who cannot run this tool. The raw commands are runnable as they are with `sh -e`,
/// connecting through the standard `PGHOST`/`PGPORT`/`PGUSER`/`PGPASSWORD` variables; like the
/// tool, they restore into a new database and swap names in one transaction, keeping the previous
/// database as `<db>__predeploy_before_<backup>`.
pub fn runbook(manifest: &Manifest, store: Option<&StoreUrl>, environment: &str) -> Runbook {
    let mut steps = Vec::new();
    // Everything below is printed for `sh -e` and comes from a manifest, which a tampered store
    // controls: every value is validated or quoted.
    if let Some(commit) = manifest
        .deploy
        .commit
        .as_deref()
        .filter(|c| is_git_object_name(c))
    {
        steps.push(RunbookStep {
            title: "Put the code back to the release this backup protects".into(),
            commands: vec![format!("git checkout {}", shell_quote(commit))],
        });
    }
    let store_arg = store.map_or_else(String::new, |s| {
        let text = match s {
            StoreUrl::Local(dir) => dir
                .canonicalize()
                .unwrap_or_else(|_| dir.clone())
                .display()
                .to_string(),
            other => other.to_string(),
        };
        format!(" --store {}", shell_quote(&text))
    });
    // The AWS CLI needs the endpoint of a non-AWS server (MinIO, Garage) spelled out.
    let aws = match store {
        Some(StoreUrl::S3 { settings, .. }) => match &settings.endpoint {
            Some(ep) => format!("aws --endpoint-url {} s3", shell_quote(ep)),
            None => "aws s3".to_owned(),
        },
        _ => "aws s3".to_owned(),
    };
    for source in &manifest.sources {
        if matches!(source.kind.as_str(), "bucket" | "directory") {
            steps.extend(bucket_steps(
                manifest,
                source,
                store,
                &store_arg,
                environment,
            ));
            continue;
        }
        let Some(dump) = source.artifacts.iter().find(|a| a.format == DUMP_FORMAT) else {
            continue;
        };
        steps.push(RunbookStep {
            title: format!(
                "Restore database {} with pre-deploy (safety backup first, restore into a new database, verify, swap names; the old database is kept)",
                source.name
            ),
            commands: vec![format!(
                "pre-deploy restore {} --source {}{store_arg} --env {}",
                manifest.id,
                shell_quote(source.name.as_str()),
                shell_quote(environment)
            )],
        });
        let location = artifact_location(store, &dump.key);
        let staged = format!("/tmp/predeploy-{}-{}.pgc", manifest.id, source.name);
        let mut commands = Vec::new();
        let compressed = if location.starts_with("s3://") {
            let local = format!("{staged}.zst");
            commands.push(format!(
                "{aws} cp {} {}",
                shell_quote(&location),
                shell_quote(&local)
            ));
            local
        } else {
            location
        };
        commands.push(format!(
            "echo {} | sha256sum -c -",
            shell_quote(&format!("{}  {compressed}", dump.sha256.hex()))
        ));
        commands.push(format!(
            "zstd -q -d -f {} -o {}",
            shell_quote(&compressed),
            shell_quote(&staged)
        ));
        let db = database_of(&source.location);
        let names = SwapNames::new(&db, manifest.id.as_str(), manifest.id.as_str());
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
        commands.push(format!("rm -f {}", shell_quote(&staged)));
        steps.push(RunbookStep {
            title: format!(
                "Or without pre-deploy: restore database {} ({}) into a new database, then swap names in one transaction (set PGHOST, PGPORT, PGUSER, PGPASSWORD for the server; end the sessions on {db} first; the old database stays as {})",
                source.name, source.location, names.before
            ),
            commands,
        });
        if let Some(globals) = source.artifacts.iter().find(|a| a.format == GLOBALS_FORMAT) {
            let location = artifact_location(store, &globals.key);
            let fetch = if location.starts_with("s3://") {
                format!("{aws} cp {} - | zstd -dc", shell_quote(&location))
            } else {
                format!("zstd -dc {}", shell_quote(&location))
            };
            steps.push(RunbookStep {
                title: format!(
                    "Only if roles are missing on the target server: recreate them first ({})",
                    source.name
                ),
                commands: vec![format!("{fetch} | psql -X -d postgres")],
            });
        }
    }
    Runbook { steps }
}

/// The steps for a bucket or directory source: `pre-deploy restore`, and for a local store the
/// raw equivalent (python3 reads the index, copies each blob to its key, checking its sha256).
fn bucket_steps(
    manifest: &Manifest,
    source: &backup_core::SourceManifest,
    store: Option<&StoreUrl>,
    store_arg: &str,
    environment: &str,
) -> Vec<RunbookStep> {
    let mut steps = vec![RunbookStep {
        title: format!(
            "Restore {} {} with pre-deploy (safety snapshot of what is there first; objects the backup lacks are left alone; add --to URL to restore elsewhere)",
            source.kind, source.name
        ),
        commands: vec![format!(
            "pre-deploy restore {} --source {}{store_arg} --env {}",
            manifest.id,
            source.name,
            shell_quote(environment)
        )],
    }];
    let index = source
        .artifacts
        .iter()
        .find(|a| a.format == "bucket-index-v1");
    if let (Some(StoreUrl::Local(_)), Some(index), "directory") =
        (store, index, source.kind.as_str())
    {
        let index_path = artifact_location(store, &index.key);
        let blobs = artifact_location(store, "blobs/sha256");
        let target = source
            .location
            .strip_prefix("file://")
            .unwrap_or(&source.location);
        // JSON string literals are Python string literals; keys that would leave the target
        // (absolute, `..`) stop the script.
        let (blobs, target) = (json_literal(&blobs), json_literal(target));
        let script = format!(
            "import json,sys,os,hashlib,shutil\n\
             for line in sys.stdin:\n\
             \x20e=json.loads(line); h=e['sha256'].split(':')[-1]; k=e['key']\n\
             \x20assert not os.path.isabs(k) and '..' not in k.split('/') and len(h)==64, k\n\
             \x20src=os.path.join({blobs},h[:2],h); dst=os.path.join({target},k)\n\
             \x20assert hashlib.sha256(open(src,'rb').read()).hexdigest()==h, src\n\
             \x20os.makedirs(os.path.dirname(dst) or '.',exist_ok=True); shutil.copyfile(src,dst)\n"
        );
        steps.push(RunbookStep {
            title: format!(
                "Or without pre-deploy: copy every file of directory {} back from its blob (checks each sha256; copy the directory aside first if you need its current state)",
                source.name
            ),
            commands: vec![
                format!(
                    "echo {} | sha256sum -c -",
                    shell_quote(&format!("{}  {index_path}", index.sha256.hex()))
                ),
                format!(
                    "zstd -dc {} | python3 -c {}",
                    shell_quote(&index_path),
                    shell_quote(&script)
                ),
            ],
        });
    }
    steps
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

/// Whether `c` looks like a git object name (4 to 64 hex digits), safe to print.
fn is_git_object_name(c: &str) -> bool {
    (4..=64).contains(&c.len()) && c.chars().all(|ch| ch.is_ascii_hexdigit())
}

/// A libpq connection string naming database `name`, quoted and escaped.
fn conninfo_dbname(name: &str) -> String {
    format!(
        "dbname='{}'",
        name.replace('\\', "\\\\").replace('\'', "\\'")
    )
}

/// `s` as a JSON (and so Python) string literal.
fn json_literal(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Quotes `s` for `sh` when it needs it.
fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@+=,%".contains(c));
    if safe {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

impl Runbook {
    /// The runbook as text for a terminal.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (i, step) in self.steps.iter().enumerate() {
            s.push_str(&format!("{}. {}\n", i + 1, step.title));
            for c in &step.commands {
                s.push_str(&format!("     {c}\n"));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runbook_names_the_commit_the_restore_command_and_the_raw_commands() {
        let m: Manifest = serde_json::from_value(serde_json::json!({
            "format_version": 1, "id": "20261122T031500Z-7f3a9c", "kind": "pre-deploy",
            "environment": "staging", "created_at": "2026-11-22T03:15:00Z",
            "finished_at": "2026-11-22T03:15:00Z",
            "tool": {"name": "pre-deploy", "version": "0"}, "host": "h",
            "deploy": {"commit": "0123456789abcdef0123456789abcdef01234567"},
            "sources": [{"name": "db", "kind": "postgres",
                "location": "postgres://app@db:5432/shop",
                "artifacts": [{"name": "dump.pgc.zst", "key": "backups/x/data/db/dump.pgc.zst",
                    "format": "pg_dump-custom", "compression": "zstd", "stored_size": 1,
                    "raw_size": 2, "sha256": "sha256:".to_owned() + &"ab".repeat(32)}]}]}))
        .expect("manifest");
        let store = StoreUrl::Local("/var/backups/app".into());
        let text = runbook(&m, Some(&store), "staging").to_text();
        for expected in [
            "git checkout 0123456789abcdef0123456789abcdef01234567",
            "pre-deploy restore 20261122T031500Z-7f3a9c --source db --store /var/backups/app --env staging",
            "sha256sum -c -",
            "zstd -q -d -f /var/backups/app/backups/x/data/db/dump.pgc.zst -o /tmp/predeploy-20261122T031500Z-7f3a9c-db.pgc",
            "createdb -T template0 shop__predeploy_restore_20261122t031500z_7f3a9c",
            "pg_restore --exit-on-error -j 2 -d shop__predeploy_restore_20261122t031500z_7f3a9c",
            "ALTER DATABASE \"shop\" RENAME TO \"shop__predeploy_before_20261122t031500z_7f3a9c\"",
        ] {
            assert!(text.contains(expected), "{expected}\nin\n{text}");
        }
    }

    #[test]
    fn values_from_a_tampered_manifest_are_validated_or_quoted() {
        let m: Manifest = serde_json::from_value(serde_json::json!({
            "format_version": 1, "id": "20261122T031500Z-7f3a9c", "kind": "pre-deploy",
            "environment": "staging", "created_at": "2026-11-22T03:15:00Z",
            "finished_at": "2026-11-22T03:15:00Z",
            "tool": {"name": "pre-deploy", "version": "0"}, "host": "h",
            "deploy": {"commit": "abc; rm -rf ~"},
            "sources": [{"name": "db", "kind": "postgres",
                "location": "postgres://app@db:5432/a=b host=evil",
                "artifacts": [{"name": "dump.pgc.zst", "key": "backups/x/data/db/dump.pgc.zst",
                    "format": "pg_dump-custom", "compression": "zstd", "stored_size": 1,
                    "raw_size": 2, "sha256": "sha256:".to_owned() + &"ab".repeat(32)}]},
                {"name": "files", "kind": "directory", "location": "file:///srv/files\u{1}'\"",
                "artifacts": [{"name": "index.jsonl.zst", "key": "backups/x/data/files/index.jsonl.zst",
                    "format": "bucket-index-v1", "compression": "zstd", "stored_size": 1,
                    "raw_size": 2, "sha256": "sha256:".to_owned() + &"ab".repeat(32)}]}]}))
        .expect("manifest");
        let store = StoreUrl::Local("/var/backups/app".into());
        let text = runbook(&m, Some(&store), "staging").to_text();
        assert!(!text.contains("git checkout"), "{text}");
        assert!(!text.contains("rm -rf ~"), "{text}");
        assert!(
            text.contains(
                "pg_restore --exit-on-error -j 2 -d 'dbname='\\''a=b host=evil__predeploy_restore_"
            ),
            "{text}"
        );
        assert!(
            text.contains(" not in k.split(") && text.contains("os.path.isabs(k)"),
            "the raw directory restore refuses keys leaving the target: {text}"
        );
        assert!(
            text.contains("\"/srv/files\\u0001"),
            "the target is a JSON string literal in the script: {text}"
        );
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("app__x"), "app__x");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(database_of("postgres://a@h:5432/shop?host=/tmp"), "shop");
    }
}
