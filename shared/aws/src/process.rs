//! The process side of the records table: due leads and tasks, leases, the send ledger,
//! stage history, tasks, round-robin counters, manual moves and sales activities.

use chrono::{DateTime, Utc};

use leadflow_domain::lists::{ListMember, ListName};
use leadflow_domain::ports::StoreError;
use leadflow_domain::process::activity::Activity;
use leadflow_domain::process::handoff::Task;
use leadflow_domain::process::plan::{LeadView, NurtureState};
use leadflow_domain::process::ports::{
    Claim, ConfirmationSlot, DueItem, LeadApiStore, LeadSave, LeaseStore, RoundRobin, SendLedger, SlotGiveBack,
    TaskAndActivity, TaskStore,
};
use leadflow_domain::process::routine::RoutineStore;
use leadflow_domain::process::stage::StageChange;
use leadflow_domain::records::{Contact, ContactId, Lead, LeadId};
use leadflow_domain::scoring::lead::LeadScoring;
use leadflow_domain::segment::{ActivityMark, SegmentMember, Upkeep};

use crate::keys::{self, sortable_time, DUE_PK, DUE_SK, PK, SK};
use crate::table::{
    attr, corrupt, from_record, n, record_item, s, str_attr, to_av, Condition, Item, Table, Transact, Update,
};

#[derive(Clone)]
pub struct DynamoProcess {
    table: Table,
}

