//! The authority's one error type. The gRPC layer maps each variant to a
//! status in one place (`grpc::status`). Failures that are not the caller's
//! fault keep their cause (`source`), so the log shows the whole chain.

use std::time::Duration;

use crate::{
    domain::{SessionId, UserId, password_hash::PasswordHashError, tokens::KeyError, tokens::TokenRejection},
    repository::RepositoryError,
};

#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    /// Unknown user, wrong password and disabled user look the same to the
    /// caller, so the answer does not tell which usernames exist.
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("current_password: does not match")]
    WrongCurrentPassword,
    #[error("access_token: {0}")]
    InvalidToken(TokenRejection),
    #[error("access_token: session is unknown")]
    UnknownSession,
    #[error("access_token: session has been revoked")]
    SessionRevoked,
    #[error("access_token: token has been rotated; use the newer token")]
    TokenRotated,
    #[error("access_token: token was already rotated; the session has been revoked as a precaution")]
    TokenReused,
    #[error("access_token: the user is disabled")]
    UserDisabled,
    #[error("access_token: the session reached its maximum lifetime (SESSION_MAX_LIFETIME); log in again")]
    SessionTooOld,
    /// The presented client does not match the one the session is bound to
    /// (SESSION_BINDING=enforce).
    #[error("client: does not match the client this session is bound to")]
    BindingMismatch,
    #[error("this session was refreshed too recently (REFRESH_MIN_INTERVAL); retry in {} s", .0.as_secs().max(1))]
    RefreshTooSoon(Duration),
    #[error("user_id: no user {0}")]
    UserNotFound(UserId),
    #[error("session_id: no session {0}")]
    SessionNotFound(SessionId),
    #[error("username: already taken")]
    UsernameTaken,
    #[error("too many password checks in progress; retry shortly")]
    Overloaded,
    #[error("too many failed login attempts; retry in {} s", .0.as_secs().max(1))]
    TooManyAttempts(Duration),
    #[error("a concurrent change to the same session or user won; retry")]
    Conflict,
    /// The database cannot be reached right now: worth retrying.
    #[error("database unavailable")]
    Unavailable(#[source] RepositoryError),
    /// Anything else that is not the caller's fault.
    #[error("internal error: {0}")]
    Internal(#[source] InternalError),
}

/// The causes of an internal error, each with its own source.
#[derive(Debug, thiserror::Error)]
pub enum InternalError {
    #[error("database")]
    Database(#[source] RepositoryError),
    #[error("signing a token")]
    Signing(#[source] KeyError),
    #[error("password hashing")]
    PasswordHashing(#[source] PasswordHashError),
    #[error("the password hashing threads stopped")]
    PasswordPoolStopped,
}

impl From<RepositoryError> for AuthorityError {
    fn from(error: RepositoryError) -> Self {
        match error {
            RepositoryError::Unavailable(_) => Self::Unavailable(error),
            _ => Self::Internal(InternalError::Database(error)),
        }
    }
}

impl From<InternalError> for AuthorityError {
    fn from(error: InternalError) -> Self {
        Self::Internal(error)
    }
}
