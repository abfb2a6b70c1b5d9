//! The lead page behind the links in owners' emails: `GET /sales/leads/{leadId}?t=<link>` and
//! its activity form, `POST /sales/leads/{leadId}/activities?t=<link>`. No IAM: the link is
//! the authorisation ([`lead_link`]), checked on every request against the lead's current
//! owner. GET reads only. The POST goes through the lead API's own domain code
//! ([`activity::record`]) with the link's owner as the actor, then answers 303 back to the page.

use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};

use leadflow_domain::escape_html;
use leadflow_domain::outbox::Outbox;
use leadflow_domain::ports::InteractionQueue;
use leadflow_domain::process::activity::{self, Activity, Recorded};
use leadflow_domain::process::lead_link;
use leadflow_domain::process::lead_page::{self, ActivityForm, LeadPageStore, PageInput};
use leadflow_domain::process::ports::{LeadApiStore, Mailer, ProcessConfigSource};
use leadflow_domain::records::LeadId;
use leadflow_domain::scoring::service::ScoringConfigSource;

use crate::Process;

/// An HTML answer with the page's headers (no cache, no referrer, no index, strict CSP).
fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Body::Text(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    for (name, value) in lead_page::HEADERS {
        h.insert(name, HeaderValue::from_static(value));
    }
    r
}

/// Every refusal of a link: one page, one status, nothing about the lead.
fn denied() -> Response<Body> {
    html(StatusCode::FORBIDDEN, lead_page::denied_page())
}

fn unavailable() -> Response<Body> {
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        "<!doctype html><meta charset=\"utf-8\"><p>一時的に表示できません。しばらくしてから開き直してください。</p>\
<p lang=\"en\">Temporarily unavailable; please try again shortly.</p>"
            .into(),
    )
}

/// Whether a request is for the lead page's routes.
pub fn is_page(path: &str) -> bool {
    path.trim_start_matches('/').starts_with("sales/")
}

impl<S, M, O, Q, D, C> Process<S, M, O, Q, D, C>
where
    S: LeadApiStore + LeadPageStore,
    M: Mailer,
    O: Outbox,
    Q: InteractionQueue,
    D: ProcessConfigSource,
    C: ScoringConfigSource,
{
    /// `GET /sales/leads/{leadId}` and `POST /sales/leads/{leadId}/activities`, by link.
    pub async fn page(&self, req: Request) -> Response<Body> {
        let span = tracing::info_span!("request", method = %req.method(), route = "lead_page");
        tracing::Instrument::instrument(self.page_inner(req), span).await
    }

    async fn page_inner(&self, req: Request) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let post = req.method() == lambda_http::http::Method::POST;
        let lead = match (parts.as_slice(), post) {
            (["sales", "leads", id], false) | (["sales", "leads", id, "activities"], true) => LeadId::parse(id),
            _ => None,
        };
        let (Some(lead), Some(keys)) = (lead, self.lead_keys.as_ref()) else {
            return denied();
        };
        let query = req.query_string_parameters();
        let token = query.first("t").unwrap_or("").to_owned();
        let now = (self.clock)();
        // The signature and expiry first: a bad link reads nothing.
        let link = match lead_link::verify(keys, &token, now) {
            Ok(l) if l.lead == lead => l,
            Ok(_) | Err(_) => {
                tracing::info!("lead link refused");
                return denied();
            }
        };
        let routing = match self.config.routing().await {
            Ok(Some(r)) => r,
            Ok(None) => return denied(),
            Err(e) => {
                tracing::warn!(error = %e, "routing not readable");
                return unavailable();
            }
        };
        let view = match self.store.view(lead).await {
            Ok(Some(v)) => v,
            Ok(None) => return denied(),
            Err(e) => {
                tracing::warn!(error = %e, "lead not readable");
                return unavailable();
            }
        };
        if let Err(why) = lead_link::authorise(keys, &routing, &token, lead, view.owner.as_deref(), now) {
            tracing::info!(owner = %link.owner, why = %why, "lead link refused");
            return denied();
        }
        let Some(viewer) = routing.owner(&link.owner) else {
            return denied();
        };
        let Some(csrf) = lead_link::csrf(keys, &token) else {
            return denied();
        };
        if !post {
            let records = match self.store.lead_records(lead).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "lead records not readable");
                    return unavailable();
                }
            };
            let notice = query.first("done").map(|_| {
                if viewer.locale == "ja" {
                    "活動を記録しました。"
                } else {
                    "The activity was recorded."
                }
            });
            return html(
                StatusCode::OK,
                lead_page::render(&PageInput {
                    view: &view,
                    records: &records,
                    viewer,
                    routing: &routing,
                    token: &token,
                    csrf: &csrf,
                    now,
                    notice,
                }),
            );
        }

        // The activity form: bound to this link by its CSRF token.
        let form = match ActivityForm::parse(req.body().as_ref()) {
            Ok(f) => f,
            Err(_) => return denied(),
        };
        if !lead_link::csrf_matches(keys, &token, &form.csrf) {
            tracing::info!(owner = %link.owner, "lead page form without its CSRF token");
            return denied();
        }
        let zone = lead_page::zone(viewer);
        let back = format!(
            "{}/sales/leads/{lead}?t={}",
            self.public_url.trim_end_matches('/'),
            token
        );
        let (request, at) = match form.request(zone, now) {
            Ok(r) => r,
            Err(why) => {
                return html(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"></head>\
<body><p>{}</p><p>{}</p><p><a href=\"{}\">戻る / Back</a></p></body></html>",
                        if viewer.locale == "ja" { "入力内容を確認してください。" } else { "Please check the form." },
                        escape_html(&why),
                        escape_html(&back)
                    ),
                )
            }
        };
        let config = match self.scoring_config.scoring_config().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "scoring configuration not readable");
                return unavailable();
            }
        };
        let recorded = Activity {
            request,
            actor: link.owner.clone(),
            at,
        };
        match activity::record(&self.store, &view, &config.segments, &recorded).await {
            Ok(outcome) => {
                let moved = matches!(outcome, Recorded::Moved(_));
                tracing::info!(owner = %link.owner, moved, "activity recorded by lead link");
                let mut r = html(StatusCode::SEE_OTHER, String::new());
                if let Ok(v) = HeaderValue::from_str(&format!("{back}&done=1")) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                r
            }
            Err(e) => {
                tracing::warn!(error = %e, "activity not recorded");
                unavailable()
            }
        }
    }
}
