//! The scoring side of the records table: load leads, contacts and interactions in one read;
//! write a lead's new score, its history and its interactions' "scored" marks in one
//! transaction; the re-scoring schedule; scoring configuration from the config table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use serde_dynamo::aws_sdk_dynamodb_1::{from_attribute_value, from_item};

use leadflow_domain::ports::StoreError;
use leadflow_domain::records::{Contact, ContactId, Interaction, InteractionId, LeadId};
use leadflow_domain::scoring::lead::LeadScoring;
use leadflow_domain::scoring::service::{
    LeadSnapshot, Loaded, ScoreCommit, ScoreWrite, ScoringConfigSource, ScoringStore, StoredInteraction,
};
use leadflow_domain::scoring::ScoringConfig;

use crate::item::{batch_get, corrupt, key, put, record_item, s, str_attr, to_av, Item};
use crate::keys::{self, sortable_time, DUE_PK, DUE_SK, TTL};
use crate::store_error;

#[derive(Clone)]
pub struct DynamoScoring {
    client: Client,
    table: String,
}

fn update(
    table: &str,
    k: (String, String),
    expr: &str,
    condition: Option<&str>,
    values: Item,
) -> Result<TransactWriteItem, StoreError> {
    let u = Update::builder()
        .table_name(table)
        .set_key(Some(key(k)))
        .update_expression(expr)
        .set_condition_expression(condition.map(str::to_owned))
        .set_expression_attribute_values((!values.is_empty()).then_some(values))
        .build()
        .map_err(corrupt)?;
    Ok(TransactWriteItem::builder().update(u).build())
}

/// Where in the transaction each kind of item sits, to read cancellation reasons back.
enum Slot {
    Lead,
    Interaction(InteractionId),
    Other,
}

impl DynamoScoring {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The leads and contacts an SES message id was sent for.
    pub async fn email_messages(&self, ids: &[String]) -> Result<HashMap<String, (LeadId, ContactId)>, StoreError> {
        let found = batch_get(
            &self.client,
            &self.table,
            ids.iter().map(|i| keys::email_message(i)).collect(),
        )
        .await?;
        let mut out = HashMap::new();
        for item in found.values() {
            let (Some(m), Some(l), Some(c)) = (
                str_attr(item, "message_id"),
                str_attr(item, "lead_id"),
                str_attr(item, "contact_id"),
            ) else {
                continue;
            };
            if let (Some(l), Some(c)) = (LeadId::parse(l), ContactId::parse(c)) {
                out.insert(m.to_owned(), (l, c));
            }
        }
        Ok(out)
    }

