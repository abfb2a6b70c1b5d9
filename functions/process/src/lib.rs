//! The process function. On its schedule: the outbox relay, then every lead and task that is
//! due (stage moves, nurture email, hand-off, SLA) within a time budget. Over HTTP (IAM
//! authorised): manual stage moves and sales activities, through the same domain code.

use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use leadflow_aws::config::Clients;
use leadflow_aws::docs::DynamoDocs;
use leadflow_aws::dynamo::DynamoStore;
use leadflow_aws::process::DynamoProcess;
use leadflow_aws::scoring::DynamoScoringConfig;
use leadflow_aws::ses::SesMailer;
use leadflow_aws::sqs::SqsQueue;
use leadflow_domain::outbox;
use leadflow_domain::process::handoff::RoutingConfig;
use leadflow_domain::process::nurture::NurtureConfig;
use leadflow_domain::process::run::{run, RunConfig, RunReport};
use leadflow_domain::process::stage::{apply, Actor, Move};
use leadflow_domain::records::LeadId;
use leadflow_domain::scoring::service::ScoringConfigSource;

/// Leads one run takes at most; the rest wait for the next run.
pub const RUN_LIMIT: usize = 1000;

pub struct Process {
    pub store: DynamoProcess,
    pub records: DynamoStore,
    pub queue: SqsQueue,
    pub mailer: SesMailer,
    pub docs: DynamoDocs,
    pub scoring_config: DynamoScoringConfig,
    pub unsubscribe_secret: Vec<u8>,
    pub public_url: String,
    /// Stop taking new leads after this long (below the Lambda timeout).
    pub budget: Duration,
    pub clock: fn() -> DateTime<Utc>,
}

pub struct ProcessSettings {
    pub table: String,
    pub config_table: String,
    pub scoring_queue_url: String,
    pub sender: String,
    pub configuration_set: Option<String>,
    pub unsubscribe_secret: String,
    pub public_url: String,
    pub budget: Duration,
}

impl ProcessSettings {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let need = |k: &str| {
            get(k)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("environment variable {k} is not set"))
        };
        Ok(ProcessSettings {
            table: need("TABLE_NAME")?,
            config_table: need("CONFIG_TABLE_NAME")?,
            scoring_queue_url: need("SCORING_QUEUE_URL")?,
            sender: need("SENDER_EMAIL")?,
            configuration_set: get("CONFIGURATION_SET").filter(|v| !v.is_empty()),
            unsubscribe_secret: need("UNSUBSCRIBE_SECRET")?,
            public_url: need("PUBLIC_URL")?,
            budget: Duration::from_secs(get("RUN_BUDGET_SECONDS").and_then(|v| v.parse().ok()).unwrap_or(240)),
        })
    }
}

impl Process {
    pub fn new(clients: &Clients, s: &ProcessSettings) -> Self {
        Process {
            store: DynamoProcess::new(clients.dynamodb.clone(), &s.table),
            records: DynamoStore::new(clients.dynamodb.clone(), &s.table),
            queue: SqsQueue::new(clients.sqs.clone(), &s.scoring_queue_url),
            mailer: SesMailer::new(clients.sesv2.clone(), &s.sender, s.configuration_set.clone()),
            docs: DynamoDocs::new(clients.dynamodb.clone(), &s.config_table),
            scoring_config: DynamoScoringConfig::new(clients.dynamodb.clone(), &s.config_table),
            unsubscribe_secret: s.unsubscribe_secret.as_bytes().to_vec(),
            public_url: s.public_url.clone(),
            budget: s.budget,
            clock: Utc::now,
        }
    }

    pub async fn handle(&self, event: Value) -> Result<Value, String> {
        if event.get("requestContext").is_some() && event.get("routeKey").is_some() {
            return Ok(self.http(event).await);
        }
        let report = self.run().await?;
        serde_json::to_value(report).map_err(|e| e.to_string())
    }

