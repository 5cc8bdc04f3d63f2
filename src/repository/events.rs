//! The outbox: appending revocations inside the revoking transaction (and
//! key-set changes inside the transaction that changes the keys), giving
//! them their cursors, and reading them back in cursor order.
//!
//! Cursors come from the single row of `revocation_cursor`, always while
//! that row is locked by the transaction that takes them, so they are
//! gapless and in the order of those transactions' commits. A reader that has
//! seen cursor N can therefore never later find an event below N.
//!
//! Who takes the cursor depends on the backend:
//! - SQLite has one writer anyway: the revoking transaction takes its cursors
//!   itself, as its last statement.
//! - On PostgreSQL that would make every revoking transaction (every Refresh
//!   writes one) queue behind the cursor row until the previous one has
//!   committed, a few thousand a second at most. So the revoking transaction
//!   writes its events without a cursor, and the sequencer
//!   ([`Repository::sequence_events`]), run by every replica's follower right
//!   after, numbers all waiting events in one short transaction.

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{CaseStatement, Expr, ExprTrait},
};

use super::{
    Repository, RepositoryError,
    entities::{revocation_cursor, revocation_events},
};
use crate::domain::{
    KeySetChange, OutboxEvent, Revocation, RevocationEvent, RevocationReason, SessionId, Successor, Timestamp, TokenId,
    UserId,
};

/// `kind` of a revocation in the outbox.
const REVOCATION: &str = "revocation";
/// `kind` of a change of the signing keys.
const KEY_SET: &str = "key_set";

/// The single row of `revocation_cursor`.
const CURSOR_ROW: i32 = 1;
/// Rows per INSERT: far below SQLite's limit of bound parameters.
const INSERT_CHUNK: usize = 500;

/// Where the outbox stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CursorBounds {
    /// The last cursor handed out (0 before the first event).
    pub latest: u64,
    /// Events up to and including this cursor may have been deleted.
    pub pruned_through: u64,
}

impl Repository {
    pub async fn cursor_bounds(&self) -> Result<CursorBounds, RepositoryError> {
        let row = revocation_cursor::Entity::find_by_id(CURSOR_ROW)
            .one(self.connection())
            .await?
            .ok_or_else(|| RepositoryError::corrupt("revocation_cursor row is missing"))?;
        Ok(CursorBounds {
            latest: cursor_from_stored(row.last_cursor)?,
            pruned_through: cursor_from_stored(row.pruned_through)?,
        })
    }

    /// Up to `limit` events after `after`, in cursor order.
    pub async fn events_after(&self, after: u64, limit: u64) -> Result<Vec<OutboxEvent>, RepositoryError> {
        let after = revocation_events::Column::Cursor.gt(cursor_to_stored(after));
        self.events_where(Condition::all().add(after), limit).await
    }

    /// Up to `limit` revocations in `(after, through]` whose tokens have not
    /// expired at `now`, in cursor order: a page of the snapshot. Key-set
    /// changes are not in it: a stream starts with the current key set.
    pub async fn unexpired_events(
        &self,
        after: u64,
        through: u64,
        now: Timestamp,
        limit: u64,
    ) -> Result<Vec<RevocationEvent>, RepositoryError> {
        let condition = Condition::all()
            .add(revocation_events::Column::Kind.eq(REVOCATION))
            .add(revocation_events::Column::Cursor.gt(cursor_to_stored(after)))
            .add(revocation_events::Column::Cursor.lte(cursor_to_stored(through)))
            .add(revocation_events::Column::ExpiresAt.gt(now.as_millis()));
        let events = self.events_where(condition, limit).await?;
        Ok(events
            .into_iter()
            .filter_map(|event| match event {
                OutboxEvent::Revoked(event) => Some(event),
                OutboxEvent::KeySetChanged { .. } => None,
            })
            .collect())
    }

    async fn events_where(&self, condition: Condition, limit: u64) -> Result<Vec<OutboxEvent>, RepositoryError> {
        revocation_events::Entity::find()
            .filter(condition)
            .order_by_asc(revocation_events::Column::Cursor)
            .limit(limit)
            .all(self.connection())
            .await?
            .into_iter()
            .map(event_from_model)
            .collect()
    }

