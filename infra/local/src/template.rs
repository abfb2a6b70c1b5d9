//! Resources created from `template.yaml`, the one source of truth for tables, queues and
//! secrets, and each function's environment resolved against them (with the template's
//! conditions: `!If`, `!Equals`, `!Not`, `!And`, `!Or`, `!Condition`; `AWS::NoValue` leaves a
//! variable out). A resource whose `Condition` is false is not created.

use std::collections::BTreeMap;
use std::path::Path;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_yaml::{Mapping, Value};

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("reading template: {0}")]
    Io(#[from] std::io::Error),
    #[error("parsing template: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("template: {0}")]
    Shape(String),
    #[error("creating {0}: {1}")]
    Aws(String, String),
}

fn shape(msg: impl Into<String>) -> TemplateError {
    TemplateError::Shape(msg.into())
}

/// The parsed template.
pub struct Template {
    /// Values for parameters, over their defaults (a local run's secret, its public URL).
    pub overrides: BTreeMap<String, String>,
    resources: Mapping,
    parameters: Mapping,
    conditions: Mapping,
    globals_env: Mapping,
    globals_timeout: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct QueueInfo {
    pub name: String,
    pub url: String,
    pub arn: String,
}

/// A Secrets Manager secret the template declares, as created (its value generated as the
/// template's `GenerateSecretString` asks, or `SecretString` resolved).
#[derive(Debug, Clone)]
pub struct SecretInfo {
    pub name: String,
    pub arn: String,
}

/// What was created, by logical id.
#[derive(Debug, Clone, Default)]
pub struct Provisioned {
    pub tables: BTreeMap<String, String>,
    pub queues: BTreeMap<String, QueueInfo>,
    /// `!Ref` of a secret is its ARN.
    pub secrets: BTreeMap<String, SecretInfo>,
    /// `!Ref` values of other resources (SES identities and configuration sets, event buses).
    pub others: BTreeMap<String, String>,
    /// Local only: every event published to the template's buses, captured in this queue (a
    /// rule on each bus) for the local events page and the tests.
    pub event_capture: Option<QueueInfo>,
}

/// A function as the template declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionDef {
    pub logical_id: String,
    /// The cargo-lambda binary (`Metadata.BuildProperties.Binary`).
    pub binary: String,
    pub timeout_secs: u64,
}

/// A schedule of a function (`ScheduleV2`), as the template declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub function: String,
    pub name: String,
    /// A `rate(…)` schedule's period; `None` for a `cron(…)` one, which runs locally on demand.
    pub every: Option<std::time::Duration>,
    /// The expression as the template writes it.
    pub expression: String,
    pub input: serde_json::Value,
}

/// An SQS event source mapping of a function, as the template declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsSource {
    pub function: String,
    /// The queue's logical id.
    pub queue: String,
    pub batch_size: i32,
    pub partial_failures: bool,
}

/// An HTTP API route of a function, as the template declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub function: String,
    pub method: String,
    pub path: String,
    /// The route is IAM-authorised (`Auth: Authorizer: AWS_IAM`).
    pub iam: bool,
}

fn get<'a>(m: &'a Mapping, k: &str) -> Option<&'a Value> {
    m.get(Value::String(k.to_owned()))
}

fn str_of<'a>(v: Option<&'a Value>, what: &str) -> Result<&'a str, TemplateError> {
    v.and_then(Value::as_str)
        .ok_or_else(|| shape(format!("{what} must be a string")))
}

