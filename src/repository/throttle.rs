//! The login throttle's counters and the user's known devices and networks.
//!
//! Each counter is one row holding a GCRA "theoretical arrival time" (tat).
//! An attempt is taken by one conditional upsert that both checks and counts:
//!
//! ```sql
//! INSERT INTO login_throttle (key, tat) VALUES (:key, :now + :interval)
//! ON CONFLICT (key) DO UPDATE SET tat = max(tat, :now) + :interval
//!   WHERE max(tat, :now) + :interval <= :now + :window
//! RETURNING tat
//! ```
//!
//! A row comes back only when the attempt was allowed and counted. Two
//! attempts on the same key serialise on its row (PostgreSQL's row lock,
//! SQLite's single writer), each re-reading the other's count, so however
//! many race, no more than the burst get through: there is no read-then-write
//! window. The keys of one attempt are taken in one transaction, in a fixed
//! order (username and address, address, username), stopping at the first
//! refusal, so that a refused attempt counts against no broader key.
//!
//! Before that transaction, one plain read of the keys refuses an attempt
//! that a key is already full for. The read only ever refuses, never
//! allows (the upsert alone decides that), so it cannot let a race through;
//! what it saves is the flood's writes: without it, every guess of a flood
//! on one username queues on that key's row lock while holding a pooled
//! connection, and the pool runs dry for every other call.

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{CaseStatement, Expr, ExprTrait, OnConflict, Query},
};

use super::{
    Repository, RepositoryError,
    entities::{known_clients, login_throttle},
};
use crate::domain::{
    Timestamp, UserId,
    throttle::{ThrottleTake, ThrottleVerdict},
};

/// What kind of client a user is known to have used.
pub(super) const DEVICE: &str = "device";
pub(super) const NETWORK: &str = "network";

fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// How long one attempt occupies a key, in milliseconds (at least one).
fn interval_of(take: &ThrottleTake) -> i64 {
    std::cmp::max(millis(take.rate.interval()), 1)
}

/// `max(tat, now)`, written portably (SQLite's MAX is PostgreSQL's GREATEST).
fn later_of_tat_and(now: i64) -> Expr {
    let tat = Expr::col((login_throttle::Entity, login_throttle::Column::Tat));
    CaseStatement::new().case(tat.clone().gt(now), tat).finally(now).into()
}

/// The verdict on an attempt at `take` when its key stands at `tat`:
/// refused, unless one more attempt fits in the window.
fn refusal(take: &ThrottleTake, tat: i64, now: i64) -> Option<ThrottleVerdict> {
    let next = std::cmp::max(tat, now).saturating_add(interval_of(take));
    (next > now.saturating_add(millis(take.rate.window))).then(|| refused(take, tat, now))
}

/// A refusal at `take`, with when its key allows the next attempt.
fn refused(take: &ThrottleTake, tat: i64, now: i64) -> ThrottleVerdict {
    let retry_at = tat.saturating_add(interval_of(take)).saturating_sub(millis(take.rate.window));
    ThrottleVerdict::Refused {
        scope: take.scope,
        retry_after: std::time::Duration::from_millis(u64::try_from(retry_at.saturating_sub(now)).unwrap_or(0)),
    }
}

