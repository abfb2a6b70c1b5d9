use lambda_http::{service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    intake::init_tracing();
    let app = intake::from_env().await?;
    let app = &app;
    lambda_http::run(service_fn(move |req| app.handle(req))).await
}
