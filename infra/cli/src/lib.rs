//! The ops tool's commands, as functions over a [`Target`] so tests drive them directly.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, WriteRequest};
use chrono::Utc;
use futures::future::join_all;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use leadflow_aws::config::Clients;
use leadflow_aws::dynamo::{contact_by_key, DynamoStore};
use leadflow_aws::forms::DynamoForms;
use leadflow_aws::item::Item;
use leadflow_aws::sqs::SqsQueue;
use leadflow_domain::form::MatchStrategy;
use leadflow_domain::intake::{IntakeError, IntakeOutcome, IntakeService, SubmissionMeta};
use leadflow_domain::matching::key_from;
use leadflow_domain::ports::FormCatalog;
use leadflow_domain::records::{ContactId, LeadId};
use leadflow_domain::submission::{RawSubmission, RawValue};

/// Where the tool works: a local run or a deployed stack.
#[derive(Clone)]
pub struct Target {
    pub clients: Clients,
    pub table: String,
    pub config_table: String,
    pub scoring_queue_url: String,
    pub scoring_dlq_url: String,
}

pub type Error = Box<dyn std::error::Error + Send + Sync>;

fn item_json(item: &Item) -> Value {
    serde_dynamo::aws_sdk_dynamodb_1::from_item::<Value>(item.clone()).unwrap_or(Value::Null)
}

fn str_of<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

impl Target {
    async fn partition(&self, pk: &str) -> Result<Vec<Item>, Error> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .clients
                .dynamodb
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await?;
            out.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, Error> {
        let out = self
            .clients
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk.into()))
            .key("sk", AttributeValue::S(sk.into()))
            .consistent_read(true)
            .send()
            .await?;
        Ok(out.item)
    }

    /// The lead an id names, if it is a lead's id (lead and contact ids are both UUIDs).
    async fn lead_named(&self, who: &str) -> Result<Option<(LeadId, ContactId)>, Error> {
        let Some(lead) = LeadId::parse(who) else {
            return Ok(None);
        };
        let item = self.get(&format!("LEAD#{lead}"), "LEAD").await?;
        Ok(item
            .as_ref()
            .and_then(|i| str_of(i, "contact_id"))
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
        let email = leadflow_domain::email::Email::parse(who).map_err(|e| format!("{who}: {e}"))?;
        let key = key_from(&MatchStrategy::default_contact(), |f| {
            (f == "email").then(|| email.as_str().to_owned())
        })?;
        Ok(contact_by_key(&DynamoStore::new(self.clients.dynamodb.clone(), &self.table), &key).await?)
    }

    async fn leads_of(&self, contact: ContactId) -> Result<Vec<LeadId>, Error> {
        let out = self
            .clients
            .dynamodb
            .query()
            .table_name(&self.table)
            .index_name("gsi1")
            .key_condition_expression("gsi1pk = :c")
            .expression_attribute_values(":c", AttributeValue::S(format!("CONTACT#{contact}")))
            .send()
            .await?;
        Ok(out
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|i| str_of(i, "lead_id").and_then(LeadId::parse))
            .collect())
    }
}

/// `lead show`: the contact, each lead with its score and explanation, stage history,
/// interactions, emails sent and tasks.
pub async fn lead_show(t: &Target, who: &str) -> Result<Value, Error> {
    let contact = t
        .contact_of(who)
        .await?
        .ok_or_else(|| format!("no contact or lead matches {who}"))?;
    let contact_item = t
        .get(&format!("CONTACT#{contact}"), "CONTACT")
        .await?
        .ok_or("the contact is gone")?;
    let only = t.lead_named(who).await?.map(|(l, _)| l);
    let mut leads = Vec::new();
    for lead in t.leads_of(contact).await? {
        if only.is_some_and(|o| o != lead) {
            continue;
        }
        let items = t.partition(&format!("LEAD#{lead}")).await?;
        let mut by: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
        let mut record = Value::Null;
        for i in &items {
            let sk = str_of(i, "sk").unwrap_or("");
            let group = match sk.split('#').next().unwrap_or("") {
                "LEAD" => {
                    record = item_json(i);
                    continue;
                }
                "IX" => "interactions",
                "SCORE" => "score_history",
                "STAGE" => "stage_history",
                "SEND" => "emails",
                "TASK" => "tasks",
                "ACT" => "activities",
                _ => continue,
            };
            by.entry(group).or_default().push(item_json(i));
        }
        let mut lead_json = json!({"lead": record});
        for (k, v) in by {
            lead_json[k] = Value::Array(v);
        }
        leads.push(lead_json);
    }
    Ok(json!({"contact": item_json(&contact_item), "leads": leads}))
}

