//! The default lead business process (SPEC.md, Process stages) as a state machine. Every
//! move, automatic or by hand, goes through [`apply`], and every move is recorded.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::records::{LeadStatus, Stage};

/// Who moved a lead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum Actor {
    /// The scheduled process function.
    System,
    /// A person (from the IAM-authorised API: the caller's identity).
    User(String),
}

/// What is asked of a lead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "move", content = "stage")]
pub enum Move {
    /// First scored: Inquiry → Automated marketing qualification.
    Scored,
    /// Marked telemarketing-ready: → Telemarketing acceptance.
    TelemarketingReady,
    /// The operator accepted: Telemarketing acceptance → Telemarketing qualification.
    TelemarketingAccepted,
    /// Sales-ready by score or by hand: → Sales acceptance (from automated marketing
    /// qualification this skips both telemarketing stages).
    SalesReady,
    /// Accepted by sales and turned into an opportunity.
    Convert,
    Disqualify,
    /// Stale or archived: back to nurture (automated marketing qualification).
    Recycle,
    /// Any stage, by hand.
    SetStage(Stage),
}

/// A recorded move: from, to, when, why, by whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageChange {
    pub from: Stage,
    pub to: Stage,
    pub from_status: LeadStatus,
    pub to_status: LeadStatus,
    pub at: DateTime<Utc>,
    pub reason: String,
    pub by: Actor,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IllegalMove {
    #[error("the lead is {0:?}; a closed lead cannot move (recycle a disqualified lead to reopen it)")]
    Closed(LeadStatus),
    #[error("{mv} is not allowed from stage {from:?}")]
    NotFrom { mv: String, from: Stage },
    #[error("the lead is already in stage {0:?}")]
    AlreadyThere(Stage),
    #[error("a lead converts only from sales acceptance (it is in {0:?})")]
    ConvertTooEarly(Stage),
}

fn status_of(stage: Stage) -> LeadStatus {
    match stage {
        Stage::SalesAcceptance => LeadStatus::Qualified,
        _ => LeadStatus::Open,
    }
}

/// The stage and status a move leads to, or why it may not happen.
pub fn next(stage: Stage, status: LeadStatus, mv: &Move) -> Result<(Stage, LeadStatus), IllegalMove> {
    use Stage::*;
    let closed = matches!(status, LeadStatus::Converted | LeadStatus::Disqualified);
    if closed && !(status == LeadStatus::Disqualified && *mv == Move::Recycle) {
        return Err(IllegalMove::Closed(status));
    }
    let not_from = || IllegalMove::NotFrom {
        mv: format!("{mv:?}"),
        from: stage,
    };
    let to = match mv {
        Move::Scored => match stage {
            Inquiry => AutomatedMarketingQualification,
            _ => return Err(not_from()),
        },
        Move::TelemarketingReady => match stage {
            Inquiry | AutomatedMarketingQualification => TelemarketingAcceptance,
            _ => return Err(not_from()),
        },
        Move::TelemarketingAccepted => match stage {
            TelemarketingAcceptance => TelemarketingQualification,
            _ => return Err(not_from()),
        },
        Move::SalesReady => match stage {
            Inquiry | AutomatedMarketingQualification | TelemarketingAcceptance | TelemarketingQualification => {
                SalesAcceptance
            }
            SalesAcceptance => return Err(IllegalMove::AlreadyThere(stage)),
        },
        Move::Convert => match stage {
            SalesAcceptance => return Ok((SalesAcceptance, LeadStatus::Converted)),
            other => return Err(IllegalMove::ConvertTooEarly(other)),
        },
        Move::Disqualify => return Ok((stage, LeadStatus::Disqualified)),
        Move::Recycle => match (stage, status) {
            (Inquiry, LeadStatus::Open) => return Err(not_from()),
            _ => AutomatedMarketingQualification,
        },
        Move::SetStage(target) if *target == stage => return Err(IllegalMove::AlreadyThere(stage)),
        Move::SetStage(target) => *target,
    };
    Ok((to, status_of(to)))
}

/// Applies a move and returns the record of it.
pub fn apply(
    stage: Stage,
    status: LeadStatus,
    mv: &Move,
    reason: &str,
    by: Actor,
    at: DateTime<Utc>,
) -> Result<StageChange, IllegalMove> {
    let (to, to_status) = next(stage, status, mv)?;
    Ok(StageChange {
        from: stage,
        to,
        from_status: status,
        to_status,
        at,
        reason: reason.to_owned(),
        by,
    })
}

