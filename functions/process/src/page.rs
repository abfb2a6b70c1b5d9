//! The lead page behind the links in owners' emails: `GET /sales/leads/{leadId}?t=<link>`, its
//! activity form, `POST /sales/leads/{leadId}/activities?t=<link>`, and its other actions,
//! `POST /sales/leads/{leadId}/actions?t=<link>` (`action` = `complete` a task, `accept`,
//! `disqualify` with a reason). No IAM: the link is the authorisation ([`lead_link`]), checked
//! on every request against the lead's current owner, and every POST carries the page's CSRF
//! token. GET reads only. The POSTs go through the lead API's own domain code
//! ([`activity::record`], [`crate::manual_move`]) with the link's owner as the actor, then answer
//! 303 back to the page; a move the stage machine refuses shows the page with its reason (409).

use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};

use leadflow_domain::escape_html;
use leadflow_domain::outbox::Outbox;
use leadflow_domain::ports::InteractionQueue;
use leadflow_domain::process::activity::{self, Activity, Recorded};
use leadflow_domain::process::handoff::{Owner, RoutingConfig, TaskStatus};
use leadflow_domain::process::lead_link;
use leadflow_domain::process::lead_page::{self, ActionForm, ActivityForm, LeadPageStore, PageAction, PageInput};
use leadflow_domain::process::plan::LeadView;
use leadflow_domain::process::ports::{LeadApiStore, Mailer, ProcessConfigSource, TaskStore};
use leadflow_domain::process::stage::{Actor, Move};
use leadflow_domain::records::LeadId;
use leadflow_domain::scoring::service::ScoringConfigSource;

use crate::{manual_move, ManualMove, Process};

/// Who the page is shown to, and with which link.
struct Shown<'a> {
    viewer: &'a Owner,
    routing: &'a RoutingConfig,
    token: &'a str,
    csrf: &'a str,
    now: chrono::DateTime<chrono::Utc>,
}

