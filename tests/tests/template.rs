//! Template and code agree: every environment variable a function reads is set for it, and
//! every AWS action a function's code calls (observed in a full scenario, with the table,
//! index or queue it touches) is allowed by that function's own IAM statements.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use leadflow_tests::{emails_to, logged_clients, RequestLog, TestEnv};
use serde_json::{json, Value};
use serde_yaml::Value as Yaml;

fn env_var_literals(paths: &[&str]) -> BTreeSet<String> {
    let root = leadflow_local::workspace_root();
    let mut out = BTreeSet::new();
    let mut files = Vec::new();
    for p in paths {
        let p = root.join(p);
        if p.is_dir() {
            files.extend(
                std::fs::read_dir(&p)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|x| x == "rs")),
            );
        } else {
            files.push(p);
        }
    }
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for piece in text.split('"').skip(1).step_by(2) {
            let looks_like_var = piece.len() > 3
                && piece.contains('_')
                && piece
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if looks_like_var && !piece.starts_with("AWS_") {
                out.insert(piece.to_owned());
            }
        }
    }
    out
}

#[tokio::test]
async fn every_environment_variable_a_function_reads_is_set_for_it() {
    let env = TestEnv::new().await;
    for (function, sources) in [
        (
            "IntakeFunction",
            &["shared/aws/src/config.rs", "functions/intake/src"][..],
        ),
        ("ScoringFunction", &["functions/scoring/src"][..]),
        ("ProcessFunction", &["functions/process/src"][..]),
    ] {
        let set = env
            .stack
            .template
            .function_env(function, &env.stack.provisioned)
            .unwrap();
        // Set under a condition the local run does not meet (behind the front only).
        let declared = env.stack.template.declared_env(function);
        let read = env_var_literals(sources);
        assert!(!read.is_empty(), "{function} reads its settings from the environment");
        for var in read {
            assert!(
                set.contains_key(&var) || declared.contains(&var),
                "{function} reads {var}, which template.yaml does not set for it"
            );
        }
    }
}

/// An IAM statement of a function: its actions, resource labels (`DataTable`,
/// `DataTable/index/due`, `ScoringQueue`, `SES`, a secret's logical id; both branches of an
/// `!If`) and, if it has one, its `dynamodb:LeadingKeys` condition's patterns.
struct Statement {
    actions: BTreeSet<String>,
    resources: BTreeSet<String>,
    leading_keys: Option<Vec<String>>,
}

