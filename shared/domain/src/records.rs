//! The records of SPEC.md: contact, lead, interaction, and their typed ids.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::email::Email;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered id (UUIDv7), so ids sort by creation in range keys.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }
            pub fn parse(s: &str) -> Option<Self> {
                Uuid::parse_str(s).ok().map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

id_type!(
    /// Identifies a contact (a person).
    ContactId
);
id_type!(
    /// Identifies a lead (one contact's interest in one marketing context).
    LeadId
);
id_type!(
    /// Identifies an interaction; stable, so every consumer can be idempotent on it.
    InteractionId
);

/// The standard contact attributes a form may carry. Every value is already normalised
/// ([`crate::normalize::clean_text`]) and non-empty when present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub industry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employees: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

impl ContactFields {
    /// The attribute names, in the order forms list them.
    pub const NAMES: [&'static str; 8] = [
        "last_name",
        "first_name",
        "company",
        "job_title",
        "industry",
        "employees",
        "country",
        "phone",
    ];

    pub fn get(&self, name: &str) -> Option<&str> {
        match name {
            "last_name" => self.last_name.as_deref(),
            "first_name" => self.first_name.as_deref(),
            "company" => self.company.as_deref(),
            "job_title" => self.job_title.as_deref(),
            "industry" => self.industry.as_deref(),
            "employees" => self.employees.as_deref(),
            "country" => self.country.as_deref(),
            "phone" => self.phone.as_deref(),
            _ => None,
        }
    }

    pub fn slot(&mut self, name: &str) -> Option<&mut Option<String>> {
        match name {
            "last_name" => Some(&mut self.last_name),
            "first_name" => Some(&mut self.first_name),
            "company" => Some(&mut self.company),
            "job_title" => Some(&mut self.job_title),
            "industry" => Some(&mut self.industry),
            "employees" => Some(&mut self.employees),
            "country" => Some(&mut self.country),
            "phone" => Some(&mut self.phone),
            _ => None,
        }
    }

    /// The present values as (name, value) pairs.
    pub fn present(&self) -> impl Iterator<Item = (&'static str, &str)> {
        Self::NAMES.into_iter().filter_map(|n| self.get(n).map(|v| (n, v)))
    }

    /// Applies a patch: a submitted non-empty value replaces; an absent one never blanks.
    pub fn merge(&mut self, patch: &ContactFields) {
        for (name, value) in patch.present() {
            if let Some(slot) = self.slot(name) {
                *slot = Some(value.to_owned());
            }
        }
    }
}

/// Evidence of an email opt-in (or its refusal), kept with the contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub opt_in: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wording_version: Option<String>,
    pub at: DateTime<Utc>,
    pub source_form: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The second step of a double opt-in: when, from where, the person confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed: Option<ConsentConfirmation>,
}

/// Evidence of a confirmed opt-in (the click on the emailed link).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentConfirmation {
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// What a submission asked for that only the address's owner can grant, waiting for their
/// click on the emailed confirmation link: an opt-in (double opt-in), changes to what a known
/// person gave (a public submission), and the browser it came from. Until then it grants
/// nothing: no marketing email, no changed values, no browser linked. A later request replaces
/// an earlier one (its link then confirms nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingConsent {
    /// The opt-in asked for, if the submission asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<Consent>,
    /// The lead whose submission asked: the process sends the confirmation email for it.
    pub lead_id: LeadId,
    /// Names this request (the submission's id): a confirmation link confirms only its own.
    pub nonce: String,
    /// Values the submission gave that differ from (or may differ from) the stored ones,
    /// applied with field history when confirmed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub changes: BTreeMap<String, String>,
    /// The submitting browser's visitor id, linked to the person when confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor_id: Option<String>,
    /// The form it came through (field history names it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub form_id: String,
}

impl PendingConsent {
    /// The changes that would still change something on `contact`.
    pub fn effective_changes<'a>(&'a self, contact: &'a Contact) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.changes
            .iter()
            .filter(move |(k, v)| contact.fields.get(k) != Some(v.as_str()))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether confirming would do anything for `contact`: an opt-in not yet in force, a
    /// value that differs, or a browser to link.
    pub fn asks_anything(&self, contact: &Contact) -> bool {
        let opt_in = self.consent.as_ref().is_some_and(|c| c.opt_in);
        let subscribed = contact.consent.as_ref().is_some_and(|c| c.opt_in) && contact.unsubscribed_at.is_none();
        (opt_in && !subscribed) || self.visitor_id.is_some() || self.effective_changes(contact).next().is_some()
    }
}

/// Why a contact may no longer be emailed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    pub reason: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub contact_id: ContactId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    #[serde(flatten)]
    pub fields: ContactFields,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<Consent>,
    /// Consent waiting for its confirmation (double opt-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_pending: Option<PendingConsent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsubscribed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<Suppression>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// When the address's owner last clicked one of our confirmation links (evidence; each
    /// public submission still needs its own confirmation to count towards sales-ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_confirmed_at: Option<DateTime<Utc>>,
    /// When the last confirmation email went to this address (at most one a day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation_sent_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LeadSource {
    #[default]
    WebForm,
    EventRegistration,
    Import,
    LinkedinLeadGen,
    Manual,
}

