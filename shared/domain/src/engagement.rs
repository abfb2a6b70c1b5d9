//! Engagement coming in from outside: SES's event publishing (opens, clicks, bounces,
//! complaints) and the web site's `POST /events`.

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::records::{ContactId, InteractionId, InteractionKind, LeadId};
use crate::submission::FieldError;

/// One SES event, reduced to what leadflow keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct SesEngagement {
    /// SES's message id, which leadflow recorded when it sent the email.
    pub message_id: String,
    pub interaction_id: InteractionId,
    pub kind: InteractionKind,
    pub occurred_at: DateTime<Utc>,
    pub properties: Map<String, Value>,
    /// A permanent bounce or a complaint: never email this contact again.
    pub suppress: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SesParseError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not an SES event: {0}")]
    NotSes(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum SesEvent {
    Engagement(SesEngagement),
    /// A well-formed event leadflow does not act on (Send, Reject, DeliveryDelay, a transient bounce is kept).
    Ignored(String),
}

/// What SES reported, as leadflow reads it: the wire formats (SNS, EventBridge, raw) are
/// parsed by the adapter (`leadflow_aws::ses_events`); what to keep is decided here.
#[derive(Debug, Clone, PartialEq)]
pub struct SesNotice {
    pub message_id: String,
    /// When the email was sent (`mail.timestamp`), for events without their own time.
    pub mail_timestamp: Option<String>,
    /// The event's own time, as SES wrote it (part of the event's identity).
    pub timestamp: Option<String>,
    pub kind: SesNoticeKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SesNoticeKind {
    Delivery,
    Open,
    Click {
        link: String,
        link_tags: Option<Value>,
    },
    Bounce {
        bounce_type: String,
        sub_type: String,
    },
    Complaint {
        feedback_type: String,
    },
    /// Send, Reject, DeliveryDelay, Rendering Failure, Subscription…: not acted on.
    Other(String),
}

fn parse_time(t: Option<&str>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

impl SesNotice {
    /// The interaction leadflow keeps for this event, with its stable id, and whether the
    /// contact must never be emailed again (a permanent bounce, a complaint).
    pub fn engagement(self) -> Result<SesEvent, SesParseError> {
        let mut properties = Map::new();
        properties.insert("ses_message_id".into(), self.message_id.clone().into());
        let ts = self.timestamp.clone().unwrap_or_default();
        let (kind, suppress, key) = match self.kind {
            SesNoticeKind::Delivery => (InteractionKind::EmailDelivered, None, String::new()),
            SesNoticeKind::Open => (InteractionKind::EmailOpened, None, ts),
            SesNoticeKind::Click { link, link_tags } => {
                properties.insert("link".into(), link.clone().into());
                if let Some(tags) = link_tags {
                    properties.insert("link_tags".into(), tags);
                }
                (InteractionKind::EmailClicked, None, format!("{ts}#{link}"))
            }
            SesNoticeKind::Bounce { bounce_type, sub_type } => {
                let suppress = (bounce_type == "Permanent").then(|| format!("bounce: {bounce_type}/{sub_type}"));
                properties.insert("bounce_type".into(), bounce_type.into());
                properties.insert("bounce_subtype".into(), sub_type.into());
                (InteractionKind::EmailBounced, suppress, String::new())
            }
            SesNoticeKind::Complaint { feedback_type } => {
                let suppress = Some(format!("complaint: {feedback_type}"));
                properties.insert("feedback_type".into(), feedback_type.into());
                (InteractionKind::EmailComplained, suppress, String::new())
            }
            SesNoticeKind::Other(other) => return Ok(SesEvent::Ignored(format!("event type {other}"))),
        };
        let occurred_at = parse_time(self.timestamp.as_deref())
            .or_else(|| parse_time(self.mail_timestamp.as_deref()))
            .ok_or_else(|| SesParseError::NotSes("no timestamp".into()))?;
        let interaction_id = InteractionId::derived(&["ses", &self.message_id, kind.name(), &key]);
        Ok(SesEvent::Engagement(SesEngagement {
            message_id: self.message_id,
            interaction_id,
            kind,
            occurred_at,
            properties,
            suppress,
        }))
    }
}

/// Limits of `POST /events`.
pub const MAX_EVENT_BYTES: usize = 8 * 1024;
pub const MAX_EVENT_PROPERTIES: usize = 20;
pub const MAX_PAST: Duration = Duration::days(7);
/// How old an event a browser may report (a beacon is sent as it happens).
pub const MAX_PAST_BROWSER: Duration = Duration::hours(1);
pub const MAX_FUTURE: Duration = Duration::minutes(5);

/// A site allowed to send events, identified by its public key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    pub key: String,
    pub site_id: String,
    pub name: String,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

impl Site {
    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.allowed_origins
            .iter()
            .any(|o| o == "*" || o.trim_end_matches('/').eq_ignore_ascii_case(origin))
    }
}

/// Who an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Lead(LeadId),
    Contact(ContactId),
    Visitor(String),
}

/// A valid `POST /events` request.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRequest {
    pub interaction_id: InteractionId,
    pub kind: InteractionKind,
    pub subject: Subject,
    /// The visitor cookie, also when the subject is known, so later anonymous events link.
    pub visitor_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub properties: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    #[serde(default)]
    site_key: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    lead_id: Option<String>,
    #[serde(default)]
    contact_id: Option<String>,
    #[serde(default)]
    visitor_id: Option<String>,
    #[serde(default)]
    event_id: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    occurred_at: Option<String>,
    #[serde(default)]
    properties: Option<Map<String, Value>>,
}

