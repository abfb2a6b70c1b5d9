//! Where the tool works, and the lookups the commands share: what a lead id, contact id or
//! email names, and the leads of a contact.

use serde_json::Value;

use leadflow_aws::config::Clients;
use leadflow_aws::intake::DynamoIntake;
use leadflow_aws::keys::{self, Index};
use leadflow_aws::table::{from_record, str_attr, Item, Query, Table};
use leadflow_domain::email::Email;
use leadflow_domain::form::MatchStrategy;
use leadflow_domain::matching::key_from;
use leadflow_domain::records::{ContactId, LeadId};

use crate::Error;

/// Where the tool works: a local run or a deployed stack.
#[derive(Clone)]
pub struct Target {
    pub clients: Clients,
    pub table: String,
    pub config_table: String,
    pub scoring_queue_url: String,
    pub scoring_dlq_url: String,
    /// Empty when not known: erasure then looks in the scoring DLQ only.
    pub engagement_dlq_url: String,
    /// Failed scheduled invocations (process runs, re-scoring); empty when not known.
    pub schedule_dlq_url: String,
    /// The domain events bus the tool's writes (moves, activities, imports) publish to; `None`:
    /// they publish nothing.
    pub event_bus: Option<String>,
}

/// An item as JSON (`null` if it cannot be read).
pub(crate) fn item_json(item: &Item) -> Value {
    from_record::<Value>(item.clone()).unwrap_or(Value::Null)
}

/// Attributes that say where an item is stored and how it is indexed, not what it records.
const STORAGE_ATTRIBUTES: [&str; 10] = [
    keys::PK,
    keys::SK,
    keys::GSI1_PK,
    keys::GSI1_SK,
    keys::DUE_PK,
    keys::DUE_SK,
    keys::TTL,
    keys::TYPE,
    "lease_run",
    "lease_until",
];

/// A stored record as the ops tool shows it (`lead show --json`): its own fields only.
pub(crate) fn record_json(item: &Item) -> Value {
    let mut v = item_json(item);
    if let Some(o) = v.as_object_mut() {
        for a in STORAGE_ATTRIBUTES {
            o.remove(a);
        }
    }
    v
}

impl Target {
    /// The records table.
    pub fn records(&self) -> Table {
        self.clients.records(&self.table, self.event_bus.as_deref())
    }

    /// The configuration table.
    pub fn config(&self) -> Table {
        self.clients.table(&self.config_table)
    }

    /// The lead and contact records of (lead, contact) pairs, in order (`Null` for one that is
    /// gone): one BatchGetItem per 50 pairs.
    pub(crate) async fn leads_with_contacts(
        &self,
        pairs: &[(LeadId, ContactId)],
    ) -> Result<Vec<(Value, Value)>, Error> {
        let found = self
            .records()
            .get_many(
                pairs
                    .iter()
                    .flat_map(|(l, c)| [keys::lead(*l), keys::contact(*c)])
                    .collect(),
            )
            .await?;
        let record = |k| -> Result<Value, Error> {
            Ok(found
                .get(&k)
                .map(|i| from_record::<Value>(i.clone()))
                .transpose()?
                .unwrap_or(Value::Null))
        };
        pairs
            .iter()
            .map(|(l, c)| Ok((record(keys::lead(*l))?, record(keys::contact(*c))?)))
            .collect()
    }

    /// The lead an id names, if it is a lead's id (lead and contact ids are both UUIDs).
    pub(crate) async fn lead_named(&self, who: &str) -> Result<Option<(LeadId, ContactId)>, Error> {
        let Some(lead) = LeadId::parse(who) else {
            return Ok(None);
        };
        let item = self.records().get(keys::lead(lead)).await?;
        Ok(item
            .as_ref()
            .and_then(|i| str_attr(i, "contact_id"))
            .and_then(ContactId::parse)
            .map(|c| (lead, c)))
    }

    /// The contact a lead id, a contact id or an email names.
    pub async fn contact_of(&self, who: &str) -> Result<Option<ContactId>, Error> {
        if let Some((_, contact)) = self.lead_named(who).await? {
            return Ok(Some(contact));
        }
        if let Some(id) = ContactId::parse(who) {
            return Ok(Some(id));
        }
        let email = Email::parse(who).map_err(|e| format!("{who}: {e}"))?;
        let key = key_from(&MatchStrategy::default_contact(), |f| {
            (f == "email").then(|| email.as_str().to_owned())
        })?;
        Ok(DynamoIntake::new(self.records()).contact_by_key(&key).await?)
    }

    /// The leads of a contact, oldest first.
    pub(crate) async fn leads_of(&self, contact: ContactId) -> Result<Vec<LeadId>, Error> {
        let q =
            Query::partition(Index::Gsi1, keys::contact_partition(contact)).begins_with(keys::LEADS_OF_CONTACT_PREFIX);
        Ok(self
            .records()
            .query(q)
            .await?
            .iter()
            .filter_map(|i| str_attr(i, "lead_id").and_then(LeadId::parse))
            .collect())
    }
}
