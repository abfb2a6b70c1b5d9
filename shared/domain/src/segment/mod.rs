//! Segments (seed 002): numbered blocks of conditions combined by an expression such as
//! `1 AND 2 AND NOT 3`, over who a lead is, where it stands, what it did (interactions by kind
//! within a window) and what sales did (activities). Pure: a segment is evaluated, and
//! explained condition by condition, from the facts of one lead.

mod expr;
pub mod history;
pub mod membership;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use expr::Expr;
pub use history::InteractionDays;
pub use membership::{
    newest_marks, upkeep, with_mark, ActivityMark, MembershipChange, Memberships, SegmentMember, Upkeep, MAX_MARKS,
};

use crate::records::{Contact, Lead};
use crate::scoring::lead::LeadScoring;

/// A segment as configured (`config/segments/<id>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentDef {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Numbered blocks, as seed 002 writes them ("1", "2", "3").
    pub blocks: BTreeMap<String, Block>,
    /// How the blocks combine: block numbers with AND, OR, NOT and parentheses.
    pub expression: String,
}

/// Conditions that all hold (`all`, the default) or of which one holds (`any`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Block {
    #[serde(default, rename = "match")]
    pub matching: Matching,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Matching {
    #[default]
    All,
    Any,
}

/// What a condition looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// A contact field (email, company, industry, …) or, failing that, a lead's custom field.
    Field,
    Stage,
    Status,
    Band,
    Score,
    Grade,
    Owner,
    Campaign,
    Source,
    /// `granted`, `pending` (double opt-in not confirmed), `declined` or `none`.
    Consent,
    Unsubscribed,
    Suppressed,
    /// The lead is in its band's nurture program.
    Nurture,
    /// How many interactions of a kind (`any` for every kind), within a window if given.
    Interactions,
    /// How many sales activities (of a type, with a result), within a window if given.
    Activities,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "equals")]
    Equals,
    #[serde(rename = "not_equals")]
    NotEquals,
    #[serde(rename = "in")]
    In,
    #[serde(rename = "contains")]
    Contains,
    #[serde(rename = "exists")]
    Exists,
    #[serde(rename = "not_exists")]
    NotExists,
    #[serde(rename = "is_true")]
    IsTrue,
    #[serde(rename = "is_false")]
    IsFalse,
    #[serde(rename = ">=")]
    AtLeast,
    #[serde(rename = "<=")]
    AtMost,
    #[serde(rename = ">")]
    Above,
    #[serde(rename = "<")]
    Below,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub on: Subject,
    /// The field (`on: field`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The interaction kind (`on: interactions`: `page_viewed`, `form_submitted`, … or `any`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The activity type and result (`on: activities`), each optional.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub activity_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    pub op: Op,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_days: Option<u32>,
}

/// A segment ready to evaluate: its definition and its parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub def: SegmentDef,
    pub expr: Expr,
}

/// What is wrong with a segment, by place (`blocks.1.conditions[0]`, `expression`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefError {
    pub at: String,
    pub message: String,
}

impl std::fmt::Display for DefError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// The longest window a condition may use: what a lead's interaction history keeps.
pub const MAX_WINDOW_DAYS: u32 = history::KEEP_DAYS;

