//! The lead page a capability link opens ([`super::lead_link`]): the lead as its salesperson
//! needs it, server-rendered HTML in the viewer's language and time zone, readable on a phone,
//! without JavaScript; its activity form, read into the same [`ActivityRequest`] the IAM
//! lead API takes; and its actions form ([`ActionForm`]: complete a task, accept, disqualify).

use std::future::Future;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use super::activity::{Activity, ActivityRequest, ActivityResult, ActivityType};
use super::handoff::{Owner, RoutingConfig, Task, TaskStatus};
use super::plan::LeadView;
use super::stage::{Actor, Move, StageChange};
use crate::escape_html as esc;
use crate::ports::StoreError;
use crate::records::{LeadId, LeadStatus, Stage};

/// What the page shows beyond the lead's view: its tasks, activities and stage history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeadRecords {
    pub tasks: Vec<Task>,
    /// Newest first.
    pub activities: Vec<Activity>,
    /// Newest first.
    pub stages: Vec<StageChange>,
}

/// Activities and stage moves the page lists at most.
pub const RECENT: usize = 20;

/// The reads the page needs from the records table (beyond [`super::ports::LeadApiStore::view`]).
pub trait LeadPageStore: Send + Sync {
    fn lead_records(&self, lead: LeadId) -> impl Future<Output = Result<LeadRecords, StoreError>> + Send;
}

/// The page's headers: never cached, never indexed, no referrer leaks the link, no script.
pub const HEADERS: [(&str, &str); 5] = [
    ("cache-control", "no-store"),
    ("referrer-policy", "no-referrer"),
    ("x-robots-tag", "noindex"),
    ("x-content-type-options", "nosniff"),
    (
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
];

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Hiragino Sans','Hiragino Kaku Gothic ProN','Yu Gothic UI',Meiryo,'Noto Sans CJK JP',sans-serif;max-width:40rem;margin:1.5rem auto;padding:0 1rem;line-height:1.6;color:#222}\
h1{font-size:1.4rem;margin:.2rem 0}h2{font-size:1.1rem;margin:1.4rem 0 .4rem;border-bottom:1px solid #ddd}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem .8rem;margin:0}dt{color:#666}dd{margin:0;word-break:break-all}\
ul{padding-left:1.2rem;margin:.3rem 0}.pts{font-variant-numeric:tabular-nums;display:inline-block;min-width:3rem}\
label{display:block;margin:.5rem 0 .1rem;color:#444}input,select,textarea{font:inherit;width:100%;box-sizing:border-box;padding:.4rem}\
button{font-size:1rem;padding:.6rem 1.2rem;margin-top:.8rem}.muted{color:#777}.note{background:#eef7ee;padding:.5rem}";

fn page(lang: &str, title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><meta name=\"robots\" content=\"noindex\">\
<title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        esc(title)
    )
}

/// The answer to a link that does not open this lead (bad, tampered, expired, another owner's):
/// the same page every time, naming nothing about the lead.
pub fn denied_page() -> String {
    page(
        "ja",
        "リンクが無効です / Link not valid",
        "<h1>このリンクは使えません</h1><p>リンクの期限が切れたか、正しくないか、このリードの担当者向けではありません。\
最新のメールのリンクを開くか、担当マネージャーに確認してください。</p>\
<h1 lang=\"en\">This link cannot be used</h1><p lang=\"en\">It has expired, is not valid, or is not for this lead's owner. \
Open the link in the latest email, or ask your manager.</p>",
    )
}

struct Words {
    ja: bool,
}

impl Words {
    fn t<'a>(&self, ja: &'a str, en: &'a str) -> &'a str {
        if self.ja {
            ja
        } else {
            en
        }
    }

