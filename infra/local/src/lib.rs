//! leadflow on one machine: the AWS-protocol emulator, every resource created from
//! `template.yaml`, configuration loaded from `config/`, and the functions served as
//! API Gateway would serve them. Used by `leadflow-local` and by the integration tests.

pub mod apigw;
pub mod demo;
pub mod emulator;
pub mod server;
pub mod template;

use std::path::Path;

use aws_sdk_dynamodb::config::Credentials;
use leadflow_aws::config::{Clients, SdkConfig};
use leadflow_aws::forms::DynamoForms;
use leadflow_aws::Settings;
use leadflow_domain::form::FormDefinition;

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

/// The forms in a directory of JSON files, checked. Errors name the file and line.
pub fn read_forms(dir: &Path) -> Result<Vec<FormDefinition>, LocalError> {
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
            let cfg = |message: String| LocalError::Config {
                path: path.display().to_string(),
                message,
            };
            let form: FormDefinition =
                serde_json::from_str(&text).map_err(|e| cfg(format!("line {}: {e}", e.line())))?;
            form.check().map_err(|e| cfg(e.to_string()))?;
            Ok(form)
        })
        .collect()
}

/// A stack stood up on the emulator.
pub struct Stack {
    pub template: Template,
    pub provisioned: Provisioned,
    pub clients: Clients,
}

impl Stack {
    /// Creates every resource of `template.yaml` (names prefixed) and loads `config/forms`.
    pub async fn stand_up(endpoint: &str, prefix: &str) -> Result<Self, LocalError> {
        Self::stand_up_with(Clients::new(&sdk_config(endpoint).await), prefix).await
    }

    /// As [`Stack::stand_up`], with clients the caller built (tests count their requests).
    pub async fn stand_up_with(clients: Clients, prefix: &str) -> Result<Self, LocalError> {
        let root = workspace_root();
        let template = Template::load(&root.join("template.yaml"))?;
        let provisioned = template.provision(prefix, &clients.dynamodb, &clients.sqs).await?;
        let stack = Stack {
            template,
            provisioned,
            clients,
        };
        let forms = stack.forms()?;
        for form in read_forms(&root.join("config/forms"))? {
            forms.put(&form).await.map_err(|e| LocalError::Other(e.to_string()))?;
        }
        Ok(stack)
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

    pub fn intake(&self) -> Result<intake::AwsIntake, LocalError> {
        Ok(intake::AwsIntake::new(&self.clients, &self.settings("IntakeFunction")?))
    }
}