impl Template {
    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        Self::parse(&std::fs::read_to_string(path)?)
    }

    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let doc: Value = serde_yaml::from_str(text)?;
        let m = doc.as_mapping().ok_or_else(|| shape("not a mapping"))?;
        let resources = get(m, "Resources")
            .and_then(Value::as_mapping)
            .cloned()
            .ok_or_else(|| shape("no Resources"))?;
        let parameters = get(m, "Parameters")
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_default();
        let conditions = get(m, "Conditions")
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_default();
        let globals_env = get(m, "Globals")
            .and_then(|g| g.get("Function"))
            .and_then(|f| f.get("Environment"))
            .and_then(|e| e.get("Variables"))
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_default();
        let globals_timeout = get(m, "Globals")
            .and_then(|g| g.get("Function"))
            .and_then(|f| f.get("Timeout"))
            .and_then(Value::as_u64);
        Ok(Template {
            overrides: BTreeMap::new(),
            resources,
            parameters,
            conditions,
            globals_env,
            globals_timeout,
        })
    }

    /// Whether a named condition of the template holds, with the overrides and defaults.
    pub fn condition(&self, name: &str) -> Result<bool, TemplateError> {
        let c = get(&self.conditions, name).ok_or_else(|| shape(format!("no condition {name}")))?;
        self.holds(c)
    }

    fn holds(&self, v: &Value) -> Result<bool, TemplateError> {
        let Value::Tagged(t) = v else {
            return Err(shape(format!("condition {v:?}")));
        };
        let args = || {
            t.value
                .as_sequence()
                .ok_or_else(|| shape(format!("!{} takes a list", t.tag)))
        };
        match t.tag.to_string().trim_start_matches('!') {
            "Equals" => {
                let a = args()?;
                let [x, y] = a.as_slice() else {
                    return Err(shape("!Equals takes two values"));
                };
                let p = Provisioned::default();
                Ok(self.resolve_opt(x, &p)? == self.resolve_opt(y, &p)?)
            }
            "Not" => Ok(!self.holds(args()?.first().ok_or_else(|| shape("!Not takes one condition"))?)?),
            "And" => args()?.iter().try_fold(true, |acc, c| Ok(acc && self.holds(c)?)),
            "Or" => args()?.iter().try_fold(false, |acc, c| Ok(acc || self.holds(c)?)),
            "Condition" => self.condition(str_of(Some(&t.value), "!Condition")?),
            other => Err(shape(format!("condition !{other}"))),
        }
    }

    /// Whether a resource exists under the template's conditions (no `Condition`: always).
    pub fn exists(&self, logical_id: &str) -> Result<bool, TemplateError> {
        match get(&self.resources, logical_id).and_then(|r| r.get("Condition")) {
            None => Ok(true),
            Some(c) => self.condition(str_of(Some(c), "Condition")?),
        }
    }

    /// Logical ids and properties of the resources of one type.
    pub fn of_type(&self, ty: &str) -> Vec<(String, Mapping)> {
        self.resources
            .iter()
            .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some(ty))
            .filter_map(|(k, r)| {
                Some((
                    k.as_str()?.to_owned(),
                    r.get("Properties")
                        .and_then(Value::as_mapping)
                        .cloned()
                        .unwrap_or_default(),
                ))
            })
            .collect()
    }

    /// The HTTP API routes of every function.
    pub fn http_routes(&self) -> Vec<Route> {
        let mut out = Vec::new();
        for (function, props) in self.of_type("AWS::Serverless::Function") {
            let Some(events) = get(&props, "Events").and_then(Value::as_mapping) else {
                continue;
            };
            for (_, ev) in events {
                if ev.get("Type").and_then(Value::as_str) != Some("HttpApi") {
                    continue;
                }
                let p = ev.get("Properties");
                let method = p
                    .and_then(|p| p.get("Method"))
                    .and_then(Value::as_str)
                    .unwrap_or("ANY")
                    .to_uppercase();
                let path = p
                    .and_then(|p| p.get("Path"))
                    .and_then(Value::as_str)
                    .unwrap_or("/$default")
                    .to_owned();
                let iam = p
                    .and_then(|p| p.get("Auth"))
                    .and_then(|a| a.get("Authorizer"))
                    .and_then(Value::as_str)
                    == Some("AWS_IAM");
                out.push(Route {
                    function: function.clone(),
                    method,
                    path,
                    iam,
                });
            }
        }
        out
    }

    /// Every function, with its binary and timeout.
    pub fn functions(&self) -> Vec<FunctionDef> {
        let global_timeout = self.globals_timeout.unwrap_or(3);
        let mut out = Vec::new();
        for (id, resource) in &self.resources {
            let Some(id) = id.as_str() else { continue };
            if resource.get("Type").and_then(Value::as_str) != Some("AWS::Serverless::Function") {
                continue;
            }
            let binary = resource
                .get("Metadata")
                .and_then(|m| m.get("BuildProperties"))
                .and_then(|b| b.get("Binary"))
                .and_then(Value::as_str);
            let timeout = resource
                .get("Properties")
                .and_then(|p| p.get("Timeout"))
                .and_then(Value::as_u64)
                .unwrap_or(global_timeout);
            if let Some(binary) = binary {
                out.push(FunctionDef {
                    logical_id: id.to_owned(),
                    binary: binary.to_owned(),
                    timeout_secs: timeout,
                });
            }
        }
        out
    }

    /// Every `ScheduleV2` event: `rate(N minute|minutes|hour|hours)` or `cron(…)`, and its input.
    pub fn schedules(&self) -> Vec<Schedule> {
        let mut out = Vec::new();
        for (function, props) in self.of_type("AWS::Serverless::Function") {
            let Some(events) = get(&props, "Events").and_then(Value::as_mapping) else {
                continue;
            };
            for (name, ev) in events {
                if ev.get("Type").and_then(Value::as_str) != Some("ScheduleV2") {
                    continue;
                }
                let p = ev.get("Properties");
                let expr = p
                    .and_then(|p| p.get("ScheduleExpression"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let every = expr
                    .strip_prefix("rate(")
                    .and_then(|r| r.strip_suffix(')'))
                    .and_then(|r| {
                        let (n, unit) = r.split_once(' ')?;
                        let n: u64 = n.parse().ok()?;
                        Some(std::time::Duration::from_secs(
                            n * if unit.starts_with("hour") {
                                3600
                            } else if unit.starts_with("day") {
                                86400
                            } else {
                                60
                            },
                        ))
                    });
                let input = p
                    .and_then(|p| p.get("Input"))
                    .and_then(Value::as_str)
                    .and_then(|i| serde_json::from_str(i).ok())
                    .unwrap_or(serde_json::json!({}));
                out.push(Schedule {
                    function: function.clone(),
                    name: name.as_str().unwrap_or("").to_owned(),
                    every,
                    expression: expr.to_owned(),
                    input,
                });
            }
        }
        out
    }

    /// The SQS event sources of every function.
    pub fn sqs_sources(&self) -> Vec<SqsSource> {
        let mut out = Vec::new();
        for (function, props) in self.of_type("AWS::Serverless::Function") {
            let Some(events) = get(&props, "Events").and_then(Value::as_mapping) else {
                continue;
            };
            for (_, ev) in events {
                if ev.get("Type").and_then(Value::as_str) != Some("SQS") {
                    continue;
                }
                let Some(p) = ev.get("Properties") else { continue };
                let queue = match p.get("Queue") {
                    Some(Value::Tagged(t)) if t.tag == "GetAtt" => {
                        t.value.as_str().and_then(|v| v.strip_suffix(".Arn")).map(str::to_owned)
                    }
                    _ => None,
                };
                let Some(queue) = queue else { continue };
                let batch_size = p.get("BatchSize").and_then(Value::as_i64).unwrap_or(10) as i32;
                let partial_failures = p
                    .get("FunctionResponseTypes")
                    .and_then(Value::as_sequence)
                    .is_some_and(|s| s.iter().any(|v| v.as_str() == Some("ReportBatchItemFailures")));
                out.push(SqsSource {
                    function: function.clone(),
                    queue,
                    batch_size,
                    partial_failures,
                });
            }
        }
        out
    }

    /// Resolves a property value: plain scalars, `!Ref`, `!GetAtt X.Arn|QueueName`, `!If` and
    /// `!Sub` (its string form). An error for `AWS::NoValue`: see [`Template::resolve_opt`].
    pub fn resolve(&self, v: &Value, p: &Provisioned) -> Result<String, TemplateError> {
        self.resolve_opt(v, p)?
            .ok_or_else(|| shape(format!("{v:?} resolves to no value")))
    }

    /// As [`Template::resolve`]; `None` for `!Ref AWS::NoValue` (a property left out).
    pub fn resolve_opt(&self, v: &Value, p: &Provisioned) -> Result<Option<String>, TemplateError> {
        match v {
            Value::Tagged(t) if t.tag == "Ref" && t.value.as_str() == Some("AWS::NoValue") => Ok(None),
            Value::Tagged(t) if t.tag == "If" => {
                let args = t.value.as_sequence().map(Vec::as_slice).unwrap_or_default();
                let [cond, yes, no] = args else {
                    return Err(shape("!If takes a condition and two values"));
                };
                let holds = self.condition(str_of(Some(cond), "!If condition")?)?;
                self.resolve_opt(if holds { yes } else { no }, p)
            }
            Value::Tagged(t) if t.tag == "Sub" => {
                let text = str_of(Some(&t.value), "!Sub (string form)")?;
                let mut out = String::new();
                let mut rest = text;
                while let Some(i) = rest.find("${") {
                    out.push_str(&rest[..i]);
                    let end = rest[i..].find('}').ok_or_else(|| shape(format!("!Sub {text}")))?;
                    let name = &rest[i + 2..i + end];
                    let value = match name.split_once('.') {
                        Some(_) => Value::Tagged(Box::new(serde_yaml::value::TaggedValue {
                            tag: serde_yaml::value::Tag::new("GetAtt"),
                            value: Value::String(name.to_owned()),
                        })),
                        None => Value::Tagged(Box::new(serde_yaml::value::TaggedValue {
                            tag: serde_yaml::value::Tag::new("Ref"),
                            value: Value::String(name.to_owned()),
                        })),
                    };
                    out.push_str(&self.resolve(&value, p)?);
                    rest = &rest[i + end + 1..];
                }
                out.push_str(rest);
                Ok(Some(out))
            }
            other => self.resolve_plain(other, p).map(Some),
        }
    }

    fn resolve_plain(&self, v: &Value, p: &Provisioned) -> Result<String, TemplateError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Tagged(t) if t.tag == "Ref" => {
                let name = str_of(Some(&t.value), "!Ref")?;
                if let Some(table) = p.tables.get(name) {
                    return Ok(table.clone());
                }
                if let Some(q) = p.queues.get(name) {
                    return Ok(q.url.clone());
                }
                if let Some(secret) = p.secrets.get(name) {
                    return Ok(secret.arn.clone());
                }
                if let Some(v) = p.others.get(name).or_else(|| self.overrides.get(name)) {
                    return Ok(v.clone());
                }
                if let Some(param) = get(&self.parameters, name) {
                    return param
                        .get("Default")
                        .map(|d| self.resolve(d, p))
                        .unwrap_or_else(|| Err(shape(format!("parameter {name} has no default"))));
                }
                Err(shape(format!("!Ref {name}: not a table, queue or parameter")))
            }
            Value::Tagged(t) if t.tag == "GetAtt" => {
                let spec = str_of(Some(&t.value), "!GetAtt")?;
                let (name, attr) = spec.split_once('.').ok_or_else(|| shape(format!("!GetAtt {spec}")))?;
                if let Some(q) = p.queues.get(name) {
                    return match attr {
                        "Arn" => Ok(q.arn.clone()),
                        "QueueName" => Ok(q.name.clone()),
                        "QueueUrl" => Ok(q.url.clone()),
                        _ => Err(shape(format!("!GetAtt {spec}"))),
                    };
                }
                if let Some(t) = p.tables.get(name) {
                    return Ok(format!("arn:aws:dynamodb:us-east-1:123456789012:table/{t}"));
                }
                Err(shape(format!("!GetAtt {spec}: unknown resource")))
            }
            other => Err(shape(format!("cannot resolve {other:?}"))),
        }
    }

    /// A function's environment: the Globals' variables overlaid with its own, resolved.
    pub fn function_env(&self, function: &str, p: &Provisioned) -> Result<BTreeMap<String, String>, TemplateError> {
        let props = self
            .of_type("AWS::Serverless::Function")
            .into_iter()
            .find(|(id, _)| id == function)
            .map(|(_, props)| props)
            .ok_or_else(|| shape(format!("no function {function}")))?;
        let own = get(&props, "Environment")
            .and_then(|e| e.get("Variables"))
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_default();
        let mut env = BTreeMap::new();
        for (k, v) in self.globals_env.iter().chain(own.iter()) {
            let name = str_of(Some(k), "variable name")?.to_owned();
            match self.resolve_opt(v, p)? {
                Some(value) => {
                    env.insert(name, value);
                }
                // `!If [cond, …, !Ref AWS::NoValue]` whose condition is false: not set.
                None => {
                    env.remove(&name);
                }
            }
        }
        Ok(env)
    }

    /// Every variable name a function's environment declares, whatever the conditions.
    pub fn declared_env(&self, function: &str) -> Vec<String> {
        let own = self
            .of_type("AWS::Serverless::Function")
            .into_iter()
            .find(|(id, _)| id == function)
            .and_then(|(_, props)| {
                get(&props, "Environment")
                    .and_then(|e| e.get("Variables"))
                    .and_then(Value::as_mapping)
                    .cloned()
            })
            .unwrap_or_default();
        self.globals_env
            .keys()
            .chain(own.keys())
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect()
    }

    /// Creates every table, queue and secret of the template, named `<prefix><LogicalId>`.
    pub async fn provision(
        &self,
        prefix: &str,
        clients: &leadflow_aws::config::Clients,
    ) -> Result<Provisioned, TemplateError> {
        let (ddb, sqs, sesv2, events) = (&clients.dynamodb, &clients.sqs, &clients.sesv2, &clients.eventbridge);
        let mut p = Provisioned::default();
        let buses = self.of_type("AWS::Events::EventBus");
        if !buses.is_empty() {
            let name = format!("{prefix}EventsCapture");
            let aws = |e: String| TemplateError::Aws(name.clone(), e);
            let out = sqs
                .create_queue()
                .queue_name(&name)
                .send()
                .await
                .map_err(|e| aws(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?;
            let url = out.queue_url.ok_or_else(|| aws("no queue URL".into()))?;
            let arn = format!("arn:aws:sqs:us-east-1:123456789012:{name}");
            p.event_capture = Some(QueueInfo { name, url, arn });
        }
        for (id, _) in buses {
            let name = format!("{prefix}{id}");
            let aws = |e: String| TemplateError::Aws(name.clone(), e);
            // Idempotent: a restarted local run finds its bus.
            let _ = events.create_event_bus().name(&name).send().await;
            if let Some(capture) = &p.event_capture {
                let rule = format!("{prefix}{id}-capture");
                events
                    .put_rule()
                    .name(&rule)
                    .event_bus_name(&name)
                    .event_pattern(r#"{"source":["leadflow"]}"#)
                    .send()
                    .await
                    .map_err(|e| aws(aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string()))?;
                let target = aws_sdk_eventbridge::types::Target::builder()
                    .id("capture")
                    .arn(&capture.arn)
                    .build()
                    .map_err(|e| aws(e.to_string()))?;
                events
                    .put_targets()
                    .rule(&rule)
                    .event_bus_name(&name)
                    .targets(target)
                    .send()
                    .await
                    .map_err(|e| aws(aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string()))?;
            }
            p.others.insert(id, name);
        }
        for (id, _) in self.of_type("AWS::SES::ConfigurationSet") {
            p.others.insert(id.clone(), format!("{prefix}{id}"));
        }
        for (id, props) in self.of_type("AWS::SES::EmailIdentity") {
            let identity = self.resolve(
                get(&props, "EmailIdentity").ok_or_else(|| shape("EmailIdentity needs EmailIdentity"))?,
                &p,
            )?;
            // Idempotent: one emulator may hold several stacks sending from the same identity.
            let _ = sesv2.create_email_identity().email_identity(&identity).send().await;
            p.others.insert(id, identity);
        }
        for (id, props) in self.of_type("AWS::DynamoDB::Table") {
            let name = format!("{prefix}{id}");
            create_table(&name, &props, ddb).await?;
            p.tables.insert(id, name);
        }
        // Dead-letter queues first: the queues that redrive into them need their ARNs.
        let mut queues = self.of_type("AWS::SQS::Queue");
        queues.sort_by_key(|(_, props)| get(props, "RedrivePolicy").is_some());
        for (id, props) in queues {
            let name = format!("{prefix}{id}");
            let mut req = sqs.create_queue().queue_name(&name);
            for (attr, key) in [
                (QueueAttributeName::VisibilityTimeout, "VisibilityTimeout"),
                (QueueAttributeName::MessageRetentionPeriod, "MessageRetentionPeriod"),
                (QueueAttributeName::DelaySeconds, "DelaySeconds"),
            ] {
                if let Some(v) = get(&props, key) {
                    req = req.attributes(attr, self.resolve(v, &p)?);
                }
            }
            if let Some(rp) = get(&props, "RedrivePolicy") {
                let target = self.resolve(
                    rp.get("deadLetterTargetArn")
                        .ok_or_else(|| shape("RedrivePolicy needs deadLetterTargetArn"))?,
                    &p,
                )?;
                let max = rp
                    .get("maxReceiveCount")
                    .map(|v| self.resolve(v, &p))
                    .transpose()?
                    .unwrap_or_else(|| "5".into());
                let policy = serde_json::json!({"deadLetterTargetArn": target, "maxReceiveCount": max}).to_string();
                req = req.attributes(QueueAttributeName::RedrivePolicy, policy);
            }
            let out = req.send().await.map_err(|e| {
                TemplateError::Aws(name.clone(), aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
            })?;
            let url = out
                .queue_url
                .ok_or_else(|| TemplateError::Aws(name.clone(), "no queue URL".into()))?;
            let arn = format!("arn:aws:sqs:us-east-1:123456789012:{name}");
            p.queues.insert(id, QueueInfo { name, url, arn });
        }
        for (id, props) in self.of_type("AWS::SecretsManager::Secret") {
            if !self.exists(&id)? {
                continue;
            }
            let name = format!("{prefix}{id}");
            let value = self.secret_value(&props, &p, &clients.secretsmanager, &name).await?;
            let arn = create_secret(&name, &value, &clients.secretsmanager).await?;
            p.secrets.insert(id, SecretInfo { name, arn });
        }
        Ok(p)
    }

    /// A secret's value as CloudFormation would make it: `SecretString` resolved, or
    /// `GenerateSecretString`'s random text (from the emulator's GetRandomPassword), alone or
    /// put under `GenerateStringKey` in the JSON of `SecretStringTemplate`.
    async fn secret_value(
        &self,
        props: &Mapping,
        p: &Provisioned,
        sm: &aws_sdk_secretsmanager::Client,
        name: &str,
    ) -> Result<String, TemplateError> {
        if let Some(v) = get(props, "SecretString") {
            return self.resolve(v, p);
        }
        let g = get(props, "GenerateSecretString")
            .and_then(Value::as_mapping)
            .ok_or_else(|| shape(format!("{name}: neither SecretString nor GenerateSecretString")))?;
        let flag = |k: &str| get(g, k).and_then(Value::as_bool);
        let random = sm
            .get_random_password()
            .set_password_length(get(g, "PasswordLength").and_then(Value::as_i64))
            .set_exclude_punctuation(flag("ExcludePunctuation"))
            .set_exclude_numbers(flag("ExcludeNumbers"))
            .set_exclude_lowercase(flag("ExcludeLowercase"))
            .set_exclude_uppercase(flag("ExcludeUppercase"))
            .set_include_space(flag("IncludeSpace"))
            .set_exclude_characters(get(g, "ExcludeCharacters").and_then(Value::as_str).map(str::to_owned))
            .send()
            .await
            .map_err(|e| {
                TemplateError::Aws(
                    name.to_owned(),
                    aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
                )
            })?
            .random_password
            .ok_or_else(|| TemplateError::Aws(name.to_owned(), "no random password".into()))?;
        match (get(g, "SecretStringTemplate"), get(g, "GenerateStringKey")) {
            (Some(template), Some(key)) => {
                let template = self.resolve(template, p)?;
                let mut doc: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&template).map_err(|e| shape(format!("{name}: SecretStringTemplate: {e}")))?;
                doc.insert(self.resolve(key, p)?, serde_json::Value::String(random));
                Ok(serde_json::Value::Object(doc).to_string())
            }
            (None, None) => Ok(random),
            _ => Err(shape(format!(
                "{name}: SecretStringTemplate and GenerateStringKey go together"
            ))),
        }
    }
}

/// Creates a secret (a restarted local run finds its own); its ARN.
async fn create_secret(name: &str, value: &str, sm: &aws_sdk_secretsmanager::Client) -> Result<String, TemplateError> {
    let err = |e: String| TemplateError::Aws(name.to_owned(), e);
    match sm.create_secret().name(name).secret_string(value).send().await {
        Ok(out) => out.arn.ok_or_else(|| err("no ARN".into())),
        Err(e) => {
            use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
            if e.code() != Some("ResourceExistsException") {
                return Err(err(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string()));
            }
            let out = sm
                .describe_secret()
                .secret_id(name)
                .send()
                .await
                .map_err(|e| err(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string()))?;
            out.arn.ok_or_else(|| err("no ARN".into()))
        }
    }
}

async fn create_table(name: &str, props: &Mapping, ddb: &aws_sdk_dynamodb::Client) -> Result<(), TemplateError> {
    let err = |e: String| TemplateError::Aws(name.to_owned(), e);
    let keys = |v: Option<&Value>| -> Result<Vec<KeySchemaElement>, TemplateError> {
        v.and_then(Value::as_sequence)
            .ok_or_else(|| shape("KeySchema must be a list"))?
            .iter()
            .map(|k| {
                KeySchemaElement::builder()
                    .attribute_name(str_of(k.get("AttributeName"), "AttributeName")?)
                    .key_type(KeyType::from(str_of(k.get("KeyType"), "KeyType")?))
                    .build()
                    .map_err(|e| shape(e.to_string()))
            })
            .collect()
    };
    let mut req = ddb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(keys(get(props, "KeySchema"))?));
    for a in get(props, "AttributeDefinitions")
        .and_then(Value::as_sequence)
        .ok_or_else(|| shape("AttributeDefinitions must be a list"))?
    {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(str_of(a.get("AttributeName"), "AttributeName")?)
                .attribute_type(ScalarAttributeType::from(str_of(
                    a.get("AttributeType"),
                    "AttributeType",
                )?))
                .build()
                .map_err(|e| shape(e.to_string()))?,
        );
    }
    for g in get(props, "GlobalSecondaryIndexes")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default()
    {
        let projection = g
            .get("Projection")
            .and_then(|p| p.get("ProjectionType"))
            .and_then(Value::as_str)
            .unwrap_or("ALL");
        let non_key: Option<Vec<String>> = g
            .get("Projection")
            .and_then(|p| p.get("NonKeyAttributes"))
            .and_then(Value::as_sequence)
            .map(|attrs| attrs.iter().filter_map(Value::as_str).map(str::to_owned).collect());
        req = req.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(str_of(g.get("IndexName"), "IndexName")?)
                .set_key_schema(Some(keys(g.get("KeySchema"))?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(projection))
                        .set_non_key_attributes(non_key)
                        .build(),
                )
                .build()
                .map_err(|e| shape(e.to_string()))?,
        );
    }
    req.send()
        .await
        .map_err(|e| err(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()))?;
    if let Some(ttl) = get(props, "TimeToLiveSpecification")
        .and_then(|t| t.get("AttributeName"))
        .and_then(Value::as_str)
    {
        ddb.update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(ttl)
                    .enabled(true)
                    .build()
                    .map_err(|e| shape(e.to_string()))?,
            )
            .send()
            .await
            .map_err(|e| err(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Parameters:
  Front: { Type: String, Default: "false" }
  Old: { Type: String, Default: "" }
Conditions:
  UseFront: !Equals [!Ref Front, "true"]
  HasOld: !Not [!Equals [!Ref Old, ""]]
  Both: !And [!Condition UseFront, !Condition HasOld]
Resources:
  Keys:
    Type: AWS::SecretsManager::Secret
  OldKey:
    Type: AWS::SecretsManager::Secret
    Condition: HasOld
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          KEYS_ARN: !Ref Keys
          OLD_ARN: !If [HasOld, !Ref OldKey, !Ref AWS::NoValue]
          HEADER: !If [UseFront, CloudFront-Viewer-Address, !Ref AWS::NoValue]
          BOTH: !If [Both, "yes", "no"]
          URL: !Sub "https://${Front}/x"
"#;

    #[test]
    fn conditions_decide_variables_and_resources() {
        let mut t = Template::parse(TEMPLATE).unwrap();
        let mut p = Provisioned::default();
        for id in ["Keys", "OldKey"] {
            p.secrets.insert(
                id.into(),
                SecretInfo {
                    name: id.into(),
                    arn: format!("arn:{id}"),
                },
            );
        }
        let env = t.function_env("Fn", &p).unwrap();
        assert_eq!(env["KEYS_ARN"], "arn:Keys", "a secret's !Ref is its ARN");
        assert!(!env.contains_key("OLD_ARN") && !env.contains_key("HEADER"), "{env:?}");
        assert_eq!((env["BOTH"].as_str(), env["URL"].as_str()), ("no", "https://false/x"));
        assert!(!t.exists("OldKey").unwrap() && t.exists("Keys").unwrap());
        assert_eq!(t.declared_env("Fn").len(), 5);

        t.overrides.insert("Front".into(), "true".into());
        t.overrides.insert("Old".into(), "old-secret".into());
        let env = t.function_env("Fn", &p).unwrap();
        assert_eq!(env["OLD_ARN"], "arn:OldKey");
        assert_eq!(env["HEADER"], "CloudFront-Viewer-Address");
        assert_eq!(env["BOTH"], "yes");
        assert!(t.exists("OldKey").unwrap());
    }
}
