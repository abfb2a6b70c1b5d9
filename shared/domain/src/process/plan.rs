//! What the process does with one lead now: stage moves, hand-off, the next nurture email,
//! and when to look again. Pure: the run executes the plan.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::nurture::{blocked, cap_allows_at, NurtureConfig};
use super::stage::{apply, Actor, Move, StageChange};
use crate::records::{Contact, Lead, LeadStatus, Stage};
use crate::scoring::Line;

/// Where a lead is in its nurture program. Stored on the lead.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NurtureState {
    /// The band whose program the lead follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band: Option<String>,
    #[serde(default)]
    pub next_step: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joined_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sent_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub fired_rules: Vec<String>,
    /// The band seen at the last run, to notice a change ("becomes warm").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_band: Option<String>,
    /// Failed attempts at the current email (an unknown SES error), reset when one goes out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_attempts: u32,
    /// Emails given up on, with why: `<ledger key>: <reason>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Everything the process reads of a lead.
#[derive(Debug, Clone, PartialEq)]
pub struct LeadView {
    pub lead: Lead,
    pub contact: Contact,
    pub band: Option<String>,
    pub sales_ready: bool,
    pub total: i64,
    pub explanation: Vec<Line>,
    pub nurture: NurtureState,
    pub owner: Option<String>,
    pub last_sales_activity_at: Option<DateTime<Utc>>,
    /// When the lead entered its stage (its creation, for a lead never moved).
    pub stage_since: DateTime<Utc>,
    /// The contact's recent nurture sends and their version (the frequency cap's guard).
    pub contact_sends: Vec<DateTime<Utc>>,
    pub contact_send_seq: u64,
    /// The lead's scoring state (interaction counts for segments, grade).
    pub scoring: crate::scoring::lead::LeadScoring,
    /// The segments the lead is in, and its newest sales activities.
    pub segments: crate::segment::Memberships,
    pub marks: Vec<crate::segment::ActivityMark>,
}

impl LeadView {
    /// The lead's segments re-evaluated for its state after a write (`lead`, `owner`,
    /// `marks`), against the memberships it has before that write (`current`).
    pub fn upkeep(
        &self,
        segments: &[crate::segment::Segment],
        lead: &Lead,
        owner: Option<&str>,
        marks: &[crate::segment::ActivityMark],
        current: &crate::segment::Memberships,
        now: DateTime<Utc>,
    ) -> crate::segment::Upkeep {
        let facts = crate::segment::Facts {
            contact: &self.contact,
            lead,
            scoring: &self.scoring,
            grade: self.scoring.primary_grade(),
            owner,
            activities: marks,
            now,
        };
        let mut upkeep = crate::segment::upkeep(segments, &facts, current);
        upkeep.reschedule = upkeep
            .next_check
            .filter(|at| self.scoring.next_rescore_at.is_none_or(|due| at < &due));
        upkeep
    }
}

