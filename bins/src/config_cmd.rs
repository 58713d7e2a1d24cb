//! `pre-deploy config`: the effective configuration and where each value came from. Secrets
//! never appear: URLs are redacted, S3 secrets shown as `(set)`.

use deploy_gate::{GateError, Origin, Settings};
use serde_json::{Value, json};

use crate::cli::Cli;
use crate::render::Output;

/// One line of the report: key, shown value, origin.
struct Entry {
    key: &'static str,
    value: Value,
    origin: Origin,
}

/// Prints the effective configuration (JSON with `--json`).
///
/// # Errors
///
/// As `Settings::resolve`.
pub(crate) fn config(cli: &Cli, out: &Output) -> Result<u8, GateError> {
    let workdir = std::env::current_dir().map_err(|e| GateError::Internal {
        message: format!("cannot read the working directory: {e}"),
    })?;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let settings = Settings::resolve(&crate::overrides(cli, None), &env, &workdir)?;
    let entries = entries(&settings);
    if out.json {
        let mut doc = serde_json::Map::new();
        for e in &entries {
            let mut v = json!({ "value": e.value });
            if let (Some(v), Ok(Value::Object(o))) =
                (v.as_object_mut(), serde_json::to_value(&e.origin))
            {
                v.extend(o);
            }
            doc.insert(e.key.to_owned(), v);
        }
        crate::progress::print_result(&Value::Object(doc));
        return Ok(0);
    }
    let width = entries.iter().map(|e| e.key.len()).max().unwrap_or(0);
    for e in &entries {
        let value = match &e.value {
            Value::String(s) => s.clone(),
            Value::Null => "(none)".to_owned(),
            other => other.to_string(),
        };
        println!("{:width$}  {value}  ({})", e.key, e.origin);
    }
    Ok(0)
}

fn entries(s: &Settings) -> Vec<Entry> {
    let origin = |k: &str| s.origins.get(k).cloned().unwrap_or(Origin::Default);
    let secret = |v: &Option<String>| v.as_ref().map(|_| "(set)".to_owned());
    let mut out = Vec::new();
    let mut add = |key: &'static str, value: Value| {
        out.push(Entry {
            key,
            value,
            origin: origin(key),
        });
    };
    add(
        "store",
        json!(deploy_gate::redact_url(&s.store.to_string())),
    );
    add("environment", json!(s.environment));
    add("project", json!(s.project));
    let sources: serde_json::Map<String, Value> = s
        .sources
        .iter()
        .map(|src| {
            (
                src.name.to_string(),
                json!(deploy_gate::redact_url(&src.url)),
            )
        })
        .collect();
    add(
        "sources",
        if sources.is_empty() {
            Value::Null
        } else {
            Value::Object(sources)
        },
    );
    add(
        "verify.level",
        json!(if s.verify_level == s.verify_required {
            s.verify_level.as_str().to_owned()
        } else {
            format!(
                "{} attempted, {} required",
                s.verify_level.as_str(),
                s.verify_required.as_str()
            )
        }),
    );
    let urls: Vec<String> = s
        .verify_restore_urls
        .iter()
        .map(|u| deploy_gate::redact_url(u))
        .collect();
    add("verify.restore_url", json!(urls));
    add("verify.jobs", json!(s.verify_jobs));
    add(
        "verify.temp_dir",
        json!(s.verify_temp_dir.as_ref().map(|p| p.display().to_string())),
    );
    // Unset: each artifact's own level (3; MySQL/MariaDB dumps 1).
    add("backup.zstd_level", json!(s.pipeline.zstd_level));
    // Fingerprints, not the recipients themselves: the output is for reading, not copying.
    let recipients: Vec<String> = s
        .encryption
        .recipients
        .iter()
        .map(|r| backup_core::encryption::fingerprint(r))
        .collect();
    add(
        "encryption.recipients",
        if recipients.is_empty() {
            json!("none (backups are not encrypted)")
        } else {
            json!(recipients)
        },
    );
    add(
        "encryption.identity_file",
        json!(
            s.encryption
                .identity_file
                .as_ref()
                .map(|p| p.display().to_string())
        ),
    );
    add(
        "encryption.hide_table_names",
        json!(s.encryption.hide_table_names),
    );
    add(
        "retention",
        match &s.retention {
            None => json!("none (nothing is pruned)"),
            Some(r) => json!(format!(
                "kinds {}; time zone {}; min_verified {}",
                r.rules
                    .keys()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                r.time_zone_name,
                r.min_verified
            )),
        },
    );
    add("lock.ttl", json!(format!("{}s", s.lock_ttl.as_secs())));
    add("lock.wait", json!(format!("{}s", s.wait_lock.as_secs())));
    add(
        "s3.endpoint",
        json!(s.s3.endpoint.as_deref().map(deploy_gate::redact_url)),
    );
    add("s3.region", json!(s.s3.region));
    add("s3.access_key_id", json!(s.s3.access_key_id));
    add(
        "s3.secret_access_key",
        json!(secret(&s.s3.secret_access_key)),
    );
    add("s3.session_token", json!(secret(&s.s3.session_token)));
    out
}
