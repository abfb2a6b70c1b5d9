//! What every function's `main` shares: environment lookup with typed errors (each function
//! has its own settings type built with it), the SDK clients built once, and logging.

use aws_config::BehaviorVersion;
pub use aws_config::SdkConfig;

#[derive(Debug, thiserror::Error)]
#[error("environment variable {0} is not set")]
pub struct MissingEnv(pub &'static str);

impl Clients {
    /// A table handle on these clients.
    pub fn table(&self, name: &str) -> crate::table::Table {
        crate::table::Table::new(self.dynamodb.clone(), name)
    }

    /// The records table: its writes publish their domain events to `bus` (none: no events).
    pub fn records(&self, name: &str, bus: Option<&str>) -> crate::table::Table {
        self.table(name)
            .with_events(bus.map(|b| crate::bus::EventBus::new(self.eventbridge.clone(), b)))
    }
}

/// The environment variable naming the events bus (`!Ref LeadflowBus`); unset: no events.
pub const EVENT_BUS_ENV: &str = "EVENT_BUS_NAME";

/// Environment variables, from the process or from any lookup (a template's resolved map).
pub struct Env<F>(pub F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// A required variable: set and not empty.
    pub fn required(&self, name: &'static str) -> Result<String, MissingEnv> {
        self.optional(name).ok_or(MissingEnv(name))
    }

    /// An optional variable; empty counts as unset.
    pub fn optional(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.is_empty())
    }
}

/// The process environment, as on Lambda.
pub fn process_env() -> Env<impl Fn(&str) -> Option<String>> {
    Env(|name: &str| std::env::var(name).ok())
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

/// SDK configuration for a local emulator: fixed region and dummy credentials, so nothing
/// from a developer's real AWS profile is ever used against it (or leaked to it).
pub async fn emulator_sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(EMULATOR_REGION))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "leadflow-local",
        ))
        .endpoint_url(endpoint)
        .load()
        .await
}

pub const EMULATOR_REGION: &str = "us-east-1";

/// The SDK clients a function needs, built once per container and cloned from there.
#[derive(Clone, Debug)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sesv2: aws_sdk_sesv2::Client,
    pub eventbridge: aws_sdk_eventbridge::Client,
    /// Read at cold start only (signing keys, the front's origin secret): see [`crate::secrets`].
    pub secretsmanager: aws_sdk_secretsmanager::Client,
}

impl Clients {
    /// From the environment, as on Lambda.
    pub async fn from_env() -> Self {
        Self::new(&sdk_config(None).await)
    }

    pub fn new(config: &SdkConfig) -> Self {
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            sesv2: aws_sdk_sesv2::Client::new(config),
            eventbridge: aws_sdk_eventbridge::Client::new(config),
            secretsmanager: aws_sdk_secretsmanager::Client::new(config),
        }
    }
}

/// One place sets up logging: JSON lines, level from `RUST_LOG` (default info), spans listed
/// with each line (request, message, lead: ids only, never personal data).
/// The SDK's and the HTTP stack's own logs stay at `warn` whatever `RUST_LOG` says: at debug
/// and trace they print request and response bodies, which hold personal data (and, for
/// Secrets Manager, the secrets themselves).
const QUIET_DEPENDENCIES: &str =
    "aws_smithy_runtime=warn,aws_smithy_http=warn,aws_smithy_runtime_api=warn,aws_sdk_dynamodb=warn,aws_sdk_sqs=warn,aws_sdk_sesv2=warn,aws_sdk_eventbridge=warn,aws_sdk_secretsmanager=warn,aws_config=warn,hyper=warn,hyper_util=warn,h2=warn,rustls=warn,lambda_runtime=info";

pub fn init_tracing() {
    let level = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(format!("{level},{QUIET_DEPENDENCIES}"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("info,{QUIET_DEPENDENCIES}")));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .without_time()
        .try_init();
}