fn statements(function: &str) -> Vec<Statement> {
    let doc: Yaml =
        serde_yaml::from_str(&std::fs::read_to_string(leadflow_local::workspace_root().join("template.yaml")).unwrap())
            .unwrap();
    let label = |v: &Yaml| -> String {
        match v {
            Yaml::Tagged(t) => {
                let s = t.value.as_str().unwrap_or("");
                if s.contains(":ses:") {
                    "SES".into()
                } else if let Some(rest) = s.strip_prefix("${").and_then(|r| r.split_once(".Arn}")) {
                    format!("{}{}", rest.0, rest.1)
                } else {
                    s.trim_end_matches(".Arn").to_owned()
                }
            }
            other => other.as_str().unwrap_or("").to_owned(),
        }
    };
    // `!If [cond, a, b]`: either branch (`AWS::NoValue` is none).
    let labels = |v: &Yaml| -> Vec<String> {
        match v {
            Yaml::Tagged(t) if t.tag == "If" => t.value.as_sequence().unwrap()[1..]
                .iter()
                .map(label)
                .filter(|l| l != "AWS::NoValue")
                .collect(),
            one => vec![label(one)],
        }
    };
    let mut out = Vec::new();
    let stmts = &doc["Resources"][function]["Properties"]["Policies"][0]["Statement"];
    for st in stmts.as_sequence().unwrap() {
        let actions = st["Action"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        let resources = match &st["Resource"] {
            Yaml::Sequence(s) => s.iter().flat_map(labels).collect(),
            one => labels(one).into_iter().collect(),
        };
        let condition = &st["Condition"];
        let leading_keys = (!condition.is_null()).then(|| {
            let c = condition.as_mapping().unwrap();
            assert_eq!(
                c.len(),
                1,
                "{function}: only ForAllValues:StringLike is read here: {c:?}"
            );
            condition["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
                .as_sequence()
                .unwrap_or_else(|| panic!("{function}: a condition this test does not read: {c:?}"))
                .iter()
                .map(|p| p.as_str().unwrap().to_owned())
                .collect()
        });
        out.push(Statement {
            actions,
            resources,
            leading_keys,
        });
    }
    out
}

/// The statements as (actions, resource labels).
fn policies(function: &str) -> Vec<(BTreeSet<String>, BTreeSet<String>)> {
    statements(function)
        .into_iter()
        .map(|s| (s.actions, s.resources))
        .collect()
}

/// IAM's `StringLike`: `*` any run of characters, `?` any one.
fn like(pattern: &str, value: &str) -> bool {
    match pattern.chars().next() {
        None => value.is_empty(),
        Some('*') => (0..=value.len())
            .filter(|i| value.is_char_boundary(*i))
            .any(|i| like(&pattern[1..], &value[i..])),
        Some(c) => {
            let mut v = value.chars();
            match v.next() {
                Some(x) if c == '?' || c == x => like(&pattern[c.len_utf8()..], v.as_str()),
                _ => false,
            }
        }
    }
}

/// The partition key of an item operation's `Key` or `Item`.
fn pk_of(op: &Value) -> Option<String> {
    op.get("Key")
        .or_else(|| op.get("Item"))
        .and_then(|k| k["pk"]["S"].as_str())
        .map(str::to_owned)
}

/// (IAM action, resource label, partition key of the item where the request names one) of
/// every request a function made.
fn observed(log: &RequestLog, env: &TestEnv) -> BTreeSet<(String, String, Option<String>)> {
    let tables: BTreeMap<String, String> = env
        .stack
        .provisioned
        .tables
        .iter()
        .map(|(k, v)| (v.clone(), k.clone()))
        .collect();
    let queues: BTreeMap<String, String> = env
        .stack
        .provisioned
        .queues
        .iter()
        .map(|(k, q)| (q.url.clone(), k.clone()))
        .collect();
    let table = |b: &Value| {
        let t = tables
            .get(b["TableName"].as_str().unwrap_or(""))
            .cloned()
            .unwrap_or_else(|| format!("unknown table {b}"));
        match b["IndexName"].as_str() {
            Some(i) => format!("{t}/index/{i}"),
            None => t,
        }
    };
    let secrets: BTreeMap<String, String> = env
        .stack
        .provisioned
        .secrets
        .iter()
        .map(|(k, s)| (s.arn.clone(), k.clone()))
        .collect();
    let mut out = BTreeSet::new();
    for (op, body) in log.bodies() {
        match op.as_str() {
            "TransactWriteItems" => {
                for item in body["TransactItems"].as_array().unwrap() {
                    for (kind, action) in [
                        ("Put", "PutItem"),
                        ("Update", "UpdateItem"),
                        ("ConditionCheck", "ConditionCheckItem"),
                        ("Delete", "DeleteItem"),
                    ] {
                        if let Some(b) = item.get(kind) {
                            out.insert((format!("dynamodb:{action}"), table(b), pk_of(b)));
                        }
                    }
                }
            }
            "BatchGetItem" => {
                for (t, r) in body["RequestItems"].as_object().unwrap() {
                    for k in r["Keys"].as_array().unwrap() {
                        let pk = k["pk"]["S"].as_str().map(str::to_owned);
                        out.insert((format!("dynamodb:{op}"), tables[t].clone(), pk));
                    }
                }
            }
            "BatchWriteItem" => {
                for (t, writes) in body["RequestItems"].as_object().unwrap() {
                    for w in writes.as_array().unwrap() {
                        let pk = w.get("PutRequest").or_else(|| w.get("DeleteRequest")).and_then(pk_of);
                        out.insert((format!("dynamodb:{op}"), tables[t].clone(), pk));
                    }
                }
            }
            "GetSecretValue" => {
                let id = body["SecretId"].as_str().unwrap_or("");
                let secret = secrets
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| format!("unknown secret {id}"));
                out.insert(("secretsmanager:GetSecretValue".into(), secret, None));
            }
            "SendMessage" | "ReceiveMessage" | "DeleteMessage" | "DeleteMessageBatch" | "GetQueueAttributes" => {
                out.insert((
                    format!("sqs:{op}"),
                    queues
                        .get(body["QueueUrl"].as_str().unwrap_or(""))
                        .cloned()
                        .unwrap_or_default(),
                    None,
                ));
            }
            "PutEvents" => {
                for e in body["Entries"].as_array().unwrap() {
                    let bus = e["EventBusName"].as_str().unwrap_or("");
                    let logical = env
                        .stack
                        .provisioned
                        .others
                        .iter()
                        .find(|(_, name)| name.as_str() == bus)
                        .map_or_else(|| format!("unknown bus {bus}"), |(id, _)| id.clone());
                    out.insert(("events:PutEvents".into(), logical, None));
                }
            }
            "POST /v2/email/outbound-emails" => {
                out.insert(("ses:SendEmail".into(), "SES".into(), None));
            }
            dynamo => {
                out.insert((format!("dynamodb:{dynamo}"), table(&body), pk_of(&body)));
            }
        }
    }
    out
}

fn t0() -> DateTime<Utc> {
    leadflow_tests::weekday_10am_tokyo()
}
fn t_late() -> DateTime<Utc> {
    t0() + Duration::days(95)
}

#[tokio::test]
async fn every_aws_action_a_function_calls_is_allowed_to_it() {
    let mut env = TestEnv::new().await;
    env.single_opt_in("demo").await;
    let (intake_log, scoring_log, process_log) = (RequestLog::default(), RequestLog::default(), RequestLog::default());
    // Each function reads its secrets through its own clients, as at a cold start.
    let intake_clients = logged_clients(&intake_log).await;
    let intake_settings = env.stack.settings().unwrap();
    let intake_secrets = intake::Secrets::load(&intake_clients, &intake_settings).await.unwrap();
    env.intake = intake::AwsIntake::new(&intake_clients, &intake_settings, intake_secrets);
    let scoring_env = env
        .stack
        .template
        .function_env("ScoringFunction", &env.stack.provisioned)
        .unwrap();
    env.scoring = scoring::AwsScoring::new(
        &logged_clients(&scoring_log).await,
        &scoring::Settings::from_env(&leadflow_aws::config::Env(|k: &str| scoring_env.get(k).cloned())).unwrap(),
    );
    let process_env = env
        .stack
        .template
        .function_env("ProcessFunction", &env.stack.provisioned)
        .unwrap();
    let process_clients = logged_clients(&process_log).await;
    let process_settings =
        process::Settings::from_env(&leadflow_aws::config::Env(|k: &str| process_env.get(k).cloned())).unwrap();
    let link_keys = process::LinkKeys::load(&process_clients, &process_settings)
        .await
        .unwrap();
    env.process = process::AwsProcess::new(&process_clients, &process_settings, link_keys);
    env.process.clock = t0;

    // Intake: new, returning, idempotent; events for a lead, a contact and a visitor.
    let key = ("x-leadflow-site-key", "pk_demo_site_2026");
    let ct = ("content-type", "application/json");
    env.send(
        "POST",
        "/events",
        &[ct, key],
        json!({"type": "page_view", "visitor_id": "iam-v"})
            .to_string()
            .as_bytes(),
    )
    .await;
    let hot = env.post_json("demo", &json!({"email": "iam-hot@example.jp", "last_name": "権限", "industry": "IT", "employees": "300", "job_title": "CEO", "consent": true, "visitor_id": "iam-v"}), &[("idempotency-key", "k1")]).await;
    env.post_json(
        "demo",
        &json!({"email": "iam-warm@example.jp", "last_name": "権限", "consent": true}),
        &[],
    )
    .await;
    let warm = env
        .post_json(
            "demo",
            &json!({"email": "iam-warm@example.jp", "last_name": "権限", "company": "Acme", "consent": true}),
            &[],
        )
        .await;
    env.send(
        "POST",
        "/internal/events",
        &[ct, key],
        json!({"type": "download", "lead_id": warm.body["lead_id"]})
            .to_string()
            .as_bytes(),
    )
    .await;
    env.send(
        "POST",
        "/internal/events",
        &[ct, key],
        json!({"type": "download", "contact_id": warm.body["contact_id"]})
            .to_string()
            .as_bytes(),
    )
    .await;
    // Scoring, with linking; the process: moves, nurture email, hand-off, outbox relay.
    env.run_scoring().await;
    env.process.run().await.unwrap();
    let mail = &emails_to("iam-warm@example.jp").await[0];
    // SES engagement, then unsubscribe through the link, then a manual move and an activity.
    let bounce = json!({"eventType": "Open", "mail": {"messageId": mail.message_id, "timestamp": Utc::now().to_rfc3339()}, "open": {"timestamp": Utc::now().to_rfc3339()}});
    env.send_raw("EngagementQueue", &bounce.to_string()).await;
    env.run_scoring().await;
    let link = mail.header("List-Unsubscribe");
    let target = link
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .trim_start_matches("https://leadflow.test")
        .to_owned();
    assert_eq!(
        env.send(
            "POST",
            &target,
            &[("content-type", "application/x-www-form-urlencoded")],
            b"List-Unsubscribe=One-Click"
        )
        .await
        .status,
        200
    );
    let hot_lead = hot.body["lead_id"].as_str().unwrap();
    assert_eq!(
        env.send(
            "POST",
            &format!("/leads/{hot_lead}/activities"),
            &[ct],
            json!({"type": "phone", "result": "continue"}).to_string().as_bytes()
        )
        .await
        .status,
        201
    );
    let warm_lead = warm.body["lead_id"].as_str().unwrap();
    let moved = env
        .send(
            "POST",
            &format!("/leads/{warm_lead}/stage"),
            &[ct],
            json!({"move": "disqualify", "reason": "test"}).to_string().as_bytes(),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    // Later: the SLA timer, and re-scoring as behaviour ages.
    env.process.clock = t_late;
    env.process.run().await.unwrap();
    env.scoring.clock = t_late;
    env.scoring.rescore("due").await.unwrap();
    env.scoring.rescore("stale").await.unwrap();
    // The weekly routine on a Monday: the segment's members, the dated list, the email.
    env.process.clock = next_monday_9am_tokyo;
    env.process.routine("daily").await.unwrap();

    for (function, log) in [
        ("IntakeFunction", &intake_log),
        ("ScoringFunction", &scoring_log),
        ("ProcessFunction", &process_log),
    ] {
        let allowed = statements(function);
        let seen = observed(log, &env);
        assert!(seen.len() >= 3, "{function} was exercised: {seen:?}");
        for (action, resource, pk) in &seen {
            let ok = allowed.iter().any(|s| {
                s.actions.contains(action)
                    && s.resources.contains(resource)
                    && match (&s.leading_keys, pk) {
                        (None, _) => true,
                        (Some(patterns), Some(pk)) => patterns.iter().any(|p| like(p, pk)),
                        (Some(_), None) => false,
                    }
            });
            assert!(
                ok,
                "{function} calls {action} on {resource} (partition {pk:?}), which its IAM statements do not allow"
            );
        }
    }
}

/// The logical id a `!Ref X` or `!GetAtt X.Attr` names.
fn target(v: &Yaml) -> Option<String> {
    match v {
        Yaml::Tagged(t) if t.tag == "Ref" => t.value.as_str().map(str::to_owned),
        Yaml::Tagged(t) if t.tag == "GetAtt" => t.value.as_str().and_then(|s| s.split('.').next()).map(str::to_owned),
        _ => None,
    }
}

/// Every SES event destination of the template reaches a queue the scoring function reads,
/// by a route that works in a real account. Errors say which mistake was made.
fn ses_events_reach_scoring(t: &leadflow_local::Template) -> Result<(), String> {
    let scoring_queues: BTreeSet<String> = t
        .sqs_sources()
        .into_iter()
        .filter(|s| s.function == "ScoringFunction")
        .map(|s| s.queue)
        .collect();
    let destinations = t.of_type("AWS::SES::ConfigurationSetEventDestination");
    if destinations.is_empty() {
        return Err("no SES event destination: opens, clicks and bounces never come back".into());
    }
    let resources = |ty: &str| t.of_type(ty).into_iter().collect::<BTreeMap<_, _>>();
    let topics = resources("AWS::SNS::Topic");
    let rules = resources("AWS::Events::Rule");
    let policies = t.of_type("AWS::SQS::QueuePolicy");
    let queue_allows = |queue: &str, service: &str| {
        policies.iter().any(|(_, p)| {
            let queues = p.get("Queues").and_then(Yaml::as_sequence).cloned().unwrap_or_default();
            queues.iter().any(|q| target(q).as_deref() == Some(queue))
                && serde_yaml::to_string(p.get("PolicyDocument").unwrap_or(&Yaml::Null))
                    .unwrap_or_default()
                    .contains(service)
        })
    };
    for (id, props) in destinations {
        let dest = props
            .get("EventDestination")
            .ok_or(format!("{id}: no EventDestination"))?;
        if let Some(sns) = dest.get("SnsDestination") {
            let topic = sns.get("TopicARN").and_then(target).ok_or(format!("{id}: topic"))?;
            let key = topics
                .get(&topic)
                .and_then(|p| p.get("KmsMasterKeyId"))
                .and_then(Yaml::as_str)
                .unwrap_or("");
            if key.starts_with("alias/aws/") {
                return Err(format!(
                    "{id}: topic {topic} is encrypted with the AWS-managed key {key}; SES cannot publish to it"
                ));
            }
            return Err(format!(
                "{id}: SNS destinations need a customer-managed key that allows SES; none checked here"
            ));
        }
        if dest.get("EventBridgeDestination").is_some() {
            let routed = rules.values().any(|p| {
                let pattern = serde_yaml::to_string(p.get("EventPattern").unwrap_or(&Yaml::Null)).unwrap_or_default();
                pattern.contains("aws.ses")
                    && p.get("Targets")
                        .and_then(Yaml::as_sequence)
                        .into_iter()
                        .flatten()
                        .filter_map(|tg| tg.get("Arn").and_then(target))
                        .any(|q| scoring_queues.contains(&q) && queue_allows(&q, "events.amazonaws.com"))
            });
            if !routed {
                return Err(format!(
                    "{id}: no EventBridge rule sends aws.ses events to a scoring queue that allows events.amazonaws.com"
                ));
            }
            continue;
        }
        return Err(format!("{id}: neither SNS nor EventBridge"));
    }
    Ok(())
}

#[test]
fn ses_events_reach_scoring_in_a_real_account() {
    let root = leadflow_local::workspace_root();
    let t = leadflow_local::Template::load(&root.join("template.yaml")).unwrap();
    ses_events_reach_scoring(&t).unwrap();

    // The mistake this guards against: an SNS topic under the AWS-managed key.
    let managed = r#"
Resources:
  ScoringFunction:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        Engagement:
          Type: SQS
          Properties:
            Queue: !GetAtt EngagementQueue.Arn
  EngagementQueue:
    Type: AWS::SQS::Queue
  EngagementTopic:
    Type: AWS::SNS::Topic
    Properties:
      KmsMasterKeyId: alias/aws/sns
  EmailEventDestination:
    Type: AWS::SES::ConfigurationSetEventDestination
    Properties:
      EventDestination:
        SnsDestination:
          TopicARN: !Ref EngagementTopic
"#;
    let err = ses_events_reach_scoring(&leadflow_local::Template::parse(managed).unwrap()).unwrap_err();
    assert!(err.contains("AWS-managed key"), "{err}");
    // And a rule that sends SES events nowhere scoring reads.
    let text = std::fs::read_to_string(root.join("template.yaml")).unwrap().replace(
        "Arn: !GetAtt EngagementQueue.Arn\n          DeadLetterConfig",
        "Arn: !GetAtt ScoringDeadLetterQueue.Arn\n          DeadLetterConfig",
    );
    let err = ses_events_reach_scoring(&leadflow_local::Template::parse(&text).unwrap()).unwrap_err();
    assert!(err.contains("no EventBridge rule"), "{err}");
}

fn next_monday_9am_tokyo() -> chrono::DateTime<chrono::Utc> {
    use chrono::{Datelike, Duration, FixedOffset, TimeZone, Utc};
    let jst = FixedOffset::east_opt(9 * 3600).unwrap();
    let today = Utc::now().with_timezone(&jst).date_naive();
    let monday = today + Duration::days(7 - i64::from(today.weekday().num_days_from_monday()));
    jst.from_local_datetime(&monday.and_hms_opt(9, 0, 0).unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

/// The dashboard's body is JSON once CloudFormation substitutes it, graphs only metrics the
/// functions print (or AWS's own), and every alarm notifies the optional topic.
#[test]
fn the_dashboard_graphs_what_the_functions_emit_and_every_alarm_can_notify() {
    let text = std::fs::read_to_string(leadflow_local::workspace_root().join("template.yaml")).unwrap();
    let t: Yaml = serde_yaml::from_str(&text).unwrap();
    let resources = t["Resources"].as_mapping().unwrap();
    let body = match &resources[&Yaml::from("Dashboard")]["Properties"]["DashboardBody"] {
        Yaml::Tagged(tagged) => tagged.value.as_str().unwrap().to_owned(),
        other => panic!("DashboardBody is a !Sub: {other:?}"),
    };
    // ${…} as CloudFormation fills them.
    let mut filled = String::new();
    let mut rest = body.as_str();
    while let Some(i) = rest.find("${") {
        filled.push_str(&rest[..i]);
        let end = rest[i..].find('}').unwrap();
        filled.push('x');
        rest = &rest[i + end + 1..];
    }
    filled.push_str(rest);
    let dashboard: Value = serde_json::from_str(&filled).unwrap_or_else(|e| panic!("{e}: {filled}"));
    let sources = ["functions", "shared/aws/src"]
        .iter()
        .map(|p| leadflow_local::workspace_root().join(p))
        .flat_map(|d| walk(&d))
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect::<String>();
    let mut graphed = 0;
    for w in dashboard["widgets"].as_array().unwrap() {
        for m in w["properties"]["metrics"].as_array().unwrap() {
            if m[0] == "Leadflow" {
                let name = m[1].as_str().unwrap();
                assert!(sources.contains(&format!("\"{name}\"")), "no function emits {name}");
                graphed += 1;
            }
        }
    }
    assert!(graphed >= 10, "{graphed}");
    let mut alarms = 0;
    for (name, r) in resources {
        if r["Type"] == "AWS::CloudWatch::Alarm" {
            alarms += 1;
            assert!(
                !r["Properties"]["AlarmActions"].is_null(),
                "{name:?} notifies AlarmTopicArn when one is given"
            );
        }
    }
    assert!(alarms >= 9);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

/// The functions publish to the stack's own bus, and the optional webhook stack (a nested
/// stack only when `WebhookUrl` is given) sends the chosen leadflow events to an API
/// destination with retries and a dead-letter queue, the event's detail as the body.
#[test]
fn the_events_bus_feeds_the_functions_and_the_optional_webhook_retries_into_a_dlq() {
    let root = leadflow_local::workspace_root();
    let t: Yaml = serde_yaml::from_str(&std::fs::read_to_string(root.join("template.yaml")).unwrap()).unwrap();
    let r = &t["Resources"];
    assert_eq!(r["LeadflowBus"]["Type"], "AWS::Events::EventBus");
    let bus_env = &t["Globals"]["Function"]["Environment"]["Variables"][leadflow_aws::config::EVENT_BUS_ENV];
    assert_eq!(target(bus_env).as_deref(), Some("LeadflowBus"), "{bus_env:?}");
    for f in ["IntakeFunction", "ScoringFunction", "ProcessFunction"] {
        assert!(
            policies(f)
                .iter()
                .any(|(a, res)| a.contains("events:PutEvents") && res.contains("LeadflowBus")),
            "{f} may publish to the bus"
        );
    }
    let nested = &r["WebhookEvents"];
    assert_eq!(nested["Type"], "AWS::CloudFormation::Stack");
    assert_eq!(nested["Condition"], "HasWebhook");
    let url = nested["Properties"]["TemplateURL"].as_str().unwrap();
    let w: Yaml = serde_yaml::from_str(&std::fs::read_to_string(root.join(url)).unwrap()).unwrap();
    let params = w["Parameters"].as_mapping().unwrap();
    for p in nested["Properties"]["Parameters"].as_mapping().unwrap().keys() {
        assert!(params.contains_key(p), "the webhook stack takes {p:?}");
    }
    let rule = &w["Resources"]["WebhookRule"]["Properties"];
    assert_eq!(rule["EventPattern"]["source"][0], leadflow_domain::events::SOURCE);
    let to = &rule["Targets"][0];
    assert_eq!(to["InputPath"], "$.detail");
    assert!(to["RetryPolicy"]["MaximumEventAgeInSeconds"].as_u64().unwrap() >= 3600);
    assert!(target(&to["DeadLetterConfig"]["Arn"]).is_some());
    assert_eq!(
        w["Resources"]["WebhookDestination"]["Type"],
        "AWS::Events::ApiDestination"
    );
    let default_types = w["Parameters"]["EventTypes"]["Default"].as_str().unwrap();
    for ty in default_types.split(',') {
        assert!(
            leadflow_domain::events::ALL.contains(&ty),
            "{ty} is an event leadflow publishes"
        );
    }
}

fn template_yaml() -> Yaml {
    serde_yaml::from_str(&std::fs::read_to_string(leadflow_local::workspace_root().join("template.yaml")).unwrap())
        .unwrap()
}

/// `!If [cond, yes, no]` as (cond, yes, no).
fn if_of(v: &Yaml) -> Option<(&str, &Yaml, &Yaml)> {
    match v {
        Yaml::Tagged(t) if t.tag == "If" => {
            let a = t.value.as_sequence()?;
            Some((a.first()?.as_str()?, a.get(1)?, a.get(2)?))
        }
        _ => None,
    }
}

fn is_no_value(v: &Yaml) -> bool {
    matches!(v, Yaml::Tagged(t) if t.tag == "Ref" && t.value.as_str() == Some("AWS::NoValue"))
}

/// Every `!Ref` / `${…}` a value names, however deep (`!If`, `!Sub`, lists).
fn names_in(v: &Yaml, out: &mut Vec<String>) {
    match v {
        Yaml::Tagged(t) if t.tag == "Ref" => out.extend(t.value.as_str().map(str::to_owned)),
        Yaml::Tagged(t) if t.tag == "Sub" => {
            let text = t.value.as_str().unwrap_or("");
            out.extend(
                text.split("${")
                    .skip(1)
                    .filter_map(|p| p.split('}').next())
                    .map(str::to_owned),
            );
        }
        Yaml::Tagged(t) => names_in(&t.value, out),
        Yaml::Sequence(s) => s.iter().for_each(|x| names_in(x, out)),
        Yaml::Mapping(m) => m.values().for_each(|x| names_in(x, out)),
        _ => {}
    }
}

/// The front (RateLimitedFront) cannot be gone around. `DisableExecuteApiEndpoint` would cut
/// CloudFront off while its origin is the execute-api host (an HTTP API then answers only on
/// a custom domain), so it is allowed only with another origin; otherwise the front adds a
/// secret origin header from Secrets Manager, which intake is told to require only behind the
/// front, together with the header it takes the client's address from. The WAF rule is an
/// optional parameter, off by default, and documented.
#[test]
fn the_front_cannot_be_gone_around_and_its_viewer_address_is_trusted_only_behind_it() {
    let t = template_yaml();
    let r = &t["Resources"];
    let api = &r["HttpApi"]["Properties"];
    let origin = &r["FrontDistribution"]["Properties"]["DistributionConfig"]["Origins"][0];
    let execute_api_origin = match &origin["DomainName"] {
        Yaml::Tagged(tag) => tag.value.as_str().unwrap_or("").contains(".execute-api."),
        _ => false,
    };
    let disabled = &api["DisableExecuteApiEndpoint"];
    let disabled_behind_front = match if_of(disabled) {
        Some((cond, yes, _)) => cond == "UseFront" && yes.as_bool() == Some(true),
        None => disabled.as_bool() == Some(true),
    };
    assert!(
        !(disabled_behind_front && execute_api_origin),
        "DisableExecuteApiEndpoint cuts CloudFront off from its execute-api origin"
    );
    if !disabled_behind_front {
        // The origin secret, generated, only with the front.
        let secret = &r["FrontOriginSecret"];
        assert_eq!(secret["Type"], "AWS::SecretsManager::Secret");
        assert_eq!(secret["Condition"], "UseFront");
        assert!(
            secret["Properties"]["GenerateSecretString"]["PasswordLength"]
                .as_u64()
                .unwrap()
                >= 32
        );
        let headers = origin["OriginCustomHeaders"]
            .as_sequence()
            .expect("the front adds its origin header");
        let header = headers
            .iter()
            .find(|h| {
                h["HeaderName"]
                    .as_str()
                    .unwrap()
                    .eq_ignore_ascii_case(intake::front::ORIGIN_HEADER)
            })
            .expect("the header intake checks");
        let value = match &header["HeaderValue"] {
            Yaml::Tagged(tag) if tag.tag == "Sub" => tag.value.as_str().unwrap().to_owned(),
            other => panic!("a dynamic reference, never the value in the template: {other:?}"),
        };
        assert_eq!(value, "{{resolve:secretsmanager:${FrontOriginSecret}:SecretString}}");
    }
    // Intake is told about the front only under its condition.
    let env = &r["IntakeFunction"]["Properties"]["Environment"]["Variables"];
    let (cond, yes, no) = if_of(&env["FRONT_ORIGIN_SECRET_ARN"]).expect("behind the front only");
    assert_eq!(
        (cond, target(yes).as_deref(), is_no_value(no)),
        ("UseFront", Some("FrontOriginSecret"), true)
    );
    let (cond, yes, no) = if_of(&env["TRUSTED_CLIENT_IP_HEADER"]).expect("behind the front only");
    assert_eq!(
        (cond, yes.as_str(), is_no_value(no)),
        ("UseFront", Some("CloudFront-Viewer-Address"), true)
    );
    // AllViewerExceptHostHeader forwards CloudFront's headers, CloudFront-Viewer-Address too.
    assert_eq!(
        r["FrontDistribution"]["Properties"]["DistributionConfig"]["DefaultCacheBehavior"]["OriginRequestPolicyId"],
        "b689b0a8-53d0-40ab-baf2-68738e2966ac"
    );
    assert!(statements("IntakeFunction")
        .iter()
        .any(|s| s.actions.contains("secretsmanager:GetSecretValue") && s.resources.contains("FrontOriginSecret")));

    // Resolved: nothing without the front (the local run), both with it.
    let root = leadflow_local::workspace_root();
    let mut local = leadflow_local::Template::load(&root.join("template.yaml")).unwrap();
    let mut provisioned = leadflow_local::Provisioned::default();
    for id in ["DataTable", "ConfigTable"] {
        provisioned.tables.insert(id.into(), id.into());
    }
    provisioned.queues.insert(
        "ScoringQueue".into(),
        leadflow_local::template::QueueInfo {
            name: "q".into(),
            url: "http://q".into(),
            arn: "arn:q".into(),
        },
    );
    for id in [
        "UnsubscribeLinkKeys",
        "ConfirmLinkKeys",
        "FrontOriginSecret",
        "LegacyLinkSecret",
    ] {
        provisioned.secrets.insert(
            id.into(),
            leadflow_local::template::SecretInfo {
                name: id.into(),
                arn: format!("arn:aws:secretsmanager:::secret:{id}"),
            },
        );
    }
    provisioned.others.insert("LeadflowBus".into(), "bus".into());
    local.overrides.insert("PublicBaseUrl".into(), "https://x".into());
    let off = local.function_env("IntakeFunction", &provisioned).unwrap();
    assert!(
        !off.contains_key("FRONT_ORIGIN_SECRET_ARN") && !off.contains_key("TRUSTED_CLIENT_IP_HEADER"),
        "{off:?}"
    );
    assert!(
        !off.contains_key("LEGACY_LINK_SECRET_ARN"),
        "a new stack has no legacy key"
    );
    local.overrides.insert("RateLimitedFront".into(), "true".into());
    let on = local.function_env("IntakeFunction", &provisioned).unwrap();
    assert_eq!(
        on["FRONT_ORIGIN_SECRET_ARN"],
        "arn:aws:secretsmanager:::secret:FrontOriginSecret"
    );
    assert_eq!(on["TRUSTED_CLIENT_IP_HEADER"], "CloudFront-Viewer-Address");
    let settings = intake::Settings::from_env(&leadflow_aws::config::Env(|k: &str| on.get(k).cloned())).unwrap();
    assert_eq!(
        settings.trusted_client_ip_header.as_deref(),
        Some("CloudFront-Viewer-Address")
    );

    // The WAF rate rule: optional, off by default, per client IP, documented.
    let p = &t["Parameters"];
    assert_eq!(p["RateLimitedFront"]["Default"], "false");
    assert_eq!(
        t["Conditions"]["UseFront"],
        serde_yaml::from_str::<Yaml>(r#"!Equals [!Ref RateLimitedFront, "true"]"#).unwrap()
    );
    let acl = &r["FrontWebAcl"];
    assert_eq!(acl["Condition"], "UseFront");
    let rule = &acl["Properties"]["Rules"][0];
    assert_eq!(rule["Action"], serde_yaml::from_str::<Yaml>("Block: {}").unwrap());
    assert_eq!(rule["Statement"]["RateBasedStatement"]["AggregateKeyType"], "IP");
    assert_eq!(
        target(&rule["Statement"]["RateBasedStatement"]["Limit"]).as_deref(),
        Some("FrontRateLimit")
    );
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for word in ["RateLimitedFront", "FrontRateLimit", "FrontUrl", "X-Origin-Verify"] {
        assert!(readme.contains(word), "README documents {word}");
    }
}

/// Behind the front, the real handler answers a public route without the origin header as an
/// unknown route, and records the viewer's address from the front's header.
#[tokio::test]
async fn behind_the_front_intake_refuses_requests_that_went_around_it() {
    let mut env = TestEnv::new().await;
    env.single_opt_in("demo").await;
    env.intake.front = intake::front::Front {
        origin_secret: Some(leadflow_aws::secrets::SecretString::new(
            "front-origin-secret-for-the-test",
        )),
        client_ip_header: Some(lambda_http::http::HeaderName::from_static("cloudfront-viewer-address")),
    };
    let body = json!({"email": "front@example.jp", "last_name": "前", "consent": true});
    let around = env.post_public("demo", &body, &[]).await;
    assert_eq!((around.status, around.body["error"].as_str()), (404, Some("not_found")));
    let wrong = env.post_public("demo", &body, &[("x-origin-verify", "guess")]).await;
    assert_eq!(wrong.status, 404);
    assert!(env.items_of("contact").await.is_empty(), "nothing stored");
    let through = env
        .post_public(
            "demo",
            &body,
            &[
                ("x-origin-verify", "front-origin-secret-for-the-test"),
                ("cloudfront-viewer-address", "[2001:db8::7]:40123"),
            ],
        )
        .await;
    assert_eq!(through.status, 201, "{}", through.body);
    let stored =
        serde_json::to_string(&env.items().await.iter().map(|i| format!("{i:?}")).collect::<Vec<_>>()).unwrap();
    assert!(stored.contains("2001:db8::7"), "the viewer's address is the evidence");
    assert!(!stored.contains("203.0.113.7"), "not the edge's");
    // Emails' signed links work at either URL (links already sent may name the API's own):
    // their token decides, 400 for a bad one rather than the front's 404.
    let link = env.send("GET", "/unsubscribe?token=not-a-token", &[], b"").await;
    assert_eq!(link.status, 400);
    // IAM-authorised routes never go through the front.
    let iam = env
        .post_json(
            "demo",
            &json!({"email": "iam-front@example.jp", "last_name": "裏"}),
            &[],
        )
        .await;
    assert_eq!(iam.status, 201, "{}", iam.body);
}

/// Links are signed with keyrings held in Secrets Manager, one for each kind of link,
/// generated by the template; no function's environment holds a secret's value.
#[tokio::test]
async fn link_keys_live_in_two_secrets_and_no_environment_holds_a_secret_value() {
    let t = template_yaml();
    let r = &t["Resources"];
    for id in ["UnsubscribeLinkKeys", "ConfirmLinkKeys"] {
        let s = &r[id];
        assert_eq!(s["Type"], "AWS::SecretsManager::Secret", "{id}");
        assert!(s["Condition"].is_null(), "{id}: every stack has it");
        assert_eq!(
            (&s["DeletionPolicy"], &s["UpdateReplacePolicy"]),
            (&Yaml::from("Retain"), &Yaml::from("Retain"))
        );
        let g = &s["Properties"]["GenerateSecretString"];
        let template: Value = serde_json::from_str(g["SecretStringTemplate"].as_str().unwrap()).unwrap();
        assert_eq!(
            template["current"],
            g["GenerateStringKey"].as_str().unwrap(),
            "{id}: the generated key signs"
        );
        assert!(g["PasswordLength"].as_u64().unwrap() >= 32);
        assert!(
            s["Properties"]["SecretString"].is_null(),
            "{id}: generated, never written in the template"
        );
    }
    let legacy = &r["LegacyLinkSecret"];
    assert_eq!(legacy["Condition"], "HasLegacyLinkSecret");
    assert_eq!(
        target(&legacy["Properties"]["SecretString"]).as_deref(),
        Some("UnsubscribeSecret")
    );

    // Environments: secrets by ARN only; no NoEcho parameter's value, no secret resolved.
    let no_echo: BTreeSet<String> = t["Parameters"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, p)| p["NoEcho"].as_bool() == Some(true))
        .map(|(k, _)| k.as_str().unwrap().to_owned())
        .collect();
    assert!(no_echo.contains("UnsubscribeSecret"));
    let secret_ids: BTreeSet<String> = r
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, v)| v["Type"] == "AWS::SecretsManager::Secret")
        .map(|(k, _)| k.as_str().unwrap().to_owned())
        .collect();
    let mut envs = vec![(
        "Globals".to_owned(),
        t["Globals"]["Function"]["Environment"]["Variables"].clone(),
    )];
    for (id, res) in r.as_mapping().unwrap() {
        if res["Type"] == "AWS::Serverless::Function" {
            envs.push((
                id.as_str().unwrap().to_owned(),
                res["Properties"]["Environment"]["Variables"].clone(),
            ));
        }
    }
    for (function, vars) in &envs {
        for (name, value) in vars.as_mapping().unwrap() {
            let name = name.as_str().unwrap();
            let text = serde_yaml::to_string(value).unwrap();
            assert!(!text.contains("{{resolve:"), "{function} {name}: a resolved secret");
            let mut names = Vec::new();
            names_in(value, &mut names);
            for n in &names {
                assert!(
                    !no_echo.contains(n),
                    "{function} {name}: the NoEcho parameter {n}'s value"
                );
            }
            let refs_secret = names.iter().any(|n| secret_ids.contains(n));
            if name.contains("SECRET") || refs_secret {
                assert!(
                    name.ends_with("_SECRET_ARN"),
                    "{function} {name}: named for what it holds, an ARN"
                );
                let plain = if_of(value).map_or(value, |(_, yes, _)| yes);
                let id = target(plain).unwrap_or_default();
                assert!(
                    matches!(plain, Yaml::Tagged(tag) if tag.tag == "Ref") && secret_ids.contains(&id),
                    "{function} {name}: !Ref of a secret (its ARN)"
                );
            }
        }
    }
    for f in ["IntakeFunction", "ProcessFunction"] {
        let vars = &r[f]["Properties"]["Environment"]["Variables"];
        assert_eq!(
            target(&vars["UNSUBSCRIBE_KEYS_SECRET_ARN"]).as_deref(),
            Some("UnsubscribeLinkKeys"),
            "{f}"
        );
        assert_eq!(
            target(&vars["CONFIRM_KEYS_SECRET_ARN"]).as_deref(),
            Some("ConfirmLinkKeys"),
            "{f}"
        );
        assert!(statements(f)
            .iter()
            .any(|s| s.actions.contains("secretsmanager:GetSecretValue")
                && s.resources.contains("UnsubscribeLinkKeys")
                && s.resources.contains("ConfirmLinkKeys")));
    }

    // The local stack generated both keyrings as the template asks, and read them back.
    let env = TestEnv::new().await;
    let keys = &env.stack.link_keys;
    assert_eq!((keys.unsubscribe.current(), keys.confirm.current()), ("k1", "k1"));
    let contact = leadflow_domain::records::ContactId::generate();
    use leadflow_domain::process::unsubscribe as links;
    let u = links::token(&keys.unsubscribe, contact);
    assert_eq!(links::verify(&keys.unsubscribe, &u), Some(contact));
    assert_eq!(
        links::verify(&keys.confirm, &u),
        None,
        "two keyrings, two keys: the confirmation keyring does not verify unsubscribe links"
    );
    let shown = format!("{:?} {:?}", env.stack.link_keys, env.stack.intake_secrets);
    assert!(shown.contains("[redacted]"), "{shown}");
    for (id, s) in &env.stack.provisioned.secrets {
        let value = env
            .stack
            .clients
            .secretsmanager
            .get_secret_value()
            .secret_id(&s.arn)
            .send()
            .await
            .unwrap()
            .secret_string
            .unwrap();
        assert!(!shown.contains(&value), "{id}'s value in a Debug");
        if id.ends_with("LinkKeys") {
            let json: Value = serde_json::from_str(&value).unwrap();
            assert_eq!(json["k1"].as_str().unwrap().len(), 64, "{id}");
            for f in ["IntakeFunction", "ProcessFunction"] {
                let set = env.stack.template.function_env(f, &env.stack.provisioned).unwrap();
                assert!(set.values().all(|v| !v.contains(json["k1"].as_str().unwrap())), "{f}");
            }
        }
    }
}

/// Intake deletes only its own events outbox entries (`EVOUT#…`): its one delete grant is
/// restricted to those partitions.
#[test]
fn intakes_deletes_are_restricted_to_its_events_outbox_entries() {
    let deleting: Vec<Statement> = statements("IntakeFunction")
        .into_iter()
        .filter(|s| s.actions.contains("dynamodb:DeleteItem") || s.actions.contains("dynamodb:BatchWriteItem"))
        .collect();
    assert!(!deleting.is_empty(), "intake removes published events entries");
    for s in &deleting {
        assert_eq!(s.resources, BTreeSet::from(["DataTable".to_owned()]));
        assert_eq!(
            s.leading_keys.as_deref(),
            Some(&["EVOUT#*".to_owned()][..]),
            "restricted by LeadingKeys"
        );
        assert_eq!(
            s.actions,
            BTreeSet::from(["dynamodb:BatchWriteItem".to_owned()]),
            "no more than it calls"
        );
    }
    assert!(like("EVOUT#*", "EVOUT#0190abc") && !like("EVOUT#*", "CONTACT#1") && !like("EVOUT#*", "EVOUT"));
}

/// Links in emails sent before the keyrings (signed with the former single secret, without a
/// key id) keep working: the stack keeps that secret as the key `legacy` (LegacyLinkSecret).
#[tokio::test]
async fn links_signed_before_the_keyrings_keep_working() {
    use hmac::Mac;
    let env = TestEnv::new().await;
    env.single_opt_in("demo").await;
    let r = env
        .post_json(
            "demo",
            &json!({"email": "legacy@example.jp", "last_name": "旧", "consent": true}),
            &[],
        )
        .await;
    let contact = r.body["contact_id"].as_str().unwrap().to_owned();
    let id = leadflow_domain::records::ContactId::parse(&contact)
        .unwrap()
        .0
        .simple()
        .to_string();
    let sign = |payload: String, key: &[u8]| {
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        m.update(payload.as_bytes());
        format!("{payload}.{}", hex::encode(m.finalize().into_bytes()))
    };
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let forged = sign(format!("v1.{id}"), b"not-the-secret-this-stack-ever-had-0123456789");
    assert_eq!(
        env.send("POST", &format!("/unsubscribe?token={forged}"), &form, b"")
            .await
            .status,
        400
    );
    let old = sign(format!("v1.{id}"), leadflow_local::LOCAL_UNSUBSCRIBE_SECRET.as_bytes());
    let done = env.send("POST", &format!("/unsubscribe?token={old}"), &form, b"").await;
    assert_eq!(done.status, 200, "{}", done.body);
    let item = env.item(&format!("CONTACT#{contact}"), "CONTACT").await;
    assert!(
        item.is_some_and(|c| c.contains_key("unsubscribed_at")),
        "unsubscribed by an old link"
    );
}
