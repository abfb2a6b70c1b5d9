//! Seed 002's weekly HOT-lead routine, run by a schedule every weekday morning (JST):
//! Monday, the `hot` segment is snapshot into a dated list (`HOT 2026-11-23`) and the list is
//! emailed to inside sales; every weekday, leads that newly joined `hot` reach their owner (or
//! inside sales) the same day; Thursday, each owner is reminded of this week's list members
//! nobody has followed yet; Friday, marketing gets a report of who is still unfollowed.
//! Emails are internal (untracked, no unsubscribe), in each recipient's language, with times in
//! the routine's zone, each sent once (a ledger keyed by day, step and recipient).

use std::collections::BTreeMap;
use std::future::Future;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::handoff::{Owner, RoutingConfig};
use super::nurture::{mime, NurtureConfig, RenderedEmail};
use super::plan::LeadView;
use super::ports::{Audience, MailError, Mailer};
use crate::lists::{ListMember, ListName};
use crate::ports::StoreError;
use crate::records::{ContactId, LeadId};
use crate::segment::SegmentMember;

/// `config/routine.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutineConfig {
    /// The segment the routine follows (seed 002: `hot`).
    pub segment: String,
    /// The weekly list is `<prefix> <Monday's date>`.
    pub list_prefix: String,
    /// The zone of the routine's days and of the times in its emails.
    #[serde(default = "tokyo")]
    pub time_zone: String,
    #[serde(default = "monday")]
    pub snapshot_day: Weekday,
    #[serde(default = "thursday")]
    pub reminder_day: Weekday,
    #[serde(default = "friday")]
    pub report_day: Weekday,
    /// Owner ids (config/routing.json) who get the weekly list and unowned new members.
    pub inside_sales: Vec<String>,
    /// Owner ids who get Friday's report.
    pub marketing: Vec<String>,
}

fn tokyo() -> String {
    "Asia/Tokyo".into()
}
fn monday() -> Weekday {
    Weekday::Mon
}
fn thursday() -> Weekday {
    Weekday::Thu
}
fn friday() -> Weekday {
    Weekday::Fri
}

/// What a morning's run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Snapshot,
    NewMembers,
    Reminder,
    Report,
}

impl Step {
    fn key(self) -> &'static str {
        match self {
            Step::Snapshot => "snapshot",
            Step::NewMembers => "new",
            Step::Reminder => "reminder",
            Step::Report => "report",
        }
    }
}

impl RoutineConfig {
    pub fn check(&self, routing: Option<&RoutingConfig>) -> Result<(), String> {
        if self.time_zone.parse::<Tz>().is_err() {
            return Err(format!("time_zone: unknown zone {}", self.time_zone));
        }
        ListName::parse(&format!("{} 2026-01-05", self.list_prefix)).map_err(|e| format!("list_prefix: {e}"))?;
        if self.segment.is_empty() {
            return Err("segment: name the segment the routine follows".into());
        }
        for (what, day) in [
            ("snapshot_day", self.snapshot_day),
            ("reminder_day", self.reminder_day),
            ("report_day", self.report_day),
        ] {
            if matches!(day, Weekday::Sat | Weekday::Sun) {
                return Err(format!("{what}: the routine runs on weekdays, not {day}"));
            }
        }
        if self.inside_sales.is_empty() {
            return Err("inside_sales: at least one owner id".into());
        }
        if let Some(r) = routing {
            for id in self.inside_sales.iter().chain(&self.marketing) {
                if r.owner(id).is_none() {
                    return Err(format!("{id}: not an owner in routing.json"));
                }
            }
        }
        Ok(())
    }

    pub fn zone(&self) -> Tz {
        self.time_zone.parse().unwrap_or(chrono_tz::Asia::Tokyo)
    }

    fn today(&self, now: DateTime<Utc>) -> NaiveDate {
        now.with_timezone(&self.zone()).date_naive()
    }

