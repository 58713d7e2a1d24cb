//! The runbook: the exact commands to roll back to a backup, including raw equivalents for an
//! operator who cannot run this tool.

use backup_core::Manifest;
use backup_objectstore::StoreUrl;
use backup_postgres::{DUMP_FORMAT, GLOBALS_FORMAT};
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

/// Builds the runbook for `manifest`.
pub fn runbook(manifest: &Manifest, store: Option<&StoreUrl>) -> Runbook {
    let mut steps = Vec::new();
    if let Some(commit) = &manifest.deploy.commit {
        steps.push(RunbookStep {
            title: "Put the code back to the release this backup protects".into(),
            commands: vec![format!("git checkout {commit}")],
        });
    }
    for source in &manifest.sources {
        for a in &source.artifacts {
            let location = artifact_location(store, &a.key);
            let fetch = if location.starts_with("s3://") {
                format!("aws s3 cp {location} - | zstd -dc")
            } else {
                format!("zstd -dc {location}")
            };
            match a.format.as_str() {
                DUMP_FORMAT => {
                    let db = source
                        .location
                        .rsplit('/')
                        .next()
                        .unwrap_or("app")
                        .split('?')
                        .next()
                        .unwrap_or("app")
                        .to_owned();
                    let restored = format!(
                        "{db}_restored_{}",
                        manifest.id.as_str()[..15].to_lowercase()
                    );
                    steps.push(RunbookStep {
                        title: format!(
                            "Restore database {} ({}) into a new database, check it, then swap names",
                            source.name, source.location
                        ),
                        commands: vec![
                            format!("{fetch} > /tmp/{}.pgc", source.name),
                            format!("sha256sum {location}   # expect {}", a.sha256.hex()),
                            format!("createdb {restored}"),
                            format!("pg_restore --exit-on-error --no-owner -j 2 -d {restored} /tmp/{}.pgc", source.name),
                            format!(
                                "psql -d postgres -c 'ALTER DATABASE \"{db}\" RENAME TO \"{db}_before_rollback\"' -c 'ALTER DATABASE \"{restored}\" RENAME TO \"{db}\"'"
                            ),
                        ],
                    });
                }
                GLOBALS_FORMAT => steps.push(RunbookStep {
                    title: format!(
                        "If roles are missing on the target server, recreate them ({})",
                        source.name
                    ),
                    commands: vec![format!("{fetch} | psql -d postgres")],
                }),
                _ => {}
            }
        }
    }
    Runbook { steps }
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
