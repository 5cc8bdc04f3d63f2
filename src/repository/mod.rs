//! The repository: every database read and write of the service, behind
//! functions that take and return domain types. Only this module knows SQL,
//! SeaORM or which backend is in use.
//!
//! Invariants kept here:
//! - every state change that must stay consistent is one transaction;
//! - a revocation and its outbox event are written in the same transaction;
//! - rotations are conditional updates on the token id they expect, so two
//!   racing writers can never both succeed;
//! - every state change writes its audit record in its own transaction;
//! - login throttle counts are taken by conditional upserts, never by a
//!   read-then-write;
//! - a change of the signing keys and its outbox event are written in the
//!   same transaction, and a key rotation is a conditional insert on a
//!   unique generation, so that racing replicas make it exactly once.

mod audit;
mod entities;
mod error;
mod events;
mod notifications;
mod sessions;
mod throttle;
mod token_keys;
mod users;

use std::{str::FromStr, sync::Arc, time::Duration};

use migrations::{Migrator, MigratorTrait};
use sea_orm::{
    DatabaseConnection, DatabaseTransaction, SqlxPostgresConnector, SqlxSqliteConnector, TransactionOptions,
    TransactionTrait, sqlx,
};
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use tokio::sync::{Mutex, OwnedMutexGuard};

pub use error::RepositoryError;
pub use events::CursorBounds;
pub use sessions::{LoginNotices, LoginWrites, PasswordChange, RevokedSessions, Rotation, RotationResult};
pub use token_keys::{KeyReplacement, NewKey, StoredKey};
pub use users::{NewUser, UserRecord};

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `sqlite:path/to/file.db` or `postgres://user@host/db`.
    pub url: String,
    pub max_connections: u32,
    /// How long a query waits for a pooled connection before giving up.
    pub acquire_timeout: Duration,
}

/// Which database engine is behind the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Repository {
    db: DatabaseConnection,
    backend: Backend,
    /// SQLite allows one writer at a time; queueing writers here is cheaper
    /// and fairer than letting them sleep in SQLite's busy handler.
    sqlite_writer: Option<Arc<Mutex<()>>>,
    postgres_pool: Option<sqlx::PgPool>,
}

/// A write transaction; rolled back if dropped without `commit`.
pub(crate) struct WriteTransaction {
    transaction: DatabaseTransaction,
    _writer: Option<OwnedMutexGuard<()>>,
}

impl WriteTransaction {
    pub(crate) async fn commit(self) -> Result<(), RepositoryError> {
        Ok(self.transaction.commit().await?)
    }
}

impl std::ops::Deref for WriteTransaction {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        &self.transaction
    }
}

/// Creates the SQLite file readable and writable by its owner alone (0600),
/// whatever the umask, before SQLite opens it: it holds password hashes and,
/// without JWT_SECRET, the signing key. SQLite gives the `-wal` and `-shm`
/// files it creates beside it the same permissions. An existing file keeps
/// its permissions, with a warning when others may read it.
fn create_private_file(path: &std::path::Path) -> Result<(), RepositoryError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" {
        return Ok(());
    }
    let created = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
    match created {
        Ok(file) => {
            // The umask only ever removes bits; set them exactly anyway.
            file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(|error| {
                RepositoryError::Config(format!("DATABASE_URL: cannot restrict {}: {error}", path.display()))
            })
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            if let Ok(metadata) = std::fs::metadata(path)
                && metadata.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", metadata.permissions().mode() & 0o777),
                    "the database file is readable by others: it holds password hashes (and, without JWT_SECRET, the signing key); chmod 600 it"
                );
            }
            Ok(())
        }
        Err(error) => Err(RepositoryError::Config(format!("DATABASE_URL: cannot create {}: {error}", path.display()))),
    }
}

impl Repository {
    pub async fn connect(config: &DatabaseConfig) -> Result<Self, RepositoryError> {
        let url = config.url.as_str();
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|error| RepositoryError::Config(format!("DATABASE_URL: {error}")))?;
            create_private_file(options.get_filename())?;
            let options = options
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a revocation that was acknowledged survives a power cut.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(config.max_connections)
                .acquire_timeout(config.acquire_timeout)
                .connect_with(options)
                .await
                .map_err(|error| {
                    RepositoryError::from(sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(error.into())))
                })?;
            Ok(Self {
                db: SqlxSqliteConnector::from_sqlx_sqlite_pool(pool),
                backend: Backend::Sqlite,
                sqlite_writer: Some(Arc::new(Mutex::new(()))),
                postgres_pool: None,
            })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)
                .map_err(|error| RepositoryError::Config(format!("DATABASE_URL: {error}")))?;
            // Lazy: the server starts (NOT_SERVING) while the database is down
            // and connects once it is back.
            let pool = PgPoolOptions::new()
                .max_connections(config.max_connections)
                .acquire_timeout(config.acquire_timeout)
                .connect_lazy_with(options);
            Ok(Self {
                db: SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone()),
                backend: Backend::Postgres,
                sqlite_writer: None,
                postgres_pool: Some(pool),
            })
        } else {
            Err(RepositoryError::Config("DATABASE_URL must start with sqlite: or postgres://".into()))
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The PostgreSQL pool, for LISTEN/NOTIFY; `None` on SQLite.
    pub fn postgres_pool(&self) -> Option<&sqlx::PgPool> {
        self.postgres_pool.as_ref()
    }

    /// Applies every pending migration; a no-op when the schema is current.
    pub async fn migrate(&self) -> Result<(), RepositoryError> {
        Ok(Migrator::up(&self.db, None).await?)
    }

    /// Answers whether the database is reachable now.
    pub async fn ping(&self) -> Result<(), RepositoryError> {
        Ok(self.db.ping().await?)
    }

    pub async fn close(self) {
        let _ = self.db.close().await;
    }

    pub(crate) fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    pub(crate) async fn begin_write(&self) -> Result<WriteTransaction, RepositoryError> {
        let writer = match &self.sqlite_writer {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        // IMMEDIATE takes SQLite's write lock at BEGIN, so a transaction that
        // reads first never fails to upgrade when another process wrote.
        let options = TransactionOptions {
            sqlite_transaction_mode: (self.backend == Backend::Sqlite)
                .then_some(sea_orm::SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        };
        let transaction = self.db.begin_with_options(options).await?;
        Ok(WriteTransaction {
            transaction,
            _writer: writer,
        })
    }
}
