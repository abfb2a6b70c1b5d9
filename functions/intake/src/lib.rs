//! The intake function: `POST /forms/{formId}/submissions` (and its CORS preflight).
//!
//! Also `POST /events` (see [`events`]).
//!
//! Thin on purpose: HTTP in, the domain's [`IntakeService`] in the middle, HTTP out. Every
//! client mistake maps to a 4xx with field-level detail; nothing here panics on input.

use chrono::{DateTime, Utc};
use lambda_http::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use leadflow_aws::metrics::Record;
use serde_json::{json, Value};

use leadflow_aws::catalog::{DynamoForms, DynamoSites};
use leadflow_aws::config::{Clients, Env, MissingEnv};
use leadflow_aws::intake::DynamoIntake;
use leadflow_aws::secrets::{Keyring, SecretError, SecretString};
use leadflow_aws::sqs::SqsQueue;
use leadflow_domain::engagement::{EventSender, EventStore, SiteCatalog};
use leadflow_domain::form::FormDefinition;
use leadflow_domain::intake::{IntakeError, IntakeOutcome, IntakeService, IntakeStore, Receipt, Route, SubmissionMeta};
use leadflow_domain::ports::{ConsentStore, FormCatalog, InteractionQueue, StoreError, Unsubscribes};
use leadflow_domain::submission::{parse_json, parse_urlencoded, FieldError};

/// Bodies larger than this are refused with 413 before parsing.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub mod events;
pub mod front;
pub mod unsubscribe;

/// Everything the intake function needs from the records table: submissions, site events,
/// unsubscribes and opt-in confirmations.
pub trait IntakeRecords: IntakeStore + EventStore + Unsubscribes + ConsentStore {}
impl<S: IntakeStore + EventStore + Unsubscribes + ConsentStore> IntakeRecords for S {}

pub struct Intake<C, T, S, Q> {
    pub forms: C,
    /// Sites allowed to send `POST /events`, by public key.
    pub sites: T,
    pub service: IntakeService<S, Q>,
    pub clock: fn() -> DateTime<Utc>,
    /// Verifies unsubscribe links (`/unsubscribe`), and only those; the route answers 503
    /// without it.
    pub unsubscribe_keys: Option<Keyring>,
    /// Verifies opt-in confirmation links (`/confirm`), and only those; 503 without it.
    pub confirm_keys: Option<Keyring>,
    /// The rate-limited front, when the deployment has one (see [`front`]).
    pub front: front::Front,
}

/// The intake function's settings, from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The records table (contacts, leads, interactions, keys, receipts).
    pub table: String,
    /// The configuration table (forms, sites).
    pub config_table: String,
    /// The events bus (`EVENT_BUS_NAME`); unset: no domain events.
    pub event_bus: Option<String>,
    pub scoring_queue_url: String,
    /// The secret (ARN or name; never its value) holding the unsubscribe links' keyring;
    /// unset: `/unsubscribe` answers 503.
    pub unsubscribe_keys_secret: Option<String>,
    /// The secret holding the confirmation links' keyring; unset: `/confirm` answers 503.
    pub confirm_keys_secret: Option<String>,
    /// A stack from before keyrings: the secret holding its former single key, which both
    /// keyrings verify as their `legacy` key (links in emails already sent).
    pub legacy_link_secret: Option<String>,
    /// Behind the rate-limited front only: the secret holding the front's origin header value.
    pub front_origin_secret: Option<String>,
    /// Behind the rate-limited front only: the header carrying the viewer's address
    /// (`CloudFront-Viewer-Address`).
    pub trusted_client_ip_header: Option<String>,
}

/// What intake reads from Secrets Manager once, at cold start (see [`Secrets::load`]).
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    pub unsubscribe_keys: Option<Keyring>,
    pub confirm_keys: Option<Keyring>,
    pub front_origin: Option<SecretString>,
}

impl Secrets {
    /// Reads the secrets `settings` name (each once, at once); the former single key, if
    /// there is one, joins both keyrings as their `legacy` key.
    pub async fn load(clients: &Clients, settings: &Settings) -> Result<Self, SecretError> {
        let sm = &clients.secretsmanager;
        let plain = |id: &Option<String>| {
            let id = id.clone();
            async move {
                match id {
                    Some(id) => leadflow_aws::secrets::secret_string(sm, &id).await.map(Some),
                    None => Ok(None),
                }
            }
        };
        let keyring = |id: &Option<String>| {
            let id = id.clone();
            async move {
                match id {
                    Some(id) => leadflow_aws::secrets::keyring(sm, &id).await.map(Some),
                    None => Ok(None),
                }
            }
        };
        let (u, c, legacy, front) = tokio::join!(
            keyring(&settings.unsubscribe_keys_secret),
            keyring(&settings.confirm_keys_secret),
            plain(&settings.legacy_link_secret),
            plain(&settings.front_origin_secret),
        );
        let (mut unsubscribe_keys, mut confirm_keys) = (u?, c?);
        if let (Some(legacy), Some(id)) = (legacy?, &settings.legacy_link_secret) {
            let add = |keys: Option<Keyring>| {
                keys.map(|k| k.with_legacy(legacy.expose().as_bytes()))
                    .transpose()
                    .map_err(|source| SecretError::Keyring { id: id.clone(), source })
            };
            unsubscribe_keys = add(unsubscribe_keys)?;
            confirm_keys = add(confirm_keys)?;
        }
        Ok(Secrets {
            unsubscribe_keys,
            confirm_keys,
            front_origin: front?,
        })
    }
}

