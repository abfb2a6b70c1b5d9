//! The funnel in numbers, counted as the work happens: a known mix through the real functions
//! (two campaigns, a replayed submission, scoring delivered twice, process runs, a manual move to
//! sales acceptance, a conversion, a disqualification) gives exact counts and rates, and
//! duplicate deliveries change nothing; each change's domain event is published once.

use leadflow_cli::{funnel_csv, render_funnel, report_funnel};
use leadflow_domain::events as ev;
use leadflow_domain::records::Stage;
use leadflow_domain::report::{self, By};
use leadflow_tests::TestEnv;
use serde_json::{json, Value};

fn unsubscribe_token(env: &TestEnv, contact: &str) -> String {
    let contact = leadflow_domain::records::ContactId::parse(contact).unwrap();
    leadflow_domain::process::unsubscribe::token(&env.stack.link_keys.unsubscribe, contact)
}

async fn stage(env: &TestEnv, lead: &str, body: Value) {
    let r = env
        .send(
            "POST",
            &format!("/leads/{lead}/stage"),
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn the_funnel_counts_a_known_mix_exactly_and_duplicates_change_nothing() {
    let env = TestEnv::new().await;
    let mut seminar: Value = leadflow_tests::shipped_form("demo");
    seminar["id"] = json!("seminar");
    seminar["campaign"] = json!("Seminar");
    seminar["redirect"] = Value::Null;
    env.put_form(seminar).await;
    let mut leads = Vec::new();
    let mut contacts = Vec::new();
    for (form, email) in [
        ("demo", "f-1@example.jp"),
        ("demo", "f-2@example.jp"),
        ("demo", "f-3@example.jp"),
        ("seminar", "f-4@example.jp"),
        ("seminar", "f-5@example.jp"),
    ] {
        let key = format!("key-{email}");
        let r = env
            .post_json(
                form,
                &json!({"email": email, "last_name": "数"}),
                &[("idempotency-key", key.as_str())],
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        leads.push(r.body["lead_id"].as_str().unwrap().to_owned());
        contacts.push(r.body["contact_id"].as_str().unwrap().to_owned());
    }
    // A client retry of the first submission: answered from its receipt, counted once.
    let replay = env
        .post_json(
            "demo",
            &json!({"email": "f-1@example.jp", "last_name": "数"}),
            &[("idempotency-key", "key-f-1@example.jp")],
        )
        .await;
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    // Scoring, with every message delivered twice.
    let messages = env.drain_queue().await;
    for m in &messages {
        env.send_raw("ScoringQueue", &m.to_string()).await;
        env.send_raw("ScoringQueue", &m.to_string()).await;
    }
    env.run_scoring().await;
    env.process.run().await.unwrap();
    env.process.run().await.unwrap();
    stage(
        &env,
        &leads[0],
        json!({"move": "set_stage", "stage": "sales_acceptance", "reason": "qualified on the phone"}),
    )
    .await;
    stage(&env, &leads[0], json!({"move": "convert", "reason": "won"})).await;
    stage(&env, &leads[3], json!({"move": "disqualify", "reason": "student"})).await;
    // f-2 unsubscribes by the one-click link, twice.
    for _ in 0..2 {
        let r = env
            .send(
                "POST",
                &format!("/unsubscribe?token={}", unsubscribe_token(&env, &contacts[1])),
                &[("content-type", "application/x-www-form-urlencoded")],
                b"List-Unsubscribe=One-Click",
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }

    // The domain events of all that, each once, with its schema version.
    let events = env.stack.take_events().await.unwrap();
    let of = |kind: &str, lead: &str| {
        events
            .iter()
            .filter(|e| e.kind == kind && e.lead_id.is_some_and(|l| l.to_string() == lead))
            .count()
    };
    let ids: std::collections::BTreeSet<_> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), events.len(), "each event once");
    assert!(events
        .iter()
        .all(|e| e.schema_version == ev::SCHEMA_VERSION && ev::ALL.contains(&e.kind.as_str())));
    for (i, lead) in leads.iter().enumerate() {
        assert_eq!(of(ev::LEAD_CREATED, lead), 1, "{lead}");
        assert_eq!(of(ev::LEAD_SCORED, lead), 1, "scored once, though delivered twice");
        let moves = match i {
            0 => 3, // to MQL, to sales acceptance, converted
            3 => 2, // to MQL, disqualified
            _ => 1,
        };
        assert_eq!(of(ev::LEAD_STAGE_CHANGED, lead), moves, "{lead}");
        assert_eq!(of(ev::LEAD_CONVERTED, lead), usize::from(i == 0));
    }
    let created = events
        .iter()
        .find(|e| e.kind == ev::LEAD_CREATED && e.lead_id.is_some_and(|l| l.to_string() == leads[0]))
        .unwrap();
    assert_eq!(created.data["contact"]["email"], "f-1@example.jp");
    assert_eq!(created.data["contact"]["last_name"], "数");
    assert_eq!(created.data["campaign"], "Ebook");
    let scored = events
        .iter()
        .find(|e| e.kind == ev::LEAD_SCORED && e.lead_id.is_some_and(|l| l.to_string() == leads[0]))
        .unwrap();
    assert_eq!(scored.data["band"], "cold");
    assert!(scored.data.get("contact").is_none(), "ids only beyond lead.created");
    let converted = events.iter().find(|e| e.kind == ev::LEAD_CONVERTED).unwrap();
    assert_eq!(converted.data["reason"], "won");
    let unsubscribed: Vec<_> = events.iter().filter(|e| e.kind == ev::CONTACT_UNSUBSCRIBED).collect();
    assert_eq!(unsubscribed.len(), 1, "the second unsubscribe changed nothing");
    assert_eq!(unsubscribed[0].contact_id.to_string(), contacts[1]);
    assert_eq!(
        events.iter().filter(|e| e.kind == ev::LEAD_HANDED_OFF).count(),
        0,
        "no lead of this mix is sales-ready"
    );

    let t = env.cli_target();
    let today = report::day_of(chrono::Utc::now());
    let rows = report_funnel(&t, today - chrono::Duration::days(1), today, Some(By::Campaign))
        .await
        .unwrap();
    let row = |g: &str| {
        rows.iter()
            .find(|r| r.group == g)
            .unwrap_or_else(|| panic!("{g}: {rows:?}"))
    };
    let count = |g: &str, k: &str| row(g).counts.get(k).copied().unwrap_or(0);
    let mql = report::stage_entered(Stage::AutomatedMarketingQualification);
    let sal = report::stage_entered(Stage::SalesAcceptance);
    for (g, n) in [("Ebook", 3), ("Seminar", 2)] {
        assert_eq!(count(g, report::SUBMISSIONS), n, "{g}");
        assert_eq!(count(g, report::NEW_CONTACTS), n, "{g}");
        assert_eq!(count(g, report::NEW_LEADS), n, "{g}");
        assert_eq!(count(g, &report::stage_entered(Stage::Inquiry)), n, "{g}");
        assert_eq!(count(g, &mql), n, "{g}: every scored lead moved to MQL once");
        assert_eq!(count(g, report::band_entered("cold").as_str()), n, "{g}: first bands");
    }
    assert_eq!((count("Ebook", &sal), count("Ebook", report::CONVERTED)), (1, 1));
    assert_eq!((count("Seminar", &sal), count("Seminar", report::DISQUALIFIED)), (0, 1));
    assert_eq!(row("Ebook").rates["inquiry_to_mql"], Some(1.0));
    assert_eq!(row("Ebook").rates["mql_to_sal"], Some(1.0 / 3.0));
    assert_eq!(row("Ebook").rates["sal_to_converted"], Some(1.0));
    assert_eq!(row("Seminar").rates["mql_to_sal"], Some(0.0));
    assert_eq!(row("Seminar").rates["sal_to_converted"], None);
    // Every step of this mix took less than a day; nobody converted in Seminar.
    for step in ["inquiry_to_mql", "mql_to_sal", "sal_to_converted"] {
        assert_eq!(row("Ebook").median_days[step], Some(0.0), "{step}");
    }
    assert_eq!(row("Seminar").median_days["sal_to_converted"], None);

    // Everything delivered again, the process run again: not one count moves.
    for m in &messages {
        env.send_raw("ScoringQueue", &m.to_string()).await;
    }
    env.run_scoring().await;
    env.process.run().await.unwrap();
    let again = report_funnel(&t, today - chrono::Duration::days(1), today, Some(By::Campaign))
        .await
        .unwrap();
    assert_eq!(again, rows);
    let more = env.stack.take_events().await.unwrap();
    assert!(more.is_empty(), "duplicate deliveries publish nothing: {more:?}");

    // Where the leads are now: running totals kept with every move.
    let now = leadflow_cli::report_stages(&t, Some(By::Campaign)).await.unwrap();
    let g = |group: &str, k: &str| {
        now.iter()
            .find(|(g, _)| g == group)
            .and_then(|(_, v)| v.get(k).copied())
            .unwrap_or(0)
    };
    let in_mql = report::in_stage(Stage::AutomatedMarketingQualification);
    let in_sal = report::in_stage(Stage::SalesAcceptance);
    assert_eq!((g("Ebook", &in_mql), g("Ebook", &in_sal)), (2, 1), "{now:?}");
    assert_eq!((g("Seminar", &in_mql), g("Seminar", &in_sal)), (2, 0), "{now:?}");
    assert_eq!(
        g("Ebook", &report::in_stage(Stage::Inquiry)),
        0,
        "nobody left in Inquiry"
    );
    use leadflow_domain::records::LeadStatus;
    assert_eq!(
        (
            g("Ebook", &report::in_status(LeadStatus::Open)),
            g("Ebook", &report::in_status(LeadStatus::Converted))
        ),
        (2, 1)
    );
    assert_eq!(g("Seminar", &report::in_status(LeadStatus::Disqualified)), 1);
    assert_eq!(
        g("Ebook", &report::in_band("cold")) + g("Seminar", &report::in_band("cold")),
        5
    );
    let text = leadflow_cli::render_stages(&now, report::epoch_day(chrono::Utc::now()));
    assert!(
        text.contains("Ebook\n  stage   automated_marketing_qualification 2 (0.0 days), sales_acceptance 1 (0.0 days)"),
        "{text}"
    );

    let all = report_funnel(&t, today, today, None).await.unwrap();
    let text = render_funnel(&all);
    assert!(text.lines().next().unwrap().starts_with("group"), "{text}");
    assert!(text.contains("all") && text.contains("100.0%"), "{text}");
    let csv = String::from_utf8(funnel_csv(&all, leadflow_cli::Cells::FormulaSafe).unwrap()).unwrap();
    assert!(csv.starts_with('\u{feff}') && csv.contains("inquiry_to_mql"), "{csv}");
}

fn three_minutes_on() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() + chrono::Duration::minutes(3)
}

/// A write whose events the bus refused keeps them in its outbox entry; the process run's
/// relay publishes them (same ids) once they are due, and only once.
#[tokio::test]
async fn events_a_failed_publish_left_in_the_outbox_are_relayed_once() {
    use leadflow_aws::table::{key_item, Condition};
    let mut env = TestEnv::new().await;
    let settings = env.stack.settings().unwrap();
    let refused = env.stack.clients.records(&settings.table, Some("no-such-bus"));
    let contact = leadflow_domain::records::ContactId::generate();
    let event = ev::unsubscribed(contact, chrono::Utc::now(), "test", None);
    let item = refused
        .put_tx(key_item(("EVTEST#1".into(), "X".into())), Condition::none())
        .unwrap();
    let written = refused
        .transact_events(vec![item], None, std::slice::from_ref(&event))
        .await;
    assert!(
        written.unwrap().committed(),
        "the write stands though its publish failed"
    );
    assert!(env.stack.take_events().await.unwrap().is_empty(), "the bus refused it");
    // Not due yet (its writer may still be publishing): the run leaves it.
    env.process.run().await.unwrap();
    assert!(env.stack.take_events().await.unwrap().is_empty());
    env.process.clock = three_minutes_on;
    env.process.run().await.unwrap();
    let relayed = env.stack.take_events().await.unwrap();
    assert_eq!(relayed.len(), 1);
    assert_eq!(
        relayed[0].event_id, event.event_id,
        "the same id: consumers de-duplicate by it"
    );
    assert_eq!(relayed[0].kind, ev::CONTACT_UNSUBSCRIBED);
    env.process.run().await.unwrap();
    assert!(env.stack.take_events().await.unwrap().is_empty(), "relayed once");
}
