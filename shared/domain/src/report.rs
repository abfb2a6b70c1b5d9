//! The funnel in numbers: counts kept as the work happens, per day (JST) and per form,
//! campaign and source, each written in the transaction of the effect it counts (a submission,
//! a stage move, a band change, a hand-off), so a count is exact under retries exactly when the
//! effect is. Reports add the days up.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::records::{Lead, LeadStatus, Stage};

/// Submissions (form posts and imported rows).
pub const SUBMISSIONS: &str = "submissions";
pub const NEW_CONTACTS: &str = "new_contacts";
pub const NEW_LEADS: &str = "new_leads";
pub const SALES_READY: &str = "sales_ready";
pub const HANDOFFS: &str = "handoffs";
pub const CONVERTED: &str = "converted";
pub const DISQUALIFIED: &str = "disqualified";

/// Leads entering a stage (`stage_sales_acceptance`).
pub fn stage_entered(stage: Stage) -> String {
    format!("stage_{}", crate::segment::name_of(&stage))
}

/// Leads in a stage now (`in_stage_sales_acceptance`).
pub fn in_stage(stage: Stage) -> String {
    format!("in_stage_{}", crate::segment::name_of(&stage))
}

/// Leads with a status now (`in_status_open`).
pub fn in_status(status: LeadStatus) -> String {
    format!("in_status_{}", crate::segment::name_of(&status))
}

/// Leads in a band now (`in_band_hot`).
pub fn in_band(band: &str) -> String {
    format!("in_band_{band}")
}

/// The sum of the days (since 1970-01-01, UTC) the leads now in a stage entered it
/// (`since_stage_inquiry`): with their number, how long they have been there on average.
pub fn in_stage_since(stage: Stage) -> String {
    format!("since_stage_{}", crate::segment::name_of(&stage))
}

/// Leads that reached `to` (a stage's name, or `converted`) after `days` whole days in the
/// stage before (`days_to_sales_acceptance_3`): a histogram, for medians. Capped at a year.
pub fn days_to(to: &str, days: i64) -> String {
    format!("days_to_{to}_{}", days.clamp(0, MAX_DAYS))
}

/// Days counted one by one in [`days_to`]; longer waits count as this.
pub const MAX_DAYS: i64 = 365;

/// A day number: whole days since 1970-01-01 (UTC).
pub fn epoch_day(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(86_400)
}

/// The median of a [`days_to`] histogram (`None` when empty): the middle wait, or the mean of
/// the two middle ones.
pub fn median_days(counts: &BTreeMap<String, i64>, to: &str) -> Option<f64> {
    let prefix = format!("days_to_{to}_");
    let mut hist: Vec<(i64, i64)> = counts
        .iter()
        .filter_map(|(k, n)| Some((k.strip_prefix(&prefix)?.parse().ok()?, *n)))
        .filter(|(_, n)| *n > 0)
        .collect();
    hist.sort_unstable();
    let total: i64 = hist.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return None;
    }
    let nth = |i: i64| {
        let mut seen = 0;
        hist.iter()
            .find(|(_, n)| {
                seen += n;
                seen > i
            })
            .map_or(0, |(d, _)| *d)
    };
    Some((nth((total - 1) / 2) + nth(total / 2)) as f64 / 2.0)
}

/// Average whole days the leads now in `stage` have been there, on `today` (a day number), from
/// the running totals (`None` with nobody there).
pub fn days_in_stage(gauges: &BTreeMap<String, i64>, stage: Stage, today: i64) -> Option<f64> {
    let n = gauges.get(&in_stage(stage)).copied().unwrap_or(0);
    let since = gauges.get(&in_stage_since(stage)).copied().unwrap_or(0);
    // Leads counted before entry days were kept (none before 2026) make the average
    // meaningless: none rather than a wrong number.
    let average_entry = since as f64 / n.max(1) as f64;
    (n > 0 && average_entry >= FIRST_ENTRY_DAY as f64).then_some(today as f64 - average_entry)
}

/// 2026-01-01 as a day number: entry days are kept from 2026 on.
const FIRST_ENTRY_DAY: i64 = 20_454;

