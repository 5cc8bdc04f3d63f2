//! A reference consumer of `WatchRevocations`: what a backend service that
//! checks tokens itself (by signature, or with a cache of Verify answers)
//! runs beside its request handlers, so that a revoked token stops working
//! there within milliseconds.
//!
//! It keeps one entry per session, whatever how often the session is
//! refreshed: the per-session rule written on `RevocationEvent` in the
//! proto (and in the README). It asks for the per-session snapshot once,
//! then follows the live stream, overwriting a session's entry with each
//! event. An entry is forgotten once every token of its session has expired
//! (plus the leeway accepted on `exp`). It remembers the last cursor and
//! resumes from it after a disconnect or a server restart. If the server no
//! longer has that cursor (OUT_OF_RANGE), it takes a new snapshot. If
//! neither an event nor a heartbeat arrives for three heartbeat periods, it
//! takes the connection for dead and reconnects.
//!
//! Run it against a server (the key comes from SERVICE_API_KEYS or
//! ADMIN_API_KEYS there):
//!
//! ```sh
//! TOKEN_AUTHORITY_URL=http://127.0.0.1:50051 SERVICE_API_KEY=dev-service-key-change-me \
//!   cargo run --example revocation_follower
//! ```
//!
//! It prints one line per change to its state.

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
/// The clock skew this service accepts on `exp`: entries live that much longer.
const LEEWAY_SECONDS: i64 = 5;

/// What is known of one session. Timestamps are in unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEntry {
    pub revoked: bool,
    pub current_token_id: String,
    pub current_generation: u64,
    pub previous_token_id: String,
    pub grace_ends_at: i64,
    /// When the session's last token expires.
    pub expires_at: i64,
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Revoked,
    Rotated,
}

/// The per-session state: what a request handler asks before trusting a
/// token whose signature and claims it has checked.
#[derive(Debug, Default)]
pub struct SessionStates {
    sessions: HashMap<String, SessionEntry>,
    /// Retired tokens named by events of servers older than the per-session
    /// rule (no current_token_id): jti -> expiry in unix milliseconds.
    legacy_denied: HashMap<String, i64>,
}

fn millis(time: Option<&prost_types::Timestamp>) -> i64 {
    time.map_or(i64::MAX, |time| time.seconds.saturating_mul(1000) + i64::from(time.nanos / 1_000_000))
}

impl SessionStates {
    /// Applies a REVOKED event (live or from the snapshot).
    pub fn apply(&mut self, event: &RevocationEvent) {
        let session_expires_at = match event.session_expires_at.as_ref() {
            Some(time) => millis(Some(time)),
            None => millis(event.expires_at.as_ref()),
        };
        if event.token_id.is_empty() {
            // The whole session: final.
            self.sessions.insert(
                event.session_id.clone(),
                SessionEntry {
                    revoked: true,
                    current_token_id: String::new(),
                    current_generation: 0,
                    previous_token_id: String::new(),
                    grace_ends_at: 0,
                    expires_at: session_expires_at,
                },
            );
            return;
        }
        if event.current_token_id.is_empty() {
            // An older server: a plain deny of the one retired token.
            self.legacy_denied.insert(event.token_id.clone(), millis(event.expires_at.as_ref()));
            return;
        }
        if let Some(known) = self.sessions.get(&event.session_id)
            && (known.revoked || known.current_generation > event.current_generation)
        {
            return;
        }
        self.sessions.insert(
            event.session_id.clone(),
            SessionEntry {
                revoked: false,
                current_token_id: event.current_token_id.clone(),
                current_generation: event.current_generation,
                previous_token_id: event.token_id.clone(),
                grace_ends_at: millis(event.grace_ends_at.as_ref()),
                expires_at: session_expires_at,
            },
        );
    }

    /// Whether a token (by its `sid`, `jti` and `gen` claims; `gen` absent
    /// is 0) must be refused at `now_millis`.
    pub fn check(&self, session_id: &str, token_id: &str, generation: u64, now_millis: i64) -> Result<(), Refusal> {
        if self.legacy_denied.contains_key(token_id) {
            return Err(Refusal::Rotated);
        }
        let Some(entry) = self.sessions.get(session_id) else {
            return Ok(());
        };
        if entry.revoked {
            return Err(Refusal::Revoked);
        }
        if token_id == entry.current_token_id || generation > entry.current_generation {
            return Ok(());
        }
        if token_id == entry.previous_token_id && now_millis <= entry.grace_ends_at {
            return Ok(());
        }
        Err(Refusal::Rotated)
    }

