//! Form definitions: configuration data that says what a landing page may submit and how
//! a submission is matched to contacts and leads.

use serde::{Deserialize, Serialize};

use crate::records::{ContactFields, LeadSource};

/// Fields that are not contact attributes but that every form understands.
pub const EMAIL: &str = "email";
pub const CONSENT: &str = "consent";
pub const VISITOR_ID: &str = "visitor_id";
/// Pseudo-fields a matching strategy may name besides submitted fields.
pub const PSEUDO_FORM_ID: &str = "form_id";
pub const PSEUDO_CAMPAIGN: &str = "campaign";

pub const DEFAULT_TEXT_MAX: usize = 255;
pub const DEFAULT_TEXTAREA_MAX: usize = 4000;
pub const DEFAULT_DEDUP_WINDOW_SECS: u32 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    #[default]
    Text,
    Textarea,
    Email,
    Phone,
    Integer,
    Select,
    Consent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub name: String,
    #[serde(default)]
    pub kind: FieldKind,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    /// Accepted values, for `select`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl FieldSpec {
    pub fn max_len(&self) -> usize {
        self.max_length.unwrap_or(match self.kind {
            FieldKind::Textarea => DEFAULT_TEXTAREA_MAX,
            FieldKind::Email => crate::email::MAX_EMAIL_LEN,
            FieldKind::Phone => 32,
            FieldKind::Integer => 18,
            _ => DEFAULT_TEXT_MAX,
        })
    }

    /// The spec a standard field has when a form does not declare it.
    pub fn standard(name: &str) -> Option<FieldSpec> {
        let kind = match name {
            EMAIL => FieldKind::Email,
            CONSENT => FieldKind::Consent,
            "phone" => FieldKind::Phone,
            VISITOR_ID => FieldKind::Text,
            n if ContactFields::NAMES.contains(&n) => FieldKind::Text,
            _ => return None,
        };
        let max_length = match name {
            VISITOR_ID => Some(64),
            "employees" => Some(64),
            _ => None,
        };
        Some(FieldSpec {
            name: name.to_owned(),
            kind,
            required: false,
            max_length,
            options: vec![],
            label: None,
        })
    }
}

/// Who may submit a form. A public request for an internal form is answered exactly as one for
/// a form that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FormAccess {
    /// Landing pages: anyone on the internet, on `POST /forms/{formId}/submissions`.
    #[default]
    Public,
    /// Back-end integrations and the ops tool's import only: the IAM-authorised
    /// `POST /internal/forms/{formId}/submissions` and `leadflow import`.
    Internal,
}

/// What a submission of a form does about a hand-off to sales.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "when", deny_unknown_fields)]
pub enum HandoffPolicy {
    /// Only the score hands a lead to sales (sales-ready: the threshold and behaviour evidence).
    #[default]
    Score,
    /// Every submission asks for a hand-off at once (a demo or contact request), even from an
    /// address nobody has confirmed: the owner's email then says so. At most `daily_cap` such
    /// hand-offs per form and day; the rest wait for the next day's room or for the score.
    OnSubmit {
        #[serde(default = "default_handoff_cap")]
        daily_cap: u32,
    },
}

