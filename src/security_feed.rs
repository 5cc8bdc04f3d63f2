//! The admin stream of security events (`WatchSecurityEvents`): each
//! subscriber reads the security events after its cursor from the audit
//! trail, in cursor order, then waits for news: a local event wakes it at
//! once, and it polls every REVOCATION_POLL_INTERVAL for events recorded by
//! other replicas. Cursors are gapless and in commit order (each event takes
//! its cursor inside its transaction), so a subscriber that reads past N
//! never later finds an event below N: none is missed or sent twice.

use std::{sync::Arc, time::Duration};

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::{authority::SecurityListener, domain::audit::AuditEntry, repository::Repository, revocations::FeedError};

/// Events read from the database at a time.
const PAGE_SIZE: u64 = 500;
/// Events a subscriber buffers towards its gRPC stream.
const SUBSCRIBER_BUFFER: usize = 64;

pub struct SecurityFeed {
    repository: Repository,
    poll_interval: Duration,
    /// Bumped by every local event, to wake subscribers.
    news: watch::Sender<u64>,
    shutdown: watch::Sender<bool>,
}

impl SecurityFeed {
    pub fn new(repository: Repository, poll_interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            repository,
            poll_interval,
            news: watch::Sender::new(0),
            shutdown: watch::Sender::new(false),
        })
    }

    /// Ends every subscription (with UNAVAILABLE).
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    /// Streams the security events after `after_cursor`; 0 starts with the
    /// events recorded from now on.
    pub async fn subscribe(
        self: &Arc<Self>,
        after_cursor: u64,
    ) -> Result<ReceiverStream<Result<AuditEntry, FeedError>>, FeedError> {
        let news = self.news.subscribe();
        let latest = self.repository.latest_security_cursor().await?;
        let start = match after_cursor {
            0 => latest,
            // A cursor this server never handed out: waiting for it would
            // look like a quiet stream forever.
            cursor if cursor > latest => return Err(FeedError::CursorAhead { cursor, latest }),
            cursor => cursor,
        };
        let (sender, receiver) = mpsc::channel(SUBSCRIBER_BUFFER);
        let feed = self.clone();
        // One task per open stream; it ends with the stream or the server.
        tokio::spawn(async move {
            if let Err(error) = feed.follow(start, news, &sender).await {
                tracing::debug!(error = %error, "security event subscription ended");
                let _ = sender.send(Err(error)).await;
            }
        });
        Ok(ReceiverStream::new(receiver))
    }

    async fn follow(
        &self,
        mut last: u64,
        mut news: watch::Receiver<u64>,
        sender: &mpsc::Sender<Result<AuditEntry, FeedError>>,
    ) -> Result<(), FeedError> {
        let mut shutdown = self.shutdown.subscribe();
        loop {
            let page = self.repository.security_events_after(last, PAGE_SIZE).await?;
            let full = page.len() as u64 == PAGE_SIZE;
            for entry in page {
                last = entry.security_cursor.unwrap_or(last);
                tokio::select! {
                    sent = sender.send(Ok(entry)) => sent.map_err(|_| FeedError::ClientGone)?,
                    _ = shutdown.wait_for(|stopped| *stopped) => return Err(FeedError::ShuttingDown),
                }
            }
            if full {
                continue;
            }
            tokio::select! {
                _ = news.changed() => {}
                () = tokio::time::sleep(self.poll_interval) => {}
                () = sender.closed() => return Err(FeedError::ClientGone),
                _ = shutdown.wait_for(|stopped| *stopped) => return Err(FeedError::ShuttingDown),
            }
        }
    }
}

impl SecurityListener for SecurityFeed {
    fn recorded(&self) {
        self.news.send_modify(|count| *count = count.wrapping_add(1));
    }
}
