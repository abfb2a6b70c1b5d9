//! One scheduled run of the process: the leads and tasks that are due, within a time budget,
//! safe when two runs overlap (a lease per lead; a ledger claim per email).

use std::collections::HashSet;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::handoff::{new_task, sla, RoutingConfig, Sla, Task, TaskStatus};
use super::nurture::{mime, recent_sends, render, NurtureConfig, RenderedEmail};
use super::plan::{after_send, plan, LeadView};
use super::ports::{Audience, Claim, ConfirmationSlot, DueItem, LeadSave, MailError, Mailer, ProcessStore};
use super::unsubscribe;
use crate::ports::StoreError;
use crate::records::{ContactId, LeadId};
use crate::scoring::AttributeMaps;

pub struct RunConfig<'a> {
    pub nurture: &'a NurtureConfig,
    pub routing: &'a RoutingConfig,
    pub maps: &'a AttributeMaps,
    /// Signs the unsubscribe links of nurture emails (never confirmation links).
    pub unsubscribe_keys: &'a unsubscribe::Keyring,
    /// Signs the opt-in confirmation links (never unsubscribe links).
    pub confirm_keys: &'a unsubscribe::Keyring,
    /// Signs the links to a lead's page in owners' emails ([`super::lead_link`]); without it
    /// they link to routing.json's `lead_url`, if any.
    pub lead_keys: Option<&'a unsubscribe::Keyring>,
    /// The public base URL of the API (`https://…`), for unsubscribe links.
    pub public_url: &'a str,
    pub run_id: &'a str,
    pub now: DateTime<Utc>,
    /// Stop taking new leads after this (below the Lambda timeout).
    pub deadline: Instant,
    pub limit: usize,
    /// The configured segments, kept current for each lead the run saves.
    pub segments: &'a [crate::segment::Segment],
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunReport {
    pub due: usize,
    pub leads: usize,
    pub moves: usize,
    pub emails: usize,
    pub handoffs: usize,
    pub reminders: usize,
    pub escalations: usize,
    pub held: usize,
    pub busy: usize,
    pub failed: usize,
    /// Sending stopped for this run (SES throttling); the leads stay due.
    pub throttled: bool,
    /// The time budget ran out; the next run carries on.
    pub out_of_time: bool,
    /// Nurture emails due but not sent, by why (`frequency cap`, `no opt-in`, `unsubscribed`,
    /// `outside the send window`, `rejected`, `given up` …).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub skipped: std::collections::BTreeMap<String, usize>,
}

/// The unsubscribe link of a nurture email (its send key, `warm:1`, counts the unsubscribe
/// for that program and step).
pub fn unsubscribe_url(cfg: &RunConfig<'_>, contact: ContactId, email_key: &str) -> String {
    format!(
        "{}/unsubscribe?token={}",
        cfg.public_url.trim_end_matches('/'),
        unsubscribe::email_token(cfg.unsubscribe_keys, contact, email_key)
    )
}

