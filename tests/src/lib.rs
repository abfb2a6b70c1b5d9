//! The integration-test harness: one moto server per test binary (started here, stopped when
//! the binary exits), a fresh set of resources from `template.yaml` per test (isolated by name
//! prefix), and the real intake handler driven with API Gateway payload-2.0 events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::types::AttributeValue;
use leadflow_aws::config::Clients;
use leadflow_domain::form::FormDefinition;
use leadflow_local::apigw::{http_api_event, match_route, HttpRequest};
use leadflow_local::template::Route;
use leadflow_local::{Emulator, Stack};
use serde_json::Value;

pub type Item = HashMap<String, AttributeValue>;

static EMULATOR: OnceLock<Emulator> = OnceLock::new();

/// The emulator's endpoint, starting it on first use.
pub fn endpoint() -> &'static str {
    &EMULATOR
        .get_or_init(|| Emulator::start_with_tiny_cache().expect("start moto (run scripts/setup.sh first)"))
        .endpoint
}

/// Records every HTTP request the SDK clients send, by operation (`x-amz-target`), and the
/// requests' bodies (to see which tables, indexes and queues they touch). It also injects
/// faults: [`RequestLog::throttle`] answers an SES v2 operation with SES's own throttling
/// error (429 `TooManyRequestsException`) instead of sending it to the emulator.
#[derive(Clone, Debug, Default)]
pub struct RequestLog(
    Arc<Mutex<Vec<String>>>,
    Arc<Mutex<Vec<(String, Value)>>>,
    Arc<Mutex<HashMap<String, u32>>>,
);

/// An attempt the interceptor answers with a throttling error.
#[derive(Debug, Clone)]
struct Throttled(bool);

impl aws_smithy_types::config_bag::Storable for Throttled {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

impl RequestLog {
    /// Answers the next `attempts` requests of `operation` (as [`RequestLog::take`] names it,
    /// e.g. `POST /v2/email/outbound-emails` for an SES v2 send) with a throttling error
    /// (`TooManyRequestsException`, HTTP 429). The SDK's own retries are attempts too.
    pub fn throttle(&self, operation: &str, attempts: u32) {
        self.2.lock().unwrap().insert(operation.to_owned(), attempts);
    }

    /// Requests answered with a throttling error so far, and still to come for `operation`.
    pub fn throttles_left(&self, operation: &str) -> u32 {
        self.2.lock().unwrap().get(operation).copied().unwrap_or(0)
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    /// Every request so far with its JSON body (not cleared by `take`).
    pub fn bodies(&self) -> Vec<(String, Value)> {
        self.1.lock().unwrap().clone()
    }
}

impl Intercept for RequestLog {
    fn name(&self) -> &'static str {
        "RequestLog"
    }

    fn modify_before_transmit(
        &self,
        ctx: &mut aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = ctx.request();
        // JSON protocols name the operation in a header; REST ones (SES v2) in the path.
        let op = match req.headers().get("x-amz-target") {
            Some(target) => target.rsplit('.').next().unwrap_or(target).to_owned(),
            None => {
                let uri = req.uri();
                let path = uri
                    .find("://")
                    .and_then(|i| uri[i + 3..].find('/').map(|j| &uri[i + 3 + j..]))
                    .unwrap_or(uri);
                format!("{} {}", req.method(), path.split('?').next().unwrap_or(""))
            }
        };
        let body = req
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null);
        let throttled = match self.2.lock().unwrap().get_mut(&op) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        };
        cfg.interceptor_state().store_put(Throttled(throttled));
        if throttled {
            // Never reaches the service: sent to a path the emulator has no route for, and
            // answered as throttled below.
            let uri = ctx.request().uri().to_owned();
            let rewritten = match uri.find("://").and_then(|i| uri[i + 3..].find('/').map(|j| i + 3 + j)) {
                Some(at) => format!("{}/__injected_throttle__", &uri[..at]),
                None => format!("{uri}/__injected_throttle__"),
            };
            ctx.request_mut().set_uri(rewritten)?;
        }
        self.1.lock().unwrap().push((op.clone(), body));
        self.0.lock().unwrap().push(op);
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        ctx: &mut aws_sdk_dynamodb::config::interceptors::BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if cfg.load::<Throttled>().is_some_and(|t| t.0) {
            let body = r#"{"message":"Maximum sending rate exceeded."}"#;
            let mut response = aws_smithy_runtime_api::http::Response::new(
                aws_smithy_runtime_api::http::StatusCode::try_from(429).expect("a status"),
                aws_smithy_types::body::SdkBody::from(body),
            );
            let headers = response.headers_mut();
            headers.insert("x-amzn-errortype", "TooManyRequestsException");
            headers.insert("content-type", "application/json");
            *ctx.response_mut() = response;
        }
        Ok(())
    }
}

