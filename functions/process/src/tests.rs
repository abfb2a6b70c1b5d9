//! The process function's logic over in-memory ports: the lead API (activities, manual moves,
//! every error answer) and a scheduled run (outbox relay, hand-off of a sales-ready lead,
//! missing configuration).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use lambda_http::Body;
use serde_json::Value;

use leadflow_domain::email::Email;
use leadflow_domain::message::InteractionMessage;
use leadflow_domain::outbox::Outbox;
use leadflow_domain::ports::{InteractionQueue, QueueError, StoreError};
use leadflow_domain::process::activity::Activity;
use leadflow_domain::process::handoff::{RoutingConfig, Task};
use leadflow_domain::process::nurture::NurtureConfig;
use leadflow_domain::process::plan::{LeadView, NurtureState};
use leadflow_domain::process::ports::{
    Audience, Claim, DueItem, LeadApiStore, LeadSave, LeaseStore, MailError, Mailer, ProcessConfigSource, RoundRobin,
    SendLedger, SlotGiveBack, TaskAndActivity, TaskStore,
};
use leadflow_domain::process::stage::StageChange;
use leadflow_domain::records::{
    Consent, Contact, ContactFields, ContactId, Interaction, InteractionId, InteractionKind, Lead, LeadId, LeadSource,
    LeadStatus, Stage,
};
use leadflow_domain::scoring::service::ScoringConfigSource;
use leadflow_domain::scoring::ScoringConfig;
use leadflow_domain::segment::{ActivityMark, Upkeep};

use crate::{Process, ProcessError, RUN_LIMIT};

/// Monday 2026-11-02 10:00 in Tokyo.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 1, 0, 0).unwrap()
}

#[derive(Default)]
struct Mem {
    views: Mutex<HashMap<LeadId, LeadView>>,
    due: Mutex<Vec<DueItem>>,
    saves: Mutex<Vec<LeadSave>>,
    ledger: Mutex<HashMap<(LeadId, String), String>>,
    tasks: Mutex<HashMap<String, Task>>,
    activities: Mutex<Vec<(LeadId, Activity)>>,
    moves: Mutex<Vec<StageChange>>,
    counter: Mutex<u64>,
}

impl LeadApiStore for Mem {
    async fn view(&self, lead: LeadId) -> Result<Option<LeadView>, StoreError> {
        Ok(self.views.lock().unwrap().get(&lead).cloned())
    }

    async fn move_lead(
        &self,
        lead: LeadId,
        change: &StageChange,
        _: &Upkeep,
        _: &leadflow_domain::report::Tally,
    ) -> Result<bool, StoreError> {
        let mut views = self.views.lock().unwrap();
        let v = views.get_mut(&lead).expect("known lead");
        if (v.lead.stage, v.lead.status) != (change.from, change.from_status) {
            return Ok(false);
        }
        (v.lead.stage, v.lead.status) = (change.to, change.to_status);
        self.moves.lock().unwrap().push(change.clone());
        Ok(true)
    }

    async fn record_activity(
        &self,
        lead: LeadId,
        _: ContactId,
        activity: &Activity,
        _: &[ActivityMark],
        _: &Upkeep,
    ) -> Result<(), StoreError> {
        self.activities.lock().unwrap().push((lead, activity.clone()));
        Ok(())
    }
}

impl LeaseStore for Mem {
    /// As the due index: the first `limit` entries still due; a saved lead leaves it.
    async fn due(&self, _: DateTime<Utc>, limit: usize) -> Result<Vec<DueItem>, StoreError> {
        Ok(self.due.lock().unwrap().iter().take(limit).cloned().collect())
    }

    async fn lease(
        &self,
        lead: LeadId,
        _: &str,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
    ) -> Result<Option<LeadView>, StoreError> {
        Ok(self.views.lock().unwrap().get(&lead).cloned())
    }