    /// Gives cursors to up to `batch` events waiting for one, oldest first;
    /// returns how many it numbered. Nothing ever waits on SQLite.
    pub async fn sequence_events(&self, batch: u64) -> Result<u64, RepositoryError> {
        if self.backend() == super::Backend::Sqlite {
            return Ok(0);
        }
        let waiting = || revocation_events::Column::Cursor.is_null();
        // A cheap look first: most calls find nothing to do, and need no lock.
        let any = revocation_events::Entity::find().filter(waiting()).limit(1).all(self.connection()).await?;
        if any.is_empty() {
            return Ok(0);
        }
        let transaction = self.begin_write().await?;
        // Lock the cursor row first: a concurrent sequencer waits here, then
        // sees the events this one numbered as numbered.
        let last = lock_cursor_row(&*transaction).await?;
        let ids: Vec<i64> = revocation_events::Entity::find()
            .filter(waiting())
            .order_by_asc(revocation_events::Column::Id)
            .limit(batch)
            .all(&*transaction)
            .await?
            .into_iter()
            .map(|event| event.id)
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let mut numbering = CaseStatement::new();
        for (id, cursor) in ids.iter().zip(last + 1..) {
            numbering = numbering.case(Expr::col(revocation_events::Column::Id).eq(*id), cursor);
        }
        revocation_events::Entity::update_many()
            .col_expr(revocation_events::Column::Cursor, numbering.into())
            .filter(revocation_events::Column::Id.is_in(ids.iter().copied()))
            .exec(&*transaction)
            .await?;
        let count = ids.len() as i64;
        advance_cursor_row(&*transaction, last + count).await?;
        transaction.commit().await?;
        Ok(count as u64)
    }

    /// Deletes the oldest events revoked before `cutoff`, at most `batch` of
    /// them, always a prefix of the cursor order so that `pruned_through`
    /// stays exact. Returns how many were deleted (0: nothing left to do).
    pub async fn prune_events(&self, cutoff: Timestamp, batch: u64) -> Result<u64, RepositoryError> {
        let transaction = self.begin_write().await?;
        let oldest = revocation_events::Entity::find()
            .filter(revocation_events::Column::Cursor.is_not_null())
            .order_by_asc(revocation_events::Column::Cursor)
            .limit(batch)
            .all(&*transaction)
            .await?;
        let Some(end) = oldest
            .iter()
            .take_while(|event| event.revoked_at < cutoff.as_millis())
            .last()
            .and_then(|event| event.cursor)
        else {
            return Ok(0);
        };
        let deleted = revocation_events::Entity::delete_many()
            .filter(revocation_events::Column::Cursor.lte(end))
            .exec(&*transaction)
            .await?
            .rows_affected;
        revocation_cursor::Entity::update_many()
            .col_expr(revocation_cursor::Column::PrunedThrough, end.into())
            .filter(revocation_cursor::Column::Id.eq(CURSOR_ROW))
            .filter(revocation_cursor::Column::PrunedThrough.lt(end))
            .exec(&*transaction)
            .await?;
        transaction.commit().await?;
        Ok(deleted)
    }
}

/// Writes revocations to the outbox inside the revoking transaction. Call it
/// last in the transaction: on SQLite it takes the cursor row's lock.
pub(super) async fn append_events(
    connection: &impl ConnectionTrait,
    revocations: &[Revocation],
) -> Result<(), RepositoryError> {
    let models = revocations.iter().map(revocation_to_model).collect();
    insert_with_cursors(connection, models).await
}

/// Writes a change of the key set to the outbox, inside the transaction that
/// changes the keys. Call it last in the transaction, as [`append_events`].
pub(super) async fn append_key_set_event(
    connection: &impl ConnectionTrait,
    change: KeySetChange,
    at: Timestamp,
) -> Result<(), RepositoryError> {
    let model = revocation_events::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        cursor: Set(None),
        kind: Set(KEY_SET.to_owned()),
        session_id: Set(uuid::Uuid::nil()),
        user_id: Set(uuid::Uuid::nil()),
        token_id: Set(None),
        reason: Set(change.as_str().to_owned()),
        revoked_at: Set(at.as_millis()),
        expires_at: Set(at.as_millis()),
        current_token_id: Set(None),
        generation: Set(None),
        grace_ends_at: Set(None),
        session_expires_at: Set(None),
    };
    insert_with_cursors(connection, vec![model]).await
}

/// Inserts outbox rows, with their cursors on SQLite (taken here, under the
/// cursor row's lock) and without on PostgreSQL (the sequencer numbers them
/// after commit).
async fn insert_with_cursors(
    connection: &impl ConnectionTrait,
    mut models: Vec<revocation_events::ActiveModel>,
) -> Result<(), RepositoryError> {
    if models.is_empty() {
        return Ok(());
    }
    if connection.get_database_backend() == DbBackend::Sqlite {
        let count = models.len() as i64;
        let last = take_cursors(connection, count).await?;
        for (model, cursor) in models.iter_mut().zip(last - count + 1..=last) {
            model.cursor = Set(Some(cursor));
        }
    }
    for chunk in models.chunks(INSERT_CHUNK) {
        revocation_events::Entity::insert_many(chunk.to_vec()).exec_without_returning(connection).await?;
    }
    Ok(())
}

