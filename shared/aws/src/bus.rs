//! Domain events out to an EventBridge bus (docs/events.md), through the records table's
//! outbox: a write's events ride in the write itself as one outbox entry
//! (`EVOUT#<first event id>` / `EVOUT`, due in the sparse index under `EVDUE#<shard>`), are
//! published right after the commit and the entry removed; an entry a failed publish left
//! behind is published by the relay the process run calls. Consumers de-duplicate by each
//! event's `event_id`, the same on every publish of it.

use std::sync::Arc;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use chrono::{DateTime, Duration, Utc};
use leadflow_domain::events::{DomainEvent, SOURCE};
use leadflow_domain::ports::StoreError;

use crate::keys::{self, Key, DUE_PK, DUE_SK, TTL};
use crate::table::{n, s, str_attr, Condition, Item, Table};

/// PutEvents takes at most ten entries a request.
const PUT_EVENTS_MAX: usize = 10;
/// Grace before the relay publishes an entry: the writer publishes at once and removes it.
pub const RELAY_GRACE: Duration = Duration::minutes(2);
/// After a failed relay publish, when to try again.
const RELAY_RETRY: Duration = Duration::minutes(5);
/// How long an entry waits for a bus that keeps refusing it.
const KEEP_DAYS: i64 = 14;

/// An EventBridge bus, by name.
#[derive(Clone, Debug)]
pub struct EventBus {
    client: aws_sdk_eventbridge::Client,
    name: Arc<str>,
}

impl EventBus {
    pub fn new(client: aws_sdk_eventbridge::Client, name: impl AsRef<str>) -> Self {
        Self {
            client,
            name: Arc::from(name.as_ref()),
        }
    }

    /// Publishes every event (ten a request, the requests at once); an error if any entry was
    /// refused, so the caller keeps the outbox entry and the relay publishes them all again.
    pub async fn publish(&self, events: &[DomainEvent]) -> Result<(), StoreError> {
        let sent = futures::future::join_all(events.chunks(PUT_EVENTS_MAX).map(|chunk| self.put(chunk))).await;
        sent.into_iter().collect()
    }

    async fn put(&self, chunk: &[DomainEvent]) -> Result<(), StoreError> {
        let entries = chunk
            .iter()
            .map(|e| {
                Ok(PutEventsRequestEntry::builder()
                    .event_bus_name(&*self.name)
                    .source(SOURCE)
                    .detail_type(&e.kind)
                    .time(aws_sdk_eventbridge::primitives::DateTime::from_millis(
                        e.time.timestamp_millis(),
                    ))
                    .detail(serde_json::to_string(e).map_err(|e| StoreError::Corrupt(e.to_string()))?)
                    .build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let out = self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| crate::store_error("PutEvents", e))?;
        let failed = out.failed_entry_count();
        if failed > 0 {
            let codes: Vec<&str> = out.entries().iter().filter_map(|e| e.error_code()).collect();
            return Err(StoreError::Unavailable(format!(
                "PutEvents: {failed} of {} entries refused ({})",
                chunk.len(),
                codes.join(", ")
            )));
        }
        Ok(())
    }
}

fn entry_key(events: &[DomainEvent]) -> Option<Key> {
    events
        .first()
        .map(|e| (format!("EVOUT#{}", e.event_id), "EVOUT".to_owned()))
}

/// The outbox entry of a write's events: `None` without a bus or without events.
pub(crate) fn entry(
    bus: Option<&EventBus>,
    events: &[DomainEvent],
    now: DateTime<Utc>,
) -> Result<Option<(Key, Item)>, StoreError> {
    let (Some(_), Some(key)) = (bus, entry_key(events)) else {
        return Ok(None);
    };
    let text = serde_json::to_string(events).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut item = crate::table::key_item(key.clone());
    item.insert("type".into(), s("events"));
    item.insert("events".into(), s(text));
    let (due_pk, due_sk) = due(&key, now + RELAY_GRACE);
    item.insert(DUE_PK.into(), s(due_pk));
    item.insert(DUE_SK.into(), s(due_sk));
    item.insert(TTL.into(), n((now + Duration::days(KEEP_DAYS)).timestamp()));
    Ok(Some((key, item)))
}

const DUE_SHARDS: u32 = 8;

fn due(key: &Key, at: DateTime<Utc>) -> (String, String) {
    (
        format!("EVDUE#{}", keys::shard_of(&key.0, DUE_SHARDS)),
        format!("{}#{}", keys::sortable_time(at), key.0),
    )
}

/// After the commits: publishes the writes' events (ten a request) and removes their entries
/// (25 a request). A failure is logged (counts and codes only) and left to the relay, which
/// publishes those entries again (same ids).
pub(crate) async fn published(table: &Table, written: &[(Key, &[DomainEvent])]) {
    let Some(bus) = table.bus() else { return };
    if written.is_empty() {
        return;
    }
    let events: Vec<DomainEvent> = written.iter().flat_map(|(_, e)| e.iter().cloned()).collect();
    match bus.publish(&events).await {
        Ok(()) => {
            let keys = written.iter().map(|(k, _)| k.clone()).collect();
            if let Err(e) = table.write_many(Vec::new(), keys).await {
                tracing::warn!(error = %e, "events published; their outbox entries are left for the relay (published again, same ids)");
            }
        }
        Err(e) => {
            tracing::warn!(events = events.len(), error = %e, "events not published; left in the outbox for the relay")
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayReport {
    pub entries: usize,
    pub published: usize,
    pub failed: usize,
}

/// Publishes the outbox entries whose writer did not (due at or before `now`), at most `limit`.
pub async fn relay(table: &Table, now: DateTime<Utc>, limit: usize) -> Result<RelayReport, StoreError> {
    let Some(bus) = table.bus() else {
        return Ok(RelayReport::default());
    };
    let mut report = RelayReport::default();
    let shards = (0..DUE_SHARDS).map(|i| format!("EVDUE#{i}"));
    for item in table.due_entries(shards, &keys::sortable_time(now), limit).await? {
        report.entries += 1;
        let key = (
            str_attr(&item, keys::PK).unwrap_or_default().to_owned(),
            str_attr(&item, keys::SK).unwrap_or_default().to_owned(),
        );
        let events: Vec<DomainEvent> = match serde_json::from_str(str_attr(&item, "events").unwrap_or("[]")) {
            Ok(events) => events,
            Err(e) => {
                // Unreadable (a bad manual edit): out of the way, kept for a person to look at.
                tracing::error!(error = %e, "relay: an events outbox entry cannot be read; set aside");
                report.failed += 1;
                table
                    .update(
                        key,
                        crate::expr::Update::new().remove(DUE_PK).remove(DUE_SK).if_exists(),
                    )
                    .await?;
                continue;
            }
        };
        match bus.publish(&events).await {
            Ok(()) => {
                report.published += events.len();
                table.delete(key, Condition::none()).await?;
            }
            Err(e) => {
                tracing::warn!(events = events.len(), error = %e, "relay: events not published; tried again later");
                report.failed += events.len();
                let (_, due_sk) = due(&key, now + RELAY_RETRY);
                let update = crate::expr::Update::new().set(DUE_SK, s(due_sk)).if_exists();
                table.update(key, update).await?;
            }
        }
    }
    Ok(report)
}
