//! `lead show`: a contact with each of its leads and what is kept with them.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use leadflow_aws::keys::{self, Index, SK};
use leadflow_aws::table::{from_record, str_attr, Query};
use leadflow_domain::history::{changes, FieldRecord};

use crate::target::{record_json, Target};
use crate::Error;

/// The `lead show` group of each kind of item in a lead's partition, by sort-key prefix.
const GROUPS: [(&str, &str); 7] = [
    (keys::INTERACTION_PREFIX, "interactions"),
    (keys::SCORE_PREFIX, "score_history"),
    (keys::STAGE_PREFIX, "stage_history"),
    (keys::SEND_PREFIX, "emails"),
    (keys::TASK_PREFIX, "tasks"),
    (keys::ACTIVITY_PREFIX, "activities"),
    (keys::SEGLOG_PREFIX, "segment_history"),
];

/// `lead show`: the contact, each lead with its score and explanation, stage history,
/// interactions, emails sent and tasks.
pub async fn lead_show(t: &Target, who: &str) -> Result<Value, Error> {
    let contact = t
        .contact_of(who)
        .await?
        .ok_or_else(|| format!("no contact or lead matches {who}"))?;
    let table = t.records();
    let contact_item = table.get(keys::contact(contact)).await?.ok_or("the contact is gone")?;
    let only = t.lead_named(who).await?.map(|(l, _)| l);
    let mut leads = Vec::new();
    for lead in t.leads_of(contact).await? {
        if only.is_some_and(|o| o != lead) {
            continue;
        }
        let (partition, lead_sk) = keys::lead(lead);
        let items = table.query(Query::partition(Index::Table, partition)).await?;
        let mut by: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
        let mut record = Value::Null;
        for i in &items {
            let sk = str_attr(i, SK).unwrap_or("");
            if sk == lead_sk {
                record = record_json(i);
                continue;
            }
            if let Some((prefix, group)) = GROUPS.iter().find(|(prefix, _)| sk.starts_with(prefix)) {
                let mut json = record_json(i);
                if *prefix == keys::SEND_PREFIX {
                    // Which email: the ledger's key (program and step, or the opt-in confirmation).
                    json["step"] = Value::String(sk[prefix.len()..].to_owned());
                }
                by.entry(group).or_default().push(json);
            }
        }
        let lists: Vec<Value> = items
            .iter()
            .filter(|i| str_attr(i, SK).is_some_and(|sk| sk.starts_with(keys::LISTED_PREFIX)))
            .filter_map(|i| str_attr(i, "list").map(|l| Value::String(l.to_owned())))
            .collect();
        let mut lead_json = json!({"lead": record, "lists": lists});
        for (k, v) in by {
            lead_json[k] = Value::Array(v);
        }
        leads.push(lead_json);
    }
    // Every value the person gave, and every change, with when and where from.
    let records: Vec<FieldRecord> = table
        .query(Query::partition(Index::Table, keys::contact_partition(contact)).begins_with(keys::FIELDS_PREFIX))
        .await?
        .into_iter()
        .map(from_record)
        .collect::<Result<_, _>>()?;
    Ok(json!({
        "contact": record_json(&contact_item),
        "field_history": changes(&records),
        "leads": leads,
    }))
}

/// A stored time as people here read it: in `LEADFLOW_TIME_ZONE` (default Asia/Tokyo), to the
/// minute; anything that is not a time is shown as it is.
pub(crate) fn local(t: &Value) -> String {
    in_zone(t, "%Y-%m-%d %H:%M %Z", "?")
}

/// A stored time in `zone()`, written with `format`; a string that is not a time as it is,
/// anything else as `missing`.
pub(crate) fn in_zone(t: &Value, format: &str, missing: &str) -> String {
    match t.as_str().map(chrono::DateTime::parse_from_rfc3339) {
        Some(Ok(at)) => at.with_timezone(&zone()).format(format).to_string(),
        Some(Err(_)) => t.as_str().unwrap_or_default().to_owned(),
        None => missing.to_owned(),
    }
}

/// The zone people here read times in: `LEADFLOW_TIME_ZONE` (an IANA name), Asia/Tokyo by default.
pub(crate) fn zone() -> chrono_tz::Tz {
    std::env::var("LEADFLOW_TIME_ZONE")
        .ok()
        .and_then(|z| z.parse().ok())
        .unwrap_or(chrono_tz::Asia::Tokyo)
}