/// 303 back to the page, with what was done (`done=`).
fn see_other(back: &str, done: &str) -> Response<Body> {
    let mut r = html(StatusCode::SEE_OTHER, String::new());
    if let Ok(v) = HeaderValue::from_str(&format!("{back}&done={done}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

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
    S: LeadApiStore + LeadPageStore + TaskStore,
    M: Mailer,
    O: Outbox,
    Q: InteractionQueue,
    D: ProcessConfigSource,
    C: ScoringConfigSource,
{
    /// `GET /sales/leads/{leadId}`, `POST /sales/leads/{leadId}/activities` and
    /// `POST /sales/leads/{leadId}/actions`, by link.
    pub async fn page(&self, req: Request) -> Response<Body> {
        let span = tracing::info_span!("request", method = %req.method(), route = "lead_page");
        // Boxed: the page's future is large, and the handler's stack is not.
        tracing::Instrument::instrument(Box::pin(self.page_inner(req)), span).await
    }

    async fn page_inner(&self, req: Request) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let post = req.method() == lambda_http::http::Method::POST;
        let lead = match (parts.as_slice(), post) {
            (["sales", "leads", id], false)
            | (["sales", "leads", id, "activities"], true)
            | (["sales", "leads", id, "actions"], true) => LeadId::parse(id),
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
        let shown = Shown {
            viewer,
            routing: &routing,
            token: &token,
            csrf: &csrf,
            now,
        };
        if !post {
            let notice = query
                .first("done")
                .map(|d| lead_page::done_notice(viewer.locale == "ja", d));
            return self.show(&shown, &view, notice, StatusCode::OK).await;
        }
        let back = format!(
            "{}/sales/leads/{lead}?t={}",
            self.public_url.trim_end_matches('/'),
            token
        );
        if parts.last() == Some(&"actions") {
            return Box::pin(self.act(&shown, &view, &link.owner, req.body().as_ref(), &back)).await;
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
                see_other(&back, "1")
            }
            Err(e) => {
                tracing::warn!(error = %e, "activity not recorded");
                unavailable()
            }
        }
    }

    /// The page, with a line above it, answered with `status`.
    async fn show(&self, s: &Shown<'_>, view: &LeadView, notice: Option<&str>, status: StatusCode) -> Response<Body> {
        let records = match self.store.lead_records(view.lead.lead_id).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "lead records not readable");
                return unavailable();
            }
        };
        html(
            status,
            lead_page::render(&PageInput {
                view,
                records: &records,
                viewer: s.viewer,
                routing: s.routing,
                token: s.token,
                csrf: s.csrf,
                now: s.now,
                notice,
            }),
        )
    }

    /// The `actions` form (link and lead already checked): its CSRF token, then the task done,
    /// or the move through the IAM lead API's own [`manual_move`], by the link's owner.
    async fn act(&self, s: &Shown<'_>, view: &LeadView, owner: &str, body: &[u8], back: &str) -> Response<Body> {
        let Some(keys) = self.lead_keys.as_ref() else {
            return denied();
        };
        let form = match ActionForm::parse(body) {
            Ok(f) => f,
            Err(_) => return denied(),
        };
        if !lead_link::csrf_matches(keys, s.token, &form.csrf) {
            tracing::info!(owner = %owner, "lead page action without its CSRF token");
            return denied();
        }
        let ja = s.viewer.locale == "ja";
        let action = match form.action() {
            Ok(a) => a,
            Err(why) => {
                let notice = format!(
                    "{} ({why})",
                    if ja {
                        "入力内容を確認してください。"
                    } else {
                        "Please check the form."
                    }
                );
                return self
                    .show(s, view, Some(&notice), StatusCode::UNPROCESSABLE_ENTITY)
                    .await;
            }
        };
        let lead = view.lead.lead_id;
        let (mv, reason, done) = match action {
            PageAction::Complete(task_id) => {
                let mut task = match self.store.task(lead, &task_id).await {
                    Ok(Some((t, _))) if t.status == TaskStatus::Open && t.lead_id == lead => t,
                    Ok(_) => {
                        let notice = if ja {
                            "未完了のタスクはありません。"
                        } else {
                            "No such open task."
                        };
                        return self.show(s, view, Some(notice), StatusCode::CONFLICT).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "task not readable");
                        return unavailable();
                    }
                };
                // As the SLA check does when sales acted: done, and off the due index.
                task.status = TaskStatus::Done;
                if let Err(e) = self.store.save_task(&task, None).await {
                    tracing::warn!(error = %e, "task not saved");
                    return unavailable();
                }
                tracing::info!(owner = %owner, "task completed by lead link");
                return see_other(back, "task");
            }
            PageAction::Accept => (Move::Convert, "accepted by sales (lead page)".to_owned(), "accepted"),
            PageAction::Disqualify(reason) => (Move::Disqualify, reason, "disqualified"),
        };
        let config = match self.scoring_config.scoring_config().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "scoring configuration not readable");
                return unavailable();
            }
        };
        let by = Actor::User(owner.to_owned());
        match manual_move(&self.store, view, &config.segments, &mv, &reason, by, s.now).await {
            Ok(change) => {
                tracing::info!(owner = %owner, to = ?change.to, status = ?change.to_status, "lead moved by lead link");
                see_other(back, done)
            }
            Err(ManualMove::Illegal(e)) => {
                let notice = format!(
                    "{} {e}",
                    if ja {
                        "この操作はできません:"
                    } else {
                        "Not possible:"
                    }
                );
                self.show(s, view, Some(&notice), StatusCode::CONFLICT).await
            }
            Err(ManualMove::MovedMeanwhile) => {
                let notice = if ja {
                    "この間にリードが変更されました。内容を確認してください。"
                } else {
                    "The lead changed meanwhile; please check it again."
                };
                match self.store.view(lead).await {
                    Ok(Some(fresh)) => self.show(s, &fresh, Some(notice), StatusCode::CONFLICT).await,
                    Ok(None) => denied(),
                    Err(_) => unavailable(),
                }
            }
            Err(ManualMove::Store(e)) => {
                tracing::warn!(error = %e, "lead not moved");
                unavailable()
            }
        }
    }
}