    /// One scheduled run.
    pub async fn run(&self) -> Result<RunReport, String> {
        let started = Instant::now();
        let now = (self.clock)();
        let relayed = outbox::relay(&self.records, &self.queue, now, 500)
            .await
            .map_err(|e| e.to_string())?;
        let nurture: NurtureConfig = self
            .docs
            .get("nurture")
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no nurture configuration loaded")?;
        let routing: RoutingConfig = self
            .docs
            .get("routing")
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no routing configuration loaded")?;
        nurture.check().map_err(|e| e.to_string())?;
        routing.check()?;
        let scoring = self.scoring_config.scoring_config().await.map_err(|e| e.to_string())?;
        let run_id = uuid::Uuid::now_v7().to_string();
        let cfg = RunConfig {
            nurture: &nurture,
            routing: &routing,
            maps: &scoring.maps,
            unsubscribe_secret: &self.unsubscribe_secret,
            public_url: &self.public_url,
            run_id: &run_id,
            now,
            deadline: started + self.budget,
            limit: RUN_LIMIT,
        };
        let report = run(&self.store, &self.mailer, &cfg).await.map_err(|e| e.to_string())?;
        tracing::info!(
            relayed = relayed.published,
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

    /// `POST /leads/{leadId}/stage` and `POST /leads/{leadId}/activities` (API Gateway payload 2.0, IAM auth).
    pub async fn http(&self, event: Value) -> Value {
        let (status, body) = self.route(&event).await;
        json!({"statusCode": status, "headers": {"content-type": "application/json"}, "body": body.to_string(), "isBase64Encoded": false})
    }

    async fn route(&self, event: &Value) -> (u16, Value) {
        let err = |status: u16, code: &str, message: String| (status, json!({"error": code, "message": message}));
        let caller = event
            .pointer("/requestContext/authorizer/iam/userArn")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| "unknown-iam-caller".into());
        let path = event.get("rawPath").and_then(Value::as_str).unwrap_or("");
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (lead, action) = match parts.as_slice() {
            ["leads", id, action] => match LeadId::parse(id) {
                Some(l) => (l, *action),
                None => return err(404, "unknown_lead", format!("no lead {id}")),
            },
            _ => return err(404, "not_found", "no such route".into()),
        };
        let raw = event.get("body").and_then(Value::as_str).unwrap_or("");
        let bytes = if event.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
            base64::engine::general_purpose::STANDARD
                .decode(raw)
                .unwrap_or_default()
        } else {
            raw.as_bytes().to_vec()
        };
        let Ok(body) = serde_json::from_slice::<Value>(&bytes) else {
            return err(400, "malformed_body", "the body must be JSON".into());
        };
        let now = (self.clock)();
        let view = match self.store.view(lead).await {
            Ok(Some(v)) => v,
            Ok(None) => return err(404, "unknown_lead", format!("no lead {lead}")),
            Err(e) => return err(503, "unavailable", e.to_string()),
        };
        let reason = body.get("reason").and_then(Value::as_str).unwrap_or("").to_owned();
        let mv = match action {
            "stage" => match serde_json::from_value::<Move>(body.clone()) {
                Ok(m) => m,
                Err(e) => return err(422, "validation_failed", format!("move: {e}")),
            },
            "activities" => {
                let result = body.get("result").and_then(Value::as_str).unwrap_or("continue");
                let kind = body.get("type").and_then(Value::as_str).unwrap_or("");
                if !["email", "phone", "visit", "web_meeting"].contains(&kind)
                    || !["continue", "opportunity", "archive"].contains(&result)
                {
                    return err(
                        422,
                        "validation_failed",
                        "type must be email, phone, visit or web_meeting; result continue, opportunity or archive"
                            .into(),
                    );
                }
                let mut activity = body.clone();
                activity["actor"] = json!(caller);
                if let Err(e) = self.store.record_activity(lead, &activity, now).await {
                    return err(503, "unavailable", e.to_string());
                }
                match result {
                    "opportunity" => Move::Convert,
                    "archive" if body.get("recycle").and_then(Value::as_bool) == Some(true) => Move::Recycle,
                    "archive" => Move::Disqualify,
                    _ => return (201, json!({"recorded": true})),
                }
            }
            _ => return err(404, "not_found", "no such route".into()),
        };
        let change = match apply(
            view.lead.stage,
            view.lead.status,
            &mv,
            &reason,
            Actor::User(caller),
            now,
        ) {
            Ok(c) => c,
            Err(e) => return err(409, "illegal_move", e.to_string()),
        };
        match self.store.move_lead(lead, &change).await {
            Ok(true) => (
                200,
                json!({"lead_id": lead, "from": change.from, "to": change.to, "status": change.to_status}),
            ),
            Ok(false) => err(
                409,
                "moved_meanwhile",
                "the lead changed while this request ran; read it again".into(),
            ),
            Err(e) => err(503, "unavailable", e.to_string()),
        }
    }
}
