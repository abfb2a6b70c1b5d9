//! leadflow's AWS adapters. Each implements narrow ports of the domain over one [`table::Table`]
//! handle (or an SQS / SES client); the domain never sees an AWS type.

pub mod bus;
pub mod catalog;
pub mod config;
pub mod config_dir;
pub mod counters;
pub mod events;
pub mod expr;
pub mod intake;
pub mod keys;
pub mod lists;
pub mod metrics;
pub mod process;
pub mod scoring;
pub mod secrets;
pub mod segments;
pub mod ses;
pub mod ses_events;
pub mod sqs;
pub mod table;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use leadflow_domain::ports::StoreError;

/// Maps any SDK error to the domain's store error, keeping whether a retry may help.
pub(crate) fn store_error<E, R>(op: &str, err: aws_sdk_dynamodb::error::SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let code = err.code().unwrap_or_default().to_owned();
    let text = format!("{op}: {}", DisplayErrorContext(&err));
    match code.as_str() {
        "ProvisionedThroughputExceededException" | "ThrottlingException" | "RequestLimitExceeded" => {
            StoreError::Throttled(text)
        }
        _ => StoreError::Unavailable(text),
    }
}