/// A form as shipped in `config/forms/`, to configure a variant of it.
pub fn shipped_form(form: &str) -> Value {
    let path = leadflow_local::workspace_root().join(format!("config/forms/{form}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub struct Reply {
    pub status: u16,
    pub headers: lambda_http::http::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub struct TestEnv {
    pub stack: Stack,
    pub intake: intake::AwsIntake,
    pub scoring: scoring::AwsScoring,
    pub process: process::AwsProcess,
    pub routes: Vec<Route>,
    pub requests: RequestLog,
}

/// SDK clients that record their requests.
pub async fn logged_clients(requests: &RequestLog) -> Clients {
    let sdk = leadflow_aws::config::emulator_sdk_config(endpoint()).await;
    Clients {
        dynamodb: aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .interceptor(requests.clone())
                .build(),
        ),
        sqs: aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&sdk)
                .interceptor(requests.clone())
                .build(),
        ),
        sesv2: aws_sdk_sesv2::Client::from_conf(
            aws_sdk_sesv2::config::Builder::from(&sdk)
                .interceptor(requests.clone())
                .build(),
        ),
        eventbridge: aws_sdk_eventbridge::Client::from_conf(
            aws_sdk_eventbridge::config::Builder::from(&sdk)
                .interceptor(requests.clone())
                .build(),
        ),
        secretsmanager: aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(&sdk)
                .interceptor(requests.clone())
                .build(),
        ),
    }
}

