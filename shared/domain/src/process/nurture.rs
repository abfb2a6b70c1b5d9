//! Nurture email: programs per band with a cadence, workflow rules, templates rendered with a
//! real template engine, the legal footer, and the rules on who may be emailed and when.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::records::{Contact, Lead};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sender {
    pub from_name: String,
    pub from_email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

/// What the Act on Specified Electronic Mail asks every email to carry, plus a privacy link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegalFooter {
    pub sender: String,
    pub postal_address: String,
    pub inquiry: String,
    pub privacy_url: String,
    /// Where `mailto:` unsubscribe requests go (`List-Unsubscribe`).
    pub unsubscribe_mailto: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendWindow {
    pub time_zone: String,
    pub days: Vec<Weekday>,
    pub start_hour: u32,
    pub end_hour: u32,
}

impl Default for SendWindow {
    /// Weekdays 9–18 in Tokyo.
    fn default() -> Self {
        SendWindow {
            time_zone: "Asia/Tokyo".into(),
            days: vec![Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri],
            start_hour: 9,
            end_hour: 18,
        }
    }
}

impl SendWindow {
    fn tz(&self) -> Tz {
        self.time_zone.parse().unwrap_or(chrono_tz::Asia::Tokyo)
    }

    /// `now` if it is inside the window, else the window's next opening.
    pub fn next_open(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let tz = self.tz();
        let local = now.with_timezone(&tz);
        if self.days.contains(&local.weekday()) && local.hour() >= self.start_hour && local.hour() < self.end_hour {
            return now;
        }
        let start = NaiveTime::from_hms_opt(self.start_hour, 0, 0).unwrap_or_default();
        for offset in 0..8 {
            let day = local.date_naive() + Duration::days(offset);
            if !self.days.contains(&day.weekday()) {
                continue;
            }
            if let Some(open) = tz.from_local_datetime(&day.and_time(start)).earliest() {
                let open = open.with_timezone(&Utc);
                if open > now {
                    return open;
                }
            }
        }
        now + Duration::days(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrequencyCap {
    pub max_emails: u32,
    pub per_days: u32,
    /// At least this long between two nurture emails to one person, whichever of their leads
    /// they are for (a rule email and the program's next step never land in the same inbox
    /// on the same day).
    #[serde(default = "default_gap")]
    pub min_hours_between: u32,
}

fn default_gap() -> u32 {
    24
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub id: String,
    pub template: String,
    /// Days after the previous step (or after joining the program, for the first).
    pub after_days: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Program {
    pub band: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleCondition {
    /// The lead's band has just become this.
    pub band_becomes: String,
    /// The lead's campaign (its form's marketing context) is this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
}

/// SPEC's example: when a lead becomes warm and its source is "Ebook", send the Ebook follow-up once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowRule {
    pub id: String,
    pub when: RuleCondition,
    pub template: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailTemplate {
    pub subject: String,
    pub html: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NurtureConfig {
    pub sender: Sender,
    pub footer: LegalFooter,
    #[serde(default)]
    pub window: SendWindow,
    pub frequency_cap: FrequencyCap,
    pub programs: Vec<Program>,
    #[serde(default)]
    pub rules: Vec<WorkflowRule>,
    pub templates: BTreeMap<String, EmailTemplate>,
    /// A lead with no engagement for this many days is recycled back to nurture.
    pub recycle_after_days: u32,
    /// At most one confirmation email per address in this many hours, however many
    /// submissions name it (anyone can submit any address).
    #[serde(default = "default_confirmation_hours")]
    pub confirmation_every_hours: u32,
}

fn default_confirmation_hours() -> u32 {
    24
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("nurture configuration: {0}")]
pub struct NurtureConfigError(pub String);

impl NurtureConfig {
    /// Checks references and compiles every template, so a broken template is refused when
    /// loaded rather than producing a broken email.
    pub fn check(&self) -> Result<(), NurtureConfigError> {
        let err = |m: String| Err(NurtureConfigError(m));
        if self.window.time_zone.parse::<Tz>().is_err() {
            return err(format!("unknown time zone {}", self.window.time_zone));
        }
        if self.window.start_hour >= self.window.end_hour || self.window.end_hour > 24 || self.window.days.is_empty() {
            return err("the send window needs days and start_hour < end_hour <= 24".into());
        }
        if self.frequency_cap.max_emails == 0 || self.frequency_cap.per_days == 0 {
            return err("the frequency cap needs max_emails and per_days of at least 1".into());
        }
        let used = self
            .programs
            .iter()
            .flat_map(|p| p.steps.iter().map(|s| &s.template))
            .chain(self.rules.iter().map(|r| &r.template));
        for t in used {
            if !self.templates.contains_key(t) {
                return err(format!("template {t} is used but not defined"));
            }
        }
        let env = self.environment().map_err(NurtureConfigError)?;
        for name in self.templates.keys() {
            for part in ["subject", "html", "text"] {
                env.get_template(&format!("{name}.{part}"))
                    .map_err(|e| NurtureConfigError(format!("template {name}.{part}: {e}")))?;
            }
        }
        Ok(())
    }

    fn environment(&self) -> Result<minijinja::Environment<'static>, String> {
        let mut env = minijinja::Environment::new();
        // A missing merge value renders empty (and `default` gives a fallback): never a broken email.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
        for (name, t) in &self.templates {
            for (part, src) in [("subject", &t.subject), ("html", &t.html), ("text", &t.text)] {
                env.add_template_owned(format!("{name}.{part}"), src.clone())
                    .map_err(|e| format!("template {name}.{part}: {e}"))?;
            }
        }
        Ok(env)
    }

    pub fn program(&self, band: &str) -> Option<&Program> {
        self.programs.iter().find(|p| p.band == band)
    }
}

/// The salutation Japanese business email opens with: 姓名様, or a polite fallback.
pub fn salutation(contact: &Contact) -> String {
    let f = &contact.fields;
    match (f.last_name.as_deref(), f.first_name.as_deref()) {
        (Some(l), Some(g)) => format!("{l}{g}様"),
        (Some(l), None) => format!("{l}様"),
        (None, Some(g)) => format!("{g}様"),
        (None, None) => "ご担当者様".to_owned(),
    }
}

/// A rendered email, ready for MIME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// Renders a template for a contact and lead, with the legal footer on both parts.
pub fn render(
    config: &NurtureConfig,
    template: &str,
    contact: &Contact,
    lead: &Lead,
    band: &str,
    unsubscribe_url: &str,
) -> Result<RenderedEmail, String> {
    let env = config.environment()?;
    let f = &contact.fields;
    // Only values that exist: a missing one is undefined, so `default(...)` applies and it
    // renders empty otherwise, never as "None".
    let mut ctx = serde_json::Map::new();
    let mut put = |k: &str, v: Option<&str>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            ctx.insert(k.to_owned(), v.into());
        }
    };
    put("last_name", f.last_name.as_deref());
    put("first_name", f.first_name.as_deref());
    put("company", f.company.as_deref());
    put("job_title", f.job_title.as_deref());
    put("industry", f.industry.as_deref());
    put("country", f.country.as_deref());
    put("campaign", lead.campaign.as_deref());
    put("form_id", Some(&lead.form_id));
    put("band", Some(band));
    put("unsubscribe_url", Some(unsubscribe_url));
    put("privacy_url", Some(&config.footer.privacy_url));
    put("sender", Some(&config.footer.sender));
    ctx.insert("salutation".into(), salutation(contact).into());
    let ctx = minijinja::Value::from_serialize(&ctx);
    let part = |p: &str| {
        env.get_template(&format!("{template}.{p}"))
            .and_then(|t| t.render(&ctx))
            .map_err(|e| format!("{template}.{p}: {e}"))
    };
    let footer = &config.footer;
    let text_footer = format!(
        "\n\n--\n{}\n{}\nお問い合わせ / Inquiries: {}\nプライバシーポリシー / Privacy policy: {}\n配信停止 / Unsubscribe: {}\n",
        footer.sender, footer.postal_address, footer.inquiry, footer.privacy_url, unsubscribe_url
    );
    let html_footer = format!(
        "<hr><p style=\"font-size:12px;color:#555\">{}<br>{}<br>お問い合わせ / Inquiries: {}<br><a href=\"{}\">プライバシーポリシー / Privacy policy</a> | <a href=\"{}\">配信停止 / Unsubscribe</a></p>",
        crate::escape_html(&footer.sender),
        crate::escape_html(&footer.postal_address),
        crate::escape_html(&footer.inquiry),
        crate::escape_html(&footer.privacy_url),
        crate::escape_html(unsubscribe_url)
    );
    let html = part("html")?;
    let html = match html.rfind("</body>") {
        Some(i) => format!("{}{html_footer}{}", &html[..i], &html[i..]),
        None => format!("{html}{html_footer}"),
    };
    Ok(RenderedEmail {
        subject: part("subject")?.trim().to_owned(),
        html,
        text: format!("{}{text_footer}", part("text")?),
    })
}

/// The MIME message: multipart/alternative text and HTML, with RFC 8058 one-click unsubscribe.
/// Text for a header: control characters (CR, LF, tab, …) become spaces, so no value can
/// start a header of its own, whatever the MIME library does.
pub fn header_text(s: &str) -> String {
    let cleaned: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A display name for an address header: as [`header_text`], and without the characters that
/// end or split a display name (`"`, `<`, `>`, `,`, `;`, `\`, `:`, `@`), so a name can never
/// add a recipient.
pub fn display_name(s: &str) -> String {
    header_text(&s.replace(['"', '<', '>', ',', ';', '\\', ':', '@'], " "))
}

/// The MIME message. Marketing email carries `List-Unsubscribe` (URL and mailto) with
/// one-click; internal email (owners, managers) passes `None` and carries neither.
pub fn mime(
    config: &NurtureConfig,
    to: &str,
    to_name: &str,
    email: &RenderedEmail,
    unsubscribe_url: Option<&str>,
    message_id: &str,
) -> Result<Vec<u8>, String> {
    use mail_builder::headers::raw::Raw;
    use mail_builder::headers::url::URL;
    let mailto = format!("mailto:{}?subject=unsubscribe", config.footer.unsubscribe_mailto);
    let name = display_name(to_name);
    let b = mail_builder::MessageBuilder::new()
        .from((display_name(&config.sender.from_name), config.sender.from_email.clone()));
    // No name (a confirmation greets nobody by a name a stranger may have typed): the bare address.
    let b = match name.trim() {
        "" => b.to(to.to_owned()),
        _ => b.to((name, to.to_owned())),
    };
    let mut b = b
        .subject(header_text(&email.subject))
        .message_id(message_id)
        .text_body(email.text.as_str())
        .html_body(email.html.as_str());
    if let Some(url) = unsubscribe_url {
        b = b
            .header("List-Unsubscribe", URL::new_list([url, mailto.as_str()].into_iter()))
            .header("List-Unsubscribe-Post", Raw::new("List-Unsubscribe=One-Click"));
    }
    if let Some(r) = &config.sender.reply_to {
        b = b.reply_to(r.as_str());
    }
    b.write_to_vec().map_err(|e| e.to_string())
}

/// Why a contact may not be emailed now, if so.
pub fn blocked(contact: &Contact) -> Option<&'static str> {
    if contact.suppressed.is_some() {
        Some("suppressed")
    } else if contact.unsubscribed_at.is_some() {
        Some("unsubscribed")
    } else if !contact.consent.as_ref().is_some_and(|c| c.opt_in) {
        Some("no opt-in")
    } else if contact.email.is_none() {
        Some("no email address")
    } else {
        None
    }
}

/// Sends within the cap's period, oldest first, pruned of those outside it.
pub fn recent_sends(sends: &[DateTime<Utc>], cap: FrequencyCap, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let from = now - Duration::days(i64::from(cap.per_days));
    let mut v: Vec<_> = sends.iter().copied().filter(|t| *t > from).collect();
    v.sort();
    v
}

/// When the cap allows the next email (now, or when the oldest recent send leaves the period).
pub fn cap_allows_at(sends: &[DateTime<Utc>], cap: FrequencyCap, now: DateTime<Utc>) -> DateTime<Utc> {
    let recent = recent_sends(sends, cap, now);
    if cap.max_emails == 0 {
        // No email at all (refused by `check`, but never a panic).
        return now + Duration::days(i64::from(cap.per_days.max(1)));
    }
    if (recent.len() as u32) < cap.max_emails {
        now
    } else {
        recent[recent.len() - cap.max_emails as usize] + Duration::days(i64::from(cap.per_days)) + Duration::seconds(1)
    }
}
