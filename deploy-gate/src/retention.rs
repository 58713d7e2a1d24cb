//! The `[retention]` table of the config file, validated into [`RetentionSettings`].
//!
//! ```toml
//! [retention]
//! time-zone = "Europe/Berlin"     # periods and calendar durations; default UTC
//! max-delete-share = 0.5          # a run removing more of a group needs --force
//! max-delete-count = 20           # … or more backups than this in total (default: no limit)
//! min-verified = 3                # never fewer verified backups per group (default 1)
//! failed-grace = "7d"             # forensic window of unverified and failed backups
//!
//! [retention.pre-deploy]
//! keep-last = 5
//! [retention.scheduled]
//! keep-daily = 30
//! keep-weekly = 12
//! keep-monthly = 12
//! ```
//!
//! Keys are kebab-case (snake_case is accepted too). Unknown keys, kinds without any rule, zero
//! counts and a `[retention]` table naming no kind are errors: a retention config that does not
//! say what to keep never means "keep nothing".

use std::collections::BTreeMap;

use backup_core::{BackupKind, DeletionBudget, DeployedRelease, KeepPolicy, KeepRules};
use jiff::tz::TimeZone;
use jiff::{Span, ToSpan};
use serde::Deserialize;

use crate::error::{GateError, Result};

/// `[retention]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RetentionSection {
    /// IANA time zone of periods and calendar durations (default `UTC`).
    #[serde(alias = "time_zone")]
    pub time_zone: Option<String>,
    /// Largest share of a group one run may remove without `--force` (0–1, default 0.5).
    #[serde(alias = "max_delete_share")]
    pub max_delete_share: Option<Share>,
    /// Most backups one run may remove without `--force` (default: no limit).
    #[serde(alias = "max_delete_count")]
    pub max_delete_count: Option<u32>,
    /// Floor of verified backups per group (default 1).
    #[serde(alias = "min_verified")]
    pub min_verified: Option<u32>,
    /// How long unverified and failed backups are kept (default `7d`).
    #[serde(alias = "failed_grace")]
    pub failed_grace: Option<String>,
    /// `[retention.pre-deploy]`.
    #[serde(alias = "pre_deploy")]
    pub pre_deploy: Option<KeepSection>,
    /// `[retention.scheduled]`.
    pub scheduled: Option<KeepSection>,
    /// `[retention.manual]`.
    pub manual: Option<KeepSection>,
    /// `[retention.safety]`.
    pub safety: Option<KeepSection>,
}

/// A share written as a number (`0.5`, or `1`/`0` as integers).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
pub enum Share {
    /// `0.5`.
    Float(f64),
    /// `1`.
    Int(i64),
}

impl Share {
    fn value(self) -> f64 {
        match self {
            Share::Float(f) => f,
            Share::Int(i) => i as f64,
        }
    }
}

/// `[retention.KIND]`: the keep rules of one kind.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KeepSection {
    /// The N newest verified backups.
    #[serde(alias = "keep_last")]
    pub keep_last: Option<u32>,
    /// Every verified backup within this duration of the newest (`30d`, `12h`, `6mo`).
    #[serde(alias = "keep_within")]
    pub keep_within: Option<String>,
    /// The newest of each of the last N hours with a backup.
    #[serde(alias = "keep_hourly")]
    pub keep_hourly: Option<u32>,
    /// The newest of each of the last N days with a backup.
    #[serde(alias = "keep_daily")]
    pub keep_daily: Option<u32>,
    /// The newest of each of the last N ISO weeks with a backup.
    #[serde(alias = "keep_weekly")]
    pub keep_weekly: Option<u32>,
    /// The newest of each of the last N months with a backup.
    #[serde(alias = "keep_monthly")]
    pub keep_monthly: Option<u32>,
    /// The newest of each of the last N years with a backup.
    #[serde(alias = "keep_yearly")]
    pub keep_yearly: Option<u32>,
}

