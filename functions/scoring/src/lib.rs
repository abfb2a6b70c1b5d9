//! The scoring function. Triggered by the scoring queue (interactions stored by intake and
//! the events API) and the engagement queue (SES events via EventBridge), with partial batch
//! failures; and by a schedule for the re-scoring pass (`{"rescore": "due"}`), or by hand
//! after a model change (`{"rescore": "stale"}`).

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use leadflow_aws::catalog::{DynamoScoringConfig, CONFIG_CACHE_TTL};
use leadflow_aws::config::{Clients, Env, MissingEnv};
use leadflow_aws::metrics::Record;
use leadflow_aws::scoring::DynamoScoring;
use leadflow_aws::ses_events::parse_ses;
use leadflow_domain::engagement::{SesEngagement, SesEvent};
use leadflow_domain::message::InteractionMessage;
use leadflow_domain::ports::StoreError;
use leadflow_domain::records::{Interaction, Suppression};
use leadflow_domain::scoring::service::{
    rescore_write, score_batch, EmailRef, RescorePass, RescoreSchedule, ScoreCommit, ScoringConfigSource, ScoringStore,
    SentEmails, Work,
};

/// Leads per page of a re-scoring pass.
pub const RESCORE_PAGE: usize = 500;
/// How long one invocation walks a stale pass before it keeps its cursor for the next run
/// (the function's timeout is 30 s).
pub const RESCORE_BUDGET: std::time::Duration = std::time::Duration::from_secs(20);

/// The scoring function over its ports: the records table and the scoring configuration.
pub struct Scoring<S, C> {
    pub store: S,
    pub config: C,
    pub clock: fn() -> DateTime<Utc>,
    /// Leads per page of a re-scoring pass.
    pub rescore_page: usize,
    /// Time one invocation spends on a stale pass before it keeps its cursor.
    pub rescore_budget: std::time::Duration,
}

pub type AwsScoring = Scoring<DynamoScoring, DynamoScoringConfig>;

/// The scoring function's settings, from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub table: String,
    pub config_table: String,
    /// The events bus (`EVENT_BUS_NAME`); unset: no domain events.
    pub event_bus: Option<String>,
}

