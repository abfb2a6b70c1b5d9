//! leadflow's AWS adapters. Each implements one narrow port of `leadflow_domain::ports`;
//! the domain never sees an AWS type.

pub mod config;
pub mod docs;
pub mod dynamo;
pub mod events;
pub mod forms;
pub mod item;
pub mod keys;
pub mod process;
pub mod scoring;
pub mod ses;
pub mod sqs;

pub use config::Settings;

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

/// A conditional write's outcome: `Ok(true)` written, `Ok(false)` its condition did not hold.
pub(crate) fn conditional<T, E, R>(
    op: &str,
    result: Result<T, aws_sdk_dynamodb::error::SdkError<E, R>>,
) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
        Err(e) => Err(store_error(op, e)),
    }
}