    /// The steps of this morning's run: none at the weekend.
    pub fn steps(&self, now: DateTime<Utc>) -> Vec<Step> {
        let day = self.today(now).weekday();
        if matches!(day, Weekday::Sat | Weekday::Sun) {
            return vec![];
        }
        let mut steps = Vec::new();
        if day == self.snapshot_day {
            steps.push(Step::Snapshot);
        }
        steps.push(Step::NewMembers);
        if day == self.reminder_day {
            steps.push(Step::Reminder);
        }
        if day == self.report_day {
            steps.push(Step::Report);
        }
        steps
    }

    /// The steps a run asks for: `daily` (the schedule: by weekday), or one step by name, run
    /// now whatever the day (`snapshot`, `new`, `reminder`, `report`: an operator re-running one).
    pub fn steps_named(&self, name: &str, now: DateTime<Utc>) -> Result<Vec<Step>, String> {
        Ok(match name {
            "daily" => self.steps(now),
            "snapshot" => vec![Step::Snapshot],
            "new" => vec![Step::NewMembers],
            "reminder" => vec![Step::Reminder],
            "report" => vec![Step::Report],
            other => return Err(format!("routine {other:?}: daily, snapshot, new, reminder or report")),
        })
    }

    /// This week's list (named by the snapshot day on or before today) and when that day began.
    pub fn week_list(&self, now: DateTime<Utc>) -> (ListName, DateTime<Utc>) {
        let today = self.today(now);
        let back = (7 + today.weekday().num_days_from_monday() - self.snapshot_day.num_days_from_monday()) % 7;
        let day = today - Duration::days(i64::from(back));
        let name = ListName::parse(&format!("{} {day}", self.list_prefix)).unwrap_or_else(|_| {
            // check() refused such a prefix; a fixed name is still a list.
            ListName::parse(&format!("HOT {day}")).expect("a valid list name")
        });
        let start = day
            .and_hms_opt(0, 0, 0)
            .and_then(|t| t.and_local_timezone(self.zone()).earliest())
            .map_or(now, |t| t.with_timezone(&Utc));
        (name, start)
    }

    /// New members are those who joined since the previous weekday's run (Friday's, on Monday).
    fn new_since(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let days = if self.today(now).weekday() == Weekday::Mon {
            3
        } else {
            1
        };
        now - Duration::days(days)
    }
}