fn time_attr(item: &Item, name: &str) -> Option<DateTime<Utc>> {
    str_attr(item, name)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// A lead's view for the process, from its item and its contact's.
pub fn lead_view(lead_item: Item, contact_item: Item) -> Result<LeadView, StoreError> {
    let scoring: LeadScoring = attr(&lead_item, "scoring")?.unwrap_or_default();
    let nurture: NurtureState = attr(&lead_item, "nurture")?.unwrap_or_default();
    let explanation = scoring
        .scores
        .values()
        .find(|sc| Some(&sc.band) == scoring.band.as_ref() && sc.total == scoring.total)
        .map(|sc| sc.explanation.clone())
        .unwrap_or_default();
    let sends: Vec<DateTime<Utc>> = attr(&contact_item, "sends")?.unwrap_or_default();
    let seq = attr::<u64>(&contact_item, "send_seq")?.unwrap_or(0);
    let (segments, marks) = crate::segments::lead_segments(&lead_item)?;
    let stage_changed_at = time_attr(&lead_item, "stage_changed_at");
    let lead = from_record::<Lead>(lead_item.clone())?;
    Ok(LeadView {
        owner: str_attr(&lead_item, "owner").map(str::to_owned),
        last_sales_activity_at: time_attr(&lead_item, "last_sales_activity_at"),
        stage_since: stage_changed_at.unwrap_or(lead.created_at),
        lead,
        contact: from_record::<Contact>(contact_item)?,
        band: scoring.band.clone(),
        sales_ready: scoring.sales_ready,
        total: scoring.total,
        explanation,
        nurture,
        contact_sends: sends,
        contact_send_seq: seq,
        scoring,
        segments,
        marks,
    })
}

/// The item that maps SES's message id back to the lead and contact an email was sent for.
pub fn email_message_item(message_id: &str, lead: LeadId, contact: ContactId) -> Item {
    crate::table::plain_item(
        keys::email_message(message_id),
        "email_message",
        &[
            ("message_id", message_id.to_owned()),
            ("lead_id", lead.to_string()),
            ("contact_id", contact.to_string()),
        ],
    )
}

impl DynamoProcess {
    pub fn new(table: Table) -> Self {
        Self { table }
    }

    /// The view of a lead item, reading its contact; `None` if the contact is gone.
    async fn with_contact(&self, lead_item: Item) -> Result<Option<LeadView>, StoreError> {
        let contact = str_attr(&lead_item, "contact_id")
            .and_then(ContactId::parse)
            .ok_or_else(|| corrupt("lead without contact"))?;
        let Some(contact_item) = self.table.get(keys::contact(contact)).await? else {
            return Ok(None);
        };
        lead_view(lead_item, contact_item).map(Some)
    }

    /// A write's report counter (none when it counts nothing).
    fn counter_items(
        &self,
        tally: &leadflow_domain::report::Tally,
        lead: LeadId,
    ) -> Result<Vec<aws_sdk_dynamodb::types::TransactWriteItem>, StoreError> {
        crate::counters::counters(tally, &lead.to_string())
            .into_iter()
            .map(|c| self.table.update_tx(c.key.clone(), c.update()))
            .collect()
    }

    fn history_items(
        &self,
        lead: LeadId,
        moves: &[StageChange],
        now: DateTime<Utc>,
    ) -> Result<Vec<aws_sdk_dynamodb::types::TransactWriteItem>, StoreError> {
        moves
            .iter()
            .enumerate()
            .map(|(i, m)| {
                self.table.put_tx(
                    record_item(m, keys::stage_history(lead, now, i), "stage_change")?,
                    Condition::absent(),
                )
            })
            .collect()
    }
}

impl LeadApiStore for DynamoProcess {
    async fn view(&self, lead: LeadId) -> Result<Option<LeadView>, StoreError> {
        let Some(lead_item) = self.table.get(keys::lead(lead)).await? else {
            return Ok(None);
        };
        self.with_contact(lead_item).await
    }

    async fn move_lead(
        &self,
        lead: LeadId,
        change: &StageChange,
        upkeep: &Upkeep,
        tally: &leadflow_domain::report::Tally,
    ) -> Result<bool, StoreError> {
        let (dpk, dsk) = keys::lead_due(change.at, lead);
        let mut update = Update::new()
            .set("stage", to_av(&change.to)?)
            .set(keys::STAGE_PK, s(keys::stage_pk(change.to, lead)))
            .set("status", to_av(&change.to_status)?)
            .set(DUE_PK, s(dpk))
            .set(DUE_SK, s(dsk))
            .when(
                "{stage} = :from AND {status} = :from_status",
                &[
                    (":from", to_av(&change.from)?),
                    (":from_status", to_av(&change.from_status)?),
                ],
            );
        // When the lead entered its stage: a status change (disqualify, convert) keeps it.
        if change.to != change.from {
            update = update.set("stage_changed_at", s(sortable_time(change.at)));
        }
        let update = crate::segments::with_members(update, upkeep)?;
        let mut items = vec![self.table.update_tx(keys::lead(lead), update)?];
        items.extend(self.history_items(lead, std::slice::from_ref(change), change.at)?);
        items.extend(crate::segments::change_items(&self.table, upkeep)?);
        items.extend(self.counter_items(tally, lead)?);
        let events = leadflow_domain::events::of_lead_move(change, upkeep);
        Ok(self.table.transact_events(items, None, &events).await?.committed())
    }

    async fn record_activity(
        &self,
        lead: LeadId,
        contact: ContactId,
        activity: &Activity,
        marks: &[ActivityMark],
        upkeep: &Upkeep,
    ) -> Result<(), StoreError> {
        let mut item = crate::table::key_item(keys::activity(lead, activity.at));
        item.insert("type".into(), s("activity"));
        item.insert("activity".into(), to_av(activity)?);
        let update = Update::new()
            .set("last_sales_activity_at", s(sortable_time(activity.at)))
            .set(crate::segments::MARKS_ATTR, to_av(&marks)?)
            .if_exists();
        let mut items = vec![
            self.table.put_tx(item, Condition::absent())?,
            self.table
                .update_tx(keys::lead(lead), crate::segments::with_members(update, upkeep)?)?,
        ];
        items.extend(crate::segments::change_items(&self.table, upkeep)?);
        let (off, on) = activity.list_changes();
        if let Some(list) = off {
            items.push(self.table.delete_tx(keys::list_member(list.as_str(), lead))?);
            items.push(self.table.delete_tx(keys::listed(lead, list.as_str()))?);
        }
        if let Some(list) = on {
            let member = leadflow_domain::lists::ListMember {
                lead_id: lead,
                contact_id: contact,
                added_at: activity.at,
                source: format!("activity:{}", list.as_str()),
            };
            items.extend(crate::lists::DynamoLists::new(self.table.clone()).add_tx(&list, &member, activity.at)?);
        }
        let events = leadflow_domain::events::of_segments(upkeep);
        if self.table.transact_events(items, None, &events).await?.committed() {
            Ok(())
        } else {
            // The lead was erased while the request ran: nothing is recorded, and the caller hears so.
            Err(StoreError::Unavailable(
                "the lead is gone; the activity was not recorded".into(),
            ))
        }
    }
}

impl LeaseStore for DynamoProcess {
    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<DueItem>, StoreError> {
        let shards = (0..keys::DUE_SHARDS).map(keys::due_pk);
        let items = self.table.due_entries(shards, &sortable_time(now), limit).await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let (lead, task) = keys::due_target(str_attr(item, PK)?, str_attr(item, SK)?)?;
                Some(match task {
                    Some(task) => DueItem::Task(lead, task),
                    None => DueItem::Lead(lead),
                })
            })
            .collect())
    }

    async fn lease(
        &self,
        lead: LeadId,
        run_id: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<LeadView>, StoreError> {
        let update = Update::new()
            .set("lease_run", s(run_id))
            .set("lease_until", s(sortable_time(until)))
            .when(
                "attribute_exists(pk) AND (attribute_not_exists({lease_until}) OR {lease_until} < :now)",
                &[(":now", s(sortable_time(now)))],
            );
        match self.table.update(keys::lead(lead), update).await? {
            Some(lead_item) => self.with_contact(lead_item).await,
            None => Ok(None),
        }
    }

    async fn save(&self, w: &LeadSave) -> Result<(), StoreError> {
        let mut update = Update::new()
            .set("stage", to_av(&w.stage)?)
            .set(keys::STAGE_PK, s(keys::stage_pk(w.stage, w.lead_id)))
            .set("status", to_av(&w.status)?)
            .set("nurture", to_av(&w.nurture)?)
            .remove("lease_run")
            .remove("lease_until")
            .when("{lease_run} = :run", &[(":run", s(w.run_id.clone()))]);
        if let Some(o) = &w.owner {
            update = update.set("owner", s(o.clone()));
        }
        if w.handoff_request_done {
            update = update.remove("handoff_requested");
        }
        if let Some(last) = w.moves.iter().rev().find(|m| m.to != m.from) {
            update = update.set("stage_changed_at", s(sortable_time(last.at)));
        }
        update = match w.next_due {
            Some(at) => {
                let (dpk, dsk) = keys::lead_due(at, w.lead_id);
                update.set(DUE_PK, s(dpk)).set(DUE_SK, s(dsk))
            }
            None => update.remove(DUE_PK).remove(DUE_SK),
        };
        let update = crate::segments::with_members(update, &w.upkeep)?;
        let mut items = vec![self.table.update_tx(keys::lead(w.lead_id), update)?];
        items.extend(self.history_items(w.lead_id, &w.moves, w.now)?);
        items.extend(crate::segments::change_items(&self.table, &w.upkeep)?);
        items.extend(self.counter_items(&w.tally, w.lead_id)?);
        if let Some(t) = &w.task {
            let mut item = record_item(t, keys::task(w.lead_id, &t.task_id), "task")?;
            let (dpk, dsk) = keys::task_due(t.due_at, w.lead_id, &t.task_id);
            item.insert(DUE_PK.into(), s(dpk));
            item.insert(DUE_SK.into(), s(dsk));
            items.push(self.table.put_tx(item, Condition::absent())?);
        }
        let events = leadflow_domain::events::of_save(w);
        if !self.table.transact_events(items, None, &events).await?.committed() {
            // Our lease expired and another run took the lead: its save wins; nothing is lost
            // (emails are in the ledger), the lead is handled by that run.
            tracing::warn!(lead_id = %w.lead_id, "lease lost before saving; the other run's save stands");
        }
        Ok(())
    }
}

