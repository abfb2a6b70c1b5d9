//! The scoring queue.

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::MessageAttributeValue;
use aws_sdk_sqs::Client;

use leadflow_domain::message::InteractionMessage;
use leadflow_domain::ports::{InteractionQueue, QueueError};

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }
}

impl InteractionQueue for SqsQueue {
    async fn publish(&self, message: &InteractionMessage) -> Result<(), QueueError> {
        let body = serde_json::to_string(message).map_err(|e| QueueError(e.to_string()))?;
        let schema = serde_json::to_value(message)
            .ok()
            .and_then(|v| v["schema"].as_str().map(str::to_owned))
            .unwrap_or_default();
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .message_attributes(
                "schema",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(schema)
                    .build()
                    .map_err(|e| QueueError(e.to_string()))?,
            )
            .send()
            .await
            .map_err(|e| QueueError(DisplayErrorContext(&e).to_string()))?;
        Ok(())
    }
}
