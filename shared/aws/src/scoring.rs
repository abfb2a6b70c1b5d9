//! The scoring side of the records table: load leads, contacts and interactions in one read;
//! write a lead's new score, its history and its interactions' "scored" marks in one
//! transaction; the re-scoring schedule; SES message ids back to their leads.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::TransactWriteItem;
use chrono::{DateTime, Utc};

use leadflow_domain::ports::StoreError;
use leadflow_domain::records::{Contact, ContactId, Interaction, InteractionId, LeadId};
use leadflow_domain::scoring::lead::LeadScoring;
use leadflow_domain::scoring::service::{
    LeadSnapshot, Loaded, RescorePage, RescorePass, RescoreSchedule, ScoreCommit, ScoreWrite, ScoringStore, SentEmail,
    SentEmails, StoredInteraction,
};

use crate::keys::{self, sortable_time, Index, DUE_PK, DUE_SK, TTL};
use crate::table::{
    attr, corrupt, from_record, n, plain_item, record_item, s, str_attr, to_av, Condition, Item, Packed, Query, Table,
    Update,
};

#[derive(Clone)]
pub struct DynamoScoring {
    table: Table,
}

/// Where in the transaction each kind of item sits, to read cancellation reasons back.
enum Slot {
    Lead,
    Interaction(InteractionId),
    Other,
}

impl DynamoScoring {
    pub fn new(table: Table) -> Self {
        Self { table }
    }

    fn slots_and_items(&self, w: &ScoreWrite) -> Result<(Vec<Slot>, Vec<TransactWriteItem>), StoreError> {
        let mut slots = Vec::new();
        let mut items = Vec::new();
        let sc = &w.outcome.scoring;
        // The lead: new scoring state, guarded by the version it was computed from.
        let mut lead = Update::new()
            .set("scoring", to_av(sc)?)
            .set("score_total", n(sc.total))
            .set("band", s(sc.band.clone().unwrap_or_default()))
            .set(
                "sales_ready",
                aws_sdk_dynamodb::types::AttributeValue::Bool(sc.sales_ready),
            );
        // The `band` index: only leads with a band are in it.
        lead = match &sc.band {
            Some(band) if !band.is_empty() => lead.set(keys::BAND_PK, s(keys::band_pk(band, w.lead_id))),
            _ => lead.remove(keys::BAND_PK),
        };
        if w.outcome.band_changed || w.outcome.became_sales_ready || w.expected_version == 0 {
            // The process function looks at this lead next (first score, new band, sales-ready).
            let (dpk, dsk) = keys::lead_due(w.now, w.lead_id);
            lead = lead.set(DUE_PK, s(dpk)).set(DUE_SK, s(dsk));
        }
        lead = if w.expected_version == 0 {
            lead.when("attribute_exists(pk) AND attribute_not_exists({scoring})", &[])
        } else {
            lead.when(
                "attribute_exists(pk) AND {scoring}.version = :version",
                &[(":version", n(w.expected_version))],
            )
        };
        lead = crate::segments::with_members(lead, &w.upkeep)?;
        items.push(self.table.update_tx(keys::lead(w.lead_id), lead)?);
        slots.push(Slot::Lead);
        for item in crate::segments::change_items(&self.table, &w.upkeep)? {
            items.push(item);
            slots.push(Slot::Other);
        }
        for (id, opened, clicked) in &w.email_marks {
            // Opened or clicked now: a later open or click of this email is not counted again.
            // Only if still unmarked: another batch that counted this email's first open
            // meanwhile refuses this write, and the lead is scored again with fresh marks.
            let mut mark = Update::new();
            let mut unmarked = Vec::new();
            if *opened {
                mark = mark.set_if_absent("opened_at", s(sortable_time(w.now)));
                unmarked.push("attribute_not_exists({opened_at})");
            }
            if *clicked {
                mark = mark.set_if_absent("clicked_at", s(sortable_time(w.now)));
                unmarked.push("attribute_not_exists({clicked_at})");
            }
            let mark = mark.when(&unmarked.join(" AND "), &[]);
            // The item was read for this event (no condition: a vanished item must not fail
            // the lead's scoring).
            items.push(self.table.update_tx(keys::email_message(id), mark)?);
            slots.push(Slot::Other);
        }
        for id in &w.confirm {
            // Scored once: the mark is set only if absent. Leaving the outbox confirms delivery.
            let mark = Update::new()
                .set("scored_at", s(sortable_time(w.now)))
                .remove(DUE_PK)
                .remove(DUE_SK)
                .when("attribute_exists(pk) AND attribute_not_exists({scored_at})", &[]);
            items.push(self.table.update_tx(keys::interaction(w.lead_id, *id), mark)?);
            slots.push(Slot::Interaction(*id));
        }
        for ix in &w.create {
            let mut item = record_item(ix, keys::interaction(w.lead_id, ix.interaction_id), "interaction")?;
            item.insert("scored_at".into(), s(sortable_time(w.now)));
            items.push(self.table.put_tx(item, Condition::absent())?);
            slots.push(Slot::Interaction(ix.interaction_id));
        }
        for change in &w.outcome.changes {
            let item = record_item(
                change,
                keys::score_history(w.lead_id, w.now, &change.model_id, sc.version),
                "score_change",
            )?;
            items.push(self.table.put_tx(item, Condition::none())?);
            slots.push(Slot::Other);
        }
        items.push(self.table.put_tx(
            rescore_item(w.lead_id, w.contact_id, sc.next_rescore_at),
            Condition::none(),
        )?);
        slots.push(Slot::Other);
        if let Some(sup) = &w.suppress {
            let update = Update::new().set_if_absent("suppressed", to_av(sup)?).if_exists();
            items.push(self.table.update_tx(keys::contact(w.contact_id), update)?);
            slots.push(Slot::Other);
        }
        if let Some(link) = &w.link {
            let item = plain_item(
                keys::visitor_link(&link.visitor_id),
                "visitor_link",
                &[
                    ("lead_id", w.lead_id.to_string()),
                    ("contact_id", w.contact_id.to_string()),
                ],
            );
            items.push(self.table.put_tx(item, Condition::none())?);
            slots.push(Slot::Other);
            for id in &link.moved {
                let update = Update::new()
                    .set("linked_lead", s(w.lead_id.to_string()))
                    .when("attribute_exists(pk) AND attribute_not_exists({linked_lead})", &[]);
                items.push(
                    self.table
                        .update_tx(keys::visitor_interaction(&link.visitor_id, *id), update)?,
                );
                slots.push(Slot::Other);
            }
        }
        Ok((slots, items))
    }
}

