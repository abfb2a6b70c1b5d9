use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    leadflow_aws::config::init_tracing();
    let settings = process::ProcessSettings::from_lookup(|k| std::env::var(k).ok())?;
    let config = leadflow_aws::config::sdk_config(None).await;
    let app = process::Process::new(&leadflow_aws::config::Clients::new(&config), &settings);
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        app.handle(event.payload).await
    }))
    .await
}
