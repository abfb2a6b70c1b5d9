//! A submitted body, parsed (JSON or urlencoded) and validated against its form.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Serialize;
use unicode_normalization::UnicodeNormalization;

use crate::email::{is_invisible, Email};
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

/// The fields of a body, in the order they arrived (a JSON body's in key order).
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
    /// An object of the body (the body itself, or one nested in it) names a key twice:
    /// refused, as a repeated urlencoded field is, rather than keeping one of the values.
    #[error("JSON body has the key {0:?} more than once")]
    DuplicateKey(String),
}

/// A JSON body: an object of field names to values, every key once (in nested objects too).
///
/// Fields come in key order, as they always have (see [`RawSubmission`]'s fields).
pub fn parse_json(body: &[u8]) -> Result<RawSubmission, BodyError> {
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(body);
    let read = JsonNode { duplicate: &duplicate }
        .deserialize(&mut de)
        .and_then(|node| de.end().map(|()| node));
    let node = read.map_err(|e| match duplicate.take() {
        Some(key) => BodyError::DuplicateKey(key),
        None => BodyError::MalformedJson(e.to_string()),
    })?;
    let Node::Object(mut fields) = node else {
        return Err(BodyError::NotAnObject);
    };
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(RawSubmission { fields })
}

/// One JSON value as the body's reader keeps it: an object's entries, or a single value.
enum Node {
    Object(Vec<(String, RawValue)>),
    Value(RawValue),
}

impl Node {
    fn into_raw(self) -> RawValue {
        match self {
            Node::Object(_) => RawValue::Compound,
            Node::Value(v) => v,
        }
    }
}

/// Reads one JSON value with serde, refusing an object that names a key twice (serde_json
/// keeps the last silently). Where the key was repeated is left in `duplicate`, so the
/// error can name it.
#[derive(Clone, Copy)]
struct JsonNode<'a> {
    duplicate: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for JsonNode<'_> {
    type Value = Node;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for JsonNode<'_> {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                let shown: String = key.chars().take(MAX_FIELD_NAME_LEN).collect();
                let error = serde::de::Error::custom(format_args!("the key {shown:?} is given more than once"));
                *self.duplicate.borrow_mut() = Some(shown);
                return Err(error);
            }
            let value = map.next_value_seed(self)?.into_raw();
            entries.push((key, value));
        }
        Ok(Node::Object(entries))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(Node::Value(RawValue::Compound))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Value(RawValue::Text(v.to_owned())))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Value(RawValue::Text(v)))
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Value(RawValue::Text(v.to_string())))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Value(RawValue::Text(v.to_string())))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Value(RawValue::Text(v.to_string())))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Node, E> {
        // Written as serde_json writes a number it read (1.5, 1e+100), as the body was read before.
        let text = serde_json::Number::from_f64(v).map_or_else(|| v.to_string(), |n| n.to_string());
        Ok(Node::Value(RawValue::Text(text)))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Node, E> {
        Ok(Node::Value(RawValue::Null))
    }
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

/// The one cleaning a submitted value gets before it is checked and stored, by its field's
/// kind:
///
/// - an address (`email` kind) is NFKC-folded and trimmed, and nothing is removed from it: a
///   control or invisible character inside it is refused by [`Email::parse`], because removing
///   it would make another address;
/// - any other value loses the invisible characters ([`is_invisible`]: bidi controls,
///   zero-width characters, the byte order mark) and is then [`clean_text`]ed (NFKC, control
///   characters removed, white space trimmed and folded to one space);
/// - a textarea keeps its line breaks: `\r\n` and a lone `\r` become `\n`, each line is cleaned
///   as above, and blank lines at its start and end are dropped.
pub fn clean_value(kind: FieldKind, raw: &str) -> String {
    let clean_line = |line: &str| clean_text(&line.replace(is_invisible, ""));
    match kind {
        FieldKind::Email => raw.nfkc().collect::<String>().trim().to_owned(),
        FieldKind::Textarea => {
            let lines: Vec<String> = raw.replace("\r\n", "\n").split(['\n', '\r']).map(clean_line).collect();
            lines.join("\n").trim_matches('\n').to_owned()
        }
        _ => clean_line(raw),
    }
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
            RawValue::Text(t) => clean_value(spec.kind, t),
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
