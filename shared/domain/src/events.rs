//! Domain events out (docs/events.md): what a CRM, a chat or a data warehouse hears of a lead.
//! Each event is derived here from the write that makes the change, and travels in that same
//! write (the adapters keep it in the transaction's outbox entry, publish it after the commit,
//! and relay what a failed publish left behind). Its id is derived from the change itself, so a
//! retried write or a relayed publish carries the same id and consumers de-duplicate by it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::intake::{ContactWrite, IntakePlan, LeadWrite};
use crate::process::ports::LeadSave;
use crate::process::stage::StageChange;
use crate::records::{ContactId, LeadId, LeadStatus};
use crate::scoring::service::ScoreWrite;
use crate::segment::Upkeep;

/// The schema version of every event's `detail` (docs/events.md). A change that removes or
/// renames a field makes a new version; new fields do not.
pub const SCHEMA_VERSION: u32 = 1;
/// The EventBridge `source` of every event.
pub const SOURCE: &str = "leadflow";

/// The events leadflow publishes, by `detail-type`.
pub const LEAD_CREATED: &str = "lead.created";
pub const LEAD_SCORED: &str = "lead.scored";
pub const LEAD_STAGE_CHANGED: &str = "lead.stage_changed";
pub const LEAD_HANDED_OFF: &str = "lead.handed_off";
pub const LEAD_CONVERTED: &str = "lead.converted";
pub const CONTACT_UNSUBSCRIBED: &str = "contact.unsubscribed";
pub const SEGMENT_JOINED: &str = "segment.joined";
pub const SEGMENT_LEFT: &str = "segment.left";
pub const ALL: [&str; 8] = [
    LEAD_CREATED,
    LEAD_SCORED,
    LEAD_STAGE_CHANGED,
    LEAD_HANDED_OFF,
    LEAD_CONVERTED,
    CONTACT_UNSUBSCRIBED,
    SEGMENT_JOINED,
    SEGMENT_LEFT,
];

/// The contact fields `lead.created` carries (what a CRM needs to make its own lead); every
/// other event carries ids only.
pub const CONTACT_FIELDS_OUT: [&str; 3] = ["last_name", "first_name", "company"];

/// One event, as its `detail` is published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainEvent {
    /// Stable for the change: the same on every retry and relay.
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub schema_version: u32,
    pub time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_id: Option<LeadId>,
    pub contact_id: ContactId,
    /// What changed, and why (per type; docs/events.md).
    pub data: Value,
}

impl DomainEvent {
    fn new(
        kind: &str,
        cause: &[&str],
        time: DateTime<Utc>,
        lead: Option<LeadId>,
        contact: ContactId,
        data: Value,
    ) -> Self {
        let mut parts = vec![kind];
        parts.extend_from_slice(cause);
        let mut event_id = crate::digest::fields_hex(&parts);
        event_id.truncate(32);
        DomainEvent {
            event_id,
            kind: kind.to_owned(),
            schema_version: SCHEMA_VERSION,
            time,
            lead_id: lead,
            contact_id: contact,
            data,
        }
    }
}

fn stage_name(s: crate::records::Stage) -> String {
    crate::segment::name_of(&s)
}

fn status_name(s: LeadStatus) -> String {
    crate::segment::name_of(&s)
}

/// A submission's events: `lead.created` when it made the lead.
pub fn of_intake(plan: &IntakePlan) -> Vec<DomainEvent> {
    let LeadWrite::Create { lead, .. } = &plan.lead else {
        return Vec::new();
    };
    // An update carries only the values applied (a public submission's wait for the mailbox).
    let (email, fields) = match &plan.contact {
        ContactWrite::Create { contact, .. } => (contact.email.as_ref(), &contact.fields),
        ContactWrite::Update { email, fields, .. } => (email.as_ref(), fields),
    };
    let mut contact = serde_json::Map::new();
    if let Some(e) = email {
        contact.insert("email".into(), Value::String(e.as_str().to_owned()));
    }
    for (k, v) in fields.present() {
        if CONTACT_FIELDS_OUT.contains(&k) {
            contact.insert(k.into(), Value::String(v.to_owned()));
        }
    }
    let lead_id = lead.lead_id.to_string();
    vec![DomainEvent::new(
        LEAD_CREATED,
        &[&lead_id],
        plan.now,
        Some(lead.lead_id),
        lead.contact_id,
        json!({
            "form_id": lead.form_id,
            "campaign": lead.campaign,
            "source": crate::segment::name_of(&lead.source),
            "stage": stage_name(lead.stage),
            "status": status_name(lead.status),
            "contact_created": matches!(plan.contact, ContactWrite::Create { .. }),
            "contact": contact,
        }),
    )]
}

