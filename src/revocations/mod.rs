//! The revocation feed: tells every subscriber about every revocation and
//! every change of the signing keys, in cursor order, exactly once, within
//! milliseconds.
//!
//! One follower task per server reads the outbox (`revocation_events`) after
//! the last cursor it has seen, whenever a local commit wakes it, whenever
//! another replica announces news (PostgreSQL LISTEN/NOTIFY), and at least
//! every poll interval, so that a lost announcement only delays an event.
//! Before reading, it gives cursors to the events waiting for one
//! (PostgreSQL); when it numbered any, it announces them, once per batch. It applies
//! each event to the session cache, so Verify here honours revocations made
//! elsewhere, and publishes it on an in-memory broadcast channel. A key-set
//! event makes it reload the keys first, so that this replica verifies with
//! a new key before any subscriber hears of it, and the event goes out with
//! the key set just loaded.
//!
//! Each subscriber first catches up from the database, then follows the
//! broadcast. It subscribes before reading, so nothing published meanwhile
//! is missed, and it only ever sends the cursor after the last one it sent.
//! When it falls behind (the broadcast overflowed because its client reads
//! slowly) or sees a gap, it goes back to the database. A slow subscriber
//! therefore never blocks a revocation or another subscriber, and never
//! silently misses an event.

mod subscriber;

use std::{
    num::NonZeroUsize,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, warn};

use crate::{
    authority::{KeyStore, KeyStoreError, RevocationListener, SessionCache},
    clock::SharedClock,
    domain::{OutboxEvent, Revocation, RevocationEvent},
    repository::{Repository, RepositoryError},
};

pub use subscriber::{FeedItem, WatchRequest};

/// Events read from the database at a time.
const PAGE_SIZE: u64 = 500;
/// Items a subscriber buffers towards its gRPC stream.
const SUBSCRIBER_BUFFER: usize = 64;

