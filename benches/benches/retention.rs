//! The retention planner (`KeepPolicy::plan`) over 1,000 and 10,000 backup summaries: two
//! environments, three kinds with restic-style rules, some failed, unverified and pinned
//! backups, and a current and previous deployment.
//!
//!     cargo bench -p benches --bench retention

use backup_core::{
    BackupId, BackupKind, BackupSummary, DeployedRelease, DeploymentRole, KeepPolicy, KeepRules,
    RetentionPolicy,
};
use divan::Bencher;
use divan::counter::ItemsCount;
use jiff::{SignedDuration, Timestamp};

fn main() {
    divan::main();
}

const KINDS: [BackupKind; 3] = [
    BackupKind::PreDeploy,
    BackupKind::Scheduled,
    BackupKind::Manual,
];

/// `n` backups, one every 37 minutes going back from `now`, spread over two environments and
/// three kinds; every 13th failed, every 17th never verified, every 101st pinned, every 5th
/// tagged with a commit.
fn history(n: usize, now: Timestamp) -> Vec<BackupSummary> {
    (0..n)
        .map(|i| {
            let at = now - SignedDuration::from_mins(37 * i as i64 + 1);
            let suffix = [(i >> 16) as u8, (i >> 8) as u8, i as u8];
            let environment = if i % 2 == 0 { "production" } else { "staging" };
            let verified = match i {
                _ if i % 13 == 0 => Some(false),
                _ if i % 17 == 0 => None,
                _ => Some(true),
            };
            let mut b = BackupSummary::new(
                BackupId::from_parts(at, suffix),
                KINDS[i % KINDS.len()],
                environment,
                at,
            )
            .with_verified(verified)
            .with_pinned(i % 101 == 0);
            if i % 5 == 0 {
                b = b.with_commit(format!("{:040x}", i / 5));
            }
            b
        })
        .collect()
}

fn policy() -> KeepPolicy {
    let rules = KeepRules {
        last: Some(10),
        daily: Some(7),
        weekly: Some(4),
        monthly: Some(12),
        ..KeepRules::default()
    };
    let deployments = ["production", "staging"]
        .into_iter()
        .flat_map(|environment| {
            [(DeploymentRole::Current, 0), (DeploymentRole::Previous, 5)].map(|(role, n)| {
                DeployedRelease {
                    environment: environment.to_owned(),
                    role,
                    commit: Some(format!("{n:040x}")),
                    backup_id: None,
                }
            })
        })
        .collect();
    KeepPolicy::new(KINDS.map(|kind| (kind, rules)))
        .with_min_verified(3)
        .with_deployments(deployments)
}

/// One plan over the whole history.
#[divan::bench(args = [1_000, 10_000])]
fn plan(bencher: Bencher<'_, '_>, n: usize) {
    let now: Timestamp = "2026-12-01T12:00:00Z".parse().expect("a valid time");
    let backups = history(n, now);
    let policy = policy();
    bencher.counter(ItemsCount::new(n)).bench(|| {
        let plan = policy.plan(divan::black_box(&backups), now);
        assert_eq!(plan.decisions.len(), n);
        plan
    });
}
