//! [`Period`]: the calendar periods of the period rules, computed in a time zone.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// A calendar period of a period rule (`keep-daily` and friends).
///
/// Periods are civil periods in the configured time zone (UTC unless one is configured): a day
/// is a calendar date there, so day boundaries never move with daylight saving time; weeks are
/// ISO 8601 weeks (Monday to Sunday, numbered within the ISO week-year); an hour is one hour of
/// civil time *at one UTC offset*, so the hour repeated when clocks go back counts as two hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Period {
    /// One hour.
    Hourly,
    /// One calendar day.
    Daily,
    /// One ISO week.
    Weekly,
    /// One calendar month.
    Monthly,
    /// One calendar year.
    Yearly,
}

impl Period {
    /// Every period, shortest first.
    pub const ALL: [Period; 5] = [
        Period::Hourly,
        Period::Daily,
        Period::Weekly,
        Period::Monthly,
        Period::Yearly,
    ];

    /// The rule's name: `keep-hourly`, `keep-daily`, ….
    pub fn rule_name(self) -> &'static str {
        match self {
            Period::Hourly => "keep-hourly",
            Period::Daily => "keep-daily",
            Period::Weekly => "keep-weekly",
            Period::Monthly => "keep-monthly",
            Period::Yearly => "keep-yearly",
        }
    }

    /// The period holding `at` in `tz`, as a label that identifies it and reads well:
    /// `2026-10-25T02+02:00`, `2026-10-25`, `2026-W43`, `2026-10`, `2026`.
    pub fn label(self, at: Timestamp, tz: &TimeZone) -> String {
        let zoned = at.to_zoned(tz.clone());
        let date = zoned.date();
        match self {
            Period::Hourly => zoned.strftime("%Y-%m-%dT%H%:z").to_string(),
            Period::Daily => date.to_string(),
            Period::Weekly => {
                let week = date.iso_week_date();
                format!("{:04}-W{:02}", week.year(), week.week())
            }
            Period::Monthly => format!("{:04}-{:02}", date.year(), date.month()),
            Period::Yearly => format!("{:04}", date.year()),
        }
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.rule_name())
    }
}
