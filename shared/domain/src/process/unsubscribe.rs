//! Signed links: only the holder of an email's link can unsubscribe its contact, or confirm
//! its own opt-in (double opt-in). Each kind has its own prefix, so one cannot stand for the
//! other, and its own [`Keyring`] (a deployment keeps one for unsubscribe links and another for
//! confirmation links, so a key of one kind never verifies the other).
//!
//! Formats (`<sig>` is the hex HMAC-SHA256 of everything before it, prefix and key id included):
//!
//! | link | format |
//! |---|---|
//! | unsubscribe, one email's | `u2.<kid>.<contact>.<hex of the email's send key>.<sig>` |
//! | unsubscribe, a contact's | `u2.<kid>.<contact>.<sig>` |
//! | opt-in confirmation | `c2.<kid>.<contact>.<nonce>.<sig>` |
//!
//! `<kid>` names the key of the keyring that signed the link, so rotating keys (a new current
//! key) keeps every link already sent working until its key is taken out of the keyring.
//!
//! Links from before key ids (`v1.<contact>.<sig>`, `v2.<contact>.<hex key>.<sig>`,
//! `c1.<contact>.<nonce>.<sig>`) are in emails already sent and must keep working: they verify
//! against the keyring's key named [`LEGACY_KID`] (`legacy`, the deployment's former single
//! secret), and only that one; a keyring without a `legacy` key refuses them. No link expires.

use std::collections::BTreeMap;
use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::records::ContactId;

type HmacSha256 = Hmac<Sha256>;

/// The key id that verifies links from before key ids (signed with the former single secret).
pub const LEGACY_KID: &str = "legacy";
/// Keys shorter than this are refused: a signing key needs at least 256 bits of text.
pub const MIN_KEY_LEN: usize = 32;
const MAX_KID_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    #[error("the keyring is not a JSON object of string keys: {0}")]
    NotJson(String),
    #[error("the keyring has no \"current\" key id")]
    NoCurrent,
    #[error("the keyring's current key id {0:?} names no key in it")]
    CurrentMissing(String),
    #[error("key id {0:?}: 1-64 letters, digits, '-' or '_'")]
    BadKid(String),
    #[error("key {0:?}: at least {MIN_KEY_LEN} characters")]
    ShortKey(String),
    #[error("key {0:?}: a string")]
    NotAString(String),
}

/// The keys one kind of link is signed with, by key id: the current one signs, every one
/// verifies the links that name it. Its `Debug` never shows a key.
#[derive(Clone)]
pub struct Keyring {
    current: String,
    keys: BTreeMap<String, Vec<u8>>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .field("keys", &format_args!("[redacted]"))
            .finish()
    }
}

fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Keyring {
    /// A keyring of `keys` (id, key) whose `current` one signs.
    pub fn new(current: &str, keys: impl IntoIterator<Item = (String, Vec<u8>)>) -> Result<Self, KeyringError> {
        let mut map = BTreeMap::new();
        for (kid, key) in keys {
            if !valid_kid(&kid) {
                return Err(KeyringError::BadKid(kid));
            }
            if key.len() < MIN_KEY_LEN {
                return Err(KeyringError::ShortKey(kid));
            }
            map.insert(kid, key);
        }
        if !map.contains_key(current) {
            return Err(KeyringError::CurrentMissing(current.to_owned()));
        }
        Ok(Keyring {
            current: current.to_owned(),
            keys: map,
        })
    }

    /// A secret's text: `{"current": "k2", "k1": "…", "k2": "…", "legacy": "…"}` (every other
    /// member is a key, by id; what the template's generated secret looks like), or the same
    /// with the keys nested: `{"current": "k2", "keys": {"k1": "…", "k2": "…"}}`. A key is the
    /// UTF-8 bytes of its text. Errors name key ids, never keys.
    pub fn parse(text: &str) -> Result<Self, KeyringError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| KeyringError::NotJson(format!("line {}", e.line())))?;
        let object = value
            .as_object()
            .ok_or_else(|| KeyringError::NotJson("not an object".into()))?;
        let current = object
            .get("current")
            .and_then(serde_json::Value::as_str)
            .ok_or(KeyringError::NoCurrent)?;
        let members = match object.get("keys") {
            Some(serde_json::Value::Object(nested)) => nested.clone(),
            _ => object
                .iter()
                .filter(|(k, _)| k.as_str() != "current")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let mut keys = Vec::with_capacity(members.len());
        for (kid, v) in members {
            let key = v.as_str().ok_or_else(|| KeyringError::NotAString(kid.clone()))?;
            keys.push((kid, key.as_bytes().to_vec()));
        }
        Keyring::new(current, keys)
    }

    /// The keyring with `key` as its [`LEGACY_KID`] key (the deployment's former single key,
    /// kept in a secret of its own), unless it holds one already: its own wins.
    pub fn with_legacy(mut self, key: &[u8]) -> Result<Self, KeyringError> {
        if key.len() < MIN_KEY_LEN {
            return Err(KeyringError::ShortKey(LEGACY_KID.to_owned()));
        }
        self.keys.entry(LEGACY_KID.to_owned()).or_insert_with(|| key.to_vec());
        Ok(self)
    }

    /// The id of the key new links are signed with.
    pub fn current(&self) -> &str {
        &self.current
    }

    /// Every key id (none of them secret).
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    pub(crate) fn key(&self, kid: &str) -> Option<&[u8]> {
        self.keys.get(kid).map(Vec::as_slice)
    }

    /// `<prefix>.<current kid>.<rest>.<sig>`.
    pub(crate) fn sign(&self, prefix: &str, rest: &str) -> String {
        let key = self.key(&self.current).expect("the current key is in the keyring");
        let payload = format!("{prefix}.{}.{rest}", self.current);
        let sig = hex::encode(mac(key, &payload).finalize().into_bytes());
        format!("{payload}.{sig}")
    }
}

