//! Table tests of the period semantics and property tests of the retention invariants.

use std::collections::{BTreeMap, BTreeSet};

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, Timestamp, ToSpan};
use proptest::prelude::*;

use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().expect("a valid timestamp")
}

fn berlin() -> TimeZone {
    TimeZone::get("Europe/Berlin").expect("the system time zone database has Europe/Berlin")
}

/// A verified pre-deploy backup of environment `prod` created at `at` (RFC 3339).
fn verified(at: &str) -> BackupSummary {
    at_time(ts(at), BackupKind::PreDeploy).with_verified(Some(true))
}

fn at_time(at: Timestamp, kind: BackupKind) -> BackupSummary {
    // The suffix comes from the sub-second part so backups in the same second differ.
    let n = at.subsec_nanosecond().unsigned_abs();
    let suffix = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
    BackupSummary::new(BackupId::from_parts(at, suffix), kind, "prod", at)
}

fn rules(f: impl FnOnce(&mut KeepRules)) -> KeepPolicy {
    let mut r = KeepRules::default();
    f(&mut r);
    KeepPolicy::new([(BackupKind::PreDeploy, r)])
}

/// The creation times of the kept backups, newest first.
fn kept(policy: &KeepPolicy, backups: &[BackupSummary], now: Timestamp) -> Vec<Timestamp> {
    let plan = policy.plan(backups, now);
    assert_eq!(
        plan.decisions.len(),
        backups.len(),
        "one decision per backup"
    );
    plan.keeps().map(|d| d.created_at).collect()
}

fn later(backups: &[BackupSummary]) -> Timestamp {
    backups
        .iter()
        .map(|b| b.created_at)
        .max()
        .expect("at least one backup")
        + SignedDuration::from_hours(1)
}

fn times(list: &[&str]) -> Vec<Timestamp> {
    list.iter().map(|s| ts(s)).collect()
}

#[test]
fn keep_last_fills_slots_with_verified_backups_only() {
    let mut backups = vec![
        verified("2026-11-01T00:00:00Z"),
        verified("2026-11-02T00:00:00Z"),
        verified("2026-11-03T00:00:00Z"),
        verified("2026-11-04T00:00:00Z"),
    ];
    // Newer than every verified backup: a failed one and one never verified.
    backups.push(
        at_time(ts("2026-11-05T00:00:00Z"), BackupKind::PreDeploy).with_verified(Some(false)),
    );
    backups.push(at_time(ts("2026-11-06T00:00:00Z"), BackupKind::PreDeploy));
    let policy = rules(|r| r.last = Some(2));
    let plan = policy.plan(&backups, ts("2026-11-07T00:00:00Z"));
    let kept: Vec<Timestamp> = plan.keeps().map(|d| d.created_at).collect();
    assert_eq!(
        kept,
        times(&[
            "2026-11-06T00:00:00Z",
            "2026-11-05T00:00:00Z",
            "2026-11-04T00:00:00Z",
            "2026-11-03T00:00:00Z"
        ])
    );
    let failed = plan
        .decisions
        .iter()
        .find(|d| d.verified == Some(false))
        .expect("the failed backup");
    assert!(
        failed.reasons[0].contains("kept for forensics"),
        "{failed:?}"
    );
    let newest = plan
        .decision(&backups[3].id)
        .expect("the newest verified backup");
    assert!(newest.protected);
    assert_eq!(
        newest.reasons,
        vec!["newest verified backup of the group", "keep-last 1/2"]
    );
    let removed: Vec<_> = plan.removals().collect();
    assert_eq!(removed.len(), 2);
    assert!(removed[0].reasons[0].starts_with("no keep rule matched (keep-last 2)"));
}

#[test]
fn failed_backups_leave_after_the_forensic_window() {
    let backups = vec![
        verified("2026-11-20T00:00:00Z"),
        at_time(ts("2026-11-12T00:00:00Z"), BackupKind::PreDeploy).with_verified(Some(false)),
        at_time(ts("2026-11-14T00:00:00Z"), BackupKind::PreDeploy),
    ];
    let policy = rules(|r| r.last = Some(5)).with_failed_grace(7.days());
    let plan = policy.plan(&backups, ts("2026-11-21T00:00:00Z"));
    let removed: Vec<&str> = plan.removals().map(|d| d.reasons[0].as_str()).collect();
    assert_eq!(
        removed,
        ["its latest verification failed, and older than the forensic window (failed-grace 7d)"]
    );
    let kept = plan.decision(&backups[2].id).expect("never verified");
    assert_eq!(
        kept.reasons,
        ["never verified: kept for forensics (failed-grace 7d)"]
    );
}