/// The human form of `lead show`.
pub fn render_lead(v: &Value) -> String {
    let c = &v["contact"];
    let mut out = format!(
        "Contact {}  {}{}  {}  {}\n  consent: {}  unsubscribed: {}  suppressed: {}\n",
        c["contact_id"].as_str().unwrap_or("?"),
        c["last_name"].as_str().unwrap_or(""),
        c["first_name"].as_str().unwrap_or(""),
        c["email"].as_str().unwrap_or(""),
        c["company"].as_str().unwrap_or(""),
        c["consent"]["opt_in"],
        c.get("unsubscribed_at").and_then(Value::as_str).unwrap_or("no"),
        c["suppressed"]["reason"].as_str().unwrap_or("no"),
    );
    for l in v["leads"].as_array().into_iter().flatten() {
        let lead = &l["lead"];
        out.push_str(&format!(
            "\nLead {}  form {}  campaign {}  stage {}  status {}  owner {}\n",
            lead["lead_id"].as_str().unwrap_or("?"),
            lead["form_id"].as_str().unwrap_or(""),
            lead["campaign"].as_str().unwrap_or("-"),
            lead["stage"].as_str().unwrap_or(""),
            lead["status"].as_str().unwrap_or(""),
            lead["owner"].as_str().unwrap_or("-"),
        ));
        let sc = &lead["scoring"];
        for (model, score) in sc["scores"].as_object().into_iter().flatten() {
            out.push_str(&format!(
                "  score ({model} v{}): {} = fit {} + behaviour {}  grade {}  band {}{}\n",
                score["model_version"],
                score["total"],
                score["fit"],
                score["behaviour"],
                score["grade"].as_str().unwrap_or(""),
                score["band"].as_str().unwrap_or(""),
                if score["sales_ready"] == true {
                    "  SALES-READY"
                } else {
                    ""
                }
            ));
            for line in score["explanation"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "    {:>+4}  {}  ({})\n",
                    line["points"].as_i64().unwrap_or(0),
                    line["rule"].as_str().unwrap_or(""),
                    line["detail"].as_str().unwrap_or("")
                ));
            }
        }
        for h in l["stage_history"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  stage {} → {}  {}  ({}) by {}\n",
                h["from"].as_str().unwrap_or(""),
                h["to"].as_str().unwrap_or(""),
                h["at"].as_str().unwrap_or(""),
                h["reason"].as_str().unwrap_or(""),
                h["by"]["id"].as_str().unwrap_or("system")
            ));
        }
        for e in l["emails"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  email {}  {}  {}\n",
                e["sk"].as_str().unwrap_or("").trim_start_matches("SEND#"),
                e["status"].as_str().unwrap_or(""),
                e["claimed_at"].as_str().unwrap_or("")
            ));
        }
        for t in l["tasks"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  task \"{}\" owner {} due {} {}\n",
                t["subject"].as_str().unwrap_or(""),
                t["owner"].as_str().unwrap_or(""),
                t["due_at"].as_str().unwrap_or(""),
                t["status"].as_str().unwrap_or("")
            ));
        }
        out.push_str(&format!(
            "  interactions: {}\n",
            l["interactions"].as_array().map_or(0, Vec::len)
        ));
    }
    out
}

