//! Signed links: only the holder of an email's link can unsubscribe its contact, or confirm
//! its own opt-in (double opt-in). Each kind has its own prefix, so one cannot stand for the other.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::records::ContactId;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], payload: &str) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(payload.as_bytes());
    m
}

/// `v1.<contact id>.<hex HMAC-SHA256>`. No expiry: a link in an old email must keep working.
pub fn token(secret: &[u8], contact: ContactId) -> String {
    let payload = format!("v1.{}", contact.0.simple());
    let sig = hex::encode(mac(secret, &payload).finalize().into_bytes());
    format!("{payload}.{sig}")
}

/// `v2.<contact id>.<hex of the email's send key>.<hex HMAC-SHA256>`: the link of one nurture
/// email (`warm:1`), so its unsubscribe is counted for that program and step.
pub fn email_token(secret: &[u8], contact: ContactId, email_key: &str) -> String {
    let payload = format!("v2.{}.{}", contact.0.simple(), hex::encode(email_key));
    let sig = hex::encode(mac(secret, &payload).finalize().into_bytes());
    format!("{payload}.{sig}")
}

/// The contact a token names, if its signature is ours (checked in constant time).
pub fn verify(secret: &[u8], token: &str) -> Option<ContactId> {
    verify_link(secret, token).map(|(c, _)| c)
}

/// The contact and, for an email's own link ([`email_token`]), the email's send key.
pub fn verify_link(secret: &[u8], token: &str) -> Option<(ContactId, Option<String>)> {
    let (payload, sig) = token.rsplit_once('.')?;
    let sig = hex::decode(sig).ok()?;
    if let Some(id) = payload.strip_prefix("v1.") {
        mac(secret, payload).verify_slice(&sig).ok()?;
        return Some((ContactId::parse(id)?, None));
    }
    let (id, key) = payload.strip_prefix("v2.")?.split_once('.')?;
    mac(secret, payload).verify_slice(&sig).ok()?;
    let key = String::from_utf8(hex::decode(key).ok()?).ok()?;
    Some((ContactId::parse(id)?, Some(key)))
}

/// `c1.<contact id>.<nonce>.<hex HMAC-SHA256>`: confirms the pending opt-in `nonce` names.
pub fn confirm_token(secret: &[u8], contact: ContactId, nonce: &str) -> String {
    let payload = format!("c1.{}.{nonce}", contact.0.simple());
    let sig = hex::encode(mac(secret, &payload).finalize().into_bytes());
    format!("{payload}.{sig}")
}

/// The contact and the pending opt-in a confirmation token names, if its signature is ours.
pub fn verify_confirm(secret: &[u8], token: &str) -> Option<(ContactId, String)> {
    let (payload, sig) = token.rsplit_once('.')?;
    let rest = payload.strip_prefix("c1.")?;
    let (id, nonce) = rest.split_once('.')?;
    let sig = hex::decode(sig).ok()?;
    mac(secret, payload).verify_slice(&sig).ok()?;
    (!nonce.is_empty() && nonce.len() <= 64).then_some(())?;
    Some((ContactId::parse(id)?, nonce.to_owned()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_emails_link_names_its_program_and_step_and_cannot_be_altered() {
        let c = ContactId::generate();
        let t = email_token(b"secret", c, "warm:1");
        assert_eq!(verify_link(b"secret", &t), Some((c, Some("warm:1".into()))));
        assert_eq!(verify(b"secret", &t), Some(c));
        let other = t.replace(&hex::encode("warm:1"), &hex::encode("hot:1"));
        assert_eq!(verify_link(b"secret", &other), None, "another program: not signed");
        assert_eq!(verify_link(b"other", &t), None);
        let old = token(b"secret", c);
        assert_eq!(
            verify_link(b"secret", &old),
            Some((c, None)),
            "links in old emails keep working"
        );
    }

    #[test]
    fn confirmation_tokens_round_trip_and_are_not_unsubscribe_tokens() {
        let c = ContactId::generate();
        let t = confirm_token(b"secret", c, "0190-abc");
        assert_eq!(verify_confirm(b"secret", &t), Some((c, "0190-abc".into())));
        assert_eq!(verify_confirm(b"other", &t), None);
        assert_eq!(verify(b"secret", &t), None, "not an unsubscribe token");
        assert_eq!(verify_confirm(b"secret", &token(b"secret", c)), None, "nor the reverse");
        let other = ContactId::generate();
        assert_eq!(
            verify_confirm(
                b"secret",
                &t.replace(&c.0.simple().to_string(), &other.0.simple().to_string())
            ),
            None
        );
    }

    use super::*;

    #[test]
    fn round_trip_and_forgeries() {
        let c = ContactId::generate();
        let t = token(b"secret", c);
        assert_eq!(verify(b"secret", &t), Some(c));
        assert_eq!(verify(b"other", &t), None, "another deployment's secret");
        let other = ContactId::generate();
        let swapped = t.replace(&c.0.simple().to_string(), &other.0.simple().to_string());
        assert_eq!(
            verify(b"secret", &swapped),
            None,
            "someone else's id with this signature"
        );
        let mut flipped = t.clone();
        flipped.pop();
        flipped.push(if t.ends_with('0') { '1' } else { '0' });
        assert_eq!(verify(b"secret", &flipped), None);
        for junk in ["", "v1.", "v1.x.y", "garbage", "v2.abc.def"] {
            assert_eq!(verify(b"secret", junk), None, "{junk}");
        }
    }
}