    async fn save(&self, save: &LeadSave) -> Result<(), StoreError> {
        if let Some(v) = self.views.lock().unwrap().get_mut(&save.lead_id) {
            (v.lead.stage, v.lead.status) = (save.stage, save.status);
            v.nurture = save.nurture.clone();
            v.owner = save.owner.clone().or(v.owner.take());
        }
        self.saves.lock().unwrap().push(save.clone());
        self.due.lock().unwrap().retain(|d| d != &DueItem::Lead(save.lead_id));
        Ok(())
    }
}

impl SendLedger for Mem {
    async fn claim_confirmation(
        &self,
        _: ContactId,
        _: &str,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
    ) -> Result<leadflow_domain::process::ports::ConfirmationSlot, StoreError> {
        Ok(leadflow_domain::process::ports::ConfirmationSlot::Taken)
    }

    async fn release_confirmation(
        &self,
        _: ContactId,
        _: DateTime<Utc>,
        _: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    async fn claim(
        &self,
        lead: LeadId,
        key: &str,
        _: Option<(ContactId, u64, Vec<DateTime<Utc>>)>,
        _: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let mut ledger = self.ledger.lock().unwrap();
        if ledger.contains_key(&(lead, key.to_owned())) {
            return Ok(Claim::AlreadyClaimed);
        }
        ledger.insert((lead, key.to_owned()), "claimed".into());
        Ok(Claim::Claimed)
    }

    async fn sent(
        &self,
        lead: LeadId,
        contact: Option<ContactId>,
        key: &str,
        message_id: &str,
        _: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let whose = if contact.is_some() { "lead's" } else { "internal" };
        self.ledger
            .lock()
            .unwrap()
            .insert((lead, key.to_owned()), format!("sent {message_id} {whose}"));
        Ok(())
    }

    async fn release(&self, lead: LeadId, key: &str, _: Option<SlotGiveBack>) -> Result<(), StoreError> {
        self.ledger.lock().unwrap().remove(&(lead, key.to_owned()));
        Ok(())
    }
}

impl RoundRobin for Mem {
    async fn round_robin(&self, _: &str) -> Result<u64, StoreError> {
        let mut n = self.counter.lock().unwrap();
        *n += 1;
        Ok(*n - 1)
    }
}

impl TaskStore for Mem {
    async fn task(&self, _: LeadId, task_id: &str) -> Result<Option<TaskAndActivity>, StoreError> {
        Ok(self.tasks.lock().unwrap().get(task_id).map(|t| (t.clone(), None)))
    }

    async fn save_task(&self, task: &Task, _: Option<DateTime<Utc>>) -> Result<(), StoreError> {
        self.tasks.lock().unwrap().insert(task.task_id.clone(), task.clone());
        Ok(())
    }
}

#[derive(Default)]
struct Mail(Mutex<Vec<(String, Audience, String)>>, Option<MailError>);

impl Mailer for Mail {
    async fn send(&self, raw: Vec<u8>, to: &str, _: Option<LeadId>, audience: Audience) -> Result<String, MailError> {
        if let Some(e) = &self.1 {
            return Err(e.clone());
        }
        let mut sent = self.0.lock().unwrap();
        sent.push((to.to_owned(), audience, String::from_utf8_lossy(&raw).into_owned()));
        Ok(format!("msg-{}", sent.len()))
    }
}

#[derive(Default)]
struct Queue {
    outbox: Mutex<Vec<InteractionMessage>>,
    published: Mutex<Vec<InteractionMessage>>,
}

impl Outbox for Queue {
    async fn due(&self, _: DateTime<Utc>, _: usize) -> Result<Vec<InteractionMessage>, StoreError> {
        Ok(self.outbox.lock().unwrap().clone())
    }

