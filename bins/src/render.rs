//! Rendering results for people (stderr/stdout text) or machines (`--json` on stdout).

use crate::progress::print_result as print_json;
use deploy_gate::{
    BackupDetails, BackupListing, BackupOutcome, CheckOutcome, FindingStatus, Gate, GateError,
    VerificationRecord, human_bytes,
};
use serde_json::json;

/// Where and how results are printed.
pub struct Output {
    /// `--json`.
    pub json: bool,
    /// `--quiet`: no summary on stderr (errors still print).
    pub quiet: bool,
    /// What the command learnt, for its alert (`[notify]`).
    pub facts: crate::notify::Facts,
}

fn level_name(r: Option<&VerificationRecord>) -> String {
    match r {
        None => "unverified".into(),
        Some(r) if !r.passed => "FAILED".into(),
        Some(r) => r
            .level_reached
            .map_or_else(|| "none".into(), |l| l.as_str().to_owned()),
    }
}

impl Output {
    pub fn doctor(&self, r: &deploy_gate::DoctorReport) {
        if self.json {
            print_json(&json!({ "ok": r.ok(), "report": r }));
            return;
        }
        println!("store {} (environment {})", r.store, r.environment);
        for p in &r.probes {
            let status = match p.status {
                deploy_gate::ProbeStatus::Ok => "ok  ",
                deploy_gate::ProbeStatus::Warn => "WARN",
                deploy_gate::ProbeStatus::Fail => "FAIL",
            };
            println!("  [{status}] {} / {}: {}", p.subject, p.name, p.found);
            println!("         -> {}", p.action);
        }
        if r.ok() {
            println!(
                "doctor: every probe passed{}",
                if r.probes
                    .iter()
                    .any(|p| p.status == deploy_gate::ProbeStatus::Warn)
                {
                    " (see the warnings)"
                } else {
                    ""
                }
            );
        } else {
            println!("doctor: a probe FAILED: backups would be refused (exit 5)");
        }
    }

    pub fn backup_done(&self, gate: &Gate, o: &BackupOutcome, last_file: Option<&std::path::Path>) {
        self.backup_done_or_reused(gate, o, last_file, None);
    }

    /// [`Output::backup_done`] for a run, which may have reused a backup of unchanged sources
    /// (`unchanged`: what was proven; `--json` says it as `unchanged`).
    pub fn backup_done_or_reused(
        &self,
        gate: &Gate,
        o: &BackupOutcome,
        last_file: Option<&std::path::Path>,
        unchanged: Option<&str>,
    ) {
        self.facts.backup(
            o.manifest.id.as_str(),
            Some(o.manifest.stored_size()),
            Some(o.snapshot_seconds),
        );
        self.facts.verified(level_name(Some(&o.verification)));
        if self.json {
            print_json(&json!({
                "ok": true,
                "id": o.manifest.id,
                "store": gate.store_name(),
                "environment": o.manifest.environment,
                "stored_bytes": o.manifest.stored_size(),
                "snapshot_seconds": o.snapshot_seconds,
                "manifest": o.manifest,
                "verification": o.verification,
                "last_deployment_file": last_file,
                "unchanged": unchanged,
                "runbook": gate.inventory().runbook(&o.manifest),
            }));
            return;
        }
        if self.quiet {
            return;
        }
        let m = &o.manifest;
        eprintln!(
            "backup {} verified to level {}: {} in {}",
            m.id,
            level_name(Some(&o.verification)),
            human_bytes(m.stored_size()),
            gate.store_name()
        );
        if let Some(commit) = &m.deploy.commit {
            eprintln!(
                "  protects commit {commit}{}",
                m.deploy
                    .branch
                    .as_deref()
                    .map(|b| format!(" ({b})"))
                    .unwrap_or_default()
            );
        }
        if let Some(f) = last_file {
            eprintln!("  wrote {}", f.display());
        }
        eprintln!(
            "  roll back with the commands from: pre-deploy show {}",
            m.id
        );
    }