impl Repository {
    /// Counts an attempt against every key of `takes`, in order, in one
    /// transaction; the first key at its limit refuses it (and the keys
    /// after it are not touched).
    pub async fn take_attempt(
        &self,
        takes: &[ThrottleTake],
        now: Timestamp,
    ) -> Result<ThrottleVerdict, RepositoryError> {
        if takes.is_empty() {
            return Ok(ThrottleVerdict::Allowed);
        }
        let now = now.as_millis();
        let keys = takes.iter().map(|take| take.key.as_str().to_owned());
        let stored = login_throttle::Entity::find()
            .filter(login_throttle::Column::Key.is_in(keys))
            .all(self.connection())
            .await?;
        for take in takes {
            let tat = stored.iter().find(|row| row.key == take.key.as_str()).map(|row| row.tat);
            if let Some(verdict) = tat.and_then(|tat| refusal(take, tat, now)) {
                return Ok(verdict);
            }
        }
        let transaction = self.begin_write().await?;
        for take in takes {
            let interval = interval_of(take);
            let window = millis(take.rate.window);
            let mut insert = Query::insert();
            insert
                .into_table(login_throttle::Entity)
                .columns([login_throttle::Column::Key, login_throttle::Column::Tat])
                .values_panic([take.key.as_str().into(), now.saturating_add(interval).into()])
                .on_conflict(
                    OnConflict::column(login_throttle::Column::Key)
                        .value(login_throttle::Column::Tat, later_of_tat_and(now).add(interval))
                        .action_and_where(later_of_tat_and(now).add(interval).lte(now.saturating_add(window)))
                        .to_owned(),
                )
                .returning_col(login_throttle::Column::Tat);
            if transaction.query_all(&insert).await?.is_empty() {
                // Refused: when does this key allow the next attempt?
                let tat = login_throttle::Entity::find_by_id(take.key.as_str().to_owned())
                    .one(&*transaction)
                    .await?
                    .map_or(now, |row| row.tat);
                transaction.commit().await?;
                return Ok(refused(take, tat, now));
            }
        }
        transaction.commit().await?;
        Ok(ThrottleVerdict::Allowed)
    }

    /// Gives back the attempts of a successful password check that are not
    /// part of a login (ChangePassword); a login gives them back in its own
    /// transaction.
    pub async fn give_back_attempts(&self, takes: &[ThrottleTake]) -> Result<(), RepositoryError> {
        if takes.is_empty() {
            return Ok(());
        }
        let transaction = self.begin_write().await?;
        give_back(&*transaction, takes).await?;
        transaction.commit().await
    }

    /// Whether the user has logged in from `network` before.
    pub async fn is_known_network(&self, user_id: UserId, network: &str) -> Result<bool, RepositoryError> {
        Ok(known_clients::Entity::find()
            .filter(known_clients::Column::UserId.eq(user_id.as_uuid()))
            .filter(known_clients::Column::Kind.eq(NETWORK))
            .filter(known_clients::Column::Value.eq(network))
            .limit(1)
            .one(self.connection())
            .await?
            .is_some())
    }

    /// Deletes up to `batch` counters back at full allowance; how many.
    pub async fn delete_idle_throttle_keys(&self, now: Timestamp, batch: u64) -> Result<u64, RepositoryError> {
        let transaction = self.begin_write().await?;
        let idle = Query::select()
            .column(login_throttle::Column::Key)
            .from(login_throttle::Entity)
            .and_where(login_throttle::Column::Tat.lte(now.as_millis()))
            .limit(batch)
            .to_owned();
        let deleted = login_throttle::Entity::delete_many()
            .filter(login_throttle::Column::Key.in_subquery(idle))
            .exec(&*transaction)
            .await?
            .rows_affected;
        transaction.commit().await?;
        Ok(deleted)
    }

    /// Forgets up to `batch` devices and networks not seen since `cutoff`.
    pub async fn forget_known_clients(&self, cutoff: Timestamp, batch: u64) -> Result<u64, RepositoryError> {
        let transaction = self.begin_write().await?;
        let stale: Vec<known_clients::Model> = known_clients::Entity::find()
            .filter(known_clients::Column::LastSeenAt.lt(cutoff.as_millis()))
            .limit(batch)
            .all(&*transaction)
            .await?;
        let mut deleted = 0;
        for row in &stale {
            deleted += known_clients::Entity::delete_many()
                .filter(known_clients::Column::UserId.eq(row.user_id))
                .filter(known_clients::Column::Kind.eq(row.kind.as_str()))
                .filter(known_clients::Column::Value.eq(row.value.as_str()))
                .filter(known_clients::Column::LastSeenAt.lt(cutoff.as_millis()))
                .exec(&*transaction)
                .await?
                .rows_affected;
        }
        transaction.commit().await?;
        Ok(deleted)
    }
}