    async fn postpone(&self, m: &InteractionMessage, _: DateTime<Utc>) -> Result<(), StoreError> {
        self.outbox.lock().unwrap().retain(|x| x != m);
        Ok(())
    }
}

impl InteractionQueue for Queue {
    async fn publish(&self, m: &InteractionMessage) -> Result<(), QueueError> {
        self.published.lock().unwrap().push(m.clone());
        Ok(())
    }
}

struct Config(Option<NurtureConfig>);

impl ProcessConfigSource for Config {
    async fn nurture(&self) -> Result<Option<NurtureConfig>, StoreError> {
        Ok(self.0.clone())
    }

    async fn routing(&self) -> Result<Option<RoutingConfig>, StoreError> {
        Ok(Some(
            serde_json::from_str(include_str!("../../../config/routing.json")).unwrap(),
        ))
    }

    async fn routine(&self) -> Result<Option<leadflow_domain::process::routine::RoutineConfig>, StoreError> {
        Ok(None)
    }
}

impl ScoringConfigSource for Config {
    async fn scoring_config(&self) -> Result<Arc<ScoringConfig>, StoreError> {
        Ok(Arc::new(ScoringConfig::defaults()))
    }
}

type App = Process<Mem, Mail, Queue, Queue, Config, Config>;

fn keyring(key: &str) -> leadflow_aws::secrets::Keyring {
    leadflow_aws::secrets::Keyring::new("k1", [("k1".to_owned(), key.as_bytes().to_vec())]).unwrap()
}

fn app(nurture: bool) -> App {
    let mut nurture_config: NurtureConfig = serde_json::from_str(include_str!("../../../config/nurture.json")).unwrap();
    // Every hour is inside the send window, so the test does not depend on the clock.
    (nurture_config.window.start_hour, nurture_config.window.end_hour) = (0, 24);
    Process {
        store: Mem::default(),
        mailer: Mail::default(),
        outbox: Queue::default(),
        queue: Queue::default(),
        config: Config(nurture.then_some(nurture_config)),
        scoring_config: Config(None),
        unsubscribe_keys: keyring("unsubscribe-test-key-0123456789abcdef"),
        confirm_keys: keyring("confirm-test-key-0123456789abcdef0123"),
        lead_keys: None,
        public_url: "https://leadflow.test".into(),
        budget: Duration::from_secs(60),
        clock: now,
    }
}

fn lead(app: &App, stage: Stage, band: &str, sales_ready: bool) -> LeadId {
    let c = Contact {
        consent: Some(Consent {
            opt_in: true,
            wording_version: None,
            at: now(),
            source_form: "demo".into(),
            ip: None,
            user_agent: None,
            confirmed: None,
        }),
        ..Contact::new(
            Some(Email::parse("taro@example.jp").unwrap()),
            ContactFields {
                last_name: Some("山田".into()),
                industry: Some("IT".into()),
                ..Default::default()
            },
            now(),
        )
    };
    let id = LeadId::generate();
    let view = LeadView {
        lead: Lead {
            lead_id: id,
            contact_id: c.contact_id,
            form_id: "demo".into(),
            campaign: None,
            source: LeadSource::WebForm,
            stage,
            status: if stage == Stage::SalesAcceptance {
                LeadStatus::Qualified
            } else {
                LeadStatus::Open
            },
            created_at: now(),
            last_activity_at: now(),
            submissions: 1,
            nurture_enabled: true,
            fields: Default::default(),
            handoff_requested: None,
        },
        contact: c,
        band: Some(band.into()),
        sales_ready,
        total: 60,
        explanation: vec![],
        nurture: NurtureState::default(),
        owner: None,
        last_sales_activity_at: None,
        stage_since: now(),
        contact_sends: vec![],
        contact_send_seq: 0,
        scoring: Default::default(),
        segments: Default::default(),
        marks: vec![],
    };
    app.store.views.lock().unwrap().insert(id, view);
    id
}

async fn post(app: &App, path: &str, body: &str) -> (u16, Value) {
    let mut req = lambda_http::http::Request::builder()
        .method("POST")
        .uri(format!("https://api.test{path}"))
        .body(Body::Text(body.into()))
        .unwrap();
    req.extensions_mut()
        .insert(lambda_http::request::RequestContext::ApiGatewayV2(Default::default()));
    let r = app.http(req).await;
    let status = r.status().as_u16();
    let body = match r.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        _ => Value::Null,
    };
    (status, body)
}