    /// Drops entries whose tokens have all expired (plus the leeway): their
    /// signature check fails on its own now.
    pub fn forget_expired(&mut self, now_millis: i64) {
        let horizon = now_millis.saturating_sub(LEEWAY_SECONDS * 1000);
        self.sessions.retain(|_, entry| entry.expires_at >= horizon);
        self.legacy_denied.retain(|_, expires_at| *expires_at >= horizon);
    }

    /// Entries held: bounded by the sessions revoked or rotated whose tokens
    /// live, never by the number of refreshes.
    pub fn len(&self) -> usize {
        self.sessions.len() + self.legacy_denied.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Follows the stream forever, resuming from the last cursor.
pub struct Follower {
    url: String,
    key: String,
    pub states: SessionStates,
    /// The cursor to resume after; `None` until a snapshot has completed.
    pub cursor: Option<u64>,
}

impl Follower {
    pub fn new(url: String, key: String) -> Self {
        Self {
            url,
            key,
            states: SessionStates::default(),
            cursor: None,
        }
    }

    async fn run(&mut self) {
        loop {
            match self.follow_once().await {
                Ok(()) => eprintln!("stream ended; reconnecting"),
                Err(status) if status.code() == Code::OutOfRange => {
                    eprintln!("cursor no longer retained ({}); taking a new snapshot", status.message());
                    self.cursor = None;
                    self.states = SessionStates::default();
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
            session_snapshot: true,
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

    pub fn handle(&mut self, event: &RevocationEvent) {
        match event.kind() {
            RevocationEventKind::Revoked => {
                self.states.apply(event);
                // Snapshot entries are not a place to resume from: only the end of the snapshot is.
                if self.cursor.is_some() {
                    self.cursor = Some(event.cursor);
                }
                println!("session {} {:?}; {} entries", event.session_id, event.reason(), self.states.len());
            }
            RevocationEventKind::KeySet => {
                // The whole key set, to verify signatures with (replace,
                // never merge). The first one of a stream only says where
                // the stream starts, so it never moves a cursor backwards.
                if let Some(cursor) = &mut self.cursor {
                    *cursor = (*cursor).max(event.cursor);
                }
                let keys = serde_json::from_str::<serde_json::Value>(&event.jwks)
                    .ok()
                    .and_then(|jwks| jwks["keys"].as_array().map(Vec::len))
                    .unwrap_or(0);
                println!("key set: {keys} public keys");
            }
            RevocationEventKind::SnapshotEnd => {
                self.cursor = Some(event.cursor);
                println!("snapshot complete at cursor {}; {} entries", event.cursor, self.states.len());
            }
            RevocationEventKind::Heartbeat | RevocationEventKind::Unspecified => {
                self.states.forget_expired(now_millis());
            }
        }
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
}

#[tokio::main]
async fn main() {
    let mut follower = Follower::new(
        std::env::var("TOKEN_AUTHORITY_URL").unwrap_or_else(|_| "http://127.0.0.1:50051".into()),
        std::env::var("SERVICE_API_KEY").unwrap_or_default(),
    );
    follower.run().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use token_authority::proto::RevocationReason;

    fn at(millis: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp {
            seconds: millis / 1000,
            nanos: i32::try_from(millis % 1000 * 1_000_000).unwrap(),
        })
    }

    fn revoked(cursor: u64, session: &str, expires_at: i64) -> RevocationEvent {
        RevocationEvent {
            cursor,
            kind: RevocationEventKind::Revoked.into(),
            session_id: session.into(),
            reason: RevocationReason::Logout.into(),
            expires_at: at(expires_at),
            session_expires_at: at(expires_at),
            ..Default::default()
        }
    }

    /// The rotation from generation `generation - 1` (token `previous`) to
    /// `generation` (token `current`) at `now`, with a 10 s grace.
    fn rotated(
        cursor: u64,
        session: &str,
        previous: &str,
        current: &str,
        generation: u64,
        now: i64,
    ) -> RevocationEvent {
        RevocationEvent {
            cursor,
            kind: RevocationEventKind::Revoked.into(),
            session_id: session.into(),
            token_id: previous.into(),
            reason: RevocationReason::Rotated.into(),
            expires_at: at(now + 3_600_000),
            current_token_id: current.into(),
            current_generation: generation,
            grace_ends_at: at(now + 10_000),
            session_expires_at: at(now + 3_600_000),
            ..Default::default()
        }
    }

    #[test]
    fn the_per_session_rule() {
        let mut states = SessionStates::default();
        let now = 1_000_000;
        states.apply(&rotated(1, "s", "t1", "t2", 1, now));
        assert_eq!(states.check("s", "t2", 1, now), Ok(()), "current");
        assert_eq!(states.check("s", "t1", 0, now + 10_000), Ok(()), "previous, within grace");
        assert_eq!(states.check("s", "t1", 0, now + 10_001), Err(Refusal::Rotated), "previous, after grace");
        assert_eq!(states.check("s", "t3", 2, now), Ok(()), "newer than any event seen yet");
        states.apply(&rotated(2, "s", "t2", "t3", 2, now + 1));
        assert_eq!(states.check("s", "t1", 0, now + 2), Err(Refusal::Rotated), "two rotations old, even in grace");
        assert_eq!(states.check("s", "t2", 1, now + 2), Ok(()));
        assert_eq!(states.check("other", "x", 0, now), Ok(()), "nothing known of it");
        states.apply(&revoked(3, "s", now + 3_600_000));
        assert_eq!(states.check("s", "t3", 2, now + 2), Err(Refusal::Revoked));
        assert_eq!(states.check("s", "t9", 9, now + 2), Err(Refusal::Revoked), "even newer tokens");
        states.apply(&rotated(4, "s", "t3", "t4", 3, now + 3));
        assert_eq!(states.check("s", "t4", 3, now + 3), Err(Refusal::Revoked), "revoked is final");
    }

    #[test]
    fn memory_is_bounded_by_sessions_not_refreshes() {
        let mut states = SessionStates::default();
        let mut now = 1_000_000;
        for generation in 1..=10_000u64 {
            let previous = format!("t{}", generation - 1);
            let current = format!("t{generation}");
            states.apply(&rotated(generation, "s", &previous, &current, generation, now));
            now += 60_000;
        }
        assert_eq!(states.len(), 1, "one entry for a session refreshed 10,000 times");
        assert_eq!(states.check("s", "t10000", 10_000, now), Ok(()));
        assert_eq!(states.check("s", "t5000", 5_000, now), Err(Refusal::Rotated));
        for session in 0..1000 {
            states.apply(&rotated(20_000, &format!("other-{session}"), "a", "b", 1, now));
        }
        assert_eq!(states.len(), 1001, "one per session");
    }

    #[test]
    fn an_older_event_never_overwrites_a_newer_state() {
        let mut states = SessionStates::default();
        let now = 1_000_000;
        // A per-session snapshot read a little after its cursor, then the live event it already holds.
        states.apply(&rotated(7, "s", "t2", "t3", 3, now));
        states.apply(&rotated(6, "s", "t1", "t2", 2, now));
        assert_eq!(states.check("s", "t3", 3, now), Ok(()));
        assert_eq!(states.check("s", "t1", 1, now), Err(Refusal::Rotated));
    }

    #[test]
    fn entries_are_forgotten_after_their_expiry_and_the_leeway() {
        let mut states = SessionStates::default();
        states.apply(&revoked(1, "a", 100_000));
        states.apply(&rotated(2, "b", "t1", "t2", 1, 1_000_000));
        states.forget_expired(100_000 + LEEWAY_SECONDS * 1000);
        assert_eq!(states.check("a", "x", 0, 0), Err(Refusal::Revoked), "still within the leeway");
        states.forget_expired(100_001 + LEEWAY_SECONDS * 1000);
        assert_eq!(states.len(), 1);
        assert_eq!(states.check("a", "x", 0, 0), Ok(()), "expired tokens fail on their own");
    }

    #[test]
    fn events_of_older_servers_deny_the_retired_token() {
        let mut states = SessionStates::default();
        states.apply(&RevocationEvent {
            cursor: 1,
            kind: RevocationEventKind::Revoked.into(),
            session_id: "s".into(),
            token_id: "t1".into(),
            reason: RevocationReason::Rotated.into(),
            expires_at: at(5_000_000),
            ..Default::default()
        });
        assert_eq!(states.check("s", "t1", 0, 0), Err(Refusal::Rotated));
        assert_eq!(states.check("s", "t2", 1, 0), Ok(()));
    }

    #[test]
    fn the_cursor_moves_only_after_the_snapshot() {
        let mut follower = Follower::new(String::new(), String::new());
        follower.handle(&revoked(3, "s", i64::MAX / 2));
        assert_eq!(follower.cursor, None, "a snapshot entry is not a resume point");
        follower.handle(&RevocationEvent {
            cursor: 7,
            kind: RevocationEventKind::SnapshotEnd.into(),
            ..Default::default()
        });
        assert_eq!(follower.cursor, Some(7));
        follower.handle(&revoked(8, "t", i64::MAX / 2));
        assert_eq!(follower.cursor, Some(8));
        assert_eq!(follower.states.len(), 2);
    }
}
