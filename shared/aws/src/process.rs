//! The process side of the records table: due leads and tasks, leases, the send ledger,
//! stage history, tasks, round-robin counters, manual moves and sales activities.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use serde_dynamo::aws_sdk_dynamodb_1::{from_attribute_value, from_item};

use leadflow_domain::ports::StoreError;
use leadflow_domain::process::handoff::Task;
use leadflow_domain::process::plan::{LeadView, NurtureState};
use leadflow_domain::process::run::{Claim, DueItem, LeadSave, ProcessStore};
use leadflow_domain::process::stage::StageChange;
use leadflow_domain::records::{Contact, ContactId, Lead, LeadId};
use leadflow_domain::scoring::lead::LeadScoring;

use crate::item::{batch_get, corrupt, key, put, record_item, s, str_attr, to_av, Item};
use crate::keys::{self, sortable_time, DUE_PK, DUE_SK};
use crate::store_error;

#[derive(Clone)]
pub struct DynamoProcess {
    client: Client,
    table: String,
}

fn time_attr(item: &Item, name: &str) -> Option<DateTime<Utc>> {
    str_attr(item, name)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn update(
    table: &str,
    k: (String, String),
    expr: String,
    condition: Option<String>,
    names: HashMap<String, String>,
    values: Item,
) -> Result<TransactWriteItem, StoreError> {
    let u = Update::builder()
        .table_name(table)
        .set_key(Some(key(k)))
        .update_expression(expr)
        .set_condition_expression(condition)
        .set_expression_attribute_names((!names.is_empty()).then_some(names))
        .set_expression_attribute_values((!values.is_empty()).then_some(values))
        .build()
        .map_err(corrupt)?;
    Ok(TransactWriteItem::builder().update(u).build())
}

fn cancelled_at(
    err: &aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> Option<Vec<bool>> {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(c)) => Some(
            c.cancellation_reasons()
                .iter()
                .map(|r| r.code() == Some("ConditionalCheckFailed"))
                .collect(),
        ),
        _ => None,
    }
}

/// A lead's view for the process, from its item and its contact's.
pub fn lead_view(lead_item: Item, contact_item: Item) -> Result<LeadView, StoreError> {
    let scoring: LeadScoring = match lead_item.get("scoring") {
        Some(v) => from_attribute_value(v.clone()).map_err(corrupt)?,
        None => LeadScoring::default(),
    };
    let nurture: NurtureState = match lead_item.get("nurture") {
        Some(v) => from_attribute_value(v.clone()).map_err(corrupt)?,
        None => NurtureState::default(),
    };
    let explanation = scoring
        .scores
        .values()
        .find(|sc| Some(&sc.band) == scoring.band.as_ref() && sc.total == scoring.total)
        .map(|sc| sc.explanation.clone())
        .unwrap_or_default();
    let sends: Vec<DateTime<Utc>> = match contact_item.get("sends") {
        Some(v) => from_attribute_value(v.clone()).map_err(corrupt)?,
        None => vec![],
    };
    let seq = contact_item
        .get("send_seq")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Ok(LeadView {
        owner: str_attr(&lead_item, "owner").map(str::to_owned),
        last_sales_activity_at: time_attr(&lead_item, "last_sales_activity_at"),
        lead: from_item::<Lead>(lead_item).map_err(corrupt)?,
        contact: from_item::<Contact>(contact_item).map_err(corrupt)?,
        band: scoring.band.clone(),
        sales_ready: scoring.sales_ready,
        total: scoring.total,
        explanation,
        nurture,
        contact_sends: sends,
        contact_send_seq: seq,
    })
}

impl DynamoProcess {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The lead and its contact (the manual API, the ops tool).
    pub async fn view(&self, lead: LeadId) -> Result<Option<LeadView>, StoreError> {
        let Some(lead_item) = self.get(keys::lead(lead)).await? else {
            return Ok(None);
        };
        self.with_contact(lead_item).await
    }

    /// The view of a lead item, reading its contact; `None` if the contact is gone.
    async fn with_contact(&self, lead_item: Item) -> Result<Option<LeadView>, StoreError> {
        let contact = str_attr(&lead_item, "contact_id")
            .and_then(ContactId::parse)
            .ok_or_else(|| corrupt("lead without contact"))?;
        let Some(contact_item) = self.get(keys::contact(contact)).await? else {
            return Ok(None);
        };
        lead_view(lead_item, contact_item).map(Some)
    }