#[tokio::test]
async fn activities_are_typed_recorded_and_move_the_lead_by_their_result() {
    let app = app(true);
    let id = lead(&app, Stage::SalesAcceptance, "hot", true);
    let (status, _) = post(
        &app,
        &format!("/leads/{id}/activities"),
        r#"{"type":"phone","content":"called","source":"HOT lead list"}"#,
    )
    .await;
    assert_eq!(status, 201);
    let recorded = app.store.activities.lock().unwrap().clone();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].1.actor, "unknown-iam-caller");
    assert_eq!(recorded[0].1.at, now());
    assert!(app.store.moves.lock().unwrap().is_empty(), "continue moves nothing");

    let (status, body) = post(
        &app,
        &format!("/leads/{id}/activities"),
        r#"{"type":"visit","result":"opportunity"}"#,
    )
    .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("converted")), "{body}");

    for (path, body, expected) in [
        (format!("/leads/{id}/activities"), r#"{"type":"fax"}"#, 422),
        (
            format!("/leads/{id}/activities"),
            r#"{"type":"phone","actor":"me"}"#,
            422,
        ),
        (format!("/leads/{id}/stage"), r#"{"move":"fly"}"#, 422),
        (format!("/leads/{id}/stage"), "not json", 400),
        (
            format!("/leads/{id}/stage"),
            r#"{"move":"set_stage","stage":"inquiry"}"#,
            409,
        ),
        (
            format!("/leads/{}/stage", LeadId::generate()),
            r#"{"move":"disqualify"}"#,
            404,
        ),
        ("/leads/not-an-id/stage".to_owned(), "{}", 404),
        (format!("/leads/{id}/elsewhere"), "{}", 404),
    ] {
        assert_eq!(post(&app, &path, body).await.0, expected, "{path} {body}");
    }
}

#[tokio::test]
async fn a_manual_move_records_its_reason() {
    let app = app(true);
    let id = lead(&app, Stage::AutomatedMarketingQualification, "warm", false);
    let (status, body) = post(
        &app,
        &format!("/leads/{id}/stage"),
        r#"{"move":"set_stage","stage":"telemarketing_acceptance","reason":"asked for a call"}"#,
    )
    .await;
    assert_eq!((status, body["to"].as_str()), (200, Some("telemarketing_acceptance")));
    assert_eq!(app.store.moves.lock().unwrap()[0].reason, "asked for a call");
}

#[tokio::test]
async fn a_run_relays_the_outbox_and_hands_a_sales_ready_lead_to_an_owner() {
    let app = app(true);
    let ix = Interaction {
        interaction_id: InteractionId::generate(),
        lead_id: LeadId::generate(),
        contact_id: ContactId::generate(),
        kind: InteractionKind::FormSubmitted,
        occurred_at: now(),
        properties: Default::default(),
    };
    app.outbox
        .outbox
        .lock()
        .unwrap()
        .push(InteractionMessage::for_interaction(&ix));
    let id = lead(&app, Stage::AutomatedMarketingQualification, "hot", true);
    app.store.due.lock().unwrap().push(DueItem::Lead(id));
    let report = app.run().await.unwrap();
    assert_eq!(app.queue.published.lock().unwrap().len(), 1, "the outbox was relayed");
    assert_eq!((report.leads, report.handoffs), (1, 1), "{report:?}");
    let saves = app.store.saves.lock().unwrap().clone();
    assert_eq!(saves.len(), 1);
    assert_eq!(
        saves[0].stage,
        Stage::SalesAcceptance,
        "sales-ready skips telemarketing"
    );
    assert!(saves[0].owner.is_some() && saves[0].task.is_some());
    let mails = app.mailer.0.lock().unwrap().clone();
    assert_eq!(mails.len(), 1, "the owner was told");
    let (to, audience, raw) = &mails[0];
    assert_ne!(to, "taro@example.jp");
    assert_eq!(*audience, Audience::Internal, "untracked: no configuration set");
    assert!(
        !raw.contains("List-Unsubscribe"),
        "internal email has no unsubscribe:\n{raw}"
    );
    let ledger = app.store.ledger.lock().unwrap();
    assert!(
        ledger.values().all(|v| v.ends_with("internal")),
        "the owner's email is never recorded as the lead's: {ledger:?}"
    );
}

#[tokio::test]
async fn a_run_reads_page_after_page_until_nothing_new_is_due() {
    let app = app(true);
    let total = RUN_LIMIT * 2 + 500;
    for _ in 0..total {
        let id = lead(&app, Stage::Inquiry, "cold", false);
        app.store.due.lock().unwrap().push(DueItem::Lead(id));
    }
    // One lead that stays due (nobody can lease it): taken once, not again and again.
    let stuck = LeadId::generate();
    app.store.due.lock().unwrap().insert(0, DueItem::Lead(stuck));
    let report = app.run().await.unwrap();
    assert_eq!(
        (report.due, report.leads, report.busy),
        (total + 1, total, 1),
        "{report:?}"
    );
    assert!(!report.out_of_time);
    assert_eq!(app.store.due.lock().unwrap().clone(), vec![DueItem::Lead(stuck)]);
}

#[tokio::test]
async fn a_run_without_nurture_configuration_fails_clearly() {
    let app = app(false);
    assert!(matches!(app.run().await, Err(ProcessError::NoConfiguration("nurture"))));
}

#[tokio::test]
async fn an_unknown_ses_error_is_retried_a_bounded_number_of_times_then_the_lead_moves_on() {
    let mut app = app(true);
    app.mailer.1 = Some(MailError::Unavailable("InternalFailure".into()));
    let id = lead(&app, Stage::AutomatedMarketingQualification, "cold", false);
    for attempt in 1..=3u32 {
        app.store.due.lock().unwrap().push(DueItem::Lead(id));
        let r = app.run().await.unwrap();
        assert_eq!(r.emails, 0);
        assert!(app.store.ledger.lock().unwrap().is_empty(), "withdrawn each time");
        let n = app.store.views.lock().unwrap()[&id].nurture.clone();
        if attempt < 3 {
            assert_eq!((n.failed_attempts, n.next_step), (attempt, 0), "{n:?}");
        } else {
            assert_eq!((n.failed_attempts, n.next_step), (0, 1), "moved on: {n:?}");
            assert_eq!(n.skipped.len(), 1);
            assert!(
                n.skipped[0].contains("not sent after 3 attempts (unavailable: InternalFailure)"),
                "{n:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_paused_account_stops_sending_for_the_run_without_using_up_attempts() {
    let mut app = app(true);
    app.mailer.1 = Some(MailError::Paused("SendingPausedException".into()));
    let a = lead(&app, Stage::AutomatedMarketingQualification, "cold", false);
    app.store.due.lock().unwrap().push(DueItem::Lead(a));
    let r = app.run().await.unwrap();
    assert!(r.throttled, "{r:?}");
    assert_eq!(app.store.views.lock().unwrap()[&a].nurture.failed_attempts, 0);
}

#[tokio::test]
async fn the_iam_lead_api_never_answers_the_lead_pages_routes() {
    let app = app(true);
    let id = lead(&app, Stage::SalesAcceptance, "hot", true);
    let (status, body) = post(
        &app,
        &format!("/sales/leads/{id}/activities"),
        r#"{"type":"phone","content":"called"}"#,
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    assert!(app.store.activities.lock().unwrap().is_empty());
}