/// The site key carried in the body (sendBeacon cannot set headers).
pub fn site_key_in(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(body)
        .ok()?
        .get("site_key")?
        .as_str()
        .map(str::to_owned)
}

fn valid_token(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

pub fn event_kind(name: &str) -> Option<InteractionKind> {
    Some(match name {
        "page_view" | "page_viewed" => InteractionKind::PageViewed,
        "download" | "content_downloaded" => InteractionKind::ContentDownloaded,
        "webinar_registered" => InteractionKind::WebinarRegistered,
        "webinar_attended" => InteractionKind::WebinarAttended,
        // Email and form events come from SES and intake only: a page cannot claim them.
        "email_delivered" | "email_opened" | "email_clicked" | "email_bounced" | "email_complained"
        | "form_submitted" | "unsubscribed" | "address_confirmed" | "imported" => return None,
        custom
            if custom.len() <= 40
                && custom
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && !custom.is_empty() =>
        {
            InteractionKind::Custom(custom.to_owned())
        }
        _ => return None,
    })
}

/// A number DynamoDB can store: zero, or a magnitude from 1e-130 up to (not including) 1e126.
/// Anything else would make the write fail, so it is refused as a field error here.
fn storable_number(n: &serde_json::Number) -> bool {
    if n.is_i64() || n.is_u64() {
        return true;
    }
    n.as_f64()
        .is_some_and(|f| f.is_finite() && (f == 0.0 || (1e-130..1e126).contains(&f.abs())))
}

/// Who sends an event: a browser on the public route, or a server on the IAM-authorised one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSender {
    /// Anyone on the internet: identifies people only by the visitor id the tracking snippet
    /// keeps, linked to a lead only through a form submission that carried it.
    Browser,
    /// A back-end integration authorised by IAM: may name a lead or a contact.
    Server,
}