impl KeepSection {
    /// The rules, validated, when any is set; `None` when none is (e.g. no `--keep-*` flag).
    ///
    /// # Errors
    ///
    /// As [`KeepSection::rules`].
    pub fn rules_if_any(&self) -> Result<Option<KeepRules>> {
        let any = self.keep_last.is_some()
            || self.keep_within.is_some()
            || self.keep_hourly.is_some()
            || self.keep_daily.is_some()
            || self.keep_weekly.is_some()
            || self.keep_monthly.is_some()
            || self.keep_yearly.is_some();
        if any {
            self.rules().map(Some)
        } else {
            Ok(None)
        }
    }

    /// The rules, validated.
    ///
    /// # Errors
    ///
    /// [`GateError::Usage`] for a malformed duration, a zero count, or no rule at all.
    pub fn rules(&self) -> Result<KeepRules> {
        let rules = KeepRules {
            last: self.keep_last,
            within: self
                .keep_within
                .as_deref()
                .map(|s| parse_span("keep-within", s))
                .transpose()?,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
        };
        rules
            .validate()
            .map_err(|e| GateError::usage(e.to_string()))?;
        Ok(rules)
    }
}

/// Retention, resolved and validated: what `prune` and the automatic retention after a backup
/// apply.
#[derive(Debug, Clone)]
pub struct RetentionSettings {
    /// Keep rules per kind; a kind without rules is never pruned.
    pub rules: BTreeMap<BackupKind, KeepRules>,
    /// Time zone of periods and calendar durations.
    pub time_zone: TimeZone,
    /// Its name as configured (`UTC` by default).
    pub time_zone_name: String,
    /// What one run may remove without `--force`.
    pub budget: DeletionBudget,
    /// Floor of verified backups per group.
    pub min_verified: u32,
    /// Forensic window of unverified and failed backups.
    pub failed_grace: Span,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            rules: BTreeMap::new(),
            time_zone: TimeZone::UTC,
            time_zone_name: "UTC".into(),
            budget: DeletionBudget::default(),
            min_verified: 1,
            failed_grace: 7.days(),
        }
    }
}

impl RetentionSettings {
    /// Validates a `[retention]` table.
    ///
    /// # Errors
    ///
    /// [`GateError::Usage`], prefixed with the table, when the table names no kind, a kind has
    /// no rule, a count is zero, a duration or the time zone does not parse, or the share is
    /// outside 0–1.
    pub fn from_section(section: &RetentionSection) -> Result<Self> {
        let mut out = RetentionSettings::default();
        let kinds = [
            (BackupKind::PreDeploy, &section.pre_deploy),
            (BackupKind::Scheduled, &section.scheduled),
            (BackupKind::Manual, &section.manual),
            (BackupKind::Safety, &section.safety),
        ];
        for (kind, table) in kinds {
            if let Some(table) = table {
                let rules = table
                    .rules()
                    .map_err(|e| GateError::usage(format!("[retention.{kind}]: {e}")))?;
                out.rules.insert(kind, rules);
            }
        }
        if out.rules.is_empty() {
            return Err(GateError::usage(
                "[retention] names no kind of backup, so it says nothing about what to keep; add \
                 a table per kind, e.g. [retention.pre-deploy] keep-last = 5 (kinds: pre-deploy, \
                 scheduled, manual, safety), or remove [retention]",
            ));
        }
        if let Some(name) = &section.time_zone {
            out.time_zone = parse_time_zone(name)?;
            out.time_zone_name.clone_from(name);
        }
        if let Some(share) = section.max_delete_share {
            let share = share.value();
            if !(0.0..=1.0).contains(&share) {
                return Err(GateError::usage(format!(
                    "[retention] max-delete-share = {share}: give a share between 0 and 1, e.g. 0.5"
                )));
            }
            out.budget.max_share = share;
        }
        out.budget.max_count = section.max_delete_count.map(|n| n as usize);
        if let Some(n) = section.min_verified {
            out.min_verified = n;
        }
        if let Some(grace) = &section.failed_grace {
            let span = parse_span("failed-grace", grace)?;
            out.failed_grace = span;
        }
        Ok(out)
    }

