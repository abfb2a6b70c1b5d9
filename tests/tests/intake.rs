//! Intake end to end: the real handler, the real AWS SDK, moto over HTTP.

use chrono::{DateTime, Duration, Utc};
use leadflow_tests::{n, s, TestEnv};
use serde_json::{json, Value};

fn person(email: &str) -> Value {
    json!({"email": email, "last_name": "山田", "first_name": "太郎", "company": "Acme", "consent": true})
}

/// A submission that makes a lead, in a container new to its form: the form, the lookup, the
/// write (with its lead.created outbox entry), the event published and its entry removed, the
/// scoring message.
const NEW_LEAD_COLD: [&str; 6] = [
    "GetItem",
    "BatchGetItem",
    "TransactWriteItems",
    "PutEvents",
    "BatchWriteItem",
    "SendMessage",
];

#[tokio::test]
async fn new_person_creates_contact_lead_interaction_message_and_event_in_five_requests() {
    let env = TestEnv::new().await;
    // First request of a cold container also reads the form definition.
    let r = env.post_json("demo", &person("first@example.jp"), &[]).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(env.requests.take(), NEW_LEAD_COLD);

    let r = env
        .post_json(
            "demo",
            &person(" Taro.Yamada@Example.JP "),
            &[("user-agent", "Mozilla/5.0 test")],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        env.requests.take(),
        [
            "BatchGetItem",
            "TransactWriteItems",
            "PutEvents",
            "BatchWriteItem",
            "SendMessage"
        ],
        "new person, warm container"
    );
    assert_eq!(r.body["contact"], "created");
    assert_eq!(r.body["lead"], "created");
    let contact_id = r.body["contact_id"].as_str().unwrap().to_owned();
    let lead_id = r.body["lead_id"].as_str().unwrap().to_owned();

    let contacts = env.items_of("contact").await;
    let contact = contacts
        .iter()
        .find(|c| s(c, "contact_id") == contact_id)
        .expect("contact stored");
    assert_eq!(s(contact, "email"), "taro.yamada@example.jp");
    assert_eq!(s(contact, "last_name"), "山田");
    // Double opt-in: the evidence is kept, but it grants nothing until the person confirms.
    assert!(!contact.contains_key("consent"), "no consent in force yet");
    let pending = contact["consent_pending"].as_m().unwrap();
    assert_eq!(s(&pending.clone(), "lead_id"), lead_id);
    let consent = pending["consent"].as_m().unwrap();
    assert_eq!(consent["opt_in"].as_bool().unwrap(), &true);
    assert_eq!(consent["wording_version"].as_s().unwrap(), "2026-04");
    assert_eq!(consent["source_form"].as_s().unwrap(), "demo");
    assert_eq!(consent["ip"].as_s().unwrap(), "203.0.113.7");
    assert_eq!(consent["user_agent"].as_s().unwrap(), "Mozilla/5.0 test");

    let leads = env.items_of("lead").await;
    let lead = leads.iter().find(|l| s(l, "lead_id") == lead_id).expect("lead stored");
    assert_eq!(s(lead, "contact_id"), contact_id);
    assert_eq!(s(lead, "stage"), "inquiry");
    assert_eq!(s(lead, "status"), "open");
    assert_eq!(s(lead, "campaign"), "Ebook");
    assert_eq!(s(lead, "gsi1pk"), format!("CONTACT#{contact_id}"));

    let ixs: Vec<_> = env
        .items_of("interaction")
        .await
        .into_iter()
        .filter(|i| s(i, "lead_id") == lead_id)
        .collect();
    assert_eq!(ixs.len(), 1);
    assert_eq!(s(&ixs[0], "kind"), "form_submitted");
    assert!(
        s(&ixs[0], "due_pk").starts_with("OUTBOX#"),
        "unconfirmed interactions stay in the outbox"
    );

    let msgs = env.drain_queue().await;
    assert_eq!(msgs.len(), 2);
    let m = msgs.iter().find(|m| m["lead_id"] == lead_id.as_str()).unwrap();
    assert_eq!(m["schema"], "leadflow.interaction.v1");
    assert_eq!(m["interaction_id"], s(&ixs[0], "interaction_id").as_str());
    assert_eq!(m["kind"], "form_submitted");

    // No personal data in key items: matching keys are digests.
    for item in env.items().await {
        let pk = s(&item, "pk");
        assert!(!pk.contains("example"), "{pk}");
    }
}

