//! What a verified token says about its holder, and why a token is refused.

use std::{fmt, time::SystemTime};

use crate::proto;

/// The verified identity behind a token. [`AuthLayer`](crate::AuthLayer)
/// puts it into each request's extensions as an `Arc<Claims>` (shared with
/// the verifier's memory of the token, so passing it on costs nothing): a
/// tonic handler reads it with `request.extensions().get::<Arc<Claims>>()`,
/// an axum handler with `Extension<Arc<Claims>>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The user's id (`sub`).
    pub user_id: String,
    pub username: String,
    pub session_id: String,
    pub roles: Vec<String>,
    pub issued_at: SystemTime,
    pub expires_at: SystemTime,
}

impl Claims {
    /// Whether the token carries `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|held| held == role)
    }
}

/// Why a token was refused: the reasons of the authority's Verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// Not a JWT, or claims of the wrong shape.
    Malformed,
    /// The signature does not match, the key is unknown, or the algorithm is not the key's.
    BadSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    /// The session was revoked (logout, password change, reuse, an operator).
    Revoked,
    /// The token was replaced by a refresh and its grace period is over.
    Rotated,
    /// The session does not exist.
    UnknownSession,
    /// The client does not match the one the session is bound to.
    BindingMismatch,
    /// Signed by one of the authority's keys but not typed `at+jwt`.
    WrongType,
    /// A reason this version of the client does not know (a newer authority).
    Other(i32),
}

impl Reason {
    /// The reason's name as the authority's API spells it, for logs and
    /// error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::Revoked => "revoked",
            Self::Rotated => "rotated",
            Self::UnknownSession => "unknown_session",
            Self::BindingMismatch => "binding_mismatch",
            Self::WrongType => "wrong_type",
            Self::Other(_) => "other",
        }
    }

    pub(crate) fn from_proto(reason: i32) -> Self {
        use proto::VerifyReason as R;
        match R::try_from(reason) {
            Ok(R::Malformed) => Self::Malformed,
            Ok(R::BadSignature) => Self::BadSignature,
            Ok(R::Expired) => Self::Expired,
            Ok(R::NotYetValid) => Self::NotYetValid,
            Ok(R::WrongIssuer) => Self::WrongIssuer,
            Ok(R::WrongAudience) => Self::WrongAudience,
            Ok(R::Revoked) => Self::Revoked,
            Ok(R::Rotated) => Self::Rotated,
            Ok(R::UnknownSession) => Self::UnknownSession,
            Ok(R::BindingMismatch) => Self::BindingMismatch,
            Ok(R::WrongType) => Self::WrongType,
            Ok(R::Unspecified | R::Ok) | Err(_) => Self::Other(reason),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_of_the_proto_has_a_reason_and_ok_is_not_one() {
        assert_eq!(Reason::from_proto(proto::VerifyReason::Revoked.into()), Reason::Revoked);
        assert_eq!(Reason::from_proto(proto::VerifyReason::Expired.into()), Reason::Expired);
        assert_eq!(Reason::from_proto(proto::VerifyReason::Ok.into()), Reason::Other(1));
        assert_eq!(Reason::from_proto(999), Reason::Other(999));
    }
}
