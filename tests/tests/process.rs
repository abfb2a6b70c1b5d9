//! The process end to end: submit → scoring via SQS → a process run → the email in moto's
//! stored raw messages; ledger, overlap, unsubscribe, suppression, hand-off and SLA.

use chrono::{DateTime, Duration, FixedOffset, Utc};
use leadflow_tests::{emails_to, s, TestEnv};
use serde_json::{json, Value};

/// The next weekday 10:00 in Tokyo after now: inside the default send window.
fn t0() -> DateTime<Utc> {
    leadflow_tests::weekday_10am_tokyo()
}
fn t0_plus_3h() -> DateTime<Utc> {
    t0() + Duration::hours(3)
}
/// Past the task's due date (two days), an hour later.
fn t_due() -> DateTime<Utc> {
    t0() + Duration::days(2) + Duration::hours(1)
}
/// Past due + two more days: escalation time.
fn t_escalate() -> DateTime<Utc> {
    t0() + Duration::days(4) + Duration::hours(1)
}
/// A week later, at 10:00 on a weekday.
fn t_week() -> DateTime<Utc> {
    t0() + Duration::days(7)
}

/// Emails to an address about one lead (owners receive mail about many leads, from every test).
async fn about(address: &str, lead: &str) -> Vec<leadflow_tests::SentEmail> {
    emails_to(address)
        .await
        .into_iter()
        .filter(|m| m.text().contains(lead))
        .collect()
}

async fn lead(env: &TestEnv, body: Value) -> String {
    let r = env.post_json("demo", &body, &[]).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["lead_id"].as_str().unwrap().to_owned()
}

fn person(email: &str, extra: Value) -> Value {
    let mut p = json!({"email": email, "last_name": "山田", "first_name": "太郎", "consent": true});
    p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    p
}

#[tokio::test]
async fn nurture_email_end_to_end_with_headers_footer_merge_fields_and_the_bands_template() {
    let mut env = TestEnv::new().await;
    env.single_opt_in("demo").await;
    env.process.clock = t0;
    // IT and 300 employees (fit 30) + the form (5) = 35: warm, from the Ebook page.
    let warm = lead(
        &env,
        person("warm-e2e@example.jp", json!({"industry": "IT", "employees": "300"})),
    )
    .await;
    let cold = lead(&env, person("cold-e2e@example.jp", json!({"company": "Acme"}))).await;
    env.run_scoring().await;
    env.requests.take();
    let report = env.process.run().await.unwrap();
    assert_eq!((report.leads, report.emails, report.moves), (2, 2, 2), "{report:?}");

    let mails = emails_to("warm-e2e@example.jp").await;
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    // Marketing email goes through the configuration set: opens, clicks and bounces come back.
    let tracked = env.requests.bodies().into_iter().any(|(op, b)| {
        op.contains("outbound-emails")
            && b["Destination"]["ToAddresses"] == json!(["warm-e2e@example.jp"])
            && b["ConfigurationSetName"].is_string()
    });
    assert!(tracked);
    // The workflow rule: warm + Ebook → the Ebook follow-up, once.
    assert_eq!(m.subject(), "Ebookはお役に立ちましたか? / How was the ebook?");
    let text = m.text();
    assert!(text.starts_with("山田太郎様"), "{text}");
    for footer in [
        "株式会社リードフロー",
        "〒100-0005 東京都千代田区丸の内1-1-1",
        "support@example.jp / 03-0000-0000",
        "https://example.jp/privacy",
        "https://leadflow.test/unsubscribe?token=u2.k1.",
    ] {
        assert!(text.contains(footer), "{footer} in text");
        assert!(m.html().contains(footer), "{footer} in html");
    }
    let lu = m.header("List-Unsubscribe");
    // The email's own link: its unsubscribe is counted for its program and step.
    assert!(
        lu.starts_with("<https://leadflow.test/unsubscribe?token=u2.k1."),
        "{lu}"
    );
    assert!(
        lu.contains("<mailto:unsubscribe@example.jp?subject=unsubscribe>"),
        "{lu}"
    );
    assert_eq!(m.header("List-Unsubscribe-Post"), "List-Unsubscribe=One-Click");
    assert!(m.header("From").contains("<news@example.jp>"));

    let cold_mail = &emails_to("cold-e2e@example.jp").await[0];
    assert!(
        cold_mail
            .subject()
            .starts_with("業界トレンドのご紹介 / Industry trends for Acme"),
        "the cold band's template: {}",
        cold_mail.subject()
    );

    // The ledger holds the send with SES's message id; the id maps back to the lead for engagement events.
    let ledger = env
        .item(&format!("LEAD#{warm}"), "SEND#rule:ebook_followup")
        .await
        .unwrap();
    assert_eq!(
        (s(&ledger, "status"), s(&ledger, "message_id")),
        ("sent".to_owned(), m.message_id.clone())
    );
    let msg = env.item(&format!("SESMSG#{}", m.message_id), "SESMSG").await.unwrap();
    assert_eq!(s(&msg, "lead_id"), warm);
    let _ = cold;

    // A second run sends nothing new.
    let again = env.process.run().await.unwrap();
    assert_eq!(again.emails, 0, "{again:?}");
    assert_eq!(emails_to("warm-e2e@example.jp").await.len(), 1);
    // A week later the warm program goes on with its first step (after the 24-hour gap).
    env.process.clock = t_week;
    env.process.run().await.unwrap();
    let subjects: Vec<String> = emails_to("warm-e2e@example.jp")
        .await
        .iter()
        .map(|m| m.subject())
        .collect();
    assert_eq!(
        subjects,
        [
            "Ebookはお役に立ちましたか? / How was the ebook?",
            "製品のご紹介 / Our product"
        ]
    );
}