/// How many leads are in each stage, band and status now: the running totals summed, one row
/// per group.
pub fn stages_now(gauges: &[(Dims, BTreeMap<String, i64>)], by: Option<By>) -> BTreeMap<String, BTreeMap<String, i64>> {
    let mut rows: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for (dims, values) in gauges {
        let row = rows.entry(dims.group(by)).or_default();
        for (k, v) in values {
            *row.entry(k.clone()).or_default() += v;
        }
    }
    // A stage everyone has left reads 0: not listed.
    for row in rows.values_mut() {
        row.retain(|_, v| *v != 0);
    }
    rows
}

/// Leads whose primary band became `band` (`band_hot`).
pub fn band_entered(band: &str) -> String {
    format!("band_{band}")
}

/// What a count is counted by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dims {
    pub form: String,
    /// `-` without a campaign.
    pub campaign: String,
    pub source: String,
}

impl Dims {
    /// The row a report puts these counts in (`all` without grouping).
    pub fn group(&self, by: Option<By>) -> String {
        match by {
            None => "all".to_owned(),
            Some(By::Campaign) => self.campaign.clone(),
            Some(By::Source) => self.source.clone(),
            Some(By::Form) => self.form.clone(),
        }
    }

    pub fn of(lead: &Lead) -> Dims {
        Dims {
            form: lead.form_id.clone(),
            campaign: lead.campaign.clone().unwrap_or_else(|| "-".into()),
            source: crate::segment::name_of(&lead.source),
        }
    }
}

/// The day a count belongs to: the calendar day in Japan.
pub fn day_of(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&chrono_tz::Asia::Tokyo).date_naive()
}

/// Counts to add, for one day and one set of dims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub day: NaiveDate,
    pub dims: Dims,
    pub counts: BTreeMap<String, i64>,
    /// Changes to how many leads are in each stage, band and status now (`in_stage_inquiry`
    /// +1, `in_band_cold` −1): running totals, kept apart from the day's counts.
    #[serde(default)]
    pub now: BTreeMap<String, i64>,
}

impl Tally {
    pub fn new(at: DateTime<Utc>, dims: Dims) -> Tally {
        Tally {
            day: day_of(at),
            dims,
            counts: BTreeMap::new(),
            now: BTreeMap::new(),
        }
    }

    /// `n` more (or fewer) leads are in `what` now.
    pub fn gauge(mut self, what: impl Into<String>, n: i64) -> Tally {
        let e = self.now.entry(what.into()).or_default();
        *e += n;
        if *e == 0 {
            self.now.retain(|_, v| *v != 0);
        }
        self
    }

    pub fn add(mut self, metric: impl Into<String>, n: i64) -> Tally {
        if n != 0 {
            *self.counts.entry(metric.into()).or_default() += n;
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.now.is_empty()
    }

    /// What a set of stage moves counts: each stage entered, and the closing outcomes.
    /// Stage moves of a lead that entered its stage at `since`: entries, how long each wait
    /// was, conversions and disqualifications, and the running totals of who is where.
    pub fn moves(mut self, moves: &[crate::process::stage::StageChange], since: DateTime<Utc>) -> Tally {
        let mut entered = since;
        for m in moves {
            let waited = (m.at - entered).num_days();
            if m.to != m.from {
                self = self
                    .add(stage_entered(m.to), 1)
                    .add(days_to(&crate::segment::name_of(&m.to), waited), 1)
                    .gauge(in_stage(m.from), -1)
                    .gauge(in_stage(m.to), 1)
                    .gauge(in_stage_since(m.from), -epoch_day(entered))
                    .gauge(in_stage_since(m.to), epoch_day(m.at));
            }
            if m.to_status != m.from_status {
                self = match m.to_status {
                    LeadStatus::Converted => self.add(CONVERTED, 1).add(days_to(CONVERTED, waited), 1),
                    LeadStatus::Disqualified => self.add(DISQUALIFIED, 1),
                    _ => self,
                };
                self = self
                    .gauge(in_status(m.from_status), -1)
                    .gauge(in_status(m.to_status), 1);
            }
            if m.to != m.from {
                entered = m.at;
            }
        }
        self
    }
}

/// A rate as a report prints it: `33.3%`, or `-` with nothing to divide by.
pub fn percent(rate: Option<f64>) -> String {
    rate.map_or("-".into(), |r| format!("{:.1}%", r * 100.0))
}

/// How a report groups its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum By {
    Campaign,
    Source,
    Form,
}