#[test]
fn period_rules_count_periods_that_have_a_backup() {
    // Gaps: nothing between the 2nd and the 10th, nor between the 10th and the 30th.
    let backups: Vec<_> = [
        "2026-11-01T12:00:00Z",
        "2026-11-02T08:00:00Z",
        "2026-11-02T20:00:00Z",
        "2026-11-10T12:00:00Z",
        "2026-11-30T12:00:00Z",
    ]
    .iter()
    .map(|t| verified(t))
    .collect();
    let policy = rules(|r| r.daily = Some(3));
    assert_eq!(
        kept(&policy, &backups, later(&backups)),
        times(&[
            "2026-11-30T12:00:00Z",
            "2026-11-10T12:00:00Z",
            "2026-11-02T20:00:00Z"
        ])
    );
    let plan = policy.plan(&backups, later(&backups));
    let d = plan.decision(&backups[3].id).expect("decision");
    assert_eq!(d.reasons, ["keep-daily 2/3 (2026-11-10)"]);
}

#[test]
fn month_ends_follow_the_configured_zone() {
    let backups: Vec<_> = [
        "2026-01-31T22:00:00Z", // Jan 31 23:00 in Berlin
        "2026-01-31T23:30:00Z", // Jan 31 in UTC, Feb 1 00:30 in Berlin
        "2026-02-28T12:00:00Z",
        "2026-03-31T21:59:00Z", // Mar 31 23:59 in Berlin (summer time)
        "2026-03-31T22:00:00Z", // Apr 1 00:00 in Berlin
    ]
    .iter()
    .map(|t| verified(t))
    .collect();
    let utc = rules(|r| r.monthly = Some(12));
    assert_eq!(
        kept(&utc, &backups, later(&backups)),
        times(&[
            "2026-03-31T22:00:00Z",
            "2026-02-28T12:00:00Z",
            "2026-01-31T23:30:00Z"
        ])
    );
    // In Berlin, 23:30Z on January 31 is in February (whose newest is the 28th) and 21:59Z on
    // March 31 is still March.
    let local = rules(|r| r.monthly = Some(12)).with_time_zone(berlin());
    assert_eq!(
        kept(&local, &backups, later(&backups)),
        times(&[
            "2026-03-31T22:00:00Z",
            "2026-03-31T21:59:00Z",
            "2026-02-28T12:00:00Z",
            "2026-01-31T22:00:00Z"
        ])
    );
    assert_eq!(
        Period::Monthly.label(ts("2026-01-31T23:30:00Z"), &berlin()),
        "2026-02"
    );
}

#[test]
fn leap_days_are_days_and_month_arithmetic_clamps() {
    let backups: Vec<_> = [
        "2028-02-28T10:00:00Z",
        "2028-02-29T10:00:00Z",
        "2028-02-29T20:00:00Z",
        "2028-03-01T10:00:00Z",
    ]
    .iter()
    .map(|t| verified(t))
    .collect();
    let daily = rules(|r| r.daily = Some(3));
    assert_eq!(
        kept(&daily, &backups, later(&backups)),
        times(&[
            "2028-03-01T10:00:00Z",
            "2028-02-29T20:00:00Z",
            "2028-02-28T10:00:00Z"
        ])
    );
    let plan = daily.plan(&backups, later(&backups));
    assert!(
        plan.decision(&backups[2].id).expect("d").reasons[0].ends_with("(2028-02-29)"),
        "{plan:?}"
    );

    // One month before March 31 is February 29 (clamped) in a leap year.
    let backups: Vec<_> = [
        "2028-02-28T23:59:59Z",
        "2028-02-29T00:00:00Z",
        "2028-03-31T00:00:00Z",
    ]
    .iter()
    .map(|t| verified(t))
    .collect();
    let within = rules(|r| r.within = Some(1.month()));
    assert_eq!(
        kept(&within, &backups, later(&backups)),
        times(&["2028-03-31T00:00:00Z", "2028-02-29T00:00:00Z"])
    );

    // Yearly periods across a leap year, with a gap year.
    let backups: Vec<_> = [
        "2027-12-31T23:00:00Z",
        "2028-02-29T12:00:00Z",
        "2028-12-31T23:59:59Z",
        "2030-01-01T00:00:00Z",
    ]
    .iter()
    .map(|t| verified(t))
    .collect();
    let yearly = rules(|r| r.yearly = Some(2));
    assert_eq!(
        kept(&yearly, &backups, later(&backups)),
        times(&["2030-01-01T00:00:00Z", "2028-12-31T23:59:59Z"])
    );
}

