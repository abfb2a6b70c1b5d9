//! Intake's side of the records table: the one-round-trip lookup, the atomic commit of a
//! submission, spam kept apart, and the transactional outbox.

use chrono::{DateTime, Utc};

use leadflow_domain::intake::{
    Commit, ConsentWrite, ContactWrite, IntakePlan, IntakeStore, LeadWrite, LookupRequest, LookupResult, ReceiptClaim,
    SpamRecord, StoredReceipt,
};
use leadflow_domain::matching::MatchKey;
use leadflow_domain::message::InteractionMessage;
use leadflow_domain::outbox::Outbox;
use leadflow_domain::ports::{StoreError, Unsubscribes};
use leadflow_domain::records::{ContactId, Interaction, LeadId};

use crate::keys::{self, sortable_time, Key, DUE_PK, DUE_SK, GSI1_PK, GSI1_SK, TTL};
use crate::table::{
    attr, corrupt, from_record, n, plain_item, record_item, s, str_attr, to_av, Condition, Item, Packed, Table, Update,
};

/// Other leads of one person a confirmation reaches in its one transaction.
const MAX_OTHER_LEADS: usize = 20;

/// Intake's adapter: the records table.
#[derive(Clone)]
pub struct DynamoIntake {
    pub(crate) table: Table,
}

/// A matching key item, and its reference in the partition of the record it points to.
fn key_item_writes(k: Key, owner_partition: String, kind: &str, attrs: &[(&str, String)]) -> [(Item, Condition); 2] {
    let reference = plain_item(
        keys::key_ref(owner_partition, &k.0),
        "key_ref",
        &[("key_pk", k.0.clone()), ("key_sk", k.1.clone())],
    );
    [
        (plain_item(k, kind, attrs), Condition::absent()),
        (reference, Condition::none()),
    ]
}

/// An interaction item, entered in the outbox until its consumer confirms it.
pub(crate) fn outboxed_interaction(ix: &Interaction, now: DateTime<Utc>) -> Result<Item, StoreError> {
    let mut item = record_item(ix, keys::interaction(ix.lead_id, ix.interaction_id), "interaction")?;
    let (due_pk, due_sk) = keys::outbox_entry(
        now + leadflow_domain::outbox::OUTBOX_GRACE,
        ix.lead_id,
        ix.interaction_id,
    );
    item.insert(DUE_PK.into(), s(due_pk));
    item.insert(DUE_SK.into(), s(due_sk));
    Ok(item)
}

impl DynamoIntake {
    pub fn new(table: Table) -> Self {
        Self { table }
    }

    fn receipt(&self, k: Key, claim: &ReceiptClaim, now: DateTime<Utc>) -> Result<(Item, Condition), StoreError> {
        let mut item = plain_item(
            k,
            "receipt",
            &[
                ("fingerprint", claim.stored.fingerprint.clone()),
                ("expires_at", sortable_time(claim.stored.expires_at)),
            ],
        );
        item.insert("receipt".into(), to_av(&claim.stored.receipt)?);
        item.insert(TTL.into(), n(claim.stored.expires_at.timestamp()));
        // TTL deletion lags by hours, so expiry is enforced here, not by TTL.
        let condition = Condition::expr(
            "attribute_not_exists(pk) OR expires_at < :now",
            &[(":now", s(sortable_time(now)))],
        );
        Ok((item, condition))
    }

    fn contact_write(
        &self,
        w: &ContactWrite,
        now: DateTime<Utc>,
        out: &mut Vec<(Item, Condition)>,
    ) -> Result<Option<(Key, Update)>, StoreError> {
        match w {
            ContactWrite::Create { contact, key: k } => {
                out.extend(key_item_writes(
                    keys::contact_key(k),
                    keys::contact_partition(contact.contact_id),
                    "contact_key",
                    &[("contact_id", contact.contact_id.to_string())],
                ));
                let item = record_item(contact, keys::contact(contact.contact_id), "contact")?;
                out.push((item, Condition::absent()));
                Ok(None)
            }
            ContactWrite::Update {
                contact_id,
                email,
                fields,
                consent,
                pending_consent,
                add_key,
            } => {
                let mut update = Update::new().set("updated_at", to_av(&now)?);
                if let Some(e) = email {
                    update = update.set("email", s(e.as_str()));
                }
                for (name, value) in fields.present() {
                    update = update.set(name, s(value));
                }
                match consent {
                    Some(ConsentWrite::Replace(c)) => update = update.set("consent", to_av(c)?),
                    Some(ConsentWrite::IfAbsent(c)) => update = update.set_if_absent("consent", to_av(c)?),
                    None => {}
                }
                if let Some(p) = pending_consent {
                    update = update.set("consent_pending", to_av(p)?);
                }
                if let Some(k) = add_key {
                    out.extend(key_item_writes(
                        keys::contact_key(k),
                        keys::contact_partition(*contact_id),
                        "contact_key",
                        &[("contact_id", contact_id.to_string())],
                    ));
                }
                Ok(Some((keys::contact(*contact_id), update.if_exists())))
            }
        }
    }