/// Takes `count` cursors in one statement; returns the last of them.
async fn take_cursors(connection: &impl ConnectionTrait, count: i64) -> Result<i64, RepositoryError> {
    revocation_cursor::Entity::update_many()
        .col_expr(revocation_cursor::Column::LastCursor, Expr::col(revocation_cursor::Column::LastCursor).add(count))
        .filter(revocation_cursor::Column::Id.eq(CURSOR_ROW))
        .exec_with_returning(connection)
        .await?
        .first()
        .map(|row| row.last_cursor)
        .ok_or_else(|| RepositoryError::corrupt("revocation_cursor row is missing"))
}

/// Locks the cursor row (taking no cursor) and returns the last cursor.
async fn lock_cursor_row(connection: &impl ConnectionTrait) -> Result<i64, RepositoryError> {
    take_cursors(connection, 0).await
}

async fn advance_cursor_row(connection: &impl ConnectionTrait, last: i64) -> Result<(), RepositoryError> {
    revocation_cursor::Entity::update_many()
        .col_expr(revocation_cursor::Column::LastCursor, last.into())
        .filter(revocation_cursor::Column::Id.eq(CURSOR_ROW))
        .exec(connection)
        .await?;
    Ok(())
}

fn cursor_to_stored(cursor: u64) -> i64 {
    i64::try_from(cursor).unwrap_or(i64::MAX)
}

fn cursor_from_stored(cursor: i64) -> Result<u64, RepositoryError> {
    u64::try_from(cursor).map_err(|_| RepositoryError::corrupt(format!("negative revocation cursor {cursor}")))
}

fn revocation_to_model(revocation: &Revocation) -> revocation_events::ActiveModel {
    revocation_events::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        cursor: Set(None),
        kind: Set(REVOCATION.to_owned()),
        session_id: Set(revocation.session_id.as_uuid()),
        user_id: Set(revocation.user_id.as_uuid()),
        token_id: Set(revocation.token_id.map(|token| token.as_uuid())),
        reason: Set(revocation.reason.as_str().to_owned()),
        revoked_at: Set(revocation.revoked_at.as_millis()),
        expires_at: Set(revocation.expires_at.as_millis()),
        current_token_id: Set(revocation.successor.map(|successor| successor.token_id.as_uuid())),
        generation: Set(revocation.successor.map(|successor| i64::try_from(successor.generation).unwrap_or(i64::MAX))),
        grace_ends_at: Set(revocation.successor.map(|successor| successor.grace_ends_at.as_millis())),
        session_expires_at: Set(Some(revocation.session_expires_at.as_millis())),
    }
}

fn event_from_model(model: revocation_events::Model) -> Result<OutboxEvent, RepositoryError> {
    let corrupt = |what: &str| RepositoryError::corrupt(format!("{what} of outbox event {}", model.id));
    let cursor = cursor_from_stored(model.cursor.ok_or_else(|| corrupt("cursor"))?)?;
    if model.kind == KEY_SET {
        return Ok(OutboxEvent::KeySetChanged {
            cursor,
            change: KeySetChange::from_stored(&model.reason).ok_or_else(|| corrupt("reason"))?,
            at: Timestamp::from_millis(model.revoked_at),
        });
    }
    if model.kind != REVOCATION {
        return Err(corrupt("kind"));
    }
    let reason = RevocationReason::from_stored(&model.reason).ok_or_else(|| corrupt("reason"))?;
    let successor = match (model.current_token_id, model.generation, model.grace_ends_at) {
        (Some(token_id), Some(generation), Some(grace_ends_at)) => Some(Successor {
            token_id: TokenId::from_uuid(token_id),
            generation: u64::try_from(generation).map_err(|_| corrupt("generation"))?,
            grace_ends_at: Timestamp::from_millis(grace_ends_at),
        }),
        _ => None,
    };
    Ok(OutboxEvent::Revoked(RevocationEvent {
        cursor,
        session_id: SessionId::from_uuid(model.session_id),
        user_id: UserId::from_uuid(model.user_id),
        token_id: model.token_id.map(TokenId::from_uuid),
        reason,
        revoked_at: Timestamp::from_millis(model.revoked_at),
        expires_at: Timestamp::from_millis(model.expires_at),
        session_expires_at: model.session_expires_at.map(Timestamp::from_millis),
        successor,
    }))
}
