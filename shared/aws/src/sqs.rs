//! The scoring queue.

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use aws_sdk_sqs::Client;

use leadflow_domain::message::InteractionMessage;
use leadflow_domain::ports::{InteractionQueue, QueueError};

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    /// One `SendMessageBatch` of at most ten messages: each message's result.
    async fn publish_batch(&self, chunk: &[InteractionMessage]) -> Vec<Result<(), QueueError>> {
        let mut results: Vec<Result<(), QueueError>> = vec![Ok(()); chunk.len()];
        let mut entries = Vec::with_capacity(chunk.len());
        for (i, m) in chunk.iter().enumerate() {
            let built = encode(m).and_then(|(body, schema)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .message_attributes("schema", schema)
                    .build()
                    .map_err(|e| QueueError(e.to_string()))
            });
            match built {
                Ok(e) => entries.push(e),
                Err(e) => results[i] = Err(e),
            }
        }
        if entries.is_empty() {
            return results;
        }
        match self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(sent) => {
                for f in sent.failed {
                    if let Some(r) = f.id.parse::<usize>().ok().and_then(|i| results.get_mut(i)) {
                        *r = Err(QueueError(format!("{}: {}", f.code, f.message.unwrap_or_default())));
                    }
                }
            }
            Err(e) => {
                let e = QueueError(DisplayErrorContext(&e).to_string());
                for r in results.iter_mut().filter(|r| r.is_ok()) {
                    *r = Err(e.clone());
                }
            }
        }
        results
    }

    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }
}

/// A message's body and its `schema` attribute.
fn encode(message: &InteractionMessage) -> Result<(String, MessageAttributeValue), QueueError> {
    let body = serde_json::to_string(message).map_err(|e| QueueError(e.to_string()))?;
    let schema = serde_json::to_value(message)
        .ok()
        .and_then(|v| v["schema"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let attr = MessageAttributeValue::builder()
        .data_type("String")
        .string_value(schema)
        .build()
        .map_err(|e| QueueError(e.to_string()))?;
    Ok((body, attr))
}

/// The most messages one `SendMessageBatch` carries.
const SQS_BATCH: usize = 10;

impl InteractionQueue for SqsQueue {
    async fn publish(&self, message: &InteractionMessage) -> Result<(), QueueError> {
        let (body, schema) = encode(message)?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .message_attributes("schema", schema)
            .send()
            .await
            .map_err(|e| QueueError(DisplayErrorContext(&e).to_string()))?;
        Ok(())
    }

    /// `SendMessageBatch`, ten at a time, the batches at once; an entry the queue refused is
    /// that message's error.
    async fn publish_all(&self, messages: &[InteractionMessage]) -> Vec<Result<(), QueueError>> {
        let batches = messages.chunks(SQS_BATCH).map(|chunk| self.publish_batch(chunk));
        futures::future::join_all(batches).await.into_iter().flatten().collect()
    }
}

/// The message attribute `leadflow dlq replay` puts on a message it sends back from a
/// dead-letter queue, so the consumer counts replays (EMF `DlqReplays`).
pub const REPLAYED_ATTRIBUTE: &str = "leadflow-replayed";
