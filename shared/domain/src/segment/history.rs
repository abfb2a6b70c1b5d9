//! How many interactions of each kind a lead had, day by day, for segment windows
//! (`page_viewed >= 15 within 30 days`). Kept with the lead's scoring state: scoring sees
//! every interaction exactly once, so the counts are exact and cost no extra write.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Days of history kept (the longest window a segment may use).
pub const KEEP_DAYS: u32 = 400;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InteractionDays {
    /// Kind → (day, count), oldest first.
    #[serde(default)]
    pub days: BTreeMap<String, Vec<(NaiveDate, u32)>>,
}

impl InteractionDays {
    /// Counts one interaction.
    pub fn record(&mut self, kind: &str, at: DateTime<Utc>) {
        let day = at.date_naive();
        let days = self.days.entry(kind.to_owned()).or_default();
        match days.binary_search_by_key(&day, |(d, _)| *d) {
            Ok(i) => days[i].1 += 1,
            Err(i) => days.insert(i, (day, 1)),
        }
    }

    /// Forgets days older than the longest window.
    pub fn prune(&mut self, now: DateTime<Utc>) {
        let oldest = (now - Duration::days(i64::from(KEEP_DAYS))).date_naive();
        for days in self.days.values_mut() {
            days.retain(|(d, _)| *d >= oldest);
        }
        self.days.retain(|_, d| !d.is_empty());
    }

    /// Interactions of `kind` (`any`: every kind) since `since` (by day), or in all the history kept.
    pub fn count(&self, kind: &str, since: Option<DateTime<Utc>>) -> u32 {
        let from = since.map(|s| s.date_naive());
        let sum = |days: &Vec<(NaiveDate, u32)>| -> u32 {
            days.iter()
                .filter(|(d, _)| from.is_none_or(|f| *d >= f))
                .map(|(_, n)| n)
                .sum()
        };
        if kind == "any" {
            self.days.values().map(sum).sum()
        } else {
            self.days.get(kind).map(sum).unwrap_or(0)
        }
    }
}