/// Parses and checks an events body. Errors come back together, one per field.
pub fn parse_event(
    body: &[u8],
    site: &Site,
    now: DateTime<Utc>,
    sender: EventSender,
) -> Result<EventRequest, Vec<FieldError>> {
    let raw: RawEvent = serde_json::from_slice(body)
        .map_err(|e| vec![FieldError::new("_body", format!("is not a valid event: {e}"))])?;
    let _ = raw.site_key;
    let mut errors = Vec::new();
    let kind = match raw.kind.as_deref() {
        None | Some("") => {
            errors.push(FieldError::new("type", "is required"));
            None
        }
        Some(k) => {
            let kind = event_kind(k);
            if kind.is_none() {
                errors.push(FieldError::new("type", "must be page_view, download, webinar_registered, webinar_attended or a custom name of a-z, 0-9 and _"));
            }
            kind
        }
    };
    if sender == EventSender::Browser {
        for (field, given) in [
            ("lead_id", raw.lead_id.is_some()),
            ("contact_id", raw.contact_id.is_some()),
        ] {
            if given {
                errors.push(FieldError::new(
                    field,
                    "is not accepted from browsers: send visitor_id (server-side senders use the IAM-authorised POST /internal/events)",
                ));
            }
        }
    }
    let lead = raw.lead_id.as_deref().map(|v| LeadId::parse(v).ok_or(()));
    let contact = raw.contact_id.as_deref().map(|v| ContactId::parse(v).ok_or(()));
    if matches!(lead, Some(Err(()))) {
        errors.push(FieldError::new("lead_id", "is not a valid id"));
    }
    if matches!(contact, Some(Err(()))) {
        errors.push(FieldError::new("contact_id", "is not a valid id"));
    }
    if let Some(v) = &raw.visitor_id {
        if !valid_token(v, 64) {
            errors.push(FieldError::new(
                "visitor_id",
                "must be 1-64 characters of letters, digits, '-', '_' or '.'",
            ));
        }
    }
    if let Some(v) = &raw.event_id {
        if !valid_token(v, 64) {
            errors.push(FieldError::new(
                "event_id",
                "must be 1-64 characters of letters, digits, '-', '_' or '.'",
            ));
        }
    }
    let mut properties = raw.properties.unwrap_or_default();
    if properties.len() > MAX_EVENT_PROPERTIES {
        errors.push(FieldError::new(
            "properties",
            format!("must have at most {MAX_EVENT_PROPERTIES} entries"),
        ));
    }
    for (k, v) in &properties {
        let ok = match v {
            Value::String(s) => s.chars().count() <= 500,
            Value::Number(n) => storable_number(n),
            Value::Bool(_) => true,
            _ => false,
        };
        if !ok || k.is_empty() || k.len() > 64 {
            errors.push(FieldError::new(
                format!("properties.{}", k.chars().take(64).collect::<String>()),
                "must be a string (at most 500 characters), a number between 1e-130 and 1e126 in size, or a boolean",
            ));
        }
    }
    if let Some(url) = &raw.url {
        if url.len() > 2048 || !(url.starts_with("https://") || url.starts_with("http://")) {
            errors.push(FieldError::new(
                "url",
                "must be an http(s) URL of at most 2048 characters",
            ));
        } else {
            properties.insert("url".into(), url.clone().into());
        }
    }
    // A browser reports what just happened: backdating would spread capped points over past days.
    let max_past = match sender {
        EventSender::Browser => MAX_PAST_BROWSER,
        EventSender::Server => MAX_PAST,
    };
    let occurred_at = match raw.occurred_at.as_deref() {
        None => Some(now),
        Some(t) => match DateTime::parse_from_rfc3339(t) {
            Ok(t) if t.with_timezone(&Utc) >= now - max_past && t.with_timezone(&Utc) <= now + MAX_FUTURE => {
                Some(t.with_timezone(&Utc))
            }
            Ok(_) => {
                errors.push(FieldError::new(
                    "occurred_at",
                    match sender {
                        EventSender::Browser => "must be within the last hour",
                        EventSender::Server => "must be within the last 7 days",
                    },
                ));
                None
            }
            Err(_) => {
                errors.push(FieldError::new("occurred_at", "must be an RFC 3339 time"));
                None
            }
        },
    };
    let subject = match (lead, contact, &raw.visitor_id) {
        (Some(Ok(l)), _, _) => Some(Subject::Lead(l)),
        (None, Some(Ok(c)), _) => Some(Subject::Contact(c)),
        (None, None, Some(v)) => Some(Subject::Visitor(v.clone())),
        (None, None, None) => {
            errors.push(FieldError::new(
                "visitor_id",
                "is required when neither lead_id nor contact_id is given",
            ));
            None
        }
        _ => None,
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let (Some(kind), Some(subject), Some(occurred_at)) = (kind, subject, occurred_at) else {
        return Err(vec![FieldError::new("_body", "is not a valid event")]);
    };
    properties.insert("site_id".into(), site.site_id.clone().into());
    if let Some(v) = &raw.visitor_id {
        properties.insert("visitor_id".into(), v.clone().into());
    }
    let interaction_id = match &raw.event_id {
        Some(e) => InteractionId::derived(&["event", &site.site_id, e]),
        None => InteractionId::generate(),
    };
    Ok(EventRequest {
        interaction_id,
        kind,
        subject,
        visitor_id: raw.visitor_id,
        occurred_at,
        properties,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn site() -> Site {
        Site {
            key: "pk_demo".into(),
            site_id: "demo".into(),
            name: "Demo".into(),
            allowed_origins: vec!["http://localhost:3000".into()],
        }
    }

    #[test]
    fn events_parse_and_validate() {
        let now = Utc::now();
        let lead = LeadId::generate();
        let ok = json!({"type": "page_view", "lead_id": lead.to_string(), "url": "https://example.jp/pricing", "event_id": "e-1", "visitor_id": "v1"});
        let e = parse_event(ok.to_string().as_bytes(), &site(), now, EventSender::Server).unwrap();
        assert_eq!(e.kind, InteractionKind::PageViewed);
        assert_eq!(e.subject, Subject::Lead(lead));
        assert_eq!(e.properties["url"], "https://example.jp/pricing");
        assert_eq!(
            e.interaction_id,
            parse_event(ok.to_string().as_bytes(), &site(), now, EventSender::Server)
                .unwrap()
                .interaction_id,
            "event ids make retries idempotent"
        );
        let anon = parse_event(
            br#"{"type":"seminar_booked","visitor_id":"abc"}"#,
            &site(),
            now,
            EventSender::Server,
        )
        .unwrap();
        assert_eq!(anon.subject, Subject::Visitor("abc".into()));
        assert_eq!(anon.kind, InteractionKind::Custom("seminar_booked".into()));

        let bad = json!({"type": "email_opened", "lead_id": "nope", "url": "javascript:x", "occurred_at": "2020-01-01T00:00:00Z", "properties": {"a": {"deep": 1}}});
        let errs = parse_event(bad.to_string().as_bytes(), &site(), now, EventSender::Server).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["type", "lead_id", "properties.a", "url", "occurred_at"],
            "{errs:?}"
        );
        let errs = parse_event(br#"{"type":"page_view"}"#, &site(), now, EventSender::Server).unwrap_err();
        assert_eq!(errs[0].field, "visitor_id");
        assert!(parse_event(
            br#"{"type":"page_view","visitor_id":"a","extra":1}"#,
            &site(),
            now,
            EventSender::Server
        )
        .is_err());
    }

    #[test]
    fn browsers_cannot_backdate_events() {
        let now = Utc::now();
        let two_hours_ago = (now - Duration::hours(2)).to_rfc3339();
        let body = format!(r#"{{"type":"page_view","visitor_id":"v","occurred_at":"{two_hours_ago}"}}"#);
        let errs = parse_event(body.as_bytes(), &site(), now, EventSender::Browser).unwrap_err();
        assert_eq!(errs[0].field, "occurred_at");
        assert!(parse_event(body.as_bytes(), &site(), now, EventSender::Server).is_ok());
    }

    #[test]
    fn numbers_dynamodb_cannot_store_are_field_errors() {
        let now = Utc::now();
        for n in ["1e200", "-1e126", "1e-200"] {
            let body = format!(r#"{{"type":"page_view","visitor_id":"v","properties":{{"n":{n}}}}}"#);
            let errs = parse_event(body.as_bytes(), &site(), now, EventSender::Browser).unwrap_err();
            assert_eq!(errs[0].field, "properties.n", "{n}: {errs:?}");
        }
        for n in ["0", "-3", "18446744073709551615", "1.5e125", "2.5e-100", "0.0"] {
            let body = format!(r#"{{"type":"page_view","visitor_id":"v","properties":{{"n":{n}}}}}"#);
            assert!(
                parse_event(body.as_bytes(), &site(), now, EventSender::Browser).is_ok(),
                "{n}"
            );
        }
    }

    #[test]
    fn browsers_identify_people_only_by_visitor_id() {
        let now = Utc::now();
        let lead = LeadId::generate().to_string();
        let contact = ContactId::generate().to_string();
        for body in [
            json!({"type": "page_view", "lead_id": lead}),
            json!({"type": "page_view", "contact_id": contact}),
            json!({"type": "webinar_attended", "lead_id": lead, "visitor_id": "v1"}),
        ] {
            let errs = parse_event(body.to_string().as_bytes(), &site(), now, EventSender::Browser).unwrap_err();
            assert!(
                errs.iter().any(|e| e.field == "lead_id" || e.field == "contact_id"),
                "{errs:?}"
            );
            assert!(parse_event(body.to_string().as_bytes(), &site(), now, EventSender::Server).is_ok());
        }
        let v = parse_event(
            br#"{"type":"page_view","visitor_id":"v1"}"#,
            &site(),
            now,
            EventSender::Browser,
        )
        .unwrap();
        assert_eq!(v.subject, Subject::Visitor("v1".into()));
    }
}

/// What the events API needs from the record store.
pub trait EventStore: Send + Sync {
    fn contact_of_lead(
        &self,
        lead: LeadId,
    ) -> impl std::future::Future<Output = Result<Option<ContactId>, crate::ports::StoreError>> + Send;
    /// The contact's most recently created lead.
    fn latest_lead(
        &self,
        contact: ContactId,
    ) -> impl std::future::Future<Output = Result<Option<LeadId>, crate::ports::StoreError>> + Send;
    fn visitor_link(
        &self,
        visitor: &str,
    ) -> impl std::future::Future<Output = Result<Option<(LeadId, ContactId)>, crate::ports::StoreError>> + Send;
    /// Stores an interaction of a lead (with its outbox entry); `false` if it exists already.
    fn put_interaction(
        &self,
        ix: &crate::records::Interaction,
    ) -> impl std::future::Future<Output = Result<bool, crate::ports::StoreError>> + Send;
    /// Stores an anonymous interaction under its visitor; `false` if it exists already.
    fn put_anonymous(
        &self,
        visitor: &str,
        ix: &crate::records::Interaction,
    ) -> impl std::future::Future<Output = Result<bool, crate::ports::StoreError>> + Send;
}

/// Site keys.
pub trait SiteCatalog: Send + Sync {
    fn site(
        &self,
        key: &str,
    ) -> impl std::future::Future<Output = Result<Option<std::sync::Arc<Site>>, crate::ports::StoreError>> + Send;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    /// Stored against a lead and queued for scoring (`queued` false: the outbox sends it later).
    Recorded {
        interaction_id: InteractionId,
        lead_id: LeadId,
        queued: bool,
    },
    /// Stored under the visitor until they identify themselves with a form.
    Anonymous { interaction_id: InteractionId },
    /// The same event (same `event_id`) was recorded before.
    Duplicate { interaction_id: InteractionId },
    /// The lead or contact named does not exist.
    UnknownSubject,
}

/// Records an event: against its lead when known, else under its visitor.
pub async fn record_event(
    store: &impl EventStore,
    queue: &impl crate::ports::InteractionQueue,
    req: EventRequest,
) -> Result<EventOutcome, crate::ports::StoreError> {
    let target = match &req.subject {
        Subject::Lead(l) => store.contact_of_lead(*l).await?.map(|c| (*l, c)),
        Subject::Contact(c) => store.latest_lead(*c).await?.map(|l| (l, *c)),
        Subject::Visitor(v) => store.visitor_link(v).await?,
    };
    let mut ix = crate::records::Interaction {
        interaction_id: req.interaction_id,
        lead_id: LeadId(uuid::Uuid::nil()),
        contact_id: ContactId(uuid::Uuid::nil()),
        kind: req.kind,
        occurred_at: req.occurred_at,
        properties: req.properties,
    };
    let Some((lead_id, contact_id)) = target else {
        return match &req.subject {
            // Unlinked ids are nil until a form submission links the visitor to a lead.
            Subject::Visitor(v) => Ok(if store.put_anonymous(v, &ix).await? {
                EventOutcome::Anonymous {
                    interaction_id: ix.interaction_id,
                }
            } else {
                EventOutcome::Duplicate {
                    interaction_id: ix.interaction_id,
                }
            }),
            _ => Ok(EventOutcome::UnknownSubject),
        };
    };
    ix.lead_id = lead_id;
    ix.contact_id = contact_id;
    if !store.put_interaction(&ix).await? {
        return Ok(EventOutcome::Duplicate {
            interaction_id: ix.interaction_id,
        });
    }
    let queued = match queue
        .publish(&crate::message::InteractionMessage::for_interaction(&ix))
        .await
    {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(interaction_id = %ix.interaction_id, error = %e, "event not queued; left in the outbox");
            false
        }
    };
    Ok(EventOutcome::Recorded {
        interaction_id: ix.interaction_id,
        lead_id,
        queued,
    })
}
