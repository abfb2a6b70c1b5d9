//! The real function binaries under the Lambda Runtime API emulator, wired as the template
//! declares: an HTTP event to intake, the SQS mapping to scoring, the schedule to process.

use std::time::Duration;

use leadflow_local::apigw::{http_api_event, match_route, HttpRequest};
use leadflow_local::sqs::Retry;
use leadflow_tests::{endpoint, TestEnv};
use serde_json::json;

#[tokio::test]
async fn the_pipeline_runs_on_the_real_binaries() {
    let env = TestEnv::new().await;
    let functions = env
        .stack
        .start_functions(endpoint())
        .await
        .expect("the functions' binaries (scripts/test.sh builds them)");
    for name in ["IntakeFunction", "ScoringFunction", "ProcessFunction"] {
        let f = &functions[name];
        assert!(f.init_time().is_some(), "{name} asked for work");
        assert!(f.peak_memory_kib().unwrap_or(0) > 0);
    }
    // An API Gateway event, as the HTTP API would send it for the template's route.
    let routes = env.stack.template.http_routes();
    let (route, params) = match_route(&routes, "POST", "/internal/forms/demo/submissions").unwrap();
    let body = json!({"email": "binary@example.jp", "last_name": "実行", "industry": "IT", "employees": "300", "consent": true}).to_string();
    let req = HttpRequest {
        method: "POST",
        path: "/internal/forms/demo/submissions",
        query: "",
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.as_bytes(),
        source_ip: "198.51.100.1",
    };
    let out = functions["IntakeFunction"]
        .invoke(http_api_event(route, &params, &req))
        .await
        .unwrap();
    assert_eq!(out["statusCode"], 201, "{out}");
    let receipt: serde_json::Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
    let lead = receipt["lead_id"].as_str().unwrap().to_owned();

    // The SQS event source mapping: the scoring binary scores it.
    let polled = env.stack.poll_queues(&functions, Retry::Now).await.unwrap();
    assert_eq!((polled.received, polled.failed), (1, 0));
    assert_eq!(env.scoring_of(&lead).await["total"].as_i64(), Some(35));
    // A message replayed from the dead-letter queue by the ops tool: counted as a replay (and a
    // duplicate: it was scored).
    let ix: leadflow_domain::records::Interaction =
        leadflow_aws::table::from_record(env.items_of("interaction").await[0].clone()).unwrap();
    let message = leadflow_domain::message::InteractionMessage::for_interaction(&ix);
    env.send_raw("ScoringDeadLetterQueue", &serde_json::to_string(&message).unwrap())
        .await;
    assert_eq!(leadflow_cli::dlq_replay(&env.cli_target()).await.unwrap(), 1);
    let polled = env.stack.poll_queues(&functions, Retry::Now).await.unwrap();
    assert_eq!((polled.received, polled.failed), (1, 0));

    // The schedule: the process binary moves the lead out of Inquiry.
    let schedule = env
        .stack
        .template
        .schedules()
        .into_iter()
        .find(|s| s.function == "ProcessFunction")
        .unwrap();
    assert_eq!(schedule.every, Some(Duration::from_secs(300)));
    let report = functions["ProcessFunction"]
        .invoke(schedule.input.clone())
        .await
        .unwrap();
    assert_eq!(report["leads"], 1, "{report}");
    let item = env.item(&format!("LEAD#{lead}"), "LEAD").await.unwrap();
    assert_eq!(item["stage"].as_s().unwrap(), "automated_marketing_qualification");

    // Each binary printed its counts as CloudWatch embedded-metric-format lines.
    for (name, metric, value) in [
        ("IntakeFunction", "SubmissionsAccepted", 1.0),
        ("ScoringFunction", "InteractionsScored", 1.0),
        ("ScoringFunction", "DlqReplays", 1.0),
        ("ProcessFunction", "LeadsProcessed", 1.0),
    ] {
        let mut lines = Vec::new();
        for _ in 0..50 {
            lines = functions[name].metric_lines();
            if !lines.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let records: Vec<serde_json::Value> = lines.iter().map(|l| assert_emf(l)).collect();
        assert!(
            records.iter().any(|r| r[metric] == value),
            "{name}: {metric} = {value} in {lines:?}"
        );
    }

    // A function error is reported as one, not as a crash of the emulator.
    let err = functions["ScoringFunction"]
        .invoke(json!({"neither": "sqs nor rescore"}))
        .await;
    assert!(err.is_err());
}

/// A line as CloudWatch reads embedded metric format: `_aws` with a millisecond timestamp and
/// metric directives; every dimension and metric named there is a root member, metrics numbers.
fn assert_emf(line: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {e}: {line}"));
    assert!(v["_aws"]["Timestamp"].as_u64().is_some(), "{line}");
    let directives = v["_aws"]["CloudWatchMetrics"].as_array().expect("CloudWatchMetrics");
    assert!(!directives.is_empty());
    for d in directives {
        assert_eq!(d["Namespace"], "Leadflow", "{line}");
        for set in d["Dimensions"].as_array().expect("Dimensions") {
            let set = set.as_array().expect("a dimension set");
            assert!(!set.is_empty() && set.len() <= 30);
            for dim in set {
                assert!(
                    v[dim.as_str().unwrap()].is_string(),
                    "dimension {dim} at the root: {line}"
                );
            }
        }
        for m in d["Metrics"].as_array().expect("Metrics") {
            assert!(
                v[m["Name"].as_str().unwrap()].is_number(),
                "metric {} at the root: {line}",
                m["Name"]
            );
            assert_eq!(m["Unit"], "Count");
        }
    }
    v
}