/// Every key of a person's data: contact, matching keys, lead partitions, visitor partitions, sent-email maps.
async fn person_keys(t: &Target, email: &str) -> Result<(Option<ContactId>, Vec<(String, String)>), Error> {
    let Some(contact) = t.contact_of(email).await? else {
        return Ok((None, vec![]));
    };
    let mut keys: BTreeSet<(String, String)> = BTreeSet::new();
    keys.insert((format!("CONTACT#{contact}"), "CONTACT".into()));
    let parsed = leadflow_domain::email::Email::parse(email).ok();
    let value = |f: &str| -> Option<String> {
        (f == "email")
            .then(|| parsed.as_ref().map(|e| e.as_str().to_owned()))
            .flatten()
    };
    if let Ok(k) = key_from(&MatchStrategy::default_contact(), value) {
        keys.insert((format!("CKEY#{}", k.as_str()), "CKEY".into()));
    }
    let forms = DynamoForms::new(t.clients.dynamodb.clone(), &t.config_table);
    let mut visitors = BTreeSet::new();
    for lead in t.leads_of(contact).await? {
        let items = t.partition(&format!("LEAD#{lead}")).await?;
        for i in &items {
            keys.insert((
                str_of(i, "pk").unwrap_or("").to_owned(),
                str_of(i, "sk").unwrap_or("").to_owned(),
            ));
            if let Some(r) = str_of(i, "receipt_pk") {
                keys.insert((r.to_owned(), "RECEIPT".into()));
            }
            if let Some(m) = str_of(i, "message_id") {
                keys.insert((format!("SESMSG#{m}"), "SESMSG".into()));
            }
            if let Some(v) = i
                .get("properties")
                .and_then(|p| p.as_m().ok())
                .and_then(|p| p.get("visitor_id"))
                .and_then(|v| v.as_s().ok())
            {
                visitors.insert(v.clone());
            }
            if str_of(i, "sk") == Some("LEAD") {
                let form_id = str_of(i, "form_id").unwrap_or("").to_owned();
                let strategy = forms
                    .form(&form_id)
                    .await?
                    .map(|f| f.lead_match.clone())
                    .unwrap_or_else(MatchStrategy::default_lead);
                let campaign = str_of(i, "campaign").map(str::to_owned);
                let k = key_from(&strategy, |f| match f {
                    "form_id" => Some(form_id.clone()),
                    "campaign" => campaign.clone(),
                    other => value(other),
                });
                if let Ok(k) = k {
                    keys.insert((format!("LKEY#{}", k.as_str()), "LKEY".into()));
                }
            }
        }
    }
    for v in visitors {
        for i in t.partition(&format!("VISITOR#{v}")).await? {
            keys.insert((
                str_of(&i, "pk").unwrap_or("").to_owned(),
                str_of(&i, "sk").unwrap_or("").to_owned(),
            ));
        }
    }
    Ok((Some(contact), keys.into_iter().collect()))
}

/// `person export EMAIL`: everything held about a person, as JSON.
pub async fn person_export(t: &Target, email: &str) -> Result<Value, Error> {
    let (contact, keys) = person_keys(t, email).await?;
    let contact = contact.ok_or_else(|| format!("no contact with the email {email}"))?;
    let mut items = Vec::new();
    for (pk, sk) in &keys {
        if let Some(i) = t.get(pk, sk).await? {
            items.push(item_json(&i));
        }
    }
    Ok(json!({"contact_id": contact, "exported_at": Utc::now(), "items": items}))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    pub deleted: usize,
    pub remaining: usize,
}