/// Gives back one attempt on each key: a successful password check does not
/// count against anybody. The username-and-address key starts afresh.
pub(super) async fn give_back(
    connection: &impl ConnectionTrait,
    takes: &[ThrottleTake],
) -> Result<(), RepositoryError> {
    use crate::domain::throttle::ThrottleScope;
    for take in takes {
        let key = login_throttle::Column::Key.eq(take.key.as_str());
        if take.scope == ThrottleScope::UserAndIp {
            login_throttle::Entity::delete_many().filter(key).exec(connection).await?;
        } else {
            let interval = interval_of(take);
            login_throttle::Entity::update_many()
                .col_expr(login_throttle::Column::Tat, Expr::col(login_throttle::Column::Tat).sub(interval))
                .filter(key)
                .exec(connection)
                .await?;
        }
    }
    Ok(())
}

/// Counts one more session from an address; whether the address went past
/// its allowance (never refuses: this feeds an anomaly rule).
pub(super) async fn count_session_from(
    connection: &impl ConnectionTrait,
    take: &ThrottleTake,
    now: Timestamp,
) -> Result<bool, RepositoryError> {
    let now = now.as_millis();
    let interval = interval_of(take);
    let mut insert = Query::insert();
    insert
        .into_table(login_throttle::Entity)
        .columns([login_throttle::Column::Key, login_throttle::Column::Tat])
        .values_panic([take.key.as_str().into(), now.saturating_add(interval).into()])
        .on_conflict(
            OnConflict::column(login_throttle::Column::Key)
                .value(login_throttle::Column::Tat, later_of_tat_and(now).add(interval))
                .to_owned(),
        )
        .returning_col(login_throttle::Column::Tat);
    let rows = connection.query_all(&insert).await?;
    let tat: i64 = match rows.first() {
        Some(row) => row.try_get_by_index(0)?,
        None => return Ok(false),
    };
    Ok(tat > now.saturating_add(millis(take.rate.window)))
}

/// Remembers that the user logged in from a device or network; whether it
/// was new to them (the insert, not a time comparison, tells).
pub(super) async fn remember_client(
    connection: &impl ConnectionTrait,
    user_id: UserId,
    kind: &str,
    value: &str,
    now: Timestamp,
) -> Result<bool, RepositoryError> {
    let now = now.as_millis();
    let mut insert = Query::insert();
    insert
        .into_table(known_clients::Entity)
        .columns([
            known_clients::Column::UserId,
            known_clients::Column::Kind,
            known_clients::Column::Value,
            known_clients::Column::FirstSeenAt,
            known_clients::Column::LastSeenAt,
        ])
        .values_panic([
            user_id.as_uuid().into(),
            kind.into(),
            value.into(),
            now.into(),
            now.into(),
        ])
        .on_conflict(
            OnConflict::columns([
                known_clients::Column::UserId,
                known_clients::Column::Kind,
                known_clients::Column::Value,
            ])
            .do_nothing()
            .to_owned(),
        )
        .returning_col(known_clients::Column::FirstSeenAt);
    if !connection.query_all(&insert).await?.is_empty() {
        return Ok(true);
    }
    known_clients::Entity::update_many()
        .col_expr(known_clients::Column::LastSeenAt, now.into())
        .filter(known_clients::Column::UserId.eq(user_id.as_uuid()))
        .filter(known_clients::Column::Kind.eq(kind))
        .filter(known_clients::Column::Value.eq(value))
        .exec(connection)
        .await?;
    Ok(false)
}

/// How many devices and networks the user is known to have used.
pub(super) async fn count_known_clients(
    connection: &impl ConnectionTrait,
    user_id: UserId,
) -> Result<u64, RepositoryError> {
    use sea_orm::PaginatorTrait;
    Ok(known_clients::Entity::find()
        .filter(known_clients::Column::UserId.eq(user_id.as_uuid()))
        .count(connection)
        .await?)
}
