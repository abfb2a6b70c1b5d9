//! `person export` and `person erase`: privacy requests over every item held about a person.

use std::collections::BTreeSet;

use chrono::Utc;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::{json, Value};

use leadflow_aws::catalog::DynamoForms;
use leadflow_aws::keys::{self, Index, Key, PK, SK};
use leadflow_aws::table::{str_attr, Condition, Item, Query};
use leadflow_domain::email::Email;
use leadflow_domain::form::MatchStrategy;
use leadflow_domain::matching::key_from;
use leadflow_domain::ports::FormCatalog;
use leadflow_domain::records::ContactId;

use crate::target::{item_json, Target};
use crate::Error;

/// Deletes in flight at once during an erasure.
const ERASE_CONCURRENCY: usize = 25;

/// An item's own key (empty strings for a missing attribute).
fn key_of(i: &Item) -> Key {
    (
        str_attr(i, PK).unwrap_or("").to_owned(),
        str_attr(i, SK).unwrap_or("").to_owned(),
    )
}

/// Every key of a person's data: contact, matching keys, lead partitions, visitor partitions, sent-email maps.
async fn person_keys(t: &Target, email: &str) -> Result<(Option<ContactId>, Vec<Key>), Error> {
    let Some(contact) = t.contact_of(email).await? else {
        return Ok((None, vec![]));
    };
    let table = t.records();
    let mut found: BTreeSet<Key> = BTreeSet::new();
    // The contact's partition: the contact, its field history and its matching-key references.
    let mut addresses = BTreeSet::from([email.to_owned()]);
    for i in &table
        .query(Query::partition(Index::Table, keys::contact_partition(contact)))
        .await?
    {
        found.insert(key_of(i));
        if let Some(e) = str_attr(i, "email") {
            addresses.insert(e.to_owned());
        }
        if let (Some(pk), Some(sk)) = (str_attr(i, "key_pk"), str_attr(i, "key_sk")) {
            found.insert((pk.to_owned(), sk.to_owned()));
        }
    }
    // Honeypot catches that carried the address, by its digest (never a Scan).
    for address in &addresses {
        let digest = leadflow_domain::intake::email_digest(address);
        for i in &table
            .query(Query::partition(Index::Gsi1, keys::spam_by_email(&digest)))
            .await?
        {
            found.insert(key_of(i));
        }
    }
    found.insert(keys::contact(contact));
    let parsed = Email::parse(email).ok();
    let value = |f: &str| -> Option<String> {
        (f == "email")
            .then(|| parsed.as_ref().map(|e| e.as_str().to_owned()))
            .flatten()
    };
    if let Ok(k) = key_from(&MatchStrategy::default_contact(), value) {
        found.insert(keys::contact_key(&k));
    }
    let forms = DynamoForms::new(t.config());
    let mut visitors = BTreeSet::new();
    for lead in t.leads_of(contact).await? {
        let (partition, lead_sk) = keys::lead(lead);
        for i in &table.query(Query::partition(Index::Table, partition)).await? {
            found.insert(key_of(i));
            if let (Some(pk), Some(sk)) = (str_attr(i, "key_pk"), str_attr(i, "key_sk")) {
                found.insert((pk.to_owned(), sk.to_owned()));
            }
            if let Some(r) = str_attr(i, "receipt_pk") {
                found.insert(keys::receipt(r));
            }
            if let Some(m) = str_attr(i, "message_id") {
                found.insert(keys::email_message(m));
            }
            if let Some(v) = i
                .get("properties")
                .and_then(|p| p.as_m().ok())
                .and_then(|p| p.get("visitor_id"))
                .and_then(|v| v.as_s().ok())
            {
                visitors.insert(v.clone());
            }
            if str_attr(i, SK) == Some(lead_sk.as_str()) {
                let form_id = str_attr(i, "form_id").unwrap_or("").to_owned();
                let strategy = forms
                    .form(&form_id)
                    .await?
                    .map(|f| f.lead_match.clone())
                    .unwrap_or_else(MatchStrategy::default_lead);
                let campaign = str_attr(i, "campaign").map(str::to_owned);
                let k = key_from(&strategy, |f| match f {
                    "form_id" => Some(form_id.clone()),
                    "campaign" => campaign.clone(),
                    other => value(other),
                });
                if let Ok(k) = k {
                    found.insert(keys::lead_key(&k));
                }
            }
        }
    }
    for v in visitors {
        // The visitor's partition: its link and its anonymous interactions.
        let (partition, _) = keys::visitor_link(&v);
        for i in &table.query(Query::partition(Index::Table, partition)).await? {
            found.insert(key_of(i));
        }
    }
    Ok((Some(contact), found.into_iter().collect()))
}

/// `person export EMAIL`: everything held about a person, as JSON.
pub async fn person_export(t: &Target, email: &str) -> Result<Value, Error> {
    let (contact, keys) = person_keys(t, email).await?;
    let contact = contact.ok_or_else(|| format!("no contact with the email {email}"))?;
    let held = t.records().get_many(keys.clone()).await?;
    let items: Vec<Value> = keys.iter().filter_map(|k| held.get(k)).map(item_json).collect();
    Ok(json!({"contact_id": contact, "exported_at": Utc::now(), "items": items}))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    pub deleted: usize,
    pub remaining: usize,
    /// Dead-lettered messages that still mention the person (ids): replay or purge them.
    pub dead_lettered: Vec<String>,
}

/// `person erase EMAIL`: deletes every item, then reads every key again to verify none is left.
pub async fn person_erase(t: &Target, email: &str) -> Result<Erasure, Error> {
    let (contact, keys) = person_keys(t, email).await?;
    if contact.is_none() {
        return Err(format!("no contact with the email {email}").into());
    }
    let table = t.records();
    // One unconditional delete per key, some in flight at once: idempotent, and what one
    // fails to delete the verification below counts.
    stream::iter(keys.iter().cloned())
        .map(|k| table.delete(k, Condition::none()))
        .buffer_unordered(ERASE_CONCURRENCY)
        .try_collect::<Vec<bool>>()
        .await?;
    let remaining = table.get_many(keys.clone()).await?.len();
    // Queue messages name people by id, SES events by address: look for both.
    let mut ids: Vec<String> = contact.iter().map(ToString::to_string).collect();
    ids.push(email.to_lowercase());
    ids.extend(
        keys.iter()
            .filter_map(|(pk, _)| keys::lead_of_partition(pk))
            .map(|l| l.to_string())
            .collect::<BTreeSet<_>>(),
    );
    let dead_lettered = crate::dlq::dlq_mentions(t, &ids).await?;
    Ok(Erasure {
        deleted: keys.len() - remaining,
        remaining,
        dead_lettered,
    })
}
