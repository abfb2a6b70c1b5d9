//! leadflow on one machine: the AWS-protocol emulator, every resource created from
//! `template.yaml`, configuration loaded from `config/`, and the functions served as
//! API Gateway would serve them. Used by `leadflow-local` and by the integration tests.

pub mod apigw;
pub mod config;
pub mod demo;
pub mod emulator;
pub mod runtime;
pub mod server;
pub mod sqs;
pub mod template;

use std::path::Path;

use aws_sdk_dynamodb::config::Credentials;
use leadflow_aws::config::{Clients, SdkConfig};
use leadflow_aws::docs::DynamoDocs;
use leadflow_aws::forms::{DynamoForms, DynamoSites};
use leadflow_aws::scoring::DynamoScoringConfig;
use leadflow_aws::Settings;

pub use emulator::{workspace_root, Emulator};
pub use template::{Provisioned, Template};

pub const REGION: &str = "us-east-1";

/// SDK configuration for the emulator: fixed region and dummy credentials, so nothing from
/// a developer's real AWS profile is ever used against it (or leaked to it).
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(Credentials::new("test", "test", None, None, "leadflow-local"))
        .endpoint_url(endpoint)
        .load()
        .await
}

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Template(#[from] template::TemplateError),
    #[error("config {path}: {message}")]
    Config { path: String, message: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// The JSON documents of a directory, in name order. Errors name the file and line.
pub fn read_json_dir<T: serde::de::DeserializeOwned>(dir: &Path) -> Result<Vec<(String, T)>, LocalError> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)?;
            let shown = path.display().to_string();
            let doc = serde_json::from_str(&text).map_err(|e| LocalError::Config {
                path: shown.clone(),
                message: format!("line {}: {e}", e.line()),
            })?;
            Ok((shown, doc))
        })
        .collect()
}

/// One JSON document; errors name the file and line.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, LocalError> {
    let text = std::fs::read_to_string(path)?;
    serde_json::from_str(&text).map_err(|e| LocalError::Config {
        path: path.display().to_string(),
        message: format!("line {}: {e}", e.line()),
    })
}

/// The unsubscribe key of a local run (a deployment passes its own, NoEcho).
pub const LOCAL_UNSUBSCRIBE_SECRET: &str = "local-development-only-unsubscribe-secret";

/// A stack stood up on the emulator.
pub struct Stack {
    pub template: Template,
    pub provisioned: Provisioned,
    pub clients: Clients,
}

impl Stack {
    /// Creates every resource of `template.yaml` (names prefixed) and loads `config/forms`.
    pub async fn stand_up(endpoint: &str, prefix: &str, public_url: &str) -> Result<Self, LocalError> {
        Self::stand_up_with(Clients::new(&sdk_config(endpoint).await), prefix, public_url).await
    }

