//! `activity add`: a sales activity recorded from the ops tool, as the lead API records it
//! (the same domain function: kept with its list changes, then the move its result asks for).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use leadflow_aws::catalog::DynamoProcessConfig;
use leadflow_aws::process::DynamoProcess;
use leadflow_domain::process::activity::{record, Activity, ActivityRequest, Recorded};
use leadflow_domain::process::ports::{LeadApiStore, ProcessConfigSource};

use crate::{Error, Target};

/// Records `request` on the lead `who` names (a lead id, or the only lead of an email or
/// contact id), done by `actor` — one of the configured owners — at `at`.
pub async fn activity_add(
    t: &Target,
    who: &str,
    request: ActivityRequest,
    actor: &str,
    at: DateTime<Utc>,
) -> Result<Value, Error> {
    let routing = DynamoProcessConfig::new(t.config())
        .routing()
        .await?
        .ok_or("no routing configuration (leadflow config apply)")?;
    if !routing.owners.iter().any(|o| o.id == actor) {
        let ids: Vec<&str> = routing.owners.iter().map(|o| o.id.as_str()).collect();
        return Err(format!("--actor {actor} is not a configured owner ({})", ids.join(", ")).into());
    }
    let lead = match t.lead_named(who).await? {
        Some((lead, _)) => lead,
        None => {
            let contact = t
                .contact_of(who)
                .await?
                .ok_or_else(|| format!("no lead or contact matches {who}"))?;
            match t.leads_of(contact).await?.as_slice() {
                [one] => *one,
                [] => return Err(format!("{who} has no lead").into()),
                many => {
                    let ids: Vec<String> = many.iter().map(ToString::to_string).collect();
                    return Err(format!("{who} has {} leads; name one: {}", many.len(), ids.join(", ")).into());
                }
            }
        }
    };
    let store = DynamoProcess::new(t.records());
    let view = store.view(lead).await?.ok_or_else(|| format!("no lead {lead}"))?;
    let activity = Activity {
        request,
        actor: actor.to_owned(),
        at,
    };
    let segments = leadflow_aws::catalog::segments(&t.config()).await?;
    Ok(match record(&store, &view, &segments, &activity).await? {
        Recorded::Kept => json!({"recorded": true, "lead_id": lead}),
        Recorded::Moved(c) => {
            json!({"recorded": true, "lead_id": lead, "from": c.from, "to": c.to, "status": c.to_status})
        }
        Recorded::Stayed(why) => json!({"recorded": true, "lead_id": lead, "moved": false, "why": why}),
        Recorded::MovedMeanwhile => {
            json!({"recorded": true, "lead_id": lead, "moved": false, "why": "the lead changed meanwhile"})
        }
    })
}