/// An email to an owner or manager, in their language, with times in their time zone.
#[allow(clippy::too_many_arguments)]
fn owner_email(
    cfg: &RunConfig<'_>,
    kind: &str,
    to: &super::handoff::Owner,
    view_line: &str,
    task: &Task,
    lead_id: LeadId,
    explanation: &str,
    contact: Option<&crate::records::Contact>,
) -> RenderedEmail {
    let zone: chrono_tz::Tz = to.time_zone.parse().unwrap_or(chrono_tz::Asia::Tokyo);
    let due = task.due_at.with_timezone(&zone).format("%Y-%m-%d %H:%M %Z").to_string();
    // The lead's page, by a link only this recipient's (see lead_link); routing.json's
    // `lead_url` only where no link keys are configured.
    let url = match cfg.lead_keys {
        Some(keys) => Some(super::lead_link::url(
            cfg.public_url,
            keys,
            cfg.routing,
            &to.id,
            lead_id,
            cfg.now,
        )),
        None => {
            (!cfg.routing.lead_url.is_empty()).then(|| cfg.routing.lead_url.replace("{lead_id}", &lead_id.to_string()))
        }
    };
    let ja = to.locale == "ja";
    let (subject, opening) = match (kind, ja) {
        ("handoff", true) => (
            format!("【leadflow】ホットリードの担当になりました: {view_line}"),
            "ホットリードの担当に割り当てられました。期限までに最初の連絡をお願いします。",
        ),
        ("handoff", false) => (
            format!("[leadflow] {}: {view_line}", task.subject),
            "A hot lead has been assigned to you. Please make first contact by the due time.",
        ),
        ("reminder", true) => (
            format!("【leadflow】リマインド: 未対応のホットリード {view_line}"),
            "割り当て後、まだ活動が記録されていないホットリードです。",
        ),
        ("reminder", false) => (
            format!("[leadflow] Reminder — not yet followed: {view_line}"),
            "This hot lead has had no activity since it was assigned.",
        ),
        (_, true) => (
            format!("【leadflow】エスカレーション: 期限を過ぎたホットリード {view_line}"),
            "期限を過ぎても活動が記録されていないホットリードです。",
        ),
        (_, false) => (
            format!("[leadflow] Escalation — hot lead not followed: {view_line}"),
            "This hot lead is past its due date with no activity.",
        ),
    };
    let labels = if ja {
        ["リード", "タスク", "期限", "担当", "スコア", "リードを開く"]
    } else {
        ["Lead", "Task", "Due", "Owner", "Score", "Open the lead"]
    };
    let mut text = format!(
        "{}{}\n\n{opening}\n\n{}: {view_line}\n{}: {}\n{}: {due}\n{}: {}\n",
        to.name,
        if ja { " 様" } else { "" },
        labels[0],
        labels[1],
        task.subject,
        labels[2],
        labels[3],
        cfg.routing
            .owner(&task.owner)
            .map_or(task.owner.as_str(), |o| o.name.as_str()),
    );
    if let Some(c) = contact {
        let (phone, email) = if ja {
            ("電話", "メール")
        } else {
            ("Phone", "Email")
        };
        text.push_str(&format!(
            "{phone}: {}\n{email}: {}\n",
            c.fields.phone.as_deref().filter(|p| !p.is_empty()).unwrap_or("—"),
            c.email.as_ref().map_or("—", |e| e.as_str())
        ));
    }
    if !explanation.is_empty() {
        text.push_str(&format!("\n{}:\n{explanation}\n", labels[4]));
    }
    if let Some(u) = &url {
        text.push_str(&format!("\n{}: {u}\n", labels[5]));
    }
    let link = url
        .as_ref()
        .map(|u| format!("<p><a href=\"{}\">{}</a></p>", crate::escape_html(u), labels[5]))
        .unwrap_or_default();
    let html = format!(
        "<pre style=\"white-space:pre-wrap;word-break:break-all;font-family:sans-serif\">{}</pre>{link}",
        crate::escape_html(&text)
    );
    RenderedEmail { subject, html, text }
}

/// The score's explanation for people: each line's points and what earned them (no rule ids).
fn explain(view: &LeadView) -> String {
    let mut s: String = view
        .explanation
        .iter()
        .map(|l| format!("  {:+}  {}\n", l.points, l.detail))
        .collect();
    s.push_str(&format!(
        "  = {} ({})",
        view.total,
        view.band.as_deref().unwrap_or("unscored")
    ));
    s
}

fn describe(view: &LeadView) -> String {
    let f = &view.contact.fields;
    let name = format!(
        "{}{}",
        f.last_name.as_deref().unwrap_or(""),
        f.first_name.as_deref().unwrap_or("")
    );
    format!(
        "{} / {} ({})",
        if name.is_empty() { "—" } else { &name },
        f.company.as_deref().unwrap_or("—"),
        view.lead.lead_id
    )
}