/// The default lead business process (SPEC.md, Process stages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    #[default]
    Inquiry,
    AutomatedMarketingQualification,
    TelemarketingAcceptance,
    TelemarketingQualification,
    SalesAcceptance,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LeadStatus {
    #[default]
    Open,
    Qualified,
    Converted,
    Disqualified,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lead {
    pub lead_id: LeadId,
    pub contact_id: ContactId,
    pub form_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    pub source: LeadSource,
    pub stage: Stage,
    pub status: LeadStatus,
    pub created_at: DateTime<Utc>,
    pub last_activity_at: DateTime<Utc>,
    /// Form submissions recorded against this lead.
    pub submissions: u32,
    /// Whether the lead follows its band's nurture program. Off for imported leads until an
    /// import with `--nurture` or a form submission of their own opts them in.
    #[serde(default = "yes")]
    pub nurture_enabled: bool,
    /// Form-specific (non-contact) fields, latest non-empty value each. Always present
    /// (possibly empty) so that an update can set one entry.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// A submission of an `on_submit` hand-off form (a demo request) asked for sales at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff_requested: Option<HandoffRequest>,
}

/// A lead's own request for sales (an `on_submit` hand-off form), with that form's daily cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoffRequest {
    pub at: DateTime<Utc>,
    pub daily_cap: u32,
    /// Made on the public route: anyone may have sent it (the owner's email says so).
    #[serde(default)]
    pub unconfirmed: bool,
}

impl Contact {
    /// A contact first seen at `now`, with nothing but an address and the values given.
    pub fn new(email: Option<Email>, fields: ContactFields, now: DateTime<Utc>) -> Contact {
        Contact {
            contact_id: ContactId::generate(),
            email,
            fields,
            consent: None,
            consent_pending: None,
            unsubscribed_at: None,
            suppressed: None,
            owner: None,
            address_confirmed_at: None,
            confirmation_sent_at: None,
            created_at: now,
            updated_at: now,
        }
    }
}

impl Lead {
    /// A lead of `contact` from a web form, open at inquiry, in nurture.
    pub fn new(contact_id: ContactId, form_id: &str, now: DateTime<Utc>) -> Lead {
        Lead {
            lead_id: LeadId::generate(),
            contact_id,
            form_id: form_id.to_owned(),
            campaign: None,
            source: LeadSource::WebForm,
            stage: Stage::Inquiry,
            status: LeadStatus::Open,
            created_at: now,
            last_activity_at: now,
            submissions: 1,
            nurture_enabled: true,
            fields: BTreeMap::new(),
            handoff_requested: None,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InteractionKind {
    FormSubmitted,
    /// A row of a contact import: not a form submission (the default model scores it 0).
    Imported,
    PageViewed,
    ContentDownloaded,
    WebinarRegistered,
    WebinarAttended,
    EmailDelivered,
    EmailOpened,
    EmailClicked,
    EmailBounced,
    EmailComplained,
    Unsubscribed,
    /// The address's owner clicked a confirmation link: what their unconfirmed submissions
    /// earned now counts, and the browser they submitted from is linked.
    AddressConfirmed,
    Custom(String),
}

impl InteractionKind {
    /// The name scoring rules use: `email_opened`, `page_viewed`, or a custom type's own name.
    pub fn name(&self) -> &str {
        match self {
            InteractionKind::FormSubmitted => "form_submitted",
            InteractionKind::Imported => "imported",
            InteractionKind::PageViewed => "page_viewed",
            InteractionKind::ContentDownloaded => "content_downloaded",
            InteractionKind::WebinarRegistered => "webinar_registered",
            InteractionKind::WebinarAttended => "webinar_attended",
            InteractionKind::EmailDelivered => "email_delivered",
            InteractionKind::EmailOpened => "email_opened",
            InteractionKind::EmailClicked => "email_clicked",
            InteractionKind::EmailBounced => "email_bounced",
            InteractionKind::EmailComplained => "email_complained",
            InteractionKind::Unsubscribed => "unsubscribed",
            InteractionKind::AddressConfirmed => "address_confirmed",
            InteractionKind::Custom(name) => name,
        }
    }
}

impl InteractionId {
    /// A deterministic id for an event that may be delivered more than once (an SES event, a
    /// client's event id), so every delivery names the same interaction.
    pub fn derived(parts: &[&str]) -> Self {
        let digest = crate::digest::fields(parts);
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        InteractionId(Uuid::new_v8(bytes))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    pub interaction_id: InteractionId,
    pub lead_id: LeadId,
    pub contact_id: ContactId,
    pub kind: InteractionKind,
    pub occurred_at: DateTime<Utc>,
    #[serde(default)]
    pub properties: serde_json::Map<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_never_blanks() {
        let mut stored = ContactFields {
            last_name: Some("山田".into()),
            company: Some("Acme".into()),
            ..Default::default()
        };
        let patch = ContactFields {
            company: Some("Acme Japan".into()),
            first_name: Some("太郎".into()),
            ..Default::default()
        };
        stored.merge(&patch);
        assert_eq!(stored.last_name.as_deref(), Some("山田"));
        assert_eq!(stored.first_name.as_deref(), Some("太郎"));
        assert_eq!(stored.company.as_deref(), Some("Acme Japan"));
    }

    #[test]
    fn ids_are_time_ordered() {
        let a = LeadId::generate();
        let b = LeadId::generate();
        assert!(a < b);
        assert_eq!(LeadId::parse(&a.to_string()), Some(a));
    }
}
