//! One handle on a DynamoDB table: the SDK client and the table's name, with the only
//! implementations of the mechanics every adapter needs — conditional writes, the one update
//! expression builder, transactions with their cancellation reasons read back, consistent
//! batch reads, and paginated queries of the table or an index.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, KeysAndAttributes, Put, ReturnValue, TransactWriteItem, Update as SdkUpdate,
};
use aws_sdk_dynamodb::Client;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_dynamo::aws_sdk_dynamodb_1::{from_attribute_value, from_item, to_attribute_value, to_item};

use chrono::Utc;
use leadflow_domain::events::DomainEvent;
use leadflow_domain::ports::StoreError;

pub use crate::expr::{Condition, Update};
use crate::keys::{Index, Key, PK, SK, TYPE};
use crate::store_error;

pub type Item = HashMap<String, AttributeValue>;

pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub fn key_item((pk, sk): Key) -> Item {
    HashMap::from([(PK.into(), s(pk)), (SK.into(), s(sk))])
}

pub fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

pub fn to_av<T: Serialize>(v: &T) -> Result<AttributeValue, StoreError> {
    to_attribute_value(v).map_err(corrupt)
}

/// A record read back from its item.
pub fn from_record<T: DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    from_item(item).map_err(corrupt)
}

/// An attribute read back into a value; `None` when the item lacks it.
pub fn attr<T: DeserializeOwned>(item: &Item, name: &str) -> Result<Option<T>, StoreError> {
    item.get(name)
        .map(|v| from_attribute_value(v.clone()).map_err(|e| corrupt(format!("{name}: {e}"))))
        .transpose()
}

/// A record's item: its fields, its key and its type.
pub fn record_item<T: Serialize>(record: &T, k: Key, kind: &str) -> Result<Item, StoreError> {
    let mut item: Item = to_item(record).map_err(corrupt)?;
    item.extend(key_item(k));
    item.insert(TYPE.into(), s(kind));
    Ok(item)
}

/// A small item of plain string attributes (key items, references).
pub fn plain_item(k: Key, kind: &str, attrs: &[(&str, String)]) -> Item {
    let mut item = key_item(k);
    item.insert(TYPE.into(), s(kind));
    item.extend(attrs.iter().map(|(name, v)| ((*name).to_owned(), s(v.clone()))));
    item
}

pub fn str_attr<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

/// What a transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transact {
    Committed,
    /// Cancelled; per item in the order written, whether its condition failed. Empty when
    /// DynamoDB gave no reasons (a conflicting transaction in progress).
    Cancelled(Vec<bool>),
}

impl Transact {
    pub fn committed(&self) -> bool {
        matches!(self, Transact::Committed)
    }

    /// Whether the condition of the item at `index` failed.
    pub fn failed_at(&self, index: usize) -> bool {
        matches!(self, Transact::Cancelled(r) if r.get(index) == Some(&true))
    }
}

/// The one reading of a single-item write: `Ok(None)` when its condition did not hold.
fn conditional<T, E, R>(
    op: &str,
    result: Result<T, aws_sdk_dynamodb::error::SdkError<E, R>>,
) -> Result<Option<T>, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(out) => Ok(Some(out)),
        Err(e)
            if e.as_service_error().and_then(ProvideErrorMetadata::code) == Some("ConditionalCheckFailedException") =>
        {
            Ok(None)
        }
        Err(e) => Err(store_error(op, e)),
    }
}

/// A query of the table or one of its indexes: a partition, optionally narrowed by sort key.
#[derive(Debug, Clone)]
pub struct Query {
    index: Index,
    partition: String,
    sort: Option<(&'static str, String)>,
    filter: Option<String>,
    backward: bool,
    limit: Option<usize>,
    consistent: bool,
}

impl Query {
    /// Every item of a partition of the table or of an index.
    pub fn partition(index: Index, partition: impl Into<String>) -> Self {
        Query {
            index,
            partition: partition.into(),
            sort: None,
            filter: None,
            backward: false,
            limit: None,
            // Reads of the table are strongly consistent; indexes cannot be.
            consistent: index == Index::Table,
        }
    }

    /// Sort keys starting with `prefix`.
    pub fn begins_with(mut self, prefix: impl Into<String>) -> Self {
        self.sort = Some(("begins_with({sk}, :sk)", prefix.into()));
        self
    }

