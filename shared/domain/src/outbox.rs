//! The outbox relay: every stored interaction carries an "unsent" marker until its consumer
//! confirms it; the relay re-publishes those whose marker is due, so an interaction whose
//! message was lost (a failed send after the commit, a crash) is still scored.

use chrono::{DateTime, Duration, Utc};

use std::future::Future;

use crate::message::InteractionMessage;
use crate::ports::{InteractionQueue, StoreError};

/// Grace before the relay treats an interaction as unsent: intake publishes at once, and
/// scoring clears the marker within seconds, so only lost messages are still due after this.
pub const OUTBOX_GRACE: Duration = Duration::minutes(2);
/// After a re-publish, when to look again if the consumer still has not confirmed.
pub const REPUBLISH_AFTER: Duration = Duration::minutes(10);
/// After a failed publish.
pub const RETRY_AFTER: Duration = Duration::minutes(1);

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
    /// Publishes the domain events ([`crate::events`]) whose writer could not: outbox entries
    /// due at or before `now`, at most `limit`. How many events went out. (No events: none.)
    fn relay_events(&self, now: DateTime<Utc>, limit: usize) -> impl Future<Output = Result<usize, StoreError>> + Send {
        let _ = (now, limit);
        async { Ok(0) }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayReport {
    pub published: usize,
    pub failed: usize,
}

pub async fn relay(
    outbox: &impl Outbox,
    queue: &impl InteractionQueue,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<RelayReport, StoreError> {
    let mut report = RelayReport::default();
    for message in outbox.due(now, limit).await? {
        let next = match queue.publish(&message).await {
            Ok(()) => {
                report.published += 1;
                now + REPUBLISH_AFTER
            }
            Err(e) => {
                tracing::warn!(interaction_id = %message.interaction_id(), error = %e, "outbox publish failed");
                report.failed += 1;
                now + RETRY_AFTER
            }
        };
        outbox.postpone(&message, next).await?;
    }
    Ok(report)
}
