//! The life of a key the server makes and keeps in the database, as a rule
//! of stored times and the clock, so that every replica reading the same
//! rows at the same time agrees on every key's state without talking to the
//! others:
//!
//! - `next`: published (in the JWKS, on the stream), not signing yet;
//! - `active`: signs (and is published);
//! - `retired`: published, verifies only, until every token it signed has
//!   expired: its retirement plus the longest token lifetime plus the leeway;
//! - `expired`: past that, deleted.
//!
//! A key signs from `activates_at` until `retires_at`, which is set to its
//! successor's `activates_at` when the successor is published. When a
//! rotation is due, and what the next key looks like, is decided here
//! ([`plan_rotation`]); that exactly one replica carries it out is the
//! repository's conditional write.

use std::time::Duration;

use super::keys::SigningAlgorithm;
use crate::domain::Timestamp;

/// When a key was published, signs, and stops signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySchedule {
    pub published_at: Timestamp,
    pub activates_at: Timestamp,
    /// `None` until a successor is published.
    pub retires_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Next,
    Active,
    Retired,
    /// Every token it signed has expired: it is deleted.
    Expired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Active => "active",
            Self::Retired => "retired",
            Self::Expired => "expired",
        }
    }
}

impl KeySchedule {
    /// The state at `now`; `retention` is how long a token can stay valid
    /// after it was signed (the longest lifetime plus the leeway).
    pub fn state(&self, now: Timestamp, retention: Duration) -> KeyState {
        if now < self.activates_at {
            return KeyState::Next;
        }
        match self.retires_at {
            Some(retires_at) if now >= retires_at => {
                if now < retires_at.plus(retention) {
                    KeyState::Retired
                } else {
                    KeyState::Expired
                }
            }
            _ => KeyState::Active,
        }
    }

    /// When the key is deleted, once it has a successor.
    pub fn deletes_at(&self, retention: Duration) -> Option<Timestamp> {
        self.retires_at.map(|retires_at| retires_at.plus(retention))
    }
}

/// A stored key as the lifecycle sees it: no material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub kid: String,
    /// The rotation that made it: unique, so that of replicas racing to
    /// make the same rotation, exactly one succeeds.
    pub generation: i64,
    pub algorithm: SigningAlgorithm,
    pub schedule: KeySchedule,
}

/// How keys rotate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// The algorithm of new keys (JWT_ALGORITHM).
    pub algorithm: SigningAlgorithm,
    /// How long a key signs (KEY_ROTATION_INTERVAL).
    pub interval: Duration,
    /// How long a key is published before it signs (KEY_PUBLISH_AHEAD).
    pub publish_ahead: Duration,
    /// How long a key stays published after it stops signing: the longest
    /// token lifetime plus the leeway.
    pub retention: Duration,
}

/// Why a key is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationReason {
    /// The database holds no key that signs or will.
    FirstKey,
    /// The active key has signed for KEY_ROTATION_INTERVAL (less the time
    /// its successor is published ahead).
    Scheduled,
    /// JWT_ALGORITHM names another algorithm than the active key's.
    AlgorithmChanged,
    /// An operator asked (`token-authority keys rotate`).
    Requested,
}

impl RotationReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FirstKey => "first key",
            Self::Scheduled => "scheduled",
            Self::AlgorithmChanged => "JWT_ALGORITHM changed",
            Self::Requested => "requested",
        }
    }
}

/// A key to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedKey {
    /// One above every stored generation.
    pub generation: i64,
    pub activates_at: Timestamp,
    pub reason: RotationReason,
}