    fn stage(&self, s: Stage) -> &'static str {
        match (s, self.ja) {
            (Stage::Inquiry, true) => "問い合わせ",
            (Stage::Inquiry, false) => "Inquiry",
            (Stage::AutomatedMarketingQualification, true) => "マーケティング評価",
            (Stage::AutomatedMarketingQualification, false) => "Marketing qualification",
            (Stage::TelemarketingAcceptance, true) => "インサイドセールス受付",
            (Stage::TelemarketingAcceptance, false) => "Telemarketing acceptance",
            (Stage::TelemarketingQualification, true) => "インサイドセールス評価",
            (Stage::TelemarketingQualification, false) => "Telemarketing qualification",
            (Stage::SalesAcceptance, true) => "営業受付",
            (Stage::SalesAcceptance, false) => "Sales acceptance",
        }
    }

    fn status(&self, s: LeadStatus) -> &'static str {
        match (s, self.ja) {
            (LeadStatus::Open, true) => "対応中",
            (LeadStatus::Open, false) => "open",
            (LeadStatus::Qualified, true) => "有望",
            (LeadStatus::Qualified, false) => "qualified",
            (LeadStatus::Converted, true) => "商談化",
            (LeadStatus::Converted, false) => "converted",
            (LeadStatus::Disqualified, true) => "対象外",
            (LeadStatus::Disqualified, false) => "disqualified",
        }
    }

    fn kind(&self, k: ActivityType) -> &'static str {
        match (k, self.ja) {
            (ActivityType::Phone, true) => "電話",
            (ActivityType::Phone, false) => "Phone",
            (ActivityType::Email, true) => "メール",
            (ActivityType::Email, false) => "Email",
            (ActivityType::Visit, true) => "訪問",
            (ActivityType::Visit, false) => "Visit",
            (ActivityType::WebMeeting, true) => "Web会議",
            (ActivityType::WebMeeting, false) => "Web meeting",
        }
    }

    fn result(&self, r: ActivityResult) -> &'static str {
        match (r, self.ja) {
            (ActivityResult::Continue, true) => "継続",
            (ActivityResult::Continue, false) => "Continue",
            (ActivityResult::Opportunity, true) => "商談化",
            (ActivityResult::Opportunity, false) => "Opportunity",
            (ActivityResult::Archive, true) => "アーカイブ",
            (ActivityResult::Archive, false) => "Archive",
        }
    }
}

/// Everything the page is rendered from.
pub struct PageInput<'a> {
    pub view: &'a LeadView,
    pub records: &'a LeadRecords,
    /// Who the link was made for (the page speaks their language, in their time zone).
    pub viewer: &'a Owner,
    /// Names the lead's owner and the people who recorded activities.
    pub routing: &'a RoutingConfig,
    /// The link (`?t=`), for the form's action.
    pub token: &'a str,
    pub csrf: &'a str,
    pub now: DateTime<Utc>,
    /// A line shown above the page (the form's outcome).
    pub notice: Option<&'a str>,
}

/// An owner's name for an owner id; anything else (an IAM caller) as it is.
fn name_of<'a>(routing: &'a RoutingConfig, id: &'a str) -> &'a str {
    routing.owner(id).map_or(id, |o| o.name.as_str())
}

/// The time zone a person reads times in (Tokyo when theirs is unknown).
pub fn zone(owner: &Owner) -> Tz {
    owner.time_zone.parse().unwrap_or(chrono_tz::Asia::Tokyo)
}

