//! SQS event source mappings on one machine: receive a batch as Lambda's poller would, hand
//! it to the function as an `SqsEvent`, delete what succeeded, and leave the reported
//! failures to come back (at once, or after the visibility timeout as on AWS).

use std::future::Future;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use serde_json::{json, Value};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Polled {
    pub received: usize,
    pub failed: usize,
}

/// When a reported failure comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// After the queue's visibility timeout, as on AWS.
    AfterTimeout,
    /// At once (tests and demos that do not want to wait minutes).
    Now,
}

/// One poll: at most `batch_size` messages to `handler`, partial batch failures honoured.
pub async fn poll_once<F, Fut>(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    arn: &str,
    batch_size: i32,
    retry: Retry,
    handler: F,
) -> Result<Polled, String>
where
    F: FnOnce(Value) -> Fut,
    Fut: Future<Output = Result<Value, String>>,
{
    // As Lambda's poller: receives of up to ten until the batch is full or the queue has no more.
    let mut messages = Vec::new();
    while messages.len() < batch_size.max(1) as usize {
        let want = (batch_size as usize - messages.len()).clamp(1, 10);
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(want as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
        let got = got.messages.unwrap_or_default();
        let short = got.len() < want;
        messages.extend(got);
        if short {
            break;
        }
    }
    if messages.is_empty() {
        return Ok(Polled::default());
    }
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone())))
                        .collect()
                })
                .unwrap_or_default();
            // As Lambda writes them: camelCase, string values only here.
            let message_attributes: serde_json::Map<String, Value> = m
                .message_attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| {
                            let value = json!({
                                "stringValue": v.string_value(),
                                "stringListValues": [],
                                "binaryListValues": [],
                                "dataType": v.data_type(),
                            });
                            (k.clone(), value)
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": crate::REGION,
            })
        })
        .collect();
    let response = handler(json!({ "Records": records })).await;
    // A function error fails the whole batch, as on AWS.
    let failed: Vec<String> = match response {
        Ok(v) => v
            .get("batchItemFailures")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|f| f.get("itemIdentifier").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, "function failed the whole batch");
            messages
                .iter()
                .filter_map(|m| m.message_id().map(str::to_owned))
                .collect()
        }
    };
    let done: Vec<DeleteMessageBatchRequestEntry> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| !m.message_id().is_some_and(|id| failed.iter().any(|f| f == id)))
        .filter_map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(m.receipt_handle()?)
                .build()
                .ok()
        })
        .collect();
    if !done.is_empty() {
        sqs.delete_message_batch()
            .queue_url(url)
            .set_entries(Some(done))
            .send()
            .await
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
    }
    if retry == Retry::Now {
        for m in messages
            .iter()
            .filter(|m| m.message_id().is_some_and(|id| failed.iter().any(|f| f == id)))
        {
            if let Some(h) = m.receipt_handle() {
                let _ = sqs
                    .change_message_visibility()
                    .queue_url(url)
                    .receipt_handle(h)
                    .visibility_timeout(0)
                    .send()
                    .await;
            }
        }
    }
    Ok(Polled {
        received: messages.len(),
        failed: failed.len(),
    })
}