impl Segment {
    /// Checks a definition: every condition well-formed for its subject, the expression parsed,
    /// every block it names defined and every block used.
    pub fn new(def: SegmentDef) -> Result<Segment, Vec<DefError>> {
        let mut errors = Vec::new();
        let err = |at: String, m: &str| DefError {
            at,
            message: m.to_owned(),
        };
        if def.id.is_empty()
            || !def
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            errors.push(err("id".into(), "letters, digits, '-' and '_' only"));
        }
        if def.blocks.is_empty() {
            errors.push(err("blocks".into(), "at least one block"));
        }
        for (id, block) in &def.blocks {
            if block.conditions.is_empty() {
                errors.push(err(format!("blocks.{id}"), "a block needs at least one condition"));
            }
            for (i, c) in block.conditions.iter().enumerate() {
                if let Err(m) = c.check() {
                    errors.push(err(format!("blocks.{id}.conditions[{i}]"), &m));
                }
            }
        }
        let expr = match Expr::parse(&def.expression) {
            Ok(e) => Some(e),
            Err(m) => {
                errors.push(err("expression".into(), &m));
                None
            }
        };
        if let Some(e) = &expr {
            let used = e.blocks();
            for b in &used {
                if !def.blocks.contains_key(b) {
                    errors.push(err("expression".into(), &format!("block {b} is not defined")));
                }
            }
            for b in def.blocks.keys() {
                if !used.contains(b) {
                    errors.push(err(format!("blocks.{b}"), "not used by the expression"));
                }
            }
        }
        match (expr, errors.is_empty()) {
            (Some(expr), true) => Ok(Segment { def, expr }),
            _ => Err(errors),
        }
    }

    /// Whether the lead is a member.
    pub fn matches(&self, facts: &Facts<'_>) -> bool {
        self.expr.eval(&mut |b| self.block_holds(b, facts))
    }

    fn block_holds(&self, id: &str, facts: &Facts<'_>) -> bool {
        let Some(block) = self.def.blocks.get(id) else {
            return false;
        };
        match block.matching {
            Matching::All => block.conditions.iter().all(|c| c.holds(facts).1),
            Matching::Any => block.conditions.iter().any(|c| c.holds(facts).1),
        }
    }

    /// Why the lead is or is not a member: every block, every condition, the value it saw.
    pub fn explain(&self, facts: &Facts<'_>) -> Explanation {
        let blocks = self
            .def
            .blocks
            .iter()
            .map(|(id, block)| {
                let conditions: Vec<ConditionExplained> = block
                    .conditions
                    .iter()
                    .map(|c| {
                        let (actual, holds) = c.holds(facts);
                        ConditionExplained {
                            condition: c.describe(),
                            actual,
                            holds,
                        }
                    })
                    .collect();
                let holds = match block.matching {
                    Matching::All => conditions.iter().all(|c| c.holds),
                    Matching::Any => conditions.iter().any(|c| c.holds),
                };
                BlockExplained {
                    id: id.clone(),
                    holds,
                    conditions,
                }
            })
            .collect();
        Explanation {
            segment: self.def.id.clone(),
            expression: self.def.expression.clone(),
            member: self.matches(facts),
            blocks,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    pub segment: String,
    pub expression: String,
    pub member: bool,
    pub blocks: Vec<BlockExplained>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockExplained {
    pub id: String,
    pub holds: bool,
    pub conditions: Vec<ConditionExplained>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConditionExplained {
    pub condition: String,
    /// What the lead has (a value, a count, `(none)`).
    pub actual: String,
    pub holds: bool,
}

/// Everything a segment may look at for one lead.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub contact: &'a Contact,
    pub lead: &'a Lead,
    pub scoring: &'a LeadScoring,
    /// The grade of the primary model, if scored.
    pub grade: Option<&'a str>,
    pub owner: Option<&'a str>,
    /// The lead's sales activities (the newest kept on the lead).
    pub activities: &'a [ActivityMark],
    pub now: DateTime<Utc>,
}

/// A value's name as serde writes it (`sales_acceptance`, `web_meeting`, `>=`).
pub fn name_of<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v).map(|v| text(&v)).unwrap_or_default()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Condition {
    fn check(&self) -> Result<(), String> {
        use Op::*;
        use Subject::*;
        let numeric = matches!(self.op, AtLeast | AtMost | Above | Below);
        let needs_value = !matches!(self.op, Exists | NotExists | IsTrue | IsFalse);
        if needs_value && self.value.is_none() {
            return Err(format!("op {:?} needs a value", self.op));
        }
        if self.op == In && !self.value.as_ref().is_some_and(Value::is_array) {
            return Err("op in needs a list of values".into());
        }
        if numeric && !self.value.as_ref().is_some_and(Value::is_number) {
            return Err("a comparison needs a number".into());
        }
        if let Some(d) = self.within_days {
            if !matches!(self.on, Interactions | Activities) {
                return Err("within_days is for interactions and activities".into());
            }
            if d == 0 || d > MAX_WINDOW_DAYS {
                return Err(format!("within_days is 1-{MAX_WINDOW_DAYS}"));
            }
        }
        match self.on {
            Field if self.name.as_deref().is_none_or(str::is_empty) => Err("on: field needs a name".into()),
            Interactions if self.kind.as_deref().is_none_or(str::is_empty) => {
                Err("on: interactions needs a kind (or \"any\")".into())
            }
            Interactions | Activities | Score if !numeric => {
                Err("counts and scores compare with >=, <=, > or <".into())
            }
            Unsubscribed | Suppressed | Nurture if !matches!(self.op, IsTrue | IsFalse) => {
                Err("a flag is is_true or is_false".into())
            }
            Grade | Stage | Status | Band | Owner | Campaign | Source | Consent | Field
                if numeric || matches!(self.op, IsTrue | IsFalse) =>
            {
                Err("a value compares with equals, not_equals, in, contains, exists or not_exists".into())
            }
            _ => Ok(()),
        }
    }

    /// The condition as a person reads it.
    pub fn describe(&self) -> String {
        let subject = match self.on {
            Subject::Field => self.name.clone().unwrap_or_default(),
            Subject::Interactions => {
                let mut s = format!("interactions {}", self.kind.as_deref().unwrap_or("any"));
                if let Some(d) = self.within_days {
                    s.push_str(&format!(" within {d} days"));
                }
                s
            }
            Subject::Activities => {
                let mut s = "activities".to_owned();
                if let Some(t) = &self.activity_type {
                    s.push_str(&format!(" type {t}"));
                }
                if let Some(r) = &self.result {
                    s.push_str(&format!(" result {r}"));
                }
                if let Some(d) = self.within_days {
                    s.push_str(&format!(" within {d} days"));
                }
                s
            }
            other => name_of(&other),
        };
        let op = name_of(&self.op);
        match &self.value {
            Some(v) => format!("{subject} {op} {}", text(v)),
            None => format!("{subject} {op}"),
        }
    }

    /// The value the lead has for this condition, and whether the condition holds.
    pub fn holds(&self, f: &Facts<'_>) -> (String, bool) {
        match self.on {
            Subject::Interactions => {
                let since = self.within_days.map(|d| f.now - Duration::days(i64::from(d)));
                let kind = self.kind.as_deref().unwrap_or("any");
                let n = f.scoring.interactions.count(kind, since);
                (n.to_string(), self.compare_number(n as f64))
            }
            Subject::Activities => {
                let since = self.within_days.map(|d| f.now - Duration::days(i64::from(d)));
                let n = f
                    .activities
                    .iter()
                    .filter(|a| since.is_none_or(|s| a.at >= s) && self.counts(a))
                    .count();
                (n.to_string(), self.compare_number(n as f64))
            }
            Subject::Score => (f.scoring.total.to_string(), self.compare_number(f.scoring.total as f64)),
            Subject::Unsubscribed => self.flag(f.contact.unsubscribed_at.is_some()),
            Subject::Suppressed => self.flag(f.contact.suppressed.is_some()),
            Subject::Nurture => self.flag(f.lead.nurture_enabled),
            _ => {
                let value = self.value_of(f);
                let holds = self.compare_text(value.as_deref());
                (value.unwrap_or_else(|| "(none)".into()), holds)
            }
        }
    }

    fn value_of(&self, f: &Facts<'_>) -> Option<String> {
        match self.on {
            Subject::Field => {
                let name = self.name.as_deref().unwrap_or("");
                if name == "email" {
                    return f.contact.email.as_ref().map(|e| e.as_str().to_owned());
                }
                f.contact
                    .fields
                    .present()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_owned())
                    .or_else(|| f.lead.fields.get(name).cloned())
            }
            Subject::Stage => Some(name_of(&f.lead.stage)),
            Subject::Status => Some(name_of(&f.lead.status)),
            Subject::Band => f.scoring.band.clone(),
            Subject::Grade => f.grade.map(str::to_owned),
            Subject::Owner => f.owner.map(str::to_owned),
            Subject::Campaign => f.lead.campaign.clone(),
            Subject::Source => Some(name_of(&f.lead.source)),
            Subject::Consent => Some(
                match (&f.contact.consent, &f.contact.consent_pending) {
                    (Some(c), _) if c.opt_in => "granted",
                    (_, Some(_)) => "pending",
                    (Some(_), None) => "declined",
                    (None, None) => "none",
                }
                .to_owned(),
            ),
            _ => None,
        }
    }

    fn flag(&self, on: bool) -> (String, bool) {
        (on.to_string(), on == (self.op == Op::IsTrue))
    }

    fn compare_number(&self, n: f64) -> bool {
        let v = self.value.as_ref().and_then(Value::as_f64).unwrap_or(0.0);
        match self.op {
            Op::AtLeast => n >= v,
            Op::AtMost => n <= v,
            Op::Above => n > v,
            Op::Below => n < v,
            _ => false,
        }
    }

    fn compare_text(&self, actual: Option<&str>) -> bool {
        let want = self.value.as_ref().map(text);
        let same = |a: &str, b: &str| a.trim().eq_ignore_ascii_case(b.trim());
        match (self.op, actual) {
            (Op::Exists, a) => a.is_some_and(|a| !a.trim().is_empty()),
            (Op::NotExists, a) => a.is_none_or(|a| a.trim().is_empty()),
            (Op::Equals, Some(a)) => want.is_some_and(|w| same(a, &w)),
            (Op::NotEquals, a) => !(a.is_some_and(|a| want.is_some_and(|w| same(a, &w)))),
            (Op::In, Some(a)) => self
                .value
                .as_ref()
                .and_then(Value::as_array)
                .is_some_and(|vs| vs.iter().any(|v| same(a, &text(v)))),
            (Op::Contains, Some(a)) => want.is_some_and(|w| a.to_lowercase().contains(&w.to_lowercase())),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests;