/// The confirmation email, once per request, for the lead whose submission asked (transactional:
/// untracked, no unsubscribe header, outside the send window and the cap). Anyone can submit
/// any address, so it is bounded and says nothing a submitter wrote: at most one per address
/// per `confirmation_every_hours`, none to a suppressed or unsubscribed address, none when
/// confirming would change nothing, a neutral greeting. Returns when to look again if it could
/// not go now (SES refused, the address had one recently); never drops a request SES did not take.
async fn send_confirmation(
    store: &impl ProcessStore,
    mailer: &impl Mailer,
    cfg: &RunConfig<'_>,
    view: &LeadView,
    report: &mut RunReport,
) -> Option<DateTime<Utc>> {
    let contact = &view.contact;
    let pending = contact.consent_pending.as_ref()?;
    if pending.lead_id != view.lead.lead_id
        || contact.suppressed.is_some()
        || contact.unsubscribed_at.is_some()
        || !pending.asks_anything(contact)
    {
        return None;
    }
    let retry = Some(cfg.now + super::ports::SEND_RETRY);
    if report.throttled {
        return retry;
    }
    let to = contact.email.as_ref()?.as_str().to_owned();
    let key = format!("confirm:{}", pending.nonce);
    let every = chrono::Duration::hours(i64::from(cfg.nurture.confirmation_every_hours));
    match store
        .claim_confirmation(contact.contact_id, &pending.nonce, cfg.now, cfg.now - every)
        .await
    {
        Ok(ConfirmationSlot::Taken) => {}
        // A newer request took its place: the lead it names is due and sends that one.
        Ok(ConfirmationSlot::Replaced) => return None,
        // The address had one recently: this request's email goes when the interval is over.
        Ok(ConfirmationSlot::SentAt(at)) => return Some(at + every),
        Err(e) => {
            tracing::warn!(lead_id = %view.lead.lead_id, error = %e, "confirmation email not sent");
            return retry;
        }
    }
    let url = format!(
        "{}/confirm?token={}",
        cfg.public_url.trim_end_matches('/'),
        unsubscribe::confirm_token(cfg.confirm_keys, contact.contact_id, &pending.nonce)
    );
    let text = format!(
        "お客様\n\nこのメールアドレスで当社のフォームからお申し込みがありました。ご本人の場合は、下のリンクを開いて確認してください。\n\
         確認されるまで、ご案内メールの配信やご登録内容の変更は行いません。お心当たりがない場合は、このメールを破棄してください。\n\n\
         Dear customer,\n\nA form on our site was submitted with this email address. If it was you, please open the link below \
         to confirm; until you do, we send you no marketing email and change nothing we hold about you. \
         If this was not you, ignore this message.\n\n{url}\n\n{}\n{}\n",
        cfg.nurture.footer.sender, cfg.nurture.footer.inquiry
    );
    let html = format!(
        "<pre style=\"white-space:pre-wrap;word-break:break-all;font-family:sans-serif\">{}</pre><p><a href=\"{}\">確認する / Confirm</a></p>",
        crate::escape_html(&text),
        crate::escape_html(&url)
    );
    let email = RenderedEmail {
        subject: "【ご確認】お申し込みの確認 / Please confirm your request".into(),
        html,
        text,
    };
    let recipient = Recipient {
        address: &to,
        name: "",
        audience: Audience::Transactional,
    };
    let sent = send_once(store, mailer, cfg, view.lead.lead_id, &key, recipient, &email).await;
    if !matches!(sent, Ok(true)) {
        // Not sent now (or this request's was sent before): the address's slot is given back.
        if let Err(e) = store
            .release_confirmation(contact.contact_id, cfg.now, contact.confirmation_sent_at)
            .await
        {
            tracing::warn!(error = %e, "confirmation slot not given back; the next waits its interval");
        }
    }
    match sent {
        Ok(_) => None,
        Err(e @ (MailError::Throttled(_) | MailError::Paused(_))) => {
            tracing::warn!(error = %e, "SES refuses to send now; sending stops for this run");
            report.throttled = true;
            retry
        }
        Err(e @ MailError::Unavailable(_)) => {
            tracing::warn!(lead_id = %view.lead.lead_id, error = %e, "confirmation email not sent");
            retry
        }
        Err(e) => {
            tracing::warn!(lead_id = %view.lead.lead_id, error = %e, "confirmation email rejected");
            None
        }
    }
}