impl Settings {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, MissingEnv> {
        Ok(Settings {
            table: env.required("TABLE_NAME")?,
            config_table: env.required("CONFIG_TABLE_NAME")?,
            event_bus: env.optional(leadflow_aws::config::EVENT_BUS_ENV),
            scoring_queue_url: env.required("SCORING_QUEUE_URL")?,
            unsubscribe_keys_secret: env.optional("UNSUBSCRIBE_KEYS_SECRET_ARN"),
            confirm_keys_secret: env.optional("CONFIRM_KEYS_SECRET_ARN"),
            legacy_link_secret: env.optional("LEGACY_LINK_SECRET_ARN"),
            front_origin_secret: env.optional("FRONT_ORIGIN_SECRET_ARN"),
            trusted_client_ip_header: env.optional("TRUSTED_CLIENT_IP_HEADER"),
        })
    }
}

pub type AwsIntake = Intake<DynamoForms, DynamoSites, DynamoIntake, SqsQueue>;

impl AwsIntake {
    /// `secrets`: what [`Secrets::load`] read for `settings`.
    pub fn new(clients: &Clients, settings: &Settings, secrets: Secrets) -> Self {
        Intake {
            forms: DynamoForms::new(clients.table(&settings.config_table)),
            sites: DynamoSites::new(clients.table(&settings.config_table)),
            service: IntakeService::new(
                DynamoIntake::new(clients.records(&settings.table, settings.event_bus.as_deref())),
                SqsQueue::new(clients.sqs.clone(), &settings.scoring_queue_url),
            ),
            clock: Utc::now,
            unsubscribe_keys: secrets.unsubscribe_keys,
            confirm_keys: secrets.confirm_keys,
            front: front::Front {
                origin_secret: secrets.front_origin,
                client_ip_header: settings
                    .trusted_client_ip_header
                    .as_deref()
                    .and_then(|h| h.parse::<lambda_http::http::HeaderName>().ok()),
            },
        }
    }
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut r = Response::new(Body::Text(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The submission's outcome as a metric: accepted, replayed, or refused and why (spam counts as
/// refused, although its sender is answered as if accepted).
fn submission_metrics(outcome: &Result<IntakeOutcome, IntakeError>) -> Record {
    let record = Record::new("intake");
    match outcome {
        Ok(IntakeOutcome::Accepted { replayed: true, .. }) => record.count("SubmissionsReplayed", 1),
        Ok(IntakeOutcome::Accepted { .. }) => record.count("SubmissionsAccepted", 1),
        Ok(IntakeOutcome::Spam { .. }) => record.by("Reason", "spam").count("SubmissionsRefused", 1),
        Err(e) => {
            let reason = match e {
                IntakeError::Invalid(_) => "validation_failed",
                IntakeError::IdempotencyKeyReused => "idempotency_key_reused",
                IntakeError::Busy => "busy",
                IntakeError::Store(_) => "store_unavailable",
            };
            record.by("Reason", reason).count("SubmissionsRefused", 1)
        }
    }
}

pub(crate) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response<Body> {
    json_response(status, &json!({"error": code, "message": message.into()}))
}

pub(crate) fn field_errors(code: &str, errors: &[FieldError]) -> Response<Body> {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        &json!({"error": code, "message": "the submission has invalid fields", "errors": errors}),
    )
}

fn redirect(location: &str) -> Response<Body> {
    let mut r = Response::new(Body::Empty);
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn with_query(base: &str, pairs: &[(String, String)]) -> String {
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
    let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
    if query.is_empty() {
        return base.to_owned();
    }
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{}", query.join("&"))
}

pub(crate) fn header_str(h: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// `/forms/{formId}/submissions`, from the route's path parameter or the raw path.
fn form_id_of(req: &Request) -> Option<String> {
    if let Some(id) = req.path_parameters_ref().and_then(|p| p.first("formId")) {
        return Some(id.to_owned());
    }
    let path = req.raw_http_path();
    let rest = &path[path.find("/forms/")? + "/forms/".len()..];
    let (id, tail) = rest.split_once('/')?;
    (tail.trim_end_matches('/') == "submissions" && !id.is_empty()).then(|| id.to_owned())
}

/// The client's address: the trusted front's header when the request came through the front
/// ([`front::Front::admit`]), else the one API Gateway saw.
/// Whether API Gateway's IAM authorizer vouched for the caller (it passes the identity on).
fn iam_signed(req: &Request) -> bool {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.authorizer.as_ref().is_some_and(|a| a.iam.is_some()),
        _ => false,
    }
}

pub(crate) fn source_ip(req: &Request) -> Option<String> {
    if let Some(front::TrustedClientIpHeader(name)) = req.extensions().get::<front::TrustedClientIpHeader>() {
        if let Some(ip) = header_str(req.headers(), name).and_then(front::viewer_address) {
            return Some(ip.to_string());
        }
    }
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
        _ => None,
    }
}

fn cors(form: &FormDefinition, origin: Option<&str>, r: &mut Response<Body>) {
    if let Some(o) = origin.filter(|o| form.origin_allowed(o)) {
        if let Ok(v) = HeaderValue::from_str(o) {
            let h = r.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("Idempotent-Replayed"),
            );
        }
    }
}

/// The answer to an accepted submission: whole to IAM-authorised callers, opaque to the public.
fn receipt_body(r: &Receipt, caller: Caller) -> Value {
    match caller {
        Caller::Server => serde_json::to_value(r),
        Caller::Public => serde_json::to_value(r.public()),
    }
    .unwrap_or_else(|_| json!({}))
}

/// Who is submitting: anyone on the public route, or a back-end integration on the
/// IAM-authorised `/internal/forms/{formId}/submissions`, which is told the contact and lead ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Public,
    Server,
}

