use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    leadflow_aws::config::init_tracing();
    let (table, config_table) = (
        leadflow_aws::config::env("TABLE_NAME")?,
        leadflow_aws::config::env("CONFIG_TABLE_NAME")?,
    );
    let config = leadflow_aws::config::sdk_config(None).await;
    let scoring = scoring::Scoring::new(&leadflow_aws::config::Clients::new(&config), &table, &config_table);
    let scoring = &scoring;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        scoring.handle(event.payload).await
    }))
    .await
}
