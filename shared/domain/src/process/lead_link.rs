//! Capability links to a lead's page, for the people leadflow's internal emails go to: a token
//! naming the owner it was made for, the one lead it opens, when it expires and the key that
//! signed it, so the link itself is the authorisation (no login).
//!
//! Format (`<sig>`: hex HMAC-SHA256 of everything before it, prefix and key id included):
//! `l1.<kid>.<hex of the owner id>.<lead id, simple>.<expiry, unix seconds>.<sig>`.
//!
//! Signed with a keyring of its own (the `LeadLinkKeys` secret), never the unsubscribe or
//! confirmation ones; rotation works as theirs ([`super::unsubscribe`]): a link names its key,
//! and verifies while that key is in the keyring and the link has not expired.
//!
//! At use, a link also needs the lead to still be its owner's ([`may_open`]): the lead's
//! current owner, or that owner's manager (the escalation email goes to the manager).
//!
//! Forms on the page carry a CSRF token bound to the link ([`csrf`]): the HMAC of the whole
//! link under the key that signed it, with a label of its own, so it is worth nothing without
//! the link and names no other link.

use chrono::{DateTime, Duration, Utc};
use hmac::Mac as _;

use super::handoff::RoutingConfig;
use super::unsubscribe::{mac, signed, Keyring};
use crate::records::LeadId;

const PREFIX: &str = "l1";
const CSRF_LABEL: &str = "lead-page-csrf.v1";
/// How long a link works when routing.json says nothing (`link_days`).
pub const DEFAULT_LINK_DAYS: u32 = 14;

/// What a verified link grants: `owner` may open `lead` until `expires`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadLink {
    pub owner: String,
    pub lead: LeadId,
    pub expires: DateTime<Utc>,
    /// The key that signed it.
    pub kid: String,
}

/// Why a link is refused. The page says none of this to its holder (one 403 for all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("not a lead link")]
    Malformed,
    #[error("signed by a key the keyring does not hold")]
    UnknownKey,
    #[error("signature does not match")]
    BadSignature,
    #[error("expired")]
    Expired,
    #[error("names another lead")]
    OtherLead,
    #[error("the lead is no longer this owner's")]
    NotTheOwner,
}

/// A link for `owner` to `lead`, working until `expires`.
pub fn sign(keys: &Keyring, owner: &str, lead: LeadId, expires: DateTime<Utc>) -> String {
    keys.sign(
        PREFIX,
        &format!("{}.{}.{}", hex::encode(owner), lead.0.simple(), expires.timestamp()),
    )
}

/// How long links last under this routing (`link_days`, default 14).
pub fn lifetime(routing: &RoutingConfig) -> Duration {
    Duration::days(i64::from(routing.link_days.unwrap_or(DEFAULT_LINK_DAYS)))
}

/// The page's address for `owner` and `lead`, made `now` (`public_url` without a trailing `/`
/// or with one).
pub fn url(
    public_url: &str,
    keys: &Keyring,
    routing: &RoutingConfig,
    owner: &str,
    lead: LeadId,
    now: DateTime<Utc>,
) -> String {
    format!(
        "{}/sales/leads/{lead}?t={}",
        public_url.trim_end_matches('/'),
        sign(keys, owner, lead, now + lifetime(routing))
    )
}

/// The link's grant, if its key is ours, its signature matches and it has not expired at `now`.
pub fn verify(keys: &Keyring, token: &str, now: DateTime<Utc>) -> Result<LeadLink, LinkError> {
    let (payload, sig) = token.rsplit_once('.').ok_or(LinkError::Malformed)?;
    let rest = payload
        .strip_prefix(PREFIX)
        .and_then(|r| r.strip_prefix('.'))
        .ok_or(LinkError::Malformed)?;
    let (kid, rest) = rest.split_once('.').ok_or(LinkError::Malformed)?;
    let key = keys.key(kid).ok_or(LinkError::UnknownKey)?;
    signed(key, payload, sig).ok_or(LinkError::BadSignature)?;
    let mut parts = rest.split('.');
    let (Some(owner), Some(lead), Some(expires), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(LinkError::Malformed);
    };
    let owner = hex::decode(owner)
        .ok()
        .and_then(|o| String::from_utf8(o).ok())
        .filter(|o| !o.is_empty())
        .ok_or(LinkError::Malformed)?;
    let lead = LeadId::parse(lead).ok_or(LinkError::Malformed)?;
    let expires = expires
        .parse::<i64>()
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .ok_or(LinkError::Malformed)?;
    if now >= expires {
        return Err(LinkError::Expired);
    }
    Ok(LeadLink {
        owner,
        lead,
        expires,
        kid: kid.to_owned(),
    })
}