/// One row of the funnel: the counts and the conversion rates between its steps.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FunnelRow {
    pub group: String,
    pub counts: BTreeMap<String, i64>,
    /// inquiry → MQL, MQL → SAL, SAL → converted (`None` with nothing to divide by).
    pub rates: BTreeMap<String, Option<f64>>,
    /// Median whole days of the same steps (`None` with nobody taking them).
    pub median_days: BTreeMap<String, Option<f64>>,
}

/// The funnel over stored counts: one row per group (or `all`), in group order.
pub fn funnel(tallies: &[Tally], by: Option<By>) -> Vec<FunnelRow> {
    let mut rows: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for t in tallies {
        let row = rows.entry(t.dims.group(by)).or_default();
        for (k, v) in &t.counts {
            *row.entry(k.clone()).or_default() += v;
        }
    }
    rows.into_iter()
        .map(|(group, counts)| {
            let c = |k: &str| counts.get(k).copied().unwrap_or(0);
            let rate = |num: i64, den: i64| (den > 0).then(|| num as f64 / den as f64);
            let inquiries = c(NEW_LEADS);
            let mql = c(&stage_entered(Stage::AutomatedMarketingQualification));
            let sal = c(&stage_entered(Stage::SalesAcceptance));
            let rates = BTreeMap::from([
                ("inquiry_to_mql".to_owned(), rate(mql, inquiries)),
                ("mql_to_sal".to_owned(), rate(sal, mql)),
                ("sal_to_converted".to_owned(), rate(c(CONVERTED), sal)),
            ]);
            let name = |s: Stage| crate::segment::name_of(&s);
            let median_days = BTreeMap::from([
                (
                    "inquiry_to_mql".to_owned(),
                    median_days(&counts, &name(Stage::AutomatedMarketingQualification)),
                ),
                (
                    "mql_to_sal".to_owned(),
                    median_days(&counts, &name(Stage::SalesAcceptance)),
                ),
                ("sal_to_converted".to_owned(), median_days(&counts, CONVERTED)),
            ]);
            FunnelRow {
                group,
                counts,
                rates,
                median_days,
            }
        })
        .collect()
}

/// The columns of a funnel table, in funnel order: (header, counter).
pub fn funnel_columns() -> Vec<(&'static str, String)> {
    vec![
        ("submissions", SUBMISSIONS.to_owned()),
        ("new contacts", NEW_CONTACTS.to_owned()),
        ("new leads", NEW_LEADS.to_owned()),
        ("MQL", stage_entered(Stage::AutomatedMarketingQualification)),
        ("sales-ready", SALES_READY.to_owned()),
        ("SAL", stage_entered(Stage::SalesAcceptance)),
        ("hand-offs", HANDOFFS.to_owned()),
        ("converted", CONVERTED.to_owned()),
        ("disqualified", DISQUALIFIED.to_owned()),
    ]
}

/// The rates of a funnel table: (header, rate).
pub const RATES: [(&str, &str); 3] = [
    ("inquiry→MQL", "inquiry_to_mql"),
    ("MQL→SAL", "mql_to_sal"),
    ("SAL→won", "sal_to_converted"),
];

/// The median waits of a funnel table: (header, step).
pub const MEDIANS: [(&str, &str); 3] = [
    ("days→MQL", "inquiry_to_mql"),
    ("days→SAL", "mql_to_sal"),
    ("days→won", "sal_to_converted"),
];

/// Days as a report prints them: `1.5`, or `-` with none.
pub fn days(d: Option<f64>) -> String {
    d.map_or("-".into(), |d| format!("{d:.1}"))
}

