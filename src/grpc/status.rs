//! The one mapping from the authority's errors to gRPC statuses. Internal
//! causes are logged with their chain and answered with an opaque message,
//! so no SQL, secret or stack detail reaches a caller.

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{authority::AuthorityError, domain::ValidationError, revocations::FeedError, telemetry::error_chain};

impl From<AuthorityError> for Status {
    fn from(error: AuthorityError) -> Self {
        let message = error.to_string();
        match error {
            AuthorityError::InvalidCredentials
            | AuthorityError::InvalidToken(_)
            | AuthorityError::UnknownSession
            | AuthorityError::SessionRevoked
            | AuthorityError::TokenRotated
            | AuthorityError::TokenReused
            | AuthorityError::UserDisabled
            | AuthorityError::SessionTooOld => Status::unauthenticated(message),
            AuthorityError::WrongCurrentPassword => Status::permission_denied(message),
            AuthorityError::BindingMismatch => Status::with_error_details(
                Code::PermissionDenied,
                message,
                ErrorDetails::with_error_info(
                    "BINDING_MISMATCH",
                    "tokenauthority.v1",
                    std::collections::HashMap::new(),
                ),
            ),
            AuthorityError::RefreshTooSoon(retry_after) => retry_later(message, retry_after),
            AuthorityError::UserNotFound(_) | AuthorityError::SessionNotFound(_) => Status::not_found(message),
            AuthorityError::UsernameTaken => Status::already_exists(message),
            AuthorityError::Overloaded => retry_later(message, Duration::from_secs(1)),
            AuthorityError::TooManyAttempts(retry_after) => retry_later(message, retry_after),
            AuthorityError::Conflict => Status::aborted(message),
            AuthorityError::Unavailable(_) => unavailable(&error),
            AuthorityError::Internal(_) => internal(&error),
        }
    }
}

impl From<FeedError> for Status {
    fn from(error: FeedError) -> Self {
        let message = error.to_string();
        match error {
            FeedError::CursorTooOld { .. } | FeedError::CursorAhead { .. } => Status::out_of_range(message),
            FeedError::ShuttingDown => Status::unavailable(message),
            FeedError::ClientGone => Status::cancelled(message),
            FeedError::Unavailable(_) => unavailable(&error),
            FeedError::Internal(_) | FeedError::Keys(_) => internal(&error),
        }
    }
}

impl From<ValidationError> for Status {
    fn from(error: ValidationError) -> Self {
        Status::invalid_argument(error.to_string())
    }
}

/// RESOURCE_EXHAUSTED with a retry hint: a `google.rpc.RetryInfo` detail for
/// clients that read rich errors, and the delay in the message for people.
fn retry_later(message: String, retry_after: Duration) -> Status {
    Status::with_error_details(
        Code::ResourceExhausted,
        message,
        ErrorDetails::with_retry_info(Some(retry_after.max(Duration::from_millis(1)))),
    )
}

fn unavailable(error: &dyn std::error::Error) -> Status {
    tracing::warn!(error = %error_chain(error), "database unavailable");
    Status::unavailable("database unavailable; retry shortly")
}

fn internal(error: &dyn std::error::Error) -> Status {
    tracing::error!(error = %error_chain(error), "internal error");
    Status::internal("internal error")
}
