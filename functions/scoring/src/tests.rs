//! The scoring function's logic over in-memory ports: batch classification, poison messages,
//! duplicates, SES events for known and unknown emails, and the re-scoring passes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use leadflow_domain::message::InteractionMessage;
use leadflow_domain::ports::StoreError;
use leadflow_domain::records::{Contact, ContactId, Interaction, InteractionId, InteractionKind, LeadId};
use leadflow_domain::scoring::lead::LeadScoring;
use leadflow_domain::scoring::service::{
    LeadSnapshot, Loaded, RescorePage, RescorePass, RescoreSchedule, ScoreCommit, ScoreWrite, ScoringConfigSource,
    ScoringStore, SentEmail, SentEmails, StoredInteraction,
};
use leadflow_domain::scoring::ScoringConfig;

use crate::Scoring;

#[derive(Default)]
struct Lead {
    contact: Option<Contact>,
    scoring: LeadScoring,
    suppressed: bool,
}

/// The records table in memory, with the adapter's conditions: the lead's scoring version
/// and each interaction's "scored" mark.
#[derive(Default)]
struct Mem {
    leads: Mutex<HashMap<LeadId, Lead>>,
    interactions: Mutex<HashMap<InteractionId, (Interaction, bool)>>,
    emails: HashMap<String, (LeadId, ContactId)>,
    commits: Mutex<usize>,
    cursor: Mutex<Option<String>>,
}

impl ScoringStore for Mem {
    async fn load(
        &self,
        leads: &[(LeadId, ContactId)],
        interactions: &[(LeadId, InteractionId)],
    ) -> Result<Loaded, StoreError> {
        let mut loaded = Loaded::default();
        let stored = self.leads.lock().unwrap();
        for (l, _) in leads {
            if let Some(Lead {
                contact: Some(contact),
                scoring,
                ..
            }) = stored.get(l)
            {
                loaded.leads.insert(
                    *l,
                    LeadSnapshot {
                        lead_id: *l,
                        contact: contact.clone(),
                        scoring: scoring.clone(),
                        lead: leadflow_domain::records::Lead {
                            lead_id: *l,
                            ..leadflow_domain::records::Lead::new(contact.contact_id, "demo", Utc::now())
                        },
                        owner: None,
                        marks: vec![],
                        members: Default::default(),
                    },
                );
            }
        }
        let ixs = self.interactions.lock().unwrap();
        for (_, i) in interactions {
            if let Some((ix, scored)) = ixs.get(i) {
                loaded.interactions.insert(
                    *i,
                    StoredInteraction {
                        interaction: ix.clone(),
                        scored: *scored,
                    },
                );
            }
        }
        Ok(loaded)
    }

    async fn commit(&self, w: &ScoreWrite) -> Result<ScoreCommit, StoreError> {
        let mut leads = self.leads.lock().unwrap();
        let mut ixs = self.interactions.lock().unwrap();
        let lead = leads.get_mut(&w.lead_id).expect("known lead");
        if lead.scoring.version != w.expected_version {
            return Ok(ScoreCommit::VersionConflict);
        }
        let scored: Vec<InteractionId> = w
            .confirm
            .iter()
            .chain(w.create.iter().map(|c| &c.interaction_id))
            .filter(|id| ixs.get(id).is_some_and(|(_, s)| *s))
            .copied()
            .collect();
        if !scored.is_empty() {
            return Ok(ScoreCommit::AlreadyScored(scored));
        }
        for id in &w.confirm {
            ixs.get_mut(id).expect("stored").1 = true;
        }
        for ix in &w.create {
            ixs.insert(ix.interaction_id, (ix.clone(), true));
        }
        lead.scoring = w.outcome.scoring.clone();
        lead.suppressed |= w.suppress.is_some();
        *self.commits.lock().unwrap() += 1;
        Ok(ScoreCommit::Committed)
    }

