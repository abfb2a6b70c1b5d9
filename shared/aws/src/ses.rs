//! Sending email with SES v2: raw MIME, the configuration set (engagement events), a tag
//! naming the lead.

use aws_sdk_sesv2::error::ProvideErrorMetadata;
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Destination, EmailContent, MessageTag, RawMessage};
use aws_sdk_sesv2::Client;

pub use aws_sdk_sesv2::Client as SesClient;

use leadflow_domain::process::ports::{Audience, MailError, Mailer};
use leadflow_domain::records::LeadId;

#[derive(Clone)]
pub struct SesMailer {
    client: Client,
    from: String,
    configuration_set: Option<String>,
}

impl SesMailer {
    pub fn new(client: Client, from: impl Into<String>, configuration_set: Option<String>) -> Self {
        Self {
            client,
            from: from.into(),
            configuration_set,
        }
    }
}

impl Mailer for SesMailer {
    async fn send(
        &self,
        raw: Vec<u8>,
        to: &str,
        lead: Option<LeadId>,
        audience: Audience,
    ) -> Result<String, MailError> {
        let content = EmailContent::builder()
            .raw(
                RawMessage::builder()
                    .data(Blob::new(raw))
                    .build()
                    .map_err(|e| MailError::Rejected(format!("request: {e}")))?,
            )
            .build();
        let tag = lead
            .map(|lead| MessageTag::builder().name("lead_id").value(lead.to_string()).build())
            .transpose()
            .map_err(|e| MailError::Rejected(format!("request: {e}")))?;
        // The SDK retries throttling and 5xx with backoff; what still fails is reported here.
        let result = self
            .client
            .send_email()
            .from_email_address(&self.from)
            .destination(Destination::builder().to_addresses(to).build())
            .content(content)
            // The configuration set tracks opens and clicks and publishes bounces: marketing
            // email only. Internal email goes out untracked.
            .set_configuration_set_name(
                self.configuration_set
                    .clone()
                    .filter(|_| audience == Audience::Marketing),
            )
            .set_email_tags(tag.map(|t| vec![t]))
            .send()
            .await;
        match result {
            Ok(out) => out
                .message_id
                .ok_or_else(|| MailError::Unavailable("SES returned no message id".into())),
            Err(e) => {
                // The code only: SES's message text can quote the recipient's address.
                let code = e.code().unwrap_or("no code (network or timeout)").to_owned();
                Err(match e.code() {
                    Some(
                        "TooManyRequestsException" | "LimitExceededException" | "Throttling" | "ThrottlingException",
                    ) => MailError::Throttled(code),
                    Some("SendingPausedException" | "AccountSuspendedException") => MailError::Paused(code),
                    Some(
                        "MessageRejected"
                        | "MailFromDomainNotVerifiedException"
                        | "BadRequestException"
                        | "NotFoundException",
                    ) => MailError::Rejected(code),
                    _ => MailError::Unavailable(code),
                })
            }
        }
    }
}
