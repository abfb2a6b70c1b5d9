//! Scoring end to end: intake → SQS → the real scoring handler → stored score and
//! explanation; SES engagement; the events API; exactly-once under duplicates and races.

use chrono::{DateTime, Duration, Utc};
use leadflow_domain::records::{ContactId, LeadId};
use leadflow_domain::scoring::ScoringConfig;
use leadflow_tests::{s, TestEnv};
use serde_json::{json, Value};

const SITE_KEY: &str = "pk_demo_site_2026";

async fn submit(env: &TestEnv, body: Value) -> (String, String) {
    let r = env.post_json("demo", &body, &[]).await;
    assert_eq!(r.status, 201, "{}", r.body);
    (
        r.body["lead_id"].as_str().unwrap().to_owned(),
        r.body["contact_id"].as_str().unwrap().to_owned(),
    )
}

use leadflow_tests::ses_event as ses;

fn open(message_id: &str, n: u32) -> String {
    let at = (Utc::now() - Duration::minutes(i64::from(n))).to_rfc3339();
    ses(
        "Open",
        message_id,
        json!({"timestamp": at, "userAgent": "Mozilla/5.0", "ipAddress": "192.0.2.1"}),
    )
}

fn click(message_id: &str, link: &str) -> String {
    ses(
        "Click",
        message_id,
        json!({"timestamp": Utc::now().to_rfc3339(), "link": link, "linkTags": {}, "ipAddress": "192.0.2.1", "userAgent": "Mozilla/5.0"}),
    )
}

async fn record_email(env: &TestEnv, message_id: &str, lead: &str, contact: &str) {
    // What the process function writes when it sends an email (its SES message id → the lead).
    let item = leadflow_aws::process::email_message_item(
        message_id,
        LeadId::parse(lead).unwrap(),
        ContactId::parse(contact).unwrap(),
    );
    env.stack
        .table()
        .unwrap()
        .put(item, leadflow_aws::table::Condition::none())
        .await
        .unwrap();
    env.requests.take();
}