    /// These settings with `rules` replacing the configured rules of `kinds` (every kind when
    /// `kinds` is empty): what `prune --keep-…` flags do.
    ///
    /// # Errors
    ///
    /// [`GateError::Usage`] when `rules` is not valid.
    pub fn with_rules_for(mut self, kinds: &[BackupKind], rules: KeepRules) -> Result<Self> {
        rules
            .validate()
            .map_err(|e| GateError::usage(e.to_string()))?;
        let all = [
            BackupKind::PreDeploy,
            BackupKind::Scheduled,
            BackupKind::Manual,
            BackupKind::Safety,
        ];
        let kinds = if kinds.is_empty() { &all[..] } else { kinds };
        for kind in kinds {
            self.rules.insert(*kind, rules);
        }
        Ok(self)
    }

    /// The policy these settings describe, protecting `deployments`.
    pub fn policy(&self, deployments: Vec<DeployedRelease>) -> KeepPolicy {
        KeepPolicy::new(self.rules.clone())
            .with_time_zone(self.time_zone.clone())
            .with_min_verified(self.min_verified)
            .with_failed_grace(self.failed_grace)
            .with_deployments(deployments)
    }
}

/// Parses a duration of retention (`30d`, `12h`, `2w`, `6mo`, `1y`, or ISO 8601 `P30D`), which
/// must be longer than zero. `what` names the setting in the error.
///
/// # Errors
///
/// [`GateError::Usage`] naming the setting and the accepted forms.
pub fn parse_span(what: &str, s: &str) -> Result<Span> {
    let span: Span = s.trim().parse().map_err(|e| {
        GateError::usage(format!(
            "{what} = {s:?} is not a duration ({e}); use e.g. 14d, 12h, 2w, 6mo, 1y"
        ))
    })?;
    if !span.is_positive() {
        return Err(GateError::usage(format!(
            "{what} = {s:?}: the duration must be longer than zero"
        )));
    }
    Ok(span)
}

/// Parses `--expire-in` (`14d`, `12h`, `6mo`): longer than zero and small enough that an expiry
/// can be computed from now.
///
/// # Errors
///
/// [`GateError::Usage`] naming the flag.
pub fn parse_expire_in(s: &str) -> Result<Span> {
    let span = parse_span("--expire-in", s)?;
    if expiry(jiff::Timestamp::now(), Some(span)).is_none() {
        return Err(GateError::usage(format!(
            "--expire-in {s:?} is too far in the future"
        )));
    }
    Ok(span)
}

/// The expiry of a backup created at `created_at` that expires in `span` (calendar units in
/// UTC); `None` without a span or when the result is out of range.
pub(crate) fn expiry(created_at: jiff::Timestamp, span: Option<Span>) -> Option<jiff::Timestamp> {
    created_at
        .to_zoned(TimeZone::UTC)
        .checked_add(span?)
        .ok()
        .map(|z| z.timestamp())
}

/// Looks up an IANA time zone (`Europe/Berlin`, `UTC`).
///
/// # Errors
///
/// [`GateError::Usage`] when the system's time zone database does not know it.
pub fn parse_time_zone(name: &str) -> Result<TimeZone> {
    TimeZone::get(name).map_err(|e| {
        GateError::usage(format!(
            "[retention] time-zone = {name:?} is not a known time zone ({e}); use an IANA name \
             such as Europe/Berlin, or UTC"
        ))
    })
}

