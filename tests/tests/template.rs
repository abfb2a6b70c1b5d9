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
        let read = env_var_literals(sources);
        assert!(!read.is_empty(), "{function} reads its settings from the environment");
        for var in read {
            assert!(
                set.contains_key(&var),
                "{function} reads {var}, which template.yaml does not set for it"
            );
        }
    }
}

/// The IAM statements of a function: (actions, resource labels such as `DataTable`,
/// `DataTable/index/due`, `ScoringQueue`, `SES`).
fn policies(function: &str) -> Vec<(BTreeSet<String>, BTreeSet<String>)> {
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
            Yaml::Sequence(s) => s.iter().map(label).collect(),
            one => [label(one)].into(),
        };
        out.push((actions, resources));
    }
    out
}

/// (IAM action, resource label) of every request a function made.
fn observed(log: &RequestLog, env: &TestEnv) -> BTreeSet<(String, String)> {
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
                            out.insert((format!("dynamodb:{action}"), table(b)));
                        }
                    }
                }
            }
            "BatchGetItem" | "BatchWriteItem" => {
                for t in body["RequestItems"].as_object().unwrap().keys() {
                    out.insert((format!("dynamodb:{op}"), tables[t].clone()));
                }
            }
            "SendMessage" | "ReceiveMessage" | "DeleteMessage" | "DeleteMessageBatch" | "GetQueueAttributes" => {
                out.insert((
                    format!("sqs:{op}"),
                    queues
                        .get(body["QueueUrl"].as_str().unwrap_or(""))
                        .cloned()
                        .unwrap_or_default(),
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
                    out.insert(("events:PutEvents".into(), logical));
                }
            }
            "POST /v2/email/outbound-emails" => {
                out.insert(("ses:SendEmail".into(), "SES".into()));
            }
            dynamo => {
                out.insert((format!("dynamodb:{dynamo}"), table(&body)));
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
    env.intake = intake::AwsIntake::new(&logged_clients(&intake_log).await, &env.stack.settings().unwrap());
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
    env.process = process::AwsProcess::new(
        &logged_clients(&process_log).await,
        &process::Settings::from_env(&leadflow_aws::config::Env(|k: &str| process_env.get(k).cloned())).unwrap(),
    );
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
        let allowed = policies(function);
        let seen = observed(log, &env);
        assert!(seen.len() >= 3, "{function} was exercised: {seen:?}");
        for (action, resource) in &seen {
            let ok = allowed
                .iter()
                .any(|(actions, resources)| actions.contains(action) && resources.contains(resource));
            assert!(
                ok,
                "{function} calls {action} on {resource}, which its IAM statements do not allow"
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