/// Why a subscription ended.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(
        "after_cursor {cursor} is older than the retained history (events up to {pruned_through} were removed); reconnect with include_snapshot"
    )]
    CursorTooOld { cursor: u64, pruned_through: u64 },
    #[error(
        "after_cursor {cursor} is ahead of the latest event ({latest}), so this server never sent it; reconnect with include_snapshot (WatchRevocations) or after_cursor 0 (WatchSecurityEvents)"
    )]
    CursorAhead { cursor: u64, latest: u64 },
    #[error("the server is shutting down; reconnect with after_cursor set to the last cursor received")]
    ShuttingDown,
    /// The client closed its stream; nobody is left to tell.
    #[error("the client went away")]
    ClientGone,
    /// The database cannot be reached right now: the client resumes later.
    #[error("database unavailable")]
    Unavailable(#[source] RepositoryError),
    #[error("reading the revocation outbox failed")]
    Internal(#[source] RepositoryError),
    #[error("reading the signing keys failed")]
    Keys(#[source] KeyStoreError),
}

impl From<KeyStoreError> for FeedError {
    fn from(error: KeyStoreError) -> Self {
        match error {
            KeyStoreError::Repository(error) => Self::from(error),
            other => Self::Keys(other),
        }
    }
}

impl From<RepositoryError> for FeedError {
    fn from(error: RepositoryError) -> Self {
        match error {
            RepositoryError::Unavailable(_) => Self::Unavailable(error),
            _ => Self::Internal(error),
        }
    }
}

/// How the feed paces itself.
#[derive(Debug, Clone, Copy)]
pub struct FeedSettings {
    /// A heartbeat goes out on a stream idle this long.
    pub heartbeat: Duration,
    /// The follower reads the outbox at least this often.
    pub poll_interval: Duration,
    /// Events the broadcast holds for subscribers that have not read them
    /// yet; one further behind catches up from the database.
    pub buffer: NonZeroUsize,
    /// JWT_ROTATION_GRACE: a per-session snapshot tells when each retired
    /// token's grace period ends.
    pub rotation_grace: Duration,
}

/// What the follower fans out to live subscribers.
#[derive(Debug)]
pub(crate) enum LiveItem {
    Revoked(RevocationEvent),
    /// A key-set change, with the key set loaded for it.
    KeySet {
        cursor: u64,
        jwks: Arc<str>,
    },
}

impl LiveItem {
    fn cursor(&self) -> u64 {
        match self {
            Self::Revoked(event) => event.cursor,
            Self::KeySet { cursor, .. } => *cursor,
        }
    }

    fn to_item(&self) -> FeedItem {
        match self {
            Self::Revoked(event) => FeedItem::Revoked(event.clone()),
            Self::KeySet { cursor, jwks } => FeedItem::KeySet {
                cursor: *cursor,
                jwks: jwks.clone(),
            },
        }
    }
}

pub struct RevocationFeed {
    repository: Repository,
    sessions: Arc<SessionCache>,
    keys: Arc<KeyStore>,
    clock: SharedClock,
    settings: FeedSettings,
    live: broadcast::Sender<Arc<LiveItem>>,
    wake: Notify,
    subscribers: AtomicUsize,
    /// Names this replica in announcements.
    origin: String,
    /// The last cursor in the database when the feed was made: the follower
    /// fans out what comes after it.
    start_cursor: u64,
    shutdown: watch::Sender<bool>,
}

impl RevocationFeed {
    /// A feed that will follow the outbox from `latest`, the last cursor in
    /// the database now. Nothing runs until the supervisor starts
    /// [`RevocationFeed::follow`] and [`RevocationFeed::listen`].
    pub fn new(
        repository: Repository,
        sessions: Arc<SessionCache>,
        keys: Arc<KeyStore>,
        clock: SharedClock,
        settings: FeedSettings,
        latest: u64,
    ) -> Arc<Self> {
        let (live, _) = broadcast::channel(settings.buffer.get());
        Arc::new(Self {
            repository,
            sessions,
            keys,
            clock,
            settings,
            live,
            wake: Notify::new(),
            subscribers: AtomicUsize::new(0),
            origin: uuid::Uuid::new_v4().to_string(),
            shutdown: watch::Sender::new(false),
            start_cursor: latest,
        })
    }

    /// The task that wakes the follower whenever another replica announces
    /// revocations (PostgreSQL LISTEN/NOTIFY), until the feed shuts down;
    /// `None` on SQLite, which has one process.
    pub fn listener(self: &Arc<Self>) -> Option<impl Future<Output = ()> + Send + 'static> {
        let weak = Arc::downgrade(self);
        let wake = move || {
            if let Some(feed) = weak.upgrade() {
                feed.wake();
            }
        };
        self.repository.clone().listen_for_revocations(self.origin.clone(), wake, self.shutdown.subscribe())
    }

    /// Ends every subscription (with UNAVAILABLE) and stops the follower.
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    /// Asks the follower to read the outbox now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Starts a subscription; its items (or the error that ended it) arrive
    /// on the returned stream. A cursor outside the retained history fails
    /// here, before any stream opens.
    pub async fn subscribe(
        self: &Arc<Self>,
        request: WatchRequest,
    ) -> Result<ReceiverStream<Result<FeedItem, FeedError>>, FeedError> {
        // Subscribe before reading the bounds: nothing published from now on is missed.
        let live = self.live.subscribe();
        // On PostgreSQL an event gets its cursor after its commit; number
        // every event committed so far, so that the stream's catch-up (and
        // the heartbeat that ends it) covers every revocation made before
        // it started, even one whose call returned a moment ago.
        if self.number_waiting_events().await? > 0 {
            // The follower fans out what it did not number itself.
            self.wake();
        }
        let bounds = self.repository.cursor_bounds().await?;
        let start = subscriber::Start::choose(request, bounds)?;
        // Read after the bounds: a change missing from this set has its
        // event after them, so the stream carries it.
        self.keys.reload().await?;
        let jwks = self.keys.jwks();
        let (sender, receiver) = mpsc::channel(SUBSCRIBER_BUFFER);
        let feed = self.clone();
        crate::metrics::stream_subscribers(feed.subscribers.fetch_add(1, Ordering::Relaxed) + 1);
        tokio::spawn(async move {
            let ended = subscriber::run(&feed, live, start, jwks, &sender).await;
            crate::metrics::stream_subscribers(feed.subscribers.fetch_sub(1, Ordering::Relaxed) - 1);
            if let Err(error) = ended {
                debug!(error = %error, "revocation subscription ended");
                let _ = sender.send(Err(error)).await;
            }
        });
        Ok(ReceiverStream::new(receiver))
    }

    /// The follower task: reads the outbox after the last cursor it has fanned
    /// out, whenever woken and every poll interval, until the feed shuts down.
    pub async fn follow(self: Arc<Self>) {
        let mut published = self.start_cursor;
        let mut shutdown = self.shutdown.subscribe();
        loop {
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.settings.poll_interval) => {}
                _ = shutdown.wait_for(|stopped| *stopped) => return,
            }
            if let Err(error) = self.number_waiting_events().await {
                warn!(error = %error, "cannot number the waiting revocation events; retrying");
                continue;
            }
            if let Err(error) = self.publish_new_events(&mut published).await {
                warn!(error = %error, "cannot read the revocation outbox; retrying");
            }
        }
    }

    /// Numbers every event waiting for a cursor and, if there were any,
    /// tells the other replicas, whichever task did the numbering; how many
    /// it numbered.
    async fn number_waiting_events(&self) -> Result<u64, RepositoryError> {
        let sequenced = self.sequence().await?;
        if sequenced > 0
            && let Err(error) = self.repository.announce_revocations(&self.origin).await
        {
            warn!(error = %error, "cannot announce revocations to other replicas; they will poll");
        }
        Ok(sequenced)
    }

    /// Numbers every event waiting for a cursor; how many it numbered.
    async fn sequence(&self) -> Result<u64, RepositoryError> {
        let mut sequenced = 0;
        loop {
            let batch = self.repository.sequence_events(PAGE_SIZE).await?;
            sequenced += batch;
            if batch < PAGE_SIZE {
                return Ok(sequenced);
            }
        }
    }

    /// Applies to the cache (or to the keys) and fans out every event after
    /// `published`, one at a time, so that a failed key reload is retried
    /// from that event.
    async fn publish_new_events(&self, published: &mut u64) -> Result<(), FeedError> {
        loop {
            let events = self.repository.events_after(*published, PAGE_SIZE).await?;
            let full = events.len() as u64 == PAGE_SIZE;
            for event in events {
                let cursor = event.cursor();
                let item = match event {
                    OutboxEvent::Revoked(event) => {
                        match event.token_id {
                            None => self.sessions.mark_revoked(event.session_id),
                            Some(token) => self.sessions.retire(event.session_id, token),
                        }
                        LiveItem::Revoked(event)
                    }
                    OutboxEvent::KeySetChanged { cursor, change, .. } => {
                        self.keys.reload().await?;
                        debug!(cursor, change = change.as_str(), "key set changed; reloaded the keys");
                        LiveItem::KeySet {
                            cursor,
                            jwks: self.keys.jwks(),
                        }
                    }
                };
                // No subscriber is not an error.
                let _ = self.live.send(Arc::new(item));
                *published = cursor;
            }
            if !full {
                return Ok(());
            }
        }
    }
}

impl RevocationListener for RevocationFeed {
    fn committed(&self, _revocations: &[Revocation]) {
        self.wake();
    }
}
