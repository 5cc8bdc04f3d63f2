//! The one mapping from the authority's errors to gRPC statuses. Internal
//! causes are logged with their chain and answered with an opaque message,
//! so no SQL, secret or stack detail reaches a caller.


use tonic::Status;

use crate::{
    authority::AuthorityError,
    domain::ValidationError,
    repository::RepositoryError,
    revocations::FeedError,
};

impl From<AuthorityError> for Status {
    fn from(error: AuthorityError) -> Self {
        let message = error.to_string();
        match error {
            AuthorityError::InvalidArgument(_) => Status::invalid_argument(message),
            AuthorityError::InvalidCredentials
            | AuthorityError::InvalidToken(_)
            | AuthorityError::UnknownSession
            | AuthorityError::SessionRevoked
            | AuthorityError::TokenRotated
            | AuthorityError::TokenReused => Status::unauthenticated(message),
            AuthorityError::WrongCurrentPassword => Status::permission_denied(message),
            AuthorityError::UserNotFound(_) | AuthorityError::SessionNotFound(_) => Status::not_found(message),
            AuthorityError::UsernameTaken => Status::already_exists(message),
            AuthorityError::Overloaded => Status::resource_exhausted(message),
            AuthorityError::Conflict => Status::aborted(message),
            AuthorityError::Repository(error) => repository_status(&error),
            AuthorityError::Internal(cause) => {
                tracing::error!(error = %cause, "internal error");
                Status::internal("internal error")
            }
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
            FeedError::Repository(error) => repository_status(&error),
        }
    }
}

impl From<ValidationError> for Status {
    fn from(error: ValidationError) -> Self {
        Status::invalid_argument(error.to_string())
    }
}

fn repository_status(error: &RepositoryError) -> Status {
    let chain = error_chain(error);
    match error {
        RepositoryError::Unavailable(_) => {
            tracing::warn!(error = %chain, "database unavailable");
            Status::unavailable("database unavailable; retry shortly")
        }
        RepositoryError::Database(_) | RepositoryError::Corrupt(_) | RepositoryError::Config(_) => {
            tracing::error!(error = %chain, "database error");
            Status::internal("internal error")
        }
    }
}

/// "outer: inner: root", for logs.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