/// SPEC's mapping of seed 001's lifecycle onto the stages, shown alongside.
pub fn lifecycle(stage: Stage, status: LeadStatus) -> &'static str {
    match (stage, status) {
        (_, LeadStatus::Converted) => "opportunity",
        (_, LeadStatus::Disqualified) => "disqualified",
        (Stage::Inquiry, _) => "subscriber",
        (Stage::AutomatedMarketingQualification, _) => "lead (nurture)",
        (Stage::TelemarketingAcceptance | Stage::TelemarketingQualification, _) => "MQL",
        (Stage::SalesAcceptance, _) => "SQL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LeadStatus::*;
    use Stage::*;

    const STAGES: [Stage; 5] = [
        Inquiry,
        AutomatedMarketingQualification,
        TelemarketingAcceptance,
        TelemarketingQualification,
        SalesAcceptance,
    ];

    #[test]
    fn the_happy_paths() {
        assert_eq!(
            next(Inquiry, Open, &Move::Scored),
            Ok((AutomatedMarketingQualification, Open))
        );
        assert_eq!(
            next(AutomatedMarketingQualification, Open, &Move::TelemarketingReady),
            Ok((TelemarketingAcceptance, Open))
        );
        assert_eq!(
            next(TelemarketingAcceptance, Open, &Move::TelemarketingAccepted),
            Ok((TelemarketingQualification, Open))
        );
        assert_eq!(
            next(TelemarketingQualification, Open, &Move::SalesReady),
            Ok((SalesAcceptance, Qualified))
        );
        assert_eq!(
            next(SalesAcceptance, Qualified, &Move::Convert),
            Ok((SalesAcceptance, Converted))
        );
    }

    #[test]
    fn sales_ready_leads_skip_the_telemarketing_stages() {
        assert_eq!(
            next(AutomatedMarketingQualification, Open, &Move::SalesReady),
            Ok((SalesAcceptance, Qualified))
        );
        assert_eq!(next(Inquiry, Open, &Move::SalesReady), Ok((SalesAcceptance, Qualified)));
    }

    #[test]
    fn every_edge_of_every_move_from_every_open_stage() {
        // (move, the stages it is allowed from)
        let allowed: [(Move, &[Stage]); 6] = [
            (Move::Scored, &[Inquiry]),
            (Move::TelemarketingReady, &[Inquiry, AutomatedMarketingQualification]),
            (Move::TelemarketingAccepted, &[TelemarketingAcceptance]),
            (
                Move::SalesReady,
                &[
                    Inquiry,
                    AutomatedMarketingQualification,
                    TelemarketingAcceptance,
                    TelemarketingQualification,
                ],
            ),
            (Move::Convert, &[SalesAcceptance]),
            (
                Move::Recycle,
                &[
                    AutomatedMarketingQualification,
                    TelemarketingAcceptance,
                    TelemarketingQualification,
                    SalesAcceptance,
                ],
            ),
        ];
        for (mv, from) in allowed {
            for stage in STAGES {
                let status = status_of(stage);
                assert_eq!(
                    next(stage, status, &mv).is_ok(),
                    from.contains(&stage),
                    "{mv:?} from {stage:?}"
                );
            }
        }
        for stage in STAGES {
            assert_eq!(
                next(stage, status_of(stage), &Move::Disqualify),
                Ok((stage, Disqualified))
            );
            for target in STAGES {
                let r = next(stage, status_of(stage), &Move::SetStage(target));
                if target == stage {
                    assert_eq!(r, Err(IllegalMove::AlreadyThere(stage)));
                } else {
                    assert_eq!(r, Ok((target, status_of(target))), "by hand {stage:?} → {target:?}");
                }
            }
        }
    }

    #[test]
    fn closed_leads_stay_closed_except_recycling_a_disqualified_one() {
        for mv in [
            Move::Scored,
            Move::SalesReady,
            Move::Convert,
            Move::Disqualify,
            Move::Recycle,
            Move::SetStage(Inquiry),
        ] {
            assert_eq!(
                next(SalesAcceptance, Converted, &mv),
                Err(IllegalMove::Closed(Converted)),
                "{mv:?}"
            );
        }
        assert_eq!(
            next(TelemarketingAcceptance, Disqualified, &Move::Recycle),
            Ok((AutomatedMarketingQualification, Open))
        );
        assert_eq!(
            next(TelemarketingAcceptance, Disqualified, &Move::SalesReady),
            Err(IllegalMove::Closed(Disqualified))
        );
        assert_eq!(
            next(Inquiry, Open, &Move::Convert),
            Err(IllegalMove::ConvertTooEarly(Inquiry))
        );
        let msg = next(Inquiry, Open, &Move::Convert).unwrap_err().to_string();
        assert!(msg.contains("converts only from sales acceptance"), "{msg}");
    }

    #[test]
    fn moves_are_recorded() {
        let at = Utc::now();
        let c = apply(Inquiry, Open, &Move::Scored, "first scored", Actor::System, at).unwrap();
        assert_eq!(
            (c.from, c.to, c.at, c.by.clone()),
            (Inquiry, AutomatedMarketingQualification, at, Actor::System)
        );
        assert_eq!(lifecycle(c.to, c.to_status), "lead (nurture)");
        let json = serde_json::to_value(Actor::User("arn:aws:iam::1:user/ops".into())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "user", "id": "arn:aws:iam::1:user/ops"})
        );
    }
}
