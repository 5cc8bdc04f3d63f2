//! A reference consumer of `WatchRevocations`: what a backend service that
//! checks tokens itself (by signature, or with a cache of Verify answers)
//! runs beside its request handlers, so that a revoked token stops working
//! there within milliseconds.
//!
//! It takes the snapshot once, then follows the live stream, keeping an
//! in-memory deny list of revoked sessions and retired tokens. Each entry is
//! forgotten once the tokens it covers have expired. It remembers the last
//! cursor and resumes from it after a disconnect or a server restart. If the
//! server no longer has that cursor (OUT_OF_RANGE), it takes a new snapshot.
//! If neither an event nor a heartbeat arrives for three heartbeat periods,
//! it takes the connection for dead and reconnects.
//!
//! Run it against a server (the key comes from SERVICE_API_KEYS or
//! ADMIN_API_KEYS there):
//!
//! ```sh
//! TOKEN_AUTHORITY_URL=http://127.0.0.1:50051 SERVICE_API_KEY=dev-service-key-change-me \
//!   cargo run --example revocation_follower
//! ```
//!
//! It prints one line per change to the deny list.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use token_authority::proto::{
    RevocationEvent, RevocationEventKind, WatchRevocationsRequest, token_authority_client::TokenAuthorityClient,
};
use tonic::{Code, Request, transport::Channel};

/// Three missed heartbeats (at the server's default of 15s) mean a dead connection.
const SILENCE_LIMIT: Duration = Duration::from_secs(45);
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// What a request handler asks before trusting a token: is its session or
/// the token itself revoked? Entries expire with the tokens they cover.
#[derive(Debug, Default)]
pub struct DenyList {
    /// Revoked sessions: session id -> when its last token expires (unix seconds).
    sessions: HashMap<String, i64>,
    /// Retired tokens: jti -> when the token expires (unix seconds).
    tokens: HashMap<String, i64>,
}

impl DenyList {
    /// Records a REVOKED event.
    pub fn apply(&mut self, event: &RevocationEvent) {
        let expires_at = event.expires_at.as_ref().map_or(i64::MAX, |time| time.seconds);
        if event.token_id.is_empty() {
            self.sessions.insert(event.session_id.clone(), expires_at);
        } else {
            self.tokens.insert(event.token_id.clone(), expires_at);
        }
    }

    /// Whether a token (by its `sid` and `jti` claims) must be refused.
    pub fn is_denied(&self, session_id: &str, token_id: &str) -> bool {
        self.sessions.contains_key(session_id) || self.tokens.contains_key(token_id)
    }

    /// Drops entries whose tokens have all expired: their signature check
    /// fails on its own now.
    pub fn forget_expired(&mut self, now_seconds: i64) {
        self.sessions.retain(|_, expires_at| *expires_at > now_seconds);
        self.tokens.retain(|_, expires_at| *expires_at > now_seconds);
    }

