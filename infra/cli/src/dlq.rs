//! `dlq list` (every dead-letter queue of the stack) and `dlq replay` (the scoring one: its
//! messages go back to the scoring queue).

use serde_json::{json, Value};

use crate::{Error, Target};

/// Up to `max` (1-10) messages of a dead-letter queue, hidden for `hide_secs` (0: left
/// visible, a look that changes nothing).
async fn receive(t: &Target, queue: &str, max: i32, hide_secs: i32) -> Result<Vec<aws_sdk_sqs::types::Message>, Error> {
    let out = t
        .clients
        .sqs
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(max.clamp(1, 10))
        .visibility_timeout(hide_secs)
        .send()
        .await?;
    Ok(out.messages.unwrap_or_default())
}

/// `dlq list`: each dead-letter queue the tool knows (scoring, engagement, schedule) with up
/// to `max` of its messages, left in place; an empty list says the queue is empty.
pub async fn dlq_list(t: &Target, max: i32) -> Result<Vec<(&'static str, Vec<Value>)>, Error> {
    let mut out = Vec::new();
    for (name, url) in [
        ("ScoringDeadLetterQueue", &t.scoring_dlq_url),
        ("EngagementDeadLetterQueue", &t.engagement_dlq_url),
        ("ScheduleDeadLetterQueue", &t.schedule_dlq_url),
    ] {
        if url.is_empty() {
            continue;
        }
        let messages = receive(t, url, max, 0)
            .await?
            .iter()
            .map(|m| json!({"message_id": m.message_id(), "body": serde_json::from_str::<Value>(m.body().unwrap_or("")).unwrap_or_else(|_| Value::String(m.body().unwrap_or("").into()))}))
            .collect();
        out.push((name, messages));
    }
    Ok(out)
}

/// `dlq replay`: every dead-lettered message back to the scoring queue, then out of the DLQ.
pub async fn dlq_replay(t: &Target) -> Result<usize, Error> {
    let mut n = 0;
    loop {
        let msgs = receive(t, &t.scoring_dlq_url, 10, 60).await?;
        if msgs.is_empty() {
            return Ok(n);
        }
        for m in msgs {
            t.clients
                .sqs
                .send_message()
                .queue_url(&t.scoring_queue_url)
                .message_body(m.body().unwrap_or(""))
                .message_attributes(
                    leadflow_aws::sqs::REPLAYED_ATTRIBUTE,
                    aws_sdk_sqs::types::MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value("1")
                        .build()
                        .map_err(|e| e.to_string())?,
                )
                .send()
                .await?;
            if let Some(h) = m.receipt_handle() {
                t.clients
                    .sqs
                    .delete_message()
                    .queue_url(&t.scoring_dlq_url)
                    .receipt_handle(h)
                    .send()
                    .await?;
            }
            n += 1;
        }
    }
}

/// The ids of dead-lettered messages (scoring and engagement DLQs) that mention any of
/// `needles` (left in place; at most a hundred messages per queue are looked at).
pub async fn dlq_mentions(t: &Target, needles: &[String]) -> Result<Vec<String>, Error> {
    let mut found = Vec::new();
    for queue in [&t.scoring_dlq_url, &t.engagement_dlq_url] {
        if !queue.is_empty() {
            found.extend(mentions_in(t, queue, needles).await?);
        }
    }
    Ok(found)
}

async fn mentions_in(t: &Target, queue: &str, needles: &[String]) -> Result<Vec<String>, Error> {
    let mut seen = std::collections::BTreeSet::new();
    let mut found = Vec::new();
    for _ in 0..10 {
        let msgs = receive(t, queue, 10, 0).await?;
        let mut new = 0;
        for m in &msgs {
            let id = m.message_id().unwrap_or("").to_owned();
            if !seen.insert(id.clone()) {
                continue;
            }
            new += 1;
            let body = m.body().unwrap_or("");
            if needles.iter().any(|n| body.contains(n.as_str())) {
                found.push(id);
            }
        }
        if new == 0 {
            break;
        }
    }
    Ok(found)
}
