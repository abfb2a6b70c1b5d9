//! `POST /events`: page views, downloads, webinars and custom events from landing pages and
//! the web site, authenticated by the site's public key. Browsers identify people only by the
//! visitor id and learn nothing from the answer (`{"status":"accepted"}` whatever happened);
//! `POST /internal/events` (IAM-authorised) lets back-end integrations name a lead or contact.

use lambda_http::http::{header, HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;

use leadflow_domain::engagement::{
    parse_event, record_event, site_key_in, EventOutcome, EventSender, SiteCatalog, MAX_EVENT_BYTES,
};
use leadflow_domain::ports::{FormCatalog, InteractionQueue};

use crate::{error, field_errors, header_str, json_response, store_failure, Intake};

pub const SITE_KEY_HEADER: &str = "x-leadflow-site-key";

/// The site key in the query string (for preflights, which carry neither body nor header).
fn query_key(req: &Request) -> Option<String> {
    req.query_string_parameters_ref()
        .and_then(|q| q.first("site_key").map(str::to_owned))
        .filter(|k| !k.is_empty())
}

fn allow_origin(r: &mut Response<Body>, origin: Option<&str>) {
    if let Some(v) = origin.and_then(|o| HeaderValue::from_str(o).ok()) {
        r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        r.headers_mut().insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

impl<C: FormCatalog, T: SiteCatalog, S: crate::IntakeRecords, Q: InteractionQueue> Intake<C, T, S, Q> {
    pub(crate) async fn events(&self, req: Request, sender: EventSender) -> Response<Body> {
        let origin = header_str(req.headers(), header::ORIGIN).map(str::to_owned);
        match *req.method() {
            // A preflight carries no body and no custom header: the site is named by the key in
            // the query (`/events?site_key=…`), and only its own origins are answered.
            Method::OPTIONS if sender == EventSender::Browser => {
                let site = match query_key(&req) {
                    Some(key) => match self.sites.site(&key).await {
                        Ok(site) => site,
                        Err(e) => return store_failure(&e),
                    },
                    None => None,
                };
                match (site, origin.as_deref()) {
                    (Some(site), Some(o)) if site.origin_allowed(o) => {
                        let mut r = crate::preflight_ok("content-type, x-leadflow-site-key");
                        allow_origin(&mut r, Some(o));
                        r
                    }
                    _ => error(
                        StatusCode::FORBIDDEN,
                        "origin_not_allowed",
                        "name the site in the query (?site_key=…); only its own origins may send events",
                    ),
                }
            }
            Method::POST => self.post_event(&req, origin.as_deref(), sender).await,
            _ => {
                let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "use POST");
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
                r
            }
        }
    }

    async fn post_event(&self, req: &Request, origin: Option<&str>, sender: EventSender) -> Response<Body> {
        let body: &[u8] = req.body().as_ref();
        if body.len() > MAX_EVENT_BYTES {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("events are limited to {MAX_EVENT_BYTES} bytes"),
            );
        }
        // navigator.sendBeacon sends a string body as text/plain.
        let ct = header_str(req.headers(), header::CONTENT_TYPE)
            .unwrap_or("")
            .to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim();
        if essence != "application/json" && essence != "text/plain" {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send application/json",
            );
        }
        if serde_json::from_slice::<serde_json::Value>(body)
            .map(|v| !v.is_object())
            .unwrap_or(true)
        {
            return error(
                StatusCode::BAD_REQUEST,
                "malformed_body",
                "the body must be a JSON object",
            );
        }
        let key = header_str(req.headers(), SITE_KEY_HEADER)
            .map(str::to_owned)
            .or_else(|| site_key_in(body))
            .or_else(|| query_key(req));
        let Some(key) = key else {
            return error(
                StatusCode::UNAUTHORIZED,
                "site_key_required",
                format!("send the site's public key in {SITE_KEY_HEADER} or site_key"),
            );
        };
        let site = match self.sites.site(&key).await {
            Ok(Some(s)) => s,
            Ok(None) => return error(StatusCode::UNAUTHORIZED, "unknown_site_key", "no site has that key"),
            Err(e) => return store_failure(&e),
        };
        if let Some(o) = origin {
            if !site.origin_allowed(o) {
                return error(
                    StatusCode::FORBIDDEN,
                    "origin_not_allowed",
                    "this site does not accept events from that origin",
                );
            }
        }
        // Only the site's own origins may read the answer.
        let mut r = self.record(body, &site, sender).await;
        allow_origin(&mut r, origin);
        r
    }

    async fn record(
        &self,
        body: &[u8],
        site: &leadflow_domain::engagement::Site,
        sender: EventSender,
    ) -> Response<Body> {
        let event = match parse_event(body, site, (self.clock)(), sender) {
            Ok(e) => e,
            Err(errors) => return field_errors("validation_failed", &errors),
        };
        let kind = event.kind.name().to_owned();
        let outcome = record_event(&self.service.store, &self.service.queue, event).await;
        if sender == EventSender::Browser {
            // The same answer whether the visitor is linked to a lead or not, new or a repeat.
            return match outcome {
                Ok(_) => json_response(StatusCode::ACCEPTED, &json!({"status": "accepted"})),
                Err(e) => store_failure(&e),
            };
        }
        match outcome {
            Ok(EventOutcome::Recorded {
                interaction_id,
                lead_id,
                queued,
            }) => {
                tracing::info!(site = %site.site_id, kind, lead_id = %lead_id, queued, "event recorded");
                json_response(
                    StatusCode::ACCEPTED,
                    &json!({"status": "recorded", "interaction_id": interaction_id, "lead_id": lead_id}),
                )
            }
            Ok(EventOutcome::Anonymous { interaction_id }) => {
                tracing::info!(site = %site.site_id, kind, "anonymous event recorded");
                json_response(
                    StatusCode::ACCEPTED,
                    &json!({"status": "anonymous", "interaction_id": interaction_id}),
                )
            }
            Ok(EventOutcome::Duplicate { interaction_id }) => json_response(
                StatusCode::ACCEPTED,
                &json!({"status": "duplicate", "interaction_id": interaction_id}),
            ),
            Ok(EventOutcome::UnknownSubject) => error(StatusCode::NOT_FOUND, "unknown_lead", "no such lead or contact"),
            Err(e) => store_failure(&e),
        }
    }
}