fn explanation_sum(scoring: &Value, model: &str) -> i64 {
    scoring["scores"][model]["explanation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["points"].as_i64().unwrap())
        .sum()
}

#[tokio::test]
async fn worked_example_end_to_end_fit_30_plus_opens_and_clicks_10_is_40_warm() {
    let env = TestEnv::new().await;
    // SPEC's worked example counts opens and clicks only, so this model gives a form submission nothing.
    let mut config = ScoringConfig::defaults();
    config.models[0]
        .behaviour_rules
        .iter_mut()
        .find(|r| r.id == "form_submitted")
        .unwrap()
        .points = 0;
    env.stack.scoring_config().unwrap().put(&config).await.unwrap();

    let (lead, contact) = submit(
        &env,
        json!({"email": "worked@example.jp", "last_name": "例", "industry": "IT", "employees": "300"}),
    )
    .await;
    env.run_scoring().await;
    let sc = env.scoring_of(&lead).await;
    assert_eq!(
        (sc["total"].as_i64(), sc["band"].as_str()),
        (Some(30), Some("warm")),
        "{sc}"
    );

    record_email(&env, "msg-1", &lead, &contact).await;
    record_email(&env, "msg-2", &lead, &contact).await;
    for body in [
        open("msg-1", 1),
        open("msg-1", 2),
        open("msg-2", 3),
        open("msg-2", 4),
        click("msg-1", "https://example.jp/a"),
        click("msg-2", "https://example.jp/b"),
    ] {
        env.send_raw("EngagementQueue", &body).await;
    }
    let polled = env.run_scoring().await;
    assert_eq!((polled.received, polled.failed), (6, 0));
    let sc = env.scoring_of(&lead).await;
    let score = &sc["scores"]["default"];
    assert_eq!(
        (
            score["fit"].as_i64(),
            score["behaviour"].as_i64(),
            score["total"].as_i64()
        ),
        (Some(30), Some(10), Some(40)),
        "{score}"
    );
    assert_eq!(score["band"], "warm");
    assert_eq!(score["grade"], "B");
    assert_eq!(explanation_sum(&sc, "default"), 40);
    let lines: Vec<(String, i64)> = score["explanation"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["points"].as_i64() != Some(0))
        .map(|l| (l["rule"].as_str().unwrap().to_owned(), l["points"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        lines,
        [
            ("industry_it".to_owned(), 15),
            ("employees_100_500".to_owned(), 15),
            ("email_opened".to_owned(), 4),
            ("email_clicked".to_owned(), 6)
        ]
    );

    // History: the first score and the change to 40 (six events in one batch: one write).
    let history: Vec<_> = env
        .items_of("score_change")
        .await
        .into_iter()
        .filter(|i| s(i, "pk") == format!("LEAD#{lead}"))
        .collect();
    let mut totals: Vec<i64> = history
        .iter()
        .map(|h| h["to_total"].as_n().unwrap().parse().unwrap())
        .collect();
    totals.sort();
    assert_eq!(totals, [30, 40]);
    // Every interaction was confirmed: scored, and out of the outbox.
    for ix in env.items_of("interaction").await {
        assert!(ix.contains_key("scored_at"), "{ix:?}");
        assert!(!ix.contains_key("due_pk"));
    }
}

#[tokio::test]
async fn default_model_hot_lead_is_sales_ready_and_due_for_the_process() {
    let env = TestEnv::new().await;
    let (lead, _) = submit(&env, json!({"email": "hot@example.jp", "last_name": "熱", "industry": "IT", "employees": "100-500", "job_title": "情報システム部 部長"})).await;
    env.run_scoring().await;
    let sc = env.scoring_of(&lead).await;
    // 15 + 15 + 15 fit, + 5 for the form.
    assert_eq!(
        (sc["total"].as_i64(), sc["band"].as_str(), sc["sales_ready"].as_bool()),
        (Some(50), Some("hot"), Some(true)),
        "{sc}"
    );
    assert!(sc["sales_ready_at"].is_string());
    assert_eq!(explanation_sum(&sc, "default"), 50);
    let item = env.item(&format!("LEAD#{lead}"), "LEAD").await.unwrap();
    assert!(
        s(&item, "due_pk").starts_with("DUE#"),
        "the process function sees it next"
    );
    assert_eq!(s(&item, "band"), "hot");
    let rescore = env.item(&format!("LEAD#{lead}"), "RESCORE").await.unwrap();
    assert!(s(&rescore, "due_pk").starts_with("RESCORE#"));
}

fn sqs_event(messages: &[(&str, &str)]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, body)| json!({"messageId": id, "receiptHandle": format!("rh-{id}"), "body": body, "attributes": {}, "messageAttributes": {},
                                  "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"}))
        .collect();
    json!({"Records": records})
}

#[tokio::test]
async fn the_same_interaction_delivered_twice_or_in_two_batches_at_once_scores_once() {
    let env = TestEnv::new().await;
    let (lead, _) = submit(&env, json!({"email": "dup@example.jp", "last_name": "重複"})).await;
    let msgs = env.drain_queue().await;
    let body = msgs[0].to_string();
    // Two batches at once, each carrying the same message, plus a third with it twice.
    let (a, b) = futures::join!(
        env.scoring.handle(sqs_event(&[("m1", &body)])),
        env.scoring.handle(sqs_event(&[("m2", &body)]))
    );
    let c = env.scoring.handle(sqs_event(&[("m3", &body), ("m4", &body)])).await;
    for r in [a, b, c] {
        assert_eq!(r.unwrap()["batchItemFailures"], json!([]));
    }
    let sc = env.scoring_of(&lead).await;
    assert_eq!(sc["total"].as_i64(), Some(5), "one form submission, scored once: {sc}");
    assert_eq!(sc["ledgers"]["default"]["buckets"][0]["count"].as_u64(), Some(1));
    assert_eq!(
        env.transactions_touching_an_item_twice(),
        Vec::<Value>::new(),
        "a message and its copy in one batch are one write"
    );
}

#[tokio::test]
async fn an_interaction_and_its_republished_copy_in_one_batch_through_the_queue_score_once() {
    let env = TestEnv::new().await;
    let (lead, _) = submit(&env, json!({"email": "relay@example.jp", "last_name": "再送"})).await;
    let msgs = env.drain_queue().await;
    let body = msgs[0].to_string();
    // Intake's message and the outbox relay's copy of it arrive together.
    env.send_raw("ScoringQueue", &body).await;
    env.send_raw("ScoringQueue", &body).await;
    let polled = env.run_scoring().await;
    assert_eq!((polled.received, polled.failed), (2, 0));
    assert_eq!(
        env.depth("ScoringQueue").await + env.depth("ScoringDeadLetterQueue").await,
        0
    );
    assert_eq!(env.scoring_of(&lead).await["total"].as_i64(), Some(5));
    assert_eq!(env.transactions_touching_an_item_twice(), Vec::<Value>::new());
}

#[tokio::test]
async fn the_same_ses_open_twice_in_one_batch_counts_once_and_nothing_is_dead_lettered() {
    let env = TestEnv::new().await;
    let (lead, contact) = submit(&env, json!({"email": "twice@example.jp", "last_name": "二度"})).await;
    env.run_scoring().await;
    record_email(&env, "m-twice", &lead, &contact).await;
    let before = env.scoring_of(&lead).await["total"].as_i64().unwrap();
    let the_open = open("m-twice", 1);
    let r = env
        .scoring
        .handle(sqs_event(&[("a", &the_open), ("b", &the_open)]))
        .await
        .unwrap();
    assert_eq!(r["batchItemFailures"], json!([]));
    assert_eq!(
        env.scoring_of(&lead).await["total"].as_i64(),
        Some(before + 1),
        "+1 once"
    );
    assert_eq!(
        env.transactions_touching_an_item_twice(),
        Vec::<Value>::new(),
        "DynamoDB would refuse the whole transaction and the copies would end in the DLQ"
    );
}

/// A batch's leads are written in one transaction; when another batch changed one of them
/// meanwhile, the transaction is refused whole and each lead is scored again on its own: the
/// other leads of the batch still count once, the contested one once.
#[tokio::test]
async fn a_refused_packed_write_scores_each_lead_on_its_own_exactly_once() {
    let env = TestEnv::new().await;
    let (contested, _) = submit(&env, json!({"email": "pack1@example.jp", "last_name": "一"})).await;
    let (bystander, _) = submit(&env, json!({"email": "pack2@example.jp", "last_name": "二"})).await;
    let bodies: Vec<String> = env.drain_queue().await.iter().map(Value::to_string).collect();
    assert_eq!(bodies.len(), 2);
    let contested_body = bodies.iter().find(|b| b.contains(&contested)).unwrap();
    // Both batches load before either writes (moto answers one request at a time, in order):
    // the single one commits first and the pair's transaction is refused.
    let (b, a) = futures::join!(
        env.scoring.handle(sqs_event(&[("b0", contested_body.as_str())])),
        env.scoring
            .handle(sqs_event(&[("a0", bodies[0].as_str()), ("a1", bodies[1].as_str())]))
    );
    assert_eq!(a.unwrap()["batchItemFailures"], json!([]));
    assert_eq!(b.unwrap()["batchItemFailures"], json!([]));
    for lead in [&contested, &bystander] {
        let sc = env.scoring_of(lead).await;
        assert_eq!(sc["total"].as_i64(), Some(5), "the form, scored once: {sc}");
        assert_eq!(sc["ledgers"]["default"]["buckets"][0]["count"].as_u64(), Some(1));
    }
}

#[tokio::test]
async fn concurrent_batches_on_one_lead_never_lose_points() {
    let env = TestEnv::new().await;
    let (lead, _) = submit(&env, json!({"email": "race@example.jp", "last_name": "競"})).await;
    env.run_scoring().await; // scored once already, so the race is between two updates
    for i in 0..6 {
        let r = env
            .send(
                "POST",
                "/internal/events",
                &[("content-type", "application/json"), ("x-leadflow-site-key", SITE_KEY)],
                json!({"type": "download", "lead_id": lead, "event_id": format!("dl-{i}")})
                    .to_string()
                    .as_bytes(),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
    let bodies: Vec<String> = env.drain_queue().await.iter().map(Value::to_string).collect();
    assert_eq!(bodies.len(), 6);
    let first: Vec<(String, &str)> = bodies[..3]
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("a{i}"), b.as_str()))
        .collect();
    let second: Vec<(String, &str)> = bodies[3..]
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("b{i}"), b.as_str()))
        .collect();
    let first: Vec<(&str, &str)> = first.iter().map(|(i, b)| (i.as_str(), *b)).collect();
    let second: Vec<(&str, &str)> = second.iter().map(|(i, b)| (i.as_str(), *b)).collect();
    let (a, b) = futures::join!(
        env.scoring.handle(sqs_event(&first)),
        env.scoring.handle(sqs_event(&second))
    );
    assert_eq!(a.unwrap()["batchItemFailures"], json!([]));
    assert_eq!(b.unwrap()["batchItemFailures"], json!([]));
    let sc = env.scoring_of(&lead).await;
    // All six downloads were counted (no update lost); their points stop at the day's cap.
    let downloads = sc["ledgers"]["default"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["rule"] == "content_downloaded")
        .unwrap()
        .clone();
    assert_eq!(downloads["count"].as_u64(), Some(6), "{sc}");
    assert_eq!(
        sc["total"].as_i64(),
        Some(5 + 15),
        "5 for the form, downloads capped at 15 a day: {sc}"
    );
    assert_eq!(explanation_sum(&sc, "default"), 20);
}

