//! One subscription: the current key set, then the snapshot or the catch-up
//! from the database, then the live broadcast, with heartbeats on an idle
//! stream.

use std::sync::Arc;

use tokio::{
    sync::{
        broadcast::{self, error::RecvError},
        mpsc, watch,
    },
    time::{Instant, MissedTickBehavior, interval_at},
};

use super::{FeedError, LiveItem, PAGE_SIZE, RevocationFeed};
use crate::{
    domain::{OutboxEvent, RevocationEvent, RevocationReason, Session, Successor},
    repository::CursorBounds,
};

#[derive(Debug, Clone, Copy, Default)]
pub struct WatchRequest {
    /// Resume after this cursor; 0 starts from the oldest retained event.
    pub after_cursor: u64,
    pub include_snapshot: bool,
    /// The snapshot as one entry per session (its current state) rather
    /// than one per revocation event.
    pub session_snapshot: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedItem {
    Revoked(RevocationEvent),
    /// The whole current key set (a JWK set, RFC 7517 JSON): first on every
    /// stream (its cursor then is where the stream starts), and again at
    /// every change of the keys (with the change's cursor).
    KeySet {
        cursor: u64,
        jwks: Arc<str>,
    },
    /// Live events continue after `cursor`.
    SnapshotEnd {
        cursor: u64,
    },
    /// Nothing happened for a while; `cursor` is the last one sent.
    Heartbeat {
        cursor: u64,
    },
}

type Sender = mpsc::Sender<Result<FeedItem, FeedError>>;

/// What woke a subscriber following the broadcast.
enum Next {
    Event(Arc<LiveItem>),
    /// Behind the broadcast, or a gap: back to the database.
    CatchUp,
    Heartbeat,
}

/// Where a subscription begins, decided before its stream opens, so that a
/// bad cursor fails the call itself.
#[derive(Debug, Clone, Copy)]
pub(super) enum Start {
    /// Send the snapshot as of this cursor, then continue after it.
    Snapshot {
        through: u64,
        per_session: bool,
    },
    After(u64),
}

impl Start {
    /// Where the stream stands once it begins: the cursor its first item,
    /// the key set, carries.
    pub(super) fn position(self) -> u64 {
        match self {
            Self::Snapshot { through, .. } => through,
            Self::After(cursor) => cursor,
        }
    }