impl TestEnv {
    pub async fn new() -> TestEnv {
        let requests = RequestLog::default();
        let clients = logged_clients(&requests).await;
        let prefix = format!("t{}-", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let stack = Stack::stand_up_with(clients, &prefix, "https://leadflow.test")
            .await
            .expect("stand up the stack from template.yaml");
        let intake = stack.intake().unwrap();
        let scoring = stack.scoring().unwrap();
        let process = stack.process().unwrap();
        let routes = stack.template.http_routes();
        requests.take();
        TestEnv {
            stack,
            intake,
            scoring,
            process,
            routes,
            requests,
        }
    }

    /// The ops tool's view of this stack.
    pub fn cli_target(&self) -> leadflow_cli::Target {
        leadflow_cli::Target {
            clients: self.stack.clients.clone(),
            table: self.table(),
            config_table: self.stack.settings().unwrap().config_table,
            scoring_queue_url: self.queue("ScoringQueue").url,
            scoring_dlq_url: self.queue("ScoringDeadLetterQueue").url,
            engagement_dlq_url: self.queue("EngagementDeadLetterQueue").url,
            schedule_dlq_url: self.queue("ScheduleDeadLetterQueue").url,
            event_bus: self.stack.settings().unwrap().event_bus,
        }
    }

    pub async fn put_form(&self, form: serde_json::Value) {
        let form: FormDefinition = serde_json::from_value(form).unwrap();
        self.stack.forms().unwrap().put(&form).await.unwrap();
        self.requests.take();
    }

    /// The route a request matches and the API Gateway (payload 2.0) event it makes, as the
    /// gateway would pass it to the function (with the IAM identity on IAM routes).
    pub fn api_event(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> (Route, Value) {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let (route, params) = match match_route(&self.routes, method, path) {
            Some(m) => m,
            None => panic!("no route for {method} {path}"),
        };
        let req = HttpRequest {
            method,
            path,
            query,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body,
            source_ip: "203.0.113.7",
        };
        (route.clone(), http_api_event(route, &params, &req))
    }

    /// The intake function's answer to an API Gateway event.
    pub async fn intake_answers(&self, event: &Value) -> lambda_http::Response<lambda_http::Body> {
        let request = lambda_http::request::from_str(&event.to_string()).unwrap();
        match self.intake.handle(request).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }

    /// Sends a request through API Gateway's event shape to the real handler.
    pub async fn send(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let (route, event) = self.api_event(method, target, headers, body);
        if route.function == "ProcessFunction" {
            let out = self.process.handle(event).await.unwrap();
            let body = out["body"].as_str().unwrap_or("null");
            return Reply {
                status: out["statusCode"].as_u64().unwrap() as u16,
                headers: Default::default(),
                body: serde_json::from_str(body).unwrap_or(Value::Null),
            };
        }
        let response = self.intake_answers(&event).await;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = match response.body() {
            lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap_or(Value::String(t.clone())),
            lambda_http::Body::Binary(b) => serde_json::from_slice(b).unwrap_or(Value::Null),
            _ => Value::Null,
        };
        Reply { status, headers, body }
    }

    /// Makes a configured form single opt-in (consent counts at once), for tests about what
    /// happens after consent rather than about how it is confirmed.
    pub async fn single_opt_in(&self, form: &str) {
        let mut def = shipped_form(form);
        def["double_opt_in"] = Value::Bool(false);
        self.put_form(def).await;
    }

    /// A JSON submission on the IAM-authorised route, which answers with the contact and lead
    /// ids (what a back-end integration sees; tests use them to look records up).
    pub async fn post_json(&self, form: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
        self.post_to(&format!("/internal/forms/{form}/submissions"), body, headers)
            .await
    }

    /// A JSON submission on the public route, as a landing page sends it.
    pub async fn post_public(&self, form: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
        self.post_to(&format!("/forms/{form}/submissions"), body, headers).await
    }

    async fn post_to(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(headers);
        self.send("POST", path, &h, body.to_string().as_bytes()).await
    }

    pub fn table(&self) -> String {
        self.stack.provisioned.tables["DataTable"].clone()
    }

    pub fn queue_url(&self) -> String {
        self.stack.provisioned.queues["ScoringQueue"].url.clone()
    }

    /// Every item of the records table (a Scan: tests only, never on a function's path).
    pub async fn items(&self) -> Vec<Item> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .stack
                .clients
                .dynamodb
                .scan()
                .table_name(self.table())
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap();
            out.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        self.requests.take();
        out
    }

    pub async fn items_of(&self, kind: &str) -> Vec<Item> {
        self.items()
            .await
            .into_iter()
            .filter(|i| s(i, "type") == kind)
            .collect()
    }

    /// Drains the scoring queue and returns the message bodies.
    pub async fn drain_queue(&self) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let got = self
                .stack
                .clients
                .sqs
                .receive_message()
                .queue_url(self.queue_url())
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            let msgs = got.messages.unwrap_or_default();
            if msgs.is_empty() {
                break;
            }
            for m in msgs {
                out.push(serde_json::from_str(m.body().unwrap_or("null")).unwrap());
                self.stack
                    .clients
                    .sqs
                    .delete_message()
                    .queue_url(self.queue_url())
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        self.requests.take();
        out
    }
}

/// A string attribute of an item, or "".
pub fn s(item: &Item, name: &str) -> String {
    item.get(name).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default()
}

/// A number attribute of an item.
pub fn n(item: &Item, name: &str) -> i64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

impl TestEnv {
    /// Polls the scoring function's queues until they are empty; failures come back at once.
    /// Transactions sent so far that touch one item twice (DynamoDB refuses those whole with
    /// a ValidationException; moto does not, so the tests look at what was sent).
    pub fn transactions_touching_an_item_twice(&self) -> Vec<Value> {
        self.requests
            .bodies()
            .into_iter()
            .filter(|(op, _)| op == "TransactWriteItems")
            .map(|(_, body)| body)
            .filter(|body| {
                let mut keys = std::collections::HashSet::new();
                body["TransactItems"].as_array().into_iter().flatten().any(|op| {
                    let (_, inner) = op.as_object().and_then(|o| o.iter().next()).expect("one operation");
                    let k = inner.get("Key").or_else(|| inner.get("Item")).expect("a key");
                    !keys.insert((k["pk"].to_string(), k["sk"].to_string(), inner["TableName"].to_string()))
                })
            })
            .collect()
    }

    pub async fn run_scoring(&self) -> leadflow_local::sqs::Polled {
        let mut total = leadflow_local::sqs::Polled::default();
        for _ in 0..50 {
            let p = self
                .stack
                .poll_scoring(&self.scoring, leadflow_local::sqs::Retry::Now)
                .await
                .unwrap();
            total.received += p.received;
            total.failed += p.failed;
            if p.received == 0 {
                break;
            }
        }
        total
    }

    pub fn queue(&self, logical: &str) -> leadflow_local::template::QueueInfo {
        self.stack.provisioned.queues[logical].clone()
    }

    pub async fn send_raw(&self, logical: &str, body: &str) {
        self.stack
            .clients
            .sqs
            .send_message()
            .queue_url(self.queue(logical).url)
            .message_body(body)
            .send()
            .await
            .unwrap();
        self.requests.take();
    }

