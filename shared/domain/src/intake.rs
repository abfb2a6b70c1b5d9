//! Intake: a form submission becomes a contact, a lead and an interaction, exactly once.
//!
//! The flow is read → decide → write, where the write is one atomic commit guarded by
//! conditions. If another writer got there first (a concurrent submission of the same new
//! person, a double click), the commit reports a conflict and the flow reads again and
//! decides again, now seeing the other writer's records. No read-then-write race can create
//! a duplicate, because uniqueness lives in the commit's conditions, not in the read.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::email::Email;
use crate::form::FormDefinition;
use crate::matching::{key_for, MatchKey};
use crate::message::InteractionMessage;
use std::future::Future;

use crate::ports::{InteractionQueue, StoreError};
use crate::records::{
    Consent, Contact, ContactFields, ContactId, Interaction, InteractionId, InteractionKind, Lead, LeadId, LeadStatus,
    Stage,
};
use crate::submission::{validate, FieldError, RawSubmission, ValidSubmission, Validated};

/// The interaction property that marks a public submission: anyone may have sent it.
pub const UNCONFIRMED: &str = "unconfirmed";
/// How long an `Idempotency-Key` replays its first answer.
pub const IDEMPOTENCY_TTL_HOURS: i64 = 24;
/// How long spam is kept for inspection.
pub const SPAM_TTL_DAYS: i64 = 30;
/// Attempts at read → decide → commit before answering "busy".
pub const MAX_ATTEMPTS: u32 = 6;
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    Created,
    Matched,
}

/// The answer to an accepted submission, stored so that a replay answers the same. Only
/// IAM-authorised callers see it whole; the public route answers [`Receipt::public`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub contact_id: ContactId,
    pub lead_id: LeadId,
    pub contact: Resolution,
    pub lead: Resolution,
    /// The submission (its interaction) this receipt acknowledges: the public receipt number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission: Option<InteractionId>,
}

/// What an anonymous caller is told about an accepted submission: the same shape whether the
/// person was known or not, with nothing that names a contact or a lead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicReceipt {
    pub status: &'static str,
    /// An opaque receipt number (the submission's own id), to quote to support.
    pub receipt: String,
}

impl Receipt {
    /// The answer an anonymous caller sees: a number that names the submission to support (it
    /// is derived from the submission's id) but carries no time and nothing else about it.
    /// Without a submission (a double click answered with a replay, a receipt stored before
    /// receipt numbers existed) it is a fresh random number: a second submitter learns nothing
    /// about the first.
    pub fn public(&self) -> PublicReceipt {
        let receipt = match self.submission {
            Some(id) => digest(&["receipt", &id.to_string()])[..32].to_owned(),
            None => uuid::Uuid::new_v4().simple().to_string(),
        };
        PublicReceipt {
            status: "accepted",
            receipt,
        }
    }
}

/// The receipt a replay answers with: the first one for the caller's own `Idempotency-Key` and
/// for a trusted caller; for a public double click one without a receipt number (the public
/// answer is then a fresh random one: whoever sends identical values learns nothing).
fn replayed(mut receipt: Receipt, by_key: bool, meta: &SubmissionMeta) -> Receipt {
    if !by_key && meta.route == Route::Public {
        receipt.submission = None;
    }
    receipt
}

/// A receipt kept for replay: what was submitted (its fingerprint) and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredReceipt {
    pub receipt: Receipt,
    pub fingerprint: String,
    pub expires_at: DateTime<Utc>,
}

/// Which door a submission came through. The mailbox is the only identity a public caller has:
/// until the address owner confirms through our emailed link, a public submission may create
/// records but may not change what a known person gave, link a browser to them, opt them in or
/// make them sales-ready. Internal routes (IAM-authorised integrations, the ops tool's import)
/// are trusted with all of that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Route {
    #[default]
    Public,
    Internal,
}

/// Facts about the request that are not form fields.
#[derive(Debug, Clone, Default)]
pub struct SubmissionMeta {
    pub route: Route,
    pub received_at: DateTime<Utc>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub idempotency_key: Option<String>,
}