/// The lead's name in Japanese order (family name first).
pub fn display_name(view: &LeadView) -> String {
    let f = &view.contact.fields;
    [f.last_name.as_deref(), f.first_name.as_deref()]
        .into_iter()
        .flatten()
        .filter(|s| !s.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The lead page.
pub fn render(p: &PageInput<'_>) -> String {
    let w = Words {
        ja: p.viewer.locale == "ja",
    };
    let zone = zone(p.viewer);
    let at = |t: DateTime<Utc>| t.with_timezone(&zone).format("%Y-%m-%d %H:%M %Z").to_string();
    let view = p.view;
    let f = &view.contact.fields;
    let lead = view.lead.lead_id;
    let mut b = String::new();

    let name = display_name(view);
    let shown = if name.is_empty() {
        w.t("（氏名なし）", "(no name)").to_owned()
    } else if w.ja {
        format!("{name} 様")
    } else {
        name.clone()
    };
    if let Some(n) = p.notice {
        b.push_str(&format!("<p class=\"note\">{}</p>", esc(n)));
    }
    b.push_str(&format!("<h1>{}</h1>", esc(&shown)));
    let line = [f.company.as_deref(), f.job_title.as_deref()]
        .into_iter()
        .flatten()
        .map(esc)
        .collect::<Vec<_>>()
        .join(" / ");
    if !line.is_empty() {
        b.push_str(&format!("<p>{line}</p>"));
    }

    // Contact.
    b.push_str(&format!("<h2>{}</h2><dl>", w.t("連絡先", "Contact")));
    let email = view.contact.email.as_ref().map(|e| e.as_str().to_owned());
    match &email {
        Some(e) => b.push_str(&format!(
            "<dt>{}</dt><dd><a href=\"mailto:{}\">{}</a></dd>",
            w.t("メール", "Email"),
            esc(e),
            esc(e)
        )),
        None => b.push_str(&format!("<dt>{}</dt><dd>—</dd>", w.t("メール", "Email"))),
    }
    match f.phone.as_deref().filter(|p| !p.trim().is_empty()) {
        Some(ph) => {
            let dial: String = ph.chars().filter(|c| c.is_ascii_digit() || *c == '+').collect();
            b.push_str(&format!(
                "<dt>{}</dt><dd><a href=\"tel:{}\">{}</a></dd>",
                w.t("電話", "Phone"),
                esc(&dial),
                esc(ph)
            ));
        }
        None => b.push_str(&format!("<dt>{}</dt><dd>—</dd>", w.t("電話", "Phone"))),
    }
    for (label, v) in [
        (w.t("会社", "Company"), f.company.as_deref()),
        (w.t("役職", "Title"), f.job_title.as_deref()),
        (w.t("業種", "Industry"), f.industry.as_deref()),
        (w.t("従業員数", "Employees"), f.employees.as_deref()),
        (w.t("国", "Country"), f.country.as_deref()),
    ] {
        if let Some(v) = v.filter(|v| !v.trim().is_empty()) {
            b.push_str(&format!("<dt>{label}</dt><dd>{}</dd>", esc(v)));
        }
    }
    let consent = consent_state(view, &w);
    b.push_str(&format!(
        "<dt>{}</dt><dd>{}</dd></dl>",
        w.t("メール配信の同意", "Email consent"),
        esc(consent)
    ));

    // Where the lead is.
    b.push_str(&format!("<h2>{}</h2><dl>", w.t("状況", "Status")));
    b.push_str(&format!(
        "<dt>{}</dt><dd>{}（{}）</dd>",
        w.t("ステージ", "Stage"),
        w.stage(view.lead.stage),
        w.status(view.lead.status)
    ));
    b.push_str(&format!(
        "<dt>{}</dt><dd>{}</dd>",
        w.t("担当", "Owner"),
        esc(view.owner.as_deref().map_or("—", |o| name_of(p.routing, o)))
    ));
    let open: Vec<&Task> = p
        .records
        .tasks
        .iter()
        .filter(|t| t.status == TaskStatus::Open)
        .collect();
    for t in &open {
        let followed = view.last_sales_activity_at.is_some_and(|a| a >= t.created_at);
        let subject = if w.ja && t.subject == "first contact with hot lead" {
            "ホットリードへの初回連絡".to_owned()
        } else {
            t.subject.clone()
        };
        b.push_str(&format!(
            "<dt>{}</dt><dd>{}<br>{}: {}{}</dd>",
            w.t("タスク", "Task"),
            esc(&subject),
            w.t("期限", "Due"),
            esc(&at(t.due_at)),
            if followed {
                w.t("（活動記録済み）", " (activity recorded)")
            } else if p.now >= t.due_at {
                w.t("（期限超過）", " (overdue)")
            } else {
                ""
            }
        ));
    }
    if open.is_empty() {
        b.push_str(&format!(
            "<dt>{}</dt><dd>{}</dd>",
            w.t("タスク", "Task"),
            w.t("未完了のタスクはありません", "No open task")
        ));
    }
    b.push_str("</dl>");

    // Score, per model, in words.
    b.push_str(&format!("<h2>{}</h2>", w.t("スコア", "Score")));
    let scores = &view.scoring.scores;
    if scores.is_empty() {
        b.push_str(&score_sentence(
            &w,
            None,
            view.total,
            view.band.as_deref(),
            view.scoring.primary_grade(),
        ));
        b.push_str(&lines(&view.explanation));
    } else {
        for s in scores.values() {
            b.push_str(&score_sentence(
                &w,
                Some(&s.model_id),
                s.total,
                Some(&s.band),
                Some(&s.grade).filter(|g| !g.is_empty()).map(String::as_str),
            ));
            b.push_str(&lines(&s.explanation));
        }
    }

    // The activity form, then the task, acceptance and disqualification.
    b.push_str(&activity_form(p, &w, lead, zone));
    b.push_str(&action_forms(p, &w, lead, &open));

    // What happened.
    b.push_str(&format!("<h2>{}</h2>", w.t("活動履歴", "Activities")));
    if p.records.activities.is_empty() {
        b.push_str(&format!(
            "<p class=\"muted\">{}</p>",
            w.t("まだ活動は記録されていません。", "No activity recorded yet.")
        ));
    } else {
        b.push_str("<ul>");
        for a in p.records.activities.iter().take(RECENT) {
            let mut item = format!(
                "{} — {}（{}）",
                esc(&at(a.at)),
                w.kind(a.request.kind),
                w.result(a.request.result)
            );
            if let Some(c) = a.request.content.as_deref().filter(|c| !c.is_empty()) {
                item.push_str(&format!("<br>{}", esc(c)));
            }
            if let Some(n) = a.request.notes.as_deref().filter(|c| !c.is_empty()) {
                item.push_str(&format!("<br><span class=\"muted\">{}</span>", esc(n)));
            }
            item.push_str(&format!(
                "<br><span class=\"muted\">{}: {}</span>",
                w.t("記録者", "By"),
                esc(name_of(p.routing, &a.actor))
            ));
            b.push_str(&format!("<li>{item}</li>"));
        }
        b.push_str("</ul>");
    }
    if !p.records.stages.is_empty() {
        b.push_str(&format!("<h2>{}</h2><ul>", w.t("ステージ履歴", "Stage history")));
        for s in p.records.stages.iter().take(RECENT) {
            let by = match &s.by {
                Actor::System => w.t("自動", "automatic").to_owned(),
                Actor::User(u) => name_of(p.routing, u).to_owned(),
            };
            b.push_str(&format!(
                "<li>{} — {} → {}（{}）</li>",
                esc(&at(s.at)),
                w.stage(s.from),
                w.stage(s.to),
                esc(&by)
            ));
        }
        b.push_str("</ul>");
    }
    b.push_str(&format!(
        "<p class=\"muted\">{} {}</p>",
        w.t("リードID", "Lead id"),
        esc(&lead.to_string())
    ));
    page(if w.ja { "ja" } else { "en" }, &shown, &b)
}

fn score_sentence(w: &Words, model: Option<&str>, total: i64, band: Option<&str>, grade: Option<&str>) -> String {
    let band = band.unwrap_or(w.t("未評価", "unscored"));
    let grade = grade
        .map(|g| {
            if w.ja {
                format!("、グレード {g}")
            } else {
                format!(", grade {g}")
            }
        })
        .unwrap_or_default();
    let s = match (model, w.ja) {
        (Some(m), true) => format!("モデル「{m}」では {total} 点（{band}{grade}）です。内訳:"),
        (Some(m), false) => format!("Model “{m}” scores this lead {total} points ({band}{grade}), made of:"),
        (None, true) => format!("スコアは {total} 点（{band}{grade}）です。内訳:"),
        (None, false) => format!("This lead scores {total} points ({band}{grade}), made of:"),
    };
    format!("<p>{}</p>", esc(&s))
}

fn lines(explanation: &[crate::scoring::engine::Line]) -> String {
    if explanation.is_empty() {
        return String::new();
    }
    let items: String = explanation
        .iter()
        .map(|l| format!("<li><span class=\"pts\">{:+}</span> {}</li>", l.points, esc(&l.detail)))
        .collect();
    format!("<ul>{items}</ul>")
}

fn consent_state(view: &LeadView, w: &Words) -> &'static str {
    let c = &view.contact;
    if c.unsubscribed_at.is_some() {
        w.t("配信停止済み", "unsubscribed")
    } else if c.consent.as_ref().is_some_and(|k| k.opt_in && k.confirmed.is_some()) {
        w.t("同意あり（本人確認済み）", "opted in and confirmed")
    } else if c.consent_pending.is_some() {
        w.t("確認待ち（本人の確認がまだです）", "pending confirmation")
    } else if c.consent.as_ref().is_some_and(|k| k.opt_in) {
        w.t("同意あり（未確認）", "opted in (not confirmed)")
    } else {
        w.t("同意なし", "none")
    }
}

fn activity_form(p: &PageInput<'_>, w: &Words, lead: LeadId, zone: Tz) -> String {
    let today = p.now.with_timezone(&zone).date_naive();
    let opt = |v: &str, label: &str| format!("<option value=\"{v}\">{label}</option>");
    let types: String = [
        ("phone", ActivityType::Phone),
        ("email", ActivityType::Email),
        ("visit", ActivityType::Visit),
        ("web_meeting", ActivityType::WebMeeting),
    ]
    .iter()
    .map(|(v, k)| opt(v, w.kind(*k)))
    .collect();
    let results: String = [
        ("continue", ActivityResult::Continue),
        ("opportunity", ActivityResult::Opportunity),
        ("archive", ActivityResult::Archive),
    ]
    .iter()
    .map(|(v, r)| opt(v, w.result(*r)))
    .collect();
    format!(
        "<h2>{title}</h2><form method=\"post\" action=\"{lead}/activities?t={token}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label for=\"date\">{date}</label><input id=\"date\" name=\"date\" type=\"date\" value=\"{today}\" max=\"{today}\">\
<label for=\"type\">{kind}</label><select id=\"type\" name=\"type\">{types}</select>\
<label for=\"content\">{content}</label><textarea id=\"content\" name=\"content\" rows=\"3\" maxlength=\"2000\"></textarea>\
<label for=\"result\">{result}</label><select id=\"result\" name=\"result\">{results}</select>\
<label for=\"notes\">{notes}</label><textarea id=\"notes\" name=\"notes\" rows=\"2\" maxlength=\"2000\"></textarea>\
<button type=\"submit\">{save}</button></form>",
        title = w.t("活動を記録", "Record an activity"),
        token = esc(p.token),
        csrf = esc(p.csrf),
        date = w.t("日付", "Date"),
        kind = w.t("種別", "Type"),
        content = w.t("内容", "What happened"),
        result = w.t("結果", "Result"),
        notes = w.t("メモ", "Notes"),
        save = w.t("記録する", "Save"),
    )
}

/// The page's other actions, each a form to `{lead}/actions` with the page's CSRF token:
/// complete each open task, accept the lead (the move the stage machine calls acceptance by
/// sales: [`Move::Convert`], offered while the lead is in sales acceptance), disqualify with a
/// reason (required).
fn action_forms(p: &PageInput<'_>, w: &Words, lead: LeadId, open: &[&Task]) -> String {
    let token = esc(p.token);
    let csrf = esc(p.csrf);
    let form = |action: &str, fields: &str, button: &str| {
        format!(
            "<form method=\"post\" action=\"{lead}/actions?t={token}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"action\" value=\"{action}\">\
{fields}<button type=\"submit\">{button}</button></form>"
        )
    };
    let mut b = String::new();
    for t in open {
        b.push_str(&form(
            "complete",
            &format!("<input type=\"hidden\" name=\"task\" value=\"{}\">", esc(&t.task_id)),
            w.t("タスクを完了にする", "Mark the task done"),
        ));
    }
    let (stage, status) = (p.view.lead.stage, p.view.lead.status);
    if super::stage::next(stage, status, &Move::Convert).is_ok() {
        b.push_str(&form(
            "accept",
            "",
            w.t("受け入れる（商談化）", "Accept (to an opportunity)"),
        ));
    }
    if super::stage::next(stage, status, &Move::Disqualify).is_ok() {
        b.push_str(&form(
            "disqualify",
            &format!(
                "<label for=\"reason\">{}</label><textarea id=\"reason\" name=\"reason\" rows=\"2\" maxlength=\"2000\" required></textarea>",
                w.t("失格の理由（必須）", "Why it is disqualified (required)")
            ),
            w.t("失格にする", "Disqualify"),
        ));
    }
    if b.is_empty() {
        return b;
    }
    format!("<h2>{}</h2>{b}", w.t("対応", "Actions"))
}

/// An action the page's `actions` form asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageAction {
    /// The open task (its id) is done.
    Complete(String),
    /// Sales accepts the lead: [`Move::Convert`].
    Accept,
    /// [`Move::Disqualify`], with the reason given.
    Disqualify(String),
}

