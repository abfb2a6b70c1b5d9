//! The ops tool's commands against a stack on moto: configuration, CSV import (resumable,
//! error report), lead show, dead-letter replay, privacy export and erasure.

use leadflow_cli::{
    dlq_list, dlq_replay, import_contacts, lead_show, person_erase, person_export, render_lead, ImportOptions, Target,
    IMPORT_CHUNK,
};
use leadflow_tests::{s, TestEnv};
use serde_json::{json, Value};

fn target(env: &TestEnv) -> Target {
    env.cli_target()
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("leadflow-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn config_validate_points_to_file_and_line() {
    let root = leadflow_local::workspace_root();
    let ok = leadflow_aws::config_dir::load(&root.join("config")).unwrap();
    assert!(ok.forms.iter().any(|f| f.id == "demo") && ok.forms.iter().any(|f| f.id == "import"));
    let dir = tempdir("config");
    copy_dir(&root.join("config"), &dir);
    std::fs::write(
        dir.join("forms/broken.json"),
        "{\n  \"id\": \"broken\",\n  \"name\": 7\n}\n",
    )
    .unwrap();
    let mut routing: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("routing.json")).unwrap()).unwrap();
    routing["rules"][0]["owner"] = json!("nobody");
    std::fs::write(dir.join("routing.json"), routing.to_string()).unwrap();
    let errors: Vec<String> = leadflow_aws::config_dir::load(&dir)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains("forms/broken.json") && errors[0].contains("line 3"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("routing.json") && errors[1].contains("unknown owner nobody"),
        "{errors:?}"
    );
}

#[tokio::test]
async fn import_is_resumable_reports_bad_rows_and_matches_like_intake() {
    let env = TestEnv::new().await;
    let t = target(&env);
    // Someone who already exists: the import matches them instead of duplicating.
    env.post_json("demo", &json!({"email": "row7@example.jp", "last_name": "既存"}), &[])
        .await;
    let dir = tempdir("import");
    let file = dir.join("contacts.csv");
    let mut csv = String::from("email,last_name,first_name,company,job_title,employees\n");
    for i in 0..120 {
        let email = match i {
            13 | 57 | 101 => format!("not-an-email-{i}"),
            // The same person twice in one chunk: created once, then matched.
            30 => "row5@example.jp".to_owned(),
            _ => format!("Row{i}@Example.jp"),
        };
        csv.push_str(&format!("{email},山田,{i},\"Acme, Inc.\",部長,300\n"));
    }
    std::fs::write(&file, csv).unwrap();
    let first = import_contacts(&t, &file, &ImportOptions::default(), false, Some(1))
        .await
        .unwrap();
    assert!(!first.finished);
    assert_eq!(first.rows, IMPORT_CHUNK);
    let second = import_contacts(&t, &file, &ImportOptions::default(), false, None)
        .await
        .unwrap();
    assert!(second.finished);
    assert_eq!(
        second.resumed_from, IMPORT_CHUNK,
        "the second run starts after the first's last chunk"
    );
    assert_eq!(first.rows + second.rows, 120);
    assert_eq!(first.errors + second.errors, 3);
    assert_eq!(first.matched + second.matched, 2, "row7 existed, row5 twice");
    let report = std::fs::read_to_string(dir.join("contacts.csv.errors.csv")).unwrap();
    assert_eq!(report.lines().count(), 1 + 3, "{report}");
    // The file's own line, why, and the row as it was (so it can be fixed and imported again).
    assert!(
        report.contains("15,email: is not a valid email address,not-an-email-13,山田,13,\"Acme, Inc.\",部長,300"),
        "{report}"
    );
    let contacts = env.items_of("contact").await;
    assert_eq!(contacts.len(), 116, "one per valid email, no duplicates");
    let row7 = contacts.iter().find(|c| s(c, "email") == "row7@example.jp").unwrap();
    assert_eq!(s(row7, "last_name"), "山田", "a non-empty imported value updates");
    assert_eq!(s(row7, "company"), "Acme, Inc.");
    assert_eq!(
        env.items_of("lead")
            .await
            .iter()
            .filter(|l| s(l, "source") == "import")
            .count(),
        116
    );
    // Running it again after it finished imports nothing twice.
    let again = import_contacts(&t, &file, &ImportOptions::default(), false, None)
        .await
        .unwrap();
    assert_eq!(again.rows, 0);
}