#[tokio::test]
async fn same_email_on_another_form_is_the_same_contact_with_a_new_lead() {
    let env = TestEnv::new().await;
    env.put_form(
        json!({"id": "webinar", "name": "Webinar", "campaign": "Webinar 2026", "source": "event_registration"}),
    )
    .await;
    let a = env.post_json("demo", &person("hanako@example.jp"), &[]).await;
    env.requests.take();
    let b = env
        .post_json(
            "webinar",
            &json!({"email": "HANAKO@example.jp", "company": "Acme KK"}),
            &[],
        )
        .await;
    assert_eq!(b.status, 201, "{}", b.body);
    // GetItem: the webinar form is new to this container.
    assert_eq!(env.requests.take(), NEW_LEAD_COLD);
    assert_eq!(b.body["contact"], "matched");
    assert_eq!(b.body["lead"], "created");
    assert_eq!(a.body["contact_id"], b.body["contact_id"]);
    assert_ne!(a.body["lead_id"], b.body["lead_id"]);
    assert_eq!(env.items_of("contact").await.len(), 1);
    let leads = env.items_of("lead").await;
    assert_eq!(leads.len(), 2);
    let webinar = leads.iter().find(|l| s(l, "form_id") == "webinar").unwrap();
    assert_eq!(s(webinar, "source"), "event_registration");
    let contact = &env.items_of("contact").await[0];
    assert_eq!(s(contact, "company"), "Acme KK", "a non-empty value updates");
    assert_eq!(s(contact, "first_name"), "太郎", "an absent value never blanks");
}

#[tokio::test]
async fn same_form_again_matches_the_lead_updates_fields_and_never_blanks() {
    let env = TestEnv::new().await;
    let first = env
        .post_json("demo", &json!({"email": "ken@example.jp", "last_name": "佐藤", "company": "Acme", "job_title": "課長", "message": "hello"}), &[])
        .await;
    env.requests.take();
    let again = env
        .post_json(
            "demo",
            &json!({"email": "Ken@Example.jp", "last_name": "佐藤", "company": "", "job_title": "部長", "phone": "03-1234-5678", "message": ""}),
            &[],
        )
        .await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(
        env.requests.take(),
        ["BatchGetItem", "TransactWriteItems", "SendMessage"],
        "returning person"
    );
    assert_eq!(
        (again.body["contact"].as_str(), again.body["lead"].as_str()),
        (Some("matched"), Some("matched"))
    );
    assert_eq!(first.body["lead_id"], again.body["lead_id"]);
    let contact = &env.items_of("contact").await[0];
    assert_eq!(s(contact, "company"), "Acme", "an empty value never blanks");
    assert_eq!(s(contact, "job_title"), "部長", "a non-empty value updates");
    assert_eq!(s(contact, "phone"), "03-1234-5678");
    let lead = &env.items_of("lead").await[0];
    assert_eq!(n(lead, "submissions"), 2);
    assert_eq!(lead["fields"].as_m().unwrap()["message"].as_s().unwrap(), "hello");
    assert_eq!(env.items_of("interaction").await.len(), 2);
    assert_eq!(env.items_of("contact_key").await.len(), 1);
    assert_eq!(env.items_of("lead_key").await.len(), 1);
}

