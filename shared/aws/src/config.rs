//! Settings read once from the environment into a typed struct, and the SDK clients built
//! once from them.

use aws_config::BehaviorVersion;
pub use aws_config::SdkConfig;

#[derive(Debug, Clone)]
pub struct Settings {
    /// The records table (contacts, leads, interactions, keys, receipts).
    pub table: String,
    /// The configuration table (forms, models, programs).
    pub config_table: String,
    /// The scoring queue's URL.
    pub scoring_queue_url: String,
    /// The key unsubscribe links are signed with; unsubscribe routes answer 503 without it.
    pub unsubscribe_secret: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("environment variable {0} is not set")]
pub struct MissingEnv(pub &'static str);

/// A required environment variable.
pub fn env(name: &'static str) -> Result<String, MissingEnv> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or(MissingEnv(name))
}

impl Settings {
    pub fn from_env() -> Result<Self, MissingEnv> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// From any source of variables (the process environment, a template's resolved map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, MissingEnv> {
        let var = |name: &'static str| lookup(name).filter(|v| !v.is_empty()).ok_or(MissingEnv(name));
        Ok(Settings {
            table: var("TABLE_NAME")?,
            config_table: var("CONFIG_TABLE_NAME")?,
            scoring_queue_url: var("SCORING_QUEUE_URL")?,
            unsubscribe_secret: lookup("UNSUBSCRIBE_SECRET").filter(|v| !v.is_empty()),
        })
    }
}

/// The shared SDK configuration: region, credentials and `AWS_ENDPOINT_URL` from the
/// environment, as on Lambda; an explicit endpoint for local runs and tests.
pub async fn sdk_config(endpoint: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// The SDK clients a function needs, built once per container and cloned from there.
#[derive(Clone, Debug)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sesv2: aws_sdk_sesv2::Client,
}

impl Clients {
    pub fn new(config: &SdkConfig) -> Self {
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            sesv2: aws_sdk_sesv2::Client::new(config),
        }
    }
}

/// One place sets up logging: JSON lines, level from `RUST_LOG` (default info).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .without_time()
        .try_init();
}