#[tokio::test]
async fn lead_show_export_and_verified_erasure() {
    let env = TestEnv::new().await;
    let t = target(&env);
    let r = env.post_json("demo", &json!({"email": "privacy@example.jp", "last_name": "個人", "industry": "IT", "consent": true, "visitor_id": "vis-p"}), &[]).await;
    let lead = r.body["lead_id"].as_str().unwrap().to_owned();
    env.send(
        "POST",
        "/internal/events",
        &[
            ("content-type", "application/json"),
            ("x-leadflow-site-key", "pk_demo_site_2026"),
        ],
        json!({"type": "page_view", "lead_id": lead}).to_string().as_bytes(),
    )
    .await;
    env.run_scoring().await;
    let other = env
        .post_json("demo", &json!({"email": "keep@example.jp", "last_name": "残"}), &[])
        .await;
    // Two later submissions on the trusted route change the company: nothing given before is lost.
    // (A public one changes nothing until the person confirms: tests/tests/trust.rs.)
    for company in ["Acme", "Evil Corp"] {
        let r = env
            .post_json(
                "demo",
                &json!({"email": "privacy@example.jp", "last_name": "個人", "company": company}),
                &[],
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let contact_id = r.body["contact_id"].as_str().unwrap().to_owned();
    let v = lead_show(&t, "privacy@example.jp").await.unwrap();
    let company: Vec<(Value, Value)> = v["field_history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["field"] == "company")
        .map(|c| (c["previous"].clone(), c["new"].clone()))
        .collect();
    assert_eq!(
        company,
        [(Value::Null, json!("Acme")), (json!("Acme"), json!("Evil Corp"))],
        "{}",
        v["field_history"]
    );
    assert!(v["field_history"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["source"]["kind"] == "form"));
    assert!(
        render_lead(&v).contains("company: Acme → Evil Corp  (form demo receipt "),
        "{}",
        render_lead(&v)
    );
    // A sales call, shown with the rest in Japan's time, to the minute.
    let call = env
        .send(
            "POST",
            &format!("/leads/{lead}/activities"),
            &[("content-type", "application/json")],
            json!({"type": "phone", "content": "called, interested"})
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(call.status, 201);
    let text = render_lead(&lead_show(&t, "privacy@example.jp").await.unwrap());
    assert!(
        text.contains("phone → continue  by arn:aws:iam::123456789012:user/local-developer: called, interested"),
        "{text}"
    );
    assert!(text.contains(" JST  company: Acme → Evil Corp"), "{text}");
    // The consent asked for a confirmation: the process run sends it, and the lead names that email.
    env.process.run().await.unwrap();
    let v = lead_show(&t, &lead).await.unwrap();
    let step = v["leads"][0]["emails"][0]["step"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(step.starts_with("confirm:"), "{}", v["leads"][0]["emails"]);
    let text = render_lead(&v);
    assert!(text.contains(&format!("  email {step}  sent  ")), "{text}");

    for who in ["privacy@example.jp", lead.as_str()] {
        let v = lead_show(&t, who).await.unwrap();
        assert_eq!(v["contact"]["email"], "privacy@example.jp");
        assert_eq!(v["leads"][0]["lead"]["lead_id"], lead.as_str());
        assert_eq!(v["leads"][0]["lead"]["scoring"]["total"], 21);
        assert_eq!(v["leads"][0]["interactions"].as_array().unwrap().len(), 4);
        // The documented shape: records' own fields, never where or how they are stored.
        let records = [
            &v["contact"],
            &v["leads"][0]["lead"],
            &v["leads"][0]["interactions"][0],
            &v["leads"][0]["score_history"][0],
        ];
        for (i, r) in records.into_iter().enumerate() {
            assert!(r.is_object(), "record {i}: {r}");
            for storage in [
                "pk",
                "sk",
                "type",
                "gsi1pk",
                "gsi1sk",
                "due_pk",
                "due_sk",
                "ttl",
                "lease_run",
            ] {
                assert!(r.get(storage).is_none(), "record {i} shows {storage}: {r}");
            }
        }
        assert_eq!(v["contact"]["email"], "privacy@example.jp");
        assert!(v["leads"][0]["lead"]["lead_id"].is_string());
        let text = render_lead(&v);
        assert!(text.contains("score (default v1): 21 = fit 15 + behaviour 6"), "{text}");
        assert!(text.contains("industry_it"));
    }

    let export = person_export(&t, "privacy@example.jp").await.unwrap();
    let kinds: Vec<&str> = export["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["type"].as_str())
        .collect();
    for k in [
        "contact",
        "contact_key",
        "lead",
        "lead_key",
        "interaction",
        "score_change",
        "rescore",
        "field_history",
    ] {
        assert!(kinds.contains(&k), "{k} exported: {kinds:?}");
    }
    // A bot used the address too (kept apart as spam), and a message about the lead was
    // dead-lettered.
    let bot = env
        .post_public(
            "demo",
            &json!({"email": "Privacy@Example.jp ", "last_name": "bot", "website": "http://spam.example"}),
            &[],
        )
        .await;
    assert_eq!(bot.status, 201);
    assert_eq!(env.items_of("spam").await.len(), 1);
    env.send_raw(
        "ScoringDeadLetterQueue",
        &json!({"lead_id": lead, "note": "stuck"}).to_string(),
    )
    .await;
    // An SES event that could not be scored names the recipient by address.
    env.send_raw(
        "EngagementDeadLetterQueue",
        &json!({"eventType": "Open", "mail": {"messageId": "m-x", "destination": ["privacy@example.jp"]}}).to_string(),
    )
    .await;
    let erased = person_erase(&t, "privacy@example.jp").await.unwrap();
    assert_eq!(erased.remaining, 0);
    assert!(erased.deleted >= 7, "{erased:?}");
    assert_eq!(erased.dead_lettered.len(), 2, "{erased:?}");
    assert!(
        env.items_of("spam").await.is_empty(),
        "the spam holding the address is gone"
    );
    let with_address: Vec<_> = env
        .items()
        .await
        .into_iter()
        .filter(|i| format!("{i:?}").to_lowercase().contains("privacy@example.jp"))
        .collect();
    assert!(with_address.is_empty(), "the address is nowhere: {with_address:?}");
    assert!(lead_show(&t, "privacy@example.jp").await.is_err(), "gone");
    let left: Vec<_> = env
        .items()
        .await
        .into_iter()
        .filter(|i| format!("{i:?}").contains(&lead))
        .collect();
    assert!(left.is_empty(), "nothing of the lead is left: {left:?}");
    let of_contact: Vec<_> = env
        .items()
        .await
        .into_iter()
        .filter(|i| format!("{i:?}").contains(&contact_id))
        .collect();
    assert!(of_contact.is_empty(), "nothing of the contact is left: {of_contact:?}");
    // Someone else is untouched.
    assert!(lead_show(&t, "keep@example.jp").await.is_ok());
    let _ = other;
}

#[tokio::test]
async fn dlq_list_and_replay() {
    let env = TestEnv::new().await;
    let t = target(&env);
    env.send_raw(
        "ScoringDeadLetterQueue",
        r#"{"schema":"leadflow.interaction.v1","note":"replay me"}"#,
    )
    .await;
    let listed = dlq_list(&t, 10).await.unwrap();
    let names: Vec<&str> = listed.iter().map(|(q, _)| *q).collect();
    assert_eq!(
        names,
        [
            "ScoringDeadLetterQueue",
            "EngagementDeadLetterQueue",
            "ScheduleDeadLetterQueue"
        ],
        "every dead-letter queue"
    );
    assert_eq!(listed[0].1.len(), 1);
    assert_eq!(listed[0].1[0]["body"]["note"], "replay me");
    assert!(listed[1].1.is_empty() && listed[2].1.is_empty());
    assert_eq!(dlq_replay(&t).await.unwrap(), 1);
    assert_eq!(env.depth("ScoringDeadLetterQueue").await, 0);
    assert_eq!(env.depth("ScoringQueue").await, 1);
}

#[tokio::test]
async fn an_import_is_not_a_form_submission_it_sends_no_email_and_hands_nothing_off() {
    let mut env = TestEnv::new().await;
    let t = target(&env);
    env.process.clock = leadflow_tests::weekday_10am_tokyo;
    let dir = tempdir("import-hot");
    let hot = dir.join("hot.csv");
    let mut csv = String::from("email,last_name,company,job_title,industry,employees,consent\n");
    for i in 0..100 {
        csv.push_str(&format!(
            "hot{i}@example.jp,熱田{i},株式会社{i},代表取締役,IT,300,yes\n"
        ));
    }
    std::fs::write(&hot, csv).unwrap();
    let r = import_contacts(&t, &hot, &ImportOptions::default(), false, None)
        .await
        .unwrap();
    assert_eq!((r.rows, r.created, r.errors), (100, 100, 0));
    env.run_scoring().await;
    let report = env.process.run().await.unwrap();
    assert_eq!((report.emails, report.handoffs), (0, 0), "{report:?}");
    let ixs = env.items_of("interaction").await;
    assert!(
        ixs.iter()
            .all(|i| i["kind"].as_s().map(String::as_str) == Ok("imported")),
        "{:?}",
        ixs.first()
    );
    let lead = env.items_of("lead").await.into_iter().next().unwrap();
    assert_eq!(
        lead["scoring"].as_m().unwrap()["total"].as_n().unwrap(),
        "50",
        "fit 50, the import 0"
    );
    assert_eq!(lead["scoring"].as_m().unwrap()["sales_ready"].as_bool(), Ok(&false));

    // The same hundred people again from another file: one chunk's lookup is 400 keys, four
    // BatchGetItem pages at once; every person is found on whichever page held them.
    let again = dir.join("hot-again.csv");
    std::fs::copy(&hot, &again).unwrap();
    env.requests.take();
    let r = import_contacts(&t, &again, &ImportOptions::default(), false, None)
        .await
        .unwrap();
    assert_eq!((r.rows, r.created, r.matched, r.errors), (100, 0, 100, 0));
    let reads = env.requests.take().iter().filter(|o| *o == "BatchGetItem").count();
    assert_eq!(reads, 4, "one chunk, 100 keys a page");
    assert_eq!(env.items_of("contact").await.len(), 100, "nobody twice");

    // With --nurture, the consenting people join their band's program.
    let opted = dir.join("opted.csv");
    std::fs::write(
        &opted,
        "email,last_name,consent\noptin1@example.jp,一,yes\noptin2@example.jp,二,yes\nnoconsent@example.jp,三,no\n",
    )
    .unwrap();
    import_contacts(
        &t,
        &opted,
        &ImportOptions {
            nurture: true,
            ..Default::default()
        },
        false,
        None,
    )
    .await
    .unwrap();
    env.run_scoring().await;
    let report = env.process.run().await.unwrap();
    assert_eq!((report.emails, report.handoffs), (2, 0), "{report:?}");
    assert!(leadflow_tests::emails_to("noconsent@example.jp").await.is_empty());
}

/// The ops tool's binary against this test's stack (as an operator runs it).
fn leadflow(env: &TestEnv, args: &[&str]) -> std::process::Output {
    let bin = leadflow_local::runtime::bin_dir().join("leadflow");
    leadflow_command(env, args)
        .output()
        .unwrap_or_else(|e| panic!("{} (scripts/test.sh builds it): {e}", bin.display()))
}

/// The ops tool's command against this test's stack.
fn leadflow_command(env: &TestEnv, args: &[&str]) -> std::process::Command {
    let t = target(env);
    let bin = leadflow_local::runtime::bin_dir().join("leadflow");
    let mut command = std::process::Command::new(&bin);
    command
        .args([
            "--endpoint",
            leadflow_tests::endpoint(),
            "--table",
            &t.table,
            "--config-table",
            &t.config_table,
            "--scoring-queue-url",
            &t.scoring_queue_url,
        ])
        .args(args)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_PROFILE");
    command
}

/// `leadflow … | head`: when the reader goes away the tool ends quietly, no panic.
#[tokio::test]
async fn a_closed_pipe_ends_the_ops_tool_quietly() {
    let env = TestEnv::new().await;
    env.post_json("demo", &json!({"email": "pipe@example.jp", "last_name": "管"}), &[])
        .await;
    let mut child = leadflow_command(&env, &["person", "export", "pipe@example.jp"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader is gone before the tool has read the person (requests first, then output).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn an_excel_cp932_file_with_japanese_headers_imports_with_a_dry_run_an_errors_file_and_an_exit_code() {
    let env = TestEnv::new().await;
    let dir = tempdir("excel");
    let file = dir.join("展示会リスト.csv");
    let mut text = String::from("メールアドレス,姓,名,会社名,部署,役職,業種,従業員数,電話番号,国\r\n");
    for i in 0..17 {
        text.push_str(&format!(
            "tanaka{i}@example.co.jp,田中,一郎{i},株式会社サンプル{i},情報システム部,部長,IT,\"1,000名以上\",03-1234-56{i:02},日本\r\n"
        ));
    }
    text.push_str("tanaka3@example.co.jp,田中,三郎,株式会社サンプル3,営業部,課長,IT,300,,日本\r\n"); // the same person again
    text.push_str("メールなし,佐藤,花子,株式会社エラー,,,,,,日本\r\n");
    text.push_str("suzuki@example,鈴木,次郎,株式会社エラー2,,,,,,日本\r\n");
    let (bytes, _, unmappable) = encoding_rs::SHIFT_JIS.encode(&text);
    assert!(!unmappable);
    std::fs::write(&file, &bytes).unwrap();
    let path = file.to_str().unwrap();

    let dry = leadflow(&env, &["import", "contacts", path, "--dry-run"]);
    let out = String::from_utf8_lossy(&dry.stdout);
    assert!(
        out.contains(
            "dry run, nothing written: 20 rows (Shift_JIS): 17 would be new contacts, 1 would match, 2 refused"
        ),
        "{out}{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(!dry.status.success(), "rows would fail: non-zero exit");
    assert!(env.items_of("contact").await.is_empty(), "a dry run writes nothing");

    let run = leadflow(&env, &["import", "contacts", path]);
    let out = String::from_utf8_lossy(&run.stdout);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        out.contains("20 rows (Shift_JIS): 17 new contacts, 1 matched, 2 refused"),
        "{out}{err}"
    );
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(err.contains("2 of 20 rows failed"), "{err}");
    let report = std::fs::read_to_string(dir.join("展示会リスト.csv.errors.csv")).unwrap();
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), 3, "{report}");
    assert_eq!(
        lines[0], "\u{feff}line,error,メールアドレス,姓,名,会社名,部署,役職,業種,従業員数,電話番号,国",
        "UTF-8 with a BOM, for Excel"
    );
    assert!(
        lines[1].starts_with("20,email: ") && lines[1].contains("メールなし,佐藤,花子,株式会社エラー"),
        "{report}"
    );
    assert!(lines[2].starts_with("21,email: "), "{report}");
    let contacts = env.items_of("contact").await;
    assert_eq!(contacts.len(), 17);
    let c = contacts
        .iter()
        .find(|c| s(c, "email") == "tanaka0@example.co.jp")
        .unwrap();
    assert_eq!(
        (s(c, "last_name"), s(c, "company")),
        ("田中".into(), "株式会社サンプル0".into())
    );
    assert_eq!(s(c, "employees"), "1,000名以上");

    // A file fixed and imported again: the errors file is written anew, and the exit is 0.
    let fixed = dir.join("fixed.csv");
    std::fs::write(
        &fixed,
        encoding_rs::SHIFT_JIS
            .encode("メールアドレス,姓\r\nsato@example.jp,佐藤\r\n")
            .0,
    )
    .unwrap();
    let ok = leadflow(&env, &["import", "contacts", fixed.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let report = std::fs::read_to_string(dir.join("fixed.csv.errors.csv")).unwrap();
    assert_eq!(report.lines().count(), 1, "only the header: {report}");
    assert!(report.starts_with('\u{feff}'));
}

#[test]
fn header_aliases_and_maps() {
    use leadflow_cli::field_for;
    let none: Vec<(String, String)> = vec![];
    for (column, field) in [
        ("メールアドレス", "email"),
        ("Eメール", "email"),
        ("E-mail", "email"),
        ("姓", "last_name"),
        ("名", "first_name"),
        ("会社名", "company"),
        ("役職", "job_title"),
        ("従業員数", "employees"),
        ("電話番号", "phone"),
        ("Last Name", "last_name"),
        ("\u{feff}email", "email"),
        ("ｍｅｍｏ", "memo"),
    ] {
        assert_eq!(field_for(column, &none), field, "{column}");
    }
    let map = vec![("お名前(姓)".to_owned(), "last_name".to_owned())];
    assert_eq!(field_for("お名前(姓)", &map), "last_name");
}

#[tokio::test]
async fn leads_export_as_cp932_or_utf8_with_a_bom_filtered_without_a_scan() {
    use leadflow_cli::{leads_export, Cells, CsvEncoding, ExportFrom, LeadFilter};
    let env = TestEnv::new().await;
    let t = target(&env);
    for i in 0..3 {
        env.post_json("demo", &json!({"email": format!("hot{i}@example.jp"), "last_name": "熱田", "company": format!("株式会社ホット{i}"), "industry": "IT", "employees": "300", "job_title": "代表取締役"}), &[]).await;
    }
    for i in 0..2 {
        env.post_json(
            "demo",
            &json!({"email": format!("cold{i}@example.jp"), "last_name": "冷泉"}),
            &[],
        )
        .await;
    }
    env.run_scoring().await;
    env.requests.take();
    let seen = env.requests.bodies().len();
    let mut out = Vec::new();
    let filter = LeadFilter {
        band: Some("hot".into()),
        ..Default::default()
    };
    let n = leads_export(
        &t,
        &ExportFrom::Scored,
        &filter,
        CsvEncoding::Cp932,
        Cells::FormulaSafe,
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(n, 3);
    let (text, _, bad) = encoding_rs::SHIFT_JIS.decode(&out);
    assert!(!bad);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("lead_id,メールアドレス,姓,名,会社名"), "{text}");
    assert!(lines[0].ends_with(",created_at (Asia/Tokyo)"), "{text}");
    assert!(
        lines[1..].iter().all(|l| l.contains("熱田") && l.contains(",hot,")),
        "{text}"
    );
    // Created times as Excel reads a date and time, in Tokyo time (the lead was created just now).
    let tokyo = chrono::FixedOffset::east_opt(9 * 3600).unwrap();
    let now = chrono::Utc::now().with_timezone(&tokyo).naive_local();
    for line in &lines[1..] {
        let created = line.rsplit(',').next().unwrap();
        let at = chrono::NaiveDateTime::parse_from_str(created, "%Y-%m-%d %H:%M:%S").expect(created);
        assert!(
            (now - at).num_minutes().abs() <= 5,
            "{created} is not Tokyo time now ({now})"
        );
    }
    let ops = env.requests.take();
    assert!(!ops.iter().any(|o| o == "Scan"), "{ops:?}");
    // Only the hot leads were read (the band index's 16 shards), not all five.
    assert_eq!(ops.iter().filter(|o| *o == "Query").count(), 16, "{ops:?}");
    let read: usize = env.requests.bodies()[seen..]
        .iter()
        .filter(|(op, _)| op == "BatchGetItem")
        .flat_map(|(_, b)| b["RequestItems"].as_object().unwrap().values())
        .map(|t| t["Keys"].as_array().unwrap().len())
        .sum();
    assert_eq!(read, 6, "3 leads and their contacts");

    // By stage: every lead is in its stage's shard from intake on, and moves with it.
    let by_stage = |stage: &str| LeadFilter {
        stage: Some(stage.into()),
        ..Default::default()
    };
    let count = |f: LeadFilter| {
        let t = &t;
        async move {
            leads_export(
                t,
                &ExportFrom::Scored,
                &f,
                CsvEncoding::Utf8Bom,
                Cells::FormulaSafe,
                &mut Vec::new(),
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(count(by_stage("inquiry")).await, 5);
    env.process.run().await.unwrap();
    assert_eq!(count(by_stage("inquiry")).await, 0);
    // The hot ones are sales-ready (fit 50, the form 5): straight to sales acceptance.
    assert_eq!(count(by_stage("automated_marketing_qualification")).await, 2);
    assert_eq!(count(by_stage("sales_acceptance")).await, 3);
    let err = leads_export(
        &t,
        &ExportFrom::Scored,
        &by_stage("won"),
        CsvEncoding::Utf8Bom,
        Cells::FormulaSafe,
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("--stage: no stage won"), "{err}");

    let mut out = Vec::new();
    let cold = LeadFilter {
        band: Some("cold".into()),
        ..Default::default()
    };
    assert_eq!(
        leads_export(
            &t,
            &ExportFrom::Scored,
            &cold,
            CsvEncoding::Utf8Bom,
            Cells::FormulaSafe,
            &mut out
        )
        .await
        .unwrap(),
        2
    );
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with('\u{feff}'));
    assert_eq!(text.lines().filter(|l| l.contains("冷泉")).count(), 2);
}

/// Static lists: an import tags its people (`--list`), a list is shown, exported for Excel,
/// shrunk by hand; erasing a person takes them off every list.
#[tokio::test]
async fn an_import_fills_a_list_that_is_shown_exported_shrunk_and_forgets_an_erased_person() {
    let env = TestEnv::new().await;
    let dir = tempdir("list");
    let file = dir.join("expo.csv");
    let mut text = String::from("メールアドレス,姓,名,会社名,役職\n");
    for i in 0..30 {
        text.push_str(&format!("expo{i}@example.co.jp,高橋,{i},展示会商事{i},部長\n"));
    }
    std::fs::write(&file, text).unwrap();
    let path = file.to_str().unwrap();
    let run = leadflow(&env, &["import", "contacts", path, "--list", "展示会2026"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    // Again: the same people, still 30 members.
    std::fs::remove_file(dir.join("expo.csv.import-state")).unwrap();
    let again = leadflow(&env, &["import", "contacts", path, "--list", "展示会2026"]);
    assert!(again.status.success());

    let ls = String::from_utf8_lossy(&leadflow(&env, &["list", "ls"]).stdout).into_owned();
    assert!(ls.contains("展示会2026\t30 members"), "{ls}");
    let show = leadflow(&env, &["list", "show", "展示会2026", "--json"]);
    let v: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(v["count"], 30);
    let m = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "expo7@example.co.jp")
        .unwrap();
    assert_eq!(
        (m["company"].as_str(), m["source"].as_str()),
        (Some("展示会商事7"), Some("import:expo.csv"))
    );

    let out = dir.join("list.csv");
    let export = leadflow(
        &env,
        &[
            "list",
            "export",
            "展示会2026",
            "--encoding",
            "cp932",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    let bytes = std::fs::read(&out).unwrap();
    let (csv, _, bad) = encoding_rs::SHIFT_JIS.decode(&bytes);
    assert!(!bad);
    assert_eq!(csv.lines().count(), 31, "header and 30 members");
    assert!(csv.contains("expo7@example.co.jp,高橋,7,展示会商事7,部長"), "{csv}");

    let removed = leadflow(
        &env,
        &[
            "list",
            "remove",
            "展示会2026",
            "expo0@example.co.jp",
            "expo1@example.co.jp",
        ],
    );
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));
    let t = target(&env);
    person_erase(&t, "expo2@example.co.jp").await.unwrap();
    let v: Value = serde_json::from_slice(&leadflow(&env, &["list", "show", "展示会2026", "--json"]).stdout).unwrap();
    assert_eq!(v["count"], 27, "two removed, one erased");
    assert!(!v.to_string().contains("expo2@"));

    let bad = leadflow(&env, &["list", "show", "no#such"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no '#'"));
}

/// Exports are safe to open in Excel: a text cell a spreadsheet would read as a formula comes
/// out of every CSV the tool writes (leads and list exports, the funnel, the import's errors
/// file) with a leading `'`; numbers stay numbers; `--raw` writes every cell as stored.
#[tokio::test]
async fn csv_exports_neutralise_formulas_for_excel_and_raw_writes_them_as_stored() {
    let env = TestEnv::new().await;
    // A campaign a report groups by, and a person who came through its form.
    let mut form: Value = leadflow_tests::shipped_form("demo");
    form["id"] = json!("formula");
    form["campaign"] = json!("=1+2");
    form["redirect"] = Value::Null;
    env.put_form(form).await;
    let posted = env
        .post_json(
            "formula",
            &json!({"email": "posted@example.jp", "last_name": "@SUM(1+1)", "company": "=HYPERLINK(\"http://x\",\"y\")"}),
            &[],
        )
        .await;
    assert_eq!(posted.status, 201, "{}", posted.body);

    let dir = tempdir("formula");
    let file = dir.join("formula.csv");
    std::fs::write(
        &file,
        "email,last_name,first_name,company,job_title\n\
         formula@example.jp,@SUM(1+1),太郎,\"=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",-部長\n\
         not-an-email,=1+2,花子,+81,＠x\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let errors_file = dir.join("formula.csv.errors.csv");
    let run = leadflow(&env, &["import", "contacts", path, "--list", "数式"]);
    assert_eq!(run.status.code(), Some(1), "{}", String::from_utf8_lossy(&run.stderr));
    let errors = std::fs::read_to_string(&errors_file).unwrap();
    let lines: Vec<&str> = errors.lines().collect();
    assert_eq!(lines.len(), 2, "{errors}");
    // The line number is a number; the echoed row's formulas are text (full-width ＠ too).
    assert!(lines[1].starts_with("3,email: "), "{errors}");
    assert!(lines[1].ends_with(",not-an-email,'=1+2,花子,'+81,'＠x"), "{errors}");
    // --raw: the errors file as read, to be fixed and imported again byte for byte.
    std::fs::remove_file(dir.join("formula.csv.import-state")).unwrap();
    let raw_run = leadflow(&env, &["import", "contacts", path, "--list", "数式", "--raw"]);
    assert_eq!(
        raw_run.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&raw_run.stderr)
    );
    let errors = std::fs::read_to_string(&errors_file).unwrap();
    assert!(
        errors
            .lines()
            .nth(1)
            .unwrap()
            .ends_with(",not-an-email,=1+2,花子,+81,＠x"),
        "{errors}"
    );
    env.run_scoring().await;

    let safe_row = "formula@example.jp,'@SUM(1+1),太郎,\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",'-部長,";
    let raw_row = "formula@example.jp,@SUM(1+1),太郎,\"=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",-部長,";
    // The score: after the quoted company, job title, industry, employees, phone, stage, band.
    let score_of = |row: &str| row.rsplit('"').next().unwrap().split(',').nth(7).unwrap().to_owned();
    let export = |args: &[&str]| {
        let out = leadflow(&env, args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };

    let csv = export(&["leads", "export"]);
    let row = csv.lines().find(|l| l.contains("formula@example.jp")).expect(&csv);
    assert!(row.contains(safe_row), "{csv}");
    let score = score_of(row);
    assert!(
        score.parse::<i64>().is_ok(),
        "the score stays a number: {score:?} in {row}"
    );
    let posted_row = csv.lines().find(|l| l.contains("posted@example.jp")).expect(&csv);
    assert!(posted_row.contains(",'@SUM(1+1),"), "{csv}");
    assert!(posted_row.contains(",'=1+2,"), "the campaign: {csv}");
    assert!(!csv.contains(",=") && !csv.contains(",@"), "{csv}");

    let csv = export(&["leads", "export", "--raw"]);
    let row = csv.lines().find(|l| l.contains("formula@example.jp")).expect(&csv);
    assert!(row.contains(raw_row), "{csv}");
    assert_eq!(score_of(row), score);
    assert!(csv.contains(",@SUM(1+1),") && csv.contains(",=1+2,"), "{csv}");

    for (flags, want) in [(&[][..], safe_row), (&["--raw"][..], raw_row)] {
        let out = dir.join("list.csv");
        let mut args = vec!["list", "export", "数式", "--out", out.to_str().unwrap()];
        args.extend_from_slice(flags);
        export(&args);
        let csv = std::fs::read_to_string(&out).unwrap();
        assert_eq!(csv.lines().count(), 2, "{csv}");
        assert!(csv.contains(want), "{flags:?}: {csv}");
    }

    // The funnel: the group (a campaign's name) is text, the counts numbers.
    let csv = export(&["report", "funnel", "--by", "campaign", "--csv"]);
    assert!(csv.lines().any(|l| l.starts_with("'=1+2,1,")), "{csv}");
    assert!(csv.lines().any(|l| l.starts_with("Import,")), "{csv}");
    let csv = export(&["report", "funnel", "--by", "campaign", "--csv", "--raw"]);
    assert!(csv.lines().any(|l| l.starts_with("=1+2,1,")), "{csv}");
    let no_csv = leadflow(&env, &["report", "funnel", "--raw"]);
    assert!(!no_csv.status.success(), "--raw goes with --csv");
}

/// What importing costs: a chunk of 100 new people is one lookup per 100 keys, a transaction
/// per ~nine people with their report counters, a SendMessageBatch per ten scoring messages
/// (docs/BENCHMARKS.md).
#[tokio::test]
async fn an_import_chunk_of_100_new_people_costs_38_requests() {
    let env = TestEnv::new().await;
    let t = target(&env);
    let dir = tempdir("cost");
    let file = dir.join("people.csv");
    let mut text = String::from("email,last_name\n");
    for i in 0..IMPORT_CHUNK {
        text.push_str(&format!("cost{i}@example.jp,原価\n"));
    }
    std::fs::write(&file, text).unwrap();
    env.requests.take();
    let r = import_contacts(&t, &file, &ImportOptions::default(), false, None)
        .await
        .unwrap();
    assert_eq!((r.created, r.errors), (IMPORT_CHUNK, 0));
    let mut ops = env.requests.take();
    ops.sort();
    let count = |op: &str| ops.iter().filter(|o| o.as_str() == op).count();
    assert_eq!(count("GetItem"), 1, "the import form: {ops:?}");
    assert_eq!(count("BatchGetItem"), 4, "4 keys a row, 100 a request: {ops:?}");
    assert_eq!(
        count("TransactWriteItems"),
        12,
        "10 items a person and the day's counters (merged per item), 100 a transaction: {ops:?}"
    );
    assert_eq!(count("SendMessageBatch"), 10, "{ops:?}");
    // 100 lead.created events, ten a request, then the 12 transactions' outbox entries removed.
    assert_eq!(count("PutEvents"), 10, "{ops:?}");
    assert_eq!(count("BatchWriteItem"), 1, "{ops:?}");
    assert_eq!(ops.len(), 38, "{ops:?}");
    assert_eq!(
        env.drain_queue().await.len(),
        IMPORT_CHUNK,
        "every scoring message sent"
    );
}

/// `leadflow activity add`: the seed's fields (date, type, actor from the owners, result,
/// source, notes), recorded as the lead API records them.
#[tokio::test]
async fn activity_add_records_a_call_by_a_configured_owner_on_the_given_day() {
    let env = TestEnv::new().await;
    env.post_json("demo", &json!({"email": "call@example.jp", "last_name": "電話"}), &[])
        .await;
    let ok = leadflow(
        &env,
        &[
            "activity",
            "add",
            "call@example.jp",
            "--type",
            "phone",
            "--actor",
            "sato",
            "--date",
            "2026-11-20",
            "--source",
            "HOT lead list",
            "--content",
            "資料送付の確認",
            "--notes",
            "来週再架電",
        ],
    );
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("\"recorded\":true"));
    let v = lead_show(&target(&env), "call@example.jp").await.unwrap();
    let a = &v["leads"][0]["activities"][0]["activity"];
    assert_eq!(
        (
            a["type"].as_str(),
            a["actor"].as_str(),
            a["at"].as_str(),
            a["source"].as_str()
        ),
        (
            Some("phone"),
            Some("sato"),
            Some("2026-11-19T15:00:00Z"),
            Some("hot_lead_list")
        ),
        "{a}"
    );
    assert_eq!(a["notes"], "来週再架電");
    let stranger = leadflow(
        &env,
        &[
            "activity",
            "add",
            "call@example.jp",
            "--type",
            "phone",
            "--actor",
            "mallory",
        ],
    );
    assert!(!stranger.status.success());
    assert!(String::from_utf8_lossy(&stranger.stderr).contains("not a configured owner"));
    let bad = leadflow(
        &env,
        &["activity", "add", "call@example.jp", "--type", "fax", "--actor", "sato"],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("type: email, phone, visit or web_meeting"));
    // The source is one of the seed's; in Japanese too.
    let unknown = leadflow(
        &env,
        &[
            "activity",
            "add",
            "call@example.jp",
            "--type",
            "phone",
            "--actor",
            "sato",
            "--source",
            "tv",
        ],
    );
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("source: whitepaper, document_request"));
    let ja = leadflow(
        &env,
        &[
            "activity",
            "add",
            "call@example.jp",
            "--type",
            "email",
            "--actor",
            "sato",
            "--source",
            "資料請求",
        ],
    );
    assert!(ja.status.success(), "{}", String::from_utf8_lossy(&ja.stderr));
}

/// An import's checkpoint only skips rows the target really holds: the same file imported into
/// a new stack (a restarted local run) starts from the first row instead of "resuming" past
/// rows that are not there.
#[tokio::test]
async fn a_checkpoint_of_another_target_does_not_skip_rows() {
    let dir = tempdir("elsewhere");
    let file = dir.join("people.csv");
    std::fs::write(
        &file,
        "email,last_name\na@example.jp,一\nb@example.jp,二\nc@example.jp,三\n",
    )
    .unwrap();
    let first = TestEnv::new().await;
    let r = import_contacts(&target(&first), &file, &ImportOptions::default(), false, None)
        .await
        .unwrap();
    assert_eq!(r.created, 3);
    let again = import_contacts(&target(&first), &file, &ImportOptions::default(), false, None)
        .await
        .unwrap();
    assert_eq!((again.created, again.resumed_from), (0, 3), "the same target: resumed");
    let second = TestEnv::new().await;
    let r = import_contacts(&target(&second), &file, &ImportOptions::default(), false, None)
        .await
        .unwrap();
    assert_eq!(
        (r.created, r.resumed_from),
        (3, 0),
        "another target: from the first row"
    );
}