#[tokio::test]
async fn idempotency_key_replays_the_first_answer_and_refuses_reuse() {
    let env = TestEnv::new().await;
    let body = person("idem@example.jp");
    let first = env.post_json("demo", &body, &[("idempotency-key", "k-123")]).await;
    assert_eq!(first.status, 201);
    env.requests.take();
    let replay = env.post_json("demo", &body, &[("idempotency-key", "k-123")]).await;
    assert_eq!(replay.status, 201);
    assert_eq!(replay.body, first.body);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(env.requests.take(), ["BatchGetItem"], "a replay is one read");
    let mut changed = body.clone();
    changed["company"] = json!("Other");
    let reused = env.post_json("demo", &changed, &[("idempotency-key", "k-123")]).await;
    assert_eq!(reused.status, 422);
    assert_eq!(reused.body["error"], "idempotency_key_reused");
    assert_eq!(reused.body["errors"][0]["field"], "Idempotency-Key");
    assert_eq!(env.items_of("interaction").await.len(), 1);
    assert_eq!(env.drain_queue().await.len(), 1);
}

fn later() -> DateTime<Utc> {
    Utc::now() + Duration::seconds(31)
}

#[tokio::test]
async fn double_click_gives_the_same_answer_and_one_interaction() {
    let mut env = TestEnv::new().await;
    let body = person("click@example.jp");
    let a = env.post_json("demo", &body, &[]).await;
    let b = env.post_json("demo", &body, &[]).await;
    assert_eq!((a.status, b.status), (201, 201));
    assert_eq!(a.body, b.body);
    // Nothing says it was a repeat: whoever sends identical values learns nothing from it.
    assert_eq!(b.header("idempotent-replayed"), None);
    let public = env.post_public("demo", &body, &[]).await;
    assert_eq!(public.header("idempotent-replayed"), None);
    assert_eq!(env.items_of("interaction").await.len(), 1);
    assert_eq!(env.drain_queue().await.len(), 1);
    // After the 30 s window the same values are a new submission of the same lead.
    env.intake.clock = later;
    let c = env.post_json("demo", &body, &[]).await;
    assert_eq!(c.body["lead"], "matched");
    assert_eq!(c.body["lead_id"], a.body["lead_id"]);
    assert_eq!(env.items_of("interaction").await.len(), 2);
}

#[tokio::test]
async fn honeypot_answers_like_success_and_stores_only_spam() {
    let env = TestEnv::new().await;
    let mut body = person("bot@example.jp");
    body["website"] = json!("http://spam.example");
    let r = env.post_json("demo", &body, &[]).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["contact"], "created");
    let items = env.items().await;
    assert_eq!(items.len(), 1, "only the spam record");
    assert_eq!(s(&items[0], "type"), "spam");
    assert!(s(&items[0], "pk").starts_with("SPAM#demo#"));
    assert!(env.drain_queue().await.is_empty());
}

async fn assert_nothing_stored(env: &TestEnv, what: &str) {
    assert!(env.items().await.is_empty(), "{what}: items were written");
    assert!(env.drain_queue().await.is_empty(), "{what}: a message was sent");
}