impl<C: FormCatalog, T: SiteCatalog, S: crate::IntakeRecords, Q: InteractionQueue> Intake<C, T, S, Q> {
    /// The Lambda handler. Never returns `Err`: every failure is an HTTP answer.
    pub async fn handle(&self, req: Request) -> Result<Response<Body>, std::convert::Infallible> {
        let span = tracing::info_span!(
            "request",
            method = %req.method(),
            path = %req.raw_http_path(),
            request_id = req.lambda_context_ref().map(|c| c.request_id.as_str()).unwrap_or("")
        );
        let response = match self.front.admit(req) {
            Some(req) => tracing::Instrument::instrument(self.route(req), span).await,
            // Around the front: answered as a route that does not exist.
            None => error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route; submit to /forms/{formId}/submissions",
            ),
        };
        tracing::info!(status = response.status().as_u16(), "intake answered");
        Ok(response)
    }

    async fn route(&self, req: Request) -> Response<Body> {
        let path = req.raw_http_path().trim_end_matches('/').to_owned();
        // The internal routes are trusted because API Gateway checked a SigV4 signature: without
        // the IAM identity it passes on (a misconfigured route), they do not exist.
        if path.starts_with("/internal/") && !iam_signed(&req) {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route; submit to /forms/{formId}/submissions",
            );
        }
        if path.ends_with("/internal/events") {
            return self.events(req, EventSender::Server).await;
        }
        if path.ends_with("/events") {
            return self.events(req, EventSender::Browser).await;
        }
        if req.raw_http_path().trim_end_matches('/').ends_with("/unsubscribe") {
            return self.unsubscribe(req).await;
        }
        if req.raw_http_path().trim_end_matches('/').ends_with("/confirm") {
            return self.confirm(req).await;
        }
        let caller = if path.starts_with("/internal/") {
            Caller::Server
        } else {
            Caller::Public
        };
        let Some(form_id) = form_id_of(&req) else {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route; submit to /forms/{formId}/submissions",
            );
        };
        let form = match self.forms.form(&form_id).await {
            // An internal form (the import) is not served on the public route: answered exactly
            // as a form that does not exist.
            Ok(Some(f)) if f.served_to(caller == Caller::Public) => f,
            Ok(_) => {
                return error(
                    StatusCode::NOT_FOUND,
                    "unknown_form",
                    format!("there is no form '{form_id}'"),
                )
            }
            Err(e) => return store_failure(&e),
        };
        let origin = header_str(req.headers(), header::ORIGIN).map(str::to_owned);
        let mut response = match *req.method() {
            Method::OPTIONS => preflight(&form, origin.as_deref()),
            Method::POST => match origin.as_deref() {
                Some(o) if !form.origin_allowed(o) => error(
                    StatusCode::FORBIDDEN,
                    "origin_not_allowed",
                    "this form does not accept submissions from that origin",
                ),
                _ => self.submit(&form, req, caller).await,
            },
            _ => {
                let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "use POST");
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
                r
            }
        };
        cors(&form, origin.as_deref(), &mut response);
        response
    }

    async fn submit(&self, form: &FormDefinition, req: Request, caller: Caller) -> Response<Body> {
        let headers = req.headers();
        let content_type = header_str(headers, header::CONTENT_TYPE)
            .unwrap_or("")
            .to_ascii_lowercase();
        let (essence, params) = content_type.split_once(';').unwrap_or((&content_type, ""));
        let essence = essence.trim();
        let html = essence == "application/x-www-form-urlencoded"
            && header_str(headers, header::ACCEPT).is_some_and(|a| a.contains("text/html"))
            && form.redirect.is_some();
        if let Some(charset) = params
            .split(';')
            .filter_map(|p| p.trim().strip_prefix("charset="))
            .next()
        {
            if !charset.trim_matches('"').eq_ignore_ascii_case("utf-8") {
                return error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_charset",
                    "bodies must be UTF-8",
                );
            }
        }
        let body: &[u8] = req.body().as_ref();
        if body.len() > MAX_BODY_BYTES {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("bodies are limited to {MAX_BODY_BYTES} bytes"),
            );
        }
        let parsed = match essence {
            "application/json" => parse_json(body),
            "application/x-www-form-urlencoded" => parse_urlencoded(body),
            _ => {
                return error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "send application/json or application/x-www-form-urlencoded",
                )
            }
        };
        let raw = match parsed {
            Ok(raw) => raw,
            Err(e) => return error(StatusCode::BAD_REQUEST, "malformed_body", e.to_string()),
        };
        let meta = SubmissionMeta {
            route: match caller {
                Caller::Public => Route::Public,
                Caller::Server => Route::Internal,
            },
            received_at: (self.clock)(),
            source_ip: source_ip(&req),
            user_agent: header_str(headers, header::USER_AGENT).map(|s| s.chars().take(512).collect()),
            idempotency_key: headers
                .get("idempotency-key")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned()),
        };
        let outcome = self.service.submit(form, &raw, &meta).await;
        submission_metrics(&outcome).emit();
        let redirects = form.redirect.as_ref().filter(|_| html);
        match outcome {
            Ok(IntakeOutcome::Accepted {
                receipt,
                replayed,
                queued,
            }) => {
                tracing::info!(lead_id = %receipt.lead_id, form_id = %form.id, contact = ?receipt.contact, lead = ?receipt.lead, replayed, queued, "submission accepted");
                if let Some(r) = redirects {
                    return redirect(&r.thank_you);
                }
                let mut resp = json_response(StatusCode::CREATED, &receipt_body(&receipt, caller));
                if replayed {
                    resp.headers_mut()
                        .insert("idempotent-replayed", HeaderValue::from_static("true"));
                }
                resp
            }
            Ok(IntakeOutcome::Spam { receipt }) => match redirects {
                Some(r) => redirect(&r.thank_you),
                None => json_response(StatusCode::CREATED, &receipt_body(&receipt, caller)),
            },
            Err(IntakeError::Invalid(errors)) => {
                tracing::info!(fields = ?errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), "submission invalid");
                match redirects {
                    Some(r) => redirect(&with_query(
                        &r.error,
                        &errors
                            .iter()
                            .map(|e| (format!("error.{}", e.field), e.message.clone()))
                            .collect::<Vec<_>>(),
                    )),
                    None => field_errors("validation_failed", &errors),
                }
            }
            Err(IntakeError::IdempotencyKeyReused) => field_errors(
                "idempotency_key_reused",
                &[FieldError::new(
                    "Idempotency-Key",
                    "was already used for a different submission",
                )],
            ),
            Err(IntakeError::Busy) => {
                let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "busy", "please retry");
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            Err(IntakeError::Store(e)) => store_failure(&e),
        }
    }
}

/// A successful CORS preflight for a POST route taking these request headers.
pub(crate) fn preflight_ok(allow_headers: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::Empty);
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(allow_headers),
    );
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    r
}

fn preflight(form: &FormDefinition, origin: Option<&str>) -> Response<Body> {
    match origin {
        Some(o) if form.origin_allowed(o) => preflight_ok("content-type, idempotency-key"),
        _ => error(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "this form does not accept submissions from that origin",
        ),
    }
}

pub(crate) fn store_failure(e: &StoreError) -> Response<Body> {
    match e {
        StoreError::Corrupt(_) => {
            tracing::error!(error = %e, "stored data or configuration is corrupt");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "something is wrong on our side",
            )
        }
        _ => {
            tracing::warn!(error = %e, "store unavailable");
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "please retry shortly");
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
            r
        }
    }
}
