// The batch scoring nests many async layers; its future type needs a deeper layout query.
#![recursion_limit = "256"]

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    leadflow_aws::config::init_tracing();
    let settings = scoring::Settings::from_env(&leadflow_aws::config::process_env())?;
    let clients = leadflow_aws::config::Clients::from_env().await;
    let app = scoring::AwsScoring::new(&clients, &settings);
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        app.handle(event.payload).await.map_err(Error::from)
    }))
    .await
}
