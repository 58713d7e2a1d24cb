//! The runbook: the exact commands to roll back to a backup, including raw equivalents for an
//! operator who cannot run this tool.

use backup_core::runbook::{RunbookContext, shell_quote};
use backup_core::{Manifest, Registry};
use backup_objectstore::StoreUrl;
use serde::Serialize;

use crate::deploy::artifact_location;

pub use backup_core::runbook::RunbookStep;

/// The rollback procedure for one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Runbook {
    /// Steps, in order.
    pub steps: Vec<RunbookStep>,
}

/// Builds the runbook for `manifest`: the code checkout, then for each source the steps its
/// backend writes (`pre-deploy restore`, and a raw equivalent for an operator who cannot run
/// this tool, runnable as it is with `sh -e`).
pub fn runbook(
    manifest: &Manifest,
    store: Option<&StoreUrl>,
    environment: &str,
    backends: &Registry,
) -> Runbook {
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
    let locate = |key: &str| artifact_location(store, key);
    let ctx = RunbookContext {
        manifest,
        environment,
        store_arg,
        aws,
        local_store: matches!(store, Some(StoreUrl::Local(_))),
        locate: &locate,
    };
    for source in &manifest.sources {
        if let Some(backend) = backends.for_kind(&source.kind) {
            steps.extend(backend.runbook_steps(source, &ctx));
        }
    }
    Runbook { steps }
}

/// Whether `c` looks like a git object name (4 to 64 hex digits), safe to print.
fn is_git_object_name(c: &str) -> bool {
    (4..=64).contains(&c.len()) && c.chars().all(|ch| ch.is_ascii_hexdigit())
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
        let text = runbook(&m, Some(&store), "staging", &crate::default_registry()).to_text();
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
    fn an_encrypted_dump_in_a_bucket_is_fetched_decrypted_and_unpacked_through_distinct_files() {
        let mut m: Manifest = serde_json::from_value(serde_json::json!({
            "format_version": 1, "id": "20261122T031500Z-7f3a9c", "kind": "pre-deploy",
            "environment": "staging", "created_at": "2026-11-22T03:15:00Z",
            "finished_at": "2026-11-22T03:15:00Z",
            "tool": {"name": "pre-deploy", "version": "0"}, "host": "h", "deploy": {},
            "sources": [{"name": "db", "kind": "postgres",
                "location": "postgres://app@db:5432/shop",
                "artifacts": [{"name": "dump.pgc.zst", "key": "backups/x/data/db/dump.pgc.zst.age",
                    "format": "pg_dump-custom", "compression": "zstd", "stored_size": 1,
                    "raw_size": 2, "sha256": "sha256:".to_owned() + &"ab".repeat(32)}]}]}))
        .expect("manifest");
        backup_core::encryption::mark_encrypted(&mut m.sources[0].artifacts[0]);
        let store = StoreUrl::parse("s3://b/p").expect("store");
        let text = runbook(&m, Some(&store), "staging", &crate::default_registry()).to_text();
        let staged = "/tmp/predeploy-20261122T031500Z-7f3a9c-db.pgc";
        for expected in [
            format!("aws s3 cp s3://b/p/backups/x/data/db/dump.pgc.zst.age {staged}.zst.age"),
            format!("{staged}.zst.age' | sha256sum -c -"),
            format!("-o {staged}.zst {staged}.zst.age"),
            format!("zstd -q -d -f {staged}.zst -o {staged}"),
            format!("rm -f {staged}.zst.age"),
        ] {
            assert!(text.contains(&expected), "{expected}\nin\n{text}");
        }
    }

    #[test]
    fn a_directory_archive_naming_a_path_outside_its_directory_gets_no_raw_commands() {
        let artifact = |name: &str| {
            serde_json::json!({"name": name, "key": format!("backups/x/data/db/{name}"),
                "format": "pg_dump-directory", "compression": "zstd", "stored_size": 1,
                "raw_size": 2, "sha256": "sha256:".to_owned() + &"ab".repeat(32)})
        };
        let m: Manifest = serde_json::from_value(serde_json::json!({
            "format_version": 1, "id": "20261122T031500Z-7f3a9c", "kind": "pre-deploy",
            "environment": "staging", "created_at": "2026-11-22T03:15:00Z",
            "finished_at": "2026-11-22T03:15:00Z",
            "tool": {"name": "pre-deploy", "version": "0"}, "host": "h", "deploy": {},
            "sources": [{"name": "db", "kind": "postgres",
                "location": "postgres://app@db:5432/shop",
                "artifacts": [artifact("dump.d/toc.dat.zst"),
                    artifact("dump.d/../../etc/x.zst")]}]}))
        .expect("manifest");
        let store = StoreUrl::Local("/var/backups/app".into());
        let text = runbook(&m, Some(&store), "staging", &crate::default_registry()).to_text();
        assert!(text.contains("pre-deploy restore"), "{text}");
        assert!(
            text.contains("No raw commands for database db") && text.contains("../../etc/x"),
            "{text}"
        );
        assert!(!text.contains("zstd -q -d"), "{text}");
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
        let text = runbook(&m, Some(&store), "staging", &crate::default_registry()).to_text();
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
}
