//! A submitted body, parsed (JSON or urlencoded) and validated against its form.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::email::Email;
use crate::form::{
    FieldKind, FieldSpec, FormDefinition, UnknownFieldPolicy, CONSENT, EMAIL, PSEUDO_CAMPAIGN, PSEUDO_FORM_ID,
    VISITOR_ID,
};
use crate::normalize::clean_text;
use crate::records::ContactFields;

/// More fields than any real form has: a body with more is refused before validation.
pub const MAX_FIELDS: usize = 100;
pub const MAX_FIELD_NAME_LEN: usize = 64;

/// One submitted value as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawValue {
    Text(String),
    /// JSON null.
    Null,
    /// A JSON array or object where a single value belongs.
    Compound,
}

/// The fields of a body, in the order they arrived.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawSubmission {
    pub fields: Vec<(String, RawValue)>,
}

impl RawSubmission {
    pub fn text(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n == name).and_then(|(_, v)| match v {
            RawValue::Text(t) => Some(t.as_str()),
            _ => None,
        })
    }
}

/// Why a body could not be read at all (as opposed to a field being invalid).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("JSON body must be an object of field names to values")]
    NotAnObject,
    #[error("body is not valid UTF-8 / percent-encoding: {0}")]
    BadEncoding(String),
}

pub fn parse_json(body: &[u8]) -> Result<RawSubmission, BodyError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| BodyError::MalformedJson(e.to_string()))?;
    let serde_json::Value::Object(map) = value else {
        return Err(BodyError::NotAnObject);
    };
    let fields = map
        .into_iter()
        .map(|(k, v)| {
            let raw = match v {
                serde_json::Value::String(s) => RawValue::Text(s),
                serde_json::Value::Number(n) => RawValue::Text(n.to_string()),
                serde_json::Value::Bool(b) => RawValue::Text(b.to_string()),
                serde_json::Value::Null => RawValue::Null,
                _ => RawValue::Compound,
            };
            (k, raw)
        })
        .collect();
    Ok(RawSubmission { fields })
}

/// `application/x-www-form-urlencoded`, strictly: invalid UTF-8 after decoding is an error,
/// never silently replaced.
pub fn parse_urlencoded(body: &[u8]) -> Result<RawSubmission, BodyError> {
    let text = std::str::from_utf8(body).map_err(|e| BodyError::BadEncoding(e.to_string()))?;
    let decode = |s: &str| -> Result<String, BodyError> {
        let spaced = s.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|e| BodyError::BadEncoding(e.to_string()))
    };
    let mut fields = Vec::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        fields.push((decode(k)?, RawValue::Text(decode(v)?)));
    }
    Ok(RawSubmission { fields })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A submission that passed its form's rules; every value normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidSubmission {
    pub email: Option<Email>,
    pub contact: ContactFields,
    /// `Some(true)` opted in, `Some(false)` explicitly declined, `None` not asked.
    pub consent: Option<bool>,
    /// Form-specific fields, non-empty values only.
    pub custom: BTreeMap<String, String>,
    pub visitor_id: Option<String>,
}

impl ValidSubmission {
    /// The normalised value of a field by name, as strategies and fingerprints see it.
    pub fn value(&self, name: &str) -> Option<&str> {
        match name {
            EMAIL => self.email.as_ref().map(Email::as_str),
            n if ContactFields::NAMES.contains(&n) => self.contact.get(n),
            n => self.custom.get(n).map(String::as_str),
        }
    }

    /// A digest of everything submitted, to recognise an identical resubmission.
    pub fn fingerprint(&self, form_id: &str) -> String {
        // form, then RS name US value per field (the layout stored receipts were made with).
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        if let Some(e) = &self.email {
            pairs.push((EMAIL, e.as_str()));
        }
        for (k, v) in self.contact.present() {
            pairs.push((k, v));
        }
        match self.consent {
            Some(true) => pairs.push((CONSENT, "yes")),
            Some(false) => pairs.push((CONSENT, "no")),
            None => {}
        }
        pairs.extend(self.custom.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let chunks = std::iter::once(form_id.as_bytes()).chain(
            pairs
                .iter()
                .flat_map(|(k, v)| [&[0x1e][..], k.as_bytes(), &[0x1f][..], v.as_bytes()]),
        );
        hex::encode(crate::digest::sha256(chunks))
    }
}

#[derive(Debug, Clone, PartialEq)]
// Built once per request and consumed at once; boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Validated {
    Valid(ValidSubmission),
    /// The honeypot was filled: answer as if accepted, keep apart, never a lead.
    Spam,
}