    /// Sort keys after `lower` (exclusive): the page after a cursor.
    pub fn after(mut self, lower: impl Into<String>) -> Self {
        self.sort = Some(("{sk} > :sk", lower.into()));
        self
    }

    /// Sort keys at most `upper` (inclusive).
    pub fn at_most(mut self, upper: impl Into<String>) -> Self {
        self.sort = Some(("{sk} <= :sk", upper.into()));
        self
    }

    /// Only items without this attribute.
    pub fn without(mut self, attribute: &str) -> Self {
        self.filter = Some(format!("attribute_not_exists({attribute})"));
        self
    }

    pub fn newest_first(mut self) -> Self {
        self.backward = true;
        self
    }

    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }
}

/// The records or configuration table, through one SDK client.
#[derive(Clone, Debug)]
pub struct Table {
    client: Client,
    name: Arc<str>,
    /// Where the domain events of this table's writes go (`None`: nowhere, and no outbox).
    bus: Option<crate::bus::EventBus>,
}

impl Table {
    pub fn new(client: Client, name: impl AsRef<str>) -> Self {
        Table {
            client,
            name: Arc::from(name.as_ref()),
            bus: None,
        }
    }

    /// Writes through [`Table::transact_events`] and [`Table::transact_packed`] publish their
    /// domain events to `bus`.
    pub fn with_events(mut self, bus: Option<crate::bus::EventBus>) -> Self {
        self.bus = bus;
        self
    }