#[test]
fn weeks_are_iso_weeks() {
    // 2026 has 53 ISO weeks: Thu 2026-12-31 to Sun 2027-01-03 are 2026-W53.
    let backups: Vec<_> = [
        "2026-12-28T12:00:00Z", // Mon, 2026-W53
        "2026-12-31T12:00:00Z", // Thu, 2026-W53
        "2027-01-01T12:00:00Z", // Fri, 2026-W53
        "2027-01-03T23:00:00Z", // Sun, 2026-W53
        "2027-01-04T00:00:00Z", // Mon, 2027-W01
    ]
    .iter()
    .map(|t| verified(t))
    .collect();
    let weekly = rules(|r| r.weekly = Some(2));
    let plan = weekly.plan(&backups, later(&backups));
    let kept: Vec<_> = plan.keeps().map(|d| d.reasons.join("; ")).collect();
    assert_eq!(
        kept,
        [
            "newest verified backup of the group; keep-weekly 1/2 (2027-W01)",
            "keep-weekly 2/2 (2026-W53)"
        ]
    );
    assert_eq!(
        Period::Weekly.label(ts("2025-12-29T00:00:00Z"), &TimeZone::UTC),
        "2026-W01"
    );
}

#[test]
fn days_follow_the_zone_across_daylight_saving_changes() {
    // Two backups a night, at 00:30 and 23:45 Berlin time, across the end of summer time
    // (2026-10-25, 03:00 CEST -> 02:00 CET): the UTC times move by an hour, the days do not.
    let tz = berlin();
    let mut backups = Vec::new();
    let mut expected = Vec::new();
    for day in 22..=28 {
        for (h, m) in [(0, 30), (23, 45)] {
            let at = jiff::civil::date(2026, 10, day)
                .at(h, m, 0, 0)
                .to_zoned(tz.clone())
                .expect("exists")
                .timestamp();
            backups.push(at_time(at, BackupKind::PreDeploy).with_verified(Some(true)));
            if h == 23 {
                expected.push(at);
            }
        }
    }
    expected.reverse();
    let policy = rules(|r| r.daily = Some(7)).with_time_zone(tz.clone());
    assert_eq!(kept(&policy, &backups, later(&backups)), expected);

    // The same history in UTC: the 23:45 backups of the summer-time days fall on the same
    // UTC day as the next night's 00:30 backup, which is later, so those are kept instead.
    let utc = rules(|r| r.daily = Some(7));
    assert_ne!(kept(&utc, &backups, later(&backups)), expected);

    // The repeated hour 02:00-03:00 on 2026-10-25 is one day but two hours.
    let backups = vec![
        verified("2026-10-25T00:30:00Z"), // 02:30 CEST
        verified("2026-10-25T01:30:00Z"), // 02:30 CET
    ];
    let daily = rules(|r| r.daily = Some(5)).with_time_zone(tz.clone());
    assert_eq!(
        kept(&daily, &backups, later(&backups)),
        times(&["2026-10-25T01:30:00Z"])
    );
    let hourly = rules(|r| r.hourly = Some(5)).with_time_zone(tz.clone());
    let plan = hourly.plan(&backups, later(&backups));
    let labels: Vec<_> = plan.keeps().map(|d| d.reasons.last().cloned()).collect();
    assert_eq!(
        labels,
        [
            Some("keep-hourly 1/5 (2026-10-25T02+01:00)".to_owned()),
            Some("keep-hourly 2/5 (2026-10-25T02+02:00)".to_owned())
        ]
    );

    // The skipped hour at the start of summer time (2026-03-29, 02:00 CET -> 03:00 CEST):
    // 01:59 CET and 03:00 CEST are consecutive hours of the same day.
    let backups = vec![
        verified("2026-03-29T00:59:00Z"),
        verified("2026-03-29T01:00:00Z"),
    ];
    assert_eq!(
        Period::Hourly.label(backups[1].created_at, &tz),
        "2026-03-29T03+02:00"
    );
    assert_eq!(kept(&hourly, &backups, later(&backups)).len(), 2);
    assert_eq!(kept(&daily, &backups, later(&backups)).len(), 1);
}

