//! One subscription: snapshot or catch-up from the database, then the live
//! broadcast, with heartbeats on an idle stream.

use std::sync::Arc;

use tokio::{
    sync::{
        broadcast::{self, error::RecvError},
        mpsc, watch,
    },
    time::{Instant, MissedTickBehavior, interval_at},
};

use super::{FeedError, PAGE_SIZE, RevocationFeed};
use crate::{domain::RevocationEvent, repository::CursorBounds};

#[derive(Debug, Clone, Copy, Default)]
pub struct WatchRequest {
    /// Resume after this cursor; 0 starts from the oldest retained event.
    pub after_cursor: u64,
    pub include_snapshot: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedItem {
    Revoked(RevocationEvent),
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
    Event(Arc<RevocationEvent>),
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
    },
    After(u64),
}

impl Start {
    pub(super) fn choose(request: WatchRequest, bounds: CursorBounds) -> Result<Self, FeedError> {
        if request.include_snapshot {
            return Ok(Self::Snapshot { through: bounds.latest });
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
/// subscribed before the cursor bounds were read, so nothing published since
/// is missed.
pub(super) async fn run(
    feed: &RevocationFeed,
    mut live: broadcast::Receiver<Arc<RevocationEvent>>,
    start: Start,
    sender: &Sender,
) -> Result<(), FeedError> {
    let mut shutdown = feed.shutdown.subscribe();
    let mut last_sent = match start {
        Start::Snapshot { through } => {
            send_snapshot(feed, through, sender, &mut shutdown).await?;
            send(sender, &mut shutdown, FeedItem::SnapshotEnd { cursor: through }).await?;
            through
        }
        Start::After(cursor) => cursor,
    };

    let period = feed.settings.heartbeat;
    let mut heartbeat = interval_at(Instant::now() + period, period);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        // Catch up from the database.
        loop {
            let page = feed.repository.events_after(last_sent, PAGE_SIZE).await?;
            let full = page.len() as u64 == PAGE_SIZE;
            for event in page {
                last_sent = event.cursor;
                send(sender, &mut shutdown, FeedItem::Revoked(event)).await?;
                heartbeat.reset();
            }
            if !full {
                break;
            }
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
                Next::Event(event) if event.cursor <= last_sent => {}
                Next::Event(event) if event.cursor == last_sent + 1 => {
                    last_sent = event.cursor;
                    send(sender, &mut shutdown, FeedItem::Revoked((*event).clone())).await?;
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

/// Waits for room in the client's buffer, but gives up on shutdown, so that
/// a stalled client cannot hold the server.
async fn send(sender: &Sender, shutdown: &mut watch::Receiver<bool>, item: FeedItem) -> Result<(), FeedError> {
    tokio::select! {
        sent = sender.send(Ok(item)) => sent.map_err(|_| FeedError::ClientGone),
        _ = shutdown.wait_for(|stopped| *stopped) => Err(FeedError::ShuttingDown),
    }
}
