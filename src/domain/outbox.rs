//! The outbox's entries: revocations, and changes of the signing keys. Both
//! share one cursor order, so that every replica and every subscriber hears
//! of them in the same order, exactly once.

use super::{RevocationEvent, Timestamp};

/// What happened to the key set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySetChange {
    /// A key was published (ahead of signing, or at once for the first).
    Published,
    /// A key was removed in an emergency.
    Removed,
    /// Retired keys were deleted: every token they signed has expired.
    Deleted,
    /// A stored key was sealed under KEY_ENCRYPTION_KEY: the published set
    /// is the same, the replicas reload.
    Sealed,
}

impl KeySetChange {
    pub const ALL: [Self; 4] = [Self::Published, Self::Removed, Self::Deleted, Self::Sealed];

    /// The stored form; also used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Published => "key_published",
            Self::Removed => "key_removed",
            Self::Deleted => "key_deleted",
            Self::Sealed => "key_sealed",
        }
    }

    pub fn from_stored(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|change| change.as_str() == value)
    }
}

/// One entry of the outbox, in its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxEvent {
    Revoked(RevocationEvent),
    KeySetChanged {
        cursor: u64,
        change: KeySetChange,
        at: Timestamp,
    },
}

impl OutboxEvent {
    pub fn cursor(&self) -> u64 {
        match self {
            Self::Revoked(event) => event.cursor,
            Self::KeySetChanged { cursor, .. } => *cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_round_trips() {
        for change in KeySetChange::ALL {
            assert_eq!(KeySetChange::from_stored(change.as_str()), Some(change));
        }
        assert_eq!(KeySetChange::from_stored("logout"), None);
    }
}
