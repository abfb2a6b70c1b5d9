//! The funnel in numbers, counted as the work happens: a known mix through the real functions
//! (two campaigns, a replayed submission, scoring delivered twice, process runs, a manual move to
//! sales acceptance, a conversion, a disqualification) gives exact counts and rates, and
//! duplicate deliveries change nothing.

use leadflow_cli::{funnel_csv, render_funnel, report_funnel};
use leadflow_domain::records::Stage;
use leadflow_domain::report::{self, By};
use leadflow_tests::TestEnv;
use serde_json::{json, Value};

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
    let mut seminar: Value = serde_json::from_str(include_str!("../../config/forms/demo.json")).unwrap();
    seminar["id"] = json!("seminar");
    seminar["campaign"] = json!("Seminar");
    seminar["redirect"] = Value::Null;
    env.put_form(seminar).await;
    let mut leads = Vec::new();
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
    let text = leadflow_cli::render_stages(&now);
    assert!(
        text.contains("Ebook\n  stage   automated_marketing_qualification 2, sales_acceptance 1"),
        "{text}"
    );

    let all = report_funnel(&t, today, today, None).await.unwrap();
    let text = render_funnel(&all);
    assert!(text.lines().next().unwrap().starts_with("group"), "{text}");
    assert!(text.contains("all") && text.contains("100.0%"), "{text}");
    let csv = String::from_utf8(funnel_csv(&all).unwrap()).unwrap();
    assert!(csv.starts_with('\u{feff}') && csv.contains("inquiry_to_mql"), "{csv}");
}