#[test]
fn durations_run_from_the_newest_verified_backup_not_the_clock() {
    // Daily backups until New Year, then the pipeline stopped; we plan half a year later.
    let start = ts("2025-11-01T03:00:00Z");
    let backups: Vec<_> = (0..62)
        .map(|d| {
            at_time(
                start + SignedDuration::from_hours(24 * d),
                BackupKind::PreDeploy,
            )
            .with_verified(Some(true))
        })
        .collect();
    let newest = backups.last().expect("some").created_at;
    let policy = rules(|r| r.within = Some(30.days()));
    let kept = kept(&policy, &backups, ts("2026-07-01T00:00:00Z"));
    assert_eq!(
        kept.len(),
        31,
        "the 30 days before the newest backup, both ends included"
    );
    assert_eq!(kept[0], newest);
    assert_eq!(kept[30], newest - SignedDuration::from_hours(24 * 30));

    // A newer failed backup does not move the reference.
    let mut with_failed = backups.clone();
    with_failed.push(
        at_time(ts("2026-06-30T00:00:00Z"), BackupKind::PreDeploy).with_verified(Some(false)),
    );
    let plan = policy.plan(&with_failed, ts("2026-07-01T00:00:00Z"));
    assert_eq!(plan.keeps().count(), 32);
}

#[test]
fn protections_hold_whatever_the_rules() {
    let mut backups: Vec<_> = (1..=9)
        .map(|d| verified(&format!("2026-11-0{d}T12:00:00Z")).with_commit(format!("c{d}")))
        .collect();
    backups[0].pinned = true; // the oldest
    backups[1].verified = Some(false); // failed, but the previous deployment ran on it
    // A newer backup of the current commit c5 exists (c5 redeployed): the newest verified of c5.
    backups[6].commit = Some("c5".into());
    let deployments = vec![
        DeployedRelease {
            environment: "prod".into(),
            role: DeploymentRole::Current,
            commit: Some("c5".into()),
            backup_id: Some(backups[4].id.clone()),
        },
        DeployedRelease {
            environment: "prod".into(),
            role: DeploymentRole::Previous,
            commit: Some("c2".into()),
            backup_id: Some(backups[1].id.clone()),
        },
        DeployedRelease {
            environment: "staging".into(),
            role: DeploymentRole::Current,
            commit: Some("c3".into()),
            backup_id: Some(backups[2].id.clone()),
        },
    ];
    let policy = rules(|r| r.last = Some(1))
        .with_deployments(deployments)
        .with_failed_grace(1.hour());
    let plan = policy.plan(&backups, ts("2026-12-01T00:00:00Z"));
    let reasons = |i: usize| plan.decision(&backups[i].id).expect("d").reasons.join("; ");
    assert_eq!(reasons(0), "pinned");
    assert_eq!(reasons(1), "the previous deployment ran on this backup");
    assert_eq!(reasons(4), "the current deployment ran on this backup");
    assert_eq!(
        reasons(6),
        "newest verified backup of the current deployed commit c5"
    );
    assert_eq!(
        reasons(8),
        "newest verified backup of the group; keep-last 1/1"
    );
    // Another environment's deployment protects nothing here.
    assert!(plan.decision(&backups[2].id).expect("d").is_removal());
    let kept: BTreeSet<usize> = (0..9)
        .filter(|&i| !plan.decision(&backups[i].id).expect("d").is_removal())
        .collect();
    assert_eq!(kept, BTreeSet::from([0, 1, 4, 6, 8]));
    assert!(plan.keeps().all(|d| d.protected));
}

#[test]
fn the_floor_of_verified_backups_tops_up_with_the_newest() {
    let backups: Vec<_> = (1..=6)
        .map(|d| verified(&format!("2026-11-0{d}T12:00:00Z")))
        .collect();
    let policy = rules(|r| r.within = Some(1.hour())).with_min_verified(3);
    let plan = policy.plan(&backups, later(&backups));
    let kept: Vec<_> = plan.keeps().map(|d| d.reasons.join("; ")).collect();
    assert_eq!(
        kept,
        [
            "newest verified backup of the group; keep-within 1h",
            "min-verified 3: the floor of verified backups",
            "min-verified 3: the floor of verified backups"
        ]
    );
}