    pub fn deploy_done(&self, id: &str, code: i32) {
        if code == 0 {
            tracing::info!("deploy command succeeded (backup {id})");
        } else {
            eprintln!(
                "pre-deploy: the deploy command exited with status {code}; backup {id} holds the state from before it (see `pre-deploy show {id}`)"
            );
        }
    }

    pub fn list(&self, gate: &Gate, backups: &[BackupListing]) {
        if self.json {
            let rows: Vec<_> = backups
                .iter()
                .map(|b| json!({
                    "id": b.manifest.id,
                    "kind": b.manifest.kind,
                    "environment": b.manifest.environment,
                    "created_at": b.manifest.created_at,
                    "commit": b.manifest.deploy.commit,
                    "stored_bytes": b.manifest.stored_size(),
                    "sources": b.manifest.sources.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
                    "verification": b.last_verification.as_ref().map(|r| json!({
                        "passed": r.passed, "level_reached": r.level_reached, "verified_at": r.verified_at})),
                }))
                .collect();
            print_json(&json!({ "store": gate.store_name(), "backups": rows }));
            return;
        }
        if backups.is_empty() {
            println!(
                "no backups of environment {:?} in {}",
                gate.environment(),
                gate.store_name()
            );
            return;
        }
        println!(
            "{:<24} {:<10} {:<12} {:<10} {:>10}  SOURCES",
            "ID", "KIND", "COMMIT", "VERIFIED", "SIZE"
        );
        for b in backups {
            let m = &b.manifest;
            // By characters: a tampered manifest may hold any text, and a byte slice could
            // split one.
            let commit: String = m
                .deploy
                .commit
                .as_deref()
                .map_or_else(|| "-".to_owned(), |c| c.chars().take(12).collect());
            let sources: Vec<&str> = m.sources.iter().map(|s| s.name.as_str()).collect();
            println!(
                "{:<24} {:<10} {:<12} {:<10} {:>10}  {}",
                m.id.as_str(),
                m.kind.as_str(),
                commit,
                level_name(b.last_verification.as_ref()),
                human_bytes(m.stored_size()),
                sources.join(",")
            );
        }
    }

    pub fn show(&self, d: &BackupDetails) {
        if self.json {
            let mut v = json!({ "manifest": d.manifest, "verifications": d.verifications, "runbook": d.runbook });
            if let Some(h) = &d.hidden_tables {
                v["hidden_tables"] = json!(h);
            }
            print_json(&v);
            return;
        }
        let m = &d.manifest;
        println!("backup      {}", m.id);
        println!("kind        {}   environment {}", m.kind, m.environment);
        println!("created     {}   finished {}", m.created_at, m.finished_at);
        println!(
            "host        {}   tool {} {}",
            m.host, m.tool.name, m.tool.version
        );
        let dep = &m.deploy;
        println!(
            "protects    commit {}  branch {}  tag {}  dirty {}",
            dep.commit.as_deref().unwrap_or("-"),
            dep.branch.as_deref().unwrap_or("-"),
            dep.tag.as_deref().unwrap_or("-"),
            dep.dirty.map_or("-".into(), |d| d.to_string())
        );
        if let Some(v) = &dep.app_version {
            println!("app version {v}");
        }
        if let Some(u) = &dep.ci_run_url {
            println!("ci run      {u}");
        }
        if let Some(e) = backup_core::encryption::ManifestEncryption::of(m) {
            println!(
                "encrypted   {} to {} (fingerprints; any one of these keys opens it)",
                e.scheme,
                e.recipients.join(", ")
            );
        }
        for s in &m.sources {
            println!("\nsource {} ({}) {}", s.name, s.kind, s.location);
            if let Some(v) = &s.server_version {
                println!(
                    "  server {v}; dumped with {}",
                    s.tool_version.as_deref().unwrap_or("?")
                );
            }
            println!(
                "  {} tables, {} rows; schema {}",
                s.stats.table_count(),
                s.stats.total_rows(),
                s.stats.schema_fingerprint.as_deref().unwrap_or("-")
            );
            if backup_core::hidden_stats::is_hidden(s)
                && let Some(h) = &d.hidden_tables
            {
                match h.decrypted.get(s.name.as_str()) {
                    Some(tables) => {
                        println!(
                            "  tables (decrypted from {}):",
                            backup_core::hidden_stats::STATS_FILE
                        );
                        for t in tables {
                            println!("    {}.{}  {} rows", t.schema, t.name, t.rows);
                        }
                    }
                    None => println!(
                        "  {}",
                        h.encrypted
                            .as_deref()
                            .unwrap_or("table names and row counts are encrypted")
                    ),
                }
            }
            for a in &s.artifacts {
                println!(
                    "  {:<18} {:>10} stored ({} raw)  {}",
                    a.name,
                    human_bytes(a.stored_size),
                    human_bytes(a.raw_size),
                    a.sha256
                );
            }
            for n in &s.notes {
                println!("  note: {n}");
            }
        }
        println!("\nverifications:");
        if d.verifications.is_empty() {
            println!("  none");
        }
        for r in &d.verifications {
            println!(
                "  {}  requested {}  reached {}  {}",
                r.verified_at,
                r.level_requested.as_str(),
                r.level_reached.map_or("none", |l| l.as_str()),
                if r.passed { "passed" } else { "FAILED" }
            );
            for f in r
                .report
                .findings
                .iter()
                .filter(|f| f.status == FindingStatus::Failed)
            {
                println!("    failed: {}", f.message);
            }
        }
        println!("\nto roll back to this backup:");
        print!("{}", d.runbook.to_text());
    }

