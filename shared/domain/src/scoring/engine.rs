//! The scoring engine: pure functions from a contact, a behaviour ledger and interactions to
//! a score whose explanation adds up to its total.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::attributes::{parse_employees, AttributeMaps};
use super::model::{Ageing, Attribute, BehaviourRule, FitCondition, ScoringModel};
use crate::records::Contact;

/// Behaviour points of one rule on one day: what the ledger keeps per lead and model. Kept per
/// day, not per interaction, so a lead's ledger stays small however many page views it has;
/// "scored once" is guaranteed by the store, per interaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub rule: String,
    pub day: NaiveDate,
    pub count: u32,
    pub points: i64,
    /// Of `points`, those earned by public submissions from an address nobody has confirmed:
    /// they count in the score but are no evidence for sales-ready until the address's owner
    /// confirms (then they are cleared here and count like the rest).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unconfirmed: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub buckets: Vec<Bucket>,
}

/// An interaction as scoring sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    pub kind: &'a str,
    pub occurred_at: DateTime<Utc>,
    pub properties: &'a serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    Fit,
    FitCap,
    Behaviour,
}

/// One line of an explanation: a rule that fired and what it gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub rule: String,
    pub kind: LineKind,
    pub detail: String,
    pub points: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Score {
    pub model_id: String,
    pub model_version: u32,
    pub total: i64,
    pub fit: i64,
    pub behaviour: i64,
    pub grade: String,
    pub band: String,
    pub sales_ready: bool,
    /// Adds up to `total`, always.
    pub explanation: Vec<Line>,
    pub scored_at: DateTime<Utc>,
}

fn filter_matches(rule: &BehaviourRule, props: &serde_json::Map<String, serde_json::Value>) -> bool {
    rule.filter.iter().all(|(k, want)| {
        let got = match props.get(k) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None => return false,
            Some(other) => other.to_string(),
        };
        match want.strip_suffix('*') {
            Some(prefix) => got.starts_with(prefix),
            None => got == *want,
        }
    })
}

/// How many days of buckets a model needs: its window, and the longest cap period.
fn retention_days(model: &ScoringModel) -> Option<i64> {
    let cap = model
        .behaviour_rules
        .iter()
        .filter_map(|r| r.cap.map(|c| i64::from(c.period_days)))
        .max()
        .unwrap_or(0);
    match model.ageing {
        Ageing::Never => None,
        Ageing::Window { days } => Some(i64::from(days).max(cap)),
        // After 16 half-lives a point is worth less than 1/65536: nothing a score shows.
        Ageing::HalfLife { days } => Some((i64::from(days) * 16).max(cap)),
    }
}

/// Applies one interaction to a ledger; returns the lines it fired (points after caps).
pub fn apply(model: &ScoringModel, ledger: &mut Ledger, event: &Event<'_>) -> Vec<Line> {
    let day = event.occurred_at.date_naive();
    let mut fired = Vec::new();
    for rule in model
        .behaviour_rules
        .iter()
        .filter(|r| r.kind == event.kind && filter_matches(r, event.properties))
    {
        let mut points = rule.points;
        if let Some(cap) = rule.cap {
            let from = day - Duration::days(i64::from(cap.period_days) - 1);
            let used: i64 = ledger
                .buckets
                .iter()
                .filter(|b| b.rule == rule.id && b.day >= from && b.day <= day)
                .map(|b| b.points)
                .sum();
            points = points.min((cap.max_points - used).max(0));
        }
        match ledger.buckets.iter_mut().find(|b| b.rule == rule.id && b.day == day) {
            Some(b) => {
                b.count += 1;
                b.points += points;
            }
            None => ledger.buckets.push(Bucket {
                rule: rule.id.clone(),
                day,
                count: 1,
                points,
                unconfirmed: 0,
            }),
        }
        fired.push(Line {
            rule: rule.id.clone(),
            kind: LineKind::Behaviour,
            detail: event.kind.to_owned(),
            points,
        });
    }
    ledger.buckets.sort_by(|a, b| (a.day, &a.rule).cmp(&(b.day, &b.rule)));
    fired
}

/// Marks the points `fired` by an unconfirmed public submission on `day` as no evidence for
/// sales-ready (see [`Bucket::unconfirmed`]).
pub fn mark_unconfirmed(ledger: &mut Ledger, day: NaiveDate, fired: &[Line]) {
    for line in fired {
        if let Some(b) = ledger.buckets.iter_mut().find(|b| b.rule == line.rule && b.day == day) {
            b.unconfirmed += line.points;
        }
    }
}

/// The address's owner confirmed: every point counts as evidence from now on.
pub fn confirm_all(ledger: &mut Ledger) {
    for b in &mut ledger.buckets {
        b.unconfirmed = 0;
    }
}

/// Drops buckets that can no longer count (outside the window and every cap period).
pub fn prune(model: &ScoringModel, ledger: &mut Ledger, now: DateTime<Utc>) {
    if let Some(days) = retention_days(model) {
        let oldest = now.date_naive() - Duration::days(days - 1);
        ledger.buckets.retain(|b| b.day >= oldest);
    }
}

/// When this ledger's score next changes by ageing alone, if ever.
pub fn next_change(model: &ScoringModel, ledger: &Ledger, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let live = ledger.buckets.iter().filter(|b| b.points != 0);
    match model.ageing {
        Ageing::Never => None,
        Ageing::Window { days } => live
            .map(|b| b.day + Duration::days(i64::from(days)))
            .filter(|d| *d > now.date_naive())
            .min()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc()),
        Ageing::HalfLife { .. } => live.clone().next().map(|_| {
            (now.date_naive() + Duration::days(1))
                .and_hms_opt(0, 0, 0)
                .unwrap_or_default()
                .and_utc()
        }),
    }
}

