//! Revocations: why a session or token stopped being valid, and the events
//! that tell every backend service about it.

use super::{SessionId, Timestamp, TokenId, UserId};

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
}

impl RevocationReason {
    pub const ALL: [Self; 7] = [
        Self::Logout,
        Self::LogoutAll,
        Self::PasswordChanged,
        Self::ReuseDetected,
        Self::Admin,
        Self::UserDisabled,
        Self::Rotated,
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
        }
    }

    pub fn from_stored(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == value)
    }
}

/// A session revoked by a write, as the caller needs it afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevokedSession {
    pub session_id: SessionId,
    pub user_id: UserId,
    pub expires_at: Timestamp,
}

/// One entry of the revocation outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationEvent {
    /// Strictly increasing and gapless, in commit order.
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