fn parse_consent(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" | "y" | "checked" => Some(true),
        "false" | "off" | "no" | "0" | "n" | "" => Some(false),
        _ => None,
    }
}

fn check_value(spec: &FieldSpec, value: &str) -> Result<(), String> {
    let max = spec.max_len();
    if value.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    match spec.kind {
        FieldKind::Email => Email::parse(value).map(|_| ()).map_err(|e| e.to_string()),
        FieldKind::Integer => value
            .parse::<i64>()
            .map(|_| ())
            .map_err(|_| "must be a whole number".into()),
        FieldKind::Select if !spec.options.iter().any(|o| o == value) => {
            Err(format!("must be one of: {}", spec.options.join(", ")))
        }
        FieldKind::Phone => {
            let ok_chars = value.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c));
            let digits = value.chars().filter(char::is_ascii_digit).count();
            if ok_chars && (6..=20).contains(&digits) {
                Ok(())
            } else {
                Err("is not a valid phone number".into())
            }
        }
        FieldKind::Consent if parse_consent(value).is_none() => Err("must be yes or no".into()),
        _ => Ok(()),
    }
}

/// Checks a raw submission against its form. Errors come back together, one per field.
pub fn validate(form: &FormDefinition, raw: &RawSubmission) -> Result<Validated, Vec<FieldError>> {
    if let Some(h) = &form.honeypot {
        if raw.text(h).is_some_and(|v| !v.trim().is_empty()) {
            return Ok(Validated::Spam);
        }
    }
    let mut errors = Vec::new();
    if raw.fields.len() > MAX_FIELDS {
        errors.push(FieldError::new("_body", format!("has more than {MAX_FIELDS} fields")));
        return Err(errors);
    }
    let mut out = ValidSubmission {
        email: None,
        contact: ContactFields::default(),
        consent: None,
        custom: BTreeMap::new(),
        visitor_id: None,
    };
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in &raw.fields {
        if form.honeypot.as_deref() == Some(name.as_str()) {
            continue;
        }
        let shown_name: String = name.chars().take(MAX_FIELD_NAME_LEN).collect();
        if seen.contains(&name.as_str()) {
            errors.push(FieldError::new(shown_name, "was given more than once"));
            continue;
        }
        seen.push(name);
        let Some(spec) = form.field(name) else {
            if form.unknown_fields == UnknownFieldPolicy::Reject {
                errors.push(FieldError::new(shown_name, "is not an accepted field"));
            }
            continue;
        };
        let text = match value {
            RawValue::Text(t) => clean_text(t),
            RawValue::Null => String::new(),
            RawValue::Compound => {
                errors.push(FieldError::new(
                    name.clone(),
                    "must be a single value, not a list or object",
                ));
                continue;
            }
        };
        if spec.kind == FieldKind::Consent {
            match parse_consent(&text) {
                Some(b) => out.consent = Some(b),
                None => errors.push(FieldError::new(name.clone(), "must be yes or no")),
            }
            continue;
        }
        if text.is_empty() {
            continue; // required-ness is checked below, once for absent and empty alike
        }
        if let Err(message) = check_value(&spec, &text) {
            errors.push(FieldError::new(name.clone(), message));
            continue;
        }
        match name.as_str() {
            EMAIL => out.email = Email::parse(&text).ok(),
            VISITOR_ID => out.visitor_id = Some(text),
            n => match out.contact.slot(n) {
                Some(slot) => *slot = Some(text),
                None => {
                    out.custom.insert(n.to_owned(), text);
                }
            },
        }
    }
    let invalid: Vec<String> = errors.iter().map(|e| e.field.clone()).collect();
    let strategy_fields = form.contact_match.fields().iter().chain(form.lead_match.fields());
    let mut required: Vec<String> = form
        .accepted_fields()
        .into_iter()
        .filter(|f| f.required)
        .map(|f| f.name)
        .collect();
    for f in strategy_fields {
        if f != PSEUDO_FORM_ID && f != PSEUDO_CAMPAIGN && !required.contains(f) {
            required.push(f.clone());
        }
    }
    for name in required.iter().map(String::as_str) {
        let present = match name {
            CONSENT => out.consent == Some(true),
            _ => out.value(name).is_some() || (name == VISITOR_ID && out.visitor_id.is_some()),
        };
        if !present && !invalid.iter().any(|f| f == name) {
            let message = if name == CONSENT {
                "must be given to submit this form"
            } else {
                "is required"
            };
            errors.push(FieldError::new(name, message));
        }
    }
    if errors.is_empty() {
        Ok(Validated::Valid(out))
    } else {
        Err(errors)
    }
}