/// Whether a key must be published now, given the stored keys. `fallback`
/// says a configured secret (JWT_SECRET) can sign until a stored key does,
/// so that even the first key is published ahead.
pub fn plan_rotation(keys: &[KeyInfo], now: Timestamp, policy: &RotationPolicy, fallback: bool) -> Option<PlannedKey> {
    let state = |key: &KeyInfo| key.schedule.state(now, policy.retention);
    if keys.iter().any(|key| state(key) == KeyState::Next) {
        return None;
    }
    let generation = keys.iter().map(|key| key.generation).max().unwrap_or(0) + 1;
    let ahead = now.plus(policy.publish_ahead);
    let planned = |activates_at, reason| {
        Some(PlannedKey {
            generation,
            activates_at,
            reason,
        })
    };
    match active_key(keys, now, policy.retention) {
        None if fallback => planned(ahead, RotationReason::FirstKey),
        None => planned(now, RotationReason::FirstKey),
        Some(active) if active.algorithm != policy.algorithm => planned(ahead, RotationReason::AlgorithmChanged),
        Some(active) => {
            let due = active.schedule.activates_at.plus(policy.interval);
            if now.plus(policy.publish_ahead) >= due {
                planned(due.max(ahead), RotationReason::Scheduled)
            } else {
                None
            }
        }
    }
}

/// A key published on request, whatever the schedule says: `None` when a
/// next key is published already (it signs within KEY_PUBLISH_AHEAD). It
/// signs after the publish-ahead, unless nothing signs meanwhile (no stored
/// key is active and no configured secret can): then at once.
pub fn plan_requested_rotation(
    keys: &[KeyInfo],
    now: Timestamp,
    policy: &RotationPolicy,
    fallback: bool,
) -> Option<PlannedKey> {
    if keys.iter().any(|key| key.schedule.state(now, policy.retention) == KeyState::Next) {
        return None;
    }
    let nothing_signs = active_key(keys, now, policy.retention).is_none() && !fallback;
    Some(PlannedKey {
        generation: keys.iter().map(|key| key.generation).max().unwrap_or(0) + 1,
        activates_at: if nothing_signs {
            now
        } else {
            now.plus(policy.publish_ahead)
        },
        reason: RotationReason::Requested,
    })
}

/// The key that signs at `now`: of the active ones (several only for keys
/// carried over from before rotation), the newest.
pub fn active_key(keys: &[KeyInfo], now: Timestamp, retention: Duration) -> Option<&KeyInfo> {
    keys.iter()
        .filter(|key| key.schedule.state(now, retention) == KeyState::Active)
        .max_by_key(|key| key.generation)
}

/// What an emergency removal of a key also does so that signing goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replacement {
    /// Another key signs, or a configured secret does: nothing to do.
    None,
    /// The next key signs from now on instead of after its publish-ahead.
    ActivateNext { kid: String },
    /// No key is left to sign: a new one signs at once.
    NewKey { generation: i64 },
}

