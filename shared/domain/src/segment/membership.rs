//! Membership kept current: each writer that changes a lead re-evaluates its segments from the
//! facts it already holds and writes only what changed (who joined, who left, and why), in the
//! lead's own transaction. Time windows are kept honest by `next_check`: the moment a counted
//! interaction or activity leaves a window and flips a condition, which the writer schedules
//! through the due index like ageing.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{Condition, Facts, Segment, Subject};
use crate::process::activity::{Activity, ActivityResult, ActivityType};
use crate::records::{ContactId, LeadId};

/// The segments a lead is in, with when it joined each (kept on the lead).
pub type Memberships = BTreeMap<String, DateTime<Utc>>;

/// A sales activity as segments count it. Kept on the lead (the newest [`MAX_MARKS`]), so every
/// writer has the lead's activities without reading them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityMark {
    pub at: DateTime<Utc>,
    #[serde(rename = "type")]
    pub kind: ActivityType,
    pub result: ActivityResult,
}

/// Activities kept on a lead for segments (older ones stay in the lead's activity history).
pub const MAX_MARKS: usize = 100;

impl From<&Activity> for ActivityMark {
    fn from(a: &Activity) -> Self {
        ActivityMark {
            at: a.at,
            kind: a.request.kind,
            result: a.request.result,
        }
    }
}

/// The marks with one more activity, oldest first, at most [`MAX_MARKS`].
pub fn with_mark(marks: &[ActivityMark], activity: &Activity) -> Vec<ActivityMark> {
    let mut out = marks.to_vec();
    out.push(ActivityMark::from(activity));
    newest_marks(out)
}

/// Marks in time order, the newest [`MAX_MARKS`] of them.
pub fn newest_marks(mut marks: Vec<ActivityMark>) -> Vec<ActivityMark> {
    marks.sort_by_key(|m| m.at);
    let excess = marks.len().saturating_sub(MAX_MARKS);
    marks.drain(..excess);
    marks
}

/// A lead joining or leaving a segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipChange {
    pub segment: String,
    pub joined: bool,
    pub at: DateTime<Utc>,
    /// The blocks and the values that decided it, as people read them.
    pub why: String,
}

/// A member of a segment, as its index keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMember {
    pub lead_id: LeadId,
    pub contact_id: ContactId,
    pub joined_at: DateTime<Utc>,
    pub why: String,
}

/// What a writer adds to its transaction for the lead's segments.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Upkeep {
    /// The lead and its contact (`None` only for an upkeep that evaluated nothing).
    pub who: Option<(LeadId, ContactId)>,
    pub changes: Vec<MembershipChange>,
    /// The memberships after the changes (what the lead keeps).
    pub members: Memberships,
    /// When a window next flips a condition of a configured segment for this lead.
    pub next_check: Option<DateTime<Utc>>,
    /// A writer other than scoring found that check earlier than the lead's re-scoring entry:
    /// the entry is brought forward to it (scoring keeps the entry itself).
    pub reschedule: Option<DateTime<Utc>>,
}

impl Upkeep {
    pub fn changed(&self) -> bool {
        !self.changes.is_empty()
    }
}

/// Membership changes one write takes (two items each, in a transaction of at most 100); the
/// rest are due at once and taken by the next re-scoring pass.
pub const MAX_CHANGES: usize = 10;

/// Re-evaluates every configured segment for one lead. Memberships of segments no longer
/// configured are kept as they are (a definition that failed to load must not empty them);
/// the backfill walk settles those.
pub fn upkeep(segments: &[Segment], facts: &Facts<'_>, current: &Memberships) -> Upkeep {
    let mut out = Upkeep {
        who: Some((facts.lead.lead_id, facts.contact.contact_id)),
        members: current.clone(),
        ..Upkeep::default()
    };
    for s in segments {
        let id = &s.def.id;
        let member = s.matches(facts);
        if member != current.contains_key(id) && out.changes.len() == MAX_CHANGES {
            out.next_check = Some(facts.now);
        } else if member != current.contains_key(id) {
            out.changes.push(MembershipChange {
                segment: id.clone(),
                joined: member,
                at: facts.now,
                why: s.summary(facts),
            });
            if member {
                out.members.insert(id.clone(), facts.now);
            } else {
                out.members.remove(id);
            }
        }
        for block in s.def.blocks.values() {
            for c in &block.conditions {
                if let Some(at) = c.next_flip(facts) {
                    out.next_check = Some(out.next_check.map_or(at, |n| n.min(at)));
                }
            }
        }
    }
    out
}