pub(crate) fn mac(key: &[u8], payload: &str) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    m.update(payload.as_bytes());
    m
}

/// Whether `sig` (hex) is the HMAC of `payload` under `key` (checked in constant time).
pub(crate) fn signed(key: &[u8], payload: &str, sig: &str) -> Option<()> {
    let sig = hex::decode(sig).ok()?;
    mac(key, payload).verify_slice(&sig).ok()
}

/// A contact's unsubscribe link (`u2.<kid>.<contact>.<sig>`). No expiry: a link in an old email
/// must keep working.
pub fn token(keys: &Keyring, contact: ContactId) -> String {
    keys.sign("u2", &contact.0.simple().to_string())
}

/// The unsubscribe link of one nurture email (`warm:1`), so its unsubscribe is counted for that
/// program and step: `u2.<kid>.<contact>.<hex of the send key>.<sig>`.
pub fn email_token(keys: &Keyring, contact: ContactId, email_key: &str) -> String {
    keys.sign("u2", &format!("{}.{}", contact.0.simple(), hex::encode(email_key)))
}

/// The contact a token names, if its signature is ours.
pub fn verify(keys: &Keyring, token: &str) -> Option<ContactId> {
    verify_link(keys, token).map(|(c, _)| c)
}

/// The contact and, for an email's own link ([`email_token`]), the email's send key.
pub fn verify_link(keys: &Keyring, token: &str) -> Option<(ContactId, Option<String>)> {
    let (payload, sig) = token.rsplit_once('.')?;
    let (id, key) = if let Some(rest) = payload.strip_prefix("u2.") {
        let (kid, rest) = rest.split_once('.')?;
        signed(keys.key(kid)?, payload, sig)?;
        match rest.split_once('.') {
            Some((id, key)) => (id, Some(key)),
            None => (rest, None),
        }
    } else if let Some(id) = payload.strip_prefix("v1.") {
        signed(keys.key(LEGACY_KID)?, payload, sig)?;
        (id, None)
    } else {
        let (id, key) = payload.strip_prefix("v2.")?.split_once('.')?;
        signed(keys.key(LEGACY_KID)?, payload, sig)?;
        (id, Some(key))
    };
    let key = match key {
        Some(k) => Some(String::from_utf8(hex::decode(k).ok()?).ok()?),
        None => None,
    };
    Some((ContactId::parse(id)?, key))
}

/// The link that confirms the pending opt-in `nonce` names: `c2.<kid>.<contact>.<nonce>.<sig>`.
pub fn confirm_token(keys: &Keyring, contact: ContactId, nonce: &str) -> String {
    keys.sign("c2", &format!("{}.{nonce}", contact.0.simple()))
}