    /// `confirm`: the submission asks for an opt-in confirmation, which the process sends when
    /// it next looks at the lead (a new lead is looked at once scored).
    fn lead_write(
        &self,
        w: &LeadWrite,
        now: DateTime<Utc>,
        confirm: bool,
        out: &mut Vec<(Item, Condition)>,
    ) -> Result<Option<(Key, Update)>, StoreError> {
        match w {
            LeadWrite::Create { lead, key: k } => {
                out.extend(key_item_writes(
                    keys::lead_key(k),
                    keys::lead_partition(lead.lead_id),
                    "lead_key",
                    &[
                        ("lead_id", lead.lead_id.to_string()),
                        ("contact_id", lead.contact_id.to_string()),
                    ],
                ));
                let mut item = record_item(lead, keys::lead(lead.lead_id), "lead")?;
                let (gpk, gsk) = keys::leads_of_contact(lead.contact_id, lead.lead_id);
                item.insert(GSI1_PK.into(), s(gpk));
                item.insert(GSI1_SK.into(), s(gsk));
                item.insert(keys::STAGE_PK.into(), s(keys::stage_pk(lead.stage, lead.lead_id)));
                out.push((item, Condition::absent()));
                Ok(None)
            }
            LeadWrite::Update {
                lead_id,
                fields,
                start_nurture,
                request_handoff,
            } => {
                let mut update = Update::new()
                    .set("last_activity_at", to_av(&now)?)
                    .increment("submissions", 1);
                for (name, value) in fields {
                    update = update.set_in("fields", name, s(value));
                }
                if let Some(r) = request_handoff {
                    update = update.set("handoff_requested", to_av(r)?);
                }
                if *start_nurture {
                    update = update.set("nurture_enabled", aws_sdk_dynamodb::types::AttributeValue::Bool(true));
                }
                if confirm || request_handoff.is_some() {
                    let (dpk, dsk) = keys::lead_due(now, *lead_id);
                    update = update.set(DUE_PK, s(dpk)).set(DUE_SK, s(dsk));
                }
                Ok(Some((keys::lead(*lead_id), update.if_exists())))
            }
        }
    }

    /// The items of one submission's transaction.
    pub fn transaction_items(
        &self,
        plan: &IntakePlan,
    ) -> Result<Vec<aws_sdk_dynamodb::types::TransactWriteItem>, StoreError> {
        let mut puts = Vec::with_capacity(7);
        let mut updates = Vec::with_capacity(2);
        updates.extend(self.contact_write(&plan.contact, plan.now, &mut puts)?);
        let confirm = match &plan.contact {
            ContactWrite::Create { contact, .. } => contact.consent_pending.is_some(),
            ContactWrite::Update { pending_consent, .. } => pending_consent.is_some(),
        };
        updates.extend(self.lead_write(&plan.lead, plan.now, confirm, &mut puts)?);
        let ix = &plan.interaction;
        puts.push((outboxed_interaction(ix, plan.now)?, Condition::absent()));
        let h = &plan.history;
        let history_key = keys::field_history(h.contact_id, h.at, ix.interaction_id);
        puts.push((record_item(h, history_key, "field_history")?, Condition::absent()));
        let mut receipts = Vec::with_capacity(2);
        if let Some(claim) = &plan.dedup {
            receipts.push((keys::dedup_receipt(&claim.key), claim));
        }
        if let Some(claim) = &plan.idempotency {
            receipts.push((keys::idempotency_receipt(&claim.key), claim));
        }
        for (k, claim) in receipts {
            // A reference in the lead's partition, so erasing a person finds its receipts too.
            let mut reference = plain_item(
                keys::receipt_ref(ix.lead_id, &k.0),
                "receipt_ref",
                &[("receipt_pk", k.0.clone())],
            );
            reference.insert(TTL.into(), n(claim.stored.expires_at.timestamp()));
            puts.push((reference, Condition::none()));
            puts.push(self.receipt(k, claim, plan.now)?);
        }
        let mut items = Vec::with_capacity(puts.len() + updates.len());
        for (k, u) in updates {
            items.push(self.table.update_tx(k, u)?);
        }
        for (item, condition) in puts {
            items.push(self.table.put_tx(item, condition)?);
        }
        Ok(items)
    }