/// The human form of `lead show`.
pub fn render_lead(v: &Value) -> String {
    let c = &v["contact"];
    let mut out = format!(
        "Contact {}  {}{}  {}  {}\n  consent: {}  unsubscribed: {}  suppressed: {}\n",
        c["contact_id"].as_str().unwrap_or("?"),
        c["last_name"].as_str().unwrap_or(""),
        c["first_name"].as_str().unwrap_or(""),
        c["email"].as_str().unwrap_or(""),
        c["company"].as_str().unwrap_or(""),
        match (&c["consent"], &c["consent_pending"]) {
            (Value::Null, Value::Null) => "none".to_owned(),
            (Value::Null, p) => format!(
                "pending confirmation (asked {} on form {})",
                local(&p["consent"]["at"]),
                p["consent"]["source_form"].as_str().unwrap_or("?")
            ),
            (k, _) => format!(
                "{}{}",
                k["opt_in"],
                if k["confirmed"]["at"].is_string() {
                    format!(" (confirmed {})", local(&k["confirmed"]["at"]))
                } else {
                    String::new()
                }
            ),
        },
        c.get("unsubscribed_at").and_then(Value::as_str).unwrap_or("no"),
        c["suppressed"]["reason"].as_str().unwrap_or("no"),
    );
    let history = v["field_history"].as_array().cloned().unwrap_or_default();
    if !history.is_empty() {
        out.push_str("  field history:\n");
    }
    for h in &history {
        let source = match h["source"]["kind"].as_str() {
            Some("form") => format!(
                "form {} receipt {}",
                h["source"]["form_id"].as_str().unwrap_or(""),
                h["source"]["receipt"].as_str().unwrap_or("")
            ),
            _ => format!("by {}", h["source"]["by"].as_str().unwrap_or("?")),
        };
        out.push_str(&format!(
            "    {}  {}: {} → {}  ({source})\n",
            local(&h["at"]),
            h["field"].as_str().unwrap_or(""),
            h["previous"].as_str().unwrap_or("—"),
            h["new"].as_str().unwrap_or(""),
        ));
    }
    for l in v["leads"].as_array().into_iter().flatten() {
        let lead = &l["lead"];
        out.push_str(&format!(
            "\nLead {}  form {}  campaign {}  stage {}  status {}  owner {}\n",
            lead["lead_id"].as_str().unwrap_or("?"),
            lead["form_id"].as_str().unwrap_or(""),
            lead["campaign"].as_str().unwrap_or("-"),
            lead["stage"].as_str().unwrap_or(""),
            lead["status"].as_str().unwrap_or(""),
            lead["owner"].as_str().unwrap_or("-"),
        ));
        let sc = &lead["scoring"];
        for (model, score) in sc["scores"].as_object().into_iter().flatten() {
            out.push_str(&format!(
                "  score ({model} v{}): {} = fit {} + behaviour {}  grade {}  band {}{}\n",
                score["model_version"],
                score["total"],
                score["fit"],
                score["behaviour"],
                score["grade"].as_str().unwrap_or(""),
                score["band"].as_str().unwrap_or(""),
                if score["sales_ready"] == true {
                    "  SALES-READY"
                } else {
                    ""
                }
            ));
            for line in score["explanation"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "    {:>+4}  {}  ({})\n",
                    line["points"].as_i64().unwrap_or(0),
                    line["rule"].as_str().unwrap_or(""),
                    line["detail"].as_str().unwrap_or("")
                ));
            }
        }
        for h in l["stage_history"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  stage {} → {}  {}  ({}) by {}\n",
                h["from"].as_str().unwrap_or(""),
                h["to"].as_str().unwrap_or(""),
                local(&h["at"]),
                h["reason"].as_str().unwrap_or(""),
                h["by"]["id"].as_str().unwrap_or("system")
            ));
        }
        for e in l["emails"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  email {}  {}  {}\n",
                e["step"].as_str().unwrap_or(""),
                e["status"].as_str().unwrap_or(""),
                local(&e["claimed_at"])
            ));
        }
        for t in l["tasks"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  task \"{}\" owner {} due {} {}\n",
                t["subject"].as_str().unwrap_or(""),
                t["owner"].as_str().unwrap_or(""),
                local(&t["due_at"]),
                t["status"].as_str().unwrap_or("")
            ));
        }
        for a in l["activities"].as_array().into_iter().flatten() {
            let a = &a["activity"];
            out.push_str(&format!(
                "  activity {}  {} → {}  by {}{}\n",
                local(&a["at"]),
                a["type"].as_str().unwrap_or("?"),
                a["result"].as_str().unwrap_or("continue"),
                a["actor"].as_str().unwrap_or("?"),
                a["content"].as_str().map(|c| format!(": {c}")).unwrap_or_default()
            ));
        }
        out.push_str(&format!(
            "  interactions: {}\n",
            l["interactions"].as_array().map_or(0, Vec::len)
        ));
        let lists: Vec<&str> = l["lists"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !lists.is_empty() {
            out.push_str(&format!("  lists: {}\n", lists.join(", ")));
        }
        let segments: Vec<&str> = l["lead"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.keys())
            .filter_map(|k| k.strip_prefix(leadflow_aws::segments::SEGMENT_ATTR_PREFIX))
            .collect();
        out.push_str(&format!(
            "  segments: {}\n",
            if segments.is_empty() {
                "none".to_owned()
            } else {
                segments.join(", ")
            }
        ));
        for c in l["segment_history"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  {} {} {}: {}\n",
                local(&c["at"]),
                if c["joined"].as_bool() == Some(true) {
                    "joined"
                } else {
                    "left"
                },
                c["segment"].as_str().unwrap_or("?"),
                c["why"].as_str().unwrap_or("")
            ));
        }
    }
    out
}