fn fit_value(attr: &Attribute, contact: &Contact, maps: &AttributeMaps) -> Option<(String, Option<u32>)> {
    let f = &contact.fields;
    match attr {
        Attribute::Industry => f
            .industry
            .as_deref()
            .and_then(|v| maps.industry(v))
            .map(|v| (v.to_owned(), None)),
        Attribute::Title => f
            .job_title
            .as_deref()
            .and_then(|v| maps.title_level(v))
            .map(|v| (v.to_owned(), None)),
        Attribute::Employees => {
            let raw = f.employees.as_deref()?;
            let n = parse_employees(raw)?.representative();
            Some((raw.to_owned(), Some(n)))
        }
        Attribute::Country => f.country.clone().map(|v| (v, None)),
        Attribute::Company => f.company.clone().map(|v| (v, None)),
        Attribute::Email => contact.email.as_ref().map(|e| (e.domain().to_owned(), None)),
    }
}

fn fit_lines(model: &ScoringModel, contact: &Contact, maps: &AttributeMaps) -> Vec<Line> {
    let mut lines = Vec::new();
    for rule in &model.fit_rules {
        let Some((value, number)) = fit_value(&rule.attribute, contact, maps) else {
            continue;
        };
        let fires = match &rule.when {
            FitCondition::OneOf(values) => values.iter().any(|v| v.eq_ignore_ascii_case(&value)),
            FitCondition::Between { min, max } => {
                number.is_some_and(|n| min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m))
            }
            FitCondition::DomainIn(domains) => domains.iter().any(|d| d.eq_ignore_ascii_case(&value)),
        };
        if fires {
            let what = match rule.attribute {
                // The mapped level or industry only: the raw title may name a person's role precisely.
                Attribute::Employees => format!("employees {value}"),
                Attribute::Email => "email domain".to_owned(),
                ref a => format!(
                    "{} = {value}",
                    serde_json::to_value(a)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                ),
            };
            lines.push(Line {
                rule: rule.id.clone(),
                kind: LineKind::Fit,
                detail: what,
                points: rule.points,
            });
        }
    }
    lines
}

fn decay_factor(model: &ScoringModel, day: NaiveDate, now: DateTime<Utc>) -> f64 {
    let age = (now.date_naive() - day).num_days().max(0);
    match model.ageing {
        Ageing::Never => 1.0,
        Ageing::Window { days } => {
            if age < i64::from(days) {
                1.0
            } else {
                0.0
            }
        }
        Ageing::HalfLife { days } => 0.5_f64.powf(age as f64 / f64::from(days)),
    }
}

/// The score of a lead now: fit from the contact, behaviour from the ledger, aged.
pub fn evaluate(
    model: &ScoringModel,
    maps: &AttributeMaps,
    contact: &Contact,
    ledger: &Ledger,
    now: DateTime<Utc>,
) -> Score {
    let mut explanation = fit_lines(model, contact, maps);
    let raw_fit: i64 = explanation.iter().map(|l| l.points).sum();
    let fit = raw_fit.min(model.fit_max);
    if raw_fit > fit {
        explanation.push(Line {
            rule: "fit_max".into(),
            kind: LineKind::FitCap,
            detail: format!("fit is capped at {}", model.fit_max),
            points: fit - raw_fit,
        });
    }
    let mut per_rule: BTreeMap<&str, (u32, f64, f64)> = BTreeMap::new();
    for b in &ledger.buckets {
        let factor = decay_factor(model, b.day, now);
        if factor > 0.0 {
            let e = per_rule.entry(b.rule.as_str()).or_default();
            e.0 += b.count;
            e.1 += b.points as f64 * factor;
            e.2 += b.unconfirmed as f64 * factor;
        }
    }
    let mut behaviour = 0;
    let mut unconfirmed_total = 0;
    // Rules in the model's order, so explanations read the same way as the configuration.
    for rule in &model.behaviour_rules {
        let Some((count, points, unconfirmed)) = per_rule.get(rule.id.as_str()) else {
            continue;
        };
        let points = points.round() as i64;
        let unconfirmed = (unconfirmed.round() as i64).min(points);
        if points == 0 && *count == 0 {
            continue;
        }
        let mut detail = format!("{count} × {} ({})", rule.points, rule.kind);
        if let Some(cap) = rule.cap.filter(|_| points < i64::from(*count) * rule.points) {
            detail.push_str(&format!(", at most {} per {} days", cap.max_points, cap.period_days));
        }
        if let Ageing::HalfLife { days } = model.ageing {
            detail.push_str(&format!(", halved every {days} days"));
        }
        if unconfirmed > 0 {
            detail.push_str(&format!(
                ", {unconfirmed} from an unconfirmed address (no evidence for sales-ready)"
            ));
        }
        behaviour += points;
        unconfirmed_total += unconfirmed;
        explanation.push(Line {
            rule: rule.id.clone(),
            kind: LineKind::Behaviour,
            detail,
            points,
        });
    }
    let total = fit + behaviour;
    Score {
        model_id: model.id.clone(),
        model_version: model.version,
        total,
        fit,
        behaviour,
        grade: model.grade_of(fit).to_owned(),
        band: model.band_of(total).to_owned(),
        // Evidence is what the person did, not what anyone said in their name.
        sales_ready: total >= model.sales_ready_threshold
            && behaviour - unconfirmed_total >= model.sales_ready_min_behaviour,
        explanation,
        scored_at: now,
    }
}