impl Settings {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, MissingEnv> {
        Ok(Settings {
            table: env.required("TABLE_NAME")?,
            config_table: env.required("CONFIG_TABLE_NAME")?,
            event_bus: env.optional(leadflow_aws::config::EVENT_BUS_ENV),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScoringError {
    #[error("not an SQS event: {0}")]
    NotSqs(serde_json::Error),
    #[error("expected an SQS event or {{\"rescore\": \"due\"|\"stale\"}}")]
    UnknownEvent,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("response: {0}")]
    Response(serde_json::Error),
}

/// What one queue message is.
enum Parsed {
    Interaction(InteractionMessage),
    Ses(SesEvent),
}

fn classify(body: &str) -> Result<Parsed, String> {
    let value: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    if let Some(schema) = value.get("schema").and_then(Value::as_str) {
        let schema = schema.to_owned();
        return serde_json::from_value(value)
            .map(Parsed::Interaction)
            .map_err(|e| format!("schema {schema}: {e}"));
    }
    parse_ses(body).map(Parsed::Ses).map_err(|e| e.to_string())
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct RescoreReport {
    pub examined: usize,
    pub rescored: usize,
    pub skipped: usize,
    /// A stale pass (after a model change) has leads left; the next run carries on.
    pub stale_pending: bool,
}

impl AwsScoring {
    pub fn new(clients: &Clients, settings: &Settings) -> Self {
        Scoring {
            store: DynamoScoring::new(clients.records(&settings.table, settings.event_bus.as_deref())),
            config: DynamoScoringConfig::new(clients.table(&settings.config_table), CONFIG_CACHE_TTL),
            clock: Utc::now,
            rescore_page: RESCORE_PAGE,
            rescore_budget: RESCORE_BUDGET,
        }
    }
}

impl<S: ScoringStore + SentEmails + RescoreSchedule, C: ScoringConfigSource> Scoring<S, C> {
    /// The Lambda handler: an SQS batch or a re-scoring command.
    pub async fn handle(&self, event: Value) -> Result<Value, ScoringError> {
        if event.get("Records").is_some() {
            let batch: SqsEvent = serde_json::from_value(event).map_err(ScoringError::NotSqs)?;
            let response = self.on_batch(batch).await;
            return serde_json::to_value(response).map_err(ScoringError::Response);
        }
        match event.get("rescore").and_then(Value::as_str) {
            Some(mode @ ("due" | "stale")) => {
                let report = self.rescore(mode).await?;
                serde_json::to_value(report).map_err(ScoringError::Response)
            }
            _ => Err(ScoringError::UnknownEvent),
        }
    }

    pub async fn on_batch(&self, batch: SqsEvent) -> SqsBatchResponse {
        let now = (self.clock)();
        let mut failed: Vec<String> = Vec::new();
        let mut work = Vec::new();
        let mut ses: Vec<(String, SesEngagement)> = Vec::new();
        let replays = batch
            .records
            .iter()
            .filter(|r| r.message_attributes.contains_key(leadflow_aws::sqs::REPLAYED_ATTRIBUTE))
            .count();
        for record in batch.records {
            // A message without an id cannot be reported back; there is none in practice.
            let Some(id) = record.message_id.filter(|i| !i.is_empty()) else {
                continue;
            };
            let _span = tracing::info_span!("message", message_id = %id).entered();
            match classify(record.body.as_deref().unwrap_or("")) {
                Ok(Parsed::Interaction(InteractionMessage::V1(r))) => work.push(Work::Stored {
                    message_id: id,
                    lead_id: r.lead_id,
                    contact_id: r.contact_id,
                    interaction_id: r.interaction_id,
                }),
                Ok(Parsed::Ses(SesEvent::Engagement(e))) => ses.push((id, e)),
                Ok(Parsed::Ses(SesEvent::Ignored(why))) => tracing::debug!(message_id = %id, why, "SES event ignored"),
                Err(why) => {
                    // Poison: fails alone, is retried, and ends in the dead-letter queue.
                    tracing::warn!(message_id = %id, why, "unreadable message");
                    failed.push(id);
                }
            }
        }
        let config = match self.config.scoring_config().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "no scoring configuration; the batch goes back to the queue");
                failed.extend(
                    work.iter()
                        .map(|w| w.message_id().to_owned())
                        .chain(ses.into_iter().map(|(id, _)| id)),
                );
                return response(failed);
            }
        };
        if !ses.is_empty() {
            let ids: Vec<String> = ses.iter().map(|(_, e)| e.message_id.clone()).collect();
            match self.store.email_messages(&ids).await {
                Ok(sent) => {
                    for (id, e) in ses {
                        match sent.get(&e.message_id) {
                            Some(email) => work.push(Work::Arriving {
                                message_id: id,
                                email: email.ledger_key.clone().map(|ledger_key| EmailRef {
                                    ses_message_id: e.message_id.clone(),
                                    ledger_key,
                                    opened_before: email.opened,
                                    clicked_before: email.clicked,
                                }),
                                suppress: e.suppress.clone().map(|reason| Suppression {
                                    reason,
                                    at: e.occurred_at,
                                }),
                                interaction: Interaction {
                                    interaction_id: e.interaction_id,
                                    lead_id: email.lead_id,
                                    contact_id: email.contact_id,
                                    kind: e.kind,
                                    occurred_at: e.occurred_at,
                                    properties: e.properties,
                                },
                            }),
                            // Not an email leadflow sent (or its record was erased): retrying cannot help.
                            None => tracing::info!(message_id = %id, "SES event for an unknown email; dropped"),
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not look up SES message ids");
                    failed.extend(ses.into_iter().map(|(id, _)| id));
                }
            }
        }
        let report = score_batch(&self.store, &config, work, now).await;
        tracing::info!(
            scored = report.scored,
            duplicates = report.duplicates,
            dropped = report.dropped,
            conflicts = report.conflicts,
            linked = report.linked,
            failed = report.failed.len() + failed.len(),
            "scoring batch done"
        );
        failed.extend(report.failed);
        Record::new("scoring")
            .count("InteractionsScored", report.scored)
            .count("DuplicateDeliveries", report.duplicates)
            .count("InteractionsDropped", report.dropped)
            .count("WriteConflicts", report.conflicts)
            .count("AnonymousLinked", report.linked)
            .count("BatchItemFailures", failed.len())
            .count("DlqReplays", replays)
            .emit();
        response(failed)
    }

    /// Re-scores leads whose behaviour points aged (`due`), and walks every scored lead after a
    /// model change (`stale`). A stale pass keeps a cursor: `stale` starts it from the first
    /// lead, and every run (the hourly `due` too) carries an unfinished one on until it has
    /// seen every lead, however many.
    pub async fn rescore(&self, mode: &str) -> Result<RescoreReport, StoreError> {
        let started = std::time::Instant::now();
        let now = (self.clock)();
        let config = self.config.scoring_config().await?;
        let mut report = RescoreReport::default();
        let mut cursor = None;
        if mode == "due" {
            let page = self
                .store
                .rescore_candidates(RescorePass::Due(now), self.rescore_page)
                .await?;
            self.rescore_leads(&config, &page.leads, false, now, &mut report)
                .await?;
            cursor = self.store.stale_cursor().await?;
            if cursor.is_none() {
                tracing::info!(
                    mode,
                    examined = report.examined,
                    rescored = report.rescored,
                    "re-scoring pass done"
                );
                rescore_metrics(mode, &report).emit();
                return Ok(report);
            }
        }
        loop {
            let page = self
                .store
                .rescore_candidates(RescorePass::Stale(cursor.take()), self.rescore_page)
                .await?;
            self.rescore_leads(&config, &page.leads, true, now, &mut report).await?;
            cursor = page.next;
            if cursor.is_none() || started.elapsed() >= self.rescore_budget {
                break;
            }
        }
        self.store.save_stale_cursor(cursor.as_deref()).await?;
        report.stale_pending = cursor.is_some();
        rescore_metrics(mode, &report).emit();
        tracing::info!(
            mode,
            examined = report.examined,
            rescored = report.rescored,
            stale_pending = report.stale_pending,
            "re-scoring pass done"
        );
        Ok(report)
    }

    async fn rescore_leads(
        &self,
        config: &leadflow_domain::scoring::ScoringConfig,
        leads: &[(leadflow_domain::records::LeadId, leadflow_domain::records::ContactId)],
        stale: bool,
        now: DateTime<Utc>,
        report: &mut RescoreReport,
    ) -> Result<(), StoreError> {
        let loaded = self.store.load(leads, &[]).await?;
        report.examined += leads.len();
        for (lead_id, _) in leads {
            let Some(snapshot) = loaded.leads.get(lead_id) else {
                report.skipped += 1;
                continue;
            };
            let reason = if stale { "model changed" } else { "behaviour aged" };
            let write = rescore_write(config, snapshot, reason, now);
            // A stale pass also settles segments (a new or changed definition): a lead whose
            // scores, memberships and next window check are all current is left alone.
            let settled =
                !write.upkeep.changed() && write.outcome.scoring.next_rescore_at == snapshot.scoring.next_rescore_at;
            if stale && !snapshot.scoring.stale_for(config) && settled {
                report.skipped += 1;
                continue;
            }
            match self.store.commit(&write).await? {
                ScoreCommit::Committed => report.rescored += 1,
                // Scored by someone else meanwhile: it is fresh, and its entry moved on.
                _ => report.skipped += 1,
            }
        }
        Ok(())
    }
}

fn rescore_metrics(mode: &str, report: &RescoreReport) -> Record {
    Record::new("scoring")
        .by("Pass", mode)
        .count("LeadsExamined", report.examined)
        .count("LeadsRescored", report.rescored)
}

fn response(failed: Vec<String>) -> SqsBatchResponse {
    let mut r = SqsBatchResponse::default();
    r.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            f
        })
        .collect();
    r
}

#[cfg(test)]
mod tests;
