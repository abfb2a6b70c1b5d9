//! In a real browser: headless Chromium (Debian's) drives the demo landing page served by the
//! local front over the real function binaries: the plain HTML form, the JavaScript form, and
//! after a process run the nurture email in the mailbox page.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use leadflow_local::sqs::Retry;
use leadflow_tests::{endpoint, TestEnv};

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium() -> (&'static str, &'static str) {
    let browser = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let driver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    match (browser, driver) {
        (Some(b), Some(d)) => (b, d),
        _ => panic!("Chromium and ChromeDriver are needed (Debian: apt-get install chromium chromium-driver; scripts/setup.sh does it)"),
    }
}

async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_submits_both_forms_and_the_nurture_email_reaches_the_mailbox() {
    let (browser, chromedriver) = chromium();
    let env = TestEnv::new().await;
    env.stack.open_send_window().await.unwrap();
    let functions = env
        .stack
        .start_functions(endpoint())
        .await
        .expect("function binaries (scripts/test.sh builds them)");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let site = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let front = Arc::new(leadflow_local::server::Front {
        routes: env.stack.template.http_routes(),
        functions: functions.clone(),
        schedules: env.stack.template.schedules(),
        emulator: endpoint().to_owned(),
        records: env.stack.table().unwrap(),
        events: Default::default(),
    });
    tokio::spawn(leadflow_local::server::serve(listener, front, std::future::pending()));
    // The page is served from a port of this test's own: let the demo form accept that origin.
    let mut demo: leadflow_domain::form::FormDefinition =
        serde_json::from_value(leadflow_tests::shipped_form("demo")).unwrap();
    demo.allowed_origins.push(site.clone());
    env.stack.forms().unwrap().put(&demo).await.unwrap();

    let port = leadflow_local::emulator::free_port().unwrap();
    let _driver = Driver(
        Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let profile = std::env::temp_dir().join(format!("leadflow-chromium-{}", uuid::Uuid::new_v4().simple()));
    let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
        "goog:chromeOptions": {
            "binary": browser,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync", format!("--user-data-dir={}", profile.display())]
        }
    }))
    .unwrap();
    let mut client = None;
    for _ in 0..50 {
        match ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let c = client.expect("chromedriver answers");

    // The plain HTML form, no JavaScript involved: a 303 to the thank-you page.
    c.goto(&format!("{site}/")).await.unwrap();
    let plain = c.find(Locator::Css("form[method=post]")).await.unwrap();
    plain
        .find(Locator::Css("input[name=email]"))
        .await
        .unwrap()
        .send_keys("browser-plain@example.jp")
        .await
        .unwrap();
    plain
        .find(Locator::Css("input[name=last_name]"))
        .await
        .unwrap()
        .send_keys("山田")
        .await
        .unwrap();
    plain
        .find(Locator::Css("input[name=first_name]"))
        .await
        .unwrap()
        .send_keys("太郎")
        .await
        .unwrap();
    plain
        .find(Locator::Css("input[name=consent]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    plain
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for("the thank-you page", || async {
        c.current_url().await.map(|u| u.path() == "/thanks").unwrap_or(false)
    })
    .await;
    assert!(c.source().await.unwrap().contains("ありがとうございます"));

    // The JavaScript form: JSON, an idempotency key, the answer shown in the page.
    c.goto(&format!("{site}/")).await.unwrap();
    let js = c.find(Locator::Id("js-form")).await.unwrap();
    js.find(Locator::Css("input[name=email]"))
        .await
        .unwrap()
        .send_keys("browser-js@example.jp")
        .await
        .unwrap();
    js.find(Locator::Css("input[name=last_name]"))
        .await
        .unwrap()
        .send_keys("佐藤")
        .await
        .unwrap();
    js.find(Locator::Css("input[name=consent]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    js.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for("the JavaScript form's answer", || async {
        match c.find(Locator::Id("js-result")).await {
            Ok(e) => e.text().await.map(|t| t.contains("Thank you")).unwrap_or(false),
            Err(_) => false,
        }
    })
    .await;

    // Scoring (the SQS mapping), then a process run on demand: the email is in the mailbox.
    env.stack.poll_queues(&functions, Retry::Now).await.unwrap();
    let schedule = env
        .stack
        .template
        .schedules()
        .into_iter()
        .find(|s| s.function == "ProcessFunction")
        .unwrap();
    let run = functions["ProcessFunction"]
        .invoke(schedule.input.clone())
        .await
        .unwrap();
    assert_eq!(
        run["emails"], 0,
        "double opt-in: no marketing email before the person confirms: {run}"
    );
    // Each person opens the confirmation email in the mailbox, follows its link and confirms.
    for i in 0..2 {
        c.goto(&format!("{site}/_local/mailbox")).await.unwrap();
        let links = c
            .find_all(Locator::LinkText(
                "【ご確認】お申し込みの確認 / Please confirm your request",
            ))
            .await
            .unwrap();
        assert_eq!(links.len(), 2, "one confirmation each");
        links[i].clone().click().await.unwrap();
        let email = c.source().await.unwrap();
        let start = email.find("/confirm?token=").expect("a confirmation link");
        let path: String = email[start..]
            .chars()
            .take_while(|ch| !ch.is_whitespace() && *ch != '<')
            .collect();
        c.goto(&format!("{site}{path}")).await.unwrap();
        c.find(Locator::Css("button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for("the confirmation", || async {
            c.source()
                .await
                .map(|p| p.contains("Your request is confirmed"))
                .unwrap_or(false)
        })
        .await;
    }
    let run = functions["ProcessFunction"]
        .invoke(schedule.input.clone())
        .await
        .unwrap();
    assert_eq!(run["emails"], 2, "both confirmed: nurture starts: {run}");
    c.goto(&format!("{site}/_local/mailbox")).await.unwrap();
    let page = c.source().await.unwrap();
    assert!(
        page.contains("browser-plain@example.jp") && page.contains("browser-js@example.jp"),
        "{page}"
    );
    c.find(Locator::LinkText("業界トレンドのご紹介 / Industry trends"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let email = c.source().await.unwrap();
    assert!(
        email.contains("List-Unsubscribe"),
        "the rendered email shows its headers"
    );
    assert!(email.contains("様"), "the salutation");
    // The funnel page: the two people, counted as they went (two submissions, two new leads,
    // both moved to MQL by the process run).
    c.goto(&format!("{site}/_local/report")).await.unwrap();
    let report = c.source().await.unwrap();
    assert!(report.contains("ファネル / Funnel"), "{report}");
    let all = report.split("<h2>").nth(1).unwrap();
    assert!(
        all.contains(
            "<td>all</td><td class=\"n\">2</td><td class=\"n\">2</td><td class=\"n\">2</td><td class=\"n\">2</td>"
        ) || all.contains("<td>all</td><td class=n>2</td><td class=n>2</td><td class=n>2</td><td class=n>2</td>"),
        "{all}"
    );
    // The two nurture emails, sent under their program's first step.
    let email = report.split("メール / Email").nth(1).expect("the email table");
    let row = email.split("<tr>").nth(2).expect("a program's row");
    // (the browser writes the attribute back quoted)
    let cells: Vec<&str> = row
        .split("<td class=\"n\">")
        .skip(1)
        .map(|c| c.split('<').next().unwrap())
        .collect();
    assert_eq!(cells.first(), Some(&"2"), "sent: {row}");
    if let Ok(dir) = std::env::var("LEADFLOW_SCREENSHOTS") {
        let png = c.screenshot().await.unwrap();
        std::fs::write(std::path::Path::new(&dir).join("report.png"), png).unwrap();
    }
    c.close().await.unwrap();
    let _ = std::fs::remove_dir_all(profile);
}
