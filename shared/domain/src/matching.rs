//! Matching keys: a strategy's fields, normalised and hashed into one key per record.
//!
//! The key is what makes matching atomic: the store creates a key item only if it does not
//! exist yet, so two concurrent submissions of one new person cannot both create a contact.
//! Keys are digests, so key items hold no readable personal data.

use std::fmt;

use crate::form::{FormDefinition, MatchStrategy, PSEUDO_CAMPAIGN, PSEUDO_FORM_ID};
use crate::normalize::match_value;
use crate::submission::ValidSubmission;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MatchKey(String);

impl MatchKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Rebuilds a key read back from the store.
    pub fn from_stored(s: impl Into<String>) -> Self {
        Self(s.into())
    }
}

impl fmt::Debug for MatchKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MatchKey({})", self.0)
    }
}

/// The key of `strategy` for a submission, or the first strategy field it lacks.
pub fn key_for(strategy: &MatchStrategy, form: &FormDefinition, sub: &ValidSubmission) -> Result<MatchKey, String> {
    key_from(strategy, |name| match name {
        PSEUDO_FORM_ID => Some(form.id.clone()),
        PSEUDO_CAMPAIGN => form.campaign.clone(),
        n => sub.value(n).map(str::to_owned),
    })
}

/// The key of `strategy` from any source of field values (a form submission, an imported row).
pub fn key_from(strategy: &MatchStrategy, value: impl Fn(&str) -> Option<String>) -> Result<MatchKey, String> {
    let mut values = Vec::new();
    for name in strategy.fields() {
        let raw = value(name).ok_or_else(|| name.clone())?;
        let v = match name.as_str() {
            PSEUDO_FORM_ID | PSEUDO_CAMPAIGN => raw,
            n => match_value(n, &raw),
        };
        if v.is_empty() {
            return Err(name.clone());
        }
        values.push((name, v));
    }
    // name US value RS, per field (the layout stored keys were made with).
    let chunks = values
        .iter()
        .flat_map(|(name, v)| [name.as_bytes(), &[0x1f][..], v.as_bytes(), &[0x1e][..]]);
    Ok(MatchKey(format!(
        "{}#{}",
        strategy.name(),
        hex::encode(crate::digest::sha256(chunks))
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::Email;
    use crate::records::ContactFields;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn form(id: &str) -> FormDefinition {
        serde_json::from_value(serde_json::json!({"id": id, "name": id})).unwrap()
    }

    fn sub(email: &str) -> ValidSubmission {
        ValidSubmission {
            email: Some(Email::parse(email).unwrap()),
            contact: ContactFields::default(),
            consent: None,
            custom: BTreeMap::new(),
            visitor_id: None,
        }
    }

    #[test]
    fn contact_key_is_form_independent_lead_key_is_not() {
        let (a, b) = (form("a"), form("b"));
        let s = sub("x@example.com");
        assert_eq!(key_for(&a.contact_match, &a, &s), key_for(&b.contact_match, &b, &s));
        assert_ne!(key_for(&a.lead_match, &a, &s), key_for(&b.lead_match, &b, &s));
    }

    #[test]
    fn keys_hold_no_plain_email() {
        let f = form("a");
        let k = key_for(&f.contact_match, &f, &sub("visible@example.com")).unwrap();
        assert!(!k.as_str().contains("visible"));
        assert!(k.as_str().starts_with("email#"));
    }

    #[test]
    fn missing_field_is_reported() {
        let f = form("a");
        let strategy = MatchStrategy(vec!["phone".into()]);
        assert_eq!(key_for(&strategy, &f, &sub("a@example.com")), Err("phone".to_string()));
    }

    #[test]
    fn phone_strategy_matches_formatting_variants() {
        let f = form("a");
        let strategy = MatchStrategy(vec!["last_name".into(), "phone".into()]);
        let mut s1 = sub("a@example.com");
        s1.contact.last_name = Some("Yamada".into());
        s1.contact.phone = Some("03-1234-5678".into());
        let mut s2 = s1.clone();
        s2.contact.last_name = Some("YAMADA".into());
        s2.contact.phone = Some("(03) 1234 5678".into());
        assert_eq!(key_for(&strategy, &f, &s1), key_for(&strategy, &f, &s2));
    }

    proptest! {
        #[test]
        fn same_person_same_key_whatever_the_spelling(local in "[a-z0-9]{1,20}", upper in any::<bool>(), pad in "[ ]{0,3}") {
            let f = form("a");
            let plain = format!("{local}@example.com");
            let typed = format!("{pad}{}{pad}", if upper { plain.to_uppercase() } else { plain.clone() });
            let k1 = key_for(&f.contact_match, &f, &sub(&plain)).unwrap();
            let k2 = key_for(&f.contact_match, &f, &sub(&typed)).unwrap();
            prop_assert_eq!(k1, k2);
        }

        #[test]
        fn different_people_different_keys(a in "[a-z0-9]{1,20}", b in "[a-z0-9]{1,20}") {
            prop_assume!(a != b);
            let f = form("a");
            let ka = key_for(&f.lead_match, &f, &sub(&format!("{a}@example.com"))).unwrap();
            let kb = key_for(&f.lead_match, &f, &sub(&format!("{b}@example.com"))).unwrap();
            prop_assert_ne!(ka, kb);
        }
    }
}