/// Who an email goes to: address, display name, and what kind of email it is to them.
struct Recipient<'a> {
    address: &'a str,
    name: &'a str,
    audience: Audience,
}

/// Sends an email that is not marketing (owners, managers, opt-in confirmations) once per key:
/// no unsubscribe header, not counted against the person's frequency cap.
async fn send_once(
    store: &impl ProcessStore,
    mailer: &impl Mailer,
    cfg: &RunConfig<'_>,
    lead: LeadId,
    key: &str,
    to: Recipient<'_>,
    email: &RenderedEmail,
) -> Result<bool, MailError> {
    match store
        .claim(lead, key, None, cfg.now)
        .await
        .map_err(|e| MailError::Unavailable(e.to_string()))?
    {
        Claim::Claimed => {}
        _ => return Ok(false),
    }
    let raw = mime(
        cfg.nurture,
        to.address,
        to.name,
        email,
        None,
        &format!("{key}.{lead}@leadflow"),
    )
    .map_err(MailError::Rejected)?;
    match mailer.send(raw, to.address, Some(lead), to.audience).await {
        Ok(id) => {
            store
                .sent(lead, None, key, &id, cfg.now)
                .await
                .map_err(|e| MailError::Unavailable(e.to_string()))?;
            Ok(true)
        }
        Err(e @ (MailError::Throttled(_) | MailError::Paused(_) | MailError::Unavailable(_))) => {
            let _ = store.release(lead, key, None).await;
            Err(e)
        }
        Err(e) => Err(e),
    }
}

pub async fn run(
    store: &impl ProcessStore,
    mailer: &impl Mailer,
    cfg: &RunConfig<'_>,
) -> Result<RunReport, StoreError> {
    let mut report = RunReport::default();
    // Page after page of what is due, until nothing new is due or the budget is spent; an item
    // that stays due (failed, leased elsewhere) is taken once per run.
    let mut seen: HashSet<DueItem> = HashSet::new();
    'pages: loop {
        let page = store.due(cfg.now, cfg.limit).await?;
        let full = page.len() >= cfg.limit;
        let fresh: Vec<DueItem> = page.into_iter().filter(|d| seen.insert(d.clone())).collect();
        if fresh.is_empty() {
            break;
        }
        report.due += fresh.len();
        for item in fresh {
            if Instant::now() >= cfg.deadline {
                report.out_of_time = true;
                break 'pages;
            }
            let result = match item {
                DueItem::Lead(lead) => process_lead(store, mailer, cfg, lead, &mut report).await,
                DueItem::Task(lead, task) => process_task(store, mailer, cfg, lead, &task, &mut report).await,
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "process: a due item failed; it stays due");
                report.failed += 1;
            }
        }
        if !full {
            break;
        }
    }
    Ok(report)
}

/// Whether a lead's own hand-off request (an `on_submit` form) may be honoured now: true when
/// there is none to honour, or the score hands it off anyway; otherwise it takes one of the
/// form's hand-offs for the day (Tokyo days), if any are left.
async fn handoff_request_within_cap(
    store: &impl ProcessStore,
    cfg: &RunConfig<'_>,
    view: &LeadView,
) -> Result<bool, StoreError> {
    let lead = &view.lead;
    let open = matches!(
        lead.status,
        crate::records::LeadStatus::Open | crate::records::LeadStatus::Qualified
    );
    let Some(request) = lead.handoff_requested else {
        return Ok(true);
    };
    if view.sales_ready || !open || lead.stage == crate::records::Stage::SalesAcceptance {
        return Ok(true);
    }
    let day = cfg.now.with_timezone(&chrono_tz::Asia::Tokyo).format("%Y-%m-%d");
    // A shared counter per form and day (the round-robin counters' kind): the value before ours.
    let taken = store
        .round_robin(&format!("handoff-cap#{}#{day}", lead.form_id))
        .await?;
    Ok(taken < u64::from(request.daily_cap))
}

