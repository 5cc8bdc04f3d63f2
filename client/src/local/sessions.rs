//! What the revocation stream has said about sessions, kept by the
//! per-session rule written on `RevocationEvent` in the proto: O(1) per
//! session however often it is refreshed, forgotten once every token of the
//! session has expired (plus the leeway accepted on `exp`).
//!
//! Read on every verification while the stream task writes: concurrent maps
//! (sharded locks, each held for one insert), so a reader never waits for
//! more than one map operation of the writer. Ids are UUIDs in every token
//! the authority signs, kept as `u128` (16 bytes instead of a 36-character
//! string): a revoked session costs one key and one timestamp.

use std::sync::atomic::{AtomicBool, Ordering};

use dashmap::DashMap;
use uuid::Uuid;

use crate::{Reason, proto};

type FastMap<V> = DashMap<u128, V, foldhash::fast::RandomState>;

/// A session that was rotated and not revoked: which of its tokens pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rotation {
    current_token_id: u128,
    current_generation: u64,
    previous_token_id: u128,
    /// Unix milliseconds until which the previous token is accepted.
    grace_ends_at: i64,
    /// Unix milliseconds when the session's last token expires.
    expires_at: i64,
}

/// The per-session state.
#[derive(Debug, Default)]
pub(crate) struct SessionStates {
    /// Revoked sessions (final) -> when their last token expires (unix ms).
    revoked: FastMap<i64>,
    rotated: FastMap<Rotation>,
    /// Retired tokens named by events of servers older than the per-session
    /// rule (no current_token_id): jti -> expiry (unix ms).
    legacy_denied: FastMap<i64>,
    /// Set (for good) once `legacy_denied` has held an entry, so that the
    /// hot path skips it with one load: `DashMap::is_empty` read-locks every
    /// shard (four per core).
    any_legacy_denied: AtomicBool,
}

/// Unix milliseconds of a timestamp; unset reads as "never", which only an
/// event of a broken server would send.
fn millis(time: Option<&prost_types::Timestamp>) -> i64 {
    time.map_or(i64::MAX, |time| time.seconds.saturating_mul(1000).saturating_add(i64::from(time.nanos / 1_000_000)))
}

fn id(text: &str) -> Option<u128> {
    Uuid::try_parse(text).ok().map(|id| id.as_u128())
}

impl SessionStates {
    /// Applies a REVOKED event, live or from the snapshot, in cursor order.
    pub(crate) fn apply(&self, event: &proto::RevocationEvent) {
        let Some(session) = id(&event.session_id) else {
            tracing::warn!(cursor = event.cursor, "a revocation names a session id that is not a UUID; ignored");
            return;
        };
        let session_expires_at = match event.session_expires_at.as_ref() {
            Some(time) => millis(Some(time)),
            None => millis(event.expires_at.as_ref()),
        };
        if event.token_id.is_empty() {
            // Revoked is final. Inserted before the rotation is dropped, so
            // a concurrent check never sees neither.
            self.revoked.insert(session, session_expires_at);
            self.rotated.remove(&session);
            return;
        }
        let Some(retired) = id(&event.token_id) else {
            tracing::warn!(cursor = event.cursor, "a rotation names a token id that is not a UUID; ignored");
            return;
        };
        if event.current_token_id.is_empty() {
            self.legacy_denied.insert(retired, millis(event.expires_at.as_ref()));
            // After the insert: a check that sees the flag finds the entry.
            self.any_legacy_denied.store(true, Ordering::Release);
            return;
        }
        let Some(current) = id(&event.current_token_id) else {
            tracing::warn!(cursor = event.cursor, "a rotation names a current token id that is not a UUID; ignored");
            return;
        };
        if self.revoked.contains_key(&session) {
            return;
        }
        let rotation = Rotation {
            current_token_id: current,
            current_generation: event.current_generation,
            previous_token_id: retired,
            grace_ends_at: millis(event.grace_ends_at.as_ref()),
            expires_at: session_expires_at,
        };
        self.rotated
            .entry(session)
            .and_modify(|known| {
                if known.current_generation <= rotation.current_generation {
                    *known = rotation;
                }
            })
            .or_insert(rotation);
    }

    /// Whether a token (signature and claims already checked) of session
    /// `session`, with id `token` and generation `generation`, passes at
    /// `now` (unix ms).
    pub(crate) fn check(&self, session: u128, token: u128, generation: u64, now: i64) -> Result<(), Reason> {
        if self.revoked.contains_key(&session) {
            return Err(Reason::Revoked);
        }
        if self.any_legacy_denied.load(Ordering::Acquire) && self.legacy_denied.contains_key(&token) {
            return Err(Reason::Rotated);
        }
        let Some(rotation) = self.rotated.get(&session).map(|entry| *entry) else {
            return Ok(());
        };
        if token == rotation.current_token_id
            || generation > rotation.current_generation
            || (token == rotation.previous_token_id && now <= rotation.grace_ends_at)
        {
            Ok(())
        } else {
            Err(Reason::Rotated)
        }
    }

