//! The process function. On its schedule: the outbox relay, then every lead and task that is
//! due (stage moves, nurture email, hand-off, SLA) within a time budget. Over HTTP (IAM
//! authorised, `lambda_http`): manual stage moves and sales activities, through the same
//! domain code.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{json, Value};

use leadflow_aws::catalog::{DynamoProcessConfig, DynamoScoringConfig, CONFIG_CACHE_TTL};
use leadflow_aws::config::{Clients, Env, MissingEnv};
use leadflow_aws::intake::DynamoIntake;
use leadflow_aws::metrics::Record;
use leadflow_aws::process::DynamoProcess;
use leadflow_aws::secrets::{Keyring, SecretError};
use leadflow_aws::ses::SesMailer;
use leadflow_aws::sqs::SqsQueue;
use leadflow_domain::outbox::{self, Outbox};
use leadflow_domain::ports::{InteractionQueue, StoreError};
use leadflow_domain::process::activity::{Activity, ActivityRequest, Recorded, ACTIVITY_FIELDS};
use leadflow_domain::process::handoff::RoutingConfig;
use leadflow_domain::process::nurture::NurtureConfig;
use leadflow_domain::process::plan::LeadView;
use leadflow_domain::process::ports::{LeadApiStore, Mailer, ProcessConfigSource, ProcessStore};
use leadflow_domain::process::routine::{RoutineReport, RoutineRun, RoutineStore};
use leadflow_domain::process::run::{run, RunConfig, RunReport};
use leadflow_domain::process::stage::{apply, Actor, IllegalMove, Move, StageChange};
use leadflow_domain::records::LeadId;
use leadflow_domain::scoring::service::ScoringConfigSource;
use leadflow_domain::segment::Segment;

pub mod page;

#[cfg(test)]
mod tests;

/// Due items read per page; a run reads page after page until nothing new is due or its
/// budget is spent.
pub const RUN_LIMIT: usize = 1000;

/// The process function over its ports.
pub struct Process<S, M, O, Q, D, C> {
    /// Leases, ledger, tasks, round-robin, and the lead API's reads and writes.
    pub store: S,
    pub mailer: M,
    /// The transactional outbox and the queue it is relayed to.
    pub outbox: O,
    pub queue: Q,
    pub config: D,
    pub scoring_config: C,
    /// Signs the unsubscribe links of nurture emails.
    pub unsubscribe_keys: Keyring,
    /// Signs the opt-in confirmation links.
    pub confirm_keys: Keyring,
    /// Signs and verifies the links to lead pages; without it, no page answers and owners'
    /// emails link to routing.json's `lead_url`.
    pub lead_keys: Option<Keyring>,
    pub public_url: String,
    /// Stop taking new leads after this long (below the Lambda timeout).
    pub budget: Duration,
    pub clock: fn() -> DateTime<Utc>,
}

pub type AwsProcess =
    Process<DynamoProcess, SesMailer, DynamoIntake, SqsQueue, DynamoProcessConfig, DynamoScoringConfig>;

/// The process function's settings, from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub table: String,
    pub config_table: String,
    /// The events bus (`EVENT_BUS_NAME`); unset: no domain events.
    pub event_bus: Option<String>,
    pub scoring_queue_url: String,
    pub sender: String,
    pub configuration_set: Option<String>,
    /// The secret (ARN or name; never its value) holding the unsubscribe links' keyring.
    pub unsubscribe_keys_secret: String,
    /// The secret holding the confirmation links' keyring.
    pub confirm_keys_secret: String,
    /// The secret holding the lead-page links' keyring (`LEAD_LINK_KEYS_SECRET_ARN`); unset:
    /// no lead page.
    pub lead_keys_secret: Option<String>,
    pub public_url: String,
    pub budget: Duration,
}