#[tokio::test]
async fn every_bad_input_class_gets_its_4xx_and_stores_nothing() {
    let env = TestEnv::new().await;
    env.put_form(json!({"id": "strict", "name": "Strict", "unknown_fields": "reject", "fields": [{"name": "company", "required": true}]})).await;
    let post = |form: &'static str, ct: &'static str, body: Vec<u8>| {
        let env = &env;
        async move {
            env.send(
                "POST",
                &format!("/forms/{form}/submissions"),
                &[("content-type", ct)],
                &body,
            )
            .await
        }
    };

    let r = post(
        "nope",
        "application/json",
        person("a@example.jp").to_string().into_bytes(),
    )
    .await;
    assert_eq!((r.status, r.body["error"].as_str()), (404, Some("unknown_form")));
    assert_nothing_stored(&env, "unknown form").await;

    let r = post("demo", "application/json", b"{\"email\": ".to_vec()).await;
    assert_eq!((r.status, r.body["error"].as_str()), (400, Some("malformed_body")));
    let r = post("demo", "application/json", b"[1,2]".to_vec()).await;
    assert_eq!(r.status, 400);
    let r = post(
        "demo",
        "application/x-www-form-urlencoded",
        b"email=a%40b.co&last_name=%FF%FE".to_vec(),
    )
    .await;
    assert_eq!((r.status, r.body["error"].as_str()), (400, Some("malformed_body")));
    let r = post("demo", "application/json; charset=shift_jis", b"{}".to_vec()).await;
    assert_eq!(r.status, 415);
    let r = post("demo", "text/plain", b"email=a@b.co".to_vec()).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    assert_nothing_stored(&env, "bad encodings").await;

    let mut big = person("big@example.jp");
    big["message"] = json!("x".repeat(70 * 1024));
    let r = post("demo", "application/json", big.to_string().into_bytes()).await;
    assert_eq!((r.status, r.body["error"].as_str()), (413, Some("body_too_large")));
    assert_nothing_stored(&env, "too large").await;

    let r = post(
        "demo",
        "application/json",
        json!({"email": "not-an-email", "last_name": "", "industry": "mining"})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["error"], "validation_failed");
    let errors: Vec<(String, String)> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap().to_owned(),
                e["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        errors.contains(&("email".into(), "is not a valid email address".into())),
        "{errors:?}"
    );
    assert!(errors.contains(&(
        "industry".into(),
        "must be one of: IT, finance, healthcare, manufacturing, retail, other".into()
    )));
    assert!(errors.contains(&("last_name".into(), "is required".into())));
    let r = post(
        "demo",
        "application/json",
        json!({"email": "a@example.jp", "last_name": "x".repeat(256)})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["errors"][0]["message"], "must be at most 255 characters");
    let r = post(
        "strict",
        "application/json",
        json!({"email": "a@example.jp", "company": "c", "utm_source": "x"})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.body["errors"][0],
        json!({"field": "utm_source", "message": "is not an accepted field"})
    );
    let r = post(
        "strict",
        "application/json",
        json!({"email": "a@example.jp"}).to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        r.body["errors"][0],
        json!({"field": "company", "message": "is required"})
    );
    assert_nothing_stored(&env, "validation").await;

    let r = env
        .send(
            "POST",
            "/forms/demo/submissions",
            &[("content-type", "application/json"), ("origin", "https://evil.example")],
            person("a@example.jp").to_string().as_bytes(),
        )
        .await;
    assert_eq!((r.status, r.body["error"].as_str()), (403, Some("origin_not_allowed")));
    let r = env
        .send(
            "POST",
            "/forms/demo/submissions",
            &[("content-type", "application/json")],
            &[0xff, 0xfe],
        )
        .await;
    assert_eq!(r.status, 400);
    let r = env
        .post_json(
            "demo",
            &person("a@example.jp"),
            &[("idempotency-key", &"k".repeat(300))],
        )
        .await;
    assert_eq!(r.status, 422);
    assert_nothing_stored(&env, "origin and headers").await;
}

