//! `segment`: the configured segments, and why a lead is or is not in one.

use chrono::Utc;
use serde_json::{json, Value};

use leadflow_aws::catalog::segments;
use leadflow_aws::keys::{self, Index};
use leadflow_aws::segments::DynamoSegmentMembers;
use leadflow_aws::table::{attr, from_record, str_attr, Query};
use leadflow_domain::records::{Contact, ContactId, Lead, LeadId};
use leadflow_domain::scoring::lead::LeadScoring;
use leadflow_domain::segment::{Facts, Segment};

use crate::{Error, Target};

/// `segment ls`: id, name and expression of every configured segment.
pub async fn segment_ls(t: &Target) -> Result<Vec<Segment>, Error> {
    Ok(segments(&t.config()).await?)
}

/// `segment explain NAME WHO`: for each lead WHO names, every block and condition with the
/// value the lead has at `now`, and whether it is a member.
pub async fn segment_explain(t: &Target, name: &str, who: &str, now: chrono::DateTime<Utc>) -> Result<Value, Error> {
    let all = segments(&t.config()).await?;
    let segment = all
        .iter()
        .find(|s| s.def.id == name)
        .ok_or_else(|| format!("no segment {name} (leadflow config apply adds config/segments/)"))?;
    let contact_id = t
        .contact_of(who)
        .await?
        .ok_or_else(|| format!("no contact or lead matches {who}"))?;
    let only = t.lead_named(who).await?.map(|(l, _)| l);
    let table = t.records();
    let contact: Contact = from_record(
        table
            .get(keys::contact(contact_id))
            .await?
            .ok_or("the contact is gone")?,
    )?;
    let mut out = Vec::new();
    for lead_id in t.leads_of(contact_id).await? {
        if only.is_some_and(|o| o != lead_id) {
            continue;
        }
        let Some(lead_item) = table.get(keys::lead(lead_id)).await? else {
            continue;
        };
        let scoring: LeadScoring = attr(&lead_item, "scoring")?.unwrap_or_default();
        // What the writers count: the marks kept on the lead (the newest activities).
        let (_, activities) = leadflow_aws::segments::lead_segments(&lead_item)?;
        let lead: Lead = from_record(lead_item.clone())?;
        let facts = Facts {
            contact: &contact,
            lead: &lead,
            scoring: &scoring,
            grade: scoring.primary_grade(),
            owner: str_attr(&lead_item, "owner"),
            activities: &activities,
            now,
        };
        out.push(json!({"lead_id": lead_id, "explanation": segment.explain(&facts)}));
    }
    Ok(json!({"segment": segment.def.id, "name": segment.def.name, "leads": out}))
}

/// The explanation as people read it: ✓ or ✗ per block and per condition, with the value seen.
pub fn render_explanation(v: &Value) -> String {
    let mut s = format!(
        "segment {} ({})\n",
        v["segment"].as_str().unwrap_or(""),
        v["name"].as_str().unwrap_or("")
    );
    for l in v["leads"].as_array().into_iter().flatten() {
        let e = &l["explanation"];
        let mark = |b: &Value| if b.as_bool() == Some(true) { "✓" } else { "✗" };
        s.push_str(&format!(
            "lead {}: {} ({})\n",
            l["lead_id"].as_str().unwrap_or(""),
            if e["member"].as_bool() == Some(true) {
                "member"
            } else {
                "not a member"
            },
            e["expression"].as_str().unwrap_or("")
        ));
        for b in e["blocks"].as_array().into_iter().flatten() {
            s.push_str(&format!(
                "  {} block {}\n",
                mark(&b["holds"]),
                b["id"].as_str().unwrap_or("")
            ));
            for c in b["conditions"].as_array().into_iter().flatten() {
                s.push_str(&format!(
                    "      {} {}  (has: {})\n",
                    mark(&c["holds"]),
                    c["condition"].as_str().unwrap_or(""),
                    c["actual"].as_str().unwrap_or("")
                ));
            }
        }
    }
    s
}