    /// Records which lead an email went to (the process function calls this when it sends).
    pub async fn record_email_message(
        &self,
        message_id: &str,
        lead: LeadId,
        contact: ContactId,
    ) -> Result<(), StoreError> {
        let item = email_message_item(message_id, lead, contact);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| store_error("PutItem", e))?;
        Ok(())
    }

    /// Leads whose re-scoring is due by `until` (`keys::NEVER` for every scored lead), per shard.
    pub async fn rescore_candidates(&self, until: &str, limit: usize) -> Result<Vec<(LeadId, ContactId)>, StoreError> {
        let shards = (0..keys::RESCORE_SHARDS).map(keys::rescore_pk);
        let items = crate::item::due_entries(&self.client, &self.table, shards, until, limit).await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                Some((
                    str_attr(item, "lead_id").and_then(LeadId::parse)?,
                    str_attr(item, "contact_id").and_then(ContactId::parse)?,
                ))
            })
            .collect())
    }

    fn slots_and_items(&self, w: &ScoreWrite) -> Result<(Vec<Slot>, Vec<TransactWriteItem>), StoreError> {
        let mut slots = Vec::new();
        let mut items = Vec::new();
        let sc = &w.outcome.scoring;
        // The lead: new scoring state, guarded by the version it was computed from.
        let mut values: Item = HashMap::from([
            (":scoring".to_owned(), to_av(sc)?),
            (":total".to_owned(), AttributeValue::N(sc.total.to_string())),
            (":band".to_owned(), s(sc.band.clone().unwrap_or_default())),
            (":ready".to_owned(), AttributeValue::Bool(sc.sales_ready)),
        ]);
        let mut expr = "SET scoring = :scoring, score_total = :total, band = :band, sales_ready = :ready".to_owned();
        if w.outcome.band_changed || w.outcome.became_sales_ready || w.expected_version == 0 {
            // The process function looks at this lead next (first score, new band, sales-ready).
            let (dpk, dsk) = keys::lead_due(w.now, w.lead_id);
            expr.push_str(", due_pk = :dpk, due_sk = :dsk");
            values.insert(":dpk".into(), s(dpk));
            values.insert(":dsk".into(), s(dsk));
        }
        let condition = if w.expected_version == 0 {
            "attribute_exists(pk) AND attribute_not_exists(scoring)".to_owned()
        } else {
            values.insert(":v".into(), AttributeValue::N(w.expected_version.to_string()));
            "attribute_exists(pk) AND scoring.version = :v".to_owned()
        };
        items.push(update(
            &self.table,
            keys::lead(w.lead_id),
            &expr,
            Some(&condition),
            values,
        )?);
        slots.push(Slot::Lead);
        let now = HashMap::from([(":now".to_owned(), s(sortable_time(w.now)))]);
        for id in &w.confirm {
            // Scored once: the mark is set only if absent. Leaving the outbox confirms delivery.
            items.push(update(
                &self.table,
                keys::interaction(w.lead_id, *id),
                "SET scored_at = :now REMOVE due_pk, due_sk",
                Some("attribute_exists(pk) AND attribute_not_exists(scored_at)"),
                now.clone(),
            )?);
            slots.push(Slot::Interaction(*id));
        }
        for ix in &w.create {
            let mut item = record_item(ix, keys::interaction(w.lead_id, ix.interaction_id), "interaction")?;
            item.insert("scored_at".into(), s(sortable_time(w.now)));
            items.push(put(&self.table, item, Some("attribute_not_exists(pk)"), None)?);
            slots.push(Slot::Interaction(ix.interaction_id));
        }
        for change in &w.outcome.changes {
            let item = record_item(
                change,
                keys::score_history(w.lead_id, w.now, &change.model_id, sc.version),
                "score_change",
            )?;
            items.push(put(&self.table, item, None, None)?);
            slots.push(Slot::Other);
        }
        let mut rescore = key(keys::rescore(w.lead_id));
        let (rpk, rsk) = keys::rescore_entry(sc.next_rescore_at, w.lead_id);
        rescore.insert("type".into(), s("rescore"));
        rescore.insert("lead_id".into(), s(w.lead_id.to_string()));
        rescore.insert("contact_id".into(), s(w.contact_id.to_string()));
        rescore.insert(DUE_PK.into(), s(rpk));
        rescore.insert(DUE_SK.into(), s(rsk));
        items.push(put(&self.table, rescore, None, None)?);
        slots.push(Slot::Other);
        if let Some(sup) = &w.suppress {
            items.push(update(
                &self.table,
                keys::contact(w.contact_id),
                "SET suppressed = if_not_exists(suppressed, :s)",
                Some("attribute_exists(pk)"),
                HashMap::from([(":s".to_owned(), to_av(sup)?)]),
            )?);
            slots.push(Slot::Other);
        }
        if let Some(link) = &w.link {
            let mut item = key(keys::visitor_link(&link.visitor_id));
            item.insert("type".into(), s("visitor_link"));
            item.insert("lead_id".into(), s(w.lead_id.to_string()));
            item.insert("contact_id".into(), s(w.contact_id.to_string()));
            items.push(put(&self.table, item, None, None)?);
            slots.push(Slot::Other);
            for id in &link.moved {
                items.push(update(
                    &self.table,
                    keys::visitor_interaction(&link.visitor_id, *id),
                    "SET linked_lead = :lead",
                    Some("attribute_exists(pk) AND attribute_not_exists(linked_lead)"),
                    HashMap::from([(":lead".to_owned(), s(w.lead_id.to_string()))]),
                )?);
                slots.push(Slot::Other);
            }
        }
        Ok((slots, items))
    }
}

impl ScoringStore for DynamoScoring {
    async fn load(
        &self,
        leads: &[(LeadId, ContactId)],
        interactions: &[(LeadId, InteractionId)],
    ) -> Result<Loaded, StoreError> {
        let mut wanted = Vec::new();
        for (l, c) in leads {
            wanted.push(keys::lead(*l));
            wanted.push(keys::contact(*c));
        }
        wanted.extend(interactions.iter().map(|(l, i)| keys::interaction(*l, *i)));
        let found = batch_get(&self.client, &self.table, wanted).await?;
        let mut loaded = Loaded::default();
        for (l, c) in leads {
            let (Some(lead), Some(contact)) = (found.get(&keys::lead(*l)), found.get(&keys::contact(*c))) else {
                continue;
            };
            let contact: Contact = from_item(contact.clone()).map_err(corrupt)?;
            let scoring: LeadScoring = match lead.get("scoring") {
                Some(v) => from_attribute_value(v.clone()).map_err(corrupt)?,
                None => LeadScoring::default(),
            };
            loaded.leads.insert(
                *l,
                LeadSnapshot {
                    lead_id: *l,
                    contact,
                    scoring,
                },
            );
        }
        for (l, i) in interactions {
            if let Some(item) = found.get(&keys::interaction(*l, *i)) {
                let scored = item.contains_key("scored_at");
                let interaction: Interaction = from_item(item.clone()).map_err(corrupt)?;
                loaded
                    .interactions
                    .insert(*i, StoredInteraction { interaction, scored });
            }
        }
        Ok(loaded)
    }

