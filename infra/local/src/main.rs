//! `leadflow-local`: the whole of leadflow on this machine, no AWS account needed. Each
//! function's real binary runs under the Lambda Runtime API emulator, wired as the template
//! declares it: HTTP API routes, SQS event source mappings, schedules.
//!
//! `leadflow-local --cold-start [N]` measures each function's init time and peak memory.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use leadflow_local::{server, sqs, Emulator, Stack};

fn arg(name: &str, default: u16) -> u16 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    leadflow_aws::config::init_tracing();
    let port = arg("--port", 3000);
    let emulator_port = arg("--emulator-port", 4566);
    if std::env::args().any(|a| a == "--cold-start") {
        return cold_start(arg("--cold-start", 20) as usize).await;
    }
    let emulator = Emulator::start_on(emulator_port)?;
    let public_url = format!("http://127.0.0.1:{port}");
    let stack = Stack::stand_up(&emulator.endpoint, "leadflow-", &public_url).await?;
    stack.open_send_window().await?;
    // The demo forms and site accept the page wherever it is served (`--port`).
    stack
        .allow_origins(&[public_url.clone(), format!("http://localhost:{port}")])
        .await?;
    let stack = Arc::new(stack);
    let functions = stack.start_functions(&emulator.endpoint).await?;
    let schedules = stack.template.schedules();
    let front = Arc::new(server::Front {
        routes: stack.template.http_routes(),
        functions: functions.clone(),
        schedules: schedules.clone(),
        emulator: emulator.endpoint.clone(),
        records: stack.table()?,
        events: Default::default(),
    });
    let mut tasks = Vec::new();
    // What the bus delivered, for the events page (a rule on the bus feeds a local queue).
    {
        let (stack, front) = (stack.clone(), front.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                match stack.take_events().await {
                    Ok(got) if !got.is_empty() => {
                        if let Ok(mut seen) = front.events.lock() {
                            seen.add(got);
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "reading the local events queue failed"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }
    // The SQS event source mappings: poll every second, as Lambda's pollers would.
    {
        let (stack, functions) = (stack.clone(), functions.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                match stack.poll_queues(&functions, sqs::Retry::AfterTimeout).await {
                    Ok(p) if p.received > 0 => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "queue poll failed"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }
    // The schedules, at their rate (and on demand: POST /_local/schedules/{Function}/{Event}).
    for s in schedules.clone() {
        let (Some(f), Some(every)) = (functions.get(&s.function).cloned(), s.every) else {
            continue;
        };
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = f.invoke(s.input.clone()).await {
                    tracing::warn!(function = %s.function, error = %e, "scheduled invocation failed");
                }
            }
        }));
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("leadflow is running locally");
    println!("  demo landing page   http://{addr}/");
    println!("  local mailbox       http://{addr}/_local/mailbox");
    println!("  funnel report       http://{addr}/_local/report");
    println!("  domain events       http://{addr}/_local/events");
    println!("  intake API          http://{addr}/forms/demo/submissions");
    println!("  events API          http://{addr}/events  (site key pk_demo_site_2026)");
    for s in &schedules {
        let when = match s.every {
            Some(every) => format!("every {every:?}"),
            None => format!("{} on AWS, on demand here", s.expression),
        };
        println!(
            "  schedule            {} {when}: POST http://{addr}/_local/schedules/{}/{}",
            s.function, s.function, s.name
        );
    }
    let mut names: Vec<_> = functions
        .values()
        .map(|f| format!("{} (init {:?})", f.name, f.init_time().unwrap_or_default()))
        .collect();
    names.sort();
    println!("  functions           {}", names.join(", "));
    println!("  AWS emulator (moto) {}", emulator.endpoint);
    if emulator_port != 4566 {
        println!(
            "  ops tool            LEADFLOW_ENDPOINT={} scripts/leadflow --local …",
            emulator.endpoint
        );
    } else {
        println!("  ops tool            scripts/leadflow --local …");
    }
    println!("Press Ctrl-C to stop.");
    server::serve(listener, front, async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    })
    .await?;
    for t in tasks {
        t.abort();
    }
    drop(functions);
    drop(emulator);
    println!("stopped");
    Ok(())
}

/// Starts each function `n` times under the Runtime API emulator: init time (process start to
/// its first request for work) and peak memory after one invocation.
async fn cold_start(n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let emulator = Emulator::start()?;
    let stack = Stack::stand_up(&emulator.endpoint, "cold-", "http://127.0.0.1:3000").await?;
    println!("function            runs  init p50    init p95    init max    peak memory (max)");
    for f in stack.template.functions() {
        let env = stack.template.function_env(&f.logical_id, &stack.provisioned)?;
        let binary = leadflow_local::runtime::bin_dir().join(&f.binary);
        let mut inits = Vec::new();
        let mut peak = 0;
        for _ in 0..n {
            let function = leadflow_local::runtime::Function::start(
                &f.logical_id,
                &binary,
                &env,
                &emulator.endpoint,
                Duration::from_secs(f.timeout_secs),
            )
            .await?;
            inits.push(function.ready(Duration::from_secs(30)).await?);
            // One small piece of work, so memory includes the SDK's first request.
            let event = match f.logical_id.as_str() {
                "ScoringFunction" => serde_json::json!({"Records": []}),
                "ProcessFunction" => serde_json::json!({}),
                _ => {
                    serde_json::json!({"version": "2.0", "routeKey": "OPTIONS /forms/{formId}/submissions", "rawPath": "/forms/demo/submissions", "rawQueryString": "",
                    "headers": {"origin": "http://localhost:3000"}, "pathParameters": {"formId": "demo"},
                    "requestContext": {"http": {"method": "OPTIONS", "path": "/forms/demo/submissions", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "cold"}, "timeEpoch": 0}, "isBase64Encoded": false})
                }
            };
            let _ = function.invoke(event).await;
            peak = peak.max(function.peak_memory_kib().unwrap_or(0));
        }
        inits.sort();
        let at = |q: f64| inits[((inits.len() as f64 - 1.0) * q).round() as usize];
        println!(
            "{:<18} {:>5}  {:>9.2?}  {:>9.2?}  {:>9.2?}   {:.1} MiB",
            f.logical_id,
            n,
            at(0.5),
            at(0.95),
            inits[inits.len() - 1],
            peak as f64 / 1024.0
        );
    }
    Ok(())
}
