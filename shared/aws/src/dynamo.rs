//! The records table: intake's lookup and atomic commit, spam, and the outbox.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use serde_dynamo::aws_sdk_dynamodb_1::{from_attribute_value, from_item};

use leadflow_domain::intake::{
    ConsentWrite, ContactWrite, IntakePlan, LeadWrite, LookupRequest, LookupResult, ReceiptClaim, SpamRecord,
    StoredReceipt,
};
use leadflow_domain::matching::MatchKey;
use leadflow_domain::message::InteractionMessage;
use leadflow_domain::ports::{Commit, IntakeStore, Outbox, StoreError};
use leadflow_domain::records::{ContactId, LeadId};

use crate::keys::{self, sortable_time, DUE_PK, DUE_SK, GSI1_PK, GSI1_SK, TTL, TYPE};
use crate::store_error;

use crate::item::{batch_get, corrupt, key, record_item, s, to_av, Item};

/// The SET clauses of an update of an existing record, with their names and values.
struct SetClauses {
    set: Vec<String>,
    names: HashMap<String, String>,
    values: Item,
}

impl SetClauses {
    fn new(clauses: &[(&str, &str, AttributeValue)]) -> Self {
        let mut me = SetClauses {
            set: Vec::new(),
            names: HashMap::new(),
            values: HashMap::new(),
        };
        for (clause, placeholder, value) in clauses {
            me.clause(clause, placeholder, value.clone());
        }
        me
    }

    fn clause(&mut self, clause: &str, placeholder: &str, value: AttributeValue) {
        self.set.push(clause.to_owned());
        self.values.insert(placeholder.to_owned(), value);
    }

    /// `name = value`, or `map.name = value`; names go through placeholders, so any field name is safe.
    fn field(&mut self, map: Option<&str>, name: &str, value: AttributeValue) {
        let i = self.set.len();
        let path = match map {
            Some(m) => {
                self.names.insert(format!("#{m}"), m.to_owned());
                format!("#{m}.#f{i}")
            }
            None => format!("#f{i}"),
        };
        self.names.insert(format!("#f{i}"), name.to_owned());
        self.clause(&format!("{path} = :f{i}"), &format!(":f{i}"), value);
    }

