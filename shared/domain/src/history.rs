//! Field history: every value a person gave, with when and where from, so no later submission
//! or import loses an earlier one. One record per submission, written in the submission's own
//! transaction (no extra request, no read before the write); "previous → new" is derived.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::records::{ContactId, InteractionId, LeadId};

/// Where values came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FieldSource {
    /// A form submission (an import goes through its import form), with its receipt number.
    Form { form_id: String, receipt: InteractionId },
    /// Changed by an operator or a sales activity.
    Operator { by: String },
}

/// The values one submission gave, as given (empty values never blank a stored one, so they
/// are not recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldRecord {
    pub contact_id: ContactId,
    pub lead_id: LeadId,
    pub at: DateTime<Utc>,
    pub source: FieldSource,
    /// Contact fields (last_name, company, …).
    #[serde(default)]
    pub contact: BTreeMap<String, String>,
    /// The lead's own form fields.
    #[serde(default)]
    pub lead: BTreeMap<String, String>,
    /// The contact values were given on the public route for a known person: kept as evidence,
    /// not applied (they wait for the person's confirmation, which records them again when it
    /// applies them), so they are not changes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}

/// One change of one field: what it was, what it became, when and from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    pub field: String,
    /// `None` the first time the field was given.
    pub previous: Option<String>,
    pub new: String,
    pub at: DateTime<Utc>,
    pub source: FieldSource,
}

/// The changes a person's records show, oldest first: a value given again unchanged is not a
/// change. Lead fields are named `lead.<field>`.
pub fn changes(records: &[FieldRecord]) -> Vec<FieldChange> {
    let mut sorted: Vec<&FieldRecord> = records.iter().collect();
    sorted.sort_by_key(|r| r.at);
    let mut current: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    for r in sorted {
        let given = r
            .contact
            .iter()
            .filter(|_| !r.pending)
            .map(|(k, v)| (k.clone(), v))
            .chain(r.lead.iter().map(|(k, v)| (format!("lead.{k}"), v)));
        for (field, value) in given {
            let previous = current.insert(field.clone(), value.clone());
            if previous.as_ref() != Some(value) {
                out.push(FieldChange {
                    field,
                    previous,
                    new: value.clone(),
                    at: r.at,
                    source: r.source.clone(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(at: i64, company: &str) -> FieldRecord {
        FieldRecord {
            contact_id: ContactId::generate(),
            lead_id: LeadId::generate(),
            at: DateTime::from_timestamp(at, 0).unwrap(),
            source: FieldSource::Form {
                form_id: "demo".into(),
                receipt: InteractionId::generate(),
            },
            contact: BTreeMap::from([("company".into(), company.into()), ("last_name".into(), "山田".into())]),
            lead: BTreeMap::new(),
            pending: false,
        }
    }

    #[test]
    fn values_waiting_for_confirmation_are_not_changes() {
        let mut stranger = record(200, "Evil Corp");
        stranger.pending = true;
        let c = changes(&[record(100, "Acme"), stranger]);
        assert!(c.iter().all(|c| c.new != "Evil Corp"), "{c:?}");
    }

    #[test]
    fn nothing_is_lost_and_repeats_are_not_changes() {
        // Out of order on purpose: history is ordered by time.
        let r = [record(300, "Evil Corp"), record(100, "Acme"), record(200, "Acme")];
        let c = changes(&r);
        let company: Vec<(Option<&str>, &str)> = c
            .iter()
            .filter(|c| c.field == "company")
            .map(|c| (c.previous.as_deref(), c.new.as_str()))
            .collect();
        assert_eq!(company, [(None, "Acme"), (Some("Acme"), "Evil Corp")]);
        assert_eq!(c.iter().filter(|c| c.field == "last_name").count(), 1);
    }
}