    /// Messages visible or in flight in a queue (moto counts exactly).
    pub async fn depth(&self, logical: &str) -> usize {
        let attrs = self
            .stack
            .clients
            .sqs
            .get_queue_attributes()
            .queue_url(self.queue(logical).url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        self.requests.take();
        attrs
            .attributes()
            .map(|a| a.values().filter_map(|v| v.parse::<usize>().ok()).sum())
            .unwrap_or(0)
    }

    pub async fn item(&self, pk: &str, sk: &str) -> Option<Item> {
        let out = self
            .stack
            .clients
            .dynamodb
            .get_item()
            .table_name(self.table())
            .key("pk", AttributeValue::S(pk.into()))
            .key("sk", AttributeValue::S(sk.into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        self.requests.take();
        out.item
    }

    /// The lead's scoring state, as stored.
    pub async fn scoring_of(&self, lead_id: &str) -> Value {
        let item = self.item(&format!("LEAD#{lead_id}"), "LEAD").await.expect("lead");
        match item.get("scoring") {
            Some(v) => serde_dynamo::aws_sdk_dynamodb_1::from_attribute_value(v.clone()).unwrap(),
            None => Value::Null,
        }
    }
}

/// An email as SES (moto) received it.
pub struct SentEmail {
    pub message_id: String,
    pub to: Vec<String>,
    pub raw: String,
}

impl SentEmail {
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(self.raw.as_bytes())
            .expect("a MIME message")
    }
    pub fn subject(&self) -> String {
        self.parsed().subject().unwrap_or_default().to_owned()
    }
    pub fn text(&self) -> String {
        self.parsed().body_text(0).map(|t| t.into_owned()).unwrap_or_default()
    }
    pub fn html(&self) -> String {
        self.parsed().body_html(0).map(|t| t.into_owned()).unwrap_or_default()
    }
    pub fn header(&self, name: &str) -> String {
        let unfolded = self.raw.replace("\r\n\t", " ").replace("\r\n ", " ");
        unfolded
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
            .unwrap_or_default()
    }
}

/// Every raw email moto's SES holds (the whole emulator: filter by recipient).
pub async fn sent_emails() -> Vec<SentEmail> {
    let data: Value = reqwest::get(format!("{}/moto-api/data.json", endpoint()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    data["ses"]["RawMessage"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| SentEmail {
            message_id: m["id"].as_str().unwrap_or("").to_owned(),
            to: m["destinations"]
                .as_array()
                .map(|d| d.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
            raw: m["raw_data"].as_str().unwrap_or("").to_owned(),
        })
        .collect()
}

/// Emails to one address.
pub async fn emails_to(address: &str) -> Vec<SentEmail> {
    sent_emails()
        .await
        .into_iter()
        .filter(|m| m.to.iter().any(|t| t == address))
        .collect()
}

/// The next weekday 10:00 in Tokyo after now: inside the default nurture send window, and
/// later than anything the test has stored (the due index is queried up to "now").
pub fn weekday_10am_tokyo() -> chrono::DateTime<chrono::Utc> {
    use chrono::{Datelike, Duration, FixedOffset, NaiveTime, TimeZone, Utc, Weekday};
    let jst = FixedOffset::east_opt(9 * 3600).expect("a valid offset");
    let after = Utc::now() + Duration::minutes(1);
    let mut day = after.with_timezone(&jst).date_naive();
    loop {
        let at = jst
            .from_local_datetime(&day.and_time(NaiveTime::from_hms_opt(10, 0, 0).expect("10:00")))
            .unwrap()
            .with_timezone(&Utc);
        if at > after && !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
            return at;
        }
        day += Duration::days(1);
    }
}

/// An SES event as SNS delivers it to the engagement queue (no raw message delivery).
pub fn ses_event(event_type: &str, message_id: &str, detail: Value) -> String {
    let mut event = serde_json::json!({
        "eventType": event_type,
        "mail": {"timestamp": chrono::Utc::now().to_rfc3339(), "source": "news@example.jp", "messageId": message_id,
                  "destination": ["someone@example.jp"], "tags": {"ses:configuration-set": ["leadflow-nurture"]}}
    });
    let key = event_type.to_lowercase();
    event[key] = detail;
    serde_json::json!({"Type": "Notification", "MessageId": uuid::Uuid::new_v4().to_string(), "TopicArn": "arn:aws:sns:us-east-1:123456789012:engagement",
           "Message": event.to_string(), "Timestamp": chrono::Utc::now().to_rfc3339()})
    .to_string()
}