/// The keys a submission is looked up by, computed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupRequest {
    pub contact_key: MatchKey,
    pub lead_key: MatchKey,
    /// Same person, same form, same values: a double click.
    pub dedup_key: String,
    /// The client's idempotency key, scoped to the form and hashed.
    pub idempotency_key: Option<String>,
    pub fingerprint: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupResult {
    pub contact: Option<ContactId>,
    /// A lead already under the lead key, with the contact it belongs to.
    pub lead: Option<(LeadId, ContactId)>,
    pub dedup: Option<StoredReceipt>,
    pub idempotency: Option<StoredReceipt>,
}

/// How consent evidence is written to an existing contact.
#[derive(Debug, Clone, PartialEq)]
pub enum ConsentWrite {
    /// A new opt-in: always recorded, it is the freshest evidence.
    Replace(Consent),
    /// A declined box: recorded only if the contact has no consent record yet, so it
    /// never overrides an earlier opt-in (withdrawal is the unsubscribe flow's job).
    IfAbsent(Consent),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ContactWrite {
    Create {
        contact: Contact,
        key: MatchKey,
    },
    Update {
        contact_id: ContactId,
        /// The address as written (trusted routes only).
        email: Option<Email>,
        /// Only the non-empty submitted values: an empty value never blanks a stored one. None
        /// from a public submission: its values change nothing the person gave, not even a blank
        /// field (a stranger could otherwise supply a confirmed person's fit profile); they wait in
        /// the pending request for the mailbox's owner.
        fields: ContactFields,
        consent: Option<ConsentWrite>,
        /// A double opt-in waiting for confirmation (replaces any earlier pending one).
        pending_consent: Option<crate::records::PendingConsent>,
        /// A matching key this contact does not own yet (matched through its lead).
        add_key: Option<MatchKey>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum LeadWrite {
    Create {
        lead: Lead,
        key: MatchKey,
    },
    Update {
        lead_id: LeadId,
        fields: BTreeMap<String, String>,
        /// The submission puts the lead in its nurture program (a person's own form, or an
        /// import with `--nurture`); never takes it out.
        start_nurture: bool,
        /// An `on_submit` hand-off form: the lead asks for sales (until a move to sales consumes it).
        request_handoff: Option<crate::records::HandoffRequest>,
    },
}

/// A claim that must not exist yet (or must have expired) for the commit to succeed.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiptClaim {
    pub key: String,
    pub stored: StoredReceipt,
}

/// Everything one submission writes, as one atomic unit.
#[derive(Debug, Clone, PartialEq)]
pub struct IntakePlan {
    /// The values given, kept so a later submission never loses them.
    pub history: crate::history::FieldRecord,
    pub now: DateTime<Utc>,
    pub contact: ContactWrite,
    pub lead: LeadWrite,
    pub interaction: Interaction,
    pub receipt: Receipt,
    /// The double-click marker; none when the form has no dedup window (an import).
    pub dedup: Option<ReceiptClaim>,
    pub idempotency: Option<ReceiptClaim>,
    /// What the submission counts (report counters): one submission, and a new contact, lead
    /// and inquiry when it makes them.
    pub tally: crate::report::Tally,
}

impl IntakePlan {
    pub fn receipt(&self) -> &Receipt {
        &self.receipt
    }

    /// What a plan touches that another plan committed with it must not: the records it
    /// updates or creates and the keys it claims. Two plans sharing one are not independent.
    pub fn touches(&self) -> Vec<String> {
        let mut t = vec![
            format!("contact:{}", self.receipt.contact_id),
            format!("lead:{}", self.receipt.lead_id),
        ];
        match &self.contact {
            ContactWrite::Create { key, .. } => t.push(format!("ckey:{}", key.as_str())),
            ContactWrite::Update { add_key, .. } => t.extend(add_key.iter().map(|k| format!("ckey:{}", k.as_str()))),
        }
        if let LeadWrite::Create { key, .. } = &self.lead {
            t.push(format!("lkey:{}", key.as_str()));
        }
        t.extend(self.dedup.iter().map(|c| format!("dedup:{}", c.key)));
        t.extend(self.idempotency.iter().map(|c| format!("idem:{}", c.key)));
        t
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Answer with an earlier receipt; write nothing. `by_key`: the caller's own
    /// `Idempotency-Key` (said so in the answer); otherwise a double click (not said: the
    /// answer must not tell anyone that identical values were just submitted).
    Replay {
        receipt: Receipt,
        by_key: bool,
    },
    Write(Box<IntakePlan>),
    /// The idempotency key was used before with a different submission.
    KeyReused,
}

/// A spam submission, kept apart with what it carried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpamRecord {
    pub spam_id: uuid::Uuid,
    pub form_id: String,
    pub received_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub fields: BTreeMap<String, String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
}

fn digest(parts: &[&str]) -> String {
    crate::digest::fields_hex(parts)
}

/// A client's idempotency key as its receipt is stored: scoped to the form, hashed.
pub fn idempotency_digest(form_id: &str, key: &str) -> String {
    digest(&[form_id, key])
}

/// The digest an email address is found by in the spam kept for inspection (erasure).
pub fn email_digest(email: &str) -> String {
    digest(&["email", &email.trim().to_lowercase()])
}

impl SpamRecord {
    /// The digest of the email a bot gave, if any, so an erasure finds its spam.
    pub fn email_digest(&self) -> Option<String> {
        self.fields
            .get("email")
            .filter(|e| !e.trim().is_empty())
            .map(|e| email_digest(e))
    }
}

/// A submission's contact and lead keys, as submissions that share a person are told apart.
fn match_keys(req: &LookupRequest) -> [String; 2] {
    [
        format!("ckey:{}", req.contact_key.as_str()),
        format!("lkey:{}", req.lead_key.as_str()),
    ]
}

/// The records a submission would be matched on (its contact and lead keys); none when it is
/// not a valid one. Two submissions that share one must be committed in the order they came.
pub fn submission_keys(form: &FormDefinition, raw: &RawSubmission) -> Vec<String> {
    match validate(form, raw) {
        Ok(Validated::Valid(sub)) => match lookup_request(form, &sub, &SubmissionMeta::default()) {
            Ok(req) => match_keys(&req).to_vec(),
            Err(_) => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// The keys of a valid submission; `Err` names a strategy field it lacks.
pub fn lookup_request(
    form: &FormDefinition,
    sub: &ValidSubmission,
    meta: &SubmissionMeta,
) -> Result<LookupRequest, FieldError> {
    let missing = |f: String| FieldError::new(f, "is required");
    let contact_key = key_for(&form.contact_match, form, sub).map_err(missing)?;
    let lead_key = key_for(&form.lead_match, form, sub).map_err(missing)?;
    let fingerprint = sub.fingerprint(&form.id);
    let dedup_key = digest(&[&form.id, contact_key.as_str(), &fingerprint]);
    let idempotency_key = meta.idempotency_key.as_deref().map(|k| idempotency_digest(&form.id, k));
    Ok(LookupRequest {
        contact_key,
        lead_key,
        dedup_key,
        idempotency_key,
        fingerprint,
    })
}

/// Decides what a submission does given what the store holds. Pure: no I/O, no clock.
pub fn decide(
    form: &FormDefinition,
    sub: &ValidSubmission,
    meta: &SubmissionMeta,
    req: &LookupRequest,
    found: &LookupResult,
) -> Decision {
    let now = meta.received_at;
    if let (Some(_), Some(prior)) = (&req.idempotency_key, &found.idempotency) {
        if prior.expires_at > now {
            return if prior.fingerprint == req.fingerprint {
                Decision::Replay {
                    receipt: prior.receipt.clone(),
                    by_key: true,
                }
            } else {
                Decision::KeyReused
            };
        }
    }
    if let Some(prior) = &found.dedup {
        if prior.expires_at > now && prior.fingerprint == req.fingerprint {
            return Decision::Replay {
                receipt: prior.receipt.clone(),
                by_key: false,
            };
        }
    }

    let interaction_id = InteractionId::generate();
    let lead_id_if_new = LeadId::generate();
    let lead_id = found.lead.map(|(l, _)| l).unwrap_or(lead_id_if_new);
    let public = meta.route == Route::Public;
    // A public form without consent wording asked nobody anything: no consent is recorded.
    let given = sub
        .consent
        .filter(|_| !public || form.consent.is_some())
        .map(|opt_in| Consent {
            opt_in,
            wording_version: form.consent.as_ref().map(|c| c.version.clone()),
            at: now,
            source_form: form.id.clone(),
            ip: meta.source_ip.clone(),
            user_agent: meta.user_agent.clone(),
            confirmed: None,
        });
    // Double opt-in (always on a public route): a "yes" waits for the person's confirmation and
    // grants nothing until then; consent in force, confirmed or not, is never replaced by it.
    let (consent, pending_opt_in) = match given {
        Some(c) if c.opt_in && form.double_opt_in(public) => (None, Some(c)),
        other => (other, None),
    };

    // The lead key is the more specific match: when it finds a lead, that lead's contact is the person.
    let existing_contact = found.lead.map(|(_, c)| c).or(found.contact);
    // What only the address's owner can grant from a public route: values that may differ from
    // a known person's, and the browser the submission came from.
    let (changes, visitor) = if public {
        let changes = match existing_contact {
            Some(_) => sub
                .contact
                .present()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            None => BTreeMap::new(),
        };
        (changes, sub.visitor_id.clone())
    } else {
        (BTreeMap::new(), None)
    };
    let pending = (pending_opt_in.is_some() || !changes.is_empty() || visitor.is_some()).then(|| {
        crate::records::PendingConsent {
            consent: pending_opt_in,
            lead_id,
            nonce: interaction_id.to_string(),
            changes,
            visitor_id: visitor,
            form_id: form.id.clone(),
        }
    });
    let (contact_id, contact_res, contact) = match existing_contact {
        Some(contact_id) => {
            let add_key = if found.contact.is_none() {
                Some(req.contact_key.clone())
            } else {
                None
            };
            let write = ContactWrite::Update {
                contact_id,
                email: sub.email.clone().filter(|_| !public),
                fields: if public {
                    ContactFields::default()
                } else {
                    sub.contact.clone()
                },
                consent: consent.map(|c| {
                    if c.opt_in {
                        ConsentWrite::Replace(c)
                    } else {
                        ConsentWrite::IfAbsent(c)
                    }
                }),
                pending_consent: pending,
                add_key,
            };
            (contact_id, Resolution::Matched, write)
        }
        None => {
            let mut contact = Contact::new(sub.email.clone(), sub.contact.clone(), now);
            contact.consent = consent;
            contact.consent_pending = pending;
            (
                contact.contact_id,
                Resolution::Created,
                ContactWrite::Create {
                    contact,
                    key: req.contact_key.clone(),
                },
            )
        }
    };

    let handoff_requested = match form.handoff {
        crate::form::HandoffPolicy::OnSubmit { daily_cap } => Some(crate::records::HandoffRequest {
            at: now,
            daily_cap,
            unconfirmed: public,
        }),
        crate::form::HandoffPolicy::Score => None,
    };
    let (lead_id, lead_res, lead) = match found.lead {
        Some((lead_id, _)) => (
            lead_id,
            Resolution::Matched,
            LeadWrite::Update {
                lead_id,
                fields: sub.custom.clone(),
                start_nurture: form.starts_nurture(),
                request_handoff: handoff_requested,
            },
        ),
        None => {
            let lead_id = lead_id_if_new;
            let lead = Lead {
                lead_id,
                contact_id,
                form_id: form.id.clone(),
                campaign: form.campaign.clone(),
                source: form.source,
                stage: Stage::Inquiry,
                status: LeadStatus::Open,
                created_at: now,
                last_activity_at: now,
                submissions: 1,
                fields: sub.custom.clone(),
                nurture_enabled: form.starts_nurture(),
                handoff_requested,
            };
            (
                lead_id,
                Resolution::Created,
                LeadWrite::Create {
                    lead,
                    key: req.lead_key.clone(),
                },
            )
        }
    };

    let receipt = Receipt {
        contact_id,
        lead_id,
        contact: contact_res,
        lead: lead_res,
        submission: Some(interaction_id),
    };
    let mut properties = serde_json::Map::new();
    properties.insert("form_id".into(), form.id.clone().into());
    properties.insert("form_version".into(), form.version.into());
    if let Some(c) = &form.campaign {
        properties.insert("campaign".into(), c.clone().into());
    }
    if let Some(v) = sub.visitor_id.as_ref().filter(|_| !public) {
        properties.insert("visitor_id".into(), v.clone().into());
    }
    if public {
        // Anyone may have sent it: its points are no evidence for sales-ready until the
        // address's owner confirms (scoring reads this with the contact's confirmation).
        properties.insert(UNCONFIRMED.into(), true.into());
    }
    if !sub.custom.is_empty() {
        properties.insert("fields".into(), serde_json::to_value(&sub.custom).unwrap_or_default());
    }
    let interaction = Interaction {
        interaction_id,
        lead_id,
        contact_id,
        kind: if form.source == crate::records::LeadSource::Import {
            InteractionKind::Imported
        } else {
            InteractionKind::FormSubmitted
        },
        occurred_at: now,
        properties,
    };
    let dedup = (form.dedup_window_secs > 0).then(|| ReceiptClaim {
        key: req.dedup_key.clone(),
        stored: StoredReceipt {
            receipt: receipt.clone(),
            fingerprint: req.fingerprint.clone(),
            expires_at: now + Duration::seconds(i64::from(form.dedup_window_secs)),
        },
    });
    let idempotency = req.idempotency_key.as_ref().map(|key| ReceiptClaim {
        key: key.clone(),
        stored: StoredReceipt {
            receipt: receipt.clone(),
            fingerprint: req.fingerprint.clone(),
            expires_at: now + Duration::hours(IDEMPOTENCY_TTL_HOURS),
        },
    });
    let history = crate::history::FieldRecord {
        contact_id,
        lead_id,
        at: now,
        source: crate::history::FieldSource::Form {
            form_id: form.id.clone(),
            receipt: interaction.interaction_id,
        },
        contact: sub
            .contact
            .present()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        lead: sub.custom.clone(),
        pending: public && matches!(contact, ContactWrite::Update { .. }),
    };
    let dims = crate::report::Dims {
        form: form.id.clone(),
        campaign: form.campaign.clone().unwrap_or_else(|| "-".into()),
        source: crate::segment::name_of(&form.source),
    };
    let new_contact = i64::from(matches!(contact, ContactWrite::Create { .. }));
    let new_lead = i64::from(matches!(lead, LeadWrite::Create { .. }));
    let tally = crate::report::Tally::new(now, dims)
        .add(crate::report::SUBMISSIONS, 1)
        .add(crate::report::NEW_CONTACTS, new_contact)
        .add(crate::report::NEW_LEADS, new_lead)
        .add(crate::report::stage_entered(Stage::Inquiry), new_lead)
        .gauge(crate::report::in_stage(Stage::Inquiry), new_lead)
        .gauge(crate::report::in_status(LeadStatus::Open), new_lead)
        .gauge(
            crate::report::in_stage_since(Stage::Inquiry),
            new_lead * crate::report::epoch_day(now),
        );
    Decision::Write(Box::new(IntakePlan {
        now,
        contact,
        lead,
        interaction,
        history,
        receipt,
        dedup,
        idempotency,
        tally,
    }))
}

#[derive(Debug, Clone, PartialEq)]
pub enum IntakeOutcome {
    Accepted {
        receipt: Receipt,
        /// The answer to an earlier request with the same `Idempotency-Key`; nothing was
        /// written. (A double click is answered the same way, but not flagged.)
        replayed: bool,
        /// The scoring message went out now; if not, the outbox sends it later.
        queued: bool,
    },
    /// Answered like a success; kept apart as spam.
    Spam { receipt: Receipt },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IntakeError {
    #[error("invalid submission ({} field errors)", .0.len())]
    Invalid(Vec<FieldError>),
    #[error("idempotency key was already used for a different submission")]
    IdempotencyKeyReused,
    #[error("too much contention on the same records; retry later")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Outcome of an atomic commit: conditions held, or another writer got there first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    Committed,
    Conflict,
}

/// What intake needs from the record store.
pub trait IntakeStore: Send + Sync {
    /// One round trip: the match keys, the double-click marker and the idempotency record.
    fn lookup(&self, request: &LookupRequest) -> impl Future<Output = Result<LookupResult, StoreError>> + Send;
    /// One atomic write of everything a submission changes; `Conflict` when a condition failed.
    fn commit(&self, plan: &IntakePlan) -> impl Future<Output = Result<Commit, StoreError>> + Send;
    /// Many lookups in as few round trips as the store allows (an import's chunk).
    fn lookup_many(
        &self,
        requests: &[LookupRequest],
    ) -> impl Future<Output = Result<Vec<LookupResult>, StoreError>> + Send {
        async move {
            let mut found = Vec::with_capacity(requests.len());
            for r in requests {
                found.push(self.lookup(r).await?);
            }
            Ok(found)
        }
    }
    /// Independent plans (no two [`IntakePlan::touches`] the same thing), packed into as few
    /// atomic writes as the store allows; for each plan, whether it committed. A plan is
    /// `Conflict` when the write it was packed in was refused: none of that write happened.
    fn commit_many(&self, plans: &[IntakePlan]) -> impl Future<Output = Vec<Result<Commit, StoreError>>> + Send {
        async move {
            let mut out = Vec::with_capacity(plans.len());
            for p in plans {
                out.push(self.commit(p).await);
            }
            out
        }
    }
    fn store_spam(&self, spam: &SpamRecord) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Runs a submission through validation, matching and the atomic commit, then publishes it.
pub struct IntakeService<S, Q> {
    pub store: S,
    pub queue: Q,
}

impl<S: IntakeStore, Q: InteractionQueue> IntakeService<S, Q> {
    pub fn new(store: S, queue: Q) -> Self {
        Self { store, queue }
    }

    pub async fn submit(
        &self,
        form: &FormDefinition,
        raw: &RawSubmission,
        meta: &SubmissionMeta,
    ) -> Result<IntakeOutcome, IntakeError> {
        if let Some(k) = &meta.idempotency_key {
            if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY_LEN {
                return Err(IntakeError::Invalid(vec![FieldError::new(
                    "Idempotency-Key",
                    format!("must be 1-{MAX_IDEMPOTENCY_KEY_LEN} characters"),
                )]));
            }
        }
        let sub = match validate(form, raw).map_err(IntakeError::Invalid)? {
            Validated::Spam => return self.keep_spam(form, raw, meta).await,
            Validated::Valid(sub) => sub,
        };
        let req = lookup_request(form, &sub, meta).map_err(|e| IntakeError::Invalid(vec![e]))?;
        for attempt in 1..=MAX_ATTEMPTS {
            let found = self.store.lookup(&req).await?;
            let plan = match decide(form, &sub, meta, &req, &found) {
                Decision::Replay { receipt, by_key } => {
                    return Ok(IntakeOutcome::Accepted {
                        receipt: replayed(receipt, by_key, meta),
                        replayed: by_key,
                        queued: false,
                    })
                }
                Decision::KeyReused => return Err(IntakeError::IdempotencyKeyReused),
                Decision::Write(plan) => plan,
            };
            match self.store.commit(&plan).await? {
                Commit::Committed => {
                    let message = InteractionMessage::for_interaction(&plan.interaction);
                    // Durable already: a failed send is retried by the outbox relay, never lost.
                    let queued = match self.queue.publish(&message).await {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::warn!(interaction_id = %plan.interaction.interaction_id, error = %e, "scoring message not sent; left in the outbox");
                            false
                        }
                    };
                    return Ok(IntakeOutcome::Accepted {
                        receipt: plan.receipt().clone(),
                        replayed: false,
                        queued,
                    });
                }
                Commit::Conflict => {
                    tracing::debug!(attempt, "intake commit conflicted; reading again");
                }
            }
        }
        Err(IntakeError::Busy)
    }

    /// Many submissions to one form at once (an import's chunk): one lookup and a few packed
    /// commits for all of them, then one publish. Rows that share a person or a key with an
    /// earlier row of the chunk, and rows whose packed commit was refused, go through
    /// [`IntakeService::submit`] one by one afterwards, so the outcome is what submitting them
    /// in order would give. One result per row, in order.
    pub async fn submit_many(
        &self,
        form: &FormDefinition,
        rows: &[(RawSubmission, SubmissionMeta)],
    ) -> Vec<Result<IntakeOutcome, IntakeError>> {
        let mut results: Vec<Option<Result<IntakeOutcome, IntakeError>>> = Vec::with_capacity(rows.len());
        let mut pending: Vec<(usize, ValidSubmission, LookupRequest)> = Vec::new();
        let mut one_by_one: Vec<usize> = Vec::new();
        for (i, (raw, meta)) in rows.iter().enumerate() {
            let valid = meta
                .idempotency_key
                .as_ref()
                .is_none_or(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_LEN);
            match (valid, validate(form, raw)) {
                (true, Ok(Validated::Valid(sub))) => match lookup_request(form, &sub, meta) {
                    Ok(req) => {
                        pending.push((i, sub, req));
                        results.push(None);
                    }
                    Err(e) => results.push(Some(Err(IntakeError::Invalid(vec![e])))),
                },
                (true, Err(errors)) => results.push(Some(Err(IntakeError::Invalid(errors)))),
                // Spam and a bad idempotency key: the single path says what happens.
                _ => {
                    one_by_one.push(i);
                    results.push(None);
                }
            }
        }
        let requests: Vec<LookupRequest> = pending.iter().map(|(_, _, r)| r.clone()).collect();
        let found = match self.store.lookup_many(&requests).await {
            Ok(f) => f,
            Err(e) => {
                return results
                    .into_iter()
                    .map(|r| r.unwrap_or_else(|| Err(IntakeError::Store(e.clone()))))
                    .collect()
            }
        };
        let mut plans: Vec<(usize, IntakePlan)> = Vec::new();
        let mut touched = std::collections::HashSet::new();
        for ((i, sub, req), found) in pending.into_iter().zip(found) {
            let (_, meta) = &rows[i];
            // Two rows of one chunk that share a key: the later one sees the earlier one's records.
            let keys = match_keys(&req);
            if keys.iter().any(|k| touched.contains(k)) {
                one_by_one.push(i);
                continue;
            }
            match decide(form, &sub, meta, &req, &found) {
                Decision::Replay { receipt, by_key } => {
                    results[i] = Some(Ok(IntakeOutcome::Accepted {
                        receipt: replayed(receipt, by_key, meta),
                        replayed: by_key,
                        queued: false,
                    }))
                }
                Decision::KeyReused => results[i] = Some(Err(IntakeError::IdempotencyKeyReused)),
                Decision::Write(plan) => {
                    let touches = plan.touches();
                    if touches.iter().any(|t| touched.contains(t)) {
                        one_by_one.push(i);
                    } else {
                        touched.extend(touches);
                        plans.push((i, *plan));
                    }
                }
            }
            touched.extend(keys);
        }
        let (rows_of, plans): (Vec<usize>, Vec<IntakePlan>) = plans.into_iter().unzip();
        let commits = self.store.commit_many(&plans).await;
        let mut committed = Vec::new();
        for ((i, plan), commit) in rows_of.into_iter().zip(plans).zip(commits) {
            match commit {
                Ok(Commit::Committed) => committed.push((i, plan)),
                Ok(Commit::Conflict) => one_by_one.push(i),
                Err(e) => results[i] = Some(Err(IntakeError::Store(e))),
            }
        }
        let messages: Vec<InteractionMessage> = committed
            .iter()
            .map(|(_, p)| InteractionMessage::for_interaction(&p.interaction))
            .collect();
        let sent = self.queue.publish_all(&messages).await;
        for ((i, plan), sent) in committed.into_iter().zip(sent) {
            if let Err(e) = &sent {
                tracing::warn!(interaction_id = %plan.interaction.interaction_id, error = %e, "scoring message not sent; left in the outbox");
            }
            results[i] = Some(Ok(IntakeOutcome::Accepted {
                receipt: plan.receipt,
                replayed: false,
                queued: sent.is_ok(),
            }));
        }
        one_by_one.sort_unstable();
        for i in one_by_one {
            let (raw, meta) = &rows[i];
            results[i] = Some(self.submit(form, raw, meta).await);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(IntakeError::Busy)))
            .collect()
    }

    async fn keep_spam(
        &self,
        form: &FormDefinition,
        raw: &RawSubmission,
        meta: &SubmissionMeta,
    ) -> Result<IntakeOutcome, IntakeError> {
        let fields = raw
            .fields
            .iter()
            .filter_map(|(k, v)| match v {
                crate::submission::RawValue::Text(t) => {
                    Some((k.chars().take(64).collect(), t.chars().take(1000).collect()))
                }
                _ => None,
            })
            .collect();
        let spam = SpamRecord {
            spam_id: uuid::Uuid::now_v7(),
            form_id: form.id.clone(),
            received_at: meta.received_at,
            expires_at: meta.received_at + Duration::days(SPAM_TTL_DAYS),
            fields,
            source_ip: meta.source_ip.clone(),
            user_agent: meta.user_agent.clone(),
        };
        self.store.store_spam(&spam).await?;
        tracing::info!(form_id = %form.id, "honeypot filled; kept as spam");
        // Look like a success so the bot learns nothing; the ids lead nowhere.
        let receipt = Receipt {
            contact_id: ContactId::generate(),
            lead_id: LeadId::generate(),
            contact: Resolution::Created,
            lead: Resolution::Created,
            submission: Some(InteractionId::generate()),
        };
        Ok(IntakeOutcome::Spam { receipt })
    }
}