    async fn get(&self, k: (String, String)) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(k)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        Ok(out.item)
    }

    fn history_items(
        &self,
        lead: LeadId,
        moves: &[StageChange],
        now: DateTime<Utc>,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        moves
            .iter()
            .enumerate()
            .map(|(n, m)| {
                put(
                    &self.table,
                    record_item(m, keys::stage_history(lead, now, n), "stage_change")?,
                    Some("attribute_not_exists(pk)"),
                    None,
                )
            })
            .collect()
    }

    /// A manual move: applied only if the lead is still where the caller saw it. `false` if it moved meanwhile.
    pub async fn move_lead(&self, lead: LeadId, change: &StageChange) -> Result<bool, StoreError> {
        let mut items = vec![update(
            &self.table,
            keys::lead(lead),
            "SET stage = :to, #status = :to_status, stage_changed_at = :now, due_pk = :dpk, due_sk = :dsk".into(),
            Some("stage = :from AND #status = :from_status".into()),
            HashMap::from([("#status".to_owned(), "status".to_owned())]),
            {
                let (dpk, dsk) = keys::lead_due(change.at, lead);
                HashMap::from([
                    (":to".to_owned(), to_av(&change.to)?),
                    (":to_status".to_owned(), to_av(&change.to_status)?),
                    (":from".to_owned(), to_av(&change.from)?),
                    (":from_status".to_owned(), to_av(&change.from_status)?),
                    (":now".to_owned(), s(sortable_time(change.at))),
                    (":dpk".to_owned(), s(dpk)),
                    (":dsk".to_owned(), s(dsk)),
                ])
            },
        )?];
        items.extend(self.history_items(lead, std::slice::from_ref(change), change.at)?);
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if cancelled_at(&e).is_some() => Ok(false),
            Err(e) => Err(store_error("TransactWriteItems", e)),
        }
    }

    /// A sales activity: kept with the lead, and it stops the SLA timer.
    pub async fn record_activity(
        &self,
        lead: LeadId,
        activity: &serde_json::Value,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut item = key(keys::activity(lead, at));
        item.insert("type".into(), s("activity"));
        item.insert("activity".into(), to_av(activity)?);
        let items = vec![
            put(&self.table, item, None, None)?,
            update(
                &self.table,
                keys::lead(lead),
                "SET last_sales_activity_at = :at".into(),
                Some("attribute_exists(pk)".into()),
                HashMap::new(),
                HashMap::from([(":at".to_owned(), s(sortable_time(at)))]),
            )?,
        ];
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map_err(|e| store_error("TransactWriteItems", e))?;
        Ok(())
    }
}

