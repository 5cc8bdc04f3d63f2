//! Wake-ups between replicas on PostgreSQL, with LISTEN/NOTIFY on one
//! channel. A notification only says "the outbox has news": replicas still
//! read the outbox itself, and poll it too, so a lost notification delays an
//! event but never loses it.
//!
//! NOTIFY is sent in a statement of its own, after the revoking transaction
//! has committed, never inside it: a transaction that notifies takes a
//! cluster-wide lock at commit, which would serialise every writer.

use std::{sync::Arc, time::Duration};

use sea_orm::sqlx::{self, postgres::PgListener};
use tokio::sync::watch;
use tracing::{debug, warn};

use super::{Repository, RepositoryError};

const CHANNEL: &str = "token_authority_revocations";
/// Pause before listening again after the connection failed.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

impl Repository {
    /// Tells the other replicas that the outbox has new events. `origin`
    /// names this replica, so that it can ignore its own announcements.
    /// Nothing to do on SQLite, which has one process.
    pub async fn announce_revocations(&self, origin: &str) -> Result<(), RepositoryError> {
        let Some(pool) = self.postgres_pool() else {
            return Ok(());
        };
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(origin)
            .execute(pool)
            .await
            .map_err(|error| {
                RepositoryError::from(sea_orm::DbErr::Exec(sea_orm::RuntimeErr::SqlxError(Arc::new(error))))
            })?;
        Ok(())
    }

    /// A task that calls `wake` for every announcement from another
    /// replica, and after every reconnection (announcements may have been
    /// missed meanwhile), until `stop` turns true. `None` on SQLite.
    pub fn listen_for_revocations(
        self,
        origin: String,
        wake: impl Fn() + Send + Sync + 'static,
        mut stop: watch::Receiver<bool>,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let pool = self.postgres_pool()?.clone();
        Some(async move {
            loop {
                tokio::select! {
                    () = listen(&pool, &origin, &wake) => {}
                    _ = stop.wait_for(|stopped| *stopped) => return,
                }
                tokio::select! {
                    () = tokio::time::sleep(RECONNECT_DELAY) => {}
                    _ = stop.wait_for(|stopped| *stopped) => return,
                }
            }
        })
    }
}

/// Listens until the connection fails.
async fn listen(pool: &sqlx::PgPool, origin: &str, wake: &(impl Fn() + Send + Sync)) {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(listener) => listener,
        Err(error) => {
            debug!(error = %error, "cannot connect to listen for revocations; retrying");
            return;
        }
    };
    if let Err(error) = listener.listen(CHANNEL).await {
        debug!(error = %error, "cannot LISTEN for revocations; retrying");
        return;
    }
    // Whatever was announced before we listened: read the outbox once.
    wake();
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) if notification.payload() != origin => wake(),
            Ok(Some(_own)) => {}
            Ok(None) => {
                debug!("revocation listener reconnected");
                wake();
            }
            Err(error) => {
                warn!(error = %error, "revocation listener lost its connection; reconnecting");
                return;
            }
        }
    }
}