impl Settings {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, MissingEnv> {
        Ok(Settings {
            table: env.required("TABLE_NAME")?,
            config_table: env.required("CONFIG_TABLE_NAME")?,
            event_bus: env.optional(leadflow_aws::config::EVENT_BUS_ENV),
            scoring_queue_url: env.required("SCORING_QUEUE_URL")?,
            sender: env.required("SENDER_EMAIL")?,
            configuration_set: env.optional("CONFIGURATION_SET"),
            unsubscribe_keys_secret: env.required("UNSUBSCRIBE_KEYS_SECRET_ARN")?,
            confirm_keys_secret: env.required("CONFIRM_KEYS_SECRET_ARN")?,
            lead_keys_secret: env.optional("LEAD_LINK_KEYS_SECRET_ARN"),
            public_url: env.required("PUBLIC_URL")?,
            budget: Duration::from_secs(
                env.optional("RUN_BUDGET_SECONDS")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(240),
            ),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no {0} configuration loaded")]
    NoConfiguration(&'static str),
    #[error("{0}")]
    BadConfiguration(String),
    #[error("not an HTTP API event: {0}")]
    NotHttp(serde_json::Error),
    #[error("response: {0}")]
    Response(serde_json::Error),
}

/// The keyrings the process signs links with, read from Secrets Manager once, at cold start.
#[derive(Debug, Clone)]
pub struct LinkKeys {
    pub unsubscribe: Keyring,
    pub confirm: Keyring,
    /// The lead pages' links, when configured.
    pub lead: Option<Keyring>,
}

impl LinkKeys {
    pub async fn load(clients: &Clients, s: &Settings) -> Result<Self, SecretError> {
        let (unsubscribe, confirm) = leadflow_aws::secrets::keyrings(
            &clients.secretsmanager,
            &s.unsubscribe_keys_secret,
            &s.confirm_keys_secret,
        )
        .await?;
        let lead = match &s.lead_keys_secret {
            Some(id) => Some(leadflow_aws::secrets::keyring(&clients.secretsmanager, id).await?),
            None => None,
        };
        Ok(LinkKeys {
            unsubscribe,
            confirm,
            lead,
        })
    }
}

impl AwsProcess {
    /// `keys`: what [`LinkKeys::load`] read for `s`.
    pub fn new(clients: &Clients, s: &Settings, keys: LinkKeys) -> Self {
        Process {
            store: DynamoProcess::new(clients.records(&s.table, s.event_bus.as_deref())),
            mailer: SesMailer::new(clients.sesv2.clone(), &s.sender, s.configuration_set.clone()),
            outbox: DynamoIntake::new(clients.records(&s.table, s.event_bus.as_deref())),
            queue: SqsQueue::new(clients.sqs.clone(), &s.scoring_queue_url),
            config: DynamoProcessConfig::new(clients.table(&s.config_table)),
            scoring_config: DynamoScoringConfig::new(clients.table(&s.config_table), CONFIG_CACHE_TTL),
            unsubscribe_keys: keys.unsubscribe,
            confirm_keys: keys.confirm,
            lead_keys: keys.lead,
            public_url: s.public_url.clone(),
            budget: s.budget,
            clock: Utc::now,
        }
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut r = Response::new(Body::Text(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response<Body> {
    json_response(status, &json!({"error": code, "message": message.into()}))
}

/// The API Gateway (payload 2.0) answer for a response.
fn to_gateway(response: Response<Body>) -> aws_lambda_events::apigw::ApiGatewayV2httpResponse {
    let (parts, body) = response.into_parts();
    let mut out = aws_lambda_events::apigw::ApiGatewayV2httpResponse::default();
    out.status_code = i64::from(parts.status.as_u16());
    out.headers = parts.headers;
    out.body = match body {
        Body::Text(t) => Some(aws_lambda_events::encodings::Body::Text(t)),
        Body::Binary(b) => Some(aws_lambda_events::encodings::Body::Binary(b)),
        _ => None,
    };
    out.is_base64_encoded = false;
    out
}

/// The IAM caller's identity, for the record of who moved a lead.
fn caller(req: &Request) -> String {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx
            .authorizer
            .as_ref()
            .and_then(|a| a.iam.as_ref())
            .and_then(|iam| iam.user_arn.clone()),
        _ => None,
    }
    .unwrap_or_else(|| "unknown-iam-caller".into())
}

impl<S, M, O, Q, D, C> Process<S, M, O, Q, D, C>
where
    S: ProcessStore + LeadApiStore,
    M: Mailer,
    O: Outbox,
    Q: InteractionQueue,
    D: ProcessConfigSource,
    C: ScoringConfigSource,
{
    /// The nurture and routing documents, both required and checked.
    async fn documents(&self) -> Result<(NurtureConfig, RoutingConfig), ProcessError> {
        let nurture = self
            .config
            .nurture()
            .await?
            .ok_or(ProcessError::NoConfiguration("nurture"))?;
        let routing = self
            .config
            .routing()
            .await?
            .ok_or(ProcessError::NoConfiguration("routing"))?;
        nurture
            .check()
            .map_err(|e| ProcessError::BadConfiguration(e.to_string()))?;
        routing.check().map_err(ProcessError::BadConfiguration)?;
        Ok((nurture, routing))
    }

    /// One scheduled run.
    pub async fn run(&self) -> Result<RunReport, ProcessError> {
        let started = Instant::now();
        let now = (self.clock)();
        let relayed = outbox::relay(&self.outbox, &self.queue, now, 500).await?;
        // Events a failed publish left behind: a failing relay never stops the run's own work.
        let events_relayed = match self.outbox.relay_events(now, 500).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "events relay failed; the next run tries again");
                0
            }
        };
        let (nurture, routing) = self.documents().await?;
        let scoring = self.scoring_config.scoring_config().await?;
        let run_id = uuid::Uuid::now_v7().to_string();
        let cfg = RunConfig {
            nurture: &nurture,
            routing: &routing,
            maps: &scoring.maps,
            segments: &scoring.segments,
            unsubscribe_keys: &self.unsubscribe_keys,
            confirm_keys: &self.confirm_keys,
            lead_keys: self.lead_keys.as_ref(),
            public_url: &self.public_url,
            run_id: &run_id,
            now,
            deadline: started + self.budget,
            limit: RUN_LIMIT,
        };
        let report = run(&self.store, &self.mailer, &cfg).await?;
        tracing::info!(
            relayed = relayed.published,
            events_relayed,
            due = report.due,
            leads = report.leads,
            moves = report.moves,
            emails = report.emails,
            handoffs = report.handoffs,
            reminders = report.reminders,
            escalations = report.escalations,
            held = report.held,
            busy = report.busy,
            failed = report.failed,
            throttled = report.throttled,
            out_of_time = report.out_of_time,
            "process run done"
        );
        Ok(report)
    }

    /// `POST /leads/{leadId}/stage` and `POST /leads/{leadId}/activities` (IAM auth).
    pub async fn http(&self, req: Request) -> Response<Body> {
        let span = tracing::info_span!("request", method = %req.method(), route = "lead_api");
        tracing::Instrument::instrument(self.route(req), span).await
    }

    async fn route(&self, req: Request) -> Response<Body> {
        let path = req.uri().path().to_owned();
        if page::is_page(&path) {
            // The lead page's routes are the link's, never the IAM lead API's.
            return error(StatusCode::NOT_FOUND, "not_found", "no such route");
        }
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        // The route's last three segments (a stage name may precede them).
        let (lead, action) = match parts.as_slice() {
            [.., "leads", id, action @ ("stage" | "activities")] => match LeadId::parse(id) {
                Some(l) => (l, *action),
                None => return error(StatusCode::NOT_FOUND, "unknown_lead", format!("no lead {id}")),
            },
            _ => return error(StatusCode::NOT_FOUND, "not_found", "no such route"),
        };
        let caller = caller(&req);
        let body = req.body().as_ref();
        if serde_json::from_slice::<Value>(body).is_err() {
            return error(StatusCode::BAD_REQUEST, "malformed_body", "the body must be JSON");
        }
        let now = (self.clock)();
        let view = match self.store.view(lead).await {
            Ok(Some(v)) => v,
            Ok(None) => return error(StatusCode::NOT_FOUND, "unknown_lead", format!("no lead {lead}")),
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()),
        };
        // The lead's segments follow what this request changes.
        let config = match self.scoring_config.scoring_config().await {
            Ok(c) => c,
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()),
        };
        if action == "activities" {
            let request = match serde_json::from_slice::<ActivityRequest>(body) {
                Ok(r) => r,
                Err(e) => {
                    return error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "validation_failed",
                        format!("activity: {e} ({ACTIVITY_FIELDS})"),
                    )
                }
            };
            let activity = Activity {
                request,
                actor: caller.clone(),
                at: now,
            };
            return match leadflow_domain::process::activity::record(&self.store, &view, &config.segments, &activity)
                .await
            {
                Ok(Recorded::Kept) => json_response(StatusCode::CREATED, &json!({"recorded": true})),
                Ok(Recorded::Moved(change)) => json_response(
                    StatusCode::OK,
                    &json!({"recorded": true, "lead_id": lead, "from": change.from, "to": change.to, "status": change.to_status}),
                ),
                Ok(Recorded::Stayed(why)) => json_response(
                    StatusCode::CREATED,
                    &json!({"recorded": true, "moved": false, "stage": view.lead.stage, "why": why}),
                ),
                Ok(Recorded::MovedMeanwhile) => json_response(
                    StatusCode::CREATED,
                    &json!({"recorded": true, "moved": false, "why": "the lead changed while this request ran"}),
                ),
                Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()),
            };
        }
        #[derive(serde::Deserialize)]
        struct Reason {
            #[serde(default)]
            reason: String,
        }
        let reason = serde_json::from_slice::<Reason>(body)
            .map(|r| r.reason)
            .unwrap_or_default();
        let mv = match serde_json::from_slice::<Move>(body) {
            Ok(m) => m,
            Err(e) => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    format!("move: {e}"),
                )
            }
        };
        match manual_move(
            &self.store,
            &view,
            &config.segments,
            &mv,
            &reason,
            Actor::User(caller),
            now,
        )
        .await
        {
            Ok(change) => json_response(
                StatusCode::OK,
                &json!({"lead_id": lead, "from": change.from, "to": change.to, "status": change.to_status}),
            ),
            Err(ManualMove::Illegal(e)) => error(StatusCode::CONFLICT, "illegal_move", e.to_string()),
            Err(ManualMove::MovedMeanwhile) => error(
                StatusCode::CONFLICT,
                "moved_meanwhile",
                "the lead changed while this request ran; read it again",
            ),
            Err(ManualMove::Store(e)) => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()),
        }
    }
}