/// `person erase EMAIL`: deletes every item, then reads every key again to verify none is left.
pub async fn person_erase(t: &Target, email: &str) -> Result<Erasure, Error> {
    let (contact, keys) = person_keys(t, email).await?;
    if contact.is_none() {
        return Err(format!("no contact with the email {email}").into());
    }
    for chunk in keys.chunks(25) {
        let mut requests: Vec<WriteRequest> = chunk
            .iter()
            .map(|(pk, sk)| {
                let key = [
                    ("pk".to_owned(), AttributeValue::S(pk.clone())),
                    ("sk".to_owned(), AttributeValue::S(sk.clone())),
                ]
                .into();
                WriteRequest::builder()
                    .delete_request(DeleteRequest::builder().set_key(Some(key)).build().expect("key set"))
                    .build()
            })
            .collect();
        for attempt in 0..8 {
            let out = t
                .clients
                .dynamodb
                .batch_write_item()
                .request_items(&t.table, requests)
                .send()
                .await?;
            requests = out
                .unprocessed_items
                .and_then(|mut u| u.remove(&t.table))
                .unwrap_or_default();
            if requests.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
        }
    }
    let mut remaining = 0;
    for (pk, sk) in &keys {
        if t.get(pk, sk).await?.is_some() {
            remaining += 1;
        }
    }
    Ok(Erasure {
        deleted: keys.len() - remaining,
        remaining,
    })
}

/// `dlq list`: the messages in the scoring dead-letter queue (left in place).
pub async fn dlq_list(t: &Target, max: i32) -> Result<Vec<Value>, Error> {
    let out = t
        .clients
        .sqs
        .receive_message()
        .queue_url(&t.scoring_dlq_url)
        .max_number_of_messages(max.clamp(1, 10))
        .visibility_timeout(0)
        .send()
        .await?;
    Ok(out
        .messages
        .unwrap_or_default()
        .iter()
        .map(|m| json!({"message_id": m.message_id(), "body": serde_json::from_str::<Value>(m.body().unwrap_or("")).unwrap_or_else(|_| Value::String(m.body().unwrap_or("").into()))}))
        .collect())
}

