//! Revocations: why a session or token stopped being valid, and the events
//! that tell every backend service about it.

use super::{Session, SessionId, Timestamp, TokenId, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevocationReason {
    Logout,
    LogoutAll,
    PasswordChanged,
    ReuseDetected,
    Admin,
    UserDisabled,
    /// One token retired by a refresh; its session lives on.
    Rotated,
    /// Revoked by a security action (SECURITY_REVOKE_ON).
    SecurityAction,
}

impl RevocationReason {
    pub const ALL: [Self; 8] = [
        Self::Logout,
        Self::LogoutAll,
        Self::PasswordChanged,
        Self::ReuseDetected,
        Self::Admin,
        Self::UserDisabled,
        Self::Rotated,
        Self::SecurityAction,
    ];

    /// The stored form; also used in logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::LogoutAll => "logout_all",
            Self::PasswordChanged => "password_changed",
            Self::ReuseDetected => "reuse_detected",
            Self::Admin => "admin",
            Self::UserDisabled => "user_disabled",
            Self::Rotated => "rotated",
            Self::SecurityAction => "security_action",
        }
    }

    pub fn from_stored(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == value)
    }
}

/// A revocation as written, before the outbox gives it its place (cursor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub session_id: SessionId,
    pub user_id: UserId,
    /// The one retired token for [`RevocationReason::Rotated`]; `None` when
    /// the whole session is revoked.
    pub token_id: Option<TokenId>,
    pub reason: RevocationReason,
    pub revoked_at: Timestamp,
    /// When the last token this revocation covers expires.
    pub expires_at: Timestamp,
    /// When the session's last token expires: a consumer keeping one entry
    /// per session forgets it then.
    pub session_expires_at: Timestamp,
    /// For a rotation, the session's state after it.
    pub successor: Option<Successor>,
}

/// What a rotation made current, so that a consumer keeps one entry per
/// session (overwritten by each rotation) instead of one per retired token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Successor {
    /// The token now current (its `jti`).
    pub token_id: TokenId,
    /// Its `gen` claim.
    pub generation: u64,
    /// Until when the retired token still works (the rotation grace).
    pub grace_ends_at: Timestamp,
}

impl Revocation {
    /// A whole session revoked: it covers tokens up to the session's expiry.
    pub fn of_session(session: &Session, reason: RevocationReason, now: Timestamp) -> Self {
        Self {
            session_id: session.id,
            user_id: session.user_id,
            token_id: None,
            reason,
            revoked_at: now,
            expires_at: session.expires_at,
            session_expires_at: session.expires_at,
            successor: None,
        }
    }

    /// One token retired by a rotation of `session` (as it is after the
    /// rotation); the retired token lives until `token_expires_at` and keeps
    /// working until `grace_ends_at`.
    pub fn of_token(
        session: &Session,
        token: TokenId,
        token_expires_at: Timestamp,
        now: Timestamp,
        grace_ends_at: Timestamp,
    ) -> Self {
        Self {
            session_id: session.id,
            user_id: session.user_id,
            token_id: Some(token),
            reason: RevocationReason::Rotated,
            revoked_at: now,
            expires_at: token_expires_at,
            session_expires_at: session.expires_at,
            successor: Some(Successor {
                token_id: session.current_token_id,
                generation: session.generation,
                grace_ends_at,
            }),
        }
    }
}

/// One entry of the revocation outbox, in its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationEvent {
    /// Strictly increasing and gapless, in the order readers see events.
    pub cursor: u64,
    pub session_id: SessionId,
    pub user_id: UserId,
    /// The one retired token for [`RevocationReason::Rotated`]; `None` when
    /// the whole session is revoked.
    pub token_id: Option<TokenId>,
    pub reason: RevocationReason,
    pub revoked_at: Timestamp,
    /// When the last token this event covers expires; afterwards a consumer
    /// may forget it.
    pub expires_at: Timestamp,
    /// When the session's last token expires (`None` for events written
    /// before it was recorded).
    pub session_expires_at: Option<Timestamp>,
    /// For a rotation, the session's state after it (`None` for events
    /// written before it was recorded).
    pub successor: Option<Successor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_round_trips() {
        for reason in RevocationReason::ALL {
            assert_eq!(RevocationReason::from_stored(reason.as_str()), Some(reason));
        }
        assert_eq!(RevocationReason::from_stored("bogus"), None);
    }
}
