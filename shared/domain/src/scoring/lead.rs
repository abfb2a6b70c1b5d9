//! A lead's scoring state across every model, and how interactions and time change it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::engine::{apply, confirm_all, evaluate, mark_unconfirmed, next_change, prune, Event, Ledger, Score};
use super::model::ScoringConfig;
use crate::records::{Contact, InteractionId, InteractionKind};

/// Whether an interaction is a public submission: anyone may have sent it.
fn unconfirmed(event: &Event<'_>) -> bool {
    event.properties.get(crate::intake::UNCONFIRMED) == Some(&serde_json::Value::Bool(true))
}

/// Stored on the lead. `version` guards concurrent writers: a write succeeds only against the
/// version it was computed from, so no update is ever lost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LeadScoring {
    pub version: u64,
    #[serde(default)]
    pub ledgers: BTreeMap<String, Ledger>,
    #[serde(default)]
    pub scores: BTreeMap<String, Score>,
    /// The primary model's band, total and sales-ready flag, for the process function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band: Option<String>,
    #[serde(default)]
    pub total: i64,
    #[serde(default)]
    pub sales_ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sales_ready_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band_changed_at: Option<DateTime<Utc>>,
    /// When ageing alone next changes a score; the re-scoring pass picks the lead up then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rescore_at: Option<DateTime<Utc>>,
    /// Interactions by kind and day, for segment windows.
    #[serde(default)]
    pub interactions: crate::segment::InteractionDays,
}

/// A change of a model's score, kept as history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreChange {
    pub model_id: String,
    pub model_version: u32,
    pub from_total: Option<i64>,
    pub to_total: i64,
    pub from_band: Option<String>,
    pub to_band: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

pub struct Input<'a> {
    pub interaction_id: InteractionId,
    pub event: Event<'a>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub scoring: LeadScoring,
    pub changes: Vec<ScoreChange>,
    /// The primary band changed (or was first set).
    pub band_changed: bool,
    /// The lead became sales-ready now.
    pub became_sales_ready: bool,
}

/// Applies interactions (none, for ageing or a model change) and re-evaluates every model.
pub fn rescore(
    config: &ScoringConfig,
    contact: &Contact,
    current: &LeadScoring,
    inputs: &[Input<'_>],
    reason: &str,
    now: DateTime<Utc>,
) -> Outcome {
    let mut next = LeadScoring {
        version: current.version + 1,
        ..current.clone()
    };
    for input in inputs {
        next.interactions.record(input.event.kind, input.event.occurred_at);
    }
    next.interactions.prune(now);
    let mut changes = Vec::new();
    let mut rescore_at: Option<DateTime<Utc>> = None;
    for model in &config.models {
        let ledger = next.ledgers.entry(model.id.clone()).or_default();
        for input in inputs {
            let fired = apply(model, ledger, &input.event);
            if input.event.kind == InteractionKind::AddressConfirmed.name() {
                confirm_all(ledger);
            } else if unconfirmed(&input.event) {
                mark_unconfirmed(ledger, input.event.occurred_at.date_naive(), &fired);
            }
        }
        prune(model, ledger, now);
        let score = evaluate(model, &config.maps, contact, ledger, now);
        if let Some(at) = next_change(model, ledger, now) {
            rescore_at = Some(rescore_at.map_or(at, |r| r.min(at)));
        }
        let before = current.scores.get(&model.id);
        if before.is_none_or(|b| b.total != score.total || b.band != score.band) {
            changes.push(ScoreChange {
                model_id: model.id.clone(),
                model_version: model.version,
                from_total: before.map(|b| b.total),
                to_total: score.total,
                from_band: before.map(|b| b.band.clone()),
                to_band: score.band.clone(),
                reason: reason.to_owned(),
                at: now,
            });
        }
        next.scores.insert(model.id.clone(), score);
    }
    // Models no longer configured leave no stale score behind.
    next.scores.retain(|id, _| config.models.iter().any(|m| &m.id == id));
    next.ledgers.retain(|id, _| config.models.iter().any(|m| &m.id == id));
    next.next_rescore_at = rescore_at;
    let primary = config.primary();
    let (band, total, ready) = next
        .scores
        .get(&primary.id)
        .map(|s| (s.band.clone(), s.total, s.sales_ready))
        .unwrap_or_default();
    let band_changed = current.band.as_deref() != Some(band.as_str());
    if band_changed {
        next.band_changed_at = Some(now);
    }
    let became_sales_ready = ready && !current.sales_ready;
    if became_sales_ready {
        next.sales_ready_at = Some(now);
    }
    next.band = Some(band);
    next.total = total;
    next.sales_ready = ready;
    Outcome {
        scoring: next,
        changes,
        band_changed,
        became_sales_ready,
    }
}

impl LeadScoring {
    /// The primary model's grade (the score whose band and total are the lead's).
    pub fn primary_grade(&self) -> Option<&str> {
        self.scores
            .values()
            .find(|s| Some(&s.band) == self.band.as_ref() && s.total == self.total)
            .map(|s| s.grade.as_str())
    }

    /// Whether any stored score was computed by another version of its model.
    pub fn stale_for(&self, config: &ScoringConfig) -> bool {
        config
            .models
            .iter()
            .any(|m| self.scores.get(&m.id).is_none_or(|s| s.model_version != m.version))
            || self.scores.len() != config.models.len()
    }
}