#[test]
fn expiry_keeps_until_it_passes() {
    let mut backups: Vec<_> = (1..=4)
        .map(|d| verified(&format!("2026-11-0{d}T12:00:00Z")))
        .collect();
    backups[0].expires_at = Some(ts("2026-11-05T00:00:00Z")); // after the newest: kept
    backups[1].expires_at = Some(ts("2026-11-03T00:00:00Z")); // passed: removed
    let policy = rules(|r| r.last = Some(1));
    let plan = policy.plan(&backups, later(&backups));
    assert_eq!(
        plan.decision(&backups[0].id).expect("d").reasons,
        ["its own expiry is 2026-11-05T00:00:00Z"]
    );
    assert!(plan.decision(&backups[1].id).expect("d").is_removal());
}

#[test]
fn kinds_and_environments_are_separate_groups() {
    let mut backups = Vec::new();
    for d in 1..=5 {
        let at = ts(&format!("2026-11-0{d}T12:00:00Z"));
        for kind in [BackupKind::PreDeploy, BackupKind::Manual] {
            backups.push(at_time(at, kind).with_verified(Some(true)));
            let mut staging =
                at_time(at + SignedDuration::from_secs(1), kind).with_verified(Some(true));
            staging.environment = "staging".into();
            backups.push(staging);
        }
    }
    let policy = rules(|r| r.last = Some(2));
    let plan = policy.plan(&backups, later(&backups));
    let counts = plan.group_counts();
    assert_eq!(counts[&("prod".to_owned(), BackupKind::PreDeploy)], (5, 3));
    assert_eq!(
        counts[&("staging".to_owned(), BackupKind::PreDeploy)],
        (5, 3)
    );
    assert_eq!(counts[&("prod".to_owned(), BackupKind::Manual)], (5, 0));
    let manual = plan
        .decisions
        .iter()
        .find(|d| d.kind == BackupKind::Manual && !d.protected)
        .expect("an unprotected manual backup");
    assert_eq!(
        manual.reasons,
        ["no retention rules for manual backups: every one is kept"]
    );
}

#[test]
fn a_group_without_a_verified_backup_loses_nothing() {
    let backups: Vec<_> = (1..=5)
        .map(|d| {
            at_time(
                ts(&format!("2026-01-0{d}T12:00:00Z")),
                BackupKind::PreDeploy,
            )
            .with_verified(Some(false))
        })
        .collect();
    let policy = rules(|r| r.last = Some(1));
    let plan = policy.plan(&backups, ts("2027-01-01T00:00:00Z"));
    assert_eq!(plan.removals().count(), 0);
    assert!(plan.decisions[0].reasons[0].contains("no verified backup"));
}

#[test]
fn the_seed_policies() {
    // Two years of nightly verified backups at 02:00 UTC.
    let start = ts("2025-01-01T02:00:00Z");
    let backups: Vec<_> = (0..730)
        .map(|d| {
            at_time(
                start + SignedDuration::from_hours(24 * d),
                BackupKind::PreDeploy,
            )
            .with_verified(Some(true))
        })
        .collect();
    let newest = backups.last().expect("some").created_at; // 2026-12-31
    let now = newest + SignedDuration::from_hours(1);

    // keep the last 5
    assert_eq!(kept(&rules(|r| r.last = Some(5)), &backups, now).len(), 5);

    // keep 30 days
    let k = kept(&rules(|r| r.within = Some(30.days())), &backups, now);
    assert_eq!(k.len(), 31);

    // daily 30 + weekly 12 + monthly 12: exactly the last 30 nights, the Sunday of each of the
    // last 12 ISO weeks (the newest backup for the current week), and the last night of each of the
    // last 12 months.
    let policy = rules(|r| {
        r.daily = Some(30);
        r.weekly = Some(12);
        r.monthly = Some(12);
    });
    let got: BTreeSet<Timestamp> = kept(&policy, &backups, now).into_iter().collect();
    let mut want = BTreeSet::new();
    let dates: Vec<_> = backups
        .iter()
        .rev()
        .map(|b| (b.created_at, b.created_at.to_zoned(TimeZone::UTC).date()))
        .collect();
    want.extend(dates.iter().take(30).map(|(t, _)| *t));
    let mut weeks = BTreeSet::new();
    let mut months = BTreeSet::new();
    for (t, date) in &dates {
        let w = date.iso_week_date();
        if weeks.len() < 12 && weeks.insert((w.year(), w.week())) {
            want.insert(*t);
        }
        if months.len() < 12 && months.insert((date.year(), date.month())) {
            want.insert(*t);
        }
    }
    assert_eq!(got, want);
    assert!(got.contains(&ts("2026-01-31T02:00:00Z")));
    assert!(!got.contains(&ts("2025-12-31T02:00:00Z")));
}