    async fn commit(&self, w: &ScoreWrite) -> Result<ScoreCommit, StoreError> {
        let (slots, items) = self.slots_and_items(w)?;
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(ScoreCommit::Committed),
            Err(e) => e,
        };
        let Some(
            aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c),
        ) = err.as_service_error()
        else {
            return Err(store_error("TransactWriteItems", err));
        };
        let mut scored = Vec::new();
        for (slot, reason) in slots.iter().zip(c.cancellation_reasons()) {
            if reason.code() == Some("ConditionalCheckFailed") {
                match slot {
                    Slot::Interaction(id) => scored.push(*id),
                    Slot::Lead | Slot::Other => return Ok(ScoreCommit::VersionConflict),
                }
            }
        }
        // Nothing failed a condition: a conflicting transaction on the same items; read again.
        Ok(if scored.is_empty() {
            ScoreCommit::VersionConflict
        } else {
            ScoreCommit::AlreadyScored(scored)
        })
    }

    async fn anonymous(&self, visitor_id: &str, limit: usize) -> Result<Vec<Interaction>, StoreError> {
        let (pk, _) = keys::visitor_link(visitor_id);
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :ix)")
            .filter_expression("attribute_not_exists(linked_lead)")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":ix", s("IX#"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("Query", e))?;
        out.items
            .unwrap_or_default()
            .into_iter()
            .take(limit)
            .map(|i| from_item(i).map_err(corrupt))
            .collect()
    }
}

type CachedConfig = (Instant, Arc<ScoringConfig>);

/// Scoring configuration from the config table (`SCORING`/`CONFIG`), cached per container;
/// the built-in default (SPEC's model) when none is stored.
#[derive(Clone)]
pub struct DynamoScoringConfig {
    docs: crate::docs::DynamoDocs,
    cache: Arc<Mutex<Option<CachedConfig>>>,
}

impl DynamoScoringConfig {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            docs: crate::docs::DynamoDocs::new(client, table),
            cache: Arc::default(),
        }
    }

    pub async fn put(&self, config: &ScoringConfig) -> Result<(), StoreError> {
        config.check().map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.docs.put("scoring", config).await?;
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(())
    }
}

impl ScoringConfigSource for DynamoScoringConfig {
    async fn scoring_config(&self) -> Result<Arc<ScoringConfig>, StoreError> {
        if let Some((at, c)) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            if at.elapsed() < Duration::from_secs(60) {
                return Ok(c.clone());
            }
        }
        let config = match self.docs.get::<ScoringConfig>("scoring").await? {
            Some(c) => {
                c.check().map_err(corrupt)?;
                c
            }
            None => ScoringConfig::defaults(),
        };
        let config = Arc::new(config);
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), config.clone()));
        Ok(config)
    }
}

/// The item that maps SES's message id back to the lead and contact an email was sent for.
pub fn email_message_item(message_id: &str, lead: LeadId, contact: ContactId) -> Item {
    let mut item = key(keys::email_message(message_id));
    item.insert("type".into(), s("email_message"));
    item.insert("message_id".into(), s(message_id));
    item.insert("lead_id".into(), s(lead.to_string()));
    item.insert("contact_id".into(), s(contact.to_string()));
    item
}

/// Anonymous interactions are kept this long before they are dropped unlinked.
pub const ANONYMOUS_TTL_DAYS: i64 = 90;

pub(crate) fn anonymous_item(visitor: &str, ix: &Interaction) -> Result<Item, StoreError> {
    let mut item = record_item(
        ix,
        keys::visitor_interaction(visitor, ix.interaction_id),
        "anonymous_interaction",
    )?;
    let expires: DateTime<Utc> = ix.occurred_at + chrono::Duration::days(ANONYMOUS_TTL_DAYS);
    item.insert(TTL.into(), AttributeValue::N(expires.timestamp().to_string()));
    item.insert("visitor_id".into(), s(visitor));
    Ok(item)
}
