//! `leadflow-local`: the whole of leadflow on this machine, no AWS account needed.

use std::net::SocketAddr;
use std::sync::Arc;

use leadflow_local::{server, Emulator, Stack};

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
    intake::init_tracing();
    let port = arg("--port", 3000);
    let emulator_port = arg("--emulator-port", 4566);
    let emulator = Emulator::start_on(emulator_port)?;
    let public_url = format!("http://127.0.0.1:{port}");
    let stack = Stack::stand_up(&emulator.endpoint, "leadflow-", &public_url).await?;
    let front = Arc::new(server::Front {
        routes: stack.template.http_routes(),
        intake: stack.intake()?,
        process: stack.process()?,
    });
    // The SQS event source mappings of the template: scoring polls its queues every second.
    let stack = Arc::new(stack);
    let scoring = Arc::new(stack.scoring()?);
    // The process function's schedule (rate(5 minutes) in the template; every minute here).
    let process = Arc::new(stack.process()?);
    let scheduler = {
        let process = process.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                if let Err(e) = process.run().await {
                    tracing::warn!(error = %e, "process run failed");
                }
            }
        })
    };
    let poller = {
        let (stack, scoring) = (stack.clone(), scoring.clone());
        tokio::spawn(async move {
            loop {
                match stack
                    .poll_scoring(&scoring, leadflow_local::sqs::Retry::AfterTimeout)
                    .await
                {
                    Ok(p) if p.received > 0 => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "scoring poll failed"),
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        })
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("leadflow is running locally");
    println!("  demo landing page   http://{addr}/");
    println!("  intake API          http://{addr}/forms/demo/submissions");
    println!("  events API          http://{addr}/events  (site key pk_demo_site_2026)");
    println!(
        "  AWS emulator (moto) {}   tables: {}",
        emulator.endpoint,
        stack
            .provisioned
            .tables
            .values()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  scoring queue       {}",
        stack
            .provisioned
            .queues
            .get("ScoringQueue")
            .map(|q| q.url.as_str())
            .unwrap_or("?")
    );
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
    poller.abort();
    scheduler.abort();
    drop(emulator);
    println!("stopped");
    Ok(())
}