#[test]
fn rules_validate_and_describe() {
    assert!(KeepRules::default().validate().is_err());
    let zero = KeepRules {
        last: Some(0),
        ..KeepRules::default()
    };
    let err = zero.validate().expect_err("zero").to_string();
    assert!(err.contains("keep-last = 0"), "{err}");
    let zero_span = KeepRules {
        within: Some(Span::new()),
        ..KeepRules::default()
    };
    assert!(zero_span.validate().is_err());
    let negative = KeepRules {
        within: Some((-3).days()),
        ..KeepRules::default()
    };
    assert!(negative.validate().is_err());
    let seed = KeepRules {
        daily: Some(30),
        weekly: Some(12),
        monthly: Some(12),
        within: Some(30.days()),
        ..KeepRules::default()
    };
    seed.validate().expect("valid");
    assert_eq!(
        seed.describe(),
        "keep-within 30d, keep-daily 30, keep-weekly 12, keep-monthly 12"
    );
}

#[test]
fn the_budget_limits_share_and_count() {
    let backups: Vec<_> = (1..=9)
        .map(|d| verified(&format!("2026-11-0{d}T12:00:00Z")))
        .collect();
    let plan = rules(|r| r.last = Some(4)).plan(&backups, later(&backups));
    assert_eq!(plan.removals().count(), 5);
    let v = DeletionBudget::default().check(&plan);
    assert_eq!(v.len(), 1);
    assert!(
        v[0].message
            .contains("remove 5 of the 9 pre-deploy backups"),
        "{}",
        v[0].message
    );
    assert!(
        DeletionBudget {
            max_share: 0.6,
            max_count: None
        }
        .check(&plan)
        .is_empty()
    );
    let v = DeletionBudget {
        max_share: 1.0,
        max_count: Some(4),
    }
    .check(&plan);
    assert!(
        v[0].message.contains("more than max-delete-count 4"),
        "{}",
        v[0].message
    );
    assert!(
        DeletionBudget {
            max_share: 1.0,
            max_count: Some(5)
        }
        .check(&plan)
        .is_empty()
    );
}

// ---- property tests ----

const KINDS: [BackupKind; 4] = [
    BackupKind::PreDeploy,
    BackupKind::Scheduled,
    BackupKind::Manual,
    BackupKind::Safety,
];

#[derive(Debug, Clone)]
struct History {
    backups: Vec<BackupSummary>,
    policy: KeepPolicy,
    budget: DeletionBudget,
    now: Timestamp,
}

fn arb_rules() -> impl Strategy<Value = Option<KeepRules>> {
    let count = || proptest::option::weighted(0.4, 1u32..6);
    (
        count(),
        proptest::option::weighted(0.3, 1i64..2000),
        count(),
        count(),
        count(),
        count(),
        count(),
    )
        .prop_map(|(last, within_h, hourly, daily, weekly, monthly, yearly)| {
            let r = KeepRules {
                last,
                within: within_h.map(|h| h.hours()),
                hourly,
                daily,
                weekly,
                monthly,
                yearly,
            };
            (!r.is_empty()).then_some(r)
        })
}