/// Marketing email counts, per nurture program and step (the send ledger's key: `warm:1`,
/// `rule:<id>`).
pub const SENT: &str = "sent";
pub const DELIVERED: &str = "delivered";
/// Unique: a message's first open (and first click) only.
pub const OPENED: &str = "opened";
pub const CLICKED: &str = "clicked";
pub const BOUNCED: &str = "bounced";
pub const COMPLAINED: &str = "complained";
/// First unsubscribes through the email's own link.
pub const UNSUBSCRIBED: &str = "unsubscribed";

/// What an email count is counted by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EmailDims {
    pub program: String,
    pub step: String,
}

impl EmailDims {
    /// From a send ledger key: `warm:1` is program `warm`, step `1`; `rule:<id>` program `rule`.
    pub fn of_ledger_key(key: &str) -> EmailDims {
        let (program, step) = key.split_once(':').unwrap_or((key, "-"));
        EmailDims {
            program: program.to_owned(),
            step: step.to_owned(),
        }
    }
}

/// Email counts to add, for one day, program and step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailTally {
    pub day: NaiveDate,
    pub dims: EmailDims,
    pub counts: BTreeMap<String, i64>,
}

impl EmailTally {
    pub fn new(at: DateTime<Utc>, ledger_key: &str) -> EmailTally {
        EmailTally {
            day: day_of(at),
            dims: EmailDims::of_ledger_key(ledger_key),
            counts: BTreeMap::new(),
        }
    }

    pub fn add(mut self, metric: &str, n: i64) -> EmailTally {
        if n != 0 {
            *self.counts.entry(metric.to_owned()).or_default() += n;
        }
        self
    }
}

/// One row of the email report: a program's step, its counts and rates.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EmailRow {
    pub program: String,
    pub step: String,
    pub counts: BTreeMap<String, i64>,
    /// delivered, bounced and complained per sent; opened and clicked per delivered.
    pub rates: BTreeMap<String, Option<f64>>,
}