#[tokio::test]
async fn a_poison_message_fails_alone_and_ends_in_the_dead_letter_queue() {
    let env = TestEnv::new().await;
    let (lead, _) = submit(&env, json!({"email": "poison@example.jp", "last_name": "毒"})).await;
    let good = env.drain_queue().await[0].to_string();
    let unknown_version = json!({"schema": "leadflow.interaction.v9", "lead_id": lead}).to_string();
    let r = env
        .scoring
        .handle(sqs_event(&[
            ("bad-1", "not json at all"),
            ("good", &good),
            ("bad-2", &unknown_version),
        ]))
        .await
        .unwrap();
    assert_eq!(
        r["batchItemFailures"],
        json!([{"itemIdentifier": "bad-1"}, {"itemIdentifier": "bad-2"}])
    );
    assert_eq!(
        env.scoring_of(&lead).await["total"].as_i64(),
        Some(5),
        "the good message in the batch was scored"
    );

    // Through the real queues: retried until the redrive policy moves them to the DLQ.
    env.send_raw("ScoringQueue", "not json at all").await;
    env.send_raw("ScoringQueue", &unknown_version).await;
    env.run_scoring().await;
    assert_eq!(env.depth("ScoringQueue").await, 0);
    assert_eq!(env.depth("ScoringDeadLetterQueue").await, 2);
}