fn arb_history() -> impl Strategy<Value = History> {
    let backup = (
        0i64..400 * 24 * 60, // minutes after the start: a bit more than a year
        0usize..4,           // kind
        0usize..2,           // environment
        0u8..10,             // verification: mostly passed
        proptest::bool::weighted(0.1),
        0usize..5, // commit
        proptest::option::weighted(0.15, -2000i64..2000),
    );
    (
        proptest::collection::vec(backup, 0..60),
        proptest::collection::vec(arb_rules(), 4),
        0u32..4,
        1i64..400,
        any::<bool>(),
        proptest::collection::vec((0usize..2, 0usize..5, 0usize..60, any::<bool>()), 0..4),
        (1u32..=10, proptest::option::of(0usize..20)),
        -500i64..30_000,
    )
        .prop_map(
            |(raw, kind_rules, min_verified, grace_h, berlin_tz, deps, (share, count), now_h)| {
                let start = ts("2026-01-01T00:00:00Z");
                let backups: Vec<BackupSummary> = raw
                    .iter()
                    .enumerate()
                    .map(|(i, &(min, kind, env, v, pinned, commit, expiry))| {
                        let at = start + SignedDuration::from_mins(min);
                        let mut b = BackupSummary::new(
                            BackupId::from_parts(at, [0, (i >> 8) as u8, i as u8]),
                            KINDS[kind],
                            ["prod", "staging"][env],
                            at,
                        )
                        .with_verified(match v {
                            0 => None,
                            1 => Some(false),
                            _ => Some(true),
                        })
                        .with_commit(format!("commit{commit}"))
                        .with_pinned(pinned);
                        b.expires_at = expiry.map(|h| at + SignedDuration::from_hours(h));
                        b
                    })
                    .collect();
                let deployments = deps
                    .iter()
                    .enumerate()
                    .map(|(i, &(env, commit, backup, with_id))| DeployedRelease {
                        environment: ["prod", "staging"][env].into(),
                        role: if i == 0 {
                            DeploymentRole::Current
                        } else {
                            DeploymentRole::Previous
                        },
                        commit: Some(format!("commit{commit}")),
                        backup_id: with_id
                            .then(|| backups.get(backup).map(|b| b.id.clone()))
                            .flatten(),
                    })
                    .collect();
                let policy = KeepPolicy::new(
                    KINDS
                        .iter()
                        .zip(kind_rules)
                        .filter_map(|(k, r)| r.map(|r| (*k, r))),
                )
                .with_time_zone(if berlin_tz { berlin() } else { TimeZone::UTC })
                .with_min_verified(min_verified)
                .with_failed_grace(grace_h.hours())
                .with_deployments(deployments);
                History {
                    backups,
                    policy,
                    budget: DeletionBudget {
                        max_share: f64::from(share) / 10.0,
                        max_count: count,
                    },
                    now: start + SignedDuration::from_hours(now_h),
                }
            },
        )
}

type Group = (String, BackupKind);

fn group_of(b: &BackupSummary) -> Group {
    (b.environment.clone(), b.kind)
}

/// The backups a protection covers, computed independently of the policy.
fn protected_ids(h: &History) -> BTreeSet<BackupId> {
    let mut out = BTreeSet::new();
    let mut by_group: BTreeMap<Group, Vec<&BackupSummary>> = BTreeMap::new();
    for b in &h.backups {
        by_group.entry(group_of(b)).or_default().push(b);
        if b.pinned {
            out.insert(b.id.clone());
        }
    }
    for (group, members) in &by_group {
        let newest_verified = |pred: &dyn Fn(&BackupSummary) -> bool| {
            members
                .iter()
                .filter(|b| b.is_verified() && pred(b))
                .max_by(|a, b| {
                    a.created_at
                        .cmp(&b.created_at)
                        .then_with(|| a.id.cmp(&b.id))
                })
                .map(|b| b.id.clone())
        };
        out.extend(newest_verified(&|_| true));
        for d in h
            .policy
            .deployments
            .iter()
            .filter(|d| d.environment == group.0)
        {
            if let Some(id) = &d.backup_id
                && members.iter().any(|b| &b.id == id)
            {
                out.insert(id.clone());
            }
            out.extend(newest_verified(&|b| b.commit == d.commit));
        }
    }
    out
}

