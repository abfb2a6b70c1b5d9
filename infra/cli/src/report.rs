//! `report funnel`: the counters of a date range (JST days) added up, by campaign, source or
//! form, with conversion rates. 16 Queries a day, never a Scan.

use chrono::NaiveDate;

use leadflow_aws::counters;
use leadflow_domain::report::{
    days, email_report, funnel, funnel_columns, percent, By, EmailRow, FunnelRow, MEDIANS, RATES,
};

use crate::csv_out::{Cell, Cells, CsvOut};
use crate::{Error, Target};

/// The funnel of the days `from..=to`.
pub async fn report_funnel(
    t: &Target,
    from: NaiveDate,
    to: NaiveDate,
    by: Option<By>,
) -> Result<Vec<FunnelRow>, Error> {
    if to < from {
        return Err(format!("--to {to} is before --from {from}").into());
    }
    if (to - from).num_days() > 366 {
        return Err("a report covers at most 366 days".into());
    }
    let tallies = counters::read(&t.records(), from, to).await?;
    Ok(funnel(&tallies, by))
}

/// The funnel as a table people read.
pub fn render_funnel(rows: &[FunnelRow]) -> String {
    let cols = funnel_columns();
    let mut header = vec!["group".to_owned()];
    header.extend(cols.iter().map(|(h, _)| (*h).to_owned()));
    header.extend(RATES.iter().map(|(h, _)| (*h).to_owned()));
    header.extend(MEDIANS.iter().map(|(h, _)| (*h).to_owned()));
    let mut table = vec![header];
    for r in rows {
        let mut line = vec![r.group.clone()];
        line.extend(
            cols.iter()
                .map(|(_, k)| r.counts.get(k).copied().unwrap_or(0).to_string()),
        );
        line.extend(RATES.iter().map(|(_, k)| percent(r.rates.get(*k).copied().flatten())));
        line.extend(
            MEDIANS
                .iter()
                .map(|(_, k)| days(r.median_days.get(*k).copied().flatten())),
        );
        table.push(line);
    }
    let widths: Vec<usize> = (0..table[0].len())
        .map(|i| table.iter().map(|l| l[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for line in &table {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                let pad = " ".repeat(w - c.chars().count());
                if i == 0 {
                    format!("{c}{pad}")
                } else {
                    format!("{pad}{c}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str("(nothing counted in these days)\n");
    }
    out
}

/// The funnel as CSV (UTF-8 with BOM, for Excel), formula-safe.
/// The funnel as CSV: the group (a campaign, source or form name, from data; `-` without a
/// campaign) is text, neutralised unless [`Cells::Raw`]; counts, rates and medians are numbers.
pub fn funnel_csv(rows: &[FunnelRow], cells: Cells) -> Result<Vec<u8>, Error> {
    let cols = funnel_columns();
    let mut w = CsvOut::new(Vec::new(), cells);
    let mut header = vec!["group".to_owned()];
    header.extend(cols.iter().map(|(h, _)| (*h).to_owned()));
    header.extend(RATES.iter().map(|(_, k)| (*k).to_owned()));
    header.extend(MEDIANS.iter().map(|(_, k)| format!("median_days_{k}")));
    w.texts(&header)?;
    for r in rows {
        let mut line = vec![Cell::text(r.group.as_str())];
        line.extend(
            cols.iter()
                .map(|(_, k)| Cell::number(r.counts.get(k).copied().unwrap_or(0))),
        );
        // Empty when there is nothing to divide by (or nobody took the step).
        let cell = |m: &std::collections::BTreeMap<String, Option<f64>>, k: &str, digits: usize| {
            Cell::decimal(m.get(k).copied().flatten(), digits)
        };
        line.extend(RATES.iter().map(|(_, k)| cell(&r.rates, k, 4)));
        line.extend(MEDIANS.iter().map(|(_, k)| cell(&r.median_days, k, 1)));
        w.row(line)?;
    }
    let mut out = "\u{feff}".as_bytes().to_vec();
    out.extend(w.into_inner()?);
    Ok(out)
}

/// The email report's counts and rates, in order.
const EMAIL_COUNTS: [&str; 7] = [
    leadflow_domain::report::SENT,
    leadflow_domain::report::DELIVERED,
    leadflow_domain::report::OPENED,
    leadflow_domain::report::CLICKED,
    leadflow_domain::report::BOUNCED,
    leadflow_domain::report::COMPLAINED,
    leadflow_domain::report::UNSUBSCRIBED,
];
const EMAIL_RATES: [&str; 6] = ["delivery", "open", "click", "bounce", "complaint", "unsubscribe"];

/// The email report as CSV (UTF-8 with BOM, for Excel), formula-safe: program, step, the
/// counts, the rates.
/// The email report as CSV: program and step are text, neutralised unless [`Cells::Raw`];
/// counts and rates are numbers.
pub fn email_csv(rows: &[EmailRow], cells: Cells) -> Result<Vec<u8>, Error> {
    let mut w = CsvOut::new(Vec::new(), cells);
    let mut header = vec!["program".to_owned(), "step".to_owned()];
    header.extend(EMAIL_COUNTS.iter().map(|k| (*k).to_owned()));
    header.extend(EMAIL_RATES.iter().map(|k| format!("{k}_rate")));
    w.texts(&header)?;
    for r in rows {
        let mut line = vec![Cell::text(r.program.as_str()), Cell::text(r.step.as_str())];
        line.extend(
            EMAIL_COUNTS
                .iter()
                .map(|k| Cell::number(r.counts.get(*k).copied().unwrap_or(0))),
        );
        line.extend(
            EMAIL_RATES
                .iter()
                .map(|k| Cell::decimal(r.rates.get(*k).copied().flatten(), 4)),
        );
        w.row(line)?;
    }
    let mut out = "\u{feff}".as_bytes().to_vec();
    out.extend(w.into_inner()?);
    Ok(out)
}

/// The email report of the days `from..=to`: per program and step, sent, delivered, unique
/// opens and clicks, bounces and complaints, with their rates.
pub async fn report_email(t: &Target, from: NaiveDate, to: NaiveDate) -> Result<Vec<EmailRow>, Error> {
    if to < from {
        return Err(format!("--to {to} is before --from {from}").into());
    }
    if (to - from).num_days() > 366 {
        return Err("a report covers at most 366 days".into());
    }
    Ok(email_report(&counters::read_email(&t.records(), from, to).await?))
}

/// The email report as a table people read.
pub fn render_email(rows: &[EmailRow]) -> String {
    use leadflow_domain::report::{BOUNCED, CLICKED, COMPLAINED, DELIVERED, OPENED, SENT, UNSUBSCRIBED};
    let mut out = format!(
        "{:<12} {:>6} {:>8} {:>10} {:>7} {:>8} {:>9} {:>6} {:>10} {:>7} {:>7} {:>7} {:>7}\n",
        "program:step",
        "sent",
        "delivered",
        "opened",
        "clicked",
        "bounced",
        "complaint",
        "unsub",
        "delivery",
        "open",
        "click",
        "bounce",
        "unsub"
    );
    for r in rows {
        let c = |k: &str| r.counts.get(k).copied().unwrap_or(0);
        let p = |k: &str| percent(r.rates.get(k).copied().flatten());
        out.push_str(&format!(
            "{:<12} {:>6} {:>8} {:>10} {:>7} {:>8} {:>9} {:>6} {:>10} {:>7} {:>7} {:>7} {:>7}\n",
            format!("{}:{}", r.program, r.step),
            c(SENT),
            c(DELIVERED),
            c(OPENED),
            c(CLICKED),
            c(BOUNCED),
            c(COMPLAINED),
            c(UNSUBSCRIBED),
            p("delivery"),
            p("open"),
            p("click"),
            p("bounce"),
            p("unsubscribe"),
        ));
    }
    if rows.is_empty() {
        out.push_str("(no marketing email in these days)\n");
    }
    out
}

/// `report stages`: how many leads are in each stage, status and band now, per group.
pub async fn report_stages(
    t: &Target,
    by: Option<By>,
) -> Result<Vec<(String, std::collections::BTreeMap<String, i64>)>, Error> {
    let gauges = counters::read_gauges(&t.records()).await?;
    Ok(leadflow_domain::report::stages_now(&gauges, by).into_iter().collect())
}

/// `report stages` as people read it: one block per group, a line per stage (with the average
/// days its leads have been there on `today`, a day number), status and band.
pub fn render_stages(rows: &[(String, std::collections::BTreeMap<String, i64>)], today: i64) -> String {
    let mut out = String::new();
    for (group, values) in rows {
        out.push_str(&format!("{group}\n"));
        for (prefix, title) in [("in_stage_", "stage"), ("in_status_", "status"), ("in_band_", "band")] {
            let parts: Vec<String> = values
                .iter()
                .filter_map(|(k, v)| {
                    let name = k.strip_prefix(prefix)?;
                    let stage = serde_json::from_value::<leadflow_domain::records::Stage>(name.into()).ok();
                    Some(
                        match stage.and_then(|s| leadflow_domain::report::days_in_stage(values, s, today)) {
                            Some(d) => format!("{name} {v} ({} days)", days(Some(d))),
                            None => format!("{name} {v}"),
                        },
                    )
                })
                .collect();
            if !parts.is_empty() {
                out.push_str(&format!("  {title:<7} {}\n", parts.join(", ")));
            }
        }
    }
    if rows.is_empty() {
        out.push_str("(no leads counted yet)\n");
    }
    out
}