impl ProcessStore for DynamoProcess {
    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<DueItem>, StoreError> {
        let shards = (0..keys::DUE_SHARDS).map(|shard| format!("DUE#{shard}"));
        let items = crate::item::due_entries(&self.client, &self.table, shards, &sortable_time(now), limit).await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let lead = str_attr(item, "pk")
                    .and_then(|p| p.strip_prefix("LEAD#"))
                    .and_then(LeadId::parse)?;
                Some(match str_attr(item, "sk").and_then(|sk| sk.strip_prefix("TASK#")) {
                    Some(task) => DueItem::Task(lead, task.to_owned()),
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
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::lead(lead))))
            .update_expression("SET lease_run = :run, lease_until = :until")
            .condition_expression("attribute_exists(pk) AND (attribute_not_exists(lease_until) OR lease_until < :now)")
            .expression_attribute_values(":run", s(run_id))
            .expression_attribute_values(":until", s(sortable_time(until)))
            .expression_attribute_values(":now", s(sortable_time(now)))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let lead_item = match result {
            Ok(out) => out.attributes.unwrap_or_default(),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(store_error("UpdateItem", e)),
        };
        self.with_contact(lead_item).await
    }

    async fn save(&self, w: &LeadSave) -> Result<(), StoreError> {
        let mut names = HashMap::from([("#status".to_owned(), "status".to_owned())]);
        let mut values: Item = HashMap::from([
            (":stage".to_owned(), to_av(&w.stage)?),
            (":status".to_owned(), to_av(&w.status)?),
            (":nurture".to_owned(), to_av(&w.nurture)?),
            (":run".to_owned(), s(w.run_id.clone())),
        ]);
        let mut set = vec!["stage = :stage", "#status = :status", "nurture = :nurture"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        let mut remove = vec!["lease_run".to_owned(), "lease_until".to_owned()];
        if let Some(o) = &w.owner {
            set.push("#owner = :owner".into());
            names.insert("#owner".into(), "owner".into());
            values.insert(":owner".into(), s(o.clone()));
        }
        if !w.moves.is_empty() {
            set.push("stage_changed_at = :now".into());
            values.insert(":now".into(), s(sortable_time(w.now)));
        }
        match w.next_due {
            Some(at) => {
                let (dpk, dsk) = keys::lead_due(at, w.lead_id);
                set.push("due_pk = :dpk, due_sk = :dsk".into());
                values.insert(":dpk".into(), s(dpk));
                values.insert(":dsk".into(), s(dsk));
            }
            None => remove.extend([DUE_PK.to_owned(), DUE_SK.to_owned()]),
        }
        let expr = format!("SET {} REMOVE {}", set.join(", "), remove.join(", "));
        let mut items = vec![update(
            &self.table,
            keys::lead(w.lead_id),
            expr,
            Some("lease_run = :run".into()),
            names,
            values,
        )?];
        items.extend(self.history_items(w.lead_id, &w.moves, w.now)?);
        if let Some(t) = &w.task {
            let mut item = record_item(t, keys::task(w.lead_id, &t.task_id), "task")?;
            let (dpk, dsk) = keys::task_due(t.due_at, w.lead_id, &t.task_id);
            item.insert(DUE_PK.into(), s(dpk));
            item.insert(DUE_SK.into(), s(dsk));
            items.push(put(&self.table, item, Some("attribute_not_exists(pk)"), None)?);
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Our lease expired and another run took the lead: its save wins; nothing is lost
            // (emails are in the ledger), the lead is handled by that run.
            Err(e) if cancelled_at(&e).is_some() => {
                tracing::warn!(lead_id = %w.lead_id, "lease lost before saving; the other run's save stands");
                Ok(())
            }
            Err(e) => Err(store_error("TransactWriteItems", e)),
        }
    }

    async fn claim(
        &self,
        lead: LeadId,
        key_name: &str,
        contact: Option<(ContactId, u64, Vec<DateTime<Utc>>)>,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let mut ledger = key(keys::send_ledger(lead, key_name));
        ledger.insert("type".into(), s("send"));
        ledger.insert("status".into(), s("claimed"));
        ledger.insert("claimed_at".into(), s(sortable_time(now)));
        let mut items = vec![put(&self.table, ledger, Some("attribute_not_exists(pk)"), None)?];
        if let Some((contact, seq, sends)) = contact {
            let condition = if seq == 0 {
                "attribute_not_exists(send_seq)"
            } else {
                "send_seq = :seq"
            };
            let mut values = HashMap::from([
                (":sends".to_owned(), to_av(&sends)?),
                (":next".to_owned(), AttributeValue::N((seq + 1).to_string())),
            ]);
            if seq != 0 {
                values.insert(":seq".into(), AttributeValue::N(seq.to_string()));
            }
            items.push(update(
                &self.table,
                keys::contact(contact),
                "SET sends = :sends, send_seq = :next".into(),
                Some(condition.into()),
                HashMap::new(),
                values,
            )?);
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(Claim::Claimed),
            Err(e) => match cancelled_at(&e) {
                Some(reasons) if reasons.first() == Some(&true) => Ok(Claim::AlreadyClaimed),
                Some(_) => Ok(Claim::ContactBusy),
                None => Err(store_error("TransactWriteItems", e)),
            },
        }
    }

    async fn sent(&self, lead: LeadId, contact: ContactId, key_name: &str, message_id: &str) -> Result<(), StoreError> {
        let mut items = vec![update(
            &self.table,
            keys::send_ledger(lead, key_name),
            "SET #status = :sent, message_id = :id".into(),
            None,
            HashMap::from([("#status".to_owned(), "status".to_owned())]),
            HashMap::from([(":sent".to_owned(), s("sent")), (":id".to_owned(), s(message_id))]),
        )?];
        if !contact.0.is_nil() {
            let mut m = crate::scoring::email_message_item(message_id, lead, contact);
            m.insert("ledger_key".into(), s(key_name));
            items.push(put(&self.table, m, None, None)?);
        }
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map_err(|e| store_error("TransactWriteItems", e))?;
        Ok(())
    }

    async fn release(&self, lead: LeadId, key_name: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::send_ledger(lead, key_name))))
            .condition_expression("#status = :claimed")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":claimed", s("claimed"))
            .send()
            .await;
        // A failed condition: already sent (or already released), nothing to withdraw.
        crate::conditional("DeleteItem", result).map(|_| ())
    }

    async fn round_robin(&self, pool: &str) -> Result<u64, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::round_robin(pool))))
            .update_expression("ADD n :one")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| store_error("UpdateItem", e))?;
        let n: u64 = out
            .attributes
            .and_then(|a| a.get("n").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()))
            .unwrap_or(1);
        Ok(n - 1)
    }

    async fn task(&self, lead: LeadId, task_id: &str) -> Result<Option<(Task, Option<DateTime<Utc>>)>, StoreError> {
        let found = batch_get(
            &self.client,
            &self.table,
            vec![keys::task(lead, task_id), keys::lead(lead)],
        )
        .await?;
        let Some(task) = found.get(&keys::task(lead, task_id)) else {
            return Ok(None);
        };
        let last = found
            .get(&keys::lead(lead))
            .and_then(|l| time_attr(l, "last_sales_activity_at"));
        Ok(Some((from_item(task.clone()).map_err(corrupt)?, last)))
    }

    async fn save_task(&self, task: &Task, next_check: Option<DateTime<Utc>>) -> Result<(), StoreError> {
        let mut item = record_item(task, keys::task(task.lead_id, &task.task_id), "task")?;
        if let Some(at) = next_check {
            let (dpk, dsk) = keys::task_due(at, task.lead_id, &task.task_id);
            item.insert(DUE_PK.into(), s(dpk));
            item.insert(DUE_SK.into(), s(dsk));
        }
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

/// Unsubscribes a contact at once; idempotent (the first time is kept).
pub async fn unsubscribe(
    client: &Client,
    table: &str,
    contact: ContactId,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let result = client
        .update_item()
        .table_name(table)
        .set_key(Some(key(keys::contact(contact))))
        .update_expression("SET unsubscribed_at = if_not_exists(unsubscribed_at, :now)")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_values(":now", to_av(&now)?)
        .send()
        .await;
    crate::conditional("UpdateItem", result)
}
