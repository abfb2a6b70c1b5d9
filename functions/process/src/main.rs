// The lead API and the run nest many async layers; their future type needs a deeper layout query.
#![recursion_limit = "256"]

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    leadflow_aws::config::init_tracing();
    let settings = process::Settings::from_env(&leadflow_aws::config::process_env())?;
    let clients = leadflow_aws::config::Clients::from_env().await;
    // Once per container: the links' keyrings from Secrets Manager; a secret that cannot be
    // read fails the cold start, loudly.
    let keys = process::LinkKeys::load(&clients, &settings).await?;
    let app = process::AwsProcess::new(&clients, &settings, keys);
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        app.handle(event.payload).await.map_err(Error::from)
    }))
    .await
}