    async fn anonymous(&self, _: &str, _: usize) -> Result<Vec<Interaction>, StoreError> {
        Ok(vec![])
    }
}

impl SentEmails for Mem {
    async fn email_messages(&self, ids: &[String]) -> Result<HashMap<String, SentEmail>, StoreError> {
        Ok(ids
            .iter()
            .filter_map(|i| {
                self.emails.get(i).map(|(lead_id, contact_id)| {
                    let email = SentEmail {
                        lead_id: *lead_id,
                        contact_id: *contact_id,
                        ledger_key: None,
                        opened: false,
                        clicked: false,
                    };
                    (i.clone(), email)
                })
            })
            .collect())
    }
}

impl RescoreSchedule for Mem {
    async fn rescore_candidates(&self, pass: RescorePass, limit: usize) -> Result<RescorePage, StoreError> {
        let leads = self.leads.lock().unwrap();
        let mut all: Vec<_> = leads
            .iter()
            .filter(|(_, l)| l.scoring.version > 0)
            .filter(|(_, l)| match &pass {
                RescorePass::Due(now) => l.scoring.next_rescore_at.is_some_and(|at| at <= *now),
                RescorePass::Stale(_) => true,
            })
            .filter_map(|(id, l)| Some((*id, l.contact.as_ref()?.contact_id)))
            .collect();
        all.sort();
        let from = match &pass {
            RescorePass::Stale(Some(c)) => c.parse::<usize>().unwrap(),
            _ => 0,
        };
        let page: Vec<_> = all.iter().skip(from).take(limit).copied().collect();
        let next =
            (matches!(pass, RescorePass::Stale(_)) && from + limit < all.len()).then(|| (from + limit).to_string());
        Ok(RescorePage { leads: page, next })
    }

    async fn stale_cursor(&self) -> Result<Option<String>, StoreError> {
        Ok(self.cursor.lock().unwrap().clone())
    }

    async fn save_stale_cursor(&self, cursor: Option<&str>) -> Result<(), StoreError> {
        *self.cursor.lock().unwrap() = cursor.map(str::to_owned);
        Ok(())
    }
}

struct Defaults;

impl ScoringConfigSource for Defaults {
    async fn scoring_config(&self) -> Result<Arc<ScoringConfig>, StoreError> {
        Ok(Arc::new(ScoringConfig::defaults()))
    }
}

fn now() -> DateTime<Utc> {
    "2026-11-02T01:00:00Z".parse().unwrap()
}

fn contact(id: ContactId) -> Contact {
    Contact {
        contact_id: id,
        ..Contact::new(None, Default::default(), now())
    }
}

fn interaction(lead: LeadId, contact: ContactId, kind: InteractionKind) -> Interaction {
    Interaction {
        interaction_id: InteractionId::generate(),
        lead_id: lead,
        contact_id: contact,
        kind,
        occurred_at: now() - Duration::minutes(1),
        properties: Default::default(),
    }
}

fn message(id: &str, body: String) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(id.into());
    m.body = Some(body);
    m
}

fn batch(messages: Vec<SqsMessage>) -> SqsEvent {
    let mut e = SqsEvent::default();
    e.records = messages;
    e
}

fn ses_open(message_id: &str) -> String {
    json!({"eventType": "Open", "mail": {"messageId": message_id, "timestamp": "2026-11-02T00:00:00Z"},
        "open": {"timestamp": "2026-11-02T00:30:00Z"}})
    .to_string()
}

fn app(store: Mem) -> Scoring<Mem, Defaults> {
    Scoring {
        store,
        config: Defaults,
        clock: now,
        rescore_page: crate::RESCORE_PAGE,
        rescore_budget: crate::RESCORE_BUDGET,
    }
}

