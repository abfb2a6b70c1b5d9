//! What a stranger on the public routes can and cannot do (issue 20): the mailbox is the only
//! identity a public caller has. Each test reproduces an attack through the real intake,
//! scoring and process functions on the emulator, and shows what it no longer achieves.

use chrono::{DateTime, Duration, Utc};
use leadflow_tests::{emails_to, s, TestEnv};
use serde_json::{json, Value};

const SITE_KEY: &str = "pk_demo_site_2026";

fn t0() -> DateTime<Utc> {
    leadflow_tests::weekday_10am_tokyo()
}

/// The person as they gave themselves, through the IAM-authorised route (what an import or an
/// integration records); returns (lead id, contact id).
async fn known_person(env: &TestEnv, email: &str) -> (String, String) {
    let r = env
        .post_json(
            "demo",
            &json!({"email": email, "last_name": "本物", "first_name": "花子", "company": "正しい株式会社",
                    "job_title": "課長", "industry": "finance", "phone": "03-1111-2222"}),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    (
        r.body["lead_id"].as_str().unwrap().to_owned(),
        r.body["contact_id"].as_str().unwrap().to_owned(),
    )
}

async fn contact(env: &TestEnv, contact_id: &str) -> leadflow_tests::Item {
    env.item(&format!("CONTACT#{contact_id}"), "CONTACT")
        .await
        .expect("the contact")
}

/// The confirmation link of the newest confirmation email to `address`, as a route target.
async fn confirmation_link(address: &str) -> String {
    let mails: Vec<_> = emails_to(address)
        .await
        .into_iter()
        .filter(|m| m.subject().contains("Please confirm"))
        .collect();
    let text = mails.last().expect("a confirmation email").text();
    let start = text.find("/confirm?token=").expect("a confirmation link");
    text[start..].chars().take_while(|c| !c.is_whitespace()).collect()
}

async fn click(env: &TestEnv, target: &str) {
    let r = env
        .send(
            "POST",
            target,
            &[("content-type", "application/x-www-form-urlencoded")],
            b"",
        )
        .await;
    assert_eq!(r.status, 200);
}

fn confirmations(mails: &[leadflow_tests::SentEmail]) -> usize {
    mails.iter().filter(|m| m.subject().contains("Please confirm")).count()
}

#[tokio::test]
async fn finding_1_the_import_form_is_not_public_and_public_consent_is_always_double_opt_in() {
    let mut env = TestEnv::new().await;
    env.process.clock = t0;
    // The import form on the public route is answered exactly as a form that does not exist.
    let forged = env
        .post_public("import", &json!({"email": "victim1@example.jp", "consent": true}), &[])
        .await;
    let unknown = env
        .post_public("no-such-form", &json!({"email": "victim1@example.jp"}), &[])
        .await;
    assert_eq!((forged.status, unknown.status), (404, 404), "{}", forged.body);
    assert_eq!(forged.body["error"], unknown.body["error"]);
    assert!(env.items_of("contact").await.is_empty(), "nothing stored");
    // Back ends still use it on the IAM-authorised route.
    let internal = env
        .post_json("import", &json!({"email": "imported@example.jp"}), &[])
        .await;
    assert_eq!(internal.status, 201, "{}", internal.body);

    // A form that turned double opt-in off still asks the mailbox on the public route.
    env.single_opt_in("demo").await;
    let r = env
        .post_public(
            "demo",
            &json!({"email": "victim1@example.jp", "last_name": "被害", "consent": true}),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    env.run_scoring().await;
    let run = env.process.run().await.unwrap();
    assert_eq!(run.emails, 0, "no nurture email to an unconfirmed address: {run:?}");
    let mails = emails_to("victim1@example.jp").await;
    assert_eq!(mails.len(), 1, "only the confirmation");
    assert_eq!(confirmations(&mails), 1);
    let c = contact_by_email(&env, "victim1@example.jp").await;
    assert!(!c.contains_key("consent"), "no consent in force before the click");

    // A form without consent wording asks nobody anything: a public "consent" records nothing.
    env.put_form(json!({"id": "plain", "name": "Plain", "fields": [], "allowed_origins": ["*"]}))
        .await;
    let r = env
        .post_public("plain", &json!({"email": "nowording@example.jp", "consent": true}), &[])
        .await;
    assert_eq!(r.status, 201);
    let c = contact_by_email(&env, "nowording@example.jp").await;
    assert!(
        !c.contains_key("consent") && !c.contains_key("consent_pending"),
        "{c:?}"
    );
}

#[tokio::test]
async fn finding_1_confirmed_consent_is_never_replaced_by_a_strangers_submission() {
    let mut env = TestEnv::new().await;
    env.process.clock = t0;
    // Even a form that takes a ticked box as consent (on trusted routes).
    env.single_opt_in("demo").await;
    // The person opts in and confirms from their mailbox.
    let r = env
        .post_public(
            "demo",
            &json!({"email": "owner@example.jp", "last_name": "本人", "consent": true}),
            &[("user-agent", "Owner browser")],
        )
        .await;
    assert_eq!(r.status, 201);
    env.run_scoring().await;
    env.process.run().await.unwrap();
    click(&env, &confirmation_link("owner@example.jp").await).await;
    let before = contact_by_email(&env, "owner@example.jp").await;
    let consent_before = before["consent"].clone();
    assert!(consent_before.as_m().unwrap().contains_key("confirmed"));
    // A stranger submits the same address with a "yes" and a browser of his own.
    let r = env
        .post_public(
            "demo",
            &json!({"email": "owner@example.jp", "last_name": "他人", "consent": true}),
            &[("user-agent", "Attacker browser")],
        )
        .await;
    assert_eq!(r.status, 201);
    let after = contact(&env, &s(&before, "contact_id")).await;
    assert_eq!(after["consent"], consent_before, "the confirmed consent stands");
    // The new submission is kept as evidence beside it, granting nothing.
    let pending = after["consent_pending"].as_m().unwrap();
    let evidence = pending["consent"].as_m().unwrap();
    assert_eq!(evidence["user_agent"].as_s().unwrap(), "Attacker browser");
    assert_eq!(s(&after, "last_name"), "本人");
}

#[tokio::test]
async fn finding_2_a_public_submission_changes_nothing_a_known_person_gave_until_the_mailbox_confirms() {
    let mut env = TestEnv::new().await;
    env.process.clock = t0;
    let (lead, contact_id) = known_person(&env, "known2@example.jp").await;
    env.run_scoring().await;
    let r = env
        .post_public(
            "demo",
            &json!({"email": "KNOWN2@example.jp", "last_name": "偽者", "first_name": "太郎", "company": "Evil Inc",
                    "job_title": "CEO", "industry": "IT", "phone": "090-0000-0000", "country": "JP"}),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let c = contact(&env, &contact_id).await;
    for (field, kept) in [
        ("email", "known2@example.jp"),
        ("last_name", "本物"),
        ("first_name", "花子"),
        ("company", "正しい株式会社"),
        ("job_title", "課長"),
        ("industry", "finance"),
        ("phone", "03-1111-2222"),
    ] {
        assert_eq!(s(&c, field), kept, "{field}");
    }
    assert!(!c.contains_key("country"), "not even a blank is filled by a stranger");
    let pending = c["consent_pending"].as_m().unwrap();
    let changes = pending["changes"].as_m().unwrap();
    assert_eq!(changes["company"].as_s().unwrap(), "Evil Inc");
    // The operator's view says the same: what waits is no change (yet).
    let shown = leadflow_cli::lead_show(&env.cli_target(), "known2@example.jp")
        .await
        .unwrap();
    let changed: Vec<&Value> = shown["field_history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["new"] == "Evil Inc")
        .collect();
    assert!(changed.is_empty(), "{}", shown["field_history"]);

    // The process asks the address's owner, in a neutral email with nothing the submitter wrote.
    env.run_scoring().await;
    env.process.run().await.unwrap();
    let mails = emails_to("known2@example.jp").await;
    assert_eq!(confirmations(&mails), 1);
    let m = mails.iter().find(|m| m.subject().contains("Please confirm")).unwrap();
    for attacker_text in ["偽者", "Evil Inc", "CEO"] {
        assert!(!m.text().contains(attacker_text), "{}", m.text());
        assert!(!m.raw.contains(attacker_text));
    }
    assert!(m.text().starts_with("お客様"), "{}", m.text());
    let to = m.header("To");
    assert!(
        !to.contains('"') && to.contains("known2@example.jp"),
        "no display name: {to}"
    );

    // The owner confirms: the changes apply, with field history naming the submission.
    let link = confirmation_link("known2@example.jp").await;
    env.requests.take();
    click(&env, &link).await;
    assert_eq!(
        env.requests.take(),
        ["GetItem", "Query", "TransactWriteItems", "SendMessageBatch"],
        "the contact read, the person's leads, one atomic write, the scoring messages"
    );
    let c = contact(&env, &contact_id).await;
    assert_eq!(s(&c, "company"), "Evil Inc");
    assert_eq!(s(&c, "last_name"), "偽者");
    assert_eq!(s(&c, "country"), "JP");
    assert!(c.contains_key("address_confirmed_at"));
    assert!(!c.contains_key("consent"), "no opt-in was asked for");
    let history: Vec<_> = env
        .items_of("field_history")
        .await
        .into_iter()
        .filter(|h| s(h, "contact_id") == contact_id)
        .collect();
    assert_eq!(
        history.len(),
        3,
        "the first values, the public submission, the confirmed changes"
    );
    let _ = lead;
}

#[tokio::test]
async fn finding_3_a_strangers_browser_is_not_linked_and_a_confirmed_one_is() {
    let mut env = TestEnv::new().await;
    env.process.clock = t0;
    let (lead, _) = known_person(&env, "known3@example.jp").await;
    env.run_scoring().await;
    let before = env.scoring_of(&lead).await["total"].as_i64().unwrap();
    let headers = [("content-type", "application/json"), ("x-leadflow-site-key", SITE_KEY)];
    // The attacker's browser: twelve page views and three downloads, then a form with the
    // victim's address and the attacker's visitor id.
    for i in 0..12 {
        let body = json!({"type": "page_view", "visitor_id": "vis-attacker", "event_id": format!("pv-{i}")});
        let r = env.send("POST", "/events", &headers, body.to_string().as_bytes()).await;
        assert_eq!(r.status, 202);
    }
    for i in 0..3 {
        let body = json!({"type": "download", "visitor_id": "vis-attacker", "event_id": format!("dl-{i}")});
        env.send("POST", "/events", &headers, body.to_string().as_bytes()).await;
    }
    let r = env
        .post_public(
            "demo",
            &json!({"email": "known3@example.jp", "last_name": "本物", "visitor_id": "vis-attacker"}),
            &[],
        )
        .await;
    assert_eq!(r.status, 201);
    env.run_scoring().await;
    let sc = env.scoring_of(&lead).await;
    assert_eq!(
        sc["total"].as_i64(),
        Some(before + 5),
        "the form's own points only, none of the browser's: {sc}"
    );
    assert!(env.item("VISITOR#vis-attacker", "LINK").await.is_none(), "not linked");
    assert_eq!(sc["sales_ready"].as_bool(), Some(false));

    // The same steps by the address's owner: once they confirm, their browser is linked and its
    // earlier events scored.
    let (own_lead, _) = known_person(&env, "owner3@example.jp").await;
    for i in 0..4 {
        let body = json!({"type": "page_view", "visitor_id": "vis-owner", "event_id": format!("own-{i}")});
        env.send("POST", "/events", &headers, body.to_string().as_bytes()).await;
    }
    let r = env
        .post_public(
            "demo",
            &json!({"email": "owner3@example.jp", "last_name": "本物", "visitor_id": "vis-owner"}),
            &[],
        )
        .await;
    assert_eq!(r.status, 201);
    env.run_scoring().await;
    let unlinked = env.scoring_of(&own_lead).await["total"].as_i64().unwrap();
    env.process.run().await.unwrap();
    click(&env, &confirmation_link("owner3@example.jp").await).await;
    env.run_scoring().await;
    let linked = env.scoring_of(&own_lead).await["total"].as_i64().unwrap();
    assert_eq!(linked, unlinked + 4, "four page views scored once confirmed");
    assert!(env.item("VISITOR#vis-owner", "LINK").await.is_some());
}

/// An executive at a 300-person IT company: fit 50, plus the form's 5 points.
fn executive(email: &str) -> Value {
    json!({"email": email, "last_name": "偽", "job_title": "代表取締役", "industry": "IT",
           "employees": "300", "consent": true})
}

#[tokio::test]
async fn finding_4_five_anonymous_posts_buy_no_hand_off() {
    let mut env = TestEnv::new().await;
    env.process.clock = t0;
    for i in 0..5 {
        let r = env
            .post_public("demo", &executive(&format!("fake{i}@example.jp")), &[])
            .await;
        assert_eq!(r.status, 201);
    }
    env.run_scoring().await;
    let run = env.process.run().await.unwrap();
    assert_eq!(run.handoffs, 0, "{run:?}");
    let scores: Vec<_> = env.items_of("lead").await;
    assert_eq!(scores.len(), 5);
    for l in &scores {
        let sc = env.scoring_of(&s(l, "lead_id")).await;
        assert_eq!(sc["total"].as_i64(), Some(55), "the points count in the score: {sc}");
        assert_eq!(sc["sales_ready"].as_bool(), Some(false), "but are no evidence: {sc}");
        let why = sc["scores"].to_string();
        assert!(why.contains("unconfirmed address"), "the explanation says why: {why}");
    }
    // The same person through a trusted route is sales-ready at once, as before.
    let r = env.post_json("demo", &executive("real-exec@example.jp"), &[]).await;
    let lead = r.body["lead_id"].as_str().unwrap().to_owned();
    env.run_scoring().await;
    assert_eq!(env.scoring_of(&lead).await["sales_ready"].as_bool(), Some(true));
    // One of the five who confirms their address: the points now count as evidence.
    click(&env, &confirmation_link("fake0@example.jp").await).await;
    env.run_scoring().await;
    let fake0 = lead_of(&env, "fake0@example.jp").await;
    let sc = env.scoring_of(&fake0).await;
    assert_eq!(sc["sales_ready"].as_bool(), Some(true), "{sc}");
}

/// The contact with this address.
async fn contact_by_email(env: &TestEnv, email: &str) -> leadflow_tests::Item {
    env.items_of("contact")
        .await
        .into_iter()
        .find(|c| s(c, "email") == email)
        .expect("the contact")
}

/// The lead of the contact with this address (one lead each in these tests).
async fn lead_of(env: &TestEnv, email: &str) -> String {
    let contact = contact_by_email(env, email).await;
    let lead = env
        .items_of("lead")
        .await
        .into_iter()
        .find(|l| s(l, "contact_id") == s(&contact, "contact_id"))
        .expect("the lead");
    s(&lead, "lead_id")
}

#[tokio::test]
async fn finding_5_confirmation_emails_are_bounded_neutral_and_retried() {
    let mut env = TestEnv::new().await;
    env.process.clock = t0;
    // Three submissions naming one address (different values: not double clicks), each with a
    // phishing line as the name.
    for i in 0..3 {
        let r = env
            .post_public(
                "demo",
                &json!({"email": "bomb@example.jp", "last_name": format!("Visit http://phish.example/login now {i}"), "consent": true}),
                &[],
            )
            .await;
        assert_eq!(r.status, 201);
        env.run_scoring().await;
        env.process.clock = || t0() + Duration::hours(1);
        env.process.run().await.unwrap();
    }
    let mails = emails_to("bomb@example.jp").await;
    assert_eq!(confirmations(&mails), 1, "one per address per day");
    let m = &mails[0];
    assert!(!m.raw.contains("phish"), "{}", m.raw);
    // A day later the pending request gets its email.
    env.process.clock = || t0() + Duration::hours(26);
    env.process.run().await.unwrap();
    assert_eq!(confirmations(&emails_to("bomb@example.jp").await), 2);
}

#[tokio::test]
async fn finding_5_a_confirmation_ses_did_not_take_is_sent_at_a_later_run_never_dropped() {
    let mut env = TestEnv::new().await;
    env.process.clock = t0;
    let people: Vec<String> = (0..6).map(|i| format!("retry{i}@example.jp")).collect();
    for p in &people {
        let r = env
            .post_public("demo", &json!({"email": p, "last_name": "再送", "consent": true}), &[])
            .await;
        assert_eq!(r.status, 201);
    }
    env.run_scoring().await;
    // SES throttles the run's first send (every attempt the SDK makes at it): sending stops.
    const SEND: &str = "POST /v2/email/outbound-emails";
    env.requests.throttle(SEND, 3);
    let run = env.process.run().await.unwrap();
    assert!(run.throttled, "{run:?}");
    assert_eq!(env.requests.throttles_left(SEND), 0, "the fault was met");
    let mut received = 0;
    for p in &people {
        received += confirmations(&emails_to(p).await);
    }
    assert_eq!(received, 0, "nothing went out in the throttled run");
    // The next runs send every one of them, once.
    env.process.clock = || t0() + Duration::minutes(6);
    env.process.run().await.unwrap();
    env.process.clock = || t0() + Duration::minutes(12);
    env.process.run().await.unwrap();
    for p in &people {
        assert_eq!(confirmations(&emails_to(p).await), 1, "{p}");
    }
}

#[tokio::test]
async fn finding_5_no_confirmation_to_a_suppressed_or_unsubscribed_address() {
    let mut env = TestEnv::new().await;
    env.process.clock = t0;
    let (_, gone) = known_person(&env, "gone@example.jp").await;
    let (_, bounced) = known_person(&env, "bounced@example.jp").await;
    let table = env.table();
    let clients = &env.stack.clients;
    for (contact, attr, value) in [
        (&gone, "unsubscribed_at", json!("2026-01-01T00:00:00Z")),
        (
            &bounced,
            "suppressed",
            json!({"reason": "bounce", "at": "2026-01-01T00:00:00Z"}),
        ),
    ] {
        let value = serde_dynamo::to_attribute_value(value).unwrap();
        clients
            .dynamodb
            .update_item()
            .table_name(&table)
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("CONTACT#{contact}")),
            )
            .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("CONTACT".into()))
            .update_expression("SET #a = :v")
            .expression_attribute_names("#a", attr)
            .expression_attribute_values(":v", value)
            .send()
            .await
            .unwrap();
    }
    for address in ["gone@example.jp", "bounced@example.jp"] {
        let r = env
            .post_public(
                "demo",
                &json!({"email": address, "last_name": "別人", "consent": true}),
                &[],
            )
            .await;
        assert_eq!(r.status, 201);
    }
    env.run_scoring().await;
    env.process.run().await.unwrap();
    for address in ["gone@example.jp", "bounced@example.jp"] {
        assert!(emails_to(address).await.is_empty(), "{address}");
    }
}

#[tokio::test]
async fn finding_7_a_double_click_replay_tells_nothing_about_the_first_submission() {
    let env = TestEnv::new().await;
    let body = json!({"email": "twice@example.jp", "last_name": "二度"});
    let first = env.post_public("demo", &body, &[]).await;
    let second = env.post_public("demo", &body, &[]).await;
    assert_eq!((first.status, second.status), (201, 201));
    let (a, b) = (
        first.body["receipt"].as_str().unwrap(),
        second.body["receipt"].as_str().unwrap(),
    );
    assert_ne!(a, b, "the second submitter is not handed the first one's receipt");
    for r in [a, b] {
        assert_eq!(r.len(), 32);
        // Read as a UUIDv7 it would name a random time, not this submission's.
        let when = uuid::Uuid::parse_str(r)
            .ok()
            .and_then(|u| u.get_timestamp())
            .map(|t| t.to_unix().0 as i64);
        assert!(
            when.is_none_or(|t| (t - Utc::now().timestamp()).abs() > 86_400),
            "no time in it: {r}"
        );
    }
    // The receipt number is not the submission's id (a UUIDv7 carries its time).
    let ix = env.items_of("interaction").await;
    assert_eq!(ix.len(), 1, "one submission stored");
    assert!(!s(&ix[0], "interaction_id").replace('-', "").contains(a));
}

#[tokio::test]
async fn finding_4_an_on_submit_form_hands_off_unconfirmed_requests_capped_and_says_so() {
    let mut env = TestEnv::new().await;
    env.process.clock = t0;
    let mut def = leadflow_tests::shipped_form("demo");
    def["id"] = json!("demo-request");
    def["handoff"] = json!({"when": "on_submit", "daily_cap": 2});
    env.put_form(def).await;
    for i in 0..4 {
        let r = env
            .post_public(
                "demo-request",
                &json!({"email": format!("req{i}@example.jp"), "last_name": "依頼", "company": "試験"}),
                &[],
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    env.run_scoring().await;
    let run = env.process.run().await.unwrap();
    assert_eq!(run.handoffs, 2, "capped per form and day: {run:?}");
    assert_eq!(run.skipped.get("hand-off cap reached"), Some(&2), "{run:?}");
    // The owners' emails say plainly that nobody confirmed the address.
    let routing: Value = serde_json::from_str(
        &std::fs::read_to_string(leadflow_local::workspace_root().join("config/routing.json")).unwrap(),
    )
    .unwrap();
    let mut warned = 0;
    for owner in routing["owners"].as_array().unwrap() {
        for m in emails_to(owner["email"].as_str().unwrap()).await {
            if m.text().contains("メールアドレス未確認") || m.text().contains("Unconfirmed address") {
                warned += 1;
            }
        }
    }
    assert_eq!(warned, 2);
    // The two held requests are looked at again on the next Tokyo day, within its room.
    env.process.clock = || t0() + Duration::days(1);
    let next_day = env.process.run().await.unwrap();
    assert_eq!(next_day.handoffs, 2, "{next_day:?}");
    // A handed-off lead that is recycled does not go straight back to sales on its old request.
    let handed: Vec<_> = env
        .items_of("lead")
        .await
        .into_iter()
        .filter(|l| s(l, "stage") == "sales_acceptance")
        .collect();
    assert_eq!(handed.len(), 4);
    assert!(
        handed.iter().all(|l| !l.contains_key("handoff_requested")),
        "requests consumed"
    );
    let lead = s(&handed[0], "lead_id");
    let r = env
        .send(
            "POST",
            &format!("/leads/{lead}/stage"),
            &[("content-type", "application/json")],
            json!({"move": "recycle", "reason": "not now"}).to_string().as_bytes(),
        )
        .await;
    assert!(r.status < 300, "{} {}", r.status, r.body);
    env.process.clock = || t0() + Duration::days(1) + Duration::hours(1);
    let after = env.process.run().await.unwrap();
    assert_eq!(after.handoffs, 0, "{after:?}");
}

#[tokio::test]
async fn a_confirmed_subscriber_is_not_made_sales_ready_by_a_strangers_post() {
    let mut env = TestEnv::new().await;
    env.process.clock = t0;
    // The person subscribes and confirms themselves.
    let r = env
        .post_public(
            "demo",
            &json!({"email": "sub@example.jp", "last_name": "本人", "consent": true}),
            &[],
        )
        .await;
    assert_eq!(r.status, 201);
    env.run_scoring().await;
    env.process.run().await.unwrap();
    click(&env, &confirmation_link("sub@example.jp").await).await;
    env.run_scoring().await;
    // A stranger posts a top-fit profile in their name (their title, industry and size are blank).
    let r = env.post_public("demo", &executive("sub@example.jp"), &[]).await;
    assert_eq!(r.status, 201);
    env.run_scoring().await;
    let lead = lead_of(&env, "sub@example.jp").await;
    let sc = env.scoring_of(&lead).await;
    assert_eq!(sc["sales_ready"].as_bool(), Some(false), "{sc}");
    let run = env.process.run().await.unwrap();
    assert_eq!(run.handoffs, 0, "{run:?}");
}

#[tokio::test]
async fn the_confirmation_page_shows_every_value_before_it_is_granted() {
    let mut env = TestEnv::new().await;
    env.process.clock = t0;
    let (_, contact_id) = known_person(&env, "shown@example.jp").await;
    let r = env
        .post_public(
            "demo",
            &json!({"email": "shown@example.jp", "last_name": "本物", "company": "<b>Evil</b> Inc", "visitor_id": "vis-x", "consent": true}),
            &[],
        )
        .await;
    assert_eq!(r.status, 201);
    env.run_scoring().await;
    env.process.run().await.unwrap();
    let link = confirmation_link("shown@example.jp").await;
    let page = env.send("GET", &link, &[], b"").await;
    assert_eq!(page.status, 200);
    let html = page.body.as_str().unwrap().to_owned();
    assert!(
        html.contains("&lt;b&gt;Evil&lt;/b&gt; Inc"),
        "the stranger's value, escaped: {html}"
    );
    assert!(html.contains("メール配信の登録"), "{html}");
    assert!(html.contains("ブラウザ"), "the browser link is named: {html}");
    assert!(
        !html.contains("本物」に変更"),
        "a value that does not change is not listed: {html}"
    );
    // Opening the page grants nothing.
    let c = contact(&env, &contact_id).await;
    assert_eq!(s(&c, "company"), "正しい株式会社");
    assert!(!c.contains_key("consent"));
}

#[tokio::test]
async fn confirming_makes_the_persons_points_evidence_on_each_of_their_leads() {
    let mut env = TestEnv::new().await;
    env.process.clock = t0;
    let mut def = leadflow_tests::shipped_form("demo");
    def["id"] = json!("demo2");
    env.put_form(def).await;
    for form in ["demo", "demo2"] {
        let r = env.post_public(form, &executive("two@example.jp"), &[]).await;
        assert_eq!(r.status, 201);
        env.run_scoring().await;
    }
    env.process.run().await.unwrap();
    let leads: Vec<String> = env.items_of("lead").await.iter().map(|l| s(l, "lead_id")).collect();
    assert_eq!(leads.len(), 2);
    for lead in &leads {
        assert_eq!(env.scoring_of(lead).await["sales_ready"].as_bool(), Some(false));
    }
    env.requests.take();
    click(&env, &confirmation_link("two@example.jp").await).await;
    let ops = env.requests.take();
    assert_eq!(ops[..3], ["GetItem", "Query", "TransactWriteItems"], "{ops:?}");
    env.run_scoring().await;
    for lead in &leads {
        assert_eq!(
            env.scoring_of(lead).await["sales_ready"].as_bool(),
            Some(true),
            "{lead}"
        );
    }
}

#[tokio::test]
async fn an_internal_route_without_the_iam_identity_does_not_exist() {
    let env = TestEnv::new().await;
    let body = json!({"email": "unsigned@example.jp", "last_name": "署名なし"}).to_string();
    let (route, mut event) = env.api_event(
        "POST",
        "/internal/forms/demo/submissions",
        &[("content-type", "application/json")],
        body.as_bytes(),
    );
    assert!(route.iam);
    // The same request as API Gateway would pass it on if the route lost its IAM authorizer.
    event["requestContext"].as_object_mut().unwrap().remove("authorizer");
    let response = env.intake_answers(&event).await;
    assert_eq!(response.status().as_u16(), 404);
    assert!(env.items_of("contact").await.is_empty(), "nothing stored");
    // Signed, it is the trusted route.
    let signed = json!({"email": "signed@example.jp", "last_name": "署名"});
    assert_eq!(env.post_json("demo", &signed, &[]).await.status, 201);
}