/// Parses a kind as written on the command line and in manifests.
///
/// # Errors
///
/// [`GateError::Usage`] naming the kinds.
pub fn parse_kind(s: &str) -> Result<BackupKind> {
    [
        BackupKind::PreDeploy,
        BackupKind::Scheduled,
        BackupKind::Manual,
        BackupKind::Safety,
    ]
    .into_iter()
    .find(|k| k.as_str() == s)
    .ok_or_else(|| {
        GateError::usage(format!(
            "unknown kind of backup {s:?}; use pre-deploy, scheduled, manual or safety"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_config;

    fn settings(toml: &str) -> Result<Option<RetentionSettings>> {
        let file = parse_config(toml).map_err(|e| GateError::usage(e.to_string()))?;
        file.retention
            .as_ref()
            .map(RetentionSettings::from_section)
            .transpose()
    }

    #[test]
    fn the_seed_policies_are_one_line_each() {
        let s = settings("retention.pre-deploy = { keep-last = 5 }\n")
            .expect("valid")
            .expect("configured");
        assert_eq!(s.rules[&BackupKind::PreDeploy].describe(), "keep-last 5");
        let s = settings("retention.pre-deploy = { keep-within = \"30d\" }\n")
            .expect("valid")
            .expect("configured");
        assert_eq!(
            s.rules[&BackupKind::PreDeploy].describe(),
            "keep-within 30d"
        );
        let s = settings(
            "retention.scheduled = { keep-daily = 30, keep-weekly = 12, keep-monthly = 12 }\n",
        )
        .expect("valid")
        .expect("configured");
        assert_eq!(
            s.rules[&BackupKind::Scheduled].describe(),
            "keep-daily 30, keep-weekly 12, keep-monthly 12"
        );
        assert_eq!(s.budget.max_share, 0.5);
        assert_eq!(s.min_verified, 1);
        assert_eq!(s.time_zone_name, "UTC");

        // One-liners combine, with the other settings as dotted keys too.
        let s = settings(
            "retention.pre-deploy = { keep-last = 5 }\n\
             retention.manual = { keep-within = \"30d\" }\n\
             retention.time-zone = \"Europe/Berlin\"\n\
             store = \"/var/backups/app\"\n",
        )
        .expect("valid")
        .expect("configured");
        assert_eq!(s.rules.len(), 2);
        assert_eq!(s.time_zone_name, "Europe/Berlin");
    }

    #[test]
    fn every_setting_parses() {
        let s = settings(
            "[retention]\ntime-zone = \"Europe/Berlin\"\nmax-delete-share = 1\nmax_delete_count = 20\n\
             min-verified = 3\nfailed-grace = \"36h\"\n[retention.manual]\nkeep-within = \"6mo\"\n\
             [retention.safety]\nkeep_last = 2\nkeep-yearly = 3\n",
        )
        .expect("valid")
        .expect("configured");
        assert_eq!(s.time_zone_name, "Europe/Berlin");
        assert_eq!(s.budget.max_share, 1.0);
        assert_eq!(s.budget.max_count, Some(20));
        assert_eq!(s.min_verified, 3);
        assert_eq!(format!("{:#}", s.failed_grace), "36h");
        assert_eq!(s.rules[&BackupKind::Manual].describe(), "keep-within 6mo");
        assert_eq!(
            s.rules[&BackupKind::Safety].describe(),
            "keep-last 2, keep-yearly 3"
        );
        assert!(!s.rules.contains_key(&BackupKind::PreDeploy));
    }

    #[test]
    fn empty_or_unrecognised_retention_is_an_error_never_delete_everything() {
        assert!(settings("").expect("no retention").is_none());
        for (toml, needle) in [
            ("[retention]\n", "names no kind"),
            ("[retention]\nmin-verified = 2\n", "names no kind"),
            ("[retention.pre-deploy]\n", "no keep rule is set"),
            ("[retention.pre-deploy]\nkeep-last = 0\n", "keep-last = 0"),
            ("[retention.pre-deploy]\nkeep_lats = 5\n", "keep_lats"),
            ("[retention.nightly]\nkeep-last = 5\n", "nightly"),
            ("[retention]\nkeep-last = 5\n", "keep-last"),
            (
                "[retention.manual]\nkeep-within = \"30\"\n",
                "not a duration",
            ),
            (
                "[retention.manual]\nkeep-within = \"-3d\"\n",
                "longer than zero",
            ),
            ("[retention.manual]\nkeep-last = -1\n", "keep-last"),
            (
                "[retention]\ntime-zone = \"Mars/Olympus\"\n[retention.manual]\nkeep-last = 1\n",
                "Mars/Olympus",
            ),
            (
                "[retention]\nmax-delete-share = 1.5\n[retention.manual]\nkeep-last = 1\n",
                "between 0 and 1",
            ),
            (
                "[retention]\nfailed-grace = \"0d\"\n[retention.manual]\nkeep-last = 1\n",
                "failed-grace",
            ),
        ] {
            let err = settings(toml).expect_err(toml);
            assert_eq!(err.exit_code(), crate::ExitCode::Usage);
            assert!(err.to_string().contains(needle), "{toml:?}: {err}");
        }
    }

    #[test]
    fn an_environment_section_replaces_the_retention_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join(crate::DEFAULT_CONFIG_FILE),
            "[retention.manual]\nkeep-last = 9\n\
             [env.production.retention.pre-deploy]\nkeep-last = 2\n",
        )
        .expect("write");
        let resolve = |env: Option<&str>| {
            let cli = crate::CliOverrides {
                env: env.map(str::to_owned),
                ..Default::default()
            };
            crate::Settings::resolve(&cli, &|_| None, dir.path())
                .expect("resolves")
                .retention
                .expect("configured")
        };
        let default = resolve(None);
        assert_eq!(
            default.rules.keys().copied().collect::<Vec<_>>(),
            [BackupKind::Manual]
        );
        let production = resolve(Some("production"));
        assert_eq!(
            production.rules.keys().copied().collect::<Vec<_>>(),
            [BackupKind::PreDeploy]
        );
    }

    #[test]
    fn flags_replace_the_rules_of_the_selected_kinds() {
        let base = settings("[retention.manual]\nkeep-last = 9\n")
            .expect("valid")
            .expect("configured");
        let flags = KeepRules {
            daily: Some(7),
            ..KeepRules::default()
        };
        let s = base
            .clone()
            .with_rules_for(&[BackupKind::PreDeploy], flags)
            .expect("valid");
        assert_eq!(s.rules[&BackupKind::Manual].describe(), "keep-last 9");
        assert_eq!(s.rules[&BackupKind::PreDeploy].describe(), "keep-daily 7");
        let s = base.with_rules_for(&[], flags).expect("valid");
        assert_eq!(s.rules.len(), 4);
        assert!(s.rules.values().all(|r| r.describe() == "keep-daily 7"));
        assert!(
            RetentionSettings::default()
                .with_rules_for(&[], KeepRules::default())
                .is_err()
        );
    }

    #[test]
    fn spans_and_kinds() {
        assert_eq!(format!("{:#}", parse_span("x", "14d").expect("ok")), "14d");
        assert_eq!(format!("{:#}", parse_span("x", "P2W").expect("ok")), "2w");
        assert_eq!(
            format!("{:#}", parse_span("x", "1 year").expect("ok")),
            "1y"
        );
        for bad in ["", "14", "0s", "-1d", "soon"] {
            assert!(parse_span("x", bad).is_err(), "{bad}");
        }
        let created: jiff::Timestamp = "2026-01-31T10:00:00Z".parse().expect("time");
        assert_eq!(
            expiry(created, Some(parse_expire_in("1mo").expect("ok"))),
            Some("2026-02-28T10:00:00Z".parse().expect("time"))
        );
        assert_eq!(expiry(created, None), None);
        assert!(parse_expire_in("19000y").is_err());
        assert!(parse_expire_in("0d").is_err());
        assert_eq!(parse_kind("pre-deploy").expect("ok"), BackupKind::PreDeploy);
        assert!(parse_kind("nightly").is_err());
    }
}