/// A scoring write's report counters: the funnel's, and the email events'.
fn write_counters(w: &ScoreWrite) -> Vec<crate::table::Counter> {
    let by = w.lead_id.to_string();
    let mut out = crate::counters::counters(&w.tally, &by);
    out.extend(w.email_tallies.iter().map(|t| crate::counters::email_counter(t, &by)));
    out
}

/// A lead's re-scoring entry: due (on the due index) when its scores or segments next change
/// by time alone.
pub(crate) fn rescore_item(lead: LeadId, contact: ContactId, at: Option<DateTime<Utc>>) -> Item {
    let (rpk, rsk) = keys::rescore_entry(at, lead);
    plain_item(
        keys::rescore(lead),
        "rescore",
        &[
            ("lead_id", lead.to_string()),
            ("contact_id", contact.to_string()),
            (DUE_PK, rpk),
            (DUE_SK, rsk),
        ],
    )
}

impl SentEmails for DynamoScoring {
    async fn email_messages(&self, ids: &[String]) -> Result<HashMap<String, SentEmail>, StoreError> {
        let found = self
            .table
            .get_many(ids.iter().map(|i| keys::email_message(i)).collect())
            .await?;
        Ok(found
            .values()
            .filter_map(|item| {
                let (lead_id, contact_id) = lead_and_contact(item)?;
                Some((
                    str_attr(item, "message_id")?.to_owned(),
                    SentEmail {
                        lead_id,
                        contact_id,
                        ledger_key: str_attr(item, "ledger_key").map(str::to_owned),
                        opened: item.contains_key("opened_at"),
                        clicked: item.contains_key("clicked_at"),
                    },
                ))
            })
            .collect())
    }
}

fn lead_and_contact(item: &Item) -> Option<(LeadId, ContactId)> {
    Some((
        str_attr(item, "lead_id").and_then(LeadId::parse)?,
        str_attr(item, "contact_id").and_then(ContactId::parse)?,
    ))
}

