//! leadflow on one machine: the AWS-protocol emulator, every resource created from
//! `template.yaml`, configuration loaded from `config/`, and the functions served as
//! API Gateway would serve them. Used by `leadflow-local` and by the integration tests.

pub mod apigw;
pub mod demo;
pub mod emulator;
pub mod runtime;
pub mod server;
pub mod sqs;
pub mod template;

use leadflow_aws::catalog::{Docs, DynamoForms, DynamoScoringConfig, DynamoSites, CONFIG_CACHE_TTL};
use leadflow_aws::config::{emulator_sdk_config, Clients, Env};
use leadflow_aws::config_dir;
use leadflow_aws::table::Table;

pub use emulator::{workspace_root, Emulator};
pub use template::{Provisioned, Template};

pub use leadflow_aws::config::EMULATOR_REGION as REGION;

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Template(#[from] template::TemplateError),
    #[error(transparent)]
    Config(#[from] config_dir::ConfigError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// A local run's `UnsubscribeSecret`: the key of links from before keyrings, which the stack
/// keeps as the key `legacy` (`LegacyLinkSecret`). A deployment from before keyrings passes its
/// own; a new one none. The keyrings themselves are generated, as in a deployment.
pub const LOCAL_UNSUBSCRIBE_SECRET: &str = "local-development-only-unsubscribe-secret";

/// The emulator's own call that takes a queue's messages at once (not an AWS API).
pub const DRAIN_PATH: &str = "/_leadflow/sqs/drain";

#[derive(serde::Deserialize)]
struct Drained {
    #[serde(rename = "Messages")]
    messages: Vec<String>,
}

/// A stack stood up on the emulator.
pub struct Stack {
    pub template: Template,
    pub provisioned: Provisioned,
    pub clients: Clients,
    /// What the intake function reads from Secrets Manager at cold start, read the same way.
    pub intake_secrets: intake::Secrets,
    /// The process function's signing keyrings, read from Secrets Manager the same way.
    pub link_keys: process::LinkKeys,
    /// For the emulator's own calls (its drain of the events capture queue).
    http: reqwest::Client,
}

impl Stack {
    /// Creates every resource of `template.yaml` (names prefixed) and loads `config/forms`.
    pub async fn stand_up(endpoint: &str, prefix: &str, public_url: &str) -> Result<Self, LocalError> {
        Self::stand_up_with(Clients::new(&emulator_sdk_config(endpoint).await), prefix, public_url).await
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
        let provisioned = template.provision(prefix, &clients).await?;
        let env = |function: &str| -> Result<_, LocalError> {
            let env = template.function_env(function, &provisioned)?;
            Ok(Env(move |k: &str| env.get(k).cloned()))
        };
        let intake_settings = intake::Settings::from_env(&env("IntakeFunction")?)
            .map_err(|e| LocalError::Other(format!("IntakeFunction: {e}")))?;
        let process_settings = process::Settings::from_env(&env("ProcessFunction")?)
            .map_err(|e| LocalError::Other(format!("ProcessFunction: {e}")))?;
        let secret = |e: leadflow_aws::secrets::SecretError| LocalError::Other(e.to_string());
        let intake_secrets = intake::Secrets::load(&clients, &intake_settings)
            .await
            .map_err(secret)?;
        let link_keys = process::LinkKeys::load(&clients, &process_settings)
            .await
            .map_err(secret)?;
        let stack = Stack {
            template,
            provisioned,
            clients,
            intake_secrets,
            link_keys,
            http: reqwest::Client::new(),
        };
        let bundle = config_dir::load(&root.join("config")).map_err(|errors| {
            LocalError::Other(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
        })?;
        config_dir::apply(&bundle, &stack.config_table()?).await?;
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
        let docs =
            Docs::<leadflow_domain::process::nurture::NurtureConfig>::new(self.config_table()?, CONFIG_CACHE_TTL);
        let other = |e: leadflow_domain::ports::StoreError| LocalError::Other(e.to_string());
        if let Some(nurture) = docs.get().await.map_err(other)? {
            use chrono::Weekday::*;
            let mut nurture = (*nurture).clone();
            nurture.window.days = vec![Mon, Tue, Wed, Thu, Fri, Sat, Sun];
            (nurture.window.start_hour, nurture.window.end_hour) = (0, 24);
            docs.put(&nurture).await.map_err(other)?;
        }
        Ok(())
    }

    /// Lets every configured form and site accept the pages served at `origins` (a local run
    /// on another port than the configuration's 3000).
    pub async fn allow_origins(&self, origins: &[String]) -> Result<(), LocalError> {
        let root = workspace_root();
        let bundle = config_dir::load(&root.join("config")).map_err(|errors| {
            LocalError::Other(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
        })?;
        let other = |e: leadflow_domain::ports::StoreError| LocalError::Other(e.to_string());
        let add = |allowed: &mut Vec<String>| {
            for origin in origins {
                if !allowed.contains(origin) {
                    allowed.push(origin.clone());
                }
            }
        };
        let forms = self.forms()?;
        for mut form in bundle.forms {
            add(&mut form.allowed_origins);
            forms.put(&form).await.map_err(other)?;
        }
        let sites = self.sites()?;
        for mut site in bundle.sites {
            add(&mut site.allowed_origins);
            sites.put(&site).await.map_err(other)?;
        }
        Ok(())
    }

    /// A function's environment as the template declares it.
    fn env(&self, function: &str) -> Result<Env<impl Fn(&str) -> Option<String>>, LocalError> {
        let env = self.template.function_env(function, &self.provisioned)?;
        Ok(Env(move |k: &str| env.get(k).cloned()))
    }

    /// The intake function's settings.
    pub fn settings(&self) -> Result<intake::Settings, LocalError> {
        intake::Settings::from_env(&self.env("IntakeFunction")?)
            .map_err(|e| LocalError::Other(format!("IntakeFunction: {e}")))
    }

    /// The records table (its writes publish their domain events to the stack's bus).
    pub fn table(&self) -> Result<Table, LocalError> {
        let s = self.settings()?;
        Ok(self.clients.records(&s.table, s.event_bus.as_deref()))
    }

    /// The domain events published since the last call (each once), from the local capture
    /// queue: what a CRM subscribed to the bus would have received. Read with the emulator's
    /// own drain call (`infra/local/moto_serial.py`): a thousand events a request, where
    /// ReceiveMessage and DeleteMessageBatch take two requests per ten. The emulator takes a
    /// page off the queue as it answers: an answer lost on the way loses that page (this feeds
    /// a page to look at, not a consumer that must see every event).
    pub async fn take_events(&self) -> Result<Vec<leadflow_domain::events::DomainEvent>, LocalError> {
        const PAGE: usize = 1000;
        let Some(capture) = &self.provisioned.event_capture else {
            return Ok(Vec::new());
        };
        let mut drain = reqwest::Url::parse(&capture.url).map_err(|e| LocalError::Other(e.to_string()))?;
        drain.set_path(DRAIN_PATH);
        drain
            .query_pairs_mut()
            .clear()
            .append_pair("url", &capture.url)
            .append_pair("max", &PAGE.to_string());
        let mut out = Vec::new();
        loop {
            let page = async {
                self.http
                    .post(drain.clone())
                    .send()
                    .await?
                    .error_for_status()?
                    .json::<Drained>()
                    .await
            };
            let page = match page.await {
                Ok(page) => page,
                // Taken off the queue by the pages before: kept, not lost with this error.
                Err(e) if !out.is_empty() => {
                    tracing::warn!(error = %e, "draining the events queue stopped");
                    return Ok(out);
                }
                Err(e) => return Err(LocalError::Other(format!("draining the events queue: {e}"))),
            };
            let full = page.messages.len() == PAGE;
            // Each body is the EventBridge event; its detail is ours.
            out.extend(page.messages.iter().filter_map(|b| {
                let v: serde_json::Value = serde_json::from_str(b).ok()?;
                serde_json::from_value(v.get("detail")?.clone()).ok()
            }));
            if !full {
                return Ok(out);
            }
        }
    }

    /// The configuration table.
    pub fn config_table(&self) -> Result<Table, LocalError> {
        Ok(self.clients.table(&self.settings()?.config_table))
    }

    pub fn forms(&self) -> Result<DynamoForms, LocalError> {
        Ok(DynamoForms::new(self.config_table()?))
    }

    pub fn sites(&self) -> Result<DynamoSites, LocalError> {
        Ok(DynamoSites::new(self.config_table()?))
    }

    pub fn scoring_config(&self) -> Result<DynamoScoringConfig, LocalError> {
        Ok(DynamoScoringConfig::new(self.config_table()?, CONFIG_CACHE_TTL))
    }

    pub fn process(&self) -> Result<process::AwsProcess, LocalError> {
        let settings = process::Settings::from_env(&self.env("ProcessFunction")?)
            .map_err(|e| LocalError::Other(format!("ProcessFunction: {e}")))?;
        Ok(process::AwsProcess::new(
            &self.clients,
            &settings,
            self.link_keys.clone(),
        ))
    }

    pub fn scoring(&self) -> Result<scoring::AwsScoring, LocalError> {
        let settings = scoring::Settings::from_env(&self.env("ScoringFunction")?)
            .map_err(|e| LocalError::Other(format!("ScoringFunction: {e}")))?;
        Ok(scoring::AwsScoring::new(&self.clients, &settings))
    }

    /// Runs one poll of every SQS event source of a function in the template.
    pub async fn poll_scoring(
        &self,
        scoring: &scoring::AwsScoring,
        retry: sqs::Retry,
    ) -> Result<sqs::Polled, LocalError> {
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
            let polled = sqs::poll_once(
                &self.clients.sqs,
                &q.url,
                &q.arn,
                source.batch_size,
                retry,
                |event| async { scoring.handle(event).await.map_err(|e| e.to_string()) },
            )
            .await
            .map_err(LocalError::Other)?;
            total.received += polled.received;
            total.failed += polled.failed;
        }
        Ok(total)
    }

    pub fn intake(&self) -> Result<intake::AwsIntake, LocalError> {
        Ok(intake::AwsIntake::new(
            &self.clients,
            &self.settings()?,
            self.intake_secrets.clone(),
        ))
    }
}