/// A scoring write's events: `lead.scored` when a score's total or band changed (each change
/// with its reason), and the segments it joined or left.
pub fn of_scoring(w: &ScoreWrite) -> Vec<DomainEvent> {
    let mut out = Vec::new();
    if !w.outcome.changes.is_empty() {
        let s = &w.outcome.scoring;
        let changes: Vec<Value> = w
            .outcome
            .changes
            .iter()
            .map(|c| {
                json!({
                    "model_id": c.model_id,
                    "model_version": c.model_version,
                    "from_total": c.from_total,
                    "to_total": c.to_total,
                    "from_band": c.from_band,
                    "to_band": c.to_band,
                    "reason": c.reason,
                })
            })
            .collect();
        out.push(DomainEvent::new(
            LEAD_SCORED,
            &[&w.lead_id.to_string(), &s.version.to_string()],
            w.now,
            Some(w.lead_id),
            w.contact_id,
            json!({
                "score": s.total,
                "band": s.band,
                "grade": s.primary_grade(),
                "band_changed": w.outcome.band_changed,
                "sales_ready": s.sales_ready,
                "became_sales_ready": w.outcome.became_sales_ready,
                "changes": changes,
            }),
        ));
    }
    out.extend(of_segments(&w.upkeep));
    out
}

/// A stage move's events: `lead.stage_changed`, and `lead.converted` when it converted the lead.
pub fn of_move(lead: LeadId, contact: ContactId, change: &StageChange) -> Vec<DomainEvent> {
    let at = change.at.timestamp_millis().to_string();
    let cause = [
        lead.to_string(),
        stage_name(change.from),
        stage_name(change.to),
        status_name(change.to_status),
        at,
    ];
    let cause: Vec<&str> = cause.iter().map(String::as_str).collect();
    let mut out = vec![DomainEvent::new(
        LEAD_STAGE_CHANGED,
        &cause,
        change.at,
        Some(lead),
        contact,
        json!({
            "from": stage_name(change.from),
            "to": stage_name(change.to),
            "from_status": status_name(change.from_status),
            "to_status": status_name(change.to_status),
            "reason": change.reason,
            "by": match &change.by {
                crate::process::stage::Actor::System => "system",
                crate::process::stage::Actor::User(who) => who.as_str(),
            },
        }),
    )];
    if change.to_status == LeadStatus::Converted && change.from_status != LeadStatus::Converted {
        out.push(DomainEvent::new(
            LEAD_CONVERTED,
            &cause,
            change.at,
            Some(lead),
            contact,
            json!({ "stage": stage_name(change.to), "reason": change.reason }),
        ));
    }
    out
}

/// A move through the lead API or an activity: the move's events and the segments it changed.
pub fn of_lead_move(change: &StageChange, upkeep: &Upkeep) -> Vec<DomainEvent> {
    let Some((lead, contact)) = upkeep.who else {
        return Vec::new();
    };
    let mut out = of_move(lead, contact, change);
    out.extend(of_segments(upkeep));
    out
}