#[tracing::instrument(name = "lead", skip_all, fields(lead_id = %lead_id))]
async fn process_lead(
    store: &impl ProcessStore,
    mailer: &impl Mailer,
    cfg: &RunConfig<'_>,
    lead_id: LeadId,
    report: &mut RunReport,
) -> Result<(), StoreError> {
    let until = cfg.now + chrono::Duration::minutes(5);
    let Some(view) = store.lease(lead_id, cfg.run_id, cfg.now, until).await? else {
        report.busy += 1;
        return Ok(());
    };
    report.leads += 1;
    let mut view = view;
    let requested = view.lead.handoff_requested.is_some();
    let mut cap_retry = None;
    if !handoff_request_within_cap(store, cfg, &view).await? {
        // Over the form's daily cap: the request waits for the next Tokyo day's room (or the score).
        view.lead.handoff_requested = None;
        report.held += 1;
        *report.skipped.entry("hand-off cap reached".into()).or_default() += 1;
        cap_retry = Some(next_tokyo_day(cfg.now));
    }
    let confirm_retry = send_confirmation(store, mailer, cfg, &view, report).await;
    let p = plan(&view, cfg.nurture, cfg.now);
    report.moves += p.moves.len();
    let mut nurture = p.nurture.clone();
    let mut next_due = [p.next_due, confirm_retry, cap_retry].into_iter().flatten().min();
    // A request is consumed by the move to sales it made (a recycled lead does not go back).
    let handoff_request_done = requested && p.moves.iter().any(|m| m.to == crate::records::Stage::SalesAcceptance);
    if let Some(why) = &p.held {
        report.held += 1;
        *report.skipped.entry(why.clone()).or_default() += 1;
    }
    if let (Some(email), false) = (&p.email, report.throttled) {
        let contact = &view.contact;
        let before = recent_sends(&view.contact_sends, cfg.nurture.frequency_cap, cfg.now);
        let mut sends = before.clone();
        sends.push(cfg.now);
        match store
            .claim(
                lead_id,
                &email.key,
                Some((contact.contact_id, view.contact_send_seq, sends)),
                cfg.now,
            )
            .await?
        {
            Claim::Claimed => {
                let url = unsubscribe_url(cfg, contact.contact_id, &email.key);
                let to = contact
                    .email
                    .as_ref()
                    .map(|e| e.as_str().to_owned())
                    .unwrap_or_default();
                let sent =
                    match render(cfg.nurture, &email.template, contact, &view.lead, &email.band, &url).and_then(|r| {
                        mime(
                            cfg.nurture,
                            &to,
                            &super::nurture::salutation(contact),
                            &r,
                            Some(&url),
                            &format!("{}.{lead_id}@leadflow", email.key.replace(':', ".")),
                        )
                    }) {
                        Ok(raw) => mailer.send(raw, &to, Some(lead_id), Audience::Marketing).await,
                        Err(e) => Err(MailError::Rejected(format!("render: {e}"))),
                    };
                match sent {
                    Ok(message_id) => {
                        store
                            .sent(lead_id, Some(contact.contact_id), &email.key, &message_id, cfg.now)
                            .await?;
                        report.emails += 1;
                        nurture.failed_attempts = 0;
                        nurture = after_send(nurture, email, cfg.now);
                        next_due = Some(cfg.now); // the next step's time is worked out on the next run
                    }
                    Err(MailError::Rejected(code)) => {
                        // Kept claimed: this step is not retried for this lead.
                        tracing::warn!(lead_id = %lead_id, code, "nurture email rejected");
                        nurture.skipped.push(format!("{}: rejected ({code})", email.key));
                        *report.skipped.entry("rejected".into()).or_default() += 1;
                        nurture.failed_attempts = 0;
                        nurture = after_send(nurture, email, cfg.now);
                        next_due = Some(cfg.now);
                    }
                    Err(e) => {
                        let slot = (contact.contact_id, view.contact_send_seq + 1, before);
                        store.release(lead_id, &email.key, Some(slot)).await?;
                        next_due = Some(cfg.now + chrono::Duration::minutes(5));
                        match e {
                            MailError::Throttled(_) | MailError::Paused(_) => {
                                tracing::warn!(error = %e, "SES refuses to send now; sending stops for this run");
                                report.throttled = true;
                            }
                            other => {
                                nurture.failed_attempts += 1;
                                tracing::warn!(lead_id = %lead_id, error = %other, attempt = nurture.failed_attempts, "nurture email not sent");
                                if nurture.failed_attempts >= super::ports::MAX_SEND_ATTEMPTS {
                                    // Bounded: the lead moves on without this email, and says why.
                                    nurture.skipped.push(format!(
                                        "{}: not sent after {} attempts ({other})",
                                        email.key, nurture.failed_attempts
                                    ));
                                    *report.skipped.entry("given up".into()).or_default() += 1;
                                    nurture.failed_attempts = 0;
                                    nurture = after_send(nurture, email, cfg.now);
                                    next_due = Some(cfg.now);
                                }
                            }
                        }
                    }
                }
            }
            Claim::AlreadyClaimed => {
                nurture = after_send(nurture, email, cfg.now);
                next_due = Some(cfg.now);
            }
            Claim::ContactBusy => next_due = Some(cfg.now),
        }
    } else if p.email.is_some() {
        next_due = Some(cfg.now + chrono::Duration::minutes(5));
    }
    let mut owner = view.owner.clone();
    let mut task = None;
    if p.handoff {
        let routed = cfg
            .routing
            .route(&view.contact, &view.lead, cfg.maps)
            .map(|(o, _)| o.clone());
        let chosen = match routed {
            Some(o) => Some(o),
            None => {
                let n = store.round_robin("default").await?;
                cfg.routing.round_robin(n).cloned()
            }
        };
        if let Some(o) = chosen {
            let t = new_task(cfg.routing, &o, lead_id, cfg.now);
            let mut why = explain(&view);
            if !view.sales_ready && view.lead.handoff_requested.is_some_and(|r| r.unconfirmed) {
                // Handed off on the form's say-so: the salesperson must know nobody vouched for it.
                why = format!(
                    "{}\n{why}",
                    if o.locale == "ja" {
                        "⚠ メールアドレス未確認: 公開フォームからの依頼で、アドレスの持ち主による確認はまだありません。なりすましの可能性があります。"
                    } else {
                        "⚠ Unconfirmed address: requested through a public form; the address's owner has not confirmed it. It may not be them."
                    }
                );
            }
            let email = owner_email(
                cfg,
                "handoff",
                &o,
                &describe(&view),
                &t,
                lead_id,
                &why,
                Some(&view.contact),
            );
            match send_once(
                store,
                mailer,
                cfg,
                lead_id,
                &format!("handoff:{}", t.task_id),
                Recipient {
                    address: &o.email,
                    name: &o.name,
                    audience: Audience::Internal,
                },
                &email,
            )
            .await
            {
                Ok(_) => {}
                Err(MailError::Throttled(_) | MailError::Paused(_)) => report.throttled = true,
                Err(e) => tracing::warn!(lead_id = %lead_id, error = %e, "owner email not sent"),
            }
            owner = Some(o.id.clone());
            task = Some(t);
            report.handoffs += 1;
        }
    }
    let mut saved = view.lead.clone();
    (saved.stage, saved.status) = (p.stage, p.status);
    let upkeep = view.upkeep(
        cfg.segments,
        &saved,
        owner.as_deref().or(view.owner.as_deref()),
        &view.marks,
        &view.segments,
        cfg.now,
    );
    let tally = crate::report::Tally::new(cfg.now, crate::report::Dims::of(&view.lead))
        .moves(&p.moves, view.stage_since)
        .add(crate::report::HANDOFFS, i64::from(task.is_some()));
    store
        .save(&LeadSave {
            lead_id,
            run_id: cfg.run_id.to_owned(),
            stage: p.stage,
            status: p.status,
            moves: p.moves,
            nurture,
            owner,
            task,
            next_due,
            handoff_request_done,
            upkeep,
            tally,
            now: cfg.now,
        })
        .await
}

