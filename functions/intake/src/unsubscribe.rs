//! `GET /unsubscribe?token=…` shows a confirmation page (Japanese and English); `POST` is the
//! RFC 8058 one-click unsubscribe (and the page's button). Both take effect at once and are
//! idempotent; a forged or altered token gets a 400 and changes nothing.
//!
//! `GET /confirm?token=…` (double opt-in) shows a page with a button; its `POST` turns the
//! pending opt-in into consent, with the click's time, address and browser as evidence. A GET
//! alone confirms nothing, so mail scanners that open links cannot subscribe anyone.

use lambda_http::http::{header, HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};

use leadflow_domain::engagement::SiteCatalog;
use leadflow_domain::ports::{Confirmation, FormCatalog, InteractionQueue};
use leadflow_domain::process::unsubscribe::verify_link;

use crate::Intake;

fn page(status: StatusCode, title: &str, body: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html><html lang=\"ja\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title>\
<style>body{{font-family:system-ui,-apple-system,'Hiragino Sans','Hiragino Kaku Gothic ProN','Yu Gothic UI',Meiryo,'Noto Sans CJK JP',sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem}}button{{font-size:1rem;padding:.5rem 1rem}}</style></head><body>{body}</body></html>"
    );
    let mut r = Response::new(Body::Text(html));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Nothing but its own inline style and its own form; never framed (no clickjacking of the
    // button); the token in the URL never leaks through a Referer.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

fn token_of(req: &Request) -> String {
    req.query_string_parameters_ref()
        .and_then(|q| q.first("token").map(str::to_owned))
        .or_else(|| {
            let body = std::str::from_utf8(req.body().as_ref()).ok()?.to_owned();
            body.split('&')
                .find_map(|p| p.strip_prefix("token=").map(percent_decode))
        })
        .unwrap_or_default()
}

impl<C: FormCatalog, T: SiteCatalog, S: crate::IntakeRecords, Q: InteractionQueue> Intake<C, T, S, Q> {
    pub(crate) async fn confirm(&self, req: Request) -> Response<Body> {
        let Some(keys) = &self.confirm_keys else {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "<p>確認は現在ご利用いただけません。/ Confirming is not available right now.</p>",
            );
        };
        let token = token_of(&req);
        let Some((contact, nonce)) = leadflow_domain::process::unsubscribe::verify_confirm(keys, &token) else {
            return page(
                StatusCode::BAD_REQUEST,
                "無効なリンク / Invalid link",
                "<h1>無効なリンクです / This link is not valid</h1><p>確認リンクが正しくありません。メール内のリンクをそのままお使いください。<br>The confirmation link is not valid. Please use the link from the email as it is.</p>",
            );
        };
        match *req.method() {
            Method::GET | Method::HEAD => {
                // What confirming grants, so the mailbox's holder sees every value a submitter
                // gave (anyone can send a request in their name) before granting it.
                let contact = match self.service.store.contact(contact).await {
                    Ok(c) => c,
                    Err(e) => return crate::store_failure(&e),
                };
                let probe = leadflow_domain::records::ConsentConfirmation {
                    at: (self.clock)(),
                    ip: None,
                    user_agent: None,
                };
                let grants = contact
                    .as_ref()
                    .and_then(|c| leadflow_domain::confirmation::confirm(c, &nonce, &probe))
                    .map(|done| leadflow_domain::confirmation::describe(&done))
                    .unwrap_or_default();
                let list: String = grants
                    .iter()
                    .map(|(ja, en)| {
                        format!(
                            "<li>{}<br><small>{}</small></li>",
                            leadflow_domain::escape_html(ja),
                            leadflow_domain::escape_html(en)
                        )
                    })
                    .collect();
                let body = if grants.is_empty() {
                    "<h1>お申し込みの確認 / Confirm your request</h1><p>確認が必要なお申し込みはありません。<br>There is nothing to confirm.</p>".to_owned()
                } else {
                    format!(
                        "<h1>お申し込みの確認 / Confirm your request</h1><p>このメールアドレスで次のお申し込みがありました。ご本人のお申し込みで、内容に間違いがなければ確認してください。心当たりのない内容があれば、確認せずにこのページを閉じてください。<br>A request was sent with this email address. Confirm only if it was yours and everything below is right; otherwise just close this page.</p><ul>{list}</ul>\
<form method=\"post\" action=\"?token={}\"><button type=\"submit\">確認する / Confirm</button></form>",
                        leadflow_domain::escape_html(&token)
                    )
                };
                page(StatusCode::OK, "お申し込みの確認 / Confirm your request", &body)
            }
            Method::POST => {
                let evidence = leadflow_domain::records::ConsentConfirmation {
                    at: (self.clock)(),
                    ip: crate::source_ip(&req),
                    user_agent: crate::header_str(req.headers(), lambda_http::http::header::USER_AGENT)
                        .map(|s| s.chars().take(512).collect()),
                };
                match self.service.store.confirm(contact, &nonce, &evidence).await {
                    Ok(outcome) => {
                        let confirmed = matches!(outcome, Confirmation::Confirmed(_));
                        tracing::info!(contact_id = %contact, confirmed, "address confirmation");
                        if let Confirmation::Confirmed(interactions) = outcome {
                            // Durable already (in the outbox): a failed send is relayed later.
                            let messages: Vec<_> = interactions
                                .iter()
                                .map(leadflow_domain::message::InteractionMessage::for_interaction)
                                .collect();
                            for sent in self.service.queue.publish_all(&messages).await {
                                if let Err(e) = sent {
                                    tracing::warn!(error = %e, "confirmation not queued for scoring; left in the outbox");
                                }
                            }
                        }
                        // The same page either way: a link says nothing about anyone's state.
                        page(
                            StatusCode::OK,
                            "確認しました / Confirmed",
                            "<h1>ありがとうございます / Thank you</h1><p>お申し込みを確認しました。<br>Your request is confirmed.</p>",
                        )
                    }
                    Err(e) => crate::store_failure(&e),
                }
            }
            _ => page(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed",
                "<p>GET or POST</p>",
            ),
        }
    }

    pub(crate) async fn unsubscribe(&self, req: Request) -> Response<Body> {
        let Some(keys) = &self.unsubscribe_keys else {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "<p>配信停止は現在ご利用いただけません。/ Unsubscribing is not available right now.</p>",
            );
        };
        let token = token_of(&req);
        let Some((contact, email)) = verify_link(keys, &token) else {
            return page(
                StatusCode::BAD_REQUEST,
                "無効なリンク / Invalid link",
                "<h1>無効なリンクです / This link is not valid</h1><p>配信停止リンクが正しくありません。メール内のリンクをそのままお使いください。<br>The unsubscribe link is not valid. Please use the link from the email as it is.</p>",
            );
        };
        match *req.method() {
            Method::GET | Method::HEAD => page(
                StatusCode::OK,
                "配信停止の確認 / Confirm unsubscribe",
                &format!(
                    "<h1>メール配信の停止 / Unsubscribe</h1><p>今後のご案内メールの配信を停止します。よろしいですか?<br>You will no longer receive our emails. Continue?</p>\
<form method=\"post\" action=\"?token={}\"><button type=\"submit\">配信を停止する / Unsubscribe</button></form>",
                    leadflow_domain::escape_html(&token)
                ),
            ),
            Method::POST => match self.service.store.unsubscribe(contact, (self.clock)(), email.as_deref()).await {
                Ok(_) => {
                    tracing::info!(contact_id = %contact, "unsubscribed");
                    page(StatusCode::OK, "配信を停止しました / Unsubscribed", "<h1>配信を停止しました / You are unsubscribed</h1><p>今後、ご案内メールはお送りしません。<br>You will not receive further emails from us.</p>")
                }
                Err(e) => crate::store_failure(&e),
            },
            _ => page(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", "<p>GET or POST</p>"),
        }
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}