/// The email report: one row per program and step, in order.
pub fn email_report(tallies: &[EmailTally]) -> Vec<EmailRow> {
    let mut rows: BTreeMap<EmailDims, BTreeMap<String, i64>> = BTreeMap::new();
    for t in tallies {
        let row = rows.entry(t.dims.clone()).or_default();
        for (k, v) in &t.counts {
            *row.entry(k.clone()).or_default() += v;
        }
    }
    rows.into_iter()
        .map(|(d, counts)| {
            let c = |k: &str| counts.get(k).copied().unwrap_or(0);
            let rate = |num: i64, den: i64| (den > 0).then(|| num as f64 / den as f64);
            let rates = BTreeMap::from([
                ("delivery".to_owned(), rate(c(DELIVERED), c(SENT))),
                ("open".to_owned(), rate(c(OPENED), c(DELIVERED))),
                ("click".to_owned(), rate(c(CLICKED), c(DELIVERED))),
                ("bounce".to_owned(), rate(c(BOUNCED), c(SENT))),
                ("complaint".to_owned(), rate(c(COMPLAINED), c(SENT))),
                ("unsubscribe".to_owned(), rate(c(UNSUBSCRIBED), c(DELIVERED))),
            ]);
            EmailRow {
                program: d.program,
                step: d.step,
                counts,
                rates,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn dims(campaign: &str) -> Dims {
        Dims {
            form: "demo".into(),
            campaign: campaign.into(),
            source: "web_form".into(),
        }
    }

    #[test]
    fn the_funnel_adds_days_up_by_group_with_rates() {
        // 2026-11-23 23:30 JST is still the 23rd in Japan, 14:30 UTC.
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 14, 30, 0).unwrap();
        assert_eq!(day_of(at).to_string(), "2026-11-23");
        assert_eq!(day_of(at + chrono::Duration::hours(1)).to_string(), "2026-11-24");
        let t = [
            Tally::new(at, dims("Ebook"))
                .add(NEW_LEADS, 4)
                .add(stage_entered(Stage::AutomatedMarketingQualification), 4),
            Tally::new(at, dims("Ebook"))
                .add(stage_entered(Stage::SalesAcceptance), 1)
                .add(CONVERTED, 1),
            Tally::new(at, dims("Seminar")).add(NEW_LEADS, 2),
        ];
        let all = funnel(&t, None);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].counts[NEW_LEADS], 6);
        assert_eq!(all[0].rates["inquiry_to_mql"], Some(4.0 / 6.0));
        let by = funnel(&t, Some(By::Campaign));
        assert_eq!(
            by.iter().map(|r| r.group.as_str()).collect::<Vec<_>>(),
            ["Ebook", "Seminar"]
        );
        assert_eq!(by[0].rates["mql_to_sal"], Some(0.25));
        assert_eq!(by[0].rates["sal_to_converted"], Some(1.0));
        assert_eq!(by[1].rates["mql_to_sal"], None, "nothing to divide by");
        assert!(Tally::new(at, dims("x")).add(HANDOFFS, 0).is_empty());
    }

    fn mv(from: Stage, to: Stage, to_status: LeadStatus, at: DateTime<Utc>) -> crate::process::stage::StageChange {
        crate::process::stage::StageChange {
            from,
            to,
            from_status: LeadStatus::Open,
            to_status,
            at,
            reason: "test".into(),
            by: crate::process::stage::Actor::System,
        }
    }

    #[test]
    fn waits_between_stages_give_medians_and_running_totals_give_days_in_stage() {
        use Stage::{AutomatedMarketingQualification as Mql, Inquiry, SalesAcceptance as Sal};
        let created = Utc.with_ymd_and_hms(2026, 11, 2, 1, 0, 0).unwrap();
        let day = chrono::Duration::days(1);
        // Three leads reach MQL after 1, 3 and 10 days; two of them SAL 2 and 4 days later; one
        // converts 5 days after that, in the same write as a move (waits count from each entry).
        let mut tallies = Vec::new();
        for (to_mql, to_sal) in [(1, Some(2)), (3, Some(4)), (10, None)] {
            let mql_at = created + day * to_mql;
            let mut moves = vec![mv(Inquiry, Mql, LeadStatus::Open, mql_at)];
            if let Some(d) = to_sal {
                moves.push(mv(Mql, Sal, LeadStatus::Qualified, mql_at + day * d));
            }
            tallies.push(Tally::new(created, dims("Ebook")).moves(&moves, created));
        }
        let sal_at = created + day * 5;
        tallies.push(
            Tally::new(created, dims("Ebook")).moves(&[mv(Sal, Sal, LeadStatus::Converted, sal_at + day * 5)], sal_at),
        );
        let row = &funnel(&tallies, None)[0];
        assert_eq!(row.median_days["inquiry_to_mql"], Some(3.0), "1, 3, 10");
        assert_eq!(row.median_days["mql_to_sal"], Some(3.0), "2 and 4: their mean");
        assert_eq!(row.median_days["sal_to_converted"], Some(5.0));
        assert_eq!(days(row.median_days["mql_to_sal"]), "3.0");
        assert_eq!(days(None), "-");
        assert_eq!(days_to("converted", 1000), "days_to_converted_365", "capped at a year");

        // Running totals: two leads entered Inquiry on day D and D+2; one of them moved on.
        let d = epoch_day(created);
        let mut gauges = BTreeMap::new();
        for t in [
            Tally::new(created, dims("x"))
                .gauge(in_stage(Inquiry), 1)
                .gauge(in_stage_since(Inquiry), d),
            Tally::new(created, dims("x"))
                .gauge(in_stage(Inquiry), 1)
                .gauge(in_stage_since(Inquiry), d + 2),
            Tally::new(created, dims("x")).moves(&[mv(Inquiry, Mql, LeadStatus::Open, created + day * 4)], created),
        ] {
            for (k, v) in t.now {
                *gauges.entry(k).or_insert(0) += v;
            }
        }
        assert_eq!(gauges[&in_stage(Inquiry)], 1);
        assert_eq!(
            days_in_stage(&gauges, Inquiry, d + 6),
            Some(4.0),
            "the one left entered on D+2"
        );
        assert_eq!(days_in_stage(&gauges, Mql, d + 6), Some(2.0));
        assert_eq!(days_in_stage(&gauges, Sal, d + 6), None);
    }
}