#[tokio::test]
async fn ses_bounces_and_complaints_suppress_opens_and_clicks_score_unknown_ids_drop() {
    let env = TestEnv::new().await;
    let (lead_a, contact_a) = submit(&env, json!({"email": "bounce@example.jp", "last_name": "跳"})).await;
    let (lead_b, contact_b) = submit(&env, json!({"email": "complain@example.jp", "last_name": "苦"})).await;
    let (lead_c, contact_c) = submit(&env, json!({"email": "transient@example.jp", "last_name": "一時"})).await;
    env.run_scoring().await;
    record_email(&env, "m-a", &lead_a, &contact_a).await;
    record_email(&env, "m-b", &lead_b, &contact_b).await;
    record_email(&env, "m-c", &lead_c, &contact_c).await;
    let at = Utc::now().to_rfc3339();
    env.send_raw("EngagementQueue", &ses("Bounce", "m-a", json!({"bounceType": "Permanent", "bounceSubType": "General", "timestamp": at, "bouncedRecipients": [{"emailAddress": "bounce@example.jp"}], "feedbackId": "f"}))).await;
    env.send_raw("EngagementQueue", &ses("Complaint", "m-b", json!({"complaintFeedbackType": "abuse", "timestamp": at, "complainedRecipients": [{"emailAddress": "complain@example.jp"}], "feedbackId": "g"}))).await;
    env.send_raw("EngagementQueue", &ses("Bounce", "m-c", json!({"bounceType": "Transient", "bounceSubType": "MailboxFull", "timestamp": at, "bouncedRecipients": []}))).await;
    env.send_raw(
        "EngagementQueue",
        &ses(
            "Delivery",
            "m-c",
            json!({"timestamp": at, "recipients": ["transient@example.jp"]}),
        ),
    )
    .await;
    let the_open = open("m-c", 1);
    env.send_raw("EngagementQueue", &the_open).await;
    env.send_raw("EngagementQueue", &open("unknown-message", 1)).await;
    let polled = env.run_scoring().await;
    assert_eq!(
        (polled.received, polled.failed),
        (6, 0),
        "an unknown message id is dropped, not retried"
    );
    assert_eq!(
        env.depth("EngagementQueue").await + env.depth("EngagementDeadLetterQueue").await,
        0
    );

    let env = &env;
    let contact = |id: String| async move { env.item(&format!("CONTACT#{id}"), "CONTACT").await.unwrap() };
    let a = contact(contact_a).await;
    assert_eq!(
        a["suppressed"].as_m().unwrap()["reason"].as_s().unwrap(),
        "bounce: Permanent/General"
    );
    let b = contact(contact_b).await;
    assert_eq!(
        b["suppressed"].as_m().unwrap()["reason"].as_s().unwrap(),
        "complaint: abuse"
    );
    let c = contact(contact_c).await;
    assert!(!c.contains_key("suppressed"), "a transient bounce does not suppress");
    assert_eq!(
        env.scoring_of(&lead_c).await["total"].as_i64(),
        Some(5 + 1),
        "the open scored"
    );
    let kinds: Vec<String> = env.items_of("interaction").await.iter().map(|i| s(i, "kind")).collect();
    for k in ["email_bounced", "email_complained", "email_delivered", "email_opened"] {
        assert!(kinds.iter().any(|x| x == k), "{k} stored: {kinds:?}");
    }
    // The same SES event delivered again changes nothing.
    env.send_raw("EngagementQueue", &the_open).await;
    env.run_scoring().await;
    assert_eq!(env.scoring_of(&lead_c).await["total"].as_i64(), Some(6));
}