    /// The update, conditional on the record existing.
    fn build(self, table: &str, k: (String, String)) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(table)
            .set_key(Some(key(k)))
            .update_expression(format!("SET {}", self.set.join(", ")))
            .condition_expression("attribute_exists(pk)")
            .set_expression_attribute_names((!self.names.is_empty()).then_some(self.names))
            .set_expression_attribute_values(Some(self.values))
            .build()
            .map_err(corrupt)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

/// The records table, through one SDK client.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn put(&self, item: Item, condition: Option<&str>, values: Option<Item>) -> Result<TransactWriteItem, StoreError> {
        crate::item::put(&self.table, item, condition, values)
    }

    fn key_item(
        &self,
        k: (String, String),
        kind: &str,
        attrs: Vec<(&str, AttributeValue)>,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut item = key(k);
        item.insert(TYPE.into(), s(kind));
        item.extend(attrs.into_iter().map(|(n, v)| (n.to_owned(), v)));
        self.put(item, Some("attribute_not_exists(pk)"), None)
    }

    fn receipt(
        &self,
        k: (String, String),
        claim: &ReceiptClaim,
        now: DateTime<Utc>,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut item = key(k);
        item.insert(TYPE.into(), s("receipt"));
        item.insert("receipt".into(), to_av(&claim.stored.receipt)?);
        item.insert("fingerprint".into(), s(&claim.stored.fingerprint));
        item.insert("expires_at".into(), s(sortable_time(claim.stored.expires_at)));
        item.insert(
            TTL.into(),
            AttributeValue::N(claim.stored.expires_at.timestamp().to_string()),
        );
        // TTL deletion lags by hours, so expiry is enforced here, not by TTL.
        let values = HashMap::from([(":now".to_owned(), s(sortable_time(now)))]);
        self.put(
            item,
            Some("attribute_not_exists(pk) OR expires_at < :now"),
            Some(values),
        )
    }

    fn contact_write(
        &self,
        w: &ContactWrite,
        now: DateTime<Utc>,
        out: &mut Vec<TransactWriteItem>,
    ) -> Result<(), StoreError> {
        match w {
            ContactWrite::Create { contact, key: k } => {
                out.push(self.key_item(
                    keys::contact_key(k),
                    "contact_key",
                    vec![("contact_id", s(contact.contact_id.to_string()))],
                )?);
                let item = record_item(contact, keys::contact(contact.contact_id), "contact")?;
                out.push(self.put(item, Some("attribute_not_exists(pk)"), None)?);
            }
            ContactWrite::Update {
                contact_id,
                email,
                fields,
                consent,
                add_key,
            } => {
                let mut update = SetClauses::new(&[("updated_at = :now", ":now", to_av(&now)?)]);
                if let Some(e) = email {
                    update.clause("email = :email", ":email", s(e.as_str()));
                }
                for (name, value) in fields.present() {
                    update.field(None, name, s(value));
                }
                match consent {
                    Some(ConsentWrite::Replace(c)) => update.clause("consent = :consent", ":consent", to_av(c)?),
                    Some(ConsentWrite::IfAbsent(c)) => {
                        update.clause("consent = if_not_exists(consent, :consent)", ":consent", to_av(c)?)
                    }
                    None => {}
                }
                out.push(update.build(&self.table, keys::contact(*contact_id))?);
                if let Some(k) = add_key {
                    out.push(self.key_item(
                        keys::contact_key(k),
                        "contact_key",
                        vec![("contact_id", s(contact_id.to_string()))],
                    )?);
                }
            }
        }
        Ok(())
    }

    fn lead_write(
        &self,
        w: &LeadWrite,
        now: DateTime<Utc>,
        out: &mut Vec<TransactWriteItem>,
    ) -> Result<(), StoreError> {
        match w {
            LeadWrite::Create { lead, key: k } => {
                out.push(self.key_item(
                    keys::lead_key(k),
                    "lead_key",
                    vec![
                        ("lead_id", s(lead.lead_id.to_string())),
                        ("contact_id", s(lead.contact_id.to_string())),
                    ],
                )?);
                let mut item = record_item(lead, keys::lead(lead.lead_id), "lead")?;
                let (gpk, gsk) = keys::leads_of_contact(lead.contact_id, lead.lead_id);
                item.insert(GSI1_PK.into(), s(gpk));
                item.insert(GSI1_SK.into(), s(gsk));
                out.push(self.put(item, Some("attribute_not_exists(pk)"), None)?);
            }
            LeadWrite::Update { lead_id, fields } => {
                let mut update = SetClauses::new(&[
                    ("last_activity_at = :now", ":now", to_av(&now)?),
                    (
                        "submissions = submissions + :one",
                        ":one",
                        AttributeValue::N("1".into()),
                    ),
                ]);
                for (name, value) in fields {
                    update.field(Some("fields"), name, s(value));
                }
                out.push(update.build(&self.table, keys::lead(*lead_id))?);
            }
        }
        Ok(())
    }

    /// The items of one submission, in the order the transaction writes them.
    pub fn transaction_items(&self, plan: &IntakePlan) -> Result<Vec<TransactWriteItem>, StoreError> {
        let mut items = Vec::with_capacity(7);
        self.contact_write(&plan.contact, plan.now, &mut items)?;
        self.lead_write(&plan.lead, plan.now, &mut items)?;
        let ix = &plan.interaction;
        let mut item = record_item(ix, keys::interaction(ix.lead_id, ix.interaction_id), "interaction")?;
        let (due_pk, due_sk) = keys::outbox_entry(
            plan.now + leadflow_domain::outbox::OUTBOX_GRACE,
            ix.lead_id,
            ix.interaction_id,
        );
        item.insert(DUE_PK.into(), s(due_pk));
        item.insert(DUE_SK.into(), s(due_sk));
        items.push(self.put(item, Some("attribute_not_exists(pk)"), None)?);
        let mut receipts = vec![(keys::dedup_receipt(&plan.dedup.key), &plan.dedup)];
        if let Some(claim) = &plan.idempotency {
            receipts.push((keys::idempotency_receipt(&claim.key), claim));
        }
        for (k, claim) in receipts {
            // A reference in the lead's partition, so erasing a person finds its receipts too.
            let mut reference = key(keys::receipt_ref(ix.lead_id, &k.0));
            reference.insert(TYPE.into(), s("receipt_ref"));
            reference.insert("receipt_pk".into(), s(k.0.clone()));
            reference.insert(
                TTL.into(),
                AttributeValue::N(claim.stored.expires_at.timestamp().to_string()),
            );
            items.push(self.put(reference, None, None)?);
            items.push(self.receipt(k, claim, plan.now)?);
        }
        Ok(items)
    }
}

fn stored_receipt(item: &Item) -> Result<StoredReceipt, StoreError> {
    let receipt = item
        .get("receipt")
        .cloned()
        .ok_or_else(|| corrupt("receipt item without receipt"))?;
    let expires = item
        .get("expires_at")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| corrupt("receipt without expires_at"))?;
    Ok(StoredReceipt {
        receipt: from_attribute_value(receipt).map_err(corrupt)?,
        fingerprint: item
            .get("fingerprint")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default(),
        expires_at: DateTime::parse_from_rfc3339(expires)
            .map_err(corrupt)?
            .with_timezone(&Utc),
    })
}

fn id_attr<T>(item: &Item, name: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .and_then(|v| parse(v))
        .ok_or_else(|| corrupt(format!("key item without a valid {name}")))
}