impl Segment {
    /// One line: each block with ✓ or ✗ and the values it saw (`1 ✓ interactions page_viewed
    /// within 30 days >= 15: 16; 2 ✓ …`). A field condition shows only whether it held, so
    /// no address or name is copied into membership records.
    pub fn summary(&self, facts: &Facts<'_>) -> String {
        self.def
            .blocks
            .iter()
            .map(|(id, block)| {
                let parts: Vec<String> = block
                    .conditions
                    .iter()
                    .map(|c| {
                        let (actual, holds) = c.holds(facts);
                        match c.on {
                            Subject::Field => format!("{} {}", c.describe(), if holds { "✓" } else { "✗" }),
                            _ => format!("{}: {actual}", c.describe()),
                        }
                    })
                    .collect();
                let holds = if self.block_holds(id, facts) { "✓" } else { "✗" };
                format!("{id} {holds} {}", parts.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl Condition {
    /// When time alone next changes whether this condition holds: a counted interaction or
    /// activity leaving the window. `None` without a window, or when nothing counted ever
    /// leaves in a way that matters.
    pub fn next_flip(&self, f: &Facts<'_>) -> Option<DateTime<Utc>> {
        let window = Duration::days(i64::from(self.within_days?));
        let since = f.now - window;
        let first_day = since.date_naive();
        // A day counts while it is on or after the window's first day: it leaves when the
        // window starts on the next day.
        let leaves =
            |d: &chrono::NaiveDate| d.succ_opt().unwrap_or(*d).and_time(chrono::NaiveTime::MIN).and_utc() + window;
        // What is counted now, by the moment each entry leaves the window, soonest first.
        let leaving: Vec<(DateTime<Utc>, u32)> = match self.on {
            Subject::Interactions => match self.kind.as_deref().unwrap_or("any") {
                "any" => {
                    // Every kind's counts summed per day of the window, in day order.
                    let mut per_day = vec![0u32; self.within_days? as usize + 2];
                    for days in f.scoring.interactions.days.values() {
                        for (d, n) in days.iter().filter(|(d, _)| *d >= first_day) {
                            if let Some(slot) = per_day.get_mut((*d - first_day).num_days() as usize) {
                                *slot += n;
                            }
                        }
                    }
                    per_day
                        .iter()
                        .enumerate()
                        .filter(|(_, n)| **n > 0)
                        .map(|(i, n)| (leaves(&(first_day + Duration::days(i as i64))), *n))
                        .collect()
                }
                // One kind's days are kept oldest first already.
                kind => f
                    .scoring
                    .interactions
                    .days
                    .get(kind)
                    .into_iter()
                    .flatten()
                    .filter(|(d, _)| *d >= first_day)
                    .map(|(d, n)| (leaves(d), *n))
                    .collect(),
            },
            Subject::Activities => {
                // Marks are kept oldest first.
                f.activities
                    .iter()
                    .filter(|a| a.at >= since && self.counts(a))
                    .map(|a| (a.at + window + Duration::seconds(1), 1))
                    .collect()
            }
            _ => return None,
        };
        let mut count: u32 = leaving.iter().map(|(_, n)| n).sum();
        let holds = self.compare_number(f64::from(count));
        for (at, n) in leaving {
            count -= n;
            if self.compare_number(f64::from(count)) != holds {
                return Some(at);
            }
        }
        None
    }

    /// Whether an activity is of the type and result this condition counts.
    pub(crate) fn counts(&self, a: &ActivityMark) -> bool {
        self.activity_type
            .as_deref()
            .is_none_or(|t| super::name_of(&a.kind) == t)
            && self.result.as_deref().is_none_or(|r| super::name_of(&a.result) == r)
    }
}
