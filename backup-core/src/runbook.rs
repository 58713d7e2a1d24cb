//! The runbook seam: each backend writes the steps that put its sources back — the
//! `pre-deploy restore` command and a raw equivalent for an operator who cannot run the tool.
//! Everything printed is meant for `sh -e` and comes from a manifest a tampered store controls:
//! quote every value with [`shell_quote`] (or validate it).

use serde::Serialize;

use crate::manifest::{Manifest, SourceManifest};

/// One step of a rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunbookStep {
    /// What the step does.
    pub title: String,
    /// Shell commands, in order.
    pub commands: Vec<String>,
}

/// What a backend's runbook steps are written against.
pub struct RunbookContext<'a> {
    /// The backup.
    pub manifest: &'a Manifest,
    /// The environment, for `--env`.
    pub environment: &'a str,
    /// ` --store <dir or URL>` (quoted), or empty when the store is the default.
    pub store_arg: String,
    /// How the AWS CLI reaches an S3 store (`aws s3`, with `--endpoint-url` for MinIO/Garage).
    pub aws: String,
    /// Whether the store is a local directory (raw commands can read its files).
    pub local_store: bool,
    /// Where a stored key is, for raw commands: a path, or an `s3://` URL.
    pub locate: &'a (dyn Fn(&str) -> String + Sync),
}

impl std::fmt::Debug for RunbookContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunbookContext")
            .field("manifest", &self.manifest.id)
            .field("environment", &self.environment)
            .field("store_arg", &self.store_arg)
            .finish_non_exhaustive()
    }
}

impl RunbookContext<'_> {
    /// `pre-deploy restore <id> --source <name> [--store …] --env <env>`.
    pub fn restore_command(&self, source: &SourceManifest) -> String {
        format!(
            "pre-deploy restore {} --source {}{} --env {}",
            self.manifest.id,
            shell_quote(source.name.as_str()),
            self.store_arg,
            shell_quote(self.environment)
        )
    }
}

/// How the raw commands of a runbook name the age identity file of an encrypted backup: the
/// `PREDEPLOY_AGE_IDENTITY_FILE` variable, which `sh` refuses to leave unset.
pub const AGE_IDENTITY: &str =
    "\"${PREDEPLOY_AGE_IDENTITY_FILE:?set PREDEPLOY_AGE_IDENTITY_FILE to your age identity file}\"";

/// Quotes `s` for `sh` when it needs it.
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@+=,%".contains(c));
    if safe {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `s` as a JSON (and so Python) string literal.
pub fn json_literal(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("app__x"), "app__x");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(json_literal("a\u{1}\"b"), "\"a\\u0001\\\"b\"");
    }
}