    pub fn verified(&self, records: &[VerificationRecord]) {
        if let [.., last] = records {
            self.facts.backup(last.backup_id.as_str(), None, None);
        }
        if self.json {
            print_json(&json!({ "ok": true, "verifications": records }));
            return;
        }
        // A failed verification is an error, printed anyway; success says nothing with -q.
        if self.quiet {
            return;
        }
        for r in records {
            println!(
                "backup {} verified to level {}",
                r.backup_id,
                r.level_reached
                    .map_or_else(|| "none".into(), |l| l.to_string())
            );
            if let Some(why) = &r.limited_by {
                println!("  not level {}: {why}", r.level_requested);
            }
            if let Some(keys) = r.extra.get("decrypted_with").and_then(|v| v.as_array()) {
                let keys: Vec<&str> = keys.iter().filter_map(|k| k.as_str()).collect();
                println!("  decrypted with the age key {}", keys.join(", "));
            }
        }
    }

    pub fn checked(&self, c: &CheckOutcome) {
        if self.json {
            print_json(
                &json!({ "ok": true, "id": c.manifest.id, "manifest": c.manifest, "verification": c.verification }),
            );
            return;
        }
        println!(
            "ok: backup {} (commit {}) passed verification at level {} on {}",
            c.manifest.id,
            c.manifest.deploy.commit.as_deref().unwrap_or("-"),
            c.verification
                .level_reached
                .map_or_else(|| "none".into(), |l| l.to_string()),
            c.verification.verified_at
        );
    }

    /// Prints an error once, with its cause chain and what to do; for `run`, says explicitly
    /// that the deploy command did not run.
    pub fn error(&self, e: &GateError, is_run: bool) {
        let code = e.exit_code();
        let mut chain = e.to_string();
        let mut cur = std::error::Error::source(e);
        let mut seen = chain.clone();
        while let Some(c) = cur {
            let s = c.to_string();
            if !seen.contains(&s) {
                chain.push_str(": ");
                chain.push_str(&s);
                seen.push_str(&s);
            }
            cur = c.source();
        }
        let refused = code.is_refusal();
        if self.json {
            print_json(&json!({
                "ok": false,
                "exit_code": code.code(),
                "refused": refused,
                "deploy_ran": false,
                "error": chain,
                "hint": e.hint(),
                "restore_target": e.target_state(),
            }));
        }
        eprintln!("pre-deploy: error: {chain}");
        if let Some(h) = e.hint() {
            eprintln!("hint: {h}");
        }
        if refused && is_run {
            eprintln!(
                "pre-deploy: REFUSED (exit {}): the deploy command did not run",
                code.code()
            );
        } else if refused {
            eprintln!("pre-deploy: REFUSED (exit {})", code.code());
        }
    }
}