/// `dlq replay`: every dead-lettered message back to the scoring queue, then out of the DLQ.
pub async fn dlq_replay(t: &Target) -> Result<usize, Error> {
    let mut n = 0;
    loop {
        let out = t
            .clients
            .sqs
            .receive_message()
            .queue_url(&t.scoring_dlq_url)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .send()
            .await?;
        let msgs = out.messages.unwrap_or_default();
        if msgs.is_empty() {
            return Ok(n);
        }
        for m in msgs {
            t.clients
                .sqs
                .send_message()
                .queue_url(&t.scoring_queue_url)
                .message_body(m.body().unwrap_or(""))
                .send()
                .await?;
            if let Some(h) = m.receipt_handle() {
                t.clients
                    .sqs
                    .delete_message()
                    .queue_url(&t.scoring_dlq_url)
                    .receipt_handle(h)
                    .send()
                    .await?;
            }
            n += 1;
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub rows: usize,
    pub created: usize,
    pub matched: usize,
    pub errors: usize,
    /// Rows skipped because an earlier, interrupted run had done them.
    pub resumed_from: usize,
    pub finished: bool,
}

/// Rows submitted at once.
pub const IMPORT_CHUNK: usize = 50;

fn fingerprint(path: &Path) -> Result<String, Error> {
    let meta = std::fs::metadata(path)?;
    let mut h = Sha256::new();
    h.update(path.display().to_string().as_bytes());
    h.update(meta.len().to_le_bytes());
    Ok(hex::encode(&h.finalize()[..8]))
}

/// `import contacts FILE.csv`: each row through the same matching as intake (the form's
/// strategies), streamed (memory stays flat at any size), resumable from a state file beside
/// the input, with a per-row error report (`FILE.errors.csv`). `stop_after` interrupts on purpose (tests).
pub async fn import_contacts(
    t: &Target,
    file: &Path,
    form_id: &str,
    progress: bool,
    stop_after: Option<usize>,
) -> Result<ImportReport, Error> {
    let forms = DynamoForms::new(t.clients.dynamodb.clone(), &t.config_table);
    let form = forms.form(form_id).await?.ok_or_else(|| format!("no form {form_id}"))?;
    let service = IntakeService::new(
        DynamoStore::new(t.clients.dynamodb.clone(), &t.table),
        SqsQueue::new(t.clients.sqs.clone(), &t.scoring_queue_url),
    );
    let run_id = fingerprint(file)?;
    let state_path = PathBuf::from(format!("{}.import-state", file.display()));
    let done: usize = match std::fs::read_to_string(&state_path) {
        Ok(s) => match s.trim().split_once(' ') {
            Some((id, n)) if id == run_id => n.parse().unwrap_or(0),
            _ => 0,
        },
        Err(_) => 0,
    };
    let mut errors_out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(format!("{}.errors.csv", file.display()))?;
    if errors_out.metadata()?.len() == 0 {
        writeln!(errors_out, "row,field,message")?;
    }
    let total = std::fs::metadata(file)?.len();
    let bar = if progress {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_path(file)?;
    let headers: Vec<String> = reader
        .headers()?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_owned())
        .collect();
    let mut report = ImportReport {
        resumed_from: done,
        ..Default::default()
    };
    let mut row_no = 0usize;
    let mut chunk: Vec<(usize, RawSubmission)> = Vec::with_capacity(IMPORT_CHUNK);
    let mut records = reader.records();
    loop {
        let next = records.next();
        if let Some(rec) = &next {
            row_no += 1;
            if row_no > done {
                match rec {
                    Ok(r) => {
                        let fields = headers
                            .iter()
                            .zip(r.iter())
                            .map(|(h, v)| (h.clone(), RawValue::Text(v.to_owned())))
                            .collect();
                        chunk.push((row_no, RawSubmission { fields }));
                    }
                    Err(e) => {
                        writeln!(errors_out, "{row_no},_row,\"{}\"", e.to_string().replace('"', "'"))?;
                        report.errors += 1;
                    }
                }
            }
        }
        if chunk.len() == IMPORT_CHUNK || (next.is_none() && !chunk.is_empty()) {
            let now = Utc::now();
            let results = join_all(chunk.iter().map(|(n, raw)| {
                // A stable key per row: a resumed run replays rows it already did instead of doubling them.
                let meta = SubmissionMeta {
                    received_at: now,
                    source_ip: None,
                    user_agent: Some("leadflow import".into()),
                    idempotency_key: Some(format!("import:{run_id}:{n}")),
                };
                let (service, form) = (&service, &form);
                async move { service.submit(form, raw, &meta).await }
            }))
            .await;
            for ((n, _), result) in chunk.iter().zip(results) {
                report.rows += 1;
                match result {
                    Ok(IntakeOutcome::Accepted { receipt, .. }) => {
                        if receipt.contact == leadflow_domain::intake::Resolution::Created {
                            report.created += 1;
                        } else {
                            report.matched += 1;
                        }
                    }
                    Ok(IntakeOutcome::Spam { .. }) => {}
                    Err(IntakeError::Invalid(errs)) => {
                        report.errors += 1;
                        for e in errs {
                            writeln!(errors_out, "{n},{},\"{}\"", e.field, e.message.replace('"', "'"))?;
                        }
                    }
                    Err(e) => return Err(format!("row {n}: {e}; rerun to resume").into()),
                }
            }
            let last = chunk.last().map(|(n, _)| *n).unwrap_or(row_no);
            std::fs::write(&state_path, format!("{run_id} {last}"))?;
            chunk.clear();
            bar.set_position(records.reader().position().byte());
            bar.set_message(format!("{} rows, {} errors", report.rows + done, report.errors));
            if stop_after.is_some_and(|s| report.rows >= s) {
                return Ok(report);
            }
        }
        if next.is_none() {
            break;
        }
    }
    bar.finish_with_message(format!("{} rows imported, {} errors", report.rows, report.errors));
    std::fs::write(&state_path, format!("{run_id} {row_no}"))?;
    report.finished = true;
    Ok(report)
}