/// A process run's save: its stage moves, the hand-off it made, the segments it changed.
pub fn of_save(w: &LeadSave) -> Vec<DomainEvent> {
    let Some((_, contact)) = w.upkeep.who else {
        return Vec::new();
    };
    let mut out: Vec<DomainEvent> = w.moves.iter().flat_map(|m| of_move(w.lead_id, contact, m)).collect();
    if let Some(task) = &w.task {
        out.push(DomainEvent::new(
            LEAD_HANDED_OFF,
            &[&w.lead_id.to_string(), &task.task_id],
            task.created_at,
            Some(w.lead_id),
            contact,
            json!({
                "owner": task.owner,
                "task_id": task.task_id,
                "due_at": task.due_at,
                "stage": stage_name(w.stage),
            }),
        ));
    }
    out.extend(of_segments(&w.upkeep));
    out
}

/// `segment.joined` / `segment.left`, one per membership change, with why.
pub fn of_segments(upkeep: &Upkeep) -> Vec<DomainEvent> {
    let Some((lead, contact)) = upkeep.who else {
        return Vec::new();
    };
    upkeep
        .changes
        .iter()
        .map(|c| {
            let kind = if c.joined { SEGMENT_JOINED } else { SEGMENT_LEFT };
            DomainEvent::new(
                kind,
                &[&lead.to_string(), &c.segment, &c.at.timestamp_millis().to_string()],
                c.at,
                Some(lead),
                contact,
                json!({ "segment": c.segment, "why": c.why }),
            )
        })
        .collect()
}

/// `contact.unsubscribed`: the contact's first unsubscribe (a repeated one changes nothing;
/// after a new opt-in, the next unsubscribe is a change again).
pub fn unsubscribed(contact: ContactId, at: DateTime<Utc>, how: &str, email: Option<&str>) -> DomainEvent {
    DomainEvent::new(
        CONTACT_UNSUBSCRIBED,
        &[&contact.to_string(), &at.timestamp_millis().to_string()],
        at,
        None,
        contact,
        json!({ "how": how, "email": email }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::stage::Actor;
    use crate::records::Stage;

    fn change(to_status: LeadStatus, at: DateTime<Utc>) -> StageChange {
        StageChange {
            from: Stage::SalesAcceptance,
            to: Stage::SalesAcceptance,
            from_status: LeadStatus::Open,
            to_status,
            at,
            reason: "won".into(),
            by: Actor::User("yamamoto".into()),
        }
    }

    #[test]
    fn a_conversion_is_a_stage_change_and_a_conversion_with_stable_ids() {
        let (lead, contact, at) = (LeadId::generate(), ContactId::generate(), Utc::now());
        let events = of_move(lead, contact, &change(LeadStatus::Converted, at));
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, [LEAD_STAGE_CHANGED, LEAD_CONVERTED]);
        assert_ne!(events[0].event_id, events[1].event_id);
        assert_eq!(events[0].data["to_status"], "converted");
        assert_eq!(events[0].data["by"], "yamamoto");
        // The same change derived again (a retried write): the same ids.
        assert_eq!(of_move(lead, contact, &change(LeadStatus::Converted, at)), events);
        // Another change of the same lead: other ids.
        let later = of_move(
            lead,
            contact,
            &change(LeadStatus::Converted, at + chrono::Duration::seconds(1)),
        );
        assert_ne!(later[0].event_id, events[0].event_id);
        let moved = of_move(lead, contact, &change(LeadStatus::Qualified, at));
        assert_eq!(moved.len(), 1, "not a conversion");
        assert!(events
            .iter()
            .all(|e| e.schema_version == SCHEMA_VERSION && e.event_id.len() == 32));
    }

    #[test]
    fn an_unsubscribe_names_the_contact_only() {
        let contact = ContactId::generate();
        let at = Utc::now();
        let e = unsubscribed(contact, at, "link", Some("warm:1"));
        assert_eq!((e.lead_id, e.contact_id), (None, contact));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], CONTACT_UNSUBSCRIBED);
        assert!(json.get("lead_id").is_none());
        assert_eq!(json["data"]["email"], "warm:1");
        assert_ne!(
            unsubscribed(contact, at + chrono::Duration::days(1), "link", None).event_id,
            e.event_id
        );
    }
}
