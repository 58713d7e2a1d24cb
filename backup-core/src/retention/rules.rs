//! [`KeepRules`]: the keep rules of one kind of backup, in the style of restic's `forget`.

use jiff::Span;

use super::period::Period;
use crate::error::{Error, Result};

/// The keep rules of one kind of backup. Every rule is optional; the rules are ORed: a verified
/// backup is kept when any rule keeps it. Unverified and failed backups fill no slot of any rule.
///
/// Counts must be positive and durations longer than zero ([`KeepRules::validate`]): a zero is
/// far more likely a mistake than a wish to keep nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeepRules {
    /// `keep-last N`: the N newest verified backups.
    pub last: Option<u32>,
    /// `keep-within DURATION`: every verified backup created within DURATION before the newest
    /// verified backup of its group (calendar units are measured in the configured time zone).
    pub within: Option<Span>,
    /// `keep-hourly N`: the newest verified backup of each of the last N hours that have one.
    pub hourly: Option<u32>,
    /// `keep-daily N`: the newest verified backup of each of the last N days that have one.
    pub daily: Option<u32>,
    /// `keep-weekly N`: the newest verified backup of each of the last N ISO weeks that have one.
    pub weekly: Option<u32>,
    /// `keep-monthly N`: the newest verified backup of each of the last N months that have one.
    pub monthly: Option<u32>,
    /// `keep-yearly N`: the newest verified backup of each of the last N years that have one.
    pub yearly: Option<u32>,
}

impl KeepRules {
    /// True when no rule is set.
    pub fn is_empty(&self) -> bool {
        self.last.is_none() && self.within.is_none() && self.periods().next().is_none()
    }

    /// The count of a period rule.
    pub fn period(&self, period: Period) -> Option<u32> {
        match period {
            Period::Hourly => self.hourly,
            Period::Daily => self.daily,
            Period::Weekly => self.weekly,
            Period::Monthly => self.monthly,
            Period::Yearly => self.yearly,
        }
    }

    /// Sets the count of a period rule.
    pub fn set_period(&mut self, period: Period, count: Option<u32>) {
        let slot = match period {
            Period::Hourly => &mut self.hourly,
            Period::Daily => &mut self.daily,
            Period::Weekly => &mut self.weekly,
            Period::Monthly => &mut self.monthly,
            Period::Yearly => &mut self.yearly,
        };
        *slot = count;
    }

    /// The period rules that are set, shortest period first.
    pub fn periods(&self) -> impl Iterator<Item = (Period, u32)> + '_ {
        Period::ALL
            .into_iter()
            .filter_map(|p| self.period(p).map(|n| (p, n)))
    }

    /// Checks that at least one rule is set, every count is positive and every duration is
    /// longer than zero.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming the offending rule.
    pub fn validate(&self) -> Result<()> {
        if self.is_empty() {
            return Err(Error::Invalid {
                what: "retention rules",
                value: String::new(),
                reason: "no keep rule is set; give at least one of keep-last, keep-within, \
                         keep-hourly, keep-daily, keep-weekly, keep-monthly, keep-yearly"
                    .into(),
            });
        }
        let counts = std::iter::once(("keep-last", self.last))
            .chain(self.periods().map(|(p, n)| (p.rule_name(), Some(n))));
        for (name, count) in counts {
            if count == Some(0) {
                return Err(Error::Invalid {
                    what: "retention rule",
                    value: format!("{name} = 0"),
                    reason: "a count of 0 keeps nothing; remove the rule or give a positive number"
                        .into(),
                });
            }
        }
        if let Some(span) = self.within
            && !span.is_positive()
        {
            return Err(Error::Invalid {
                what: "retention rule",
                value: format!("keep-within = {span:#}"),
                reason: "the duration must be longer than zero".into(),
            });
        }
        Ok(())
    }

    /// The rules in words, e.g. `keep-last 5, keep-daily 30`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.last {
            parts.push(format!("keep-last {n}"));
        }
        if let Some(span) = self.within {
            parts.push(format!("keep-within {span:#}"));
        }
        for (p, n) in self.periods() {
            parts.push(format!("{} {n}", p.rule_name()));
        }
        if parts.is_empty() {
            "no rules".into()
        } else {
            parts.join(", ")
        }
    }
}