/// What the routine reads and writes.
pub trait RoutineStore: Send + Sync {
    fn segment_members(&self, segment: &str) -> impl Future<Output = Result<Vec<SegmentMember>, StoreError>> + Send;
    fn list_members(&self, list: &ListName) -> impl Future<Output = Result<Vec<ListMember>, StoreError>> + Send;
    fn add_to_list(
        &self,
        list: &ListName,
        members: &[ListMember],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The leads with their contacts (those still there).
    fn views(&self, leads: &[(LeadId, ContactId)]) -> impl Future<Output = Result<Vec<LeadView>, StoreError>> + Send;
    /// Claims a routine email (`key`: day, step and recipient) once, ever; `false` if claimed before.
    fn claim(&self, key: &str, now: DateTime<Utc>) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Gives a claim back when the email could not go out (it is tried again next run).
    fn release(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RoutineReport {
    pub steps: Vec<Step>,
    pub list: Option<String>,
    pub listed: usize,
    pub new_members: usize,
    pub unfollowed: usize,
    pub emails: usize,
}

pub struct RoutineRun<'a> {
    pub routine: &'a RoutineConfig,
    pub steps: Vec<Step>,
    pub routing: &'a RoutingConfig,
    /// The sender and footer of outgoing email.
    pub nurture: &'a NurtureConfig,
    pub now: DateTime<Utc>,
}

/// One lead as the routine's emails show it.
struct Row<'a> {
    view: &'a LeadView,
    why: Option<&'a str>,
}

pub async fn run<S: RoutineStore, M: Mailer>(
    store: &S,
    mailer: &M,
    r: &RoutineRun<'_>,
) -> Result<RoutineReport, StoreError> {
    let cfg = r.routine;
    let mut report = RoutineReport {
        steps: r.steps.clone(),
        ..Default::default()
    };
    if report.steps.is_empty() {
        return Ok(report);
    }
    let (list, week_start) = cfg.week_list(r.now);
    report.list = Some(list.as_str().to_owned());
    let members = store.segment_members(&cfg.segment).await?;
    let why: BTreeMap<LeadId, &str> = members.iter().map(|m| (m.lead_id, m.why.as_str())).collect();
    let date = cfg.today(r.now);
    for step in report.steps.clone() {
        match step {
            Step::Snapshot => {
                let listed: Vec<ListMember> = members
                    .iter()
                    .map(|m| ListMember {
                        lead_id: m.lead_id,
                        contact_id: m.contact_id,
                        added_at: r.now,
                        source: format!("segment:{}", cfg.segment),
                    })
                    .collect();
                store.add_to_list(&list, &listed, r.now).await?;
                report.listed = listed.len();
                let views = store.views(&pairs(&members)).await?;
                let rows: Vec<Row<'_>> = views
                    .iter()
                    .map(|v| Row {
                        view: v,
                        why: why.get(&v.lead.lead_id).copied(),
                    })
                    .collect();
                for id in &cfg.inside_sales {
                    report.emails += send(store, mailer, r, step, date, id, &list, &rows).await?;
                }
            }
            Step::NewMembers => {
                let since = cfg.new_since(r.now);
                let new: Vec<SegmentMember> = members.iter().filter(|m| m.joined_at > since).cloned().collect();
                report.new_members = new.len();
                let views = store.views(&pairs(&new)).await?;
                for (owner, rows) in by_owner(&views, cfg, &why) {
                    report.emails += send(store, mailer, r, step, date, &owner, &list, &rows).await?;
                }
            }
            Step::Reminder | Step::Report => {
                let listed = store.list_members(&list).await?;
                let leads: Vec<(LeadId, ContactId)> = listed.iter().map(|m| (m.lead_id, m.contact_id)).collect();
                let views = store.views(&leads).await?;
                // Unfollowed: no sales activity since the list was made.
                let unfollowed: Vec<LeadView> = views
                    .into_iter()
                    .filter(|v| v.last_sales_activity_at.is_none_or(|at| at < week_start))
                    .collect();
                report.unfollowed = unfollowed.len();
                if step == Step::Reminder {
                    for (owner, rows) in by_owner(&unfollowed, cfg, &why) {
                        report.emails += send(store, mailer, r, step, date, &owner, &list, &rows).await?;
                    }
                } else {
                    let rows: Vec<Row<'_>> = unfollowed
                        .iter()
                        .map(|v| Row {
                            view: v,
                            why: why.get(&v.lead.lead_id).copied(),
                        })
                        .collect();
                    for id in &cfg.marketing {
                        report.emails += send(store, mailer, r, step, date, id, &list, &rows).await?;
                    }
                }
            }
        }
    }
    Ok(report)
}

fn pairs(members: &[SegmentMember]) -> Vec<(LeadId, ContactId)> {
    members.iter().map(|m| (m.lead_id, m.contact_id)).collect()
}

/// Leads grouped by who follows them up: the owner, or inside sales when there is none.
fn by_owner<'a>(
    views: &'a [LeadView],
    cfg: &RoutineConfig,
    why: &BTreeMap<LeadId, &'a str>,
) -> BTreeMap<String, Vec<Row<'a>>> {
    let mut out: BTreeMap<String, Vec<Row<'a>>> = BTreeMap::new();
    for v in views {
        let row = || Row {
            view: v,
            why: why.get(&v.lead.lead_id).copied(),
        };
        match &v.owner {
            Some(o) => out.entry(o.clone()).or_default().push(row()),
            None => {
                for id in &cfg.inside_sales {
                    out.entry(id.clone()).or_default().push(row());
                }
            }
        }
    }
    out
}

