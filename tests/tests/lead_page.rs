//! The lead page behind the owner's hand-off email, through the real process function on the
//! emulator: the link in the email opens it, its form records an activity as the owner (and
//! stops the SLA timer), and a tampered, expired or other owner's link opens nothing.

use chrono::{DateTime, Duration, Utc};
use leadflow_domain::escape_html;
use leadflow_domain::process::lead_link;
use leadflow_tests::{emails_to, s, Item, TestEnv};
use serde_json::{json, Value};

fn t0() -> DateTime<Utc> {
    leadflow_tests::weekday_10am_tokyo()
}
fn t_due() -> DateTime<Utc> {
    t0() + Duration::days(2) + Duration::hours(1)
}

struct Page {
    status: u16,
    headers: Value,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> &str {
        self.headers[name].as_str().unwrap_or("")
    }
}

/// A request through API Gateway's event shape to the real process function, answered as HTML.
async fn call(env: &TestEnv, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Page {
    let (route, event) = env.api_event(method, target, headers, body);
    assert_eq!(route.function, "ProcessFunction");
    assert!(!route.iam, "the link is the authorisation: no IAM on {target}");
    let out = env.process.handle(event).await.unwrap();
    Page {
        status: out["statusCode"].as_u64().unwrap() as u16,
        headers: out["headers"].clone(),
        body: out["body"].as_str().unwrap_or("").to_owned(),
    }
}

async fn post_form(env: &TestEnv, target: &str, form: &[(&str, String)]) -> Page {
    let body = serde_urlencoded::to_string(form).unwrap();
    call(
        env,
        "POST",
        target,
        &[("content-type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
    .await
}

/// Every item, in key order, to see that nothing changed.
async fn snapshot(env: &TestEnv) -> Vec<Item> {
    let mut items = env.items().await;
    items.sort_by_key(|i| (s(i, "pk"), s(i, "sk")));
    items
}

fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("the form's CSRF field") + "name=\"csrf\" value=\"".len();
    page[at..].split('"').next().unwrap().to_owned()
}

fn assert_denied(p: &Page, secrets: &[&str], what: &str) {
    assert_eq!(p.status, 403, "{what}: {}", p.body);
    assert!(p.body.contains("このリンクは使えません"), "{what}: {}", p.body);
    assert!(p.body.contains("This link cannot be used"), "{what}");
    for s in secrets {
        assert!(!p.body.contains(s), "{what}: the refusal shows {s}");
    }
    assert_eq!(p.header("cache-control"), "no-store", "{what}");
}

#[tokio::test]
async fn the_handoff_emails_link_opens_the_lead_page_and_its_form_records_an_activity_as_the_owner() {
    let mut env = TestEnv::new().await;
    env.single_opt_in("demo").await;
    env.process.clock = t0;
    let r = env
        .post_json(
            "demo",
            &json!({"email": "page-lead@example.jp", "last_name": "山田", "first_name": "太郎", "consent": true,
                    "company": "アクメ株式会社", "job_title": "CEO", "industry": "IT", "employees": "300",
                    "phone": "03-1234-5678"}),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let lead = r.body["lead_id"].as_str().unwrap().to_owned();
    env.run_scoring().await;
    let report = env.process.run().await.unwrap();
    assert_eq!(report.handoffs, 1, "{report:?}");
    let lead_item = env.item(&format!("LEAD#{lead}"), "LEAD").await.unwrap();
    let owner = s(&lead_item, "owner");
    let routing: Value = serde_json::from_str(
        &std::fs::read_to_string(leadflow_local::workspace_root().join("config/routing.json")).unwrap(),
    )
    .unwrap();
    let owner_entry = routing["owners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == owner.as_str())
        .unwrap()
        .clone();
    let address = owner_entry["email"].as_str().unwrap().to_owned();
    let recorded_by = format!("記録者: {}", owner_entry["name"].as_str().unwrap());

    // The hand-off email: the lead's phone and email, and a link for this owner to this lead.
    let mail: Vec<_> = emails_to(&address)
        .await
        .into_iter()
        .filter(|m| m.text().contains(&lead))
        .collect();
    assert_eq!(mail.len(), 1);
    let text = mail[0].text();
    for line in ["電話: 03-1234-5678", "メール: page-lead@example.jp"] {
        assert!(text.contains(line), "{line} in: {text}");
    }
    let url = text
        .lines()
        .find_map(|l| l.strip_prefix("リードを開く: "))
        .expect("the link")
        .trim()
        .to_owned();
    let target = url
        .strip_prefix("https://leadflow.test")
        .expect("on the public URL")
        .to_owned();
    assert!(target.starts_with(&format!("/sales/leads/{lead}?t=l1.")), "{target}");
    assert!(mail[0].html().contains(&escape_html(&url)), "the HTML part links too");
    assert!(!text.contains("console.example.jp"), "no placeholder link");

    // GET shows the lead and changes nothing.
    let before = snapshot(&env).await;
    let page = call(&env, "GET", &target, &[], b"").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    assert_eq!(page.header("cache-control"), "no-store");
    assert_eq!(page.header("referrer-policy"), "no-referrer");
    assert_eq!(page.header("x-robots-tag"), "noindex");
    assert_eq!(page.header("x-content-type-options"), "nosniff");
    assert_eq!(
        page.header("content-security-policy"),
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    for shown in [
        "山田 太郎 様",
        "アクメ株式会社",
        "CEO",
        "href=\"tel:0312345678\"",
        "03-1234-5678",
        "href=\"mailto:page-lead@example.jp\"",
        "name=\"viewport\"",
        "ホットリードへの初回連絡",
    ] {
        assert!(page.body.contains(shown), "{shown} on the page: {}", page.body);
    }
    assert!(!page.body.contains("<script"), "no JavaScript");
    let scoring = env.scoring_of(&lead).await;
    let mut lines = 0;
    for score in scoring["scores"].as_object().unwrap().values() {
        for line in score["explanation"].as_array().unwrap() {
            let detail = escape_html(line["detail"].as_str().unwrap());
            let points = line["points"].as_i64().unwrap();
            assert!(
                page.body.contains(&format!("{points:+}</span> {detail}")),
                "{points:+} {detail} on the page: {}",
                page.body
            );
            lines += 1;
        }
    }
    assert!(lines >= 3, "{scoring}");
    assert_eq!(snapshot(&env).await, before, "a GET changes nothing");

    // The form without its CSRF token, or with another link's, is refused and records nothing.
    let csrf = csrf_of(&page.body);
    let post_target = target.replacen(
        &format!("/sales/leads/{lead}?"),
        &format!("/sales/leads/{lead}/activities?"),
        1,
    );
    let fields = |csrf: &str| {
        [
            ("csrf", csrf),
            ("date", ""),
            ("type", "phone"),
            ("content", "電話で課題をヒアリング <b>"),
            ("result", "continue"),
            ("notes", "来週デモ"),
        ]
        .map(|(k, v)| (k, v.to_owned()))
    };
    let none = post_form(&env, &post_target, &fields("")).await;
    assert_denied(&none, &["山田"], "no CSRF token");
    let keys = env.stack.link_keys.lead.clone().expect("the lead links' keyring");
    let other_link = lead_link::sign(
        &keys,
        &owner,
        leadflow_domain::records::LeadId::generate(),
        t0() + Duration::days(1),
    );
    let other_csrf = lead_link::csrf(&keys, &other_link).unwrap();
    let other = post_form(&env, &post_target, &fields(&other_csrf)).await;
    assert_denied(&other, &["山田"], "another link's CSRF token");
    assert_eq!(snapshot(&env).await, before, "refused forms change nothing");

    // With it: recorded as the owner, through the lead API's code, then back to the page.
    let done = post_form(&env, &post_target, &fields(&csrf)).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let back = done.header("location").to_owned();
    assert_eq!(back, format!("{url}&done=1"));
    let activities: Vec<_> = env
        .items_of("activity")
        .await
        .into_iter()
        .filter(|i| s(i, "pk") == format!("LEAD#{lead}"))
        .collect();
    assert_eq!(activities.len(), 1);
    let act = activities[0]["activity"].as_m().unwrap();
    assert_eq!(act["actor"].as_s().unwrap(), &owner);
    assert_eq!(act["type"].as_s().unwrap(), "phone");
    let after = call(
        &env,
        "GET",
        back.strip_prefix("https://leadflow.test").unwrap(),
        &[],
        b"",
    )
    .await;
    assert_eq!(after.status, 200);
    for shown in [
        "活動を記録しました",
        "電話で課題をヒアリング &lt;b&gt;",
        "来週デモ",
        "（活動記録済み）",
        recorded_by.as_str(),
    ] {
        assert!(after.body.contains(shown), "{shown}: {}", after.body);
    }

    // The SLA timer stopped: at the due time, no reminder, the task is done.
    env.process.clock = t_due;
    let due = env.process.run().await.unwrap();
    assert_eq!(due.reminders, 0, "{due:?}");
    let task = env
        .item(&format!("LEAD#{lead}"), &format!("TASK#first-contact-{lead}"))
        .await
        .unwrap();
    assert_eq!(s(&task, "status"), "done");
    assert!(emails_to(&address)
        .await
        .iter()
        .all(|m| !(m.text().contains(&lead) && m.subject().contains("リマインド"))));

    // Refused links: tampered, expired, another owner's; nothing about the lead, nothing changed.
    let before = snapshot(&env).await;
    let secrets = ["山田", "アクメ", "page-lead@example.jp", "03-1234-5678"];
    let mut tampered = target.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    assert_denied(&call(&env, "GET", &tampered, &[], b"").await, &secrets, "tampered");
    let lead_id = leadflow_domain::records::LeadId::parse(&lead).unwrap();
    let expired = lead_link::sign(&keys, &owner, lead_id, t0() - Duration::days(1));
    assert_denied(
        &call(&env, "GET", &format!("/sales/leads/{lead}?t={expired}"), &[], b"").await,
        &secrets,
        "expired",
    );
    let colleague = if owner == "sato" { "suzuki" } else { "sato" };
    let theirs = lead_link::sign(&keys, colleague, lead_id, t0() + Duration::days(14));
    assert_denied(
        &call(&env, "GET", &format!("/sales/leads/{lead}?t={theirs}"), &[], b"").await,
        &secrets,
        "another owner's",
    );
    let elsewhere = lead_link::sign(
        &keys,
        &owner,
        leadflow_domain::records::LeadId::generate(),
        t0() + Duration::days(14),
    );
    assert_denied(
        &call(&env, "GET", &format!("/sales/leads/{lead}?t={elsewhere}"), &[], b"").await,
        &secrets,
        "another lead's link",
    );
    assert_denied(
        &call(&env, "GET", &format!("/sales/leads/{lead}"), &[], b"").await,
        &secrets,
        "no link",
    );
    // A POST with a refused link, even carrying that link's own CSRF token, records nothing.
    let theirs_csrf = lead_link::csrf(&keys, &theirs).unwrap();
    let refused = post_form(
        &env,
        &format!("/sales/leads/{lead}/activities?t={theirs}"),
        &fields(&theirs_csrf),
    )
    .await;
    assert_denied(&refused, &secrets, "another owner's form");
    let expired_csrf = lead_link::csrf(&keys, &expired).unwrap();
    let refused = post_form(
        &env,
        &format!("/sales/leads/{lead}/activities?t={expired}"),
        &fields(&expired_csrf),
    )
    .await;
    assert_denied(&refused, &secrets, "an expired link's form");
    assert_eq!(snapshot(&env).await, before, "refused links change nothing");

    // The owner's manager may open it (the escalation email links there).
    let manager = lead_link::sign(&keys, "tanaka", lead_id, t_due() + Duration::days(1));
    let managed = call(&env, "GET", &format!("/sales/leads/{lead}?t={manager}"), &[], b"").await;
    assert_eq!(managed.status, 200, "{}", managed.body);
    assert!(managed.body.contains("山田 太郎 様"));
}

#[tokio::test]
async fn the_local_stack_generates_the_lead_links_keyring_apart_from_the_others() {
    let env = TestEnv::new().await;
    let keys = &env.stack.link_keys;
    let lead_keys = keys.lead.as_ref().expect("LeadLinkKeys is read at cold start");
    assert_eq!(lead_keys.current(), "k1");
    let lead = leadflow_domain::records::LeadId::generate();
    let t = lead_link::sign(lead_keys, "sato", lead, Utc::now() + Duration::days(1));
    assert!(lead_link::verify(lead_keys, &t, Utc::now()).is_ok());
    assert!(
        lead_link::verify(&keys.unsubscribe, &t, Utc::now()).is_err(),
        "another keyring's key does not verify it"
    );
    assert!(lead_link::verify(&keys.confirm, &t, Utc::now()).is_err());
}

#[tokio::test]
async fn an_english_speaking_owner_gets_the_page_in_english_in_their_time_zone() {
    let mut env = TestEnv::new().await;
    env.single_opt_in("demo").await;
    env.process.clock = t0;
    // The americas rule routes a US lead to lee (locale en, America/New_York).
    let r = env
        .post_json(
            "demo",
            &json!({"email": "us-lead@example.com", "last_name": "Smith", "first_name": "Jane", "consent": true,
                    "company": "Acme Inc.", "job_title": "CEO", "industry": "IT", "employees": "300",
                    "country": "US", "phone": "+1 212 555 0100"}),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let lead = r.body["lead_id"].as_str().unwrap().to_owned();
    env.run_scoring().await;
    assert_eq!(env.process.run().await.unwrap().handoffs, 1);
    let mail: Vec<_> = emails_to("lee@example.com")
        .await
        .into_iter()
        .filter(|m| m.text().contains(&lead))
        .collect();
    assert_eq!(mail.len(), 1);
    let text = mail[0].text();
    assert!(
        text.contains("Phone: +1 212 555 0100") && text.contains("Email: us-lead@example.com"),
        "{text}"
    );
    let url = text
        .lines()
        .find_map(|l| l.strip_prefix("Open the lead: "))
        .expect("the link")
        .trim()
        .to_owned();
    let page = call(
        &env,
        "GET",
        url.strip_prefix("https://leadflow.test").unwrap(),
        &[],
        b"",
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    for shown in [
        "<html lang=\"en\">",
        "<h1>Smith Jane</h1>",
        "Acme Inc.",
        "href=\"tel:+12125550100\"",
        "Record an activity",
        "Sales acceptance",
        "Alex Lee",
    ] {
        assert!(page.body.contains(shown), "{shown}: {}", page.body);
    }
    assert!(
        page.body.contains(" EST") || page.body.contains(" EDT"),
        "New York time: {}",
        page.body
    );
    assert!(!page.body.contains("様"), "{}", page.body);
}

/// A hot lead handed off to sales: its id, its owner, the owner's address, and the link from
/// the hand-off email (the full URL and its path).
async fn handed_off(env: &TestEnv, email: &str, last_name: &str) -> (String, String, String, String, String) {
    let r = env
        .post_json(
            "demo",
            &json!({"email": email, "last_name": last_name, "first_name": "花子", "consent": true,
                    "company": "アクメ株式会社", "job_title": "CEO", "industry": "IT", "employees": "300",
                    "phone": "03-1234-5678"}),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let lead = r.body["lead_id"].as_str().unwrap().to_owned();
    env.run_scoring().await;
    let report = env.process.run().await.unwrap();
    assert_eq!(report.handoffs, 1, "{report:?}");
    let owner = s(&env.item(&format!("LEAD#{lead}"), "LEAD").await.unwrap(), "owner");
    let routing: Value = serde_json::from_str(
        &std::fs::read_to_string(leadflow_local::workspace_root().join("config/routing.json")).unwrap(),
    )
    .unwrap();
    let address = routing["owners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == owner.as_str())
        .unwrap()["email"]
        .as_str()
        .unwrap()
        .to_owned();
    let mail: Vec<_> = emails_to(&address)
        .await
        .into_iter()
        .filter(|m| m.text().contains(&lead))
        .collect();
    assert_eq!(mail.len(), 1);
    let url = mail[0]
        .text()
        .lines()
        .find_map(|l| l.strip_prefix("リードを開く: "))
        .expect("the link")
        .trim()
        .to_owned();
    let target = url.strip_prefix("https://leadflow.test").unwrap().to_owned();
    (lead, owner, address, url, target)
}

/// The page's `actions` form target for the link `target` opens.
fn actions_of(target: &str, lead: &str) -> String {
    target.replacen(
        &format!("/sales/leads/{lead}?"),
        &format!("/sales/leads/{lead}/actions?"),
        1,
    )
}

/// The lead, now at `status`, and the stage moves that put it there.
async fn moved_to(env: &TestEnv, lead: &str, status: &str) -> Vec<Item> {
    let item = env.item(&format!("LEAD#{lead}"), "LEAD").await.unwrap();
    assert_eq!(s(&item, "status"), status);
    env.items_of("stage_change")
        .await
        .into_iter()
        .filter(|h| s(h, "pk") == format!("LEAD#{lead}") && s(h, "to_status") == status)
        .collect()
}

fn form<'a>(fields: &[(&'a str, &str)]) -> Vec<(&'a str, String)> {
    fields.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

#[tokio::test]
async fn the_pages_task_and_accept_actions_work_as_the_owner_and_the_sla_stops_reminding() {
    let mut env = TestEnv::new().await;
    env.single_opt_in("demo").await;
    env.process.clock = t0;
    let (lead, owner, address, url, target) = handed_off(&env, "act-lead@example.jp", "佐々木").await;
    let task_id = format!("first-contact-{lead}");
    let page = call(&env, "GET", &target, &[], b"").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let actions = actions_of(&target, &lead);
    let action_attr = format!(
        "action=\"{}\"",
        escape_html(actions.strip_prefix("/sales/leads/").unwrap())
    );
    for shown in [
        "タスクを完了にする",
        "受け入れる（商談化）",
        "失格にする",
        "name=\"action\" value=\"complete\"",
        "name=\"action\" value=\"accept\"",
        "name=\"action\" value=\"disqualify\"",
        action_attr.as_str(),
    ] {
        assert!(page.body.contains(shown), "{shown} on the page: {}", page.body);
    }
    let csrf = csrf_of(&page.body);

    // Without the page's CSRF token, or with another link's: 403, nothing changed.
    let keys = env.stack.link_keys.lead.clone().expect("the lead links' keyring");
    let other_link = lead_link::sign(
        &keys,
        &owner,
        leadflow_domain::records::LeadId::generate(),
        t0() + Duration::days(1),
    );
    let other_csrf = lead_link::csrf(&keys, &other_link).unwrap();
    let before = snapshot(&env).await;
    for token in ["", other_csrf.as_str()] {
        for fields in [
            form(&[("csrf", token), ("action", "complete"), ("task", &task_id)]),
            form(&[("csrf", token), ("action", "accept")]),
            form(&[("csrf", token), ("action", "disqualify"), ("reason", "予算なし")]),
        ] {
            let refused = post_form(&env, &actions, &fields).await;
            assert_denied(&refused, &["佐々木"], &format!("{fields:?}"));
        }
    }
    assert_eq!(snapshot(&env).await, before, "refused actions change nothing");

    // A process run that read the task before the click (to remind) and saves after it.
    let lead_id = leadflow_domain::records::LeadId::parse(&lead).unwrap();
    let (mut stale, _) = leadflow_domain::process::ports::TaskStore::task(&env.process.store, lead_id, &task_id)
        .await
        .unwrap()
        .expect("the open task");
    // Complete the task: done, off the due index, 303 back with a notice.
    let done = post_form(
        &env,
        &actions,
        &form(&[("csrf", &csrf), ("action", "complete"), ("task", &task_id)]),
    )
    .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.header("location"), format!("{url}&done=task"));
    let task = env
        .item(&format!("LEAD#{lead}"), &format!("TASK#{task_id}"))
        .await
        .unwrap();
    assert_eq!(s(&task, "status"), "done");
    assert!(!task.contains_key("due_pk"), "no longer due: {task:?}");
    // The run's late save of its open copy never reopens it.
    stale.reminded_at = Some(t_due());
    leadflow_domain::process::ports::TaskStore::save_task(
        &env.process.store,
        &stale,
        Some(t_due() + Duration::days(1)),
    )
    .await
    .unwrap();
    let task = env
        .item(&format!("LEAD#{lead}"), &format!("TASK#{task_id}"))
        .await
        .unwrap();
    assert_eq!(s(&task, "status"), "done", "a stale save does not reopen the task");
    assert!(!task.contains_key("due_pk"));
    let back = call(&env, "GET", &format!("{target}&done=task"), &[], b"").await;
    assert_eq!(back.status, 200);
    for shown in ["タスクを完了にしました。", "未完了のタスクはありません"] {
        assert!(back.body.contains(shown), "{shown}: {}", back.body);
    }
    assert!(!back.body.contains("タスクを完了にする"), "no task left to complete");
    let again = post_form(
        &env,
        &actions,
        &form(&[("csrf", &csrf), ("action", "complete"), ("task", &task_id)]),
    )
    .await;
    assert_eq!(again.status, 409, "a done task is not done twice: {}", again.body);

    // The process run at the reminder time sends no reminder for it.
    env.process.clock = t_due;
    let due = env.process.run().await.unwrap();
    assert_eq!(due.reminders, 0, "{due:?}");
    assert!(emails_to(&address)
        .await
        .iter()
        .all(|m| !(m.text().contains(&lead) && m.subject().contains("リマインド"))));
    let task = env
        .item(&format!("LEAD#{lead}"), &format!("TASK#{task_id}"))
        .await
        .unwrap();
    assert_eq!(s(&task, "status"), "done");
    assert!(!task.contains_key("reminded_at"), "{task:?}");

    // Accept: the move the stage machine calls acceptance by sales (convert), by the owner.
    let accepted = post_form(&env, &actions, &form(&[("csrf", &csrf), ("action", "accept")])).await;
    assert_eq!(accepted.status, 303, "{}", accepted.body);
    assert_eq!(accepted.header("location"), format!("{url}&done=accepted"));
    let moves = moved_to(&env, &lead, "converted").await;
    assert_eq!(moves.len(), 1);
    assert_eq!(moves[0]["by"].as_m().unwrap()["id"].as_s().unwrap(), &owner);
    assert_eq!(moves[0]["by"].as_m().unwrap()["kind"].as_s().unwrap(), "user");

    // Accepting again: the stage machine's reason on the page (409), nothing changed.
    let before = snapshot(&env).await;
    let twice = post_form(&env, &actions, &form(&[("csrf", &csrf), ("action", "accept")])).await;
    assert_eq!(twice.status, 409, "{}", twice.body);
    assert!(twice.body.contains("この操作はできません"), "{}", twice.body);
    assert!(twice.body.contains("a closed lead cannot move"), "{}", twice.body);
    assert!(twice.body.contains("佐々木 花子 様"), "the page itself: {}", twice.body);
    assert!(
        !twice.body.contains("受け入れる（商談化）"),
        "no accept on a converted lead"
    );
    assert_eq!(snapshot(&env).await, before, "an illegal move changes nothing");
}

#[tokio::test]
async fn the_pages_disqualify_action_needs_a_reason_and_records_it_as_the_owner() {
    let mut env = TestEnv::new().await;
    env.single_opt_in("demo").await;
    env.process.clock = t0;
    let (lead, owner, _address, url, target) = handed_off(&env, "dq-lead@example.jp", "高橋").await;
    let page = call(&env, "GET", &target, &[], b"").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = csrf_of(&page.body);
    let actions = actions_of(&target, &lead);

    // Without a reason (or blank): refused with the page (422), nothing changed.
    let before = snapshot(&env).await;
    for reason in [None, Some("   ")] {
        let mut fields = form(&[("csrf", &csrf), ("action", "disqualify")]);
        if let Some(r) = reason {
            fields.push(("reason", r.to_owned()));
        }
        let refused = post_form(&env, &actions, &fields).await;
        assert_eq!(refused.status, 422, "{}", refused.body);
        assert!(refused.body.contains("入力内容を確認してください"), "{}", refused.body);
        assert!(
            refused.body.contains("高橋 花子 様"),
            "the page itself: {}",
            refused.body
        );
    }
    let unknown = post_form(&env, &actions, &form(&[("csrf", &csrf), ("action", "delete")])).await;
    assert_eq!(unknown.status, 422, "{}", unknown.body);
    assert_eq!(snapshot(&env).await, before, "refused forms change nothing");

    // With one: disqualified through the lead API's move, the reason kept, the owner as actor.
    let done = post_form(
        &env,
        &actions,
        &form(&[("csrf", &csrf), ("action", "disqualify"), ("reason", "予算がない <b>")]),
    )
    .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.header("location"), format!("{url}&done=disqualified"));
    let moves = moved_to(&env, &lead, "disqualified").await;
    assert_eq!(moves.len(), 1);
    assert_eq!(s(&moves[0], "reason"), "予算がない <b>");
    assert_eq!(moves[0]["by"].as_m().unwrap()["id"].as_s().unwrap(), &owner);
    let back = call(&env, "GET", &format!("{target}&done=disqualified"), &[], b"").await;
    assert!(back.body.contains("リードを失格にしました。"), "{}", back.body);
    assert!(!back.body.contains("失格にする</button>"), "nothing left to disqualify");

    // Accepting a disqualified lead: the domain's reason, nothing changed.
    let before = snapshot(&env).await;
    let refused = post_form(&env, &actions, &form(&[("csrf", &csrf), ("action", "accept")])).await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(refused.body.contains("a closed lead cannot move"), "{}", refused.body);
    assert_eq!(snapshot(&env).await, before, "an illegal move changes nothing");
}