#[tokio::test]
async fn requests_per_lead_and_per_email() {
    let mut env = TestEnv::new().await;
    env.single_opt_in("demo").await;
    env.process.clock = t0;
    lead(&env, person("count@example.jp", json!({}))).await;
    env.run_scoring().await;
    env.requests.take();
    env.process.run().await.unwrap();
    let ops = env.requests.take();
    let fixed = ops.iter().filter(|o| *o == "Query").count();
    // The scoring configuration's read takes the segment definitions too (one partition).
    assert_eq!(
        fixed,
        8 + 8 + 1 + 16,
        "the interaction outbox shards, the events outbox shards, the segments, the due shards: {ops:?}"
    );
    let per_lead: Vec<&String> = ops.iter().filter(|o| *o != "Query").collect();
    // 3 config reads; lease (UpdateItem), contact (GetItem); claim, send, mark sent; save, its
    // events (the move to MQL) published and their outbox entry removed.
    assert_eq!(
        per_lead,
        [
            "GetItem",
            "GetItem",
            "GetItem",
            "UpdateItem",
            "GetItem",
            "TransactWriteItems",
            "POST /v2/email/outbound-emails",
            "TransactWriteItems",
            "TransactWriteItems",
            "PutEvents",
            "BatchWriteItem"
        ],
        "{ops:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_overlapping_runs_send_each_email_once() {
    let mut env = TestEnv::new().await;
    env.single_opt_in("demo").await;
    env.process.clock = t0;
    for i in 0..4 {
        lead(&env, person(&format!("overlap{i}@example.jp"), json!({}))).await;
    }
    env.run_scoring().await;
    let mut other = env.stack.process().unwrap();
    other.clock = t0;
    let (a, b) = futures::join!(env.process.run(), other.run());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.emails + b.emails, 4, "{a:?} {b:?}");
    for i in 0..4 {
        assert_eq!(emails_to(&format!("overlap{i}@example.jp")).await.len(), 1);
    }
}