/// One routine email to one person, once; 1 if it went out now.
#[allow(clippy::too_many_arguments)]
async fn send<S: RoutineStore, M: Mailer>(
    store: &S,
    mailer: &M,
    r: &RoutineRun<'_>,
    step: Step,
    date: NaiveDate,
    to: &str,
    list: &ListName,
    rows: &[Row<'_>],
) -> Result<usize, StoreError> {
    let Some(owner) = r.routing.owner(to) else {
        tracing::warn!(owner = to, "routine: not an owner in routing.json; skipped");
        return Ok(0);
    };
    if rows.is_empty() && step != Step::Report {
        return Ok(0);
    }
    let key = format!("{date}#{}#{}", step.key(), owner.id);
    if !store.claim(&key, r.now).await? {
        return Ok(0);
    }
    let email = render(step, owner, list, rows, r.routine.zone(), r.now);
    let raw = match mime(
        r.nurture,
        &owner.email,
        &owner.name,
        &email,
        None,
        &format!("routine.{key}@leadflow"),
    ) {
        Ok(raw) => raw,
        Err(e) => {
            tracing::warn!(error = %e, "routine email could not be built");
            store.release(&key).await?;
            return Ok(0);
        }
    };
    match mailer.send(raw, &owner.email, None, Audience::Internal).await {
        Ok(_) => Ok(1),
        Err(e @ (MailError::Throttled(_) | MailError::Paused(_) | MailError::Unavailable(_))) => {
            // The run fails, so the schedule retries it the same day (the claim is given back;
            // what went out already is claimed and is not sent again).
            store.release(&key).await?;
            Err(StoreError::Unavailable(format!(
                "routine {} email not sent: {e}",
                step.key()
            )))
        }
        Err(e) => {
            tracing::warn!(error = %e, step = step.key(), "routine email refused");
            Ok(0)
        }
    }
}

/// The email: a greeting, what this is, and one block per lead (name, company, title, score
/// and the first lines of its explanation, owner, why it is listed), in the recipient's language.
fn render(step: Step, to: &Owner, list: &ListName, rows: &[Row<'_>], zone: Tz, now: DateTime<Utc>) -> RenderedEmail {
    let ja = to.locale == "ja";
    let n = rows.len();
    let when = now.with_timezone(&zone).format("%Y-%m-%d %H:%M %Z");
    let (subject, opening) = match (step, ja) {
        (Step::Snapshot, true) => (
            format!("【leadflow】今週のHOTリード {n}件 ({list})"),
            format!("今週のHOTリードリスト「{list}」です({when} 時点)。今週中のフォローをお願いします。架電・メールなどの活動は記録してください。"),
        ),
        (Step::Snapshot, false) => (
            format!("[leadflow] This week's hot leads: {n} ({list})"),
            format!("This week's hot lead list \"{list}\" (as of {when}). Please follow each up this week and log every call or email as an activity."),
        ),
        (Step::NewMembers, true) => (
            format!("【leadflow】新しいHOTリード {n}件"),
            format!("前回の配信以降にHOTリードになったリードです({when} 時点)。本日中のフォローをお願いします。"),
        ),
        (Step::NewMembers, false) => (
            format!("[leadflow] New hot leads: {n}"),
            format!("These leads became hot since the last run (as of {when}). Please follow them up today."),
        ),
        (Step::Reminder, true) => (
            format!("【leadflow】リマインド: 未フォローのHOTリード {n}件 ({list})"),
            format!("「{list}」のうち、まだ活動が記録されていないリードです({when} 時点)。"),
        ),
        (Step::Reminder, false) => (
            format!("[leadflow] Reminder — hot leads not yet followed: {n} ({list})"),
            format!("Leads on \"{list}\" with no activity logged yet (as of {when})."),
        ),
        (Step::Report, true) => (
            format!("【leadflow】週次レポート: 未フォローのHOTリード {n}件 ({list})"),
            format!("今週のHOTリードリスト「{list}」で、まだフォローされていないリードです({when} 時点)。"),
        ),
        (Step::Report, false) => (
            format!("[leadflow] Weekly report — hot leads still unfollowed: {n} ({list})"),
            format!("Leads on this week's list \"{list}\" still without any follow-up (as of {when})."),
        ),
    };
    let labels = if ja {
        [
            "会社",
            "役職",
            "スコア",
            "担当",
            "リスト入りの理由",
            "未割り当て",
            "該当なし",
        ]
    } else {
        ["Company", "Title", "Score", "Owner", "Why listed", "unassigned", "none"]
    };
    let mut text = format!("{}{}\n\n{opening}\n", to.name, if ja { " 様" } else { "" });
    if rows.is_empty() {
        text.push_str(&format!("\n({})\n", labels[6]));
    }
    for (i, row) in rows.iter().enumerate() {
        let v = row.view;
        let f = &v.contact.fields;
        // 山田太郎, but Alex Lee.
        let (last, first) = (
            f.last_name.as_deref().unwrap_or(""),
            f.first_name.as_deref().unwrap_or(""),
        );
        let latin = last.is_ascii() && first.is_ascii() && !last.is_empty() && !first.is_empty();
        let name = if latin {
            format!("{first} {last}")
        } else {
            format!("{last}{first}")
        };
        let explanation: Vec<String> = v
            .explanation
            .iter()
            .take(4)
            .map(|l| format!("{:+} {}", l.points, l.detail))
            .collect();
        text.push_str(&format!(
            "\n{}. {} ({})\n   {}: {}\n   {}: {}\n   {}: {} {} — {}\n   {}: {}\n",
            i + 1,
            if name.is_empty() { "—" } else { &name },
            v.lead.lead_id,
            labels[0],
            f.company.as_deref().unwrap_or("—"),
            labels[1],
            f.job_title.as_deref().unwrap_or("—"),
            labels[2],
            v.total,
            v.band.as_deref().unwrap_or(""),
            explanation.join(", "),
            labels[3],
            v.owner.as_deref().unwrap_or(labels[5]),
        ));
        if let Some(why) = row.why {
            text.push_str(&format!("   {}: {why}\n", labels[4]));
        }
    }
    let html = format!(
        "<pre style=\"white-space:pre-wrap;word-break:break-all;font-family:sans-serif\">{}</pre>",
        crate::escape_html(&text)
    );
    RenderedEmail { subject, html, text }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn config() -> RoutineConfig {
        serde_json::from_str(include_str!("../../../../config/routine.json")).unwrap()
    }

    #[test]
    fn the_week_runs_by_jst_days() {
        let c = config();
        // Monday 2026-11-23 09:00 JST is 00:00 UTC.
        let monday = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
        assert_eq!(c.steps(monday), [Step::Snapshot, Step::NewMembers]);
        assert_eq!(c.steps(monday + Duration::days(1)), [Step::NewMembers]);
        assert_eq!(c.steps(monday + Duration::days(3)), [Step::NewMembers, Step::Reminder]);
        assert_eq!(c.steps(monday + Duration::days(4)), [Step::NewMembers, Step::Report]);
        assert!(c.steps(monday + Duration::days(5)).is_empty());
        // Sunday 23:30 UTC is already Monday in Tokyo.
        assert_eq!(
            c.steps(monday - Duration::minutes(30)),
            [Step::Snapshot, Step::NewMembers]
        );
        let (list, start) = c.week_list(monday + Duration::days(3));
        assert_eq!(list.as_str(), "HOT 2026-11-23");
        assert_eq!(start, Utc.with_ymd_and_hms(2026, 11, 22, 15, 0, 0).unwrap());
        assert_eq!(c.new_since(monday), monday - Duration::days(3));
        // An operator re-runs Monday's snapshot on Tuesday: this week's list, the same name.
        assert_eq!(
            c.steps_named("snapshot", monday + Duration::days(1)).unwrap(),
            [Step::Snapshot]
        );
        assert_eq!(c.week_list(monday + Duration::days(1)).0.as_str(), "HOT 2026-11-23");
        assert!(c.steps_named("sunday", monday).unwrap_err().contains("daily, snapshot"));
    }
}