#[tokio::test]
async fn cors_only_for_the_forms_origins() {
    let env = TestEnv::new().await;
    let ok = env
        .send(
            "OPTIONS",
            "/forms/demo/submissions",
            &[
                ("origin", "http://localhost:3000"),
                ("access-control-request-method", "POST"),
            ],
            b"",
        )
        .await;
    assert_eq!(ok.status, 204);
    assert_eq!(ok.header("access-control-allow-origin"), Some("http://localhost:3000"));
    assert!(ok
        .header("access-control-allow-headers")
        .unwrap()
        .contains("idempotency-key"));
    assert!(ok.header("access-control-allow-methods").unwrap().contains("POST"));
    let bad = env
        .send(
            "OPTIONS",
            "/forms/demo/submissions",
            &[("origin", "https://evil.example")],
            b"",
        )
        .await;
    assert_eq!(bad.status, 403);
    assert_eq!(bad.header("access-control-allow-origin"), None);
    let post = env
        .post_json(
            "demo",
            &person("cors@example.jp"),
            &[("origin", "http://localhost:3000")],
        )
        .await;
    assert_eq!(post.status, 201);
    assert_eq!(
        post.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    assert_eq!(post.header("vary"), Some("Origin"));
}

#[tokio::test]
async fn plain_html_form_is_answered_with_redirects() {
    let env = TestEnv::new().await;
    let html = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("accept", "text/html,application/xhtml+xml"),
    ];
    let ok = env
        .send(
            "POST",
            "/forms/demo/submissions",
            &html,
            "email=html%40example.jp&last_name=%E5%B1%B1%E7%94%B0&consent=yes&website=".as_bytes(),
        )
        .await;
    assert_eq!(ok.status, 303);
    assert_eq!(ok.header("location"), Some("/thanks"));
    let bad = env
        .send("POST", "/forms/demo/submissions", &html, b"email=nope&last_name=")
        .await;
    assert_eq!(bad.status, 303);
    let location = bad.header("location").unwrap();
    assert!(location.starts_with("/form-error?"), "{location}");
    assert!(
        location.contains("error%2Eemail=is%20not%20a%20valid%20email%20address"),
        "{location}"
    );
    let contacts = env.items_of("contact").await;
    assert_eq!(contacts.len(), 1);
    assert_eq!(s(&contacts[0], "last_name"), "山田");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_concurrent_submissions_of_one_new_email_make_one_contact_and_one_lead() {
    let env = TestEnv::new().await;
    env.post_json("demo", &person("warm@example.jp"), &[]).await; // warm the form cache
    let replies = futures::future::join_all((0..30).map(|i| {
        let env = &env;
        async move {
            let body = json!({"email": "race@example.jp", "last_name": "競争", "company": format!("Co {i}")});
            env.post_json("demo", &body, &[]).await
        }
    }))
    .await;
    let mut contact_ids: Vec<&str> = replies
        .iter()
        .map(|r| r.body["contact_id"].as_str().unwrap_or("?"))
        .collect();
    let mut lead_ids: Vec<&str> = replies
        .iter()
        .map(|r| r.body["lead_id"].as_str().unwrap_or("?"))
        .collect();
    assert!(
        replies.iter().all(|r| r.status == 201),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(replies.iter().filter(|r| r.body["contact"] == "created").count(), 1);
    assert_eq!(replies.iter().filter(|r| r.body["lead"] == "created").count(), 1);
    contact_ids.dedup();
    lead_ids.dedup();
    assert_eq!((contact_ids.len(), lead_ids.len()), (1, 1));
    let race: Vec<_> = env
        .items_of("contact")
        .await
        .into_iter()
        .filter(|c| s(c, "email") == "race@example.jp")
        .collect();
    assert_eq!(race.len(), 1);
    let leads: Vec<_> = env
        .items_of("lead")
        .await
        .into_iter()
        .filter(|l| s(l, "lead_id") == lead_ids[0])
        .collect();
    assert_eq!(leads.len(), 1);
    assert_eq!(n(&leads[0], "submissions"), 30, "every submission counted once");
    let ixs = env
        .items_of("interaction")
        .await
        .into_iter()
        .filter(|i| s(i, "lead_id") == lead_ids[0])
        .count();
    assert_eq!(ixs, 30);
    assert_eq!(env.items_of("contact").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_identical_concurrent_clicks_record_one_interaction() {
    let env = TestEnv::new().await;
    let body = person("burst@example.jp");
    let replies = futures::future::join_all((0..30).map(|_| env.post_json("demo", &body, &[]))).await;
    assert!(replies.iter().all(|r| r.status == 201 && r.body == replies[0].body));
    assert_eq!(env.items_of("contact").await.len(), 1);
    assert_eq!(env.items_of("lead").await.len(), 1);
    assert_eq!(env.items_of("interaction").await.len(), 1);
    assert_eq!(env.drain_queue().await.len(), 1);
}

#[tokio::test]
async fn a_failed_send_leaves_the_interaction_in_the_outbox_and_the_relay_resends_it() {
    let mut env = TestEnv::new().await;
    let settings = env.stack.settings().unwrap();
    let broken = intake::Settings {
        scoring_queue_url: format!("{}-missing", settings.scoring_queue_url),
        ..settings
    };
    env.intake = intake::AwsIntake::new(&env.stack.clients, &broken, env.stack.intake_secrets.clone());
    let r = env.post_json("demo", &person("lost@example.jp"), &[]).await;
    assert_eq!(
        r.status, 201,
        "accepted: the interaction is durable even though the send failed"
    );
    assert!(env.drain_queue().await.is_empty());

    let store = leadflow_aws::intake::DynamoIntake::new(env.stack.table().unwrap());
    let queue = leadflow_aws::sqs::SqsQueue::new(env.stack.clients.sqs.clone(), env.queue_url());
    // Within the grace period nothing is due: intake's own send is expected to have worked.
    let early = leadflow_domain::outbox::relay(&store, &queue, Utc::now(), 100)
        .await
        .unwrap();
    assert_eq!(early.published, 0);
    let late = Utc::now() + Duration::minutes(3);
    let report = leadflow_domain::outbox::relay(&store, &queue, late, 100).await.unwrap();
    assert_eq!(report.published, 1);
    let msgs = env.drain_queue().await;
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["lead_id"], r.body["lead_id"]);
    // Postponed: the next relay pass does not send it again straight away.
    assert_eq!(
        leadflow_domain::outbox::relay(&store, &queue, late, 100)
            .await
            .unwrap()
            .published,
        0
    );
    // Once the consumer confirms it, it leaves the outbox for good.
    let lead = leadflow_domain::records::LeadId::parse(msgs[0]["lead_id"].as_str().unwrap()).unwrap();
    let ix = leadflow_domain::records::InteractionId::parse(msgs[0]["interaction_id"].as_str().unwrap()).unwrap();
    store.confirm_interaction(lead, ix).await.unwrap();
    let much_later = Utc::now() + Duration::hours(2);
    assert_eq!(
        leadflow_domain::outbox::relay(&store, &queue, much_later, 100)
            .await
            .unwrap()
            .published,
        0
    );
}

#[tokio::test]
async fn the_public_answer_names_no_record_and_is_the_same_for_a_new_and_a_known_person() {
    let env = TestEnv::new().await;
    let known = json!({"email": "known@example.jp", "last_name": "既知"});
    let first = env.post_public("demo", &known, &[("idempotency-key", "k-pub")]).await;
    let replay = env.post_public("demo", &known, &[("idempotency-key", "k-pub")]).await;
    let again = env
        .post_public(
            "demo",
            &json!({"email": "known@example.jp", "last_name": "既知", "company": "Acme"}),
            &[],
        )
        .await;
    let stranger = env
        .post_public(
            "demo",
            &json!({"email": "stranger@example.jp", "last_name": "新規"}),
            &[],
        )
        .await;
    let ids: Vec<String> = env
        .items_of("contact")
        .await
        .iter()
        .chain(env.items_of("lead").await.iter())
        .flat_map(|i| [s(i, "contact_id"), s(i, "lead_id")])
        .filter(|v| !v.is_empty())
        .collect();
    assert_eq!(env.items_of("contact").await.len(), 2, "{ids:?}");
    for r in [&first, &replay, &again, &stranger] {
        assert_eq!(r.status, 201, "{}", r.body);
        let keys: Vec<&String> = r.body.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["receipt", "status"], "{}", r.body);
        assert_eq!(r.body["status"], "accepted");
        let text = r.body.to_string();
        assert!(
            ids.iter().all(|id| !text.contains(id.as_str())),
            "{text} names a record"
        );
    }
    assert_eq!(first.body, replay.body, "a replay answers the same receipt");
    assert_ne!(first.body["receipt"], again.body["receipt"]);
    // A back-end integration on the IAM route is told the ids.
    let server = env
        .post_json(
            "demo",
            &json!({"email": "known@example.jp", "last_name": "既知", "company": "Server"}),
            &[],
        )
        .await;
    assert_eq!(
        (server.body["contact"].as_str(), server.body["lead"].as_str()),
        (Some("matched"), Some("matched"))
    );
}

#[tokio::test]
async fn a_json_body_naming_a_key_twice_is_refused_and_stores_nothing() {
    let env = TestEnv::new().await;
    let json = |body: &str| {
        let env = &env;
        let body = body.as_bytes().to_vec();
        async move {
            env.send(
                "POST",
                "/forms/demo/submissions",
                &[("content-type", "application/json")],
                &body,
            )
            .await
        }
    };
    // serde_json alone would keep the last email: a lead for someone who never asked.
    let r = json(r#"{"email": "taro@example.jp", "last_name": "山田", "email": "someone.else@example.jp"}"#).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (400, Some("malformed_body")),
        "{}",
        r.body
    );
    assert!(r.body["message"].as_str().unwrap().contains("\"email\""), "{}", r.body);
    // Nested objects are read the same way.
    let r = json(r#"{"email": "taro@example.jp", "last_name": "山田", "extra": {"k": 1, "k": 2}}"#).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (400, Some("malformed_body")),
        "{}",
        r.body
    );
    assert!(r.body["message"].as_str().unwrap().contains("\"k\""), "{}", r.body);
    assert_nothing_stored(&env, "duplicate keys").await;
}

#[tokio::test]
async fn a_control_character_inside_an_email_is_refused_never_stripped() {
    let env = TestEnv::new().await;
    for email in [
        "taro\u{0}@example.jp",
        "taro\u{202e}@example.jp",
        "taro@\u{200b}example.jp",
    ] {
        let r = env
            .post_public(
                "demo",
                &json!({"email": email, "last_name": "山田", "consent": true}),
                &[],
            )
            .await;
        assert_eq!(r.status, 422, "{email:?}: {}", r.body);
        assert_eq!(r.body["error"], "validation_failed");
        assert_eq!(
            r.body["errors"],
            json!([{"field": "email", "message": "must not contain control or invisible characters"}]),
            "{email:?}"
        );
    }
    let r = env
        .send(
            "POST",
            "/forms/demo/submissions",
            &[("content-type", "application/x-www-form-urlencoded")],
            b"email=taro%00%40example.jp&last_name=x",
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "email");
    assert_nothing_stored(&env, "control characters in an email").await;
}

#[tokio::test]
async fn names_are_stored_without_bidi_or_zero_width_characters_and_a_textarea_keeps_its_lines() {
    let env = TestEnv::new().await;
    let r = env
        .post_json(
            "demo",
            &json!({
                "email": "bidi@example.jp", "last_name": "山田\u{202E}\u{200B}太郎", "first_name": "\u{feff}花子\u{2066}",
                "company": "Acme\u{200d} \u{2060}Corp", "job_title": "部長\u{0}\u{2069}",
                "message": "一行目\u{200b}\r\n二行目\u{202e}\n\n三行目"
            }),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let contact = &env.items_of("contact").await[0];
    assert_eq!(s(contact, "last_name"), "山田太郎");
    assert_eq!(s(contact, "first_name"), "花子");
    assert_eq!(s(contact, "company"), "Acme Corp");
    assert_eq!(s(contact, "job_title"), "部長");
    let lead = &env.items_of("lead").await[0];
    assert_eq!(
        lead["fields"].as_m().unwrap()["message"].as_s().unwrap(),
        "一行目\n二行目\n\n三行目"
    );
}
