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

use crate::apigw::{http_api_event, match_route, HttpRequest};
use crate::template::Route;

/// A bit above the function's own limit, so the function (not this server) answers 413.
const MAX_LOCAL_BODY: usize = 1024 * 1024;

pub struct Front {
    pub routes: Vec<Route>,
    pub intake: intake::AwsIntake,
    pub process: process::Process,
}

fn plain(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
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
        if parts.method == hyper::Method::GET {
            if let Some(page) = crate::demo::page(path, parts.uri.query().unwrap_or("")) {
                return plain(StatusCode::OK, "text/html; charset=utf-8", page);
            }
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
                query: parts.uri.query().unwrap_or(""),
                headers,
                body: &body,
                source_ip: &ip,
            },
        );
        if route.function == "ProcessFunction" {
            let out = self
                .process
                .handle(event)
                .await
                .unwrap_or_else(|e| serde_json::json!({"statusCode": 500, "body": e}));
            let status = out.get("statusCode").and_then(serde_json::Value::as_u64).unwrap_or(500) as u16;
            let body = out
                .get("body")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("")
                .to_owned();
            return plain(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "application/json",
                body,
            );
        }
        let request = match lambda_http::request::from_str(&event.to_string()) {
            Ok(r) => r,
            Err(e) => {
                return plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    format!("bad event: {e}"),
                )
            }
        };
        let response = match route.function.as_str() {
            "IntakeFunction" => match self.intake.handle(request).await {
                Ok(r) => r,
                Err(never) => match never {},
            },
            other => {
                return plain(
                    StatusCode::NOT_IMPLEMENTED,
                    "text/plain",
                    format!("{other} is not served locally"),
                )
            }
        };
        let (parts, body) = response.into_parts();
        let bytes: Bytes = match body {
            lambda_http::Body::Empty => Bytes::new(),
            lambda_http::Body::Text(t) => Bytes::from(t),
            lambda_http::Body::Binary(b) => Bytes::from(b),
            _ => Bytes::new(),
        };
        Response::from_parts(parts, Full::new(bytes))
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