    pub(super) fn choose(request: WatchRequest, bounds: CursorBounds) -> Result<Self, FeedError> {
        if request.include_snapshot {
            return Ok(Self::Snapshot {
                through: bounds.latest,
                per_session: request.session_snapshot,
            });
        }
        match request.after_cursor {
            cursor if cursor > bounds.latest => Err(FeedError::CursorAhead {
                cursor,
                latest: bounds.latest,
            }),
            0 => Ok(Self::After(bounds.pruned_through)),
            cursor if cursor < bounds.pruned_through => Err(FeedError::CursorTooOld {
                cursor,
                pruned_through: bounds.pruned_through,
            }),
            cursor => Ok(Self::After(cursor)),
        }
    }
}

/// Runs until the client goes away or the subscription must end. `live` was
/// subscribed before the cursor bounds were read, and `jwks` read after
/// them, so nothing published since is missed: a key-set change not in
/// `jwks` has its event after the start.
pub(super) async fn run(
    feed: &RevocationFeed,
    mut live: broadcast::Receiver<Arc<LiveItem>>,
    start: Start,
    jwks: Arc<str>,
    sender: &Sender,
) -> Result<(), FeedError> {
    let mut shutdown = feed.shutdown.subscribe();
    let first = FeedItem::KeySet {
        cursor: start.position(),
        jwks,
    };
    send(sender, &mut shutdown, first).await?;
    let mut last_sent = match start {
        Start::Snapshot { through, per_session } => {
            if per_session {
                send_session_snapshot(feed, through, sender, &mut shutdown).await?;
            } else {
                send_snapshot(feed, through, sender, &mut shutdown).await?;
            }
            send(sender, &mut shutdown, FeedItem::SnapshotEnd { cursor: through }).await?;
            through
        }
        Start::After(cursor) => cursor,
    };

    let period = feed.settings.heartbeat;
    let mut heartbeat = interval_at(Instant::now() + period, period);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Until the first catch-up below is done, the client holds less than
    // was committed before it connected; the heartbeat after it says when
    // it no longer does (a client counts itself fresh from there, not from
    // the first message).
    let mut caught_up = false;
    loop {
        // Catch up from the database.
        loop {
            let page = feed.repository.events_after(last_sent, PAGE_SIZE).await?;
            let full = page.len() as u64 == PAGE_SIZE;
            for event in page {
                last_sent = event.cursor();
                let item = match event {
                    OutboxEvent::Revoked(event) => FeedItem::Revoked(event),
                    // The key set as it is now: never older than the event.
                    OutboxEvent::KeySetChanged { cursor, .. } => {
                        feed.keys.reload().await?;
                        FeedItem::KeySet {
                            cursor,
                            jwks: feed.keys.jwks(),
                        }
                    }
                };
                send(sender, &mut shutdown, item).await?;
                heartbeat.reset();
            }
            if !full {
                break;
            }
        }
        if !caught_up {
            caught_up = true;
            send(sender, &mut shutdown, FeedItem::Heartbeat { cursor: last_sent }).await?;
            heartbeat.reset();
        }
        // Follow the broadcast until behind or a gap.
        loop {
            let next = tokio::select! {
                received = live.recv() => match received {
                    Ok(event) => Next::Event(event),
                    Err(RecvError::Lagged(_)) => Next::CatchUp,
                    Err(RecvError::Closed) => return Err(FeedError::ShuttingDown),
                },
                _ = heartbeat.tick() => Next::Heartbeat,
                () = sender.closed() => return Err(FeedError::ClientGone),
                _ = shutdown.wait_for(|stopped| *stopped) => return Err(FeedError::ShuttingDown),
            };
            match next {
                Next::Event(event) if event.cursor() <= last_sent => {}
                Next::Event(event) if event.cursor() == last_sent + 1 => {
                    last_sent = event.cursor();
                    send(sender, &mut shutdown, event.to_item()).await?;
                    heartbeat.reset();
                }
                Next::Event(_) | Next::CatchUp => {
                    tracing::debug!(
                        cursor = last_sent,
                        "subscriber behind the broadcast; catching up from the database"
                    );
                    break;
                }
                Next::Heartbeat => send(sender, &mut shutdown, FeedItem::Heartbeat { cursor: last_sent }).await?,
            }
        }
    }
}

/// Every revoked session and retired token that has not expired, as of
/// `through`, in cursor order, a page at a time.
async fn send_snapshot(
    feed: &RevocationFeed,
    through: u64,
    sender: &Sender,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), FeedError> {
    let now = feed.clock.now();
    let mut after = 0;
    loop {
        let page = feed.repository.unexpired_events(after, through, now, PAGE_SIZE).await?;
        let full = page.len() as u64 == PAGE_SIZE;
        for event in page {
            after = event.cursor;
            send(sender, shutdown, FeedItem::Revoked(event)).await?;
        }
        if !full {
            return Ok(());
        }
    }
}

/// The current state of every session a consumer must know of (revoked, or
/// rotated at least once) whose tokens have not all expired, one entry per
/// session, a page at a time. Read after `through` was fixed, so it holds
/// every change up to it (and perhaps a few after, which the live events
/// that follow repeat: applying them again changes nothing).
async fn send_session_snapshot(
    feed: &RevocationFeed,
    through: u64,
    sender: &Sender,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), FeedError> {
    let now = feed.clock.now();
    let mut after = None;
    loop {
        let page = feed.repository.sessions_to_snapshot(after, now, PAGE_SIZE).await?;
        let full = page.len() as u64 == PAGE_SIZE;
        for session in page {
            after = Some(session.id);
            if let Some(event) = session_entry(&session, through, feed.settings.rotation_grace) {
                send(sender, shutdown, FeedItem::Revoked(event)).await?;
            }
        }
        if !full {
            return Ok(());
        }
    }
}

/// A session's state as one snapshot entry: revoked, or rotated (with what
/// is current and the last retired token).
fn session_entry(session: &Session, cursor: u64, grace: std::time::Duration) -> Option<RevocationEvent> {
    if let Some(revoked_at) = session.revoked_at {
        return Some(RevocationEvent {
            cursor,
            session_id: session.id,
            user_id: session.user_id,
            token_id: None,
            reason: session.revoke_reason.unwrap_or(RevocationReason::Admin),
            revoked_at,
            expires_at: session.expires_at,
            session_expires_at: Some(session.expires_at),
            successor: None,
        });
    }
    let previous = session.previous_token?;
    Some(RevocationEvent {
        cursor,
        session_id: session.id,
        user_id: session.user_id,
        token_id: Some(previous.id),
        reason: RevocationReason::Rotated,
        revoked_at: previous.retired_at,
        expires_at: session.expires_at,
        session_expires_at: Some(session.expires_at),
        successor: Some(Successor {
            token_id: session.current_token_id,
            generation: session.generation,
            grace_ends_at: previous.retired_at.plus(grace),
        }),
    })
}

/// Waits for room in the client's buffer, but gives up on shutdown, so that
/// a stalled client cannot hold the server.
async fn send(sender: &Sender, shutdown: &mut watch::Receiver<bool>, item: FeedItem) -> Result<(), FeedError> {
    tokio::select! {
        sent = sender.send(Ok(item)) => sent.map_err(|_| FeedError::ClientGone),
        _ = shutdown.wait_for(|stopped| *stopped) => Err(FeedError::ShuttingDown),
    }
}