impl SendLedger for DynamoProcess {
    async fn claim(
        &self,
        lead: LeadId,
        key_name: &str,
        contact: Option<(ContactId, u64, Vec<DateTime<Utc>>)>,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let ledger = crate::table::plain_item(
            keys::send_ledger(lead, key_name),
            "send",
            &[("status", "claimed".into()), ("claimed_at", sortable_time(now))],
        );
        let mut items = vec![self.table.put_tx(ledger, Condition::absent())?];
        if let Some((contact, seq, sends)) = contact {
            let update = Update::new().set("sends", to_av(&sends)?).set("send_seq", n(seq + 1));
            let update = if seq == 0 {
                update.when("attribute_not_exists({send_seq})", &[])
            } else {
                update.when("{send_seq} = :seq", &[(":seq", n(seq))])
            };
            items.push(self.table.update_tx(keys::contact(contact), update)?);
        }
        Ok(match self.table.transact(items, None).await? {
            Transact::Committed => Claim::Claimed,
            t if t.failed_at(0) => Claim::AlreadyClaimed,
            Transact::Cancelled(_) => Claim::ContactBusy,
        })
    }

    async fn sent(
        &self,
        lead: LeadId,
        contact: Option<ContactId>,
        key_name: &str,
        message_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut items = vec![self.table.update_tx(
            keys::send_ledger(lead, key_name),
            Update::new().set("status", s("sent")).set("message_id", s(message_id)),
        )?];
        if let Some(contact) = contact {
            let mut m = email_message_item(message_id, lead, contact);
            m.insert("ledger_key".into(), s(key_name));
            items.push(self.table.put_tx(m, Condition::none())?);
            let sent = leadflow_domain::report::EmailTally::new(now, key_name).add(leadflow_domain::report::SENT, 1);
            let c = crate::counters::email_counter(&sent, &lead.to_string());
            items.push(self.table.update_tx(c.key.clone(), c.update())?);
        }
        // The token makes the SDK's own retries idempotent (a lost reply does not count twice);
        // a transaction cancelled by a concurrent one on the shared counter is tried again.
        let token = leadflow_domain::digest::fields_hex(&["sent", message_id])[..32].to_owned();
        for attempt in 0..5 {
            let token = format!("{token}-{attempt}");
            if self.table.transact(items.clone(), Some(token)).await?.committed() {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Err(StoreError::Unavailable("the sent record kept conflicting".into()))
    }

    async fn claim_confirmation(
        &self,
        contact: ContactId,
        nonce: &str,
        now: DateTime<Utc>,
        since: DateTime<Utc>,
    ) -> Result<ConfirmationSlot, StoreError> {
        let update = Update::new().set("confirmation_sent_at", s(sortable_time(now))).when(
            "{consent_pending}.{nonce} = :nonce AND (attribute_not_exists({confirmation_sent_at}) OR {confirmation_sent_at} <= :since)",
            &[(":since", s(sortable_time(since))), (":nonce", s(nonce))],
        );
        if self.table.update(keys::contact(contact), update).await?.is_some() {
            return Ok(ConfirmationSlot::Taken);
        }
        // Rare: the address had one within the interval, or the request was replaced.
        let Some(item) = self.table.get(keys::contact(contact)).await? else {
            return Ok(ConfirmationSlot::Replaced);
        };
        let current = attr::<leadflow_domain::records::PendingConsent>(&item, "consent_pending")?;
        if current.is_none_or(|p| p.nonce != nonce) {
            return Ok(ConfirmationSlot::Replaced);
        }
        let at = crate::table::str_attr(&item, "confirmation_sent_at")
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map_or(now, |t| t.with_timezone(&Utc));
        Ok(ConfirmationSlot::SentAt(at))
    }

    async fn release_confirmation(
        &self,
        contact: ContactId,
        taken_at: DateTime<Utc>,
        before: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let update = match before {
            Some(b) => Update::new().set("confirmation_sent_at", s(sortable_time(b))),
            None => Update::new().remove("confirmation_sent_at"),
        }
        .when(
            "{confirmation_sent_at} = :taken",
            &[(":taken", s(sortable_time(taken_at)))],
        );
        // A failed condition: another run took the slot meanwhile; it stays theirs.
        self.table.update(keys::contact(contact), update).await?;
        Ok(())
    }

    async fn release(&self, lead: LeadId, key_name: &str, give_back: Option<SlotGiveBack>) -> Result<(), StoreError> {
        // A failed condition: already sent (or already released), nothing to withdraw.
        let withdrawn = self
            .table
            .delete(
                keys::send_ledger(lead, key_name),
                Condition::expr("{status} = :claimed", &[(":claimed", s("claimed"))]),
            )
            .await?;
        if let (true, Some((contact, seq, before))) = (withdrawn, give_back) {
            // Only if no other email was counted since: otherwise the slot stays taken.
            let update = Update::new()
                .set("sends", to_av(&before)?)
                .set("send_seq", n(seq + 1))
                .when("{send_seq} = :seq", &[(":seq", n(seq))]);
            self.table.update(keys::contact(contact), update).await?;
        }
        Ok(())
    }
}

impl RoundRobin for DynamoProcess {
    async fn round_robin(&self, pool: &str) -> Result<u64, StoreError> {
        let item = self
            .table
            .update(keys::round_robin(pool), Update::new().add("n", 1))
            .await?
            .unwrap_or_default();
        Ok(attr::<u64>(&item, "n")?.unwrap_or(1) - 1)
    }
}

impl TaskStore for DynamoProcess {
    async fn task(&self, lead: LeadId, task_id: &str) -> Result<Option<TaskAndActivity>, StoreError> {
        let found = self
            .table
            .get_many(vec![keys::task(lead, task_id), keys::lead(lead)])
            .await?;
        let Some(task) = found.get(&keys::task(lead, task_id)) else {
            return Ok(None);
        };
        let last = found
            .get(&keys::lead(lead))
            .and_then(|l| time_attr(l, "last_sales_activity_at"));
        Ok(Some((from_record(task.clone())?, last)))
    }

    async fn save_task(&self, task: &Task, next_check: Option<DateTime<Utc>>) -> Result<(), StoreError> {
        let mut item = record_item(task, keys::task(task.lead_id, &task.task_id), "task")?;
        if let Some(at) = next_check {
            let (dpk, dsk) = keys::task_due(at, task.lead_id, &task.task_id);
            item.insert(DUE_PK.into(), s(dpk));
            item.insert(DUE_SK.into(), s(dsk));
        }
        // A task only ever goes from open to done: a save over a done task (a run's reminder
        // racing the salesperson's "done" on the lead page) is dropped, never reopening it.
        let open = Condition::expr("attribute_not_exists(pk) OR {status} = :open", &[(":open", s("open"))]);
        if !self.table.put(item, open).await? {
            tracing::info!(lead_id = %task.lead_id, task_id = %task.task_id, "task already done; save dropped");
        }
        Ok(())
    }
}

impl RoutineStore for DynamoProcess {
    async fn segment_members(&self, segment: &str) -> Result<Vec<SegmentMember>, StoreError> {
        crate::segments::DynamoSegmentMembers::new(self.table.clone())
            .all(segment)
            .await
    }

    async fn list_members(&self, list: &ListName) -> Result<Vec<ListMember>, StoreError> {
        let lists = crate::lists::DynamoLists::new(self.table.clone());
        let mut out = Vec::new();
        for shard in 0..keys::LIST_SHARDS {
            out.extend(lists.members(list, shard).await?);
        }
        Ok(out)
    }

    async fn add_to_list(&self, list: &ListName, members: &[ListMember], now: DateTime<Utc>) -> Result<(), StoreError> {
        crate::lists::DynamoLists::new(self.table.clone())
            .add(list, members, now)
            .await
    }

    async fn views(&self, leads: &[(LeadId, ContactId)]) -> Result<Vec<LeadView>, StoreError> {
        let mut out = Vec::with_capacity(leads.len());
        // 50 leads a read: their lead and contact items, 100 keys.
        for chunk in leads.chunks(50) {
            let keys: Vec<_> = chunk
                .iter()
                .flat_map(|(l, c)| [keys::lead(*l), keys::contact(*c)])
                .collect();
            let mut found = self.table.get_many(keys).await?;
            for (l, c) in chunk {
                if let (Some(lead), Some(contact)) = (found.remove(&keys::lead(*l)), found.remove(&keys::contact(*c))) {
                    out.push(lead_view(lead, contact)?);
                }
            }
        }
        Ok(out)
    }

    async fn claim(&self, key: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut item = crate::table::plain_item(
            keys::routine_claim(key),
            "routine_claim",
            &[("claimed_at", sortable_time(now))],
        );
        // Kept a quarter, then dropped by TTL: a claim only has to outlive its day.
        item.insert(keys::TTL.into(), n((now + chrono::Duration::days(90)).timestamp()));
        self.table.put(item, Condition::absent()).await
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        self.table.delete(keys::routine_claim(key), Condition::none()).await?;
        Ok(())
    }
}

impl leadflow_domain::process::lead_page::LeadPageStore for DynamoProcess {
    /// The lead's tasks, newest activities and stage moves (one query each, its partition).
    async fn lead_records(&self, lead: LeadId) -> Result<leadflow_domain::process::lead_page::LeadRecords, StoreError> {
        use crate::keys::Index;
        use crate::table::Query;
        use leadflow_domain::process::lead_page::{LeadRecords, RECENT};
        let part = || keys::lead_partition(lead);
        let (tasks, activities, stages) = futures::future::join3(
            self.table
                .query(Query::partition(Index::Table, part()).begins_with(keys::TASK_PREFIX)),
            self.table.query(
                Query::partition(Index::Table, part())
                    .begins_with(keys::ACTIVITY_PREFIX)
                    .newest_first()
                    .limit(RECENT),
            ),
            self.table.query(
                Query::partition(Index::Table, part())
                    .begins_with(keys::STAGE_PREFIX)
                    .newest_first()
                    .limit(RECENT),
            ),
        )
        .await;
        Ok(LeadRecords {
            tasks: tasks?.into_iter().map(from_record).collect::<Result<_, _>>()?,
            activities: activities?
                .iter()
                .filter_map(|i| attr::<Activity>(i, "activity").transpose())
                .collect::<Result<_, _>>()?,
            stages: stages?.into_iter().map(from_record).collect::<Result<_, _>>()?,
        })
    }
}