/// The start of the next day in Tokyo (the day a daily cap counts by).
fn next_tokyo_day(now: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::TimeZone;
    let tokyo = now.with_timezone(&chrono_tz::Asia::Tokyo).date_naive() + chrono::Duration::days(1);
    chrono_tz::Asia::Tokyo
        .from_local_datetime(&tokyo.and_hms_opt(0, 0, 0).unwrap_or_default())
        .earliest()
        .map_or(now + chrono::Duration::days(1), |t| t.with_timezone(&Utc))
}

#[tracing::instrument(name = "task", skip_all, fields(lead_id = %lead_id, task_id = %task_id))]
async fn process_task(
    store: &impl ProcessStore,
    mailer: &impl Mailer,
    cfg: &RunConfig<'_>,
    lead_id: LeadId,
    task_id: &str,
    report: &mut RunReport,
) -> Result<(), StoreError> {
    let Some((mut task, last_activity)) = store.task(lead_id, task_id).await? else {
        return Ok(());
    };
    let Some(owner) = cfg.routing.owner(&task.owner).cloned() else {
        return Ok(());
    };
    let line = format!("lead {lead_id}");
    match sla(cfg.routing, &task, last_activity, cfg.now) {
        Sla::Done => {
            task.status = TaskStatus::Done;
            store.save_task(&task, None).await?;
        }
        Sla::Remind => {
            let email = owner_email(cfg, "reminder", &owner, &line, &task, lead_id, "", None);
            match send_once(
                store,
                mailer,
                cfg,
                lead_id,
                &format!("reminder:{task_id}"),
                Recipient {
                    address: &owner.email,
                    name: &owner.name,
                    audience: Audience::Internal,
                },
                &email,
            )
            .await
            {
                Ok(_) => {
                    report.reminders += 1;
                    task.reminded_at = Some(cfg.now);
                }
                Err(MailError::Throttled(_) | MailError::Paused(_)) => report.throttled = true,
                Err(e) => tracing::warn!(error = %e, "reminder not sent"),
            }
            let next = match sla(cfg.routing, &task, last_activity, cfg.now) {
                Sla::Wait(at) => at,
                _ => Some(cfg.now + chrono::Duration::minutes(5)),
            };
            store.save_task(&task, next).await?;
        }
        Sla::Escalate => {
            let manager = owner
                .manager
                .as_deref()
                .and_then(|m| cfg.routing.owner(m))
                .cloned()
                .unwrap_or(owner.clone());
            let email = owner_email(cfg, "escalation", &manager, &line, &task, lead_id, "", None);
            match send_once(
                store,
                mailer,
                cfg,
                lead_id,
                &format!("escalation:{task_id}"),
                Recipient {
                    address: &manager.email,
                    name: &manager.name,
                    audience: Audience::Internal,
                },
                &email,
            )
            .await
            {
                Ok(_) => {
                    report.escalations += 1;
                    task.escalated_at = Some(cfg.now);
                }
                Err(MailError::Throttled(_) | MailError::Paused(_)) => report.throttled = true,
                Err(e) => tracing::warn!(error = %e, "escalation not sent"),
            }
            store
                .save_task(
                    &task,
                    if task.escalated_at.is_some() {
                        None
                    } else {
                        Some(cfg.now + chrono::Duration::minutes(5))
                    },
                )
                .await?;
        }
        Sla::Wait(at) => store.save_task(&task, at).await?,
    }
    Ok(())
}