async fn event(env: &TestEnv, headers: &[(&str, &str)], body: &[u8]) -> leadflow_tests::Reply {
    env.send("POST", "/events", headers, body).await
}

#[tokio::test]
async fn events_api_rejects_bad_events_and_stores_nothing() {
    let env = TestEnv::new().await;
    let json_ct = ("content-type", "application/json");
    let key = ("x-leadflow-site-key", SITE_KEY);
    let ok = json!({"type": "page_view", "visitor_id": "v-1"}).to_string();
    // (headers, body, expected status, expected error code)
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (vec![json_ct], ok.clone().into_bytes(), 401, "site_key_required"),
        (
            vec![json_ct, ("x-leadflow-site-key", "pk_nope")],
            ok.clone().into_bytes(),
            401,
            "unknown_site_key",
        ),
        (
            vec![json_ct, key, ("origin", "https://evil.example")],
            ok.clone().into_bytes(),
            403,
            "origin_not_allowed",
        ),
        (vec![json_ct, key], b"{not json".to_vec(), 400, "malformed_body"),
        (
            vec![("content-type", "application/xml"), key],
            ok.clone().into_bytes(),
            415,
            "unsupported_media_type",
        ),
        (
            vec![json_ct, key],
            json!({"type": "email_opened", "visitor_id": "v-1"})
                .to_string()
                .into_bytes(),
            422,
            "validation_failed",
        ),
        (
            vec![json_ct, key],
            json!({"type": "page_view"}).to_string().into_bytes(),
            422,
            "validation_failed",
        ),
        (
            vec![json_ct, key],
            json!({"type": "page_view", "visitor_id": "v 1"})
                .to_string()
                .into_bytes(),
            422,
            "validation_failed",
        ),
        (
            vec![json_ct, key],
            json!({"type": "page_view", "lead_id": uuid::Uuid::now_v7().to_string()})
                .to_string()
                .into_bytes(),
            422,
            "validation_failed",
        ),
        (
            vec![json_ct, key],
            br#"{"type": "page_view", "visitor_id": "v-1", "properties": {"huge": 1e200}}"#.to_vec(),
            422,
            "validation_failed",
        ),
        (
            vec![json_ct, key],
            json!({"type": "page_view", "visitor_id": "v", "url": "x".repeat(9000)})
                .to_string()
                .into_bytes(),
            413,
            "body_too_large",
        ),
    ];
    for (headers, body, status, code) in cases {
        let r = event(&env, &headers, &body).await;
        assert_eq!((r.status, r.body["error"].as_str()), (status, Some(code)), "{}", r.body);
    }
    assert!(env.items().await.is_empty(), "nothing stored");
    assert!(env.drain_queue().await.is_empty());
    // Preflights: only for the site's own origins, named by the key in the query.
    let pre = env
        .send(
            "OPTIONS",
            &format!("/events?site_key={SITE_KEY}"),
            &[("origin", "http://localhost:3000")],
            b"",
        )
        .await;
    assert_eq!(pre.status, 204);
    assert_eq!(pre.header("access-control-allow-origin"), Some("http://localhost:3000"));
    for (target, origin) in [
        (format!("/events?site_key={SITE_KEY}"), "https://evil.example"),
        ("/events".to_owned(), "http://localhost:3000"),
        ("/events?site_key=pk_nope".to_owned(), "http://localhost:3000"),
    ] {
        let r = env.send("OPTIONS", &target, &[("origin", origin)], b"").await;
        assert_eq!(r.status, 403, "{target} from {origin}");
        assert!(r.header("access-control-allow-origin").is_none());
    }
    // sendBeacon: text/plain with the key in the body.
    let beacon = json!({"type": "page_view", "visitor_id": "v-1", "site_key": SITE_KEY}).to_string();
    let r = event(&env, &[("content-type", "text/plain;charset=UTF-8")], beacon.as_bytes()).await;
    assert_eq!((r.status, r.body["status"].as_str()), (202, Some("accepted")));
    // A server naming an unknown lead (IAM route) is told so; a browser never names one.
    let unknown = env
        .send(
            "POST",
            "/internal/events",
            &[json_ct, key],
            json!({"type": "page_view", "lead_id": uuid::Uuid::now_v7().to_string()})
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.body["error"].as_str()),
        (404, Some("unknown_lead"))
    );
}