/// Why a manual move was not made.
#[derive(Debug)]
pub enum ManualMove {
    /// The stage machine does not allow it (why).
    Illegal(IllegalMove),
    /// The lead changed while the request ran.
    MovedMeanwhile,
    Store(StoreError),
}

/// A move asked for by a person (`POST /leads/{leadId}/stage` and the lead page's actions):
/// [`apply`] from where the lead is, its segments kept up, counted, and written conditional on
/// the stage read in `view`.
pub async fn manual_move<S: LeadApiStore>(
    store: &S,
    view: &LeadView,
    segments: &[Segment],
    mv: &Move,
    reason: &str,
    by: Actor,
    now: DateTime<Utc>,
) -> Result<StageChange, ManualMove> {
    let change = apply(view.lead.stage, view.lead.status, mv, reason, by, now).map_err(ManualMove::Illegal)?;
    let mut moved = view.lead.clone();
    (moved.stage, moved.status) = (change.to, change.to_status);
    let upkeep = view.upkeep(
        segments,
        &moved,
        view.owner.as_deref(),
        &view.marks,
        &view.segments,
        now,
    );
    let tally = leadflow_domain::report::Tally::new(now, leadflow_domain::report::Dims::of(&view.lead))
        .moves(std::slice::from_ref(&change), view.stage_since);
    match store.move_lead(view.lead.lead_id, &change, &upkeep, &tally).await {
        Ok(true) => Ok(change),
        Ok(false) => Err(ManualMove::MovedMeanwhile),
        Err(e) => Err(ManualMove::Store(e)),
    }
}