/// Whether the link's owner may open the lead now: they own it, or they manage its owner.
pub fn may_open(routing: &RoutingConfig, link: &LeadLink, lead_owner: Option<&str>) -> Result<(), LinkError> {
    let Some(owner) = lead_owner else {
        return Err(LinkError::NotTheOwner);
    };
    if routing.owner(&link.owner).is_none() {
        return Err(LinkError::NotTheOwner);
    }
    let manages = routing
        .owner(owner)
        .and_then(|o| o.manager.as_deref())
        .is_some_and(|m| m == link.owner);
    if owner == link.owner || manages {
        Ok(())
    } else {
        Err(LinkError::NotTheOwner)
    }
}

/// Everything a request with `token` for `lead` must pass: a valid link for that lead whose
/// owner may open it now.
pub fn authorise(
    keys: &Keyring,
    routing: &RoutingConfig,
    token: &str,
    lead: LeadId,
    lead_owner: Option<&str>,
    now: DateTime<Utc>,
) -> Result<LeadLink, LinkError> {
    let link = verify(keys, token, now)?;
    if link.lead != lead {
        return Err(LinkError::OtherLead);
    }
    may_open(routing, &link, lead_owner)?;
    Ok(link)
}

/// The CSRF token of the page a (verified) link opens: the HMAC of the link, labelled, under
/// the key that signed it.
pub fn csrf(keys: &Keyring, token: &str) -> Option<String> {
    let kid = token.split('.').nth(1)?;
    let key = keys.key(kid)?;
    Some(hex::encode(
        mac(key, &format!("{CSRF_LABEL}.{token}")).finalize().into_bytes(),
    ))
}