/// The `actions` form as posted.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub task: String,
    #[serde(default)]
    pub reason: String,
}

impl ActionForm {
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        serde_urlencoded::from_bytes(body).map_err(|e| format!("the form: {e}"))
    }

    /// What it asks for, or why it cannot be done (a disqualification needs its reason).
    pub fn action(&self) -> Result<PageAction, String> {
        match self.action.trim() {
            "complete" if !self.task.trim().is_empty() => Ok(PageAction::Complete(self.task.trim().to_owned())),
            "complete" => Err("task: which task".into()),
            "accept" => Ok(PageAction::Accept),
            "disqualify" => match self.reason.trim() {
                "" => Err("reason: required to disqualify".into()),
                r => Ok(PageAction::Disqualify(r.chars().take(MAX_TEXT).collect())),
            },
            _ => Err("action: complete, accept or disqualify".into()),
        }
    }
}

/// The line shown on the page after the form (`done=`) that sent the owner back to it.
pub fn done_notice(ja: bool, done: &str) -> &'static str {
    match (done, ja) {
        ("task", true) => "タスクを完了にしました。",
        ("task", false) => "The task is done.",
        ("accepted", true) => "リードを受け入れました（商談化）。",
        ("accepted", false) => "The lead was accepted (now an opportunity).",
        ("disqualified", true) => "リードを失格にしました。",
        ("disqualified", false) => "The lead was disqualified.",
        (_, true) => "活動を記録しました。",
        (_, false) => "The activity was recorded.",
    }
}

