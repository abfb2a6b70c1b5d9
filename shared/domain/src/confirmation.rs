//! The click on an emailed confirmation link: the address's owner grants what a submission
//! asked for and only they can grant (an opt-in, changes to what they gave, the browser they
//! submitted from). Pure: the store writes what [`confirm`] decides, in one atomic write.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::history::{FieldRecord, FieldSource};
use crate::records::{Consent, ConsentConfirmation, Contact, Interaction, InteractionId, InteractionKind, LeadId};

/// Everything one confirmation writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Confirmed {
    pub lead_id: LeadId,
    /// The opt-in now in force, with both steps as evidence (an explicit opt-in also lifts an
    /// earlier unsubscribe).
    pub consent: Option<Consent>,
    /// The submitted values that differ from the stored ones, now applied.
    pub changes: BTreeMap<String, String>,
    /// The values applied, as field history (none when nothing changed).
    pub history: Option<FieldRecord>,
    /// `address_confirmed`, for scoring: the person's unconfirmed points count from now on, and
    /// the browser named by `visitor_id` is linked with its earlier events.
    pub interaction: Interaction,
    pub at: DateTime<Utc>,
}

/// What confirming the request `nonce` names does to `contact`; `None` when nothing is pending
/// under that link (confirmed already, or replaced by a later request).
pub fn confirm(contact: &Contact, nonce: &str, evidence: &ConsentConfirmation) -> Option<Confirmed> {
    let pending = contact.consent_pending.as_ref().filter(|p| p.nonce == nonce)?;
    let consent = pending.consent.clone().filter(|c| c.opt_in).map(|mut c| {
        c.confirmed = Some(evidence.clone());
        c
    });
    let changes: BTreeMap<String, String> = pending
        .effective_changes(contact)
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let receipt = InteractionId::parse(nonce);
    let history = match (receipt, changes.is_empty()) {
        (Some(receipt), false) => Some(FieldRecord {
            contact_id: contact.contact_id,
            lead_id: pending.lead_id,
            at: evidence.at,
            source: FieldSource::Form {
                form_id: pending.form_id.clone(),
                receipt,
            },
            contact: changes.clone(),
            lead: BTreeMap::new(),
            pending: false,
        }),
        _ => None,
    };
    let mut properties = serde_json::Map::new();
    properties.insert("request".into(), nonce.into());
    if let Some(v) = &pending.visitor_id {
        properties.insert("visitor_id".into(), v.clone().into());
    }
    let interaction = Interaction {
        // One per request: a repeated click names the same interaction.
        interaction_id: InteractionId::derived(&["address_confirmed", nonce]),
        lead_id: pending.lead_id,
        contact_id: contact.contact_id,
        kind: InteractionKind::AddressConfirmed,
        occurred_at: evidence.at,
        properties,
    };
    Some(Confirmed {
        lead_id: pending.lead_id,
        consent,
        changes,
        history,
        interaction,
        at: evidence.at,
    })
}

impl Confirmed {
    /// The `address_confirmed` interaction for another open lead of the same person: its
    /// unconfirmed points count from now on too (no browser: that is linked to the request's lead).
    pub fn on_lead(&self, lead: LeadId) -> Interaction {
        let request = self
            .interaction
            .properties
            .get("request")
            .and_then(|r| r.as_str())
            .unwrap_or("");
        let mut properties = serde_json::Map::new();
        properties.insert("request".into(), request.into());
        Interaction {
            interaction_id: InteractionId::derived(&["address_confirmed", request, &lead.to_string()]),
            lead_id: lead,
            properties,
            ..self.interaction.clone()
        }
    }
}

/// What confirming will do, one line per grant in Japanese and English, for the confirmation
/// page: the mailbox's holder sees every value a submitter gave before granting it (a stranger
/// may have sent a request in their name).
pub fn describe(done: &Confirmed) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    if done.consent.is_some() {
        lines.push((
            "ご案内メールの受け取り（メール配信の登録）".to_owned(),
            "Receiving our emails (subscription)".to_owned(),
        ));
    }
    for (field, value) in &done.changes {
        let (ja, en) = field_label(field);
        lines.push((format!("{ja}を「{value}」に変更"), format!("{en} becomes \"{value}\"")));
    }
    if done.interaction.properties.contains_key("visitor_id") {
        lines.push((
            "このお申し込みを送ったブラウザでの閲覧を、あなたの記録に関連付け".to_owned(),
            "Linking the browser this request was sent from (its visits count towards your record)".to_owned(),
        ));
    }
    lines
}

fn field_label(field: &str) -> (&'static str, &'static str) {
    match field {
        "last_name" => ("姓", "Last name"),
        "first_name" => ("名", "First name"),
        "company" => ("会社名", "Company"),
        "job_title" => ("役職", "Job title"),
        "industry" => ("業種", "Industry"),
        "employees" => ("従業員数", "Employees"),
        "country" => ("国", "Country"),
        "phone" => ("電話番号", "Phone"),
        _ => ("その他の項目", "Another field"),
    }
}
