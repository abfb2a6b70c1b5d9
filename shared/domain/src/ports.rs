//! The narrow ports the domain needs from the outside world. Adapters (DynamoDB, SQS)
//! implement them in `leadflow-aws`; nothing here names an AWS type.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::form::FormDefinition;
use crate::intake::{IntakePlan, LookupRequest, LookupResult, SpamRecord};
use crate::message::InteractionMessage;

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

/// Outcome of an atomic commit: conditions held, or another writer got there first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    Committed,
    Conflict,
}

/// Form definitions by id.
pub trait FormCatalog: Send + Sync {
    fn form(&self, form_id: &str) -> impl Future<Output = Result<Option<Arc<FormDefinition>>, StoreError>> + Send;
}

/// What intake needs from the record store.
pub trait IntakeStore: Send + Sync {
    /// One round trip: the match keys, the double-click marker and the idempotency record.
    fn lookup(&self, request: &LookupRequest) -> impl Future<Output = Result<LookupResult, StoreError>> + Send;
    /// One atomic write of everything a submission changes; `Conflict` when a condition failed.
    fn commit(&self, plan: &IntakePlan) -> impl Future<Output = Result<Commit, StoreError>> + Send;
    fn store_spam(&self, spam: &SpamRecord) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Publishes stored interactions for scoring.
pub trait InteractionQueue: Send + Sync {
    fn publish(&self, message: &InteractionMessage) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// Interactions stored but not yet confirmed processed (the transactional outbox).
pub trait Outbox: Send + Sync {
    /// Interactions whose publication is due at or before `now`, oldest first, at most `limit`.
    fn due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<InteractionMessage>, StoreError>> + Send;
    /// Pushes the next attempt for an interaction back to `next_at`.
    fn postpone(
        &self,
        message: &InteractionMessage,
        next_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