fn is_condition_failure(err: &TransactWriteItemsError) -> bool {
    match err {
        TransactWriteItemsError::TransactionCanceledException(e) => e
            .cancellation_reasons()
            .iter()
            .any(|r| matches!(r.code(), Some("ConditionalCheckFailed") | Some("TransactionConflict"))),
        TransactWriteItemsError::TransactionInProgressException(_) => true,
        other => other.code() == Some("TransactionCanceledException"),
    }
}

impl IntakeStore for DynamoStore {
    async fn lookup(&self, req: &LookupRequest) -> Result<LookupResult, StoreError> {
        let ck = keys::contact_key(&req.contact_key);
        let lk = keys::lead_key(&req.lead_key);
        let dk = keys::dedup_receipt(&req.dedup_key);
        let ik = req.idempotency_key.as_deref().map(keys::idempotency_receipt);
        let mut wanted = vec![ck.clone(), lk.clone(), dk.clone()];
        wanted.extend(ik.clone());
        // Strongly consistent: a re-read after a conflict must see the winner's items.
        let found = batch_get(&self.client, &self.table, wanted).await?;
        let contact = match found.get(&ck) {
            Some(item) => Some(id_attr(item, "contact_id", ContactId::parse)?),
            None => None,
        };
        let lead = match found.get(&lk) {
            Some(item) => Some((
                id_attr(item, "lead_id", LeadId::parse)?,
                id_attr(item, "contact_id", ContactId::parse)?,
            )),
            None => None,
        };
        let dedup = found.get(&dk).map(stored_receipt).transpose()?;
        let idempotency = ik.and_then(|k| found.get(&k)).map(stored_receipt).transpose()?;
        Ok(LookupResult {
            contact,
            lead,
            dedup,
            idempotency,
        })
    }

    async fn commit(&self, plan: &IntakePlan) -> Result<Commit, StoreError> {
        let items = self.transaction_items(plan)?;
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            // Makes the SDK's own retries of this call idempotent for ten minutes.
            .client_request_token(plan.interaction.interaction_id.to_string())
            .send()
            .await;
        match result {
            Ok(_) => Ok(Commit::Committed),
            Err(e) if e.as_service_error().is_some_and(is_condition_failure) => Ok(Commit::Conflict),
            Err(e) => Err(store_error("TransactWriteItems", e)),
        }
    }

    async fn store_spam(&self, spam: &SpamRecord) -> Result<(), StoreError> {
        let day = spam.received_at.format("%Y-%m-%d");
        let shard = keys::shard_of(&spam.spam_id.to_string(), keys::SPAM_SHARDS);
        let mut item = record_item(
            spam,
            (format!("SPAM#{}#{day}#{shard}", spam.form_id), spam.spam_id.to_string()),
            "spam",
        )?;
        item.insert(TTL.into(), AttributeValue::N(spam.expires_at.timestamp().to_string()));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| store_error("PutItem", e))?;
        Ok(())
    }
}

impl Outbox for DynamoStore {
    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<InteractionMessage>, StoreError> {
        let shards = (0..keys::OUTBOX_SHARDS).map(keys::outbox_pk);
        crate::item::due_entries(&self.client, &self.table, shards, &sortable_time(now), limit)
            .await?
            .into_iter()
            .map(|item| {
                from_item::<leadflow_domain::records::Interaction>(item)
                    .map(|ix| InteractionMessage::for_interaction(&ix))
                    .map_err(corrupt)
            })
            .collect()
    }

    async fn postpone(&self, message: &InteractionMessage, next_at: DateTime<Utc>) -> Result<(), StoreError> {
        let InteractionMessage::V1(r) = message;
        let (_, due_sk) = keys::outbox_entry(next_at, r.lead_id, r.interaction_id);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::interaction(r.lead_id, r.interaction_id))))
            .update_expression("SET due_sk = :sk")
            .condition_expression("attribute_exists(due_pk)")
            .expression_attribute_values(":sk", s(due_sk))
            .send()
            .await;
        // A failed condition: the consumer confirmed it meanwhile, nothing left to postpone.
        crate::conditional("UpdateItem", result).map(|_| ())
    }
}

/// Used by the consumer side (and tests) to confirm an interaction: it leaves the outbox.
pub async fn confirm_interaction(
    store: &DynamoStore,
    lead: LeadId,
    id: leadflow_domain::records::InteractionId,
) -> Result<(), StoreError> {
    store
        .client
        .update_item()
        .table_name(&store.table)
        .set_key(Some(key(keys::interaction(lead, id))))
        .update_expression("REMOVE due_pk, due_sk")
        .send()
        .await
        .map_err(|e| store_error("UpdateItem", e))?;
    Ok(())
}

/// The contact id a matching key points to, if any (used by import and the ops tool).
pub async fn contact_by_key(store: &DynamoStore, k: &MatchKey) -> Result<Option<ContactId>, StoreError> {
    let out = store
        .client
        .get_item()
        .table_name(&store.table)
        .set_key(Some(key(keys::contact_key(k))))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| store_error("GetItem", e))?;
    out.item
        .map(|i| id_attr(&i, "contact_id", ContactId::parse))
        .transpose()
}