    pub fn len(&self) -> usize {
        self.sessions.len() + self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Follows the stream forever, resuming from the last cursor.
struct Follower {
    url: String,
    key: String,
    deny_list: DenyList,
    /// The cursor to resume after; `None` until a snapshot has completed.
    cursor: Option<u64>,
}

impl Follower {
    async fn run(&mut self) {
        loop {
            match self.follow_once().await {
                Ok(()) => eprintln!("stream ended; reconnecting"),
                Err(status) if status.code() == Code::OutOfRange => {
                    eprintln!("cursor no longer retained ({}); taking a new snapshot", status.message());
                    self.cursor = None;
                    self.deny_list = DenyList::default();
                }
                Err(status) => eprintln!("stream failed: {:?} {}; reconnecting", status.code(), status.message()),
            }
            tokio::time::sleep(RECONNECT_DELAY).await;
        }
    }

    async fn follow_once(&mut self) -> Result<(), tonic::Status> {
        let channel = Channel::from_shared(self.url.clone())
            .map_err(|error| tonic::Status::invalid_argument(error.to_string()))?
            .connect()
            .await
            .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
        let mut client = TokenAuthorityClient::new(channel);
        let mut request = Request::new(WatchRevocationsRequest {
            after_cursor: self.cursor.unwrap_or(0),
            include_snapshot: self.cursor.is_none(),
        });
        let bearer = format!("Bearer {}", self.key)
            .parse()
            .map_err(|_| tonic::Status::invalid_argument("SERVICE_API_KEY is not valid metadata"))?;
        request.metadata_mut().insert("authorization", bearer);
        let mut stream = client.watch_revocations(request).await?.into_inner();
        loop {
            let Ok(next) = tokio::time::timeout(SILENCE_LIMIT, stream.message()).await else {
                return Err(tonic::Status::unavailable("no event or heartbeat for too long"));
            };
            let Some(event) = next? else {
                return Ok(());
            };
            self.handle(&event);
        }
    }

    fn handle(&mut self, event: &RevocationEvent) {
        match event.kind() {
            RevocationEventKind::Revoked => {
                self.deny_list.apply(event);
                // Snapshot entries are not a place to resume from: only the end of the snapshot is.
                if self.cursor.is_some() {
                    self.cursor = Some(event.cursor);
                }
                println!(
                    "denied {} {} ({:?}) until {}; {} entries",
                    if event.token_id.is_empty() { "session" } else { "token" },
                    if event.token_id.is_empty() {
                        &event.session_id
                    } else {
                        &event.token_id
                    },
                    event.reason(),
                    event.expires_at.as_ref().map_or(0, |time| time.seconds),
                    self.deny_list.len(),
                );
            }
            RevocationEventKind::SnapshotEnd => {
                self.cursor = Some(event.cursor);
                println!("snapshot complete at cursor {}; {} entries", event.cursor, self.deny_list.len());
            }
            RevocationEventKind::Heartbeat | RevocationEventKind::Unspecified => {
                self.deny_list.forget_expired(now_seconds());
            }
        }
    }
}

fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
}

#[tokio::main]
async fn main() {
    let mut follower = Follower {
        url: std::env::var("TOKEN_AUTHORITY_URL").unwrap_or_else(|_| "http://127.0.0.1:50051".into()),
        key: std::env::var("SERVICE_API_KEY").unwrap_or_default(),
        deny_list: DenyList::default(),
        cursor: None,
    };
    follower.run().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use token_authority::proto::RevocationReason;

    fn event(cursor: u64, session: &str, token: &str, expires_at: i64) -> RevocationEvent {
        RevocationEvent {
            cursor,
            kind: RevocationEventKind::Revoked.into(),
            session_id: session.into(),
            token_id: token.into(),
            reason: RevocationReason::Logout.into(),
            expires_at: Some(prost_types::Timestamp {
                seconds: expires_at,
                nanos: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn sessions_and_tokens_are_denied_until_they_expire() {
        let mut deny_list = DenyList::default();
        deny_list.apply(&event(1, "session-a", "", 100));
        deny_list.apply(&event(2, "session-b", "token-1", 200));
        assert!(deny_list.is_denied("session-a", "any-token"));
        assert!(deny_list.is_denied("session-b", "token-1"));
        assert!(!deny_list.is_denied("session-b", "token-2"), "the session lives on with a newer token");
        deny_list.forget_expired(150);
        assert!(!deny_list.is_denied("session-a", "any-token"), "expired tokens fail on their own");
        assert!(deny_list.is_denied("session-b", "token-1"));
    }

    #[test]
    fn the_cursor_moves_only_after_the_snapshot() {
        let mut follower = Follower {
            url: String::new(),
            key: String::new(),
            deny_list: DenyList::default(),
            cursor: None,
        };
        follower.handle(&event(3, "s", "", i64::MAX));
        assert_eq!(follower.cursor, None, "a snapshot entry is not a resume point");
        follower.handle(&RevocationEvent {
            cursor: 7,
            kind: RevocationEventKind::SnapshotEnd.into(),
            ..Default::default()
        });
        assert_eq!(follower.cursor, Some(7));
        follower.handle(&event(8, "t", "", i64::MAX));
        assert_eq!(follower.cursor, Some(8));
        assert_eq!(follower.deny_list.len(), 2);
    }
}
