use lambda_http::{service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    leadflow_aws::config::init_tracing();
    let settings = intake::Settings::from_env(&leadflow_aws::config::process_env())?;
    let clients = leadflow_aws::config::Clients::from_env().await;
    // Once per container: the links' keyrings (and the front's origin secret) from Secrets
    // Manager; a secret that cannot be read fails the cold start, loudly.
    let secrets = intake::Secrets::load(&clients, &settings).await?;
    let app = intake::AwsIntake::new(&clients, &settings, secrets);
    let app = &app;
    lambda_http::run(service_fn(move |req| app.handle(req))).await
}