    /// Confirms an interaction: it leaves the outbox (its consumer, and tests).
    pub async fn confirm_interaction(
        &self,
        lead: LeadId,
        id: leadflow_domain::records::InteractionId,
    ) -> Result<(), StoreError> {
        let update = Update::new().remove(DUE_PK).remove(DUE_SK);
        self.table.update(keys::interaction(lead, id), update).await?;
        Ok(())
    }

    /// The contact id a matching key points to, if any (import and the ops tool).
    pub async fn contact_by_key(&self, k: &MatchKey) -> Result<Option<ContactId>, StoreError> {
        self.table
            .get(keys::contact_key(k))
            .await?
            .map(|i| id_attr(&i, "contact_id", ContactId::parse))
            .transpose()
    }
}

fn stored_receipt(item: &Item) -> Result<StoredReceipt, StoreError> {
    let receipt = attr(item, "receipt")?.ok_or_else(|| corrupt("receipt item without receipt"))?;
    let expires = str_attr(item, "expires_at").ok_or_else(|| corrupt("receipt without expires_at"))?;
    Ok(StoredReceipt {
        receipt,
        fingerprint: str_attr(item, "fingerprint").unwrap_or_default().to_owned(),
        expires_at: DateTime::parse_from_rfc3339(expires)
            .map_err(corrupt)?
            .with_timezone(&Utc),
    })
}

