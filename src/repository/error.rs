//! The repository's one error type.

use sea_orm::{DbErr, RuntimeErr, sqlx};

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// The database cannot be reached or is overloaded: worth retrying.
    #[error("database unavailable")]
    Unavailable(#[source] DbErr),
    /// The database refused a statement: a bug or a schema mismatch.
    #[error("database error")]
    Database(#[source] DbErr),
    /// A stored value that the domain cannot read.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// The database settings are wrong.
    #[error("{0}")]
    Config(String),
    /// A concurrent change to the same rows won; retrying may succeed.
    #[error("a concurrent change won; retry")]
    Conflict,
}

impl From<DbErr> for RepositoryError {
    fn from(error: DbErr) -> Self {
        if is_unavailable(&error) {
            Self::Unavailable(error)
        } else {
            Self::Database(error)
        }
    }
}

fn is_unavailable(error: &DbErr) -> bool {
    match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(error)) | DbErr::Query(RuntimeErr::SqlxError(error)) => {
            is_transient_sqlx(error)
        }
        _ => false,
    }
}

fn is_transient_sqlx(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(database) => {
            let code = database.code().unwrap_or_default();
            // SQLite: BUSY, LOCKED. PostgreSQL: connection exceptions (08xxx),
            // shutdown or recovery (57P01-57P03), too many connections (53300),
            // serialization and deadlock failures (40001, 40P01).
            matches!(
                code.as_ref(),
                "5" | "6" | "517" | "262" | "53300" | "57P01" | "57P02" | "57P03" | "40001" | "40P01"
            ) || code.starts_with("08")
        }
        _ => false,
    }
}

impl RepositoryError {
    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        Self::Corrupt(what.into())
    }
}