#[tokio::test]
async fn a_browser_cannot_score_a_lead_by_its_id_and_learns_nothing_from_the_answer() {
    let env = TestEnv::new().await;
    let (lead, contact) = submit(
        &env,
        json!({"email": "target@example.jp", "last_name": "標的", "visitor_id": "vis-known"}),
    )
    .await;
    env.run_scoring().await;
    let before = env.scoring_of(&lead).await;
    let headers = [
        ("content-type", "application/json"),
        ("x-leadflow-site-key", SITE_KEY),
        ("origin", "http://localhost:3000"),
    ];
    let items_before = env.items().await.len();
    for body in [
        json!({"type": "webinar_attended", "lead_id": lead}),
        json!({"type": "download", "contact_id": contact}),
        json!({"type": "webinar_attended", "lead_id": lead, "visitor_id": "vis-x"}),
    ] {
        let r = event(&env, &headers, body.to_string().as_bytes()).await;
        assert_eq!(
            (r.status, r.body["error"].as_str()),
            (422, Some("validation_failed")),
            "{}",
            r.body
        );
        let fields: Vec<&str> = r.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert!(
            fields.contains(&"lead_id") || fields.contains(&"contact_id"),
            "{fields:?}"
        );
    }
    assert_eq!(env.items().await.len(), items_before, "nothing stored");
    assert!(env.drain_queue().await.is_empty());
    env.run_scoring().await;
    assert_eq!(env.scoring_of(&lead).await, before, "no points bought");
    // A linked visitor, an unknown visitor and a repeat all get the same answer.
    let mut answers = Vec::new();
    for b in [
        json!({"type": "page_view", "visitor_id": "vis-known", "event_id": "e1"}),
        json!({"type": "page_view", "visitor_id": "vis-stranger", "event_id": "e2"}),
        json!({"type": "page_view", "visitor_id": "vis-known", "event_id": "e1"}),
    ] {
        let r = event(&env, &headers, b.to_string().as_bytes()).await;
        answers.push(json!([r.status, r.body]));
    }
    assert!(
        answers.iter().all(|a| *a == json!([202, {"status": "accepted"}])),
        "{answers:?}"
    );
}

#[tokio::test]
async fn anonymous_visits_are_linked_and_scored_when_the_visitor_submits_a_form() {
    let env = TestEnv::new().await;
    let headers = [
        ("content-type", "application/json"),
        ("x-leadflow-site-key", SITE_KEY),
        ("origin", "http://localhost:3000"),
    ];
    for i in 0..3 {
        let body = json!({"type": "page_view", "visitor_id": "vis-42", "url": format!("https://example.jp/p{i}"), "event_id": format!("pv-{i}")});
        let r = event(&env, &headers, body.to_string().as_bytes()).await;
        assert_eq!(
            (r.status, r.body["status"].as_str()),
            (202, Some("accepted")),
            "{}",
            r.body
        );
        assert_eq!(r.header("access-control-allow-origin"), Some("http://localhost:3000"));
    }
    let again = event(
        &env,
        &headers,
        json!({"type": "page_view", "visitor_id": "vis-42", "event_id": "pv-0"})
            .to_string()
            .as_bytes(),
    )
    .await;
    assert_eq!(again.body["status"], "accepted", "a repeat looks the same to a browser");
    assert_eq!(env.items_of("anonymous_interaction").await.len(), 3, "and is kept once");
    assert!(env.drain_queue().await.is_empty(), "anonymous events wait for a link");

    let (lead, _) = submit(
        &env,
        json!({"email": "visitor@example.jp", "last_name": "訪問", "visitor_id": "vis-42"}),
    )
    .await;
    env.run_scoring().await;
    let sc = env.scoring_of(&lead).await;
    assert_eq!(
        sc["total"].as_i64(),
        Some(5 + 3),
        "the form and three earlier page views: {sc}"
    );
    let on_lead = env
        .items_of("interaction")
        .await
        .into_iter()
        .filter(|i| s(i, "lead_id") == lead)
        .count();
    assert_eq!(on_lead, 4);
    let anon = env.items_of("anonymous_interaction").await;
    assert!(anon.iter().all(|a| s(a, "linked_lead") == lead));
    // From now on the visitor's events go straight to the lead.
    let later = event(
        &env,
        &headers,
        json!({"type": "page_view", "visitor_id": "vis-42"})
            .to_string()
            .as_bytes(),
    )
    .await;
    assert_eq!((later.status, later.body["status"].as_str()), (202, Some("accepted")));
    assert!(later.body.get("lead_id").is_none(), "the answer never names the lead");
    env.run_scoring().await;
    assert_eq!(env.scoring_of(&lead).await["total"].as_i64(), Some(9));
}

fn in_91_days() -> DateTime<Utc> {
    Utc::now() + Duration::days(91)
}

