//! `list`: static lists of leads (`ls`, `add`, `remove`, `show`, `export`). A list keeps its
//! members until they are removed; the same lead twice is one member.

use chrono::Utc;
use serde_json::{json, Value};

use leadflow_aws::keys;
use leadflow_aws::lists::DynamoLists;
use leadflow_domain::lists::{ListMember, ListName};
use leadflow_domain::records::{ContactId, LeadId};

use crate::{Error, Target};

fn lists(t: &Target) -> DynamoLists {
    DynamoLists::new(t.records())
}

pub fn list_name(name: &str) -> Result<ListName, Error> {
    Ok(ListName::parse(name)?)
}

/// The leads each `who` names: a lead id names that lead; a contact id or an email, every lead
/// of the person.
async fn leads_named(t: &Target, who: &[String]) -> Result<Vec<(LeadId, ContactId)>, Error> {
    let mut out = Vec::new();
    for w in who {
        if let Some(pair) = t.lead_named(w).await? {
            out.push(pair);
            continue;
        }
        let contact = t
            .contact_of(w)
            .await?
            .ok_or_else(|| format!("no lead or contact matches {w}"))?;
        out.extend(t.leads_of(contact).await?.into_iter().map(|l| (l, contact)));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Adds members to a list (created if new); returns how many leads.
pub async fn list_add(
    t: &Target,
    name: &ListName,
    leads: &[(LeadId, ContactId)],
    source: &str,
) -> Result<usize, Error> {
    let now = Utc::now();
    let members: Vec<ListMember> = leads
        .iter()
        .map(|(l, c)| ListMember {
            lead_id: *l,
            contact_id: *c,
            added_at: now,
            source: source.to_owned(),
        })
        .collect();
    lists(t).add(name, &members, now).await?;
    Ok(members.len())
}

/// `list add NAME WHO…`.
pub async fn list_add_named(t: &Target, name: &ListName, who: &[String]) -> Result<usize, Error> {
    let leads = leads_named(t, who).await?;
    list_add(t, name, &leads, "manual").await
}

/// `list remove NAME WHO…`.
pub async fn list_remove(t: &Target, name: &ListName, who: &[String]) -> Result<usize, Error> {
    let leads: Vec<LeadId> = leads_named(t, who).await?.into_iter().map(|(l, _)| l).collect();
    lists(t).remove(name, &leads, Utc::now()).await?;
    Ok(leads.len())
}

/// `list ls`: every list with its member count.
pub async fn list_ls(t: &Target) -> Result<Vec<(String, usize)>, Error> {
    let l = lists(t);
    let mut out = Vec::new();
    for info in l.all().await? {
        let name = list_name(&info.name)?;
        let mut n = 0;
        for shard in 0..keys::LIST_SHARDS {
            n += l.members(&name, shard).await?.len();
        }
        out.push((info.name, n));
    }
    Ok(out)
}

/// `list show NAME`: the members with who they are and where they stand.
pub async fn list_show(t: &Target, name: &ListName) -> Result<Value, Error> {
    let l = lists(t);
    if !l.exists(name).await? {
        return Err(format!("no list {name}").into());
    }
    let mut members = Vec::new();
    for shard in 0..keys::LIST_SHARDS {
        let page = l.members(name, shard).await?;
        for chunk in page.chunks(50) {
            let pairs: Vec<(LeadId, ContactId)> = chunk.iter().map(|m| (m.lead_id, m.contact_id)).collect();
            for (m, (lead, contact)) in chunk.iter().zip(t.leads_with_contacts(&pairs).await?) {
                let mut row = member_row(m.lead_id, &lead, &contact);
                row.insert("added_at".into(), json!(m.added_at));
                row.insert("source".into(), json!(m.source));
                members.push(Value::Object(row));
            }
        }
    }
    members.sort_by(|a, b| a["added_at"].as_str().cmp(&b["added_at"].as_str()));
    Ok(json!({"name": name.as_str(), "count": members.len(), "members": members}))
}

/// A list's or a segment's member as `show` prints it: who, where they stand, who owns them.
pub(crate) fn member_row(lead_id: LeadId, lead: &Value, contact: &Value) -> serde_json::Map<String, Value> {
    let mut row = serde_json::Map::new();
    row.insert("lead_id".into(), json!(lead_id));
    for k in ["email", "last_name", "first_name", "company", "job_title"] {
        row.insert(k.into(), contact[k].clone());
    }
    for (k, from) in [
        ("stage", "stage"),
        ("band", "band"),
        ("score", "score_total"),
        ("owner", "owner"),
    ] {
        row.insert(k.into(), lead[from].clone());
    }
    row
}

/// `list create NAME [--from-segment S]`: the list, with the segment's members now.
pub async fn list_create(t: &Target, name: &ListName, from_segment: Option<&str>) -> Result<usize, Error> {
    let Some(segment) = from_segment else {
        lists(t).ensure(name, Utc::now()).await?;
        return Ok(0);
    };
    if !leadflow_aws::catalog::segments(&t.config())
        .await?
        .iter()
        .any(|s| s.def.id == segment)
    {
        return Err(format!("no segment {segment}").into());
    }
    let members = leadflow_aws::segments::DynamoSegmentMembers::new(t.records())
        .all(segment)
        .await?;
    let leads: Vec<(LeadId, ContactId)> = members.iter().map(|m| (m.lead_id, m.contact_id)).collect();
    lists(t).ensure(name, Utc::now()).await?;
    list_add(t, name, &leads, &format!("segment:{segment}")).await
}