    /// Forgets entries once `now` (unix ms) is past their expiry plus `leeway_ms`.
    pub(crate) fn forget_expired(&self, now: i64, leeway_ms: i64) {
        let live = |expires_at: i64| expires_at.saturating_add(leeway_ms) >= now;
        self.revoked.retain(|_, expires_at| live(*expires_at));
        self.rotated.retain(|_, rotation| live(rotation.expires_at));
        self.legacy_denied.retain(|_, expires_at| live(*expires_at));
    }

    /// Entries held: revoked sessions, rotated sessions, legacy denials.
    pub(crate) fn len(&self) -> usize {
        self.revoked.len() + self.rotated.len() + self.legacy_denied.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp {
            seconds: millis / 1000,
            nanos: i32::try_from((millis % 1000) * 1_000_000).unwrap(),
        })
    }

    fn uuid(n: u128) -> String {
        Uuid::from_u128(n).to_string()
    }

    fn revoked(session: u128, expires_at: i64) -> proto::RevocationEvent {
        proto::RevocationEvent {
            kind: proto::RevocationEventKind::Revoked.into(),
            session_id: uuid(session),
            reason: proto::RevocationReason::Logout.into(),
            expires_at: at(expires_at),
            ..Default::default()
        }
    }

    fn rotated(
        session: u128,
        retired: u128,
        current: u128,
        generation: u64,
        grace_ends_at: i64,
    ) -> proto::RevocationEvent {
        proto::RevocationEvent {
            kind: proto::RevocationEventKind::Revoked.into(),
            session_id: uuid(session),
            token_id: uuid(retired),
            reason: proto::RevocationReason::Rotated.into(),
            current_token_id: uuid(current),
            current_generation: generation,
            grace_ends_at: at(grace_ends_at),
            expires_at: at(50_000),
            session_expires_at: at(100_000),
            ..Default::default()
        }
    }

    #[test]
    fn the_per_session_rule() {
        let states = SessionStates::default();
        assert_eq!(states.check(1, 10, 0, 0), Ok(()), "no entry: nothing revoked or rotated it");
        states.apply(&rotated(1, 10, 11, 1, 5_000));
        assert_eq!(states.check(1, 11, 1, 1_000), Ok(()), "the current token");
        assert_eq!(states.check(1, 12, 2, 1_000), Ok(()), "newer than any event seen");
        assert_eq!(states.check(1, 10, 0, 5_000), Ok(()), "the previous token within grace");
        assert_eq!(states.check(1, 10, 0, 5_001), Err(Reason::Rotated), "after grace");
        assert_eq!(states.check(1, 9, 0, 1_000), Err(Reason::Rotated), "an older token");
        states.apply(&revoked(1, 100_000));
        assert_eq!(states.check(1, 11, 1, 1_000), Err(Reason::Revoked));
        assert_eq!(states.check(1, 12, 2, 1_000), Err(Reason::Revoked), "revoked covers every token");
        states.apply(&rotated(1, 11, 12, 2, 5_000));
        assert_eq!(states.check(1, 12, 2, 1_000), Err(Reason::Revoked), "revoked is final");
    }

    #[test]
    fn memory_is_bounded_by_sessions_not_refreshes() {
        let states = SessionStates::default();
        for generation in 1..=1_000u64 {
            let token = u128::from(generation);
            states.apply(&rotated(7, token - 1 + 100, token + 100, generation, 0));
        }
        assert_eq!(states.len(), 1);
        assert_eq!(states.check(7, 1_100, 1_000, 0), Ok(()));
    }

    #[test]
    fn an_older_event_never_overwrites_a_newer_state() {
        let states = SessionStates::default();
        states.apply(&rotated(1, 11, 12, 2, 0));
        states.apply(&rotated(1, 10, 11, 1, 0));
        assert_eq!(states.check(1, 12, 2, 1), Ok(()));
        assert_eq!(states.check(1, 11, 1, 1), Err(Reason::Rotated));
    }

    #[test]
    fn entries_are_forgotten_after_their_expiry_and_the_leeway() {
        let states = SessionStates::default();
        states.apply(&revoked(1, 10_000));
        states.apply(&rotated(2, 20, 21, 1, 0));
        states.forget_expired(15_000, 5_000);
        assert_eq!(states.len(), 2, "within the leeway");
        states.forget_expired(15_001, 5_000);
        assert_eq!(states.len(), 1, "the revoked session's tokens have all expired");
        states.forget_expired(105_001, 5_000);
        assert_eq!(states.len(), 0);
    }

    #[test]
    fn events_of_older_servers_deny_the_retired_token() {
        let states = SessionStates::default();
        let mut legacy = rotated(1, 10, 11, 1, 0);
        legacy.current_token_id.clear();
        states.apply(&legacy);
        assert_eq!(states.check(1, 10, 0, 0), Err(Reason::Rotated));
        assert_eq!(states.check(1, 11, 1, 0), Ok(()));
    }

    #[test]
    fn ids_that_are_not_uuids_change_nothing() {
        let states = SessionStates::default();
        let mut event = revoked(1, 10_000);
        event.session_id = "not-a-uuid".into();
        states.apply(&event);
        assert_eq!(states.len(), 0);
    }
}