impl<S, M, O, Q, D, C> Process<S, M, O, Q, D, C>
where
    S: ProcessStore + LeadApiStore + RoutineStore + leadflow_domain::process::lead_page::LeadPageStore,
    M: Mailer,
    O: Outbox,
    Q: InteractionQueue,
    D: ProcessConfigSource,
    C: ScoringConfigSource,
{
    /// The Lambda handler: a schedule's event, or the lead API's HTTP request.
    pub async fn handle(&self, event: Value) -> Result<Value, ProcessError> {
        if event.get("requestContext").is_some() && event.get("routeKey").is_some() {
            let req = lambda_http::request::from_str(&event.to_string()).map_err(ProcessError::NotHttp)?;
            let response = if page::is_page(req.uri().path()) {
                self.page(req).await
            } else {
                self.http(req).await
            };
            return serde_json::to_value(to_gateway(response)).map_err(ProcessError::Response);
        }
        if let Some(which) = event.get("routine") {
            let report = self.routine(which.as_str().unwrap_or("daily")).await?;
            Record::new("process")
                .count("RoutineListed", report.listed)
                .count("RoutineNewMembers", report.new_members)
                .count("RoutineUnfollowed", report.unfollowed)
                .count("RoutineEmails", report.emails)
                .emit();
            return serde_json::to_value(report).map_err(ProcessError::Response);
        }
        let report = self.run().await?;
        Record::new("process")
            .count("LeadsProcessed", report.leads)
            .count("StageMoves", report.moves)
            .count("EmailsSent", report.emails)
            .count("HandOffs", report.handoffs)
            .count("SlaReminders", report.reminders)
            .count("SlaEscalations", report.escalations)
            .count("LeadsHeld", report.held)
            .count("LeadsFailed", report.failed)
            .count("RunsOutOfTime", usize::from(report.out_of_time))
            .count("RunsThrottled", usize::from(report.throttled))
            .emit();
        // Emails due but not sent, one record per reason (dimension Reason).
        for (why, n) in &report.skipped {
            Record::new("process")
                .by("Reason", why.clone())
                .count("EmailsSkipped", *n)
                .emit();
        }
        serde_json::to_value(report).map_err(ProcessError::Response)
    }

    /// The weekly HOT-lead routine's morning run (`{"routine": "daily"}`, weekdays 09:00 JST), or
    /// one of its steps on demand (`{"routine": "snapshot"}`).
    pub async fn routine(&self, which: &str) -> Result<RoutineReport, ProcessError> {
        let now = (self.clock)();
        let Some(routine) = self.config.routine().await? else {
            tracing::info!("no routine configured (config/routine.json); nothing to do");
            return Ok(RoutineReport::default());
        };
        let (nurture, routing) = self.documents().await?;
        routine.check(Some(&routing)).map_err(ProcessError::BadConfiguration)?;
        let steps = routine
            .steps_named(which, now)
            .map_err(ProcessError::BadConfiguration)?;
        let run = RoutineRun {
            routine: &routine,
            steps,
            routing: &routing,
            nurture: &nurture,
            now,
        };
        let report = leadflow_domain::process::routine::run(&self.store, &self.mailer, &run).await?;
        tracing::info!(
            steps = ?report.steps,
            listed = report.listed,
            new_members = report.new_members,
            unfollowed = report.unfollowed,
            emails = report.emails,
            "routine run done"
        );
        Ok(report)
    }
}