#[tokio::test]
async fn rescoring_ages_behaviour_and_applies_model_changes_walking_only_scored_leads() {
    let mut env = TestEnv::new().await;
    let (lead, _) = submit(
        &env,
        json!({"email": "age@example.jp", "last_name": "古", "industry": "IT"}),
    )
    .await;
    env.run_scoring().await;
    assert_eq!(env.scoring_of(&lead).await["total"].as_i64(), Some(20));
    let nothing_due = env.scoring.rescore("due").await.unwrap();
    assert_eq!((nothing_due.examined, nothing_due.rescored), (0, 0));

    env.scoring.clock = in_91_days;
    let aged = env.scoring.rescore("due").await.unwrap();
    assert_eq!((aged.examined, aged.rescored), (1, 1));
    let sc = env.scoring_of(&lead).await;
    assert_eq!(
        sc["total"].as_i64(),
        Some(15),
        "the form's 5 points aged out after 90 days: {sc}"
    );
    let reasons: Vec<String> = env
        .items_of("score_change")
        .await
        .iter()
        .map(|h| s(h, "reason"))
        .collect();
    assert!(reasons.iter().any(|r| r == "behaviour aged"), "{reasons:?}");

    // A new model version: only leads scored by the old one are re-scored.
    let mut v2 = ScoringConfig::defaults();
    v2.models[0].version = 2;
    v2.models[0]
        .fit_rules
        .iter_mut()
        .find(|r| r.id == "industry_it")
        .unwrap()
        .points = 25;
    env.stack.scoring_config().unwrap().put(&v2).await.unwrap();
    env.scoring = env.stack.scoring().unwrap();
    let changed = env.scoring.rescore("stale").await.unwrap();
    assert_eq!((changed.examined, changed.rescored), (1, 1));
    let sc = env.scoring_of(&lead).await;
    assert_eq!(
        (sc["total"].as_i64(), sc["scores"]["default"]["model_version"].as_u64()),
        (Some(25), Some(2))
    );
    let again = env.scoring.rescore("stale").await.unwrap();
    assert_eq!(again.rescored, 0, "nothing stale is left");
}

#[tokio::test]
async fn a_stale_pass_keeps_a_cursor_and_finishes_over_more_than_one_page() {
    let mut env = TestEnv::new().await;
    let mut leads = Vec::new();
    for i in 0..5 {
        leads.push(
            submit(
                &env,
                json!({"email": format!("page{i}@example.jp"), "last_name": "頁", "industry": "IT"}),
            )
            .await
            .0,
        );
    }
    env.run_scoring().await;
    let mut v2 = ScoringConfig::defaults();
    v2.models[0].version = 2;
    env.stack.scoring_config().unwrap().put(&v2).await.unwrap();
    env.scoring = env.stack.scoring().unwrap();
    // Pages of two, one page per invocation: the pass must carry on where it stopped.
    env.scoring.rescore_page = 2;
    env.scoring.rescore_budget = std::time::Duration::ZERO;
    let first = env.scoring.rescore("stale").await.unwrap();
    assert_eq!((first.examined, first.rescored, first.stale_pending), (2, 2, true));
    let mut rescored = first.rescored;
    let mut runs = 1;
    loop {
        // The hourly schedule carries the unfinished pass on.
        let r = env.scoring.rescore("due").await.unwrap();
        rescored += r.rescored;
        runs += 1;
        if !r.stale_pending {
            break;
        }
        assert!(runs < 10, "the pass never ends");
    }
    assert_eq!((rescored, runs), (5, 3), "every lead once, over three pages");
    for lead in &leads {
        assert_eq!(
            env.scoring_of(lead).await["scores"]["default"]["model_version"].as_u64(),
            Some(2)
        );
    }
    let after = env.scoring.rescore("due").await.unwrap();
    assert_eq!(
        (after.examined, after.stale_pending),
        (0, false),
        "done: the cursor is gone"
    );
}

