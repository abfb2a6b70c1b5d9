//! Item helpers shared by the adapters: keys, typed attributes, consistent batch reads.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use serde_dynamo::aws_sdk_dynamodb_1::{to_attribute_value, to_item};

use leadflow_domain::ports::StoreError;

use crate::keys::{PK, SK, TYPE};
use crate::store_error;

pub type Item = HashMap<String, AttributeValue>;

pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub fn key((pk, sk): (String, String)) -> Item {
    HashMap::from([(PK.into(), s(pk)), (SK.into(), s(sk))])
}

pub fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

pub fn to_av<T: serde::Serialize>(v: &T) -> Result<AttributeValue, StoreError> {
    to_attribute_value(v).map_err(corrupt)
}

/// A record's item: its fields, its key and its type.
pub fn record_item<T: serde::Serialize>(record: &T, k: (String, String), kind: &str) -> Result<Item, StoreError> {
    let mut item: Item = to_item(record).map_err(corrupt)?;
    item.extend(key(k));
    item.insert(TYPE.into(), s(kind));
    Ok(item)
}

pub fn str_attr<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

/// A Put for a transaction.
pub fn put(
    table: &str,
    item: Item,
    condition: Option<&str>,
    values: Option<Item>,
) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .set_condition_expression(condition.map(str::to_owned))
        .set_expression_attribute_values(values)
        .build()
        .map_err(corrupt)?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// Strongly consistent BatchGetItem of any number of keys (100 per request), retrying
/// unprocessed keys with backoff. Returns the items found, keyed by (pk, sk).
pub async fn batch_get(
    client: &Client,
    table: &str,
    keys: Vec<(String, String)>,
) -> Result<HashMap<(String, String), Item>, StoreError> {
    let mut found = HashMap::new();
    let mut unique = keys;
    unique.sort();
    unique.dedup();
    for chunk in unique.chunks(100) {
        let wanted: Vec<Item> = chunk.iter().cloned().map(key).collect();
        let mut pending = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(wanted))
                .consistent_read(true)
                .build()
                .map_err(corrupt)?,
        );
        let mut rounds = 0;
        while let Some(keys_and_attrs) = pending.take() {
            rounds += 1;
            let out = client
                .batch_get_item()
                .request_items(table, keys_and_attrs)
                .send()
                .await
                .map_err(|e| store_error("BatchGetItem", e))?;
            for item in out.responses.unwrap_or_default().remove(table).unwrap_or_default() {
                if let (Some(pk), Some(sk)) = (str_attr(&item, PK), str_attr(&item, SK)) {
                    found.insert((pk.to_owned(), sk.to_owned()), item);
                }
            }
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(table))
                .filter(|k| !k.keys.is_empty());
            if pending.is_some() {
                if rounds >= 5 {
                    return Err(StoreError::Throttled("BatchGetItem left keys unprocessed".into()));
                }
                tokio::time::sleep(std::time::Duration::from_millis(20 << rounds)).await;
            }
        }
    }
    Ok(found)
}

/// Entries of the sparse `due` index due by `until` (inclusive: `until` is a sortable time),
/// partition by partition, following pages, at most `limit` in all.
pub async fn due_entries(
    client: &Client,
    table: &str,
    partitions: impl IntoIterator<Item = String>,
    until: &str,
    limit: usize,
) -> Result<Vec<Item>, StoreError> {
    let mut out = Vec::new();
    for pk in partitions {
        let mut start = None;
        loop {
            if out.len() >= limit {
                return Ok(out);
            }
            let page = client
                .query()
                .table_name(table)
                .index_name(crate::keys::DUE_INDEX)
                .key_condition_expression("due_pk = :pk AND due_sk <= :until")
                .expression_attribute_values(":pk", s(pk.clone()))
                // `~` sorts after every character of a key's suffix: entries due exactly at `until` count.
                .expression_attribute_values(":until", s(format!("{until}~")))
                .set_exclusive_start_key(start)
                .limit(i32::try_from(limit - out.len()).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(|e| store_error("Query", e))?;
            out.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
    }
    Ok(out)
}