/// How signing goes on once `kid` is removed at `now`.
pub fn plan_removal(keys: &[KeyInfo], kid: &str, now: Timestamp, retention: Duration, fallback: bool) -> Replacement {
    let rest: Vec<KeyInfo> = keys.iter().filter(|key| key.kid != kid).cloned().collect();
    if fallback || active_key(&rest, now, retention).is_some() {
        return Replacement::None;
    }
    let next = rest
        .iter()
        .filter(|key| key.schedule.state(now, retention) == KeyState::Next)
        .min_by_key(|key| key.generation);
    match next {
        Some(next) => Replacement::ActivateNext { kid: next.kid.clone() },
        None => Replacement::NewKey {
            generation: keys.iter().map(|key| key.generation).max().unwrap_or(0) + 1,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);
    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn policy() -> RotationPolicy {
        RotationPolicy {
            algorithm: SigningAlgorithm::EdDsa,
            interval: 30 * DAY,
            publish_ahead: HOUR,
            retention: 30 * DAY,
        }
    }

    fn start() -> Timestamp {
        Timestamp::from_unix_seconds(1_750_000_000)
    }

    fn key(generation: i64, activates_at: Timestamp, retires_at: Option<Timestamp>) -> KeyInfo {
        KeyInfo {
            kid: format!("k{generation}"),
            generation,
            algorithm: SigningAlgorithm::EdDsa,
            schedule: KeySchedule {
                published_at: activates_at,
                activates_at,
                retires_at,
            },
        }
    }

    #[test]
    fn a_key_moves_from_next_to_active_to_retired_to_expired() {
        let schedule = KeySchedule {
            published_at: start(),
            activates_at: start().plus(HOUR),
            retires_at: Some(start().plus(HOUR + DAY)),
        };
        let state = |at: Duration| schedule.state(start().plus(at), DAY);
        assert_eq!(state(Duration::ZERO), KeyState::Next);
        assert_eq!(state(HOUR), KeyState::Active);
        assert_eq!(state(HOUR + DAY), KeyState::Retired);
        assert_eq!(state(HOUR + 2 * DAY - Duration::from_millis(1)), KeyState::Retired);
        assert_eq!(state(HOUR + 2 * DAY), KeyState::Expired);
        assert_eq!(schedule.deletes_at(DAY), Some(start().plus(HOUR + 2 * DAY)));
    }

    #[test]
    fn the_first_key_signs_at_once_unless_a_configured_secret_signs_meanwhile() {
        let first = plan_rotation(&[], start(), &policy(), false).unwrap();
        assert_eq!((first.generation, first.activates_at, first.reason), (1, start(), RotationReason::FirstKey));
        let ahead = plan_rotation(&[], start(), &policy(), true).unwrap();
        assert_eq!(ahead.activates_at, start().plus(HOUR));
    }

    #[test]
    fn the_successor_is_published_ahead_of_the_interval() {
        let keys = [key(1, start(), None)];
        let before = start().plus(30 * DAY - HOUR - Duration::from_millis(1));
        assert_eq!(plan_rotation(&keys, before, &policy(), false), None);
        let due = plan_rotation(&keys, start().plus(30 * DAY - HOUR), &policy(), false).unwrap();
        assert_eq!((due.generation, due.activates_at), (2, start().plus(30 * DAY)));
        // Late (every replica was down): still published a full hour ahead.
        let late = plan_rotation(&keys, start().plus(40 * DAY), &policy(), false).unwrap();
        assert_eq!(late.activates_at, start().plus(40 * DAY + HOUR));
    }

    #[test]
    fn nothing_is_published_while_a_next_key_waits() {
        let keys = [
            key(1, start(), Some(start().plus(30 * DAY))),
            key(2, start().plus(30 * DAY), None),
        ];
        assert_eq!(plan_rotation(&keys, start().plus(30 * DAY - HOUR), &policy(), false), None);
        assert_eq!(plan_requested_rotation(&keys, start().plus(30 * DAY - HOUR), &policy(), false), None);
        let after = plan_requested_rotation(&keys, start().plus(30 * DAY), &policy(), false).unwrap();
        assert_eq!((after.generation, after.activates_at), (3, start().plus(30 * DAY + HOUR)));
        let first = plan_requested_rotation(&[], start(), &policy(), false).unwrap();
        assert_eq!(first.activates_at, start(), "nothing would sign for an hour");
    }

    #[test]
    fn another_algorithm_rotates_after_the_publish_ahead() {
        let keys = [KeyInfo {
            algorithm: SigningAlgorithm::Hs256,
            ..key(1, start(), None)
        }];
        let planned = plan_rotation(&keys, start().plus(DAY), &policy(), false).unwrap();
        assert_eq!(planned.reason, RotationReason::AlgorithmChanged);
        assert_eq!(planned.activates_at, start().plus(DAY + HOUR));
    }

    #[test]
    fn of_several_active_keys_the_newest_signs() {
        let keys = [key(1, start(), None), key(2, start().plus(HOUR), None)];
        assert_eq!(active_key(&keys, start().plus(DAY), DAY).unwrap().kid, "k2");
        assert_eq!(active_key(&keys, start(), DAY).unwrap().kid, "k1");
    }

    #[test]
    fn removing_the_active_key_activates_the_next_or_makes_one() {
        let now = start().plus(DAY);
        let alone = [key(1, start(), None)];
        assert_eq!(plan_removal(&alone, "k1", now, DAY, false), Replacement::NewKey { generation: 2 });
        assert_eq!(plan_removal(&alone, "k1", now, DAY, true), Replacement::None, "JWT_SECRET signs");
        let with_next = [key(1, start(), Some(now.plus(HOUR))), key(2, now.plus(HOUR), None)];
        assert_eq!(plan_removal(&with_next, "k1", now, DAY, false), Replacement::ActivateNext { kid: "k2".into() });
        assert_eq!(plan_removal(&with_next, "k2", now, DAY, false), Replacement::None, "k1 still signs");
    }
}