    /// As [`Stack::stand_up`], with clients the caller built (tests count their requests).
    pub async fn stand_up_with(clients: Clients, prefix: &str, public_url: &str) -> Result<Self, LocalError> {
        let root = workspace_root();
        let mut template = Template::load(&root.join("template.yaml"))?;
        // Parameters a deployment supplies; here, values fit for one machine.
        template
            .overrides
            .insert("UnsubscribeSecret".into(), LOCAL_UNSUBSCRIBE_SECRET.into());
        template.overrides.insert("PublicBaseUrl".into(), public_url.into());
        let provisioned = template
            .provision(prefix, &clients.dynamodb, &clients.sqs, &clients.sesv2)
            .await?;
        let stack = Stack {
            template,
            provisioned,
            clients,
        };
        let bundle = config::load(&root.join("config")).map_err(|errors| {
            LocalError::Other(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
        })?;
        config::apply(&bundle, &stack.clients, &stack.settings("IntakeFunction")?.config_table).await?;
        Ok(stack)
    }

    /// Starts every function's real binary under the Runtime API emulator, with its
    /// environment as the template declares it, and waits until each has asked for work.
    pub async fn start_functions(
        &self,
        endpoint: &str,
    ) -> Result<std::collections::HashMap<String, std::sync::Arc<runtime::Function>>, LocalError> {
        let mut out = std::collections::HashMap::new();
        for f in self.template.functions() {
            let env = self.template.function_env(&f.logical_id, &self.provisioned)?;
            let binary = runtime::bin_dir().join(&f.binary);
            let function = runtime::Function::start(
                &f.logical_id,
                &binary,
                &env,
                endpoint,
                std::time::Duration::from_secs(f.timeout_secs),
            )
            .await?;
            function
                .ready(std::time::Duration::from_secs(30))
                .await
                .map_err(LocalError::Other)?;
            out.insert(f.logical_id.clone(), std::sync::Arc::new(function));
        }
        Ok(out)
    }

    /// One poll of every SQS event source of the template, each handed to its function.
    pub async fn poll_queues(
        &self,
        functions: &std::collections::HashMap<String, std::sync::Arc<runtime::Function>>,
        retry: sqs::Retry,
    ) -> Result<sqs::Polled, LocalError> {
        let mut total = sqs::Polled::default();
        for source in self.template.sqs_sources() {
            let (Some(q), Some(f)) = (
                self.provisioned.queues.get(&source.queue),
                functions.get(&source.function),
            ) else {
                continue;
            };
            let polled = sqs::poll_once(&self.clients.sqs, &q.url, &q.arn, source.batch_size, retry, |event| {
                f.invoke(event)
            })
            .await
            .map_err(LocalError::Other)?;
            total.received += polled.received;
            total.failed += polled.failed;
        }
        Ok(total)
    }

    /// Opens the nurture send window to every hour of every day (a demo is tried at any hour;
    /// deployments keep `config/nurture.json`'s window, weekdays 9–18 Tokyo time).
    pub async fn open_send_window(&self) -> Result<(), LocalError> {
        let docs = self.docs()?;
        let other = |e: leadflow_domain::ports::StoreError| LocalError::Other(e.to_string());
        if let Some(mut nurture) = docs
            .get::<leadflow_domain::process::nurture::NurtureConfig>("nurture")
            .await
            .map_err(other)?
        {
            use chrono::Weekday::*;
            nurture.window.days = vec![Mon, Tue, Wed, Thu, Fri, Sat, Sun];
            (nurture.window.start_hour, nurture.window.end_hour) = (0, 24);
            docs.put("nurture", &nurture).await.map_err(other)?;
        }
        Ok(())
    }

    /// A function's settings, from its environment as the template declares it.
    pub fn settings(&self, function: &str) -> Result<Settings, LocalError> {
        let env = self.template.function_env(function, &self.provisioned)?;
        Settings::from_lookup(|k| env.get(k).cloned()).map_err(|e| LocalError::Other(format!("{function}: {e}")))
    }

    pub fn forms(&self) -> Result<DynamoForms, LocalError> {
        Ok(DynamoForms::new(
            self.clients.dynamodb.clone(),
            self.settings("IntakeFunction")?.config_table,
        ))
    }

    pub fn docs(&self) -> Result<DynamoDocs, LocalError> {
        Ok(DynamoDocs::new(
            self.clients.dynamodb.clone(),
            self.settings("IntakeFunction")?.config_table,
        ))
    }

    pub fn process(&self) -> Result<process::Process, LocalError> {
        let env = self.template.function_env("ProcessFunction", &self.provisioned)?;
        let settings = process::ProcessSettings::from_lookup(|k| env.get(k).cloned()).map_err(LocalError::Other)?;
        Ok(process::Process::new(&self.clients, &settings))
    }

    pub fn sites(&self) -> Result<DynamoSites, LocalError> {
        Ok(DynamoSites::new(
            self.clients.dynamodb.clone(),
            self.settings("IntakeFunction")?.config_table,
        ))
    }

    fn scoring_env(&self) -> Result<(String, String), LocalError> {
        let env = self.template.function_env("ScoringFunction", &self.provisioned)?;
        let get = |k: &str| {
            env.get(k)
                .cloned()
                .ok_or_else(|| LocalError::Other(format!("ScoringFunction: {k} is not set")))
        };
        Ok((get("TABLE_NAME")?, get("CONFIG_TABLE_NAME")?))
    }

    pub fn scoring_config(&self) -> Result<DynamoScoringConfig, LocalError> {
        Ok(DynamoScoringConfig::new(
            self.clients.dynamodb.clone(),
            self.scoring_env()?.1,
        ))
    }

    pub fn scoring(&self) -> Result<scoring::Scoring, LocalError> {
        let (table, config_table) = self.scoring_env()?;
        Ok(scoring::Scoring::new(&self.clients, &table, &config_table))
    }

    /// Runs one poll of every SQS event source of a function in the template.
    pub async fn poll_scoring(&self, scoring: &scoring::Scoring, retry: sqs::Retry) -> Result<sqs::Polled, LocalError> {
        let mut total = sqs::Polled::default();
        for source in self
            .template
            .sqs_sources()
            .into_iter()
            .filter(|s| s.function == "ScoringFunction")
        {
            let q = self
                .provisioned
                .queues
                .get(&source.queue)
                .ok_or_else(|| LocalError::Other(format!("no queue {}", source.queue)))?;
            let polled = sqs::poll_once(&self.clients.sqs, &q.url, &q.arn, source.batch_size, retry, |event| {
                scoring.handle(event)
            })
            .await
            .map_err(LocalError::Other)?;
            total.received += polled.received;
            total.failed += polled.failed;
        }
        Ok(total)
    }

    pub fn intake(&self) -> Result<intake::AwsIntake, LocalError> {
        Ok(intake::AwsIntake::new(&self.clients, &self.settings("IntakeFunction")?))
    }
}