fn with_lead() -> (Mem, LeadId, ContactId) {
    let (lead, c) = (LeadId::generate(), ContactId::generate());
    let mut store = Mem::default();
    store.leads.lock().unwrap().insert(
        lead,
        Lead {
            contact: Some(contact(c)),
            ..Default::default()
        },
    );
    store.emails.insert("ses-known".into(), (lead, c));
    (store, lead, c)
}

#[tokio::test]
async fn a_batch_scores_each_interaction_once_and_fails_only_the_poison() {
    let (store, lead, c) = with_lead();
    let ix = interaction(lead, c, InteractionKind::FormSubmitted);
    store
        .interactions
        .lock()
        .unwrap()
        .insert(ix.interaction_id, (ix.clone(), false));
    let body = serde_json::to_string(&InteractionMessage::for_interaction(&ix)).unwrap();
    let app = app(store);
    let response = app
        .on_batch(batch(vec![
            message("m1", body.clone()),
            message("m2", "not json".into()),
            message("m3", ses_open("ses-known")),
            message("m4", ses_open("ses-unknown")),
            message("m5", json!({"schema": "leadflow.interaction.v9"}).to_string()),
        ]))
        .await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        ["m2", "m5"],
        "poison and unknown versions fail alone; an unknown email is dropped"
    );
    assert!(app.store.interactions.lock().unwrap()[&ix.interaction_id].1, "scored");
    let scoring = app.store.leads.lock().unwrap()[&lead].scoring.clone();
    assert!(scoring.version > 0);
    let explained: i64 = scoring.scores["default"].explanation.iter().map(|l| l.points).sum();
    assert_eq!(explained, scoring.scores["default"].total, "the explanation adds up");

    // The same interaction delivered again (another batch): nothing changes.
    let before = app.store.leads.lock().unwrap()[&lead].scoring.clone();
    let again = app.on_batch(batch(vec![message("m6", body)])).await;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(app.store.leads.lock().unwrap()[&lead].scoring, before);
}

#[tokio::test]
async fn an_open_adds_one_point_and_a_permanent_bounce_suppresses() {
    let (store, lead, _) = with_lead();
    let app = app(store);
    app.on_batch(batch(vec![message("m1", ses_open("ses-known"))])).await;
    let total = app.store.leads.lock().unwrap()[&lead].scoring.scores["default"].total;
    assert_eq!(total, 1, "SPEC: an open is +1");
    let bounce = json!({"eventType": "Bounce", "mail": {"messageId": "ses-known", "timestamp": "2026-11-02T00:00:00Z"},
        "bounce": {"bounceType": "Permanent", "bounceSubType": "General", "timestamp": "2026-11-02T00:40:00Z"}});
    let r = app.on_batch(batch(vec![message("m2", bounce.to_string())])).await;
    assert!(r.batch_item_failures.is_empty());
    assert!(app.store.leads.lock().unwrap()[&lead].suppressed);
}

#[tokio::test]
async fn rescoring_takes_only_stale_leads_after_a_model_change() {
    let (store, lead, c) = with_lead();
    let app = app(store);
    app.on_batch(batch(vec![message("m1", ses_open("ses-known"))])).await;
    let commits = *app.store.commits.lock().unwrap();
    // The model is unchanged: nothing is stale, nothing is written.
    let report = app.rescore("stale").await.unwrap();
    assert_eq!((report.examined, report.rescored, report.skipped), (1, 0, 1));
    assert!(!report.stale_pending);
    assert_eq!(*app.store.commits.lock().unwrap(), commits);
    // Nothing ages yet: the due pass finds nothing.
    let due = app.rescore("due").await.unwrap();
    assert_eq!(due.examined, 0);
    let _ = (lead, c);
}

#[tokio::test]
async fn unknown_events_are_errors_not_panics() {
    let (store, _, _) = with_lead();
    let app = app(store);
    assert!(matches!(
        app.handle(json!({"hello": 1})).await,
        Err(crate::ScoringError::UnknownEvent)
    ));
    assert!(app.handle(json!({"Records": 5})).await.is_err());
}
