//! Report counters in the records table: `COUNT#<day>#<shard>` / the dims (JSON), numbers added
//! in the transaction of the effect they count. Sixteen shards a day (by lead id) keep one day's
//! busiest counter from being one hot item.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use leadflow_domain::ports::StoreError;
use leadflow_domain::report::{Dims, EmailDims, EmailTally, Tally};

use crate::keys::{self, Index};
use crate::table::{from_record, str_attr, Counter, Item, Query, Table};

pub const COUNT_SHARDS: u32 = 16;

fn partition(day: NaiveDate, shard: u32) -> String {
    format!("COUNT#{day}#{shard}")
}

/// A day's counter of one count (`sk`), in the shard of `shard_by` (the lead's id), with the
/// attributes it keeps.
fn day_counter(
    day: NaiveDate,
    shard_by: &str,
    sk: String,
    adds: &BTreeMap<String, i64>,
    kept: [(&str, &str); 3],
) -> Counter {
    let mut sets = BTreeMap::from([("day".to_owned(), day.to_string())]);
    sets.extend(kept.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    Counter {
        group: format!("COUNT#{day}|{sk}"),
        key: (partition(day, keys::shard_of(shard_by, COUNT_SHARDS)), sk),
        adds: adds.clone(),
        sets,
    }
}

/// The counter a tally adds to (`shard_by`: the lead's id).
pub fn counter(tally: &Tally, shard_by: &str) -> Counter {
    let d = &tally.dims;
    let sk = serde_json::json!([d.form, d.campaign, d.source]).to_string();
    let mut c = day_counter(
        tally.day,
        shard_by,
        sk,
        &tally.counts,
        [("form", &d.form), ("campaign", &d.campaign), ("source", &d.source)],
    );
    c.sets.insert("type".into(), "counter".into());
    c
}

/// Email counters sort apart from the funnel's in a day's partitions.
const EMAIL_PREFIX: &str = "EMAIL";

/// The counter an email tally adds to.
pub fn email_counter(tally: &EmailTally, shard_by: &str) -> Counter {
    let d = &tally.dims;
    let sk = format!("{EMAIL_PREFIX}{}", serde_json::json!([d.program, d.step]));
    day_counter(
        tally.day,
        shard_by,
        sk,
        &tally.counts,
        [("type", "email_counter"), ("program", &d.program), ("step", &d.step)],
    )
}

/// The running totals (leads in each stage, band and status now), per dims, over all days.
fn gauge_partition(shard: u32) -> String {
    format!("GAUGE#{shard}")
}

/// A tally's counters: the day's counts and the running totals; none when it counts nothing.
pub fn counters(tally: &Tally, shard_by: &str) -> Vec<Counter> {
    let mut out = Vec::new();
    if !tally.counts.is_empty() {
        out.push(counter(tally, shard_by));
    }
    if !tally.now.is_empty() {
        let mut c = counter(tally, shard_by);
        c.key.0 = gauge_partition(keys::shard_of(shard_by, COUNT_SHARDS));
        c.group = format!("GAUGE|{}", c.key.1);
        c.adds = tally.now.clone();
        c.sets.remove("day");
        c.sets.insert("type".into(), "gauge".into());
        out.push(c);
    }
    out
}

/// Every running total, per dims (16 Queries).
pub async fn read_gauges(table: &Table) -> Result<Vec<(Dims, BTreeMap<String, i64>)>, StoreError> {
    let mut out = Vec::new();
    for shard in 0..COUNT_SHARDS {
        for item in table
            .query(Query::partition(Index::Table, gauge_partition(shard)))
            .await?
        {
            out.push((dims_of(&item), numbers(&item)?));
        }
    }
    Ok(out)
}

/// Every counter item of the days `from..=to` (16 Queries a day), with its day.
async fn items(table: &Table, from: NaiveDate, to: NaiveDate) -> Result<Vec<(NaiveDate, Item)>, StoreError> {
    let mut out = Vec::new();
    let mut day = from;
    while day <= to {
        for shard in 0..COUNT_SHARDS {
            for item in table
                .query(Query::partition(Index::Table, partition(day, shard)))
                .await?
            {
                out.push((day, item));
            }
        }
        day = day.succ_opt().unwrap_or(to + chrono::Duration::days(1));
    }
    Ok(out)
}

fn is_email(item: &Item) -> bool {
    str_attr(item, keys::SK).is_some_and(|sk| sk.starts_with(EMAIL_PREFIX))
}

/// The funnel counters of the days `from..=to`.
pub async fn read(table: &Table, from: NaiveDate, to: NaiveDate) -> Result<Vec<Tally>, StoreError> {
    items(table, from, to)
        .await?
        .into_iter()
        .filter(|(_, i)| !is_email(i))
        .map(|(day, i)| tally_of(day, &i))
        .collect()
}

/// The email counters of the days `from..=to`.
pub async fn read_email(table: &Table, from: NaiveDate, to: NaiveDate) -> Result<Vec<EmailTally>, StoreError> {
    items(table, from, to)
        .await?
        .into_iter()
        .filter(|(_, i)| is_email(i))
        .map(|(day, i)| {
            Ok(EmailTally {
                day,
                dims: EmailDims {
                    program: str_attr(&i, "program").unwrap_or_default().to_owned(),
                    step: str_attr(&i, "step").unwrap_or_default().to_owned(),
                },
                counts: numbers(&i)?,
            })
        })
        .collect()
}

/// The item's number attributes: the counts.
fn numbers(item: &Item) -> Result<BTreeMap<String, i64>, StoreError> {
    let plain: serde_json::Value = from_record(item.clone())?;
    Ok(plain
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| v.as_i64().map(|n| (k.clone(), n)))
                .collect()
        })
        .unwrap_or_default())
}

/// The form, campaign and source a funnel counter or running total keeps.
fn dims_of(item: &Item) -> Dims {
    let text = |k| str_attr(item, k).unwrap_or_default().to_owned();
    Dims {
        form: text("form"),
        campaign: text("campaign"),
        source: text("source"),
    }
}

fn tally_of(day: NaiveDate, item: &Item) -> Result<Tally, StoreError> {
    Ok(Tally {
        day,
        dims: dims_of(item),
        counts: numbers(item)?,
        now: BTreeMap::new(),
    })
}