/// Whether `candidate` is the CSRF token of the page `token` opens (constant time).
pub fn csrf_matches(keys: &Keyring, token: &str, candidate: &str) -> bool {
    let Some(kid) = token.split('.').nth(1) else {
        return false;
    };
    let Some(key) = keys.key(kid) else {
        return false;
    };
    signed(key, &format!("{CSRF_LABEL}.{token}"), candidate).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "k1-0123456789abcdef0123456789abcdef";
    const K2: &str = "k2-0123456789abcdef0123456789abcdef";

    fn ring(current: &str, keys: &[(&str, &str)]) -> Keyring {
        Keyring::new(
            current,
            keys.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())),
        )
        .unwrap()
    }

    fn routing() -> RoutingConfig {
        serde_json::from_value(serde_json::json!({
            "owners": [
                {"id": "sato", "name": "佐藤", "email": "sato@example.jp", "time_zone": "Asia/Tokyo", "manager": "tanaka"},
                {"id": "suzuki", "name": "鈴木", "email": "suzuki@example.jp", "time_zone": "Asia/Tokyo", "manager": "tanaka"},
                {"id": "tanaka", "name": "田中", "email": "tanaka@example.jp", "time_zone": "Asia/Tokyo"}
            ],
            "rules": [], "pool": ["sato"],
            "task_subject": "x", "task_due_days": 2, "reminder_hour": 9, "escalate_after_days": 2,
            "link_days": 7
        }))
        .unwrap()
    }

    #[test]
    fn a_link_round_trips_and_names_its_owner_lead_expiry_and_key() {
        let keys = ring("k1", &[("k1", K1)]);
        let lead = LeadId::generate();
        let now = Utc::now();
        let expires = DateTime::from_timestamp(now.timestamp() + 3600, 0).unwrap();
        let t = sign(&keys, "sato", lead, expires);
        assert!(t.starts_with("l1.k1."), "{t}");
        let link = verify(&keys, &t, now).unwrap();
        assert_eq!(
            link,
            LeadLink {
                owner: "sato".into(),
                lead,
                expires,
                kid: "k1".into()
            }
        );
        assert_eq!(authorise(&keys, &routing(), &t, lead, Some("sato"), now), Ok(link));
        let u = url("https://x.test/", &keys, &routing(), "sato", lead, now);
        assert!(
            u.starts_with(&format!("https://x.test/sales/leads/{lead}?t=l1.k1.")),
            "{u}"
        );
        let t7 = u.split_once("?t=").unwrap().1;
        assert_eq!(
            verify(&keys, t7, now).unwrap().expires.timestamp(),
            (now + Duration::days(7)).timestamp(),
            "link_days from routing"
        );
    }

    #[test]
    fn tampered_links_are_refused() {
        let keys = ring("k1", &[("k1", K1)]);
        let lead = LeadId::generate();
        let now = Utc::now();
        let t = sign(&keys, "sato", lead, now + Duration::days(1));
        let other = LeadId::generate();
        let swapped = t.replace(&lead.0.simple().to_string(), &other.0.simple().to_string());
        assert_eq!(verify(&keys, &swapped, now), Err(LinkError::BadSignature));
        let owner = t.replace(&hex::encode("sato"), &hex::encode("tanaka"));
        assert_eq!(verify(&keys, &owner, now), Err(LinkError::BadSignature));
        let later = t.replace(
            &(now + Duration::days(1)).timestamp().to_string(),
            &(now + Duration::days(100)).timestamp().to_string(),
        );
        assert_eq!(verify(&keys, &later, now), Err(LinkError::BadSignature));
        let mut flipped = t.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == '0' { '1' } else { '0' });
        assert_eq!(verify(&keys, &flipped, now), Err(LinkError::BadSignature));
        assert_eq!(
            verify(&ring("k1", &[("k1", K2)]), &t, now),
            Err(LinkError::BadSignature),
            "another key"
        );
        for junk in ["", "l1.", "l1.k1", "l1.k1.x.y", "u2.k1.x.y", "garbage"] {
            assert!(verify(&keys, junk, now).is_err(), "{junk}");
        }
        // Another kind of link under the same keyring is not a lead link.
        let contact = crate::records::ContactId::generate();
        let u = super::super::unsubscribe::token(&keys, contact);
        assert_eq!(verify(&keys, &u, now), Err(LinkError::Malformed));
        assert_eq!(
            authorise(&keys, &routing(), &t, other, Some("sato"), now),
            Err(LinkError::OtherLead)
        );
    }

    #[test]
    fn a_link_expires() {
        let keys = ring("k1", &[("k1", K1)]);
        let lead = LeadId::generate();
        let now = Utc::now();
        let t = sign(&keys, "sato", lead, now - Duration::seconds(1));
        assert_eq!(verify(&keys, &t, now), Err(LinkError::Expired));
        let t = sign(&keys, "sato", lead, now + Duration::days(14));
        assert!(verify(&keys, &t, now + Duration::days(13)).is_ok());
        assert_eq!(verify(&keys, &t, now + Duration::days(14)), Err(LinkError::Expired));
    }

    #[test]
    fn a_link_signed_with_k1_verifies_after_rotation_until_k1_is_removed() {
        let lead = LeadId::generate();
        let now = Utc::now();
        let old = sign(&ring("k1", &[("k1", K1)]), "sato", lead, now + Duration::days(1));
        let rotated = ring("k2", &[("k1", K1), ("k2", K2)]);
        assert!(verify(&rotated, &old, now).is_ok());
        let new = sign(&rotated, "sato", lead, now + Duration::days(1));
        assert!(new.starts_with("l1.k2."), "{new}");
        let retired = ring("k2", &[("k2", K2)]);
        assert_eq!(verify(&retired, &old, now), Err(LinkError::UnknownKey));
        assert!(verify(&retired, &new, now).is_ok());
        assert_eq!(
            verify(&rotated, &new.replacen("l1.k2.", "l1.k1.", 1), now),
            Err(LinkError::BadSignature),
            "the kid is signed"
        );
    }

    #[test]
    fn only_the_leads_owner_or_their_manager_may_open_it() {
        let keys = ring("k1", &[("k1", K1)]);
        let lead = LeadId::generate();
        let now = Utc::now();
        let r = routing();
        let of = |owner: &str| sign(&keys, owner, lead, now + Duration::days(1));
        assert!(authorise(&keys, &r, &of("sato"), lead, Some("sato"), now).is_ok());
        assert!(
            authorise(&keys, &r, &of("tanaka"), lead, Some("sato"), now).is_ok(),
            "the owner's manager"
        );
        assert_eq!(
            authorise(&keys, &r, &of("suzuki"), lead, Some("sato"), now),
            Err(LinkError::NotTheOwner),
            "another salesperson"
        );
        assert_eq!(
            authorise(&keys, &r, &of("sato"), lead, Some("suzuki"), now),
            Err(LinkError::NotTheOwner),
            "the lead was reassigned"
        );
        assert_eq!(
            authorise(&keys, &r, &of("sato"), lead, None, now),
            Err(LinkError::NotTheOwner)
        );
        assert_eq!(
            authorise(&keys, &r, &of("ghost"), lead, Some("ghost"), now),
            Err(LinkError::NotTheOwner),
            "an owner no longer in routing.json"
        );
    }

    #[test]
    fn the_csrf_token_is_bound_to_its_link() {
        let keys = ring("k1", &[("k1", K1)]);
        let now = Utc::now();
        let a = sign(&keys, "sato", LeadId::generate(), now + Duration::days(1));
        let b = sign(&keys, "sato", LeadId::generate(), now + Duration::days(1));
        let ca = csrf(&keys, &a).unwrap();
        assert!(csrf_matches(&keys, &a, &ca));
        assert!(!csrf_matches(&keys, &b, &ca), "another link's");
        assert!(!csrf_matches(&keys, &a, ""));
        assert!(!csrf_matches(&keys, &a, "00"));
        assert_ne!(ca, a.rsplit_once('.').unwrap().1, "not the link's own signature");
    }
}