/// A nurture email to send, under a ledger key that is claimed once per lead, ever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailPlan {
    pub key: String,
    pub template: String,
    pub band: String,
    pub kind: EmailKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailKind {
    Step(usize),
    Rule(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct LeadPlan {
    pub moves: Vec<StageChange>,
    pub stage: Stage,
    pub status: LeadStatus,
    /// In sales acceptance without an owner: route, create the task, tell the owner.
    pub handoff: bool,
    pub email: Option<EmailPlan>,
    /// The nurture state with this run's bookkeeping (the email's effect is added once sent).
    pub nurture: NurtureState,
    pub next_due: Option<DateTime<Utc>>,
    /// Why no email went out when one was due.
    pub held: Option<String>,
}

fn earliest(a: Option<DateTime<Utc>>, b: DateTime<Utc>) -> Option<DateTime<Utc>> {
    Some(a.map_or(b, |a| a.min(b)))
}

pub fn plan(view: &LeadView, cfg: &NurtureConfig, now: DateTime<Utc>) -> LeadPlan {
    let lead = &view.lead;
    let (mut stage, mut status) = (lead.stage, lead.status);
    let mut moves = Vec::new();
    let step = |mv: Move, why: String, stage: &mut Stage, status: &mut LeadStatus, moves: &mut Vec<StageChange>| {
        if let Ok(change) = apply(*stage, *status, &mv, &why, Actor::System, now) {
            *stage = change.to;
            *status = change.to_status;
            moves.push(change);
        }
    };
    let open = matches!(status, LeadStatus::Open | LeadStatus::Qualified);
    if open && stage == Stage::Inquiry && view.band.is_some() {
        step(Move::Scored, "first scored".into(), &mut stage, &mut status, &mut moves);
    }
    let before_sales = matches!(
        stage,
        Stage::Inquiry
            | Stage::AutomatedMarketingQualification
            | Stage::TelemarketingAcceptance
            | Stage::TelemarketingQualification
    );
    if open && before_sales && (view.sales_ready || lead.handoff_requested.is_some()) {
        let why = if view.sales_ready {
            format!("sales-ready: score {}", view.total)
        } else {
            format!("hand-off requested on form {}", lead.form_id)
        };
        step(Move::SalesReady, why, &mut stage, &mut status, &mut moves);
    }
    let recycle_after = Duration::days(i64::from(cfg.recycle_after_days));
    let watched = matches!(
        stage,
        Stage::TelemarketingAcceptance | Stage::TelemarketingQualification | Stage::SalesAcceptance
    );
    let last_touch = lead
        .last_activity_at
        .max(view.last_sales_activity_at.unwrap_or(lead.last_activity_at));
    let mut next_due = None;
    if open && watched && moves.is_empty() {
        if last_touch + recycle_after <= now {
            step(
                Move::Recycle,
                format!("no engagement for {} days", cfg.recycle_after_days),
                &mut stage,
                &mut status,
                &mut moves,
            );
        } else {
            next_due = earliest(next_due, last_touch + recycle_after);
        }
    }
    let handoff = stage == Stage::SalesAcceptance && status == LeadStatus::Qualified && view.owner.is_none();

    let mut nurture = view.nurture.clone();
    let mut email = None;
    let mut held = None;
    if let (LeadStatus::Open, Stage::AutomatedMarketingQualification, Some(band)) =
        (status, stage, view.band.as_deref())
    {
        let band_changed = nurture.seen_band.as_deref() != Some(band);
        let mut candidate = None;
        if band_changed {
            candidate = cfg
                .rules
                .iter()
                .find(|r| {
                    r.when.band_becomes == band
                        && r.when
                            .campaign
                            .as_ref()
                            .is_none_or(|c| lead.campaign.as_ref() == Some(c))
                        && !nurture.fired_rules.contains(&r.id)
                })
                .map(|r| EmailPlan {
                    key: format!("rule:{}", r.id),
                    template: r.template.clone(),
                    band: band.into(),
                    kind: EmailKind::Rule(r.id.clone()),
                });
        }
        if nurture.band.as_deref() != Some(band) {
            nurture = NurtureState {
                band: Some(band.into()),
                next_step: 0,
                joined_at: Some(now),
                ..nurture
            };
        }
        nurture.seen_band = Some(band.into());
        if candidate.is_none() {
            if let Some(s) = cfg.program(band).and_then(|p| p.steps.get(nurture.next_step)) {
                let base = if nurture.next_step == 0 {
                    nurture.joined_at
                } else {
                    nurture.last_sent_at.or(nurture.joined_at)
                };
                let due = base.unwrap_or(now) + Duration::days(i64::from(s.after_days));
                if due <= now {
                    candidate = Some(EmailPlan {
                        key: format!("{band}:{}", s.id),
                        template: s.template.clone(),
                        band: band.into(),
                        kind: EmailKind::Step(nurture.next_step),
                    });
                } else {
                    next_due = earliest(next_due, due);
                }
            }
        }
        if candidate.is_some() && !view.lead.nurture_enabled {
            // Imported without --nurture: in no program until the person asks (a form of theirs).
            held = Some("not in a nurture program (imported)".into());
        } else if let Some(c) = candidate {
            if let Some(why) = blocked(&view.contact) {
                // Consent decides: nothing is sent and nothing is scheduled for this contact.
                held = Some(why.to_owned());
            } else {
                let window = cfg.window.next_open(now);
                // The gap holds per person: the contact's last email from any of their leads.
                let gap = nurture
                    .last_sent_at
                    .into_iter()
                    .chain(view.contact_sends.iter().copied())
                    .max()
                    .map(|t| t + Duration::hours(i64::from(cfg.frequency_cap.min_hours_between)));
                let cap = cap_allows_at(&view.contact_sends, cfg.frequency_cap, now).max(gap.unwrap_or(now));
                if window > now {
                    held = Some("outside the send window".into());
                    next_due = earliest(next_due, window);
                } else if cap > now {
                    held = Some("frequency cap".into());
                    next_due = earliest(next_due, cfg.window.next_open(cap));
                } else {
                    email = Some(c);
                }
            }
        }
    }
    LeadPlan {
        moves,
        stage,
        status,
        handoff,
        email,
        nurture,
        next_due,
        held,
    }
}

/// The nurture state once `email` went out (or was found already sent).
pub fn after_send(mut state: NurtureState, email: &EmailPlan, now: DateTime<Utc>) -> NurtureState {
    match &email.kind {
        EmailKind::Step(i) => {
            state.next_step = i + 1;
            state.last_sent_at = Some(now);
        }
        EmailKind::Rule(id) => {
            if !state.fired_rules.contains(id) {
                state.fired_rules.push(id.clone());
            }
            state.last_sent_at = Some(now);
        }
    }
    state
}