fn apply(backups: &[BackupSummary], plan: &RetentionPlan) -> Vec<BackupSummary> {
    let removed: BTreeSet<&BackupId> = plan.removals().map(|d| &d.id).collect();
    backups
        .iter()
        .filter(|b| !removed.contains(&b.id))
        .cloned()
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn one_decision_per_backup_each_with_a_reason(h in arb_history()) {
        let plan = h.policy.plan(&h.backups, h.now);
        let given: BTreeSet<_> = h.backups.iter().map(|b| &b.id).collect();
        let decided: BTreeSet<_> = plan.decisions.iter().map(|d| &d.id).collect();
        prop_assert_eq!(plan.decisions.len(), h.backups.len());
        prop_assert_eq!(given, decided);
        prop_assert!(plan.decisions.iter().all(|d| !d.reasons.is_empty()));
        prop_assert_eq!(&plan, &h.policy.plan(&h.backups, h.now), "pure: the same plan twice");
    }

    #[test]
    fn never_removes_a_protected_backup(h in arb_history()) {
        let plan = h.policy.plan(&h.backups, h.now);
        for id in protected_ids(&h) {
            let d = plan.decision(&id).expect("decided");
            prop_assert!(!d.is_removal(), "protected {} removed: {:?}", id, d);
            prop_assert!(d.protected);
        }
        for d in plan.removals() {
            prop_assert!(!d.protected);
        }
    }

    #[test]
    fn never_touches_a_kind_without_rules_or_a_group_without_a_verified_backup(h in arb_history()) {
        let plan = h.policy.plan(&h.backups, h.now);
        for d in plan.removals() {
            prop_assert!(h.policy.rules.contains_key(&d.kind));
            let group_has_verified = h.backups.iter().any(|b| {
                b.environment == d.environment && b.kind == d.kind && b.is_verified()
            });
            prop_assert!(group_has_verified);
        }
    }

    #[test]
    fn keeps_the_floor_of_verified_backups(h in arb_history()) {
        let plan = h.policy.plan(&h.backups, h.now);
        let mut verified: BTreeMap<Group, (usize, usize)> = BTreeMap::new();
        for b in h.backups.iter().filter(|b| b.is_verified()) {
            let e = verified.entry(group_of(b)).or_default();
            e.0 += 1;
            if !plan.decision(&b.id).expect("decided").is_removal() {
                e.1 += 1;
            }
        }
        for (group, (total, kept)) in verified {
            let floor = (h.policy.min_verified as usize).max(1).min(total);
            prop_assert!(kept >= floor, "{:?}: {} of {} verified kept", group, kept, total);
        }
    }

    #[test]
    fn removed_unverified_backups_are_past_the_forensic_window(h in arb_history()) {
        let plan = h.policy.plan(&h.backups, h.now);
        for d in plan.removals().filter(|d| d.verified != Some(true)) {
            let newest_verified = h
                .backups
                .iter()
                .filter(|b| b.environment == d.environment && b.kind == d.kind && b.is_verified())
                .map(|b| b.created_at)
                .max()
                .expect("a group with removals has a verified backup");
            let reference = newest_verified.min(h.now);
            let cutoff = reference
                .to_zoned(h.policy.time_zone.clone())
                .checked_sub(h.policy.failed_grace)
                .expect("in range")
                .timestamp();
            prop_assert!(d.created_at < cutoff);
        }
    }

    #[test]
    fn planning_again_after_applying_removes_nothing_more(h in arb_history()) {
        let plan = h.policy.plan(&h.backups, h.now);
        let rest = apply(&h.backups, &plan);
        let again = h.policy.plan(&rest, h.now);
        prop_assert_eq!(again.removals().count(), 0, "{:?}", again.removals().collect::<Vec<_>>());
    }

    #[test]
    fn a_run_within_budget_never_removes_more_than_the_budget(h in arb_history()) {
        let plan = h.policy.plan(&h.backups, h.now);
        let violations = h.budget.check(&plan);
        // What a guarded, unforced run removes: the plan's removals if within budget, else none.
        let removed: Vec<_> = if violations.is_empty() { plan.removals().collect() } else { vec![] };
        if let Some(max) = h.budget.max_count {
            prop_assert!(removed.len() <= max);
        }
        for ((env, kind), (total, _)) in plan.group_counts() {
            let n = removed.iter().filter(|d| d.environment == env && d.kind == kind).count();
            prop_assert!(n as f64 <= h.budget.max_share * total as f64 + 1e-9);
        }
        // And a plan is refused exactly when a group or the total is over budget.
        let over = plan.group_counts().values().any(|&(t, r)| r as f64 > h.budget.max_share * t as f64)
            || h.budget.max_count.is_some_and(|m| plan.removals().count() > m);
        prop_assert_eq!(over, !violations.is_empty());
    }
}

#[test]
fn the_generated_histories_exercise_removals_and_refusals() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut removing, mut refused, mut protected_old) = (0, 0, 0);
    for _ in 0..300 {
        let h = arb_history()
            .new_tree(&mut runner)
            .expect("a history")
            .current();
        let plan = h.policy.plan(&h.backups, h.now);
        if plan.removals().count() > 0 {
            removing += 1;
        }
        if !h.budget.check(&plan).is_empty() {
            refused += 1;
        }
        if plan
            .keeps()
            .any(|d| d.protected && d.reasons.iter().any(|r| r.contains("deploy")))
        {
            protected_old += 1;
        }
    }
    assert!(
        removing > 100,
        "{removing} of 300 histories remove something"
    );
    assert!(refused > 30, "{refused} of 300 plans are over budget");
    assert!(
        protected_old > 30,
        "{protected_old} of 300 plans protect a deployment"
    );
}
