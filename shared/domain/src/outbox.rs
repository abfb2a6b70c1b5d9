//! The outbox relay: every stored interaction carries an "unsent" marker until its consumer
//! confirms it; the relay re-publishes those whose marker is due, so an interaction whose
//! message was lost (a failed send after the commit, a crash) is still scored.

use chrono::{DateTime, Duration, Utc};

use crate::ports::{InteractionQueue, Outbox, StoreError};

/// Grace before the relay treats an interaction as unsent: intake publishes at once, and
/// scoring clears the marker within seconds, so only lost messages are still due after this.
pub const OUTBOX_GRACE: Duration = Duration::minutes(2);
/// After a re-publish, when to look again if the consumer still has not confirmed.
pub const REPUBLISH_AFTER: Duration = Duration::minutes(10);
/// After a failed publish.
pub const RETRY_AFTER: Duration = Duration::minutes(1);

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
