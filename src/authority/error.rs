//! The authority's one error type. The gRPC layer maps each variant to a
//! status in one place (`grpc::status`).

use crate::{
    domain::{SessionId, UserId, ValidationError, tokens::TokenRejection},
    repository::RepositoryError,
};

#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    #[error(transparent)]
    InvalidArgument(#[from] ValidationError),
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
    #[error("user_id: no user {0}")]
    UserNotFound(UserId),
    #[error("session_id: no session {0}")]
    SessionNotFound(SessionId),
    #[error("username: already taken")]
    UsernameTaken,
    #[error("too many password checks in progress; retry shortly")]
    Overloaded,
    #[error("too many login attempts for this username; retry in {} s", .0.as_secs().max(1))]
    TooManyAttempts(std::time::Duration),
    #[error("a concurrent change to the same session or user won; retry")]
    Conflict,
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    #[error("{0}")]
    Internal(String),
}
