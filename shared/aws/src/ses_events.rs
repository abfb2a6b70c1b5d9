//! SES event publishing as it reaches the engagement queue: an SNS notification, an
//! EventBridge event, or the raw event (SNS raw message delivery). Parsed with serde into the
//! domain's [`SesNotice`]; what leadflow keeps of it is the domain's decision.
//! (`aws_lambda_events` has no types for SES event publishing; its SNS record is the Lambda
//! trigger's shape, not the notification body SQS receives.)

use serde::Deserialize;
use serde_json::Value;

use leadflow_domain::engagement::{SesEvent, SesNotice, SesNoticeKind, SesParseError};

/// The SNS notification envelope (only what is read).
#[derive(Deserialize)]
struct SnsNotification {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Message")]
    message: String,
}

/// The EventBridge envelope.
#[derive(Deserialize)]
struct EventBridgeEvent {
    source: String,
    detail: Value,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Envelope {
    Sns(SnsNotification),
    EventBridge(EventBridgeEvent),
    Raw(Value),
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Stamp {
    timestamp: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Mail {
    message_id: String,
    timestamp: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Click {
    timestamp: Option<String>,
    #[serde(default)]
    link: String,
    link_tags: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Bounce {
    timestamp: Option<String>,
    bounce_type: Option<String>,
    bounce_sub_type: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Complaint {
    timestamp: Option<String>,
    complaint_feedback_type: Option<String>,
}

/// One SES event record, field names as in SES's documented examples.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesRecord {
    event_type: Option<String>,
    notification_type: Option<String>,
    mail: Option<Mail>,
    delivery: Option<Stamp>,
    open: Option<Stamp>,
    click: Option<Click>,
    bounce: Option<Bounce>,
    complaint: Option<Complaint>,
}

fn record(value: Value) -> Result<SesRecord, SesParseError> {
    serde_json::from_value(value).map_err(|e| SesParseError::NotSes(e.to_string()))
}

/// Reads an SES event from a queue message body.
pub fn parse_ses(body: &str) -> Result<SesEvent, SesParseError> {
    let envelope: Envelope = serde_json::from_str(body).map_err(|e| SesParseError::NotJson(e.to_string()))?;
    let r = match envelope {
        Envelope::Sns(n) if n.kind == "Notification" => {
            let inner: Value =
                serde_json::from_str(&n.message).map_err(|e| SesParseError::NotJson(format!("SNS Message: {e}")))?;
            record(inner)?
        }
        Envelope::Sns(n) => return Err(SesParseError::NotSes(format!("SNS message of type {}", n.kind))),
        Envelope::EventBridge(e) if e.source == "aws.ses" => record(e.detail)?,
        Envelope::EventBridge(e) => return Err(SesParseError::NotSes(format!("EventBridge event from {}", e.source))),
        Envelope::Raw(v) => record(v)?,
    };
    let event_type = r
        .event_type
        .or(r.notification_type)
        .ok_or_else(|| SesParseError::NotSes("no eventType".into()))?;
    let mail = r
        .mail
        .ok_or_else(|| SesParseError::NotSes("no mail.messageId".into()))?;
    let (timestamp, kind) = match event_type.as_str() {
        "Delivery" => (r.delivery.unwrap_or_default().timestamp, SesNoticeKind::Delivery),
        "Open" => (r.open.unwrap_or_default().timestamp, SesNoticeKind::Open),
        "Click" => {
            let c = r.click.unwrap_or_default();
            (
                c.timestamp,
                SesNoticeKind::Click {
                    link: c.link,
                    link_tags: c.link_tags,
                },
            )
        }
        "Bounce" => {
            let b = r.bounce.unwrap_or_default();
            (
                b.timestamp,
                SesNoticeKind::Bounce {
                    bounce_type: b.bounce_type.unwrap_or_else(|| "Undetermined".into()),
                    sub_type: b.bounce_sub_type.unwrap_or_default(),
                },
            )
        }
        "Complaint" => {
            let c = r.complaint.unwrap_or_default();
            (
                c.timestamp,
                SesNoticeKind::Complaint {
                    feedback_type: c.complaint_feedback_type.unwrap_or_else(|| "unspecified".into()),
                },
            )
        }
        other => (None, SesNoticeKind::Other(other.to_owned())),
    };
    SesNotice {
        message_id: mail.message_id,
        mail_timestamp: mail.timestamp,
        timestamp,
        kind,
    }
    .engagement()
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadflow_domain::records::InteractionKind;
    use serde_json::json;

    #[test]
    fn ses_open_in_sns_envelope() {
        let ses = json!({
            "eventType": "Open",
            "mail": {"timestamp": "2026-11-02T00:00:00.000Z", "messageId": "0100017-abc", "destination": ["a@example.jp"], "tags": {}},
            "open": {"timestamp": "2026-11-02T01:02:03.000Z", "userAgent": "Mozilla", "ipAddress": "192.0.2.1"}
        });
        let sns = json!({"Type": "Notification", "MessageId": "x", "TopicArn": "arn:aws:sns:us-east-1:123:ses", "Message": ses.to_string()});
        let SesEvent::Engagement(e) = parse_ses(&sns.to_string()).unwrap() else {
            panic!()
        };
        assert_eq!(e.kind, InteractionKind::EmailOpened);
        assert_eq!(e.message_id, "0100017-abc");
        assert_eq!(e.occurred_at.to_rfc3339(), "2026-11-02T01:02:03+00:00");
        assert!(e.suppress.is_none());
        // The same event delivered again is the same interaction.
        let SesEvent::Engagement(again) = parse_ses(&ses.to_string()).unwrap() else {
            panic!()
        };
        assert_eq!(again.interaction_id, e.interaction_id);
    }

    #[test]
    fn ses_bounce_and_complaint_suppress() {
        let bounce = json!({"eventType": "Bounce", "mail": {"messageId": "m1", "timestamp": "2026-11-02T00:00:00Z"},
            "bounce": {"bounceType": "Permanent", "bounceSubType": "General", "timestamp": "2026-11-02T00:00:01Z", "bouncedRecipients": [{"emailAddress": "a@example.jp"}]}});
        let SesEvent::Engagement(b) = parse_ses(&bounce.to_string()).unwrap() else {
            panic!()
        };
        assert_eq!(b.suppress.as_deref(), Some("bounce: Permanent/General"));
        let transient = json!({"eventType": "Bounce", "mail": {"messageId": "m1", "timestamp": "2026-11-02T00:00:00Z"},
            "bounce": {"bounceType": "Transient", "bounceSubType": "MailboxFull", "timestamp": "2026-11-02T00:00:01Z"}});
        let SesEvent::Engagement(t) = parse_ses(&transient.to_string()).unwrap() else {
            panic!()
        };
        assert!(t.suppress.is_none());
        let complaint = json!({"source": "aws.ses", "detail-type": "Email Complaint Received", "detail": {"eventType": "Complaint",
            "mail": {"messageId": "m2", "timestamp": "2026-11-02T00:00:00Z"}, "complaint": {"complaintFeedbackType": "abuse", "timestamp": "2026-11-02T00:00:02Z"}}});
        let SesEvent::Engagement(c) = parse_ses(&complaint.to_string()).unwrap() else {
            panic!()
        };
        assert_eq!(c.suppress.as_deref(), Some("complaint: abuse"));
        assert_eq!(c.kind, InteractionKind::EmailComplained);
    }

    #[test]
    fn ses_other_events_and_garbage() {
        let send =
            json!({"eventType": "Send", "mail": {"messageId": "m", "timestamp": "2026-11-02T00:00:00Z"}, "send": {}});
        assert!(matches!(parse_ses(&send.to_string()), Ok(SesEvent::Ignored(_))));
        assert!(matches!(parse_ses("not json"), Err(SesParseError::NotJson(_))));
        assert!(matches!(
            parse_ses("{\"eventType\": \"Open\"}"),
            Err(SesParseError::NotSes(_))
        ));
    }
}
