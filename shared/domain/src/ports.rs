//! The ports shared across the domain's flows, and their errors. Each flow keeps its own
//! ports beside it (intake's `IntakeStore`, the outbox's `Outbox`, scoring's `ScoringStore`,
//! the process's lease, ledger, task and round-robin stores); adapters implement them in
//! `leadflow-aws`. Nothing here names an AWS type.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::form::FormDefinition;
use crate::message::InteractionMessage;
use crate::records::ContactId;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or answered with a server error; a retry may help.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store is rate-limiting us; a retry later may help.
    #[error("store throttled: {0}")]
    Throttled(String),
    /// An item could not be read back into a record: a bug or a bad manual edit.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("queue send failed: {0}")]
pub struct QueueError(pub String);

/// Form definitions by id.
pub trait FormCatalog: Send + Sync {
    fn form(&self, form_id: &str) -> impl Future<Output = Result<Option<Arc<FormDefinition>>, StoreError>> + Send;
}

/// Publishes stored interactions for scoring.
pub trait InteractionQueue: Send + Sync {
    fn publish(&self, message: &InteractionMessage) -> impl Future<Output = Result<(), QueueError>> + Send;
    /// Many messages in as few requests as the queue allows; a result per message, in order.
    fn publish_all(&self, messages: &[InteractionMessage]) -> impl Future<Output = Vec<Result<(), QueueError>>> + Send {
        async move {
            let mut out = Vec::with_capacity(messages.len());
            for m in messages {
                out.push(self.publish(m).await);
            }
            out
        }
    }
}

/// Records an unsubscription at once; idempotent (the first time is kept). `false` when the
/// contact is unknown.
pub trait Unsubscribes: Send + Sync {
    /// `email`: the send key of the email whose link was used (`warm:1`), counted for its
    /// program and step with the contact's first unsubscribe.
    fn unsubscribe(
        &self,
        contact: ContactId,
        at: DateTime<Utc>,
        email: Option<&str>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// What a confirmation click did.
#[derive(Debug, Clone, PartialEq)]
pub enum Confirmation {
    /// What the request asked is granted (consent with the click's evidence, the changes, the
    /// browser); the `address_confirmed` interactions (one per open lead of the person), kept in
    /// the outbox, are for scoring.
    Confirmed(Vec<crate::records::Interaction>),
    /// Nothing pending under that link (confirmed already, or replaced by a later request).
    NothingPending,
}

/// Grants a pending confirmation request (see [`crate::confirmation`]).
pub trait ConsentStore: Send + Sync {
    /// The contact a confirmation link names, to show what confirming would grant.
    fn contact(
        &self,
        contact: ContactId,
    ) -> impl Future<Output = Result<Option<crate::records::Contact>, StoreError>> + Send;
    fn confirm(
        &self,
        contact: ContactId,
        nonce: &str,
        evidence: &crate::records::ConsentConfirmation,
    ) -> impl Future<Output = Result<Confirmation, StoreError>> + Send;
}
