//! Resources created from `template.yaml`, the one source of truth for tables and queues,
//! and each function's environment resolved against them.

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
    globals_env: Mapping,
    globals_timeout: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct QueueInfo {
    pub name: String,
    pub url: String,
    pub arn: String,
}

/// What was created, by logical id.
#[derive(Debug, Clone, Default)]
pub struct Provisioned {
    pub tables: BTreeMap<String, String>,
    pub queues: BTreeMap<String, QueueInfo>,
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
            globals_env,
            globals_timeout,
        })
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

    /// Resolves a property value: plain scalars, `!Ref` and `!GetAtt X.Arn|QueueName`.
    pub fn resolve(&self, v: &Value, p: &Provisioned) -> Result<String, TemplateError> {
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
            env.insert(str_of(Some(k), "variable name")?.to_owned(), self.resolve(v, p)?);
        }
        Ok(env)
    }

    /// Creates every table and queue of the template, named `<prefix><LogicalId>`.
    pub async fn provision(
        &self,
        prefix: &str,
        ddb: &aws_sdk_dynamodb::Client,
        sqs: &aws_sdk_sqs::Client,
        sesv2: &aws_sdk_sesv2::Client,
        events: &aws_sdk_eventbridge::Client,
    ) -> Result<Provisioned, TemplateError> {
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
        Ok(p)
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