impl RescoreSchedule for DynamoScoring {
    async fn rescore_candidates(&self, pass: RescorePass, limit: usize) -> Result<RescorePage, StoreError> {
        let cursor = match pass {
            RescorePass::Due(now) => {
                let shards = (0..keys::RESCORE_SHARDS).map(keys::rescore_pk);
                let items = self.table.due_entries(shards, &sortable_time(now), limit).await?;
                return Ok(RescorePage {
                    leads: items.iter().filter_map(lead_and_contact).collect(),
                    next: None,
                });
            }
            RescorePass::Stale(cursor) => cursor,
        };
        // The cursor is `<shard>|<last sort key>`: every scored lead, shard by shard.
        let (first, mut after) = match cursor.as_deref().and_then(|c| c.split_once('|')) {
            Some((shard, sk)) => (shard.parse::<u32>().map_err(corrupt)?, Some(sk.to_owned())),
            None => (0, None),
        };
        let mut leads = Vec::new();
        for shard in first..keys::RESCORE_SHARDS {
            let mut q = Query::partition(Index::Due, keys::rescore_pk(shard)).limit(limit - leads.len());
            if let Some(sk) = after.take() {
                q = q.after(sk);
            }
            let items = self.table.query(q).await?;
            leads.extend(items.iter().filter_map(lead_and_contact));
            if leads.len() >= limit {
                let last = items.last().and_then(|i| str_attr(i, DUE_SK)).unwrap_or_default();
                return Ok(RescorePage {
                    leads,
                    next: Some(format!("{shard}|{last}")),
                });
            }
        }
        Ok(RescorePage { leads, next: None })
    }

    async fn stale_cursor(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .table
            .get(keys::rescore_cursor())
            .await?
            .and_then(|i| str_attr(&i, "cursor").map(str::to_owned)))
    }

    async fn save_stale_cursor(&self, cursor: Option<&str>) -> Result<(), StoreError> {
        match cursor {
            Some(c) => {
                let item = plain_item(keys::rescore_cursor(), "rescore_cursor", &[("cursor", c.to_owned())]);
                self.table.put(item, Condition::none()).await?;
            }
            None => {
                self.table.delete(keys::rescore_cursor(), Condition::none()).await?;
            }
        }
        Ok(())
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
        let found = self.table.get_many(wanted).await?;
        let mut loaded = Loaded::default();
        for (l, c) in leads {
            let (Some(lead), Some(contact)) = (found.get(&keys::lead(*l)), found.get(&keys::contact(*c))) else {
                continue;
            };
            let contact: Contact = from_record(contact.clone())?;
            let scoring: LeadScoring = attr(lead, "scoring")?.unwrap_or_default();
            let (members, marks) = crate::segments::lead_segments(lead)?;
            loaded.leads.insert(
                *l,
                LeadSnapshot {
                    lead_id: *l,
                    contact,
                    scoring,
                    owner: str_attr(lead, "owner").map(str::to_owned),
                    lead: from_record(lead.clone())?,
                    marks,
                    members,
                },
            );
        }
        for (l, i) in interactions {
            if let Some(item) = found.get(&keys::interaction(*l, *i)) {
                let scored = item.contains_key("scored_at");
                let interaction: Interaction = from_record(item.clone())?;
                loaded
                    .interactions
                    .insert(*i, StoredInteraction { interaction, scored });
            }
        }
        Ok(loaded)
    }

    async fn commit(&self, w: &ScoreWrite) -> Result<ScoreCommit, StoreError> {
        let (mut slots, mut items) = self.slots_and_items(w)?;
        for c in write_counters(w) {
            items.push(self.table.update_tx(c.key.clone(), c.update())?);
            slots.push(Slot::Other);
        }
        let events = leadflow_domain::events::of_scoring(w);
        let outcome = self.table.transact_events(items, None, &events).await?;
        if outcome.committed() {
            return Ok(ScoreCommit::Committed);
        }
        let mut scored = Vec::new();
        for (i, slot) in slots.iter().enumerate() {
            if outcome.failed_at(i) {
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

    async fn commit_many(&self, writes: &[ScoreWrite]) -> Vec<bool> {
        let packed: Vec<_> = writes
            .iter()
            .map(|w| {
                Ok(Packed {
                    items: self.slots_and_items(w)?.1,
                    counters: write_counters(w),
                    events: leadflow_domain::events::of_scoring(w),
                    token: None,
                })
            })
            .collect();
        self.table
            .transact_packed(packed)
            .await
            .into_iter()
            .map(|r| match r {
                Ok(committed) => committed,
                Err(e) => {
                    tracing::warn!(error = %e, "packed scoring write failed; the lead again on its own");
                    false
                }
            })
            .collect()
    }

    async fn anonymous(&self, visitor_id: &str, limit: usize) -> Result<Vec<Interaction>, StoreError> {
        let (pk, _) = keys::visitor_link(visitor_id);
        let q = Query::partition(Index::Table, pk)
            .begins_with(keys::INTERACTION_PREFIX)
            .without("linked_lead");
        let mut items = self.table.query(q).await?;
        items.truncate(limit);
        items.into_iter().map(from_record).collect()
    }
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
    item.insert(TTL.into(), n(expires.timestamp()));
    item.insert("visitor_id".into(), s(visitor));
    Ok(item)
}
