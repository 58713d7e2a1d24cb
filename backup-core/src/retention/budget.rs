//! [`DeletionBudget`]: how much one retention run may remove before it must be forced.

use serde::Serialize;

use super::RetentionPlan;
use crate::manifest::BackupKind;

/// How much one run may remove without being forced: a share of each group, and a number of
/// backups in total. A plan over budget is refused as a whole, never applied in part.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeletionBudget {
    /// The largest share of a group (0.0–1.0) one run may remove; default 0.5.
    pub max_share: f64,
    /// The most backups one run may remove in total; default unlimited.
    pub max_count: Option<usize>,
}

impl Default for DeletionBudget {
    fn default() -> Self {
        DeletionBudget {
            max_share: 0.5,
            max_count: None,
        }
    }
}

/// One way a plan exceeds its budget.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetViolation {
    /// The group's environment, for a share violation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// The group's kind, for a share violation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<BackupKind>,
    /// Backups the plan removes (from the group, or in total).
    pub removals: usize,
    /// Backups there are (in the group, or in total).
    pub total: usize,
    /// What is exceeded, in words.
    pub message: String,
}

impl DeletionBudget {
    /// Every way `plan` exceeds this budget; empty when it may be applied without force.
    pub fn check(&self, plan: &RetentionPlan) -> Vec<BudgetViolation> {
        let mut out = Vec::new();
        let groups = plan.group_counts();
        for ((environment, kind), (total, removals)) in &groups {
            if *removals > 0 && (*removals as f64) > self.max_share * (*total as f64) {
                out.push(BudgetViolation {
                    environment: Some(environment.clone()),
                    kind: Some(*kind),
                    removals: *removals,
                    total: *total,
                    message: format!(
                        "it would remove {removals} of the {total} {kind} backups of environment \
                         {environment:?} ({:.0}%), more than max-delete-share {:.0}%",
                        100.0 * *removals as f64 / *total as f64,
                        100.0 * self.max_share
                    ),
                });
            }
        }
        let removals = plan.removals().count();
        if let Some(max) = self.max_count
            && removals > max
        {
            out.push(BudgetViolation {
                environment: None,
                kind: None,
                removals,
                total: plan.decisions.len(),
                message: format!(
                    "it would remove {removals} backups, more than max-delete-count {max}"
                ),
            });
        }
        out
    }
}
