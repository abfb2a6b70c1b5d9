//! Seed 002's HOT-lead segment through the real functions: form submissions and page views go
//! through intake, the events API and scoring; the segment is evaluated from what scoring kept.

use chrono::{Duration, Utc};
use leadflow_cli::{render_explanation, segment_explain, segment_ls, Target};
use leadflow_tests::TestEnv;
use serde_json::{json, Value};

const SITE_KEY: &str = "pk_demo_site_2026";

fn target(env: &TestEnv) -> Target {
    env.cli_target()
}

async fn page_views(env: &TestEnv, lead: &str, n: usize) {
    for i in 0..n {
        let r = env
            .send(
                "POST",
                "/internal/events",
                &[("content-type", "application/json"), ("x-leadflow-site-key", SITE_KEY)],
                json!({"type": "page_view", "lead_id": lead, "event_id": format!("pv-{lead}-{i}"), "url": "https://example.jp/pricing"})
                    .to_string()
                    .as_bytes(),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
}

async fn post_activity(env: &TestEnv, lead: &str, body: Value) -> leadflow_tests::Reply {
    env.send(
        "POST",
        &format!("/leads/{lead}/activities"),
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
    .await
}

fn member(v: &Value) -> bool {
    v["leads"][0]["explanation"]["member"].as_bool().unwrap()
}

fn block<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["leads"][0]["explanation"]["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id)
        .unwrap()
}

#[tokio::test]
async fn seed_002_hot_leads_are_in_hot_until_the_window_passes_or_sales_calls() {
    let env = TestEnv::new().await;
    let t = target(&env);
    assert!(segment_ls(&t)
        .await
        .unwrap()
        .iter()
        .any(|s| s.def.id == "hot" && s.def.expression == "1 AND 2 AND NOT 3 AND 4"));
    let a = env
        .post_json("demo", &json!({"email": "hot-a@example.jp", "last_name": "熱田"}), &[])
        .await;
    let b = env
        .post_json("demo", &json!({"email": "hot-b@example.jp", "last_name": "冷泉"}), &[])
        .await;
    let lead_a = a.body["lead_id"].as_str().unwrap().to_owned();
    let lead_b = b.body["lead_id"].as_str().unwrap().to_owned();
    page_views(&env, &lead_a, 16).await;
    page_views(&env, &lead_b, 14).await;
    env.run_scoring().await;
    let now = Utc::now();

    let v = segment_explain(&t, "hot", &lead_a, now).await.unwrap();
    assert!(member(&v), "16 page views this month and a form: {v}");
    assert_eq!(block(&v, "1")["conditions"][0]["actual"], "16");
    assert_eq!(block(&v, "2")["conditions"][0]["actual"], "1");
    let text = render_explanation(&v);
    assert!(
        text.contains("✓ interactions page_viewed within 30 days >= 15  (has: 16)"),
        "{text}"
    );

    let v = segment_explain(&t, "hot", "hot-b@example.jp", now).await.unwrap();
    assert!(!member(&v), "14 page views are not enough");
    // 31 days on, the 16 views of lead A have left the 30-day window.
    let later = now + Duration::days(31);
    let v = segment_explain(&t, "hot", &lead_a, later).await.unwrap();
    assert!(!member(&v));
    assert_eq!(block(&v, "1")["conditions"][0]["actual"], "0");
    assert_eq!(block(&v, "2")["holds"], true, "the application still counts");

    // Inside sales calls lead A: it leaves the HOT list (NOT 3).
    let r = post_activity(
        &env,
        &lead_a,
        json!({"type": "phone", "result": "continue", "content": "called", "source": "HOT lead list"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let v = segment_explain(&t, "hot", &lead_a, Utc::now()).await.unwrap();
    assert!(!member(&v));
    assert_eq!(block(&v, "3")["conditions"][0]["actual"], "1");
    assert!(segment_explain(&t, "no-such", &lead_a, now).await.is_err());
}

/// Seed 002's follow-up: a lead worked from the HOT list and archived leaves that list; a lead
/// whose visit became an opportunity goes on the opportunity list, in the activity's own write.
#[tokio::test]
async fn activity_results_move_leads_between_lists() {
    use leadflow_cli::{list_add, list_name, list_show};
    let env = TestEnv::new().await;
    let t = target(&env);
    let a = env
        .post_json("demo", &json!({"email": "list-a@example.jp", "last_name": "一"}), &[])
        .await;
    let b = env
        .post_json("demo", &json!({"email": "list-b@example.jp", "last_name": "二"}), &[])
        .await;
    let pair = |v: &leadflow_tests::Reply| {
        (
            leadflow_domain::records::LeadId::parse(v.body["lead_id"].as_str().unwrap()).unwrap(),
            leadflow_domain::records::ContactId::parse(v.body["contact_id"].as_str().unwrap()).unwrap(),
        )
    };
    let hot = list_name("HOT 2026-11-23").unwrap();
    list_add(&t, &hot, &[pair(&a), pair(&b)], "segment:hot").await.unwrap();
    let lead_a = pair(&a).0.to_string();
    let lead_b = pair(&b).0.to_string();
    let r = post_activity(
        &env,
        &lead_a,
        json!({"type": "phone", "result": "archive", "recycle": true, "list": "HOT 2026-11-23", "content": "not now"}),
    )
    .await;
    assert!(r.status < 300, "{} {}", r.status, r.body);
    let r = post_activity(
        &env,
        &lead_b,
        json!({"type": "visit", "result": "opportunity", "content": "demo booked"}),
    )
    .await;
    assert!(r.status < 500, "{} {}", r.status, r.body);
    let v = list_show(&t, &hot).await.unwrap();
    assert_eq!(v["count"], 1, "A was archived off the list: {v}");
    assert_eq!(v["members"][0]["lead_id"], lead_b);
    let opp = list_show(&t, &list_name("opportunity").unwrap()).await.unwrap();
    assert_eq!(opp["count"], 1, "{opp}");
    assert_eq!(opp["members"][0]["lead_id"], lead_b);
    assert_eq!(opp["members"][0]["source"], "activity:opportunity");
    let shown = leadflow_cli::lead_show(&t, &lead_b).await.unwrap();
    let mut on: Vec<&str> = shown["leads"][0]["lists"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    on.sort();
    assert_eq!(on, ["HOT 2026-11-23", "opportunity"]);
    assert!(leadflow_cli::render_lead(&shown).contains("lists: "));
    // A list name that cannot exist is refused with the field named, and nothing is recorded.
    let r = post_activity(
        &env,
        &lead_b,
        json!({"type": "phone", "result": "archive", "list": "a#b"}),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.to_string().contains("list"), "{}", r.body);
}

/// Membership is kept by the writers themselves, never rebuilt: scoring puts a lead in `hot`
/// the moment its 16th page view is scored (with why, visible in `lead show` and `segment
/// show`), the re-scoring pass takes it out the day its views leave the 30-day window, and a
/// logged call takes another out in the activity's own write. A lead whose memberships did not
/// change writes nothing more.
#[tokio::test]
async fn writers_keep_hot_membership_current_with_why_and_history() {
    use leadflow_cli::{lead_show, render_lead, render_segment, segment_show};
    let mut env = TestEnv::new().await;
    let t = target(&env);
    let mut leads = Vec::new();
    for (email, views) in [
        ("keep-a@example.jp", 16),
        ("keep-b@example.jp", 16),
        ("keep-c@example.jp", 14),
    ] {
        let r = env
            .post_json("demo", &json!({"email": email, "last_name": "保持"}), &[])
            .await;
        let lead = r.body["lead_id"].as_str().unwrap().to_owned();
        page_views(&env, &lead, views).await;
        leads.push(lead);
    }
    env.run_scoring().await;
    let shown = segment_show(&t, "hot", 100).await.unwrap();
    assert_eq!(shown["count"], 2, "{shown}");
    // segment.joined, once for each lead that joined, with why.
    let seg = |events: &[leadflow_domain::events::DomainEvent], kind: &str| {
        let mut v: Vec<String> = events
            .iter()
            .filter(|e| e.kind == kind && e.data["segment"] == "hot")
            .map(|e| e.lead_id.unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let events = env.stack.take_events().await.unwrap();
    let mut joined = vec![leads[0].clone(), leads[1].clone()];
    joined.sort();
    assert_eq!(seg(&events, "segment.joined"), joined);
    assert!(seg(&events, "segment.left").is_empty());
    let mut in_hot: Vec<&str> = shown["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["lead_id"].as_str().unwrap())
        .collect();
    in_hot.sort();
    let mut expected = vec![leads[0].as_str(), leads[1].as_str()];
    expected.sort();
    assert_eq!(in_hot, expected);
    let why = shown["members"][0]["why"].as_str().unwrap();
    assert!(
        why.starts_with("1 ✓ interactions page_viewed within 30 days >= 15: 16; 2 ✓"),
        "{why}"
    );
    assert!(!why.contains("@"), "no address in membership records: {why}");
    let text = render_segment(&shown);
    assert!(
        text.contains("HOTリード") && text.contains("members 2") && text.contains("保持"),
        "{text}"
    );
    let a = lead_show(&t, &leads[0]).await.unwrap();
    let human = render_lead(&a);
    assert!(human.contains("segments: hot"), "{human}");
    assert!(human.contains("joined hot: 1 ✓"), "{human}");

    // Another page view for a member changes nothing about its membership: no segment writes.
    let r = env
        .send(
            "POST",
            "/internal/events",
            &[("content-type", "application/json"), ("x-leadflow-site-key", SITE_KEY)],
            json!({"type": "page_view", "lead_id": leads[1], "event_id": "pv-17th", "url": "https://example.jp/"})
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let before = env.requests.bodies().len();
    env.run_scoring().await;
    let writes: Vec<Value> = env.requests.bodies()[before..]
        .iter()
        .filter(|(op, _)| op == "TransactWriteItems")
        .map(|(_, b)| b.clone())
        .collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    let text = writes[0].to_string();
    assert!(!text.contains("SEGMENT#") && !text.contains("SEGLOG#"), "{text}");

    // Inside sales calls B: out of hot in the activity's write, and the history says why.
    let r = post_activity(
        &env,
        &leads[1],
        json!({"type": "phone", "result": "continue", "content": "called", "source": "HOT lead list"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let shown = segment_show(&t, "hot", 100).await.unwrap();
    assert_eq!(shown["count"], 1, "{shown}");
    assert_eq!(shown["members"][0]["lead_id"], leads[0].as_str());
    let b = render_lead(&lead_show(&t, &leads[1]).await.unwrap());
    assert!(b.contains("left hot: ") && b.contains("3 ✓ activities >= 1: 1"), "{b}");
    assert!(b.contains("segments: none"), "{b}");
    let events = env.stack.take_events().await.unwrap();
    assert_eq!(seg(&events, "segment.left"), [leads[1].clone()], "{events:?}");
    assert!(seg(&events, "segment.joined").is_empty());

    // 31 days on, A's views have left the window: the due re-scoring pass takes A out.
    env.scoring.clock = || Utc::now() + Duration::days(31);
    let pass = env.scoring.rescore("due").await.unwrap();
    assert!(pass.rescored >= 1, "{pass:?}");
    let shown = segment_show(&t, "hot", 100).await.unwrap();
    assert_eq!(shown["count"], 0, "{shown}");
    let events = env.stack.take_events().await.unwrap();
    assert_eq!(seg(&events, "segment.left"), [leads[0].clone()], "{events:?}");
    let a = render_lead(&lead_show(&t, &leads[0]).await.unwrap());
    assert!(
        a.contains("left hot: 1 ✗ interactions page_viewed within 30 days >= 15: 0"),
        "{a}"
    );
}

/// Next week's weekday `offset` (0 = Monday) at 09:00 in Tokyo: after anything the test stored.
fn next_week(offset: i64) -> chrono::DateTime<Utc> {
    use chrono::{Datelike, FixedOffset, TimeZone};
    let jst = FixedOffset::east_opt(9 * 3600).unwrap();
    let today = Utc::now().with_timezone(&jst).date_naive();
    let monday = today + Duration::days(7 - i64::from(today.weekday().num_days_from_monday()));
    jst.from_local_datetime(&(monday + Duration::days(offset)).and_hms_opt(9, 0, 0).unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

/// Seed 002's week through the real process function: Monday's run snapshots `hot` into a dated
/// list and emails it to inside sales (exactly the hot leads, with why); a call on Wednesday
/// follows one up; Thursday's reminder names only the unfollowed one, Friday's report to
/// marketing too; a second run the same day sends nothing again.
#[tokio::test]
async fn the_weekly_routine_lists_reminds_and_reports_only_the_unfollowed() {
    use leadflow_cli::{list_name, list_show};
    use leadflow_tests::emails_to;
    let mut env = TestEnv::new().await;
    let t = target(&env);
    let mut leads = Vec::new();
    for (email, name, views) in [
        ("week-a@example.jp", "週一", 16),
        ("week-b@example.jp", "週二", 17),
        ("week-c@example.jp", "週三", 3),
    ] {
        let r = env
            .post_json(
                "demo",
                &json!({"email": email, "last_name": name, "company": "週次商事"}),
                &[],
            )
            .await;
        let lead = r.body["lead_id"].as_str().unwrap().to_owned();
        page_views(&env, &lead, views).await;
        leads.push(lead);
    }
    env.run_scoring().await;

    env.process.clock = || next_week(0);
    let monday = env.process.routine("daily").await.unwrap();
    let jst = chrono::FixedOffset::east_opt(9 * 3600).unwrap();
    let list = format!("HOT {}", next_week(0).with_timezone(&jst).date_naive());
    assert_eq!(monday.list.as_deref(), Some(list.as_str()));
    assert_eq!(monday.listed, 2, "{monday:?}");
    let shown = list_show(&t, &list_name(&list).unwrap()).await.unwrap();
    assert_eq!(shown["count"], 2);
    let inbox = emails_to("inside-sales@example.jp").await;
    assert_eq!(inbox.len(), 1, "one email to inside sales");
    let m = &inbox[0];
    assert_eq!(m.subject(), format!("【leadflow】今週のHOTリード 2件 ({list})"));
    let text = m.text();
    assert!(
        text.contains("山本 美咲 様") && text.contains("週一") && text.contains("週二"),
        "{text}"
    );
    assert!(!text.contains("週三"), "not hot: {text}");
    assert!(
        text.contains("リスト入りの理由: 1 ✓ interactions page_viewed within 30 days >= 15: 1"),
        "{text}"
    );
    assert!(text.contains("JST"), "times in JST: {text}");
    assert!(m.header("List-Unsubscribe").is_empty(), "internal: no unsubscribe");
    // Again on Monday (a retried schedule): nothing is sent twice.
    env.process.routine("daily").await.unwrap();
    assert_eq!(emails_to("inside-sales@example.jp").await.len(), 1);

    // Wednesday: inside sales calls A, from the HOT list.
    env.process.clock = || next_week(2);
    let r = post_activity(&env, &leads[0], json!({"type": "phone", "result": "continue", "content": "資料送付の約束", "source": "HOT lead list", "list": list})).await;
    assert_eq!(r.status, 201, "{}", r.body);

    // Thursday: the reminder names B only.
    env.process.clock = || next_week(3);
    let thursday = env.process.routine("daily").await.unwrap();
    assert_eq!(thursday.unfollowed, 1, "{thursday:?}");
    let inbox = emails_to("inside-sales@example.jp").await;
    assert_eq!(inbox.len(), 2);
    let reminder = inbox.iter().find(|m| m.subject().contains("リマインド")).unwrap();
    assert!(
        reminder.subject().contains("未フォローのHOTリード 1件"),
        "{}",
        reminder.subject()
    );
    assert!(
        reminder.text().contains("週二") && !reminder.text().contains("週一"),
        "{}",
        reminder.text()
    );

    // Friday: marketing's report, the same one lead.
    env.process.clock = || next_week(4);
    let friday = env.process.routine("daily").await.unwrap();
    assert_eq!(friday.unfollowed, 1);
    let report = emails_to("marketing@example.jp").await;
    assert_eq!(report.len(), 1);
    assert!(report[0].subject().contains("週次レポート"), "{}", report[0].subject());
    assert!(report[0].text().contains("週二") && !report[0].text().contains("週一"));
    // The weekend: nothing.
    env.process.clock = || next_week(5);
    assert!(env.process.routine("daily").await.unwrap().steps.is_empty());
}

/// Erasing a person takes them out of every segment index too (the history entry of the join
/// points at the member item).
#[tokio::test]
async fn erasing_a_person_removes_their_segment_memberships() {
    let env = TestEnv::new().await;
    let t = target(&env);
    let r = env
        .post_json(
            "demo",
            &json!({"email": "erase-hot@example.jp", "last_name": "消去"}),
            &[],
        )
        .await;
    let lead = r.body["lead_id"].as_str().unwrap().to_owned();
    page_views(&env, &lead, 16).await;
    env.run_scoring().await;
    assert_eq!(leadflow_cli::segment_show(&t, "hot", 10).await.unwrap()["count"], 1);
    leadflow_cli::person_erase(&t, "erase-hot@example.jp").await.unwrap();
    assert_eq!(leadflow_cli::segment_show(&t, "hot", 10).await.unwrap()["count"], 0);
}

/// A segment added after leads were scored is backfilled by the stale re-scoring pass: a walk
/// over every scored lead with a cursor, which writes only the leads whose memberships differ,
/// and a second pass finds nothing left to do.
#[tokio::test]
async fn a_new_segment_is_backfilled_by_the_stale_pass() {
    use leadflow_aws::catalog::Catalog;
    use leadflow_domain::segment::SegmentDef;
    let env = TestEnv::new().await;
    let t = target(&env);
    for i in 0..3 {
        env.post_json(
            "demo",
            &json!({"email": format!("fill-{i}@example.jp"), "last_name": "補充", "job_title": "部長"}),
            &[],
        )
        .await;
    }
    env.run_scoring().await;
    let def: SegmentDef = serde_json::from_value(json!({
        "id": "applied",
        "name": "申込あり",
        "blocks": {"1": {"conditions": [{"on": "interactions", "kind": "form_submitted", "op": ">=", "value": 1}]}},
        "expression": "1"
    }))
    .unwrap();
    Catalog::<SegmentDef>::new(env.stack.config_table().unwrap())
        .put(&def)
        .await
        .unwrap();
    assert!(leadflow_cli::segment_show(&t, "applied", 10).await.unwrap()["count"] == 0);
    // A scoring container started after the change (its configuration is read afresh).
    let mut scoring = env.stack.scoring().unwrap();
    scoring.rescore_page = 2;
    let pass = scoring.rescore("stale").await.unwrap();
    assert_eq!((pass.examined, pass.rescored), (3, 3), "{pass:?}");
    let shown = leadflow_cli::segment_show(&t, "applied", 10).await.unwrap();
    assert_eq!(shown["count"], 3, "{shown}");
    let again = scoring.rescore("stale").await.unwrap();
    assert_eq!((again.rescored, again.stale_pending), (0, false), "{again:?}");
}

/// Activities recorded before leads kept activity marks are given to them by `segment marks`:
/// a walk over the scored leads that writes only where the marks differ.
#[tokio::test]
async fn segment_marks_gives_older_activities_to_the_leads() {
    use leadflow_aws::keys;
    use leadflow_aws::table::{s, to_av, Condition};
    let env = TestEnv::new().await;
    let t = target(&env);
    let r = env
        .post_json("demo", &json!({"email": "old-call@example.jp", "last_name": "旧"}), &[])
        .await;
    let lead = leadflow_domain::records::LeadId::parse(r.body["lead_id"].as_str().unwrap()).unwrap();
    env.run_scoring().await;
    // An activity item as an earlier version wrote it: no marks on the lead.
    let activity: leadflow_domain::process::activity::Activity = serde_json::from_value(json!({
        "type": "phone", "result": "continue", "actor": "sato", "at": "2026-11-20T01:00:00Z"
    }))
    .unwrap();
    let mut item = leadflow_aws::table::key_item(keys::activity(lead, activity.at));
    item.insert("type".into(), s("activity"));
    item.insert("activity".into(), to_av(&activity).unwrap());
    let table = env.stack.table().unwrap();
    table.put(item, Condition::none()).await.unwrap();
    assert_eq!(leadflow_cli::segment_marks(&t).await.unwrap(), (1, 1));
    let lead_item = table.get(keys::lead(lead)).await.unwrap().unwrap();
    let (_, marks) = leadflow_aws::segments::lead_segments(&lead_item).unwrap();
    assert_eq!(marks.len(), 1);
    assert_eq!(marks[0].at, activity.at);
    assert_eq!(
        leadflow_cli::segment_marks(&t).await.unwrap(),
        (1, 0),
        "nothing left to write"
    );
}