#[tokio::test]
async fn one_click_unsubscribe_and_suppression_stop_email_and_forged_tokens_are_refused() {
    let mut env = TestEnv::new().await;
    env.single_opt_in("demo").await;
    env.process.clock = t0;
    let unsub = lead(&env, person("unsub@example.jp", json!({}))).await;
    let _bounced = lead(&env, person("bounced@example.jp", json!({}))).await;
    let no_consent = lead(&env, json!({"email": "noconsent@example.jp", "last_name": "同意なし"})).await;
    env.run_scoring().await;
    let first = env.process.run().await.unwrap();
    assert_eq!(first.skipped.get("no opt-in"), Some(&1), "skipped, by why: {first:?}");
    assert_eq!(emails_to("noconsent@example.jp").await.len(), 0, "no opt-in, no email");
    let _ = no_consent;
    let first = &emails_to("unsub@example.jp").await[0];
    let lu = first.header("List-Unsubscribe");
    let url = lu.trim_start_matches('<').split('>').next().unwrap().to_owned();
    let target = url.trim_start_matches("https://leadflow.test");
    let contact = env
        .items_of("contact")
        .await
        .into_iter()
        .find(|c| s(c, "email") == "unsub@example.jp")
        .unwrap();
    let contact_key = s(&contact, "pk");

    // A forged or altered token: 400, nothing changes.
    let flipped = if target.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{flipped}", &target[..target.len() - 1]);
    let r = env
        .send(
            "POST",
            &forged,
            &[("content-type", "application/x-www-form-urlencoded")],
            b"List-Unsubscribe=One-Click",
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(!env
        .item(&contact_key, "CONTACT")
        .await
        .unwrap()
        .contains_key("unsubscribed_at"));
    // The confirmation page, then the RFC 8058 one-click POST, twice (idempotent).
    let page = env.send("GET", target, &[], b"").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert!(page
        .header("content-security-policy")
        .is_some_and(|c| c.contains("frame-ancestors 'none'") && c.contains("default-src 'none'")));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert!(page.body.as_str().unwrap().contains("配信を停止する / Unsubscribe"));
    for _ in 0..2 {
        let r = env
            .send(
                "POST",
                target,
                &[("content-type", "application/x-www-form-urlencoded")],
                b"List-Unsubscribe=One-Click",
            )
            .await;
        assert_eq!(r.status, 200);
    }
    let after = env.item(&contact_key, "CONTACT").await.unwrap();
    assert!(after.contains_key("unsubscribed_at"));
    // Counted once, for the program and step of the email whose link it was.
    use leadflow_domain::report::{day_of, SENT, UNSUBSCRIBED};
    let today = day_of(Utc::now());
    let (from, to) = (day_of(t0()).min(today), day_of(t0()).max(today));
    let rows = leadflow_cli::report_email(&env.cli_target(), from, to).await.unwrap();
    let unsubscribed: Vec<_> = rows
        .iter()
        .filter(|r| r.counts.get(UNSUBSCRIBED).copied().unwrap_or(0) > 0)
        .collect();
    assert_eq!(unsubscribed.len(), 1, "{rows:?}");
    assert_eq!(
        unsubscribed[0].counts[UNSUBSCRIBED], 1,
        "the second click counts nothing"
    );
    assert!(unsubscribed[0].counts[SENT] >= 1, "the row of a sent email: {rows:?}");
    let events = env.stack.take_events().await.unwrap();
    let unsub_events: Vec<_> = events.iter().filter(|e| e.kind == "contact.unsubscribed").collect();
    assert_eq!(unsub_events.len(), 1);
    assert_eq!(
        unsub_events[0].data["email"],
        format!("{}:{}", unsubscribed[0].program, unsubscribed[0].step)
    );

    // The other contact bounces permanently (SES event → scoring → suppressed).
    let bounced = emails_to("bounced@example.jp").await;
    let event = json!({"eventType": "Bounce", "mail": {"messageId": bounced[0].message_id, "timestamp": Utc::now().to_rfc3339()},
        "bounce": {"bounceType": "Permanent", "bounceSubType": "General", "timestamp": Utc::now().to_rfc3339()}});
    env.send_raw("EngagementQueue", &event.to_string()).await;
    env.run_scoring().await;

    // A week later the program would send its next step: neither gets anything.
    env.process.clock = t_week;
    let week = env.process.run().await.unwrap();
    assert_eq!(
        (week.skipped.get("unsubscribed"), week.skipped.get("suppressed")),
        (Some(&1), Some(&1)),
        "{week:?}"
    );
    assert_eq!(emails_to("unsub@example.jp").await.len(), 1);
    assert_eq!(emails_to("bounced@example.jp").await.len(), 1);
    let _ = unsub;
}

#[tokio::test]
async fn a_hot_lead_gets_owner_task_and_owner_email_and_the_sla_reminds_then_escalates() {
    let mut env = TestEnv::new().await;
    env.single_opt_in("demo").await;
    env.process.clock = t0;
    // IT + 300 + 部長 = 45 fit, + 5 for the form = 50: hot, sales-ready.
    let hot = lead(
        &env,
        person(
            "hot@example.jp",
            json!({"industry": "IT", "employees": "300", "job_title": "情報システム部 部長", "company": "Acme"}),
        ),
    )
    .await;
    env.run_scoring().await;
    env.stack.take_events().await.unwrap();
    let report = env.process.run().await.unwrap();
    assert_eq!(report.handoffs, 1, "{report:?}");
    // Its events: the moves and the hand-off, once; a second run hands nothing off again.
    let events = env.stack.take_events().await.unwrap();
    let handed: Vec<_> = events.iter().filter(|e| e.kind == "lead.handed_off").collect();
    assert_eq!(handed.len(), 1, "{events:?}");
    assert_eq!(handed[0].lead_id.unwrap().to_string(), hot);
    assert!(handed[0].data["owner"].as_str().is_some_and(|o| !o.is_empty()));
    assert!(handed[0].data["task_id"].as_str().is_some());
    assert!(events
        .iter()
        .any(|e| e.kind == "lead.stage_changed" && e.data["reason"].as_str().is_some()));
    env.process.run().await.unwrap();
    assert!(env
        .stack
        .take_events()
        .await
        .unwrap()
        .iter()
        .all(|e| e.kind != "lead.handed_off"));

    // Stage history, exactly: scored, then sales-ready skipping telemarketing.
    let mut history: Vec<_> = env
        .items_of("stage_change")
        .await
        .into_iter()
        .filter(|i| s(i, "pk") == format!("LEAD#{hot}"))
        .collect();
    history.sort_by_key(|h| s(h, "sk"));
    let moves: Vec<(String, String, String)> = history
        .iter()
        .map(|h| (s(h, "from"), s(h, "to"), s(h, "reason")))
        .collect();
    assert_eq!(
        moves,
        [
            (
                "inquiry".into(),
                "automated_marketing_qualification".into(),
                "first scored".into()
            ),
            (
                "automated_marketing_qualification".into(),
                "sales_acceptance".into(),
                "sales-ready: score 50".into()
            )
        ]
    );
    assert!(history
        .iter()
        .all(|h| h["by"].as_m().unwrap()["kind"].as_s().unwrap() == "system"));

    let lead_item = env.item(&format!("LEAD#{hot}"), "LEAD").await.unwrap();
    assert_eq!(
        (s(&lead_item, "stage"), s(&lead_item, "status"), s(&lead_item, "owner")),
        ("sales_acceptance".into(), "qualified".into(), "sato".into())
    );
    let task = env
        .item(&format!("LEAD#{hot}"), &format!("TASK#first-contact-{hot}"))
        .await
        .unwrap();
    assert_eq!(s(&task, "subject"), "first contact with hot lead");
    let due: DateTime<Utc> = s(&task, "due_at").parse().unwrap();
    assert_eq!(due, t0() + Duration::days(2));
    let reminder: DateTime<Utc> = s(&task, "reminder_at").parse().unwrap();
    assert_eq!(
        reminder
            .with_timezone(&FixedOffset::east_opt(9 * 3600).unwrap())
            .format("%H:%M")
            .to_string(),
        "09:00"
    );

    let owner_mail = about("sato@example.jp", &hot).await;
    assert_eq!(owner_mail.len(), 1);
    // In the owner's language (sato: Japanese), times in the owner's zone to the minute, no rule ids.
    assert!(
        owner_mail[0].subject().contains("ホットリードの担当になりました"),
        "{}",
        owner_mail[0].subject()
    );
    let body = owner_mail[0].text();
    let due_local = (t0() + Duration::days(2))
        .with_timezone(&FixedOffset::east_opt(9 * 3600).unwrap())
        .format("%Y-%m-%d %H:%M JST")
        .to_string();
    for line in [
        "佐藤 一郎 様",
        "期限: ",
        due_local.as_str(),
        "industry = IT",
        "employees 300",
        "title = director",
        "= 50 (hot)",
        &format!("リードを開く: https://leadflow.test/sales/leads/{hot}?t=l1.k1."),
    ] {
        assert!(body.contains(line), "{line} in owner email: {body}");
    }
    for rule_id in ["industry_it", "employees_100_500", "title_director"] {
        assert!(!body.contains(rule_id), "no rule ids: {body}");
    }
    assert!(
        emails_to("hot@example.jp").await.is_empty(),
        "a hot lead goes to sales, not to nurture"
    );
    // Internal: no unsubscribe headers, untracked (no configuration set), never the lead's email.
    assert!(
        owner_mail[0].parsed().header("List-Unsubscribe").is_none(),
        "{}",
        owner_mail[0].raw
    );
    let sends: Vec<_> = env
        .requests
        .bodies()
        .into_iter()
        .filter(|(op, b)| {
            op.contains("outbound-emails") && b["Destination"]["ToAddresses"] == json!(["sato@example.jp"])
        })
        .collect();
    assert_eq!(sends.len(), 1);
    assert!(sends[0].1.get("ConfigurationSetName").is_none(), "{}", sends[0].1);
    assert!(
        env.item(&format!("SESMSG#{}", owner_mail[0].message_id), "SESMSG")
            .await
            .is_none(),
        "the owner's opens and clicks must not score the lead"
    );

    // The SLA: nothing happens before the due date, then a reminder, then an escalation.
    env.process.clock = t0_plus_3h;
    env.process.run().await.unwrap();
    assert_eq!(about("sato@example.jp", &hot).await.len(), 1);
    env.process.clock = t_due;
    let r = env.process.run().await.unwrap();
    assert_eq!(r.reminders, 1, "{r:?}");
    env.process.run().await.unwrap();
    let sato: Vec<String> = about("sato@example.jp", &hot)
        .await
        .iter()
        .map(|m| m.subject())
        .collect();
    assert_eq!(sato.len(), 2, "reminded once: {sato:?}");
    assert!(sato[1].contains("リマインド"), "{sato:?}");
    env.process.clock = t_escalate;
    let r = env.process.run().await.unwrap();
    assert_eq!(r.escalations, 1, "{r:?}");
    let manager = about("tanaka@example.jp", &hot).await;
    assert_eq!(manager.len(), 1);
    assert!(
        manager[0].subject().contains("エスカレーション"),
        "{}",
        manager[0].subject()
    );
}

#[tokio::test]
async fn activities_stop_the_sla_and_manual_moves_go_through_the_stage_machine() {
    let mut env = TestEnv::new().await;
    env.single_opt_in("demo").await;
    env.process.clock = t0;
    let hot = lead(
        &env,
        person(
            "followed@example.jp",
            json!({"industry": "IT", "employees": "300", "job_title": "CEO"}),
        ),
    )
    .await;
    let warm = lead(
        &env,
        person("manual@example.jp", json!({"industry": "IT", "employees": "300"})),
    )
    .await;
    env.run_scoring().await;
    env.process.run().await.unwrap();
    let json_ct = [("content-type", "application/json")];

    let r = env
        .send(
            "POST",
            &format!("/leads/{hot}/activities"),
            &json_ct,
            json!({"type": "phone", "result": "continue", "content": "called, interested"})
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    env.process.clock = t_due;
    let report = env.process.run().await.unwrap();
    assert_eq!(report.reminders, 0, "followed up: no reminder");
    let task = env
        .item(&format!("LEAD#{hot}"), &format!("TASK#first-contact-{hot}"))
        .await
        .unwrap();
    assert_eq!(s(&task, "status"), "done");

    let bad = env
        .send(
            "POST",
            &format!("/leads/{warm}/stage"),
            &json_ct,
            json!({"move": "convert", "reason": "?"}).to_string().as_bytes(),
        )
        .await;
    assert_eq!((bad.status, bad.body["error"].as_str()), (409, Some("illegal_move")));
    assert!(bad.body["message"]
        .as_str()
        .unwrap()
        .contains("converts only from sales acceptance"));
    let ok = env
        .send(
            "POST",
            &format!("/leads/{warm}/stage"),
            &json_ct,
            json!({"move": "set_stage", "stage": "telemarketing_acceptance", "reason": "asked for a call"})
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(
        (ok.status, ok.body["to"].as_str()),
        (200, Some("telemarketing_acceptance")),
        "{}",
        ok.body
    );
    let won = env
        .send(
            "POST",
            &format!("/leads/{hot}/activities"),
            &json_ct,
            json!({"type": "visit", "result": "opportunity"}).to_string().as_bytes(),
        )
        .await;
    assert_eq!(
        (won.status, won.body["status"].as_str()),
        (200, Some("converted")),
        "{}",
        won.body
    );
    let again = env
        .send(
            "POST",
            &format!("/leads/{hot}/stage"),
            &json_ct,
            json!({"move": "set_stage", "stage": "inquiry"}).to_string().as_bytes(),
        )
        .await;
    assert_eq!(again.status, 409, "a converted lead stays converted");
    let junk = env
        .send("POST", &format!("/leads/{hot}/stage"), &json_ct, b"{\"move\": \"fly\"}")
        .await;
    assert_eq!(junk.status, 422);

    let manual: Vec<_> = env
        .items_of("stage_change")
        .await
        .into_iter()
        .filter(|h| s(h, "pk") == format!("LEAD#{warm}") && s(h, "reason") == "asked for a call")
        .collect();
    assert_eq!(manual.len(), 1);
    assert_eq!(
        manual[0]["by"].as_m().unwrap()["id"].as_s().unwrap(),
        leadflow_local::apigw::LOCAL_IAM_CALLER
    );
}

#[tokio::test]
async fn a_claim_withdrawn_after_an_ses_failure_gives_back_its_frequency_cap_slot() {
    let mut env = TestEnv::new().await;
    env.single_opt_in("demo").await;
    env.process.clock = t0;
    let id = lead(&env, person("slot@example.jp", json!({}))).await;
    env.run_scoring().await;
    let contact = s(&env.item(&format!("LEAD#{id}"), "LEAD").await.unwrap(), "contact_id");
    // SES unreachable: the SDK retries, then the claim is withdrawn.
    let working = std::mem::replace(
        &mut env.process.mailer,
        leadflow_aws::ses::SesMailer::new(
            aws_sdk_sesv2::Client::from_conf(
                aws_sdk_sesv2::config::Builder::from(
                    &leadflow_aws::config::emulator_sdk_config("http://127.0.0.1:9").await,
                )
                .build(),
            ),
            "news@example.jp",
            None,
        ),
    );
    let r = env.process.run().await.unwrap();
    assert_eq!(r.emails, 0, "{r:?}");
    assert!(emails_to("slot@example.jp").await.is_empty());
    let c = env.item(&format!("CONTACT#{contact}"), "CONTACT").await.unwrap();
    assert_eq!(c["sends"].as_l().map(Vec::len), Ok(0), "the slot is given back: {c:?}");
    assert!(env
        .items_of("send")
        .await
        .iter()
        .all(|l| s(l, "pk") != format!("LEAD#{id}")));
    // SES is back: the email goes out, once, and counts once.
    env.process.mailer = working;
    env.process.clock = || t0() + Duration::minutes(6);
    let r = env.process.run().await.unwrap();
    assert_eq!(r.emails, 1, "{r:?}");
    assert_eq!(emails_to("slot@example.jp").await.len(), 1);
    let c = env.item(&format!("CONTACT#{contact}"), "CONTACT").await.unwrap();
    assert_eq!(c["sends"].as_l().map(Vec::len), Ok(1));
}

#[tokio::test]
async fn double_opt_in_sends_one_confirmation_and_nurture_starts_only_after_the_click() {
    let mut env = TestEnv::new().await;
    env.process.clock = t0;
    let confirmed = lead(&env, person("doi@example.jp", json!({}))).await;
    let _never = lead(&env, person("doi-never@example.jp", json!({}))).await;
    env.run_scoring().await;
    let r = env.process.run().await.unwrap();
    assert_eq!(r.emails, 0, "no marketing email before confirmation: {r:?}");
    let mails = emails_to("doi@example.jp").await;
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert!(m.subject().contains("Please confirm your request"), "{}", m.subject());
    assert!(
        m.parsed().header("List-Unsubscribe").is_none(),
        "transactional: {}",
        m.raw
    );
    let untracked = env.requests.bodies().into_iter().any(|(op, b)| {
        op.contains("outbound-emails")
            && b["Destination"]["ToAddresses"] == json!(["doi@example.jp"])
            && b.get("ConfigurationSetName").is_none()
    });
    assert!(untracked, "a confirmation is not tracked");
    // Another run: the confirmation is never sent twice.
    env.process.clock = || t0() + Duration::minutes(10);
    env.process.run().await.unwrap();
    assert_eq!(emails_to("doi@example.jp").await.len(), 1);

    let text = m.text();
    let start = text.find("/confirm?token=").expect("a confirmation link");
    let target: String = text[start..].chars().take_while(|c| !c.is_whitespace()).collect();
    let contact_of = |email: &'static str| {
        let env = &env;
        async move {
            env.items_of("contact")
                .await
                .into_iter()
                .find(|c| s(c, "email") == email)
                .unwrap()
        }
    };
    // A forged link confirms nothing; opening the page confirms nothing (mail scanners open links).
    let flipped = if target.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{flipped}", &target[..target.len() - 1]);
    let form = [("content-type", "application/x-www-form-urlencoded")];
    assert_eq!(env.send("POST", &forged, &form, b"").await.status, 400);
    let page = env.send("GET", &target, &[], b"").await;
    assert_eq!(page.status, 200);
    assert!(page.body.as_str().unwrap().contains("確認する / Confirm"));
    assert!(!contact_of("doi@example.jp").await.contains_key("consent"));

    // The click: consent in force, with both steps as evidence.
    let done = env
        .send(
            "POST",
            &target,
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("user-agent", "Mail client"),
            ],
            b"",
        )
        .await;
    assert_eq!(done.status, 200);
    let c = contact_of("doi@example.jp").await;
    assert!(!c.contains_key("consent_pending"));
    let consent = c["consent"].as_m().unwrap();
    assert_eq!(consent["opt_in"].as_bool(), Ok(&true));
    assert_eq!(consent["source_form"].as_s().unwrap(), "demo");
    let confirmation = consent["confirmed"].as_m().unwrap();
    assert_eq!(confirmation["user_agent"].as_s().unwrap(), "Mail client");
    assert_eq!(confirmation["ip"].as_s().unwrap(), "203.0.113.7");
    // Confirming again changes nothing and says nothing different.
    let again = env.send("POST", &target, &form, b"").await;
    assert_eq!((again.status, again.body.clone()), (200, done.body.clone()));

    env.process.clock = || t0() + Duration::minutes(20);
    let r = env.process.run().await.unwrap();
    assert_eq!(r.emails, 1, "nurture starts after the click: {r:?}");
    let nurture: Vec<_> = emails_to("doi@example.jp")
        .await
        .into_iter()
        .filter(|m| m.parsed().header("List-Unsubscribe").is_some())
        .collect();
    assert_eq!(nurture.len(), 1);
    assert!(
        emails_to("doi-never@example.jp")
            .await
            .iter()
            .all(|m| m.parsed().header("List-Unsubscribe").is_none()),
        "an unconfirmed opt-in never receives marketing email"
    );
    // A confirmed person who submits again (consent ticked) is not asked to confirm again.
    lead(&env, person("doi@example.jp", json!({"company": "Again"}))).await;
    env.run_scoring().await;
    env.process.clock = || t0() + Duration::minutes(30);
    env.process.run().await.unwrap();
    let confirmations = emails_to("doi@example.jp")
        .await
        .into_iter()
        .filter(|m| m.subject().contains("Please confirm"))
        .count();
    assert_eq!(confirmations, 1);
    let _ = confirmed;
}

#[tokio::test]
async fn an_existing_lead_that_opts_in_later_gets_its_confirmation_at_the_next_run() {
    let mut env = TestEnv::new().await;
    env.process.clock = t0;
    lead(&env, json!({"email": "later@example.jp", "last_name": "後日"})).await;
    env.run_scoring().await;
    let r = env.process.run().await.unwrap();
    assert_eq!(r.emails, 0);
    assert!(emails_to("later@example.jp").await.is_empty(), "no consent, no email");
    // The same person comes back and ticks the box: the lead is matched, not new.
    lead(
        &env,
        json!({"email": "later@example.jp", "last_name": "後日", "consent": true}),
    )
    .await;
    env.run_scoring().await;
    env.process.clock = || t0() + Duration::minutes(10);
    env.process.run().await.unwrap();
    let mails = emails_to("later@example.jp").await;
    assert_eq!(mails.len(), 1, "the confirmation goes out");
    assert!(mails[0].subject().contains("Please confirm"));
}

#[tokio::test]
async fn two_activities_in_the_same_millisecond_are_both_kept() {
    let mut env = TestEnv::new().await;
    env.process.clock = t0; // a fixed clock: both activities carry the same time
    let id = lead(&env, person("busy@example.jp", json!({}))).await;
    for content in ["first call", "second call"] {
        let r = env
            .send(
                "POST",
                &format!("/leads/{id}/activities"),
                &[("content-type", "application/json")],
                json!({"type": "phone", "content": content}).to_string().as_bytes(),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let kept = env
        .items_of("activity")
        .await
        .into_iter()
        .filter(|a| s(a, "pk") == format!("LEAD#{id}"))
        .count();
    assert_eq!(kept, 2);
}

/// The email report, counted as SES reports: two nurture emails sent, both delivered, one
/// opened twice and clicked (one unique open, one click), the other bounced; every event
/// delivered twice changes nothing.
#[tokio::test]
async fn the_email_report_counts_sends_deliveries_unique_opens_clicks_and_bounces_once() {
    use leadflow_tests::ses_event;
    let mut env = TestEnv::new().await;
    env.single_opt_in("demo").await;
    env.process.clock = t0;
    lead(&env, person("rep-a@example.jp", json!({}))).await;
    lead(&env, person("rep-b@example.jp", json!({}))).await;
    env.run_scoring().await;
    let run = env.process.run().await.unwrap();
    assert_eq!(run.emails, 2, "{run:?}");
    let a = emails_to("rep-a@example.jp").await[0].message_id.clone();
    let b = emails_to("rep-b@example.jp").await[0].message_id.clone();
    let at = |m: i64| (Utc::now() - Duration::minutes(m)).to_rfc3339();
    let events = [
        ses_event(
            "Delivery",
            &a,
            json!({"timestamp": at(9), "recipients": ["rep-a@example.jp"]}),
        ),
        ses_event(
            "Delivery",
            &b,
            json!({"timestamp": at(9), "recipients": ["rep-b@example.jp"]}),
        ),
        ses_event(
            "Open",
            &a,
            json!({"timestamp": at(5), "userAgent": "Mozilla/5.0", "ipAddress": "192.0.2.1"}),
        ),
        ses_event(
            "Open",
            &a,
            json!({"timestamp": at(3), "userAgent": "Mozilla/5.0", "ipAddress": "192.0.2.1"}),
        ),
        ses_event(
            "Click",
            &a,
            json!({"timestamp": at(2), "link": "https://example.jp/p", "userAgent": "Mozilla/5.0", "ipAddress": "192.0.2.1"}),
        ),
        ses_event(
            "Bounce",
            &b,
            json!({"bounceType": "Permanent", "bounceSubType": "General", "timestamp": at(8), "bouncedRecipients": [{"emailAddress": "rep-b@example.jp"}], "feedbackId": "f"}),
        ),
    ];
    for e in &events {
        env.send_raw("EngagementQueue", e).await;
        env.send_raw("EngagementQueue", e).await;
    }
    env.run_scoring().await;
    // The second open, in a later batch: still one unique open.
    env.send_raw(
        "EngagementQueue",
        &ses_event(
            "Open",
            &a,
            json!({"timestamp": at(1), "userAgent": "Mozilla/5.0", "ipAddress": "192.0.2.1"}),
        ),
    )
    .await;
    env.run_scoring().await;
    let today = leadflow_domain::report::day_of(Utc::now());
    let from = leadflow_domain::report::day_of(t0()).min(today);
    let to = leadflow_domain::report::day_of(t0()).max(today);
    let rows = leadflow_cli::report_email(&env.cli_target(), from, to).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    let c = |k: &str| r.counts.get(k).copied().unwrap_or(0);
    use leadflow_domain::report::{BOUNCED, CLICKED, COMPLAINED, DELIVERED, OPENED, SENT};
    assert_eq!(
        (c(SENT), c(DELIVERED), c(OPENED), c(CLICKED), c(BOUNCED), c(COMPLAINED)),
        (2, 2, 1, 1, 1, 0),
        "{r:?}"
    );
    assert_eq!(r.rates["open"], Some(0.5));
    assert_eq!(r.rates["bounce"], Some(0.5));
    let text = leadflow_cli::render_email(&rows);
    assert!(text.contains("50.0%"), "{text}");
    let csv = String::from_utf8(leadflow_cli::email_csv(&rows, leadflow_cli::Cells::FormulaSafe).unwrap()).unwrap();
    assert!(csv.starts_with('\u{feff}'), "Excel reads the BOM");
    assert!(
        csv.lines().next().unwrap().ends_with("complaint_rate,unsubscribe_rate"),
        "{csv}"
    );
    assert!(
        csv.contains(",2,2,1,1,1,0,0,1.0000,0.5000,0.5000,0.5000,0.0000,0.0000"),
        "{csv}"
    );
}
