//! The local HTTP front: API Gateway's routes from the template, each request turned into
//! the payload-2.0 event the function would receive on Lambda; plus the demo pages.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use std::collections::HashMap;

use base64::Engine;
use serde_json::Value;

use crate::apigw::{http_api_event, match_route, HttpRequest};
use crate::runtime::Function;
use crate::template::{Route, Schedule};

/// A bit above the function's own limit, so the function (not this server) answers 413.
const MAX_LOCAL_BODY: usize = 1024 * 1024;

pub struct Front {
    pub routes: Vec<Route>,
    /// Each function's real binary under the Runtime API emulator.
    pub functions: HashMap<String, Arc<Function>>,
    pub schedules: Vec<Schedule>,
    /// The emulator, for the mailbox page.
    pub emulator: String,
    /// The records table, for the report page.
    pub records: leadflow_aws::table::Table,
    /// The domain events the bus delivered, for the events page.
    pub events: std::sync::Mutex<LocalEvents>,
}

/// The events the local bus delivered: how many of each type, and the newest [`EVENTS_KEPT`].
#[derive(Debug, Default)]
pub struct LocalEvents {
    pub kept: std::collections::VecDeque<leadflow_domain::events::DomainEvent>,
    pub totals: std::collections::BTreeMap<String, usize>,
}

impl LocalEvents {
    pub fn add(&mut self, events: Vec<leadflow_domain::events::DomainEvent>) {
        for e in events {
            *self.totals.entry(e.kind.clone()).or_default() += 1;
            self.kept.push_back(e);
        }
        let excess = self.kept.len().saturating_sub(EVENTS_KEPT);
        self.kept.drain(..excess);
    }
}

/// Events the local events page keeps.
pub const EVENTS_KEPT: usize = 1000;

fn plain(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

/// An API Gateway payload-2.0 response (what lambda_http returns) as an HTTP response.
fn from_lambda(out: &Value) -> Response<Full<Bytes>> {
    let status = out
        .get("statusCode")
        .and_then(Value::as_u64)
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let body = out.get("body").and_then(Value::as_str).unwrap_or("");
    let bytes = if out.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap_or_default()
    } else {
        body.as_bytes().to_vec()
    };
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    for (k, v) in out.get("headers").and_then(Value::as_object).into_iter().flatten() {
        if let (Ok(k), Some(Ok(v))) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            v.as_str().map(hyper::header::HeaderValue::from_str),
        ) {
            r.headers_mut().append(k, v);
        }
    }
    for (k, vs) in out
        .get("multiValueHeaders")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        for v in vs.as_array().into_iter().flatten() {
            if let (Ok(k), Some(Ok(v))) = (
                hyper::header::HeaderName::from_bytes(k.as_bytes()),
                v.as_str().map(hyper::header::HeaderValue::from_str),
            ) {
                if !r.headers().contains_key(&k) {
                    r.headers_mut().append(k, v);
                }
            }
        }
    }
    r
}

impl Front {
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, MAX_LOCAL_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "text/plain", "body too large"),
        };
        let path = parts.uri.path();
        let query = parts.uri.query().unwrap_or("");
        if parts.method == hyper::Method::GET {
            if let Some(page) = crate::demo::page(path, query) {
                return plain(StatusCode::OK, "text/html; charset=utf-8", page);
            }
            if path == "/_local/report" {
                return match crate::demo::report(&self.records).await {
                    Ok(page) => plain(StatusCode::OK, "text/html; charset=utf-8", page),
                    Err(e) => plain(StatusCode::BAD_GATEWAY, "text/plain", e),
                };
            }
            if path == "/_local/events" {
                let kind = query.split('&').find_map(|p| p.strip_prefix("type=")).unwrap_or("");
                let page = match self.events.lock() {
                    Ok(seen) => crate::demo::events(&seen, kind),
                    Err(_) => crate::demo::events(&LocalEvents::default(), kind),
                };
                return plain(StatusCode::OK, "text/html; charset=utf-8", page);
            }
            if path == "/_local/mailbox" || path.starts_with("/_local/mailbox/") {
                return match crate::demo::mailbox(
                    &self.emulator,
                    path.trim_start_matches("/_local/mailbox").trim_start_matches('/'),
                )
                .await
                {
                    Ok(page) => plain(StatusCode::OK, "text/html; charset=utf-8", page),
                    Err(e) => plain(StatusCode::BAD_GATEWAY, "text/plain", e),
                };
            }
        }
        // Schedules on demand: POST /_local/schedules/{Function}/{Event}; a JSON object in the
        // body is the input instead of the schedule's (`{"routine": "snapshot"}`).
        if let (&hyper::Method::POST, Some(rest)) = (&parts.method, path.strip_prefix("/_local/schedules/")) {
            let Some(s) = self
                .schedules
                .iter()
                .find(|s| rest == format!("{}/{}", s.function, s.name))
            else {
                return plain(StatusCode::NOT_FOUND, "text/plain", "no such schedule");
            };
            let Some(f) = self.functions.get(&s.function) else {
                return plain(StatusCode::NOT_FOUND, "text/plain", "no such function");
            };
            let input = serde_json::from_slice::<Value>(&body)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| s.input.clone());
            return match f.invoke(input).await {
                Ok(v) => plain(StatusCode::OK, "application/json", v.to_string()),
                Err(e) => plain(StatusCode::BAD_GATEWAY, "text/plain", e),
            };
        }
        let Some((route, params)) = match_route(&self.routes, parts.method.as_str(), path) else {
            return plain(StatusCode::NOT_FOUND, "application/json", r#"{"message":"Not Found"}"#);
        };
        let headers = parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let ip = peer.ip().to_string();
        let event = http_api_event(
            route,
            &params,
            &HttpRequest {
                method: parts.method.as_str(),
                path,
                query,
                headers,
                body: &body,
                source_ip: &ip,
            },
        );
        let Some(function) = self.functions.get(&route.function) else {
            return plain(
                StatusCode::NOT_IMPLEMENTED,
                "text/plain",
                format!("{} is not running", route.function),
            );
        };
        match function.invoke(event).await {
            Ok(out) => from_lambda(&out),
            // API Gateway answers a function error with a 500 of its own.
            Err(e) => {
                tracing::warn!(function = %route.function, error = %e, "function error");
                plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "application/json",
                    r#"{"message":"Internal Server Error"}"#,
                )
            }
        }
    }
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    front: Arc<Front>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => {
                let (stream, peer) = accepted?;
                let front = front.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let front = front.clone();
                        async move { Ok::<_, Infallible>(front.handle(req, peer).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        }
    }
}