fn default_handoff_cap() -> u32 {
    20
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UnknownFieldPolicy {
    /// Unknown fields are dropped, silently (the usual choice for public landing pages).
    #[default]
    Ignore,
    /// Unknown fields make the submission invalid (422).
    Reject,
}

/// A matching strategy: the fields compared, on normalised values, to find an existing record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MatchStrategy(pub Vec<String>);

impl MatchStrategy {
    pub fn default_contact() -> Self {
        MatchStrategy(vec![EMAIL.into()])
    }
    pub fn default_lead() -> Self {
        MatchStrategy(vec![EMAIL.into(), PSEUDO_FORM_ID.into()])
    }
    pub fn fields(&self) -> &[String] {
        &self.0
    }
    /// A stable name for the strategy, part of every key it makes.
    pub fn name(&self) -> String {
        self.0.join("+")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentWording {
    pub version: String,
    pub text: String,
}

/// Where a plain HTML form (no JavaScript) is sent after submitting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redirects {
    pub thank_you: String,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormDefinition {
    pub id: String,
    pub name: String,
    #[serde(default = "one")]
    pub version: u32,
    /// Who may submit it: `public` (default) or `internal` (imports, back-end integrations).
    #[serde(default)]
    pub access: FormAccess,
    /// Whether a submission asks for a hand-off by itself (`{"when": "on_submit", "daily_cap":
    /// 20}`), or only the score does (the default).
    #[serde(default, skip_serializing_if = "is_default")]
    pub handoff: HandoffPolicy,
    /// Declared fields: custom ones, and standard ones whose rules differ from the defaults.
    #[serde(default)]
    pub fields: Vec<FieldSpec>,
    #[serde(default)]
    pub unknown_fields: UnknownFieldPolicy,
    /// A field hidden from people; bots fill it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub honeypot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<ConsentWording>,
    /// Consent given on this form counts only once the person confirms it from the email it
    /// sends (double opt-in). Unset: on for every form that asks for consent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub double_opt_in: Option<bool>,
    /// Whether the leads this form creates or touches follow a nurture program. Unset: yes,
    /// except for import forms (an import is not someone asking for email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nurture: Option<bool>,
    #[serde(default = "MatchStrategy::default_contact")]
    pub contact_match: MatchStrategy,
    #[serde(default = "MatchStrategy::default_lead")]
    pub lead_match: MatchStrategy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(default)]
    pub source: LeadSource,
    /// Origins allowed to post from a browser (CORS); `*` allows any.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Redirects>,
    /// An identical submission by the same person within this window is a double click.
    #[serde(default = "default_dedup_window")]
    pub dedup_window_secs: u32,
}

fn one() -> u32 {
    1
}
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn default_dedup_window() -> u32 {
    DEFAULT_DEDUP_WINDOW_SECS
}

/// A problem in a form definition itself (configuration, not a submission).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("form {form}: {message}")]
pub struct FormConfigError {
    pub form: String,
    pub message: String,
}

impl FormDefinition {
    /// Whether submissions through this form put their lead in its nurture program.
    pub fn starts_nurture(&self) -> bool {
        self.nurture.unwrap_or(self.source != LeadSource::Import)
    }

    /// Whether consent given here waits for the person's confirmation. On a public route it
    /// always does, whatever the form says: only the mailbox's owner can opt an address in.
    pub fn double_opt_in(&self, public: bool) -> bool {
        public || self.double_opt_in.unwrap_or(self.consent.is_some())
    }

    /// Whether a caller on this route may use the form at all.
    pub fn served_to(&self, public: bool) -> bool {
        !public || self.access == FormAccess::Public
    }

    /// The rules for a field name, declared or standard; `None` for an unknown field.
    pub fn field(&self, name: &str) -> Option<FieldSpec> {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .cloned()
            .or_else(|| FieldSpec::standard(name))
    }

    /// Every field name this form accepts, declared first, then the standard ones.
    pub fn accepted_fields(&self) -> Vec<FieldSpec> {
        let mut out: Vec<FieldSpec> = self.fields.clone();
        for name in [EMAIL]
            .into_iter()
            .chain(ContactFields::NAMES)
            .chain([CONSENT, VISITOR_ID])
        {
            if !out.iter().any(|f| f.name == name) {
                out.extend(FieldSpec::standard(name));
            }
        }
        out
    }

    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.allowed_origins
            .iter()
            .any(|o| o == "*" || o.trim_end_matches('/').eq_ignore_ascii_case(origin))
    }

    /// Checks the definition itself, so a bad configuration is refused when loaded, not at submit time.
    pub fn check(&self) -> Result<(), FormConfigError> {
        let err = |message: String| {
            Err(FormConfigError {
                form: self.id.clone(),
                message,
            })
        };
        if self.id.is_empty()
            || self.id.len() > 64
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return err("id must be 1-64 characters of a-z, 0-9, '-' or '_'".into());
        }
        for (i, f) in self.fields.iter().enumerate() {
            if f.name.is_empty() || f.name.len() > 64 {
                return err(format!("field #{i} needs a name of 1-64 characters"));
            }
            if self.fields[..i].iter().any(|g| g.name == f.name) {
                return err(format!("field {} is declared twice", f.name));
            }
            if f.kind == FieldKind::Select && f.options.is_empty() {
                return err(format!("select field {} needs options", f.name));
            }
            if let Some(std) = FieldSpec::standard(&f.name) {
                if std.kind != f.kind
                    && !(std.kind == FieldKind::Text && matches!(f.kind, FieldKind::Select | FieldKind::Integer))
                {
                    return err(format!(
                        "standard field {} cannot change its kind to {:?}",
                        f.name, f.kind
                    ));
                }
            }
        }
        for (what, strategy) in [("contact_match", &self.contact_match), ("lead_match", &self.lead_match)] {
            if strategy.0.is_empty() {
                return err(format!("{what} needs at least one field"));
            }
            for name in &strategy.0 {
                let pseudo = name == PSEUDO_FORM_ID || name == PSEUDO_CAMPAIGN;
                if !pseudo && self.field(name).is_none() {
                    return err(format!("{what} names unknown field {name}"));
                }
                if what == "contact_match" && pseudo {
                    return err(format!(
                        "contact_match cannot use {name}: a person is the same on every form"
                    ));
                }
            }
        }
        if let Some(h) = &self.honeypot {
            if self.field(h).is_some() {
                return err(format!("honeypot {h} must not be a real field"));
            }
        }
        if self.lead_match.0.iter().any(|f| f == PSEUDO_CAMPAIGN) && self.campaign.is_none() {
            return err("lead_match uses campaign but the form has none".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn demo() -> FormDefinition {
        serde_json::from_value(serde_json::json!({
            "id": "demo", "name": "Demo",
            "fields": [{"name": "message", "kind": "textarea"}],
            "honeypot": "website",
            "allowed_origins": ["http://localhost:3000"]
        }))
        .unwrap()
    }

    #[test]
    fn defaults_are_the_spec_defaults() {
        let f = demo();
        assert_eq!(f.contact_match.fields(), ["email"]);
        assert_eq!(f.lead_match.fields(), ["email", "form_id"]);
        assert_eq!(f.unknown_fields, UnknownFieldPolicy::Ignore);
        assert_eq!(f.dedup_window_secs, 30);
        assert!(f.check().is_ok());
    }

    #[test]
    fn origins() {
        let f = demo();
        assert!(f.origin_allowed("http://localhost:3000"));
        assert!(!f.origin_allowed("https://evil.example"));
    }

    #[test]
    fn bad_definitions_are_refused() {
        let mut f = demo();
        f.contact_match = MatchStrategy(vec!["nope".into()]);
        assert!(f.check().is_err());
        let mut f = demo();
        f.contact_match = MatchStrategy(vec!["form_id".into()]);
        assert!(f.check().is_err());
        let mut f = demo();
        f.honeypot = Some("email".into());
        assert!(f.check().is_err());
        let mut f = demo();
        f.id = "has space".into();
        assert!(f.check().is_err());
    }
}