#[tokio::test]
async fn a_batch_of_ten_over_three_leads_costs_one_read_one_write_and_one_publish() {
    let env = TestEnv::new().await;
    let mut leads = Vec::new();
    for i in 0..3 {
        leads.push(
            submit(
                &env,
                json!({"email": format!("batch{i}@example.jp"), "last_name": "束"}),
            )
            .await
            .0,
        );
    }
    for i in 0..7 {
        let lead = &leads[i % 3];
        let r = env
            .send(
                "POST",
                "/internal/events",
                &[("content-type", "application/json"), ("x-leadflow-site-key", SITE_KEY)],
                json!({"type": "download", "lead_id": lead}).to_string().as_bytes(),
            )
            .await;
        assert_eq!(r.status, 202);
    }
    let bodies: Vec<String> = env.drain_queue().await.iter().map(Value::to_string).collect();
    assert_eq!(bodies.len(), 10);
    let ids: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    let msgs: Vec<(&str, &str)> = ids.iter().zip(&bodies).map(|(i, b)| (i.as_str(), b.as_str())).collect();
    env.requests.take();
    let r = env.scoring.handle(sqs_event(&msgs)).await.unwrap();
    assert_eq!(r["batchItemFailures"], json!([]));
    let mut ops = env.requests.take();
    ops.sort();
    assert_eq!(
        ops,
        [
            "BatchGetItem",
            "BatchWriteItem",
            "GetItem",
            "PutEvents",
            "Query",
            "TransactWriteItems"
        ],
        "one read, the three leads' writes packed in one transaction, their lead.scored events published at once and the transaction's outbox entry removed; GetItem and Query: the scoring configuration and the segments, once per container a minute"
    );
    // Each lead got its own interactions: the form (behaviour), then its downloads.
    let downloads = |i: usize| (0..7).filter(|j| j % 3 == i).count();
    let history = env.items_of("interaction").await;
    for (i, lead) in leads.iter().enumerate() {
        let scored = history
            .iter()
            .filter(|it| s(it, "lead_id") == *lead && it.contains_key("scored_at"))
            .count();
        assert_eq!(scored, 1 + downloads(i), "lead {i}");
    }
}

#[tokio::test]
async fn a_flood_of_public_events_cannot_buy_a_hand_off() {
    let env = TestEnv::new().await;
    // Someone submits a form with their own visitor id, then floods the public events API.
    let (lead, _) = submit(
        &env,
        json!({"email": "flood@example.jp", "last_name": "洪水", "visitor_id": "vis-flood"}),
    )
    .await;
    env.run_scoring().await;
    let headers = [("content-type", "application/json"), ("x-leadflow-site-key", SITE_KEY)];
    for i in 0..20 {
        for kind in ["webinar_attended", "download", "webinar_registered", "page_view"] {
            let r = event(
                &env,
                &headers,
                json!({"type": kind, "visitor_id": "vis-flood", "event_id": format!("{kind}-{i}")})
                    .to_string()
                    .as_bytes(),
            )
            .await;
            assert_eq!(r.status, 202);
        }
    }
    env.run_scoring().await;
    let sc = env.scoring_of(&lead).await;
    // form 5 + the day's caps: attended 10, downloads 15, registrations 5, page views 10.
    assert_eq!(sc["total"].as_i64(), Some(5 + 10 + 15 + 5 + 10), "{sc}");
    assert_eq!(sc["sales_ready"].as_bool(), Some(false), "{sc}");
    assert_ne!(sc["band"].as_str(), Some("hot"));
}

/// A burst of one lead's events in one batch never makes a write larger than a transaction:
/// the lead's interactions are written 20 at a time, one write after the other, in the same
/// invocation (none handed back to the queue), each scored once.
#[tokio::test]
async fn a_burst_of_one_leads_events_is_scored_in_transactions_that_fit() {
    let env = TestEnv::new().await;
    let (lead, _) = submit(&env, json!({"email": "burst@example.jp", "last_name": "連打"})).await;
    for i in 0..39 {
        let r = env
            .send(
                "POST",
                "/internal/events",
                &[("content-type", "application/json"), ("x-leadflow-site-key", SITE_KEY)],
                json!({"type": "page_view", "lead_id": lead, "event_id": format!("burst-{i}"), "url": "https://example.jp/"})
                    .to_string()
                    .as_bytes(),
            )
            .await;
        assert_eq!(r.status, 202);
    }
    let bodies: Vec<String> = env.drain_queue().await.iter().map(Value::to_string).collect();
    assert_eq!(bodies.len(), 40, "the form and 39 page views");
    let ids: Vec<String> = (0..40).map(|i| format!("b{i}")).collect();
    let msgs: Vec<(&str, &str)> = ids.iter().zip(&bodies).map(|(i, b)| (i.as_str(), b.as_str())).collect();
    let before = env.requests.bodies().len();
    let r = env.scoring.handle(sqs_event(&msgs)).await.unwrap();
    assert_eq!(r["batchItemFailures"], json!([]), "{r}");
    let transactions: Vec<usize> = env.requests.bodies()[before..]
        .iter()
        .filter(|(op, _)| op == "TransactWriteItems")
        .map(|(_, b)| b["TransactItems"].as_array().map_or(0, Vec::len))
        .collect();
    assert!(
        transactions.len() >= 2 && transactions.iter().all(|n| *n <= 100),
        "{transactions:?}"
    );
    // The same batch again (at-least-once): nothing is scored twice.
    let r = env.scoring.handle(sqs_event(&msgs)).await.unwrap();
    assert_eq!(r["batchItemFailures"], json!([]));
    let sc = env.scoring_of(&lead).await;
    assert_eq!(sc["interactions"]["days"]["page_viewed"][0][1], 39, "{sc}");
}