/// The contact and the pending opt-in a confirmation token names, if its signature is ours.
pub fn verify_confirm(keys: &Keyring, token: &str) -> Option<(ContactId, String)> {
    let (payload, sig) = token.rsplit_once('.')?;
    let rest = if let Some(rest) = payload.strip_prefix("c2.") {
        let (kid, rest) = rest.split_once('.')?;
        signed(keys.key(kid)?, payload, sig)?;
        rest
    } else {
        let rest = payload.strip_prefix("c1.")?;
        signed(keys.key(LEGACY_KID)?, payload, sig)?;
        rest
    };
    let (id, nonce) = rest.split_once('.')?;
    (!nonce.is_empty() && nonce.len() <= 64).then_some(())?;
    Some((ContactId::parse(id)?, nonce.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "k1-0123456789abcdef0123456789abcdef";
    const K2: &str = "k2-0123456789abcdef0123456789abcdef";
    const OLD: &str = "the-former-single-unsubscribe-secret";

    fn ring(current: &str, keys: &[(&str, &str)]) -> Keyring {
        Keyring::new(
            current,
            keys.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())),
        )
        .unwrap()
    }

    fn one() -> Keyring {
        ring("k1", &[("k1", K1)])
    }

    /// A pre-keyring link, as the former code signed it with the single secret.
    fn legacy_link(payload: &str) -> String {
        let sig = hex::encode(mac(OLD.as_bytes(), payload).finalize().into_bytes());
        format!("{payload}.{sig}")
    }

    #[test]
    fn an_emails_link_names_its_program_and_step_and_cannot_be_altered() {
        let c = ContactId::generate();
        let keys = one();
        let t = email_token(&keys, c, "warm:1");
        assert!(t.starts_with("u2.k1."), "{t}");
        assert_eq!(verify_link(&keys, &t), Some((c, Some("warm:1".into()))));
        assert_eq!(verify(&keys, &t), Some(c));
        let other = t.replace(&hex::encode("warm:1"), &hex::encode("hot:1"));
        assert_eq!(verify_link(&keys, &other), None, "another program: not signed");
        assert_eq!(verify_link(&ring("k1", &[("k1", K2)]), &t), None, "another key");
        assert_eq!(verify_link(&keys, &token(&keys, c)), Some((c, None)));
    }

    #[test]
    fn a_link_signed_with_k1_verifies_after_k2_becomes_current_until_k1_is_removed() {
        let c = ContactId::generate();
        let before = one();
        let (u, k) = (email_token(&before, c, "warm:1"), confirm_token(&before, c, "n-1"));
        let rotated = ring("k2", &[("k1", K1), ("k2", K2)]);
        assert_eq!(verify_link(&rotated, &u), Some((c, Some("warm:1".into()))));
        assert_eq!(verify_confirm(&rotated, &k), Some((c, "n-1".into())));
        let new = email_token(&rotated, c, "warm:2");
        assert!(new.starts_with("u2.k2."), "new links name the current key: {new}");
        assert_eq!(verify(&rotated, &new), Some(c));
        assert_eq!(verify(&before, &new), None, "k2 is not in the old keyring");
        let retired = ring("k2", &[("k2", K2)]);
        assert_eq!(verify(&retired, &u), None, "k1 taken out: its links stop working");
        assert_eq!(verify_confirm(&retired, &k), None);
        assert_eq!(verify(&retired, &new), Some(c));
    }

    #[test]
    fn an_unknown_or_swapped_key_id_is_refused() {
        let c = ContactId::generate();
        let keys = ring("k2", &[("k1", K1), ("k2", K2)]);
        let t = token(&keys, c);
        assert_eq!(verify(&keys, &t.replacen("u2.k2.", "u2.k9.", 1)), None, "unknown kid");
        assert_eq!(
            verify(&keys, &t.replacen("u2.k2.", "u2.k1.", 1)),
            None,
            "the kid is signed: naming another key breaks the signature"
        );
        for junk in [
            "",
            "u2.",
            "u2.k2",
            "u2..x.y",
            "u2.k2.x.y",
            "c2.k2.x.y.z",
            "garbage",
            "v2.abc.def",
        ] {
            assert_eq!(verify(&keys, junk), None, "{junk}");
            assert_eq!(verify_confirm(&keys, junk), None, "{junk}");
        }
    }

    #[test]
    fn links_from_before_key_ids_verify_only_against_the_legacy_key() {
        let c = ContactId::generate();
        let id = c.0.simple().to_string();
        let v1 = legacy_link(&format!("v1.{id}"));
        let v2 = legacy_link(&format!("v2.{id}.{}", hex::encode("warm:1")));
        let c1 = legacy_link(&format!("c1.{id}.n-1"));
        let with_legacy = ring("k1", &[("k1", K1), ("legacy", OLD)]);
        assert_eq!(
            verify_link(&with_legacy, &v1),
            Some((c, None)),
            "links in old emails keep working"
        );
        assert_eq!(verify_link(&with_legacy, &v2), Some((c, Some("warm:1".into()))));
        assert_eq!(verify_confirm(&with_legacy, &c1), Some((c, "n-1".into())));
        // The same secret under another id does not verify links without one.
        let added = one().with_legacy(OLD.as_bytes()).unwrap();
        assert_eq!(verify(&added, &v1), Some(c), "the former key kept in its own secret");
        assert_eq!(verify_confirm(&added, &c1), Some((c, "n-1".into())));
        let own = ring("k1", &[("k1", K1), ("legacy", K2)])
            .with_legacy(OLD.as_bytes())
            .unwrap();
        assert_eq!(verify(&own, &v1), None, "the keyring's own legacy key wins");
        assert!(one().with_legacy(b"short").is_err());
        let renamed = ring("k1", &[("k1", OLD)]);
        assert_eq!(verify(&renamed, &v1), None);
        assert_eq!(verify_confirm(&renamed, &c1), None);
        assert_eq!(verify(&one(), &v2), None, "no legacy key: refused");
    }

    #[test]
    fn an_unsubscribe_link_is_not_a_confirmation_link_nor_the_reverse() {
        let c = ContactId::generate();
        // Even under one keyring, the prefixes keep the kinds apart.
        let same = one();
        let k = confirm_token(&same, c, "0190-abc");
        assert_eq!(verify_confirm(&same, &k), Some((c, "0190-abc".into())));
        assert_eq!(verify(&same, &k), None, "not an unsubscribe token");
        assert_eq!(verify_confirm(&same, &token(&same, c)), None, "nor the reverse");
        assert_eq!(verify_confirm(&same, &email_token(&same, c, "warm:1")), None);
        // And a deployment's two keyrings hold different keys under the same ids.
        let unsubscribe = one();
        let confirmation = ring("k1", &[("k1", K2)]);
        let u = token(&unsubscribe, c);
        let u_as_c = u.replacen("u2.", "c2.", 1);
        assert_eq!(verify_confirm(&confirmation, &u_as_c), None);
        assert_eq!(
            verify(
                &unsubscribe,
                &confirm_token(&confirmation, c, "n").replacen("c2.", "u2.", 1)
            ),
            None
        );
        let other = ContactId::generate();
        let swapped = k.replace(&c.0.simple().to_string(), &other.0.simple().to_string());
        assert_eq!(verify_confirm(&same, &swapped), None);
    }

    #[test]
    fn forgeries_are_refused() {
        let c = ContactId::generate();
        let keys = one();
        let t = token(&keys, c);
        let other = ContactId::generate();
        let swapped = t.replace(&c.0.simple().to_string(), &other.0.simple().to_string());
        assert_eq!(verify(&keys, &swapped), None, "someone else's id with this signature");
        let mut flipped = t.clone();
        flipped.pop();
        flipped.push(if t.ends_with('0') { '1' } else { '0' });
        assert_eq!(verify(&keys, &flipped), None);
    }

    #[test]
    fn keyrings_parse_flat_or_nested_and_their_debug_shows_no_key() {
        let flat = Keyring::parse(&format!(
            r#"{{"current":"k2","k1":"{K1}","k2":"{K2}","legacy":"{OLD}"}}"#
        ))
        .unwrap();
        assert_eq!(flat.current(), "k2");
        assert_eq!(flat.kids().collect::<Vec<_>>(), ["k1", "k2", "legacy"]);
        let nested = Keyring::parse(&format!(r#"{{"current":"k1","keys":{{"k1":"{K1}"}}}}"#)).unwrap();
        assert_eq!(nested.kids().collect::<Vec<_>>(), ["k1"]);
        let c = ContactId::generate();
        assert_eq!(verify(&flat, &token(&one(), c)), Some(c), "the same k1 either way");

        let shown = format!("{flat:?} {nested:?}");
        assert!(shown.contains("[redacted]"), "{shown}");
        for key in [K1, K2, OLD] {
            assert!(!shown.contains(key), "{shown}");
        }

        for (text, err) in [
            ("nope", KeyringError::NotJson("line 1".into())),
            (r#"{"k1":"x"}"#, KeyringError::NoCurrent),
            (
                &format!(r#"{{"current":"k2","k1":"{K1}"}}"#),
                KeyringError::CurrentMissing("k2".into()),
            ),
            (r#"{"current":"k1","k1":"short"}"#, KeyringError::ShortKey("k1".into())),
            (
                &format!(r#"{{"current":"k1","k1":"{K1}","a.b":"{K2}"}}"#),
                KeyringError::BadKid("a.b".into()),
            ),
            (r#"{"current":"k1","k1":7}"#, KeyringError::NotAString("k1".into())),
        ] {
            let e = Keyring::parse(text).unwrap_err();
            assert_eq!(e, err, "{text}");
            assert!(!e.to_string().contains(K1), "an error never shows a key: {e}");
        }
    }
}
