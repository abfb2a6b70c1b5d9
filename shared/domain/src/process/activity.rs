//! Sales activities (SPEC.md, Activity; seed 002): what a salesperson did with a lead, and the
//! stage move its result asks for.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::stage::Move;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityType {
    Email,
    Phone,
    Visit,
    WebMeeting,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityResult {
    /// Continue following up.
    #[default]
    Continue,
    Opportunity,
    Archive,
}

/// Where the lead a salesperson worked came from (seed 002's sources); Japanese and the
/// seed's English names are accepted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivitySource {
    #[serde(alias = "ホワイトペーパー")]
    Whitepaper,
    #[serde(alias = "document request", alias = "資料請求")]
    DocumentRequest,
    #[serde(alias = "セミナー")]
    Seminar,
    #[serde(alias = "HOT lead list", alias = "HOTリードリスト")]
    HotLeadList,
    #[serde(alias = "dig-up list", alias = "掘り起こしリスト")]
    DigUpList,
}

/// What an activity's fields take, for the error that refuses one.
pub const ACTIVITY_FIELDS: &str =
    "type: email, phone, visit or web_meeting; result: continue, opportunity or archive; \
     source: whitepaper, document_request, seminar, hot_lead_list or dig_up_list; list: the list it was worked from";

/// An activity as the lead API receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityRequest {
    #[serde(rename = "type")]
    pub kind: ActivityType,
    #[serde(default)]
    pub result: ActivityResult,
    #[serde(default)]
    pub content: Option<String>,
    /// Where the lead came from (whitepaper, document request, seminar, HOT lead list, dig-up list).
    #[serde(default)]
    pub source: Option<ActivitySource>,
    #[serde(default)]
    pub notes: Option<String>,
    /// With result `archive`: recycle to nurture instead of disqualifying.
    #[serde(default)]
    pub recycle: bool,
    #[serde(default)]
    pub reason: Option<String>,
    /// The static list the lead was worked from (a HOT list snapshot): `archive` takes it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<crate::lists::ListName>,
}

/// Where a lead whose activity ended in `opportunity` is listed for sales.
pub const OPPORTUNITY_LIST: &str = "opportunity";

impl Activity {
    /// The list this activity takes the lead off, and the list it puts it on.
    pub fn list_changes(&self) -> (Option<&crate::lists::ListName>, Option<crate::lists::ListName>) {
        match self.request.result {
            ActivityResult::Archive => (self.request.list.as_ref(), None),
            ActivityResult::Opportunity => (None, crate::lists::ListName::parse(OPPORTUNITY_LIST).ok()),
            ActivityResult::Continue => (None, None),
        }
    }
}

/// An activity as recorded: the request, who did it and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    #[serde(flatten)]
    pub request: ActivityRequest,
    pub actor: String,
    pub at: DateTime<Utc>,
}

impl Activity {
    /// The stage move the result asks for, if any.
    pub fn stage_move(&self) -> Option<Move> {
        match self.request.result {
            ActivityResult::Continue => None,
            ActivityResult::Opportunity => Some(Move::Convert),
            ActivityResult::Archive if self.request.recycle => Some(Move::Recycle),
            ActivityResult::Archive => Some(Move::Disqualify),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity(body: &str) -> Result<Activity, serde_json::Error> {
        Ok(Activity {
            request: serde_json::from_str(body)?,
            actor: "arn:aws:iam::1:user/sales".into(),
            at: Utc::now(),
        })
    }

    #[test]
    fn results_map_to_moves() {
        assert_eq!(activity(r#"{"type":"phone"}"#).unwrap().stage_move(), None);
        assert_eq!(
            activity(r#"{"type":"visit","result":"opportunity"}"#)
                .unwrap()
                .stage_move(),
            Some(Move::Convert)
        );
        assert_eq!(
            activity(r#"{"type":"email","result":"archive"}"#).unwrap().stage_move(),
            Some(Move::Disqualify)
        );
        assert_eq!(
            activity(r#"{"type":"web_meeting","result":"archive","recycle":true}"#)
                .unwrap()
                .stage_move(),
            Some(Move::Recycle)
        );
    }

    #[test]
    fn unknown_types_and_fields_are_refused() {
        assert!(activity(r#"{"type":"fax"}"#).is_err());
        assert!(activity(r#"{"type":"phone","result":"won"}"#).is_err());
        assert!(activity(r#"{"type":"phone","actor":"someone-else"}"#).is_err());
    }
}

/// What recording an activity did.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// Kept; no stage move asked for.
    Kept,
    /// Kept, and the lead moved as its result asks.
    Moved(super::stage::StageChange),
    /// Kept; the move its result asks for is not allowed from where the lead is (why), so the
    /// lead stays. Never an error: what sales did is a fact.
    Stayed(String),
    /// Kept; the lead changed while the request ran, so the move was not made.
    MovedMeanwhile,
}

/// Records an activity on a lead (the lead API and the ops tool): kept with its list changes
/// in one write, then the stage move its result asks for when the stage machine allows it.
pub async fn record<S: super::ports::LeadApiStore>(
    store: &S,
    view: &super::plan::LeadView,
    segments: &[crate::segment::Segment],
    activity: &Activity,
) -> Result<Recorded, crate::ports::StoreError> {
    let lead = view.lead.lead_id;
    let marks = crate::segment::with_mark(&view.marks, activity);
    let owner = view.owner.as_deref();
    let upkeep = view.upkeep(segments, &view.lead, owner, &marks, &view.segments, activity.at);
    store
        .record_activity(lead, view.lead.contact_id, activity, &marks, &upkeep)
        .await?;
    let Some(m) = activity.stage_move() else {
        return Ok(Recorded::Kept);
    };
    let reason = activity.request.reason.clone().unwrap_or_default();
    let change = match super::stage::apply(
        view.lead.stage,
        view.lead.status,
        &m,
        &reason,
        super::stage::Actor::User(activity.actor.clone()),
        activity.at,
    ) {
        Ok(c) => c,
        Err(e) => return Ok(Recorded::Stayed(e.to_string())),
    };
    let mut moved = view.lead.clone();
    (moved.stage, moved.status) = (change.to, change.to_status);
    let upkeep = view.upkeep(segments, &moved, owner, &marks, &upkeep.members, activity.at);
    let tally = crate::report::Tally::new(change.at, crate::report::Dims::of(&view.lead))
        .moves(std::slice::from_ref(&change), view.stage_since);
    Ok(if store.move_lead(lead, &change, &upkeep, &tally).await? {
        Recorded::Moved(change)
    } else {
        Recorded::MovedMeanwhile
    })
}