fn id_attr<T>(item: &Item, name: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, StoreError> {
    str_attr(item, name)
        .and_then(parse)
        .ok_or_else(|| corrupt(format!("key item without a valid {name}")))
}

/// The items a lookup reads.
fn lookup_keys(req: &LookupRequest) -> Vec<Key> {
    let mut wanted = vec![
        keys::contact_key(&req.contact_key),
        keys::lead_key(&req.lead_key),
        keys::dedup_receipt(&req.dedup_key),
    ];
    wanted.extend(req.idempotency_key.as_deref().map(keys::idempotency_receipt));
    wanted
}

/// A lookup's answer from the items read.
fn lookup_result(
    req: &LookupRequest,
    found: &std::collections::HashMap<Key, Item>,
) -> Result<LookupResult, StoreError> {
    let ck = keys::contact_key(&req.contact_key);
    let lk = keys::lead_key(&req.lead_key);
    let dk = keys::dedup_receipt(&req.dedup_key);
    let ik = req.idempotency_key.as_deref().map(keys::idempotency_receipt);
    let contact = found
        .get(&ck)
        .map(|item| id_attr(item, "contact_id", ContactId::parse))
        .transpose()?;
    let lead = found
        .get(&lk)
        .map(|item| {
            Ok::<_, StoreError>((
                id_attr(item, "lead_id", LeadId::parse)?,
                id_attr(item, "contact_id", ContactId::parse)?,
            ))
        })
        .transpose()?;
    let dedup = found.get(&dk).map(stored_receipt).transpose()?;
    let idempotency = ik.and_then(|k| found.get(&k)).map(stored_receipt).transpose()?;
    Ok(LookupResult {
        contact,
        lead,
        dedup,
        idempotency,
    })
}

impl IntakeStore for DynamoIntake {
    async fn lookup(&self, req: &LookupRequest) -> Result<LookupResult, StoreError> {
        // Strongly consistent: a re-read after a conflict must see the winner's items.
        let found = self.table.get_many(lookup_keys(req)).await?;
        lookup_result(req, &found)
    }

    async fn lookup_many(&self, requests: &[LookupRequest]) -> Result<Vec<LookupResult>, StoreError> {
        // One BatchGetItem per 100 keys for the whole chunk.
        let found = self
            .table
            .get_many(requests.iter().flat_map(lookup_keys).collect())
            .await?;
        requests.iter().map(|r| lookup_result(r, &found)).collect()
    }

    async fn commit_many(&self, plans: &[IntakePlan]) -> Vec<Result<Commit, StoreError>> {
        // The token makes the SDK's own retries of a transaction idempotent for ten minutes;
        // the plans' counters on one item are merged in their transaction.
        let writes: Vec<_> = plans
            .iter()
            .map(|p| {
                Ok(Packed {
                    items: self.transaction_items(p)?,
                    counters: crate::counters::counters(&p.tally, &p.receipt.lead_id.to_string()),
                    events: leadflow_domain::events::of_intake(p),
                    token: Some(p.interaction.interaction_id.to_string()),
                })
            })
            .collect();
        self.table
            .transact_packed(writes)
            .await
            .into_iter()
            .map(|r| r.map(|committed| if committed { Commit::Committed } else { Commit::Conflict }))
            .collect()
    }

    async fn commit(&self, plan: &IntakePlan) -> Result<Commit, StoreError> {
        let mut one = self.commit_many(std::slice::from_ref(plan)).await;
        one.pop().unwrap_or_else(|| Err(corrupt("no commit result")))
    }

    async fn store_spam(&self, spam: &SpamRecord) -> Result<(), StoreError> {
        let day = spam.received_at.format("%Y-%m-%d").to_string();
        let id = spam.spam_id.to_string();
        let shard = keys::shard_of(&id, keys::SPAM_SHARDS);
        let mut item = record_item(spam, keys::spam(&spam.form_id, &day, shard, &id), "spam")?;
        item.insert(TTL.into(), n(spam.expires_at.timestamp()));
        if let Some(digest) = spam.email_digest() {
            item.insert(GSI1_PK.into(), s(keys::spam_by_email(&digest)));
            item.insert(GSI1_SK.into(), s(id.clone()));
        }
        self.table.put(item, Condition::none()).await?;
        Ok(())
    }
}

impl Outbox for DynamoIntake {
    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<InteractionMessage>, StoreError> {
        let shards = (0..keys::OUTBOX_SHARDS).map(keys::outbox_pk);
        self.table
            .due_entries(shards, &sortable_time(now), limit)
            .await?
            .into_iter()
            .map(|item| from_record::<Interaction>(item).map(|ix| InteractionMessage::for_interaction(&ix)))
            .collect()
    }

    async fn postpone(&self, message: &InteractionMessage, next_at: DateTime<Utc>) -> Result<(), StoreError> {
        let InteractionMessage::V1(r) = message;
        let (_, due_sk) = keys::outbox_entry(next_at, r.lead_id, r.interaction_id);
        // A failed condition: the consumer confirmed it meanwhile, nothing left to postpone.
        let update = Update::new()
            .set(DUE_SK, s(due_sk))
            .when("attribute_exists(due_pk)", &[]);
        self.table
            .update(keys::interaction(r.lead_id, r.interaction_id), update)
            .await?;
        Ok(())
    }

    async fn relay_events(&self, now: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        Ok(crate::bus::relay(&self.table, now, limit).await?.published)
    }
}

impl Unsubscribes for DynamoIntake {
    async fn unsubscribe(
        &self,
        contact: ContactId,
        now: DateTime<Utc>,
        email: Option<&str>,
    ) -> Result<bool, StoreError> {
        // The first unsubscribe, with its event and its email's count; a repeated one (or none
        // to unsubscribe) changes nothing and says whether the contact exists.
        let first = Update::new()
            .set("unsubscribed_at", to_av(&now)?)
            .when("attribute_exists(pk) AND attribute_not_exists({unsubscribed_at})", &[]);
        let mut items = vec![self.table.update_tx(keys::contact(contact), first)?];
        if let Some(key) = email {
            let t = leadflow_domain::report::EmailTally::new(now, key).add(leadflow_domain::report::UNSUBSCRIBED, 1);
            let c = crate::counters::email_counter(&t, &contact.to_string());
            items.push(self.table.update_tx(c.key.clone(), c.update())?);
        }
        let event = leadflow_domain::events::unsubscribed(contact, now, "link", email);
        for _ in 0..5 {
            match self
                .table
                .transact_events(items.clone(), None, std::slice::from_ref(&event))
                .await?
            {
                crate::table::Transact::Committed => return Ok(true),
                // The contact's condition failed: unsubscribed before, or no such contact.
                out if out.failed_at(0) => return Ok(self.table.get(keys::contact(contact)).await?.is_some()),
                // A concurrent transaction on the shared email counter: again.
                _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
        Err(StoreError::Unavailable(
            "unsubscribe: the write kept conflicting with others; nothing was saved".into(),
        ))
    }
}

impl leadflow_domain::ports::ConsentStore for DynamoIntake {
    async fn contact(&self, contact: ContactId) -> Result<Option<leadflow_domain::records::Contact>, StoreError> {
        self.table
            .get(keys::contact(contact))
            .await?
            .map(from_record)
            .transpose()
    }

    async fn confirm(
        &self,
        contact: ContactId,
        nonce: &str,
        evidence: &leadflow_domain::records::ConsentConfirmation,
    ) -> Result<leadflow_domain::ports::Confirmation, StoreError> {
        use leadflow_domain::ports::Confirmation;
        let Some(item) = self.table.get(keys::contact(contact)).await? else {
            return Ok(Confirmation::NothingPending);
        };
        let stored: leadflow_domain::records::Contact = from_record(item)?;
        let Some(done) = leadflow_domain::confirmation::confirm(&stored, nonce, evidence) else {
            return Ok(Confirmation::NothingPending);
        };
        // Only the request this link names, and only once.
        let mut contact_update = Update::new()
            .set("address_confirmed_at", to_av(&done.at)?)
            .remove("consent_pending")
            .when("{consent_pending}.{nonce} = :nonce", &[(":nonce", s(nonce))]);
        if let Some(consent) = &done.consent {
            contact_update = contact_update.set("consent", to_av(consent)?).remove("unsubscribed_at");
        }
        for (name, value) in &done.changes {
            contact_update = contact_update.set(name, s(value));
        }
        if !done.changes.is_empty() {
            contact_update = contact_update.set("updated_at", to_av(&done.at)?);
        }
        // The lead whose submission asked is looked at by the next process run (nurture starts).
        let (dpk, dsk) = keys::lead_due(evidence.at, done.lead_id);
        let lead_update = Update::new().set(DUE_PK, s(dpk)).set(DUE_SK, s(dsk)).if_exists();
        let mut items = vec![
            self.table.update_tx(keys::contact(contact), contact_update)?,
            self.table.update_tx(keys::lead(done.lead_id), lead_update)?,
            self.table
                .put_tx(outboxed_interaction(&done.interaction, done.at)?, Condition::absent())?,
        ];
        if let Some(h) = &done.history {
            let key = keys::field_history(h.contact_id, h.at, done.interaction.interaction_id);
            items.push(
                self.table
                    .put_tx(record_item(h, key, "field_history")?, Condition::absent())?,
            );
        }
        // The person's other leads: their unconfirmed points count from now on too (a few at
        // most; bounded so the write stays one transaction).
        let others = self
            .table
            .query(
                crate::table::Query::partition(keys::Index::Gsi1, keys::contact_partition(contact))
                    .begins_with(keys::LEADS_OF_CONTACT_PREFIX)
                    .newest_first()
                    .limit(MAX_OTHER_LEADS),
            )
            .await?;
        let mut interactions = vec![done.interaction.clone()];
        for lead in others
            .iter()
            .filter_map(|i| str_attr(i, "lead_id").and_then(LeadId::parse))
            .filter(|l| *l != done.lead_id)
        {
            let ix = done.on_lead(lead);
            items.push(
                self.table
                    .put_tx(outboxed_interaction(&ix, done.at)?, Condition::absent())?,
            );
            interactions.push(ix);
        }
        Ok(match self.table.transact(items, None).await? {
            crate::table::Transact::Committed => Confirmation::Confirmed(interactions),
            _ => Confirmation::NothingPending,
        })
    }
}