/// `segment show NAME`: how many members, and each with who they are and why they are in
/// (the first `limit`, newest first; the count is all of them).
pub async fn segment_show(t: &Target, name: &str, limit: usize) -> Result<Value, Error> {
    let all = segments(&t.config()).await?;
    let segment = all
        .iter()
        .find(|s| s.def.id == name)
        .ok_or_else(|| format!("no segment {name} (leadflow config apply adds config/segments/)"))?;
    let mut members = DynamoSegmentMembers::new(t.records()).all(name).await?;
    members.sort_by_key(|m| std::cmp::Reverse(m.joined_at));
    let count = members.len();
    let mut rows = Vec::new();
    for chunk in members[..count.min(limit)].chunks(50) {
        let pairs: Vec<(LeadId, ContactId)> = chunk.iter().map(|m| (m.lead_id, m.contact_id)).collect();
        for (m, (lead, contact)) in chunk.iter().zip(t.leads_with_contacts(&pairs).await?) {
            let mut row = crate::list::member_row(m.lead_id, &lead, &contact);
            row.insert("joined_at".into(), json!(m.joined_at));
            row.insert("why".into(), json!(m.why));
            rows.push(Value::Object(row));
        }
    }
    Ok(json!({
        "segment": segment.def.id,
        "name": segment.def.name,
        "expression": segment.def.expression,
        "count": count,
        "members": rows,
    }))
}

/// `segment show` as people read it: times in the configured zone.
pub fn render_segment(v: &Value) -> String {
    let mut s = format!(
        "segment {} ({}): members {}  [{}]\n",
        v["segment"].as_str().unwrap_or(""),
        v["name"].as_str().unwrap_or(""),
        v["count"],
        v["expression"].as_str().unwrap_or("")
    );
    for m in v["members"].as_array().into_iter().flatten() {
        let t = |k: &str| m[k].as_str().unwrap_or("").to_owned();
        let joined = crate::lead::local(&m["joined_at"]);
        s.push_str(&format!(
            "  {}  {} {}  {}  {}  score {}  owner {}  joined {}\n      why: {}\n",
            t("lead_id"),
            t("last_name"),
            t("first_name"),
            t("company"),
            t("job_title"),
            m["score"],
            m["owner"].as_str().unwrap_or("-"),
            joined,
            t("why")
        ));
    }
    s
}

/// `segment marks`: gives every scored lead the activity marks segments count, from its
/// recorded activities (for activities recorded before marks were kept). A walk over every
/// scored lead, 50 a page (one Query of each lead's activities; a write only where the marks
/// differ). Afterwards a stale re-scoring pass settles the memberships.
pub async fn segment_marks(t: &Target) -> Result<(usize, usize), Error> {
    use leadflow_domain::scoring::service::{RescorePass, RescoreSchedule};
    use leadflow_domain::segment::{newest_marks, ActivityMark};
    let table = t.records();
    let schedule = leadflow_aws::scoring::DynamoScoring::new(table.clone());
    let (mut examined, mut written) = (0, 0);
    let mut cursor = None;
    loop {
        let page = schedule.rescore_candidates(RescorePass::Stale(cursor), 50).await?;
        for (lead, _) in &page.leads {
            examined += 1;
            let items = table
                .query(Query::partition(Index::Table, keys::lead_partition(*lead)).begins_with(keys::ACTIVITY_PREFIX))
                .await?;
            let marks = newest_marks(
                items
                    .iter()
                    .filter_map(|i| {
                        attr::<leadflow_domain::process::activity::Activity>(i, "activity")
                            .ok()
                            .flatten()
                    })
                    .map(|a| ActivityMark::from(&a))
                    .collect(),
            );
            let Some(item) = table.get(keys::lead(*lead)).await? else {
                continue;
            };
            let (_, kept) = leadflow_aws::segments::lead_segments(&item)?;
            if kept != marks {
                let update = leadflow_aws::table::Update::new()
                    .set(leadflow_aws::segments::MARKS_ATTR, leadflow_aws::table::to_av(&marks)?)
                    .if_exists();
                table.update(keys::lead(*lead), update).await?;
                written += 1;
            }
        }
        cursor = page.next;
        if cursor.is_none() {
            return Ok((examined, written));
        }
    }
}