    pub fn bus(&self) -> Option<&crate::bus::EventBus> {
        self.bus.as_ref()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A strongly consistent read of one item.
    pub async fn get(&self, k: Key) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&*self.name)
            .set_key(Some(key_item(k)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        Ok(out.item)
    }

    /// Writes an item; `Ok(false)` if its condition did not hold.
    pub async fn put(&self, item: Item, condition: Condition) -> Result<bool, StoreError> {
        let (expr, names, values) = condition.parts();
        let result = self
            .client
            .put_item()
            .table_name(&*self.name)
            .set_item(Some(item))
            .set_condition_expression(expr)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .send()
            .await;
        Ok(conditional("PutItem", result)?.is_some())
    }

    /// Updates an item and returns its new attributes; `Ok(None)` if the condition did not hold.
    pub async fn update(&self, k: Key, update: Update) -> Result<Option<Item>, StoreError> {
        let (expr, condition, names, values) = update.parts();
        let result = self
            .client
            .update_item()
            .table_name(&*self.name)
            .set_key(Some(key_item(k)))
            .update_expression(expr)
            .set_condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        Ok(conditional("UpdateItem", result)?.map(|out| out.attributes.unwrap_or_default()))
    }

    /// Deletes an item; `Ok(false)` if its condition did not hold.
    pub async fn delete(&self, k: Key, condition: Condition) -> Result<bool, StoreError> {
        let (expr, names, values) = condition.parts();
        let result = self
            .client
            .delete_item()
            .table_name(&*self.name)
            .set_key(Some(key_item(k)))
            .set_condition_expression(expr)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .send()
            .await;
        Ok(conditional("DeleteItem", result)?.is_some())
    }

    /// A put inside a transaction.
    pub fn put_tx(&self, item: Item, condition: Condition) -> Result<TransactWriteItem, StoreError> {
        let (expr, names, values) = condition.parts();
        let put = Put::builder()
            .table_name(&*self.name)
            .set_item(Some(item))
            .set_condition_expression(expr)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .build()
            .map_err(corrupt)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// An update inside a transaction.
    pub fn update_tx(&self, k: Key, update: Update) -> Result<TransactWriteItem, StoreError> {
        let (expr, condition, names, values) = update.parts();
        let u = SdkUpdate::builder()
            .table_name(&*self.name)
            .set_key(Some(key_item(k)))
            .update_expression(expr)
            .set_condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .build()
            .map_err(corrupt)?;
        Ok(TransactWriteItem::builder().update(u).build())
    }

    /// A delete inside a transaction.
    pub fn delete_tx(&self, k: Key) -> Result<TransactWriteItem, StoreError> {
        let d = Delete::builder()
            .table_name(&*self.name)
            .set_key(Some(key_item(k)))
            .build()
            .map_err(corrupt)?;
        Ok(TransactWriteItem::builder().delete(d).build())
    }

    /// One atomic write. `token` makes the SDK's own retries idempotent for ten minutes.
    pub async fn transact(&self, items: Vec<TransactWriteItem>, token: Option<String>) -> Result<Transact, StoreError> {
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .set_client_request_token(token)
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(Transact::Committed),
            Err(e) => e,
        };
        match err.as_service_error() {
            // Cancelled by a condition or by a concurrent transaction on the same items; any
            // other reason (throttling, validation) is an error, not a conflict.
            Some(TransactWriteItemsError::TransactionCanceledException(c))
                if c.cancellation_reasons()
                    .iter()
                    .any(|r| matches!(r.code(), Some("ConditionalCheckFailed" | "TransactionConflict"))) =>
            {
                Ok(Transact::Cancelled(
                    c.cancellation_reasons()
                        .iter()
                        .map(|r| r.code() == Some("ConditionalCheckFailed"))
                        .collect(),
                ))
            }
            Some(TransactWriteItemsError::TransactionInProgressException(_)) => Ok(Transact::Cancelled(vec![])),
            _ => Err(store_error("TransactWriteItems", err)),
        }
    }

    /// One atomic write with the domain events it makes: they ride in the write (one outbox
    /// entry), are published after the commit and the entry removed; what a failed publish
    /// leaves is published by [`crate::bus::relay`].
    pub async fn transact_events(
        &self,
        items: Vec<TransactWriteItem>,
        token: Option<String>,
        events: &[DomainEvent],
    ) -> Result<Transact, StoreError> {
        let (out, entry) = self.transact_outboxed(items, token, events).await?;
        if let Some(key) = entry.filter(|_| out.committed()) {
            crate::bus::published(self, &[(key, events)]).await;
        }
        Ok(out)
    }

    /// One atomic write with its events' outbox entry; the entry's key if it has one.
    async fn transact_outboxed(
        &self,
        mut items: Vec<TransactWriteItem>,
        token: Option<String>,
        events: &[DomainEvent],
    ) -> Result<(Transact, Option<Key>), StoreError> {
        let entry = crate::bus::entry(self.bus.as_ref(), events, Utc::now())?;
        let key = entry.as_ref().map(|(k, _)| k.clone());
        if let Some((_, item)) = entry {
            items.push(self.put_tx(item, Condition::none())?);
        }
        Ok((self.transact(items, token).await?, key))
    }

    /// Independent writes, each all-or-nothing, packed in order into as few transactions as
    /// hold them (100 actions each; a write is never split). Each write's token is used when
    /// it opens a transaction; its counters are merged with the transaction's other writes'
    /// counters on the same item (a transaction may touch an item once). For each write:
    /// `Ok(true)` committed, `Ok(false)` the transaction it was packed in was refused (none of
    /// it happened), `Err` it failed, could not be built or does not fit one transaction.
    pub async fn transact_packed(
        &self,
        writes: impl IntoIterator<Item = Result<Packed, StoreError>>,
    ) -> Vec<Result<bool, StoreError>> {
        const MAX_ITEMS: usize = 100;
        let mut out = Vec::new();
        let mut packed: Vec<TransactWriteItem> = Vec::new();
        let mut counters: Vec<Counter> = Vec::new();
        let mut events: Vec<DomainEvent> = Vec::new();
        let mut members = 0;
        let mut token = None;
        // The transaction's events take one item (its outbox entry), whatever their number.
        let outbox = |events: &[DomainEvent]| usize::from(self.bus.is_some() && !events.is_empty());
        // The events of the committed transactions, published together at the end.
        let mut outboxed: Vec<(Key, Vec<DomainEvent>)> = Vec::new();
        for write in writes {
            // A write's counter that merges with one already packed takes no room.
            let fits = matches!(&write, Ok(w) if {
                let new = w.counters.iter().filter(|c| !counters.iter().any(|k| k.group == c.group)).count();
                let entry = outbox(&events).max(outbox(&w.events));
                packed.len() + counters.len() + w.items.len() + new + entry <= MAX_ITEMS
            });
            if !fits && members > 0 {
                let result = self
                    .flush(&mut packed, &mut counters, &mut events, token.take(), &mut outboxed)
                    .await;
                out.extend(std::iter::repeat_n(result, members));
                members = 0;
            }
            match write {
                Err(e) => out.push(Err(e)),
                Ok(w) if w.items.len() + w.counters.len() + outbox(&w.events) > MAX_ITEMS => {
                    out.push(Err(corrupt("a write holds more actions than one transaction")))
                }
                Ok(w) => {
                    if members == 0 {
                        token = w.token;
                    }
                    events.extend(w.events);
                    packed.extend(w.items);
                    for c in w.counters {
                        match counters.iter_mut().find(|k| k.group == c.group) {
                            Some(k) => k.merge(&c),
                            None => counters.push(c),
                        }
                    }
                    members += 1;
                }
            }
        }
        if members > 0 {
            let result = self
                .flush(&mut packed, &mut counters, &mut events, token, &mut outboxed)
                .await;
            out.extend(std::iter::repeat_n(result, members));
        }
        let outboxed: Vec<(Key, &[DomainEvent])> = outboxed.iter().map(|(k, e)| (k.clone(), e.as_slice())).collect();
        crate::bus::published(self, &outboxed).await;
        out
    }

    async fn flush(
        &self,
        packed: &mut Vec<TransactWriteItem>,
        counters: &mut Vec<Counter>,
        events: &mut Vec<DomainEvent>,
        token: Option<String>,
        outboxed: &mut Vec<(Key, Vec<DomainEvent>)>,
    ) -> Result<bool, StoreError> {
        let mut items = std::mem::take(packed);
        let events = std::mem::take(events);
        for c in std::mem::take(counters) {
            items.push(self.update_tx(c.key.clone(), c.update())?);
        }
        let (out, entry) = self.transact_outboxed(items, token, &events).await?;
        if let Some(key) = entry.filter(|_| out.committed()) {
            outboxed.push((key, events));
        }
        Ok(out.committed())
    }

    /// Strongly consistent BatchGetItem of any number of keys (100 per request), retrying
    /// unprocessed keys with backoff. Returns the items found, by key.
    pub async fn get_many(&self, keys: Vec<Key>) -> Result<HashMap<Key, Item>, StoreError> {
        let mut unique = keys;
        unique.sort();
        unique.dedup();
        // One BatchGetItem per 100 keys, all at once (reads: nothing to order).
        let pages = futures::future::join_all(unique.chunks(100).map(|chunk| self.get_page(chunk))).await;
        let mut found = HashMap::new();
        for page in pages {
            for item in page? {
                if let (Some(pk), Some(sk)) = (str_attr(&item, PK), str_attr(&item, SK)) {
                    found.insert((pk.to_owned(), sk.to_owned()), item);
                }
            }
        }
        Ok(found)
    }

    /// The items of at most 100 keys (one BatchGetItem, and again for what it left unprocessed).
    async fn get_page(&self, keys: &[Key]) -> Result<Vec<Item>, StoreError> {
        let wanted: Vec<Item> = keys.iter().cloned().map(key_item).collect();
        let mut pending = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(wanted))
                .consistent_read(true)
                .build()
                .map_err(corrupt)?,
        );
        let mut found = Vec::new();
        let mut rounds = 0;
        while let Some(keys_and_attrs) = pending.take() {
            rounds += 1;
            let out = self
                .client
                .batch_get_item()
                .request_items(&*self.name, keys_and_attrs)
                .send()
                .await
                .map_err(|e| store_error("BatchGetItem", e))?;
            found.extend(
                out.responses
                    .unwrap_or_default()
                    .remove(&*self.name)
                    .unwrap_or_default(),
            );
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&*self.name))
                .filter(|k| !k.keys.is_empty());
            if pending.is_some() {
                if rounds >= 5 {
                    return Err(StoreError::Throttled("BatchGetItem left keys unprocessed".into()));
                }
                tokio::time::sleep(std::time::Duration::from_millis(20 << rounds)).await;
            }
        }
        Ok(found)
    }

    /// The items a query selects, following pages, at most its limit.
    pub async fn query(&self, q: Query) -> Result<Vec<Item>, StoreError> {
        let (pk_attr, sk_attr) = q.index.attributes();
        let mut key_condition = format!("{pk_attr} = :pk");
        let mut values = HashMap::from([(":pk".to_owned(), s(q.partition.clone()))]);
        if let Some((expr, v)) = &q.sort {
            key_condition.push_str(" AND ");
            key_condition.push_str(&expr.replace("{sk}", sk_attr));
            values.insert(":sk".into(), s(v.clone()));
        }
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let remaining = q.limit.map(|l| l.saturating_sub(out.len()));
            if remaining == Some(0) {
                return Ok(out);
            }
            let page = self
                .client
                .query()
                .table_name(&*self.name)
                .set_index_name(q.index.name().map(str::to_owned))
                .key_condition_expression(&key_condition)
                .set_filter_expression(q.filter.clone())
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(!q.backward)
                .consistent_read(q.consistent)
                .set_limit(remaining.map(|r| i32::try_from(r).unwrap_or(i32::MAX)))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| store_error("Query", e))?;
            out.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() {
                if let Some(l) = q.limit {
                    out.truncate(l);
                }
                return Ok(out);
            }
        }
    }

    /// Unconditional puts and deletes, 25 a `BatchWriteItem`, retrying what DynamoDB left
    /// unprocessed. For items whose writes need no condition and no atomicity with each other
    /// (list memberships).
    pub async fn write_many(&self, puts: Vec<Item>, deletes: Vec<Key>) -> Result<(), StoreError> {
        use aws_sdk_dynamodb::types::{DeleteRequest, PutRequest, WriteRequest};
        let mut requests = Vec::with_capacity(puts.len() + deletes.len());
        for item in puts {
            requests.push(
                WriteRequest::builder()
                    .put_request(PutRequest::builder().set_item(Some(item)).build().map_err(corrupt)?)
                    .build(),
            );
        }
        for k in deletes {
            requests.push(
                WriteRequest::builder()
                    .delete_request(
                        DeleteRequest::builder()
                            .set_key(Some(key_item(k)))
                            .build()
                            .map_err(corrupt)?,
                    )
                    .build(),
            );
        }
        for chunk in requests.chunks(25) {
            let mut pending = chunk.to_vec();
            let mut rounds = 0;
            while !pending.is_empty() {
                rounds += 1;
                if rounds > 5 {
                    return Err(StoreError::Throttled("BatchWriteItem left writes unprocessed".into()));
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&*self.name, pending)
                    .send()
                    .await
                    .map_err(|e| store_error("BatchWriteItem", e))?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&*self.name))
                    .unwrap_or_default();
                if !pending.is_empty() {
                    tokio::time::sleep(std::time::Duration::from_millis(50 << rounds)).await;
                }
            }
        }
        Ok(())
    }

    /// Entries of the sparse `due` index due by `until` (inclusive: a sortable time),
    /// partition by partition, at most `limit` in all.
    pub async fn due_entries(
        &self,
        partitions: impl IntoIterator<Item = String>,
        until: &str,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        for pk in partitions {
            if out.len() >= limit {
                break;
            }
            // `~` sorts after every character of a key's suffix: entries due exactly at `until` count.
            let q = Query::partition(Index::Due, pk)
                .at_most(format!("{until}~"))
                .limit(limit - out.len());
            out.extend(self.query(q).await?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transact_outcome() {
        let t = Transact::Cancelled(vec![false, true]);
        assert!(t.failed_at(1) && !t.failed_at(0) && !t.failed_at(5) && !t.committed());
    }
}

/// One write for [`Table::transact_packed`]: its actions, its counters, its idempotency token.
#[derive(Debug, Clone, Default)]
pub struct Packed {
    pub items: Vec<TransactWriteItem>,
    pub counters: Vec<Counter>,
    /// The domain events the write makes (they ride in its transaction's outbox entry).
    pub events: Vec<DomainEvent>,
    pub token: Option<String>,
}

/// Numbers added to one item (`ADD`), with attributes it keeps (`SET`). Counters of one
/// `group` (the same count, whichever shard item holds it) packed in one transaction are one
/// update, of the first one's item.
#[derive(Debug, Clone, PartialEq)]
pub struct Counter {
    pub key: Key,
    pub group: String,
    pub adds: std::collections::BTreeMap<String, i64>,
    pub sets: std::collections::BTreeMap<String, String>,
}

impl Counter {
    pub fn merge(&mut self, other: &Counter) {
        for (k, v) in &other.adds {
            *self.adds.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.sets {
            self.sets.insert(k.clone(), v.clone());
        }
    }

    pub fn update(&self) -> Update {
        let mut u = Update::new();
        for (k, v) in &self.sets {
            u = u.set(k, s(v.clone()));
        }
        for (k, v) in &self.adds {
            u = u.add(k, *v);
        }
        u
    }
}