/// The activity form as posted (`application/x-www-form-urlencoded`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ActivityForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub date: String,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub result: String,
    #[serde(default)]
    pub notes: String,
}

/// Longest text kept from the form's free fields.
const MAX_TEXT: usize = 2000;

impl ActivityForm {
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        serde_urlencoded::from_bytes(body).map_err(|e| format!("the form: {e}"))
    }

    /// The activity it asks for, and when it happened: `now` for today (in `zone`) or no
    /// date, noon of an earlier day; a future day is refused.
    pub fn request(&self, zone: Tz, now: DateTime<Utc>) -> Result<(ActivityRequest, DateTime<Utc>), String> {
        let word = |v: &str| serde_json::Value::String(v.trim().to_owned());
        let kind: ActivityType = serde_json::from_value(word(&self.kind))
            .map_err(|_| "type: phone, email, visit or web_meeting".to_owned())?;
        let result: ActivityResult = if self.result.trim().is_empty() {
            ActivityResult::Continue
        } else {
            serde_json::from_value(word(&self.result))
                .map_err(|_| "result: continue, opportunity or archive".to_owned())?
        };
        let text = |v: &str| {
            let v = v.trim();
            (!v.is_empty()).then(|| v.chars().take(MAX_TEXT).collect::<String>())
        };
        let today = now.with_timezone(&zone).date_naive();
        let at = match self.date.trim() {
            "" => now,
            d => {
                let day = NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| "date: YYYY-MM-DD".to_owned())?;
                if day > today {
                    return Err("date: not in the future".into());
                } else if day == today {
                    now
                } else {
                    zone.from_local_datetime(&day.and_time(NaiveTime::from_hms_opt(12, 0, 0).unwrap_or_default()))
                        .earliest()
                        .map_or(now, |t| t.with_timezone(&Utc))
                }
            }
        };
        Ok((
            ActivityRequest {
                kind,
                result,
                content: text(&self.content),
                source: None,
                notes: text(&self.notes),
                recycle: false,
                reason: None,
                list: None,
            },
            at,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_reads_into_the_lead_apis_activity() {
        let now = Utc::now();
        let zone = chrono_tz::Asia::Tokyo;
        let today = now.with_timezone(&zone).date_naive();
        let f = ActivityForm::parse(
            format!("csrf=abc&date={today}&type=phone&content=%E9%9B%BB%E8%A9%B1+OK&result=continue&notes=").as_bytes(),
        )
        .unwrap();
        assert_eq!(f.csrf, "abc");
        let (req, at) = f.request(zone, now).unwrap();
        assert_eq!(req.kind, ActivityType::Phone);
        assert_eq!(req.result, ActivityResult::Continue);
        assert_eq!(req.content.as_deref(), Some("電話 OK"));
        assert_eq!(req.notes, None);
        assert_eq!(at, now);
        let bad = ActivityForm {
            kind: "fax".into(),
            ..Default::default()
        };
        assert!(bad.request(zone, now).is_err());
        let future = ActivityForm {
            kind: "visit".into(),
            date: (today + chrono::Duration::days(2)).to_string(),
            ..Default::default()
        };
        assert!(future.request(zone, now).is_err());
        let past = ActivityForm {
            kind: "web_meeting".into(),
            result: "opportunity".into(),
            date: (today - chrono::Duration::days(1)).to_string(),
            ..Default::default()
        };
        let (req, at) = past.request(zone, now).unwrap();
        assert_eq!(req.result, ActivityResult::Opportunity);
        assert!(at < now);
    }

    #[test]
    fn the_actions_form_reads_into_actions_and_a_disqualification_needs_its_reason() {
        let form = |b: &str| ActionForm::parse(b.as_bytes()).unwrap().action();
        assert_eq!(
            form("csrf=x&action=complete&task=first-contact-1"),
            Ok(PageAction::Complete("first-contact-1".into()))
        );
        assert_eq!(form("csrf=x&action=accept"), Ok(PageAction::Accept));
        assert_eq!(
            form("csrf=x&action=disqualify&reason=%E7%AB%B6%E5%90%88"),
            Ok(PageAction::Disqualify("競合".into()))
        );
        assert!(form("csrf=x&action=disqualify&reason=+++").is_err());
        assert!(form("csrf=x&action=disqualify").is_err());
        assert!(form("csrf=x&action=complete").is_err());
        assert!(form("csrf=x&action=delete").is_err());
    }

    #[test]
    fn the_denied_page_names_nothing() {
        let d = denied_page();
        assert!(d.contains("このリンクは使えません") && d.contains("This link cannot be used"));
    }
}
