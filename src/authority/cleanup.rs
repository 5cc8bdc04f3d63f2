//! Cleanup of expired state: sessions whose tokens have all expired, outbox
//! events older than any token they could concern, audit records past their
//! retention, throttle counters back at full allowance, and devices and
//! networks a user has not used for long. Runs in bounded
//! batches, each its own short transaction, so it never holds a long lock.

use std::time::Duration;

use tracing::{info, warn};

use super::SessionCache;
use crate::{
    clock::SharedClock,
    domain::Timestamp,
    repository::{Repository, RepositoryError},
};

/// Rows deleted per transaction.
const BATCH: u64 = 1000;

#[derive(Debug, Clone, Copy)]
pub struct CleanupPolicy {
    /// A session is deleted this long after its last token expired (at
    /// least the clock-skew leeway, so Verify still recognises the token).
    pub session_grace: Duration,
    /// Events are kept this long after the revocation: the longest token
    /// lifetime plus a margin, so that every event that can still matter to a
    /// deny list (and a reconnecting client's cursor) is there.
    pub event_retention: Duration,
    /// Audit records (security events included) are kept this long.
    pub audit_retention: Duration,
    /// A device or network not seen for this long is forgotten (new again).
    pub known_client_retention: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupReport {
    pub sessions_deleted: u64,
    pub events_deleted: u64,
    pub audit_deleted: u64,
    pub throttle_keys_deleted: u64,
    pub known_clients_deleted: u64,
}

/// Runs one cleanup pass to the end.
pub async fn cleanup(
    repository: &Repository,
    sessions: Option<&SessionCache>,
    policy: &CleanupPolicy,
    now: Timestamp,
) -> Result<CleanupReport, RepositoryError> {
    let mut report = CleanupReport::default();
    let session_cutoff = now.minus(policy.session_grace);
    loop {
        let deleted = repository.delete_expired_sessions(session_cutoff, BATCH).await?;
        if let Some(cache) = sessions {
            for id in &deleted {
                cache.invalidate(*id);
            }
        }
        report.sessions_deleted += deleted.len() as u64;
        if (deleted.len() as u64) < BATCH {
            break;
        }
    }
    let event_cutoff = now.minus(policy.event_retention);
    loop {
        let deleted = repository.prune_events(event_cutoff, BATCH).await?;
        report.events_deleted += deleted;
        if deleted == 0 {
            break;
        }
    }
    report.audit_deleted = drain(|| repository.prune_audit(now.minus(policy.audit_retention), BATCH)).await?;
    report.throttle_keys_deleted = drain(|| repository.delete_idle_throttle_keys(now, BATCH)).await?;
    report.known_clients_deleted =
        drain(|| repository.forget_known_clients(now.minus(policy.known_client_retention), BATCH)).await?;
    info!(
        sessions_deleted = report.sessions_deleted,
        events_deleted = report.events_deleted,
        audit_deleted = report.audit_deleted,
        throttle_keys_deleted = report.throttle_keys_deleted,
        known_clients_deleted = report.known_clients_deleted,
        "cleanup finished"
    );
    Ok(report)
}

/// Runs a batched delete until a batch comes back short; the total.
async fn drain<F: Future<Output = Result<u64, RepositoryError>>>(
    mut batch: impl FnMut() -> F,
) -> Result<u64, RepositoryError> {
    let mut total = 0;
    loop {
        let deleted = batch().await?;
        total += deleted;
        if deleted < BATCH {
            return Ok(total);
        }
    }
}

/// Runs cleanup every `interval` (until the task is aborted; a pass cut
/// short leaves whole batches, each its own transaction).
pub async fn cleanup_periodically(
    repository: Repository,
    sessions: std::sync::Arc<SessionCache>,
    clock: SharedClock,
    policy: CleanupPolicy,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(error) = cleanup(&repository, Some(&sessions), &policy, clock.now()).await {
            warn!(error = %error, "cleanup failed; retrying at the next interval");
        }
    }
}
