//! The revocation outbox: appending events inside the revoking transaction,
//! and reading them back in cursor order.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};

use super::{
    Repository, RepositoryError, Rotation,
    entities::{revocation_cursor, revocation_events},
};
use crate::domain::{RevocationEvent, RevocationReason, Session, SessionId, Timestamp, TokenId, UserId};

/// The single row of `revocation_cursor`.
const CURSOR_ROW: i32 = 1;
/// Rows per INSERT: far below SQLite's limit of bound parameters.
const INSERT_CHUNK: usize = 500;

/// Where the outbox stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CursorBounds {
    /// The last cursor committed (0 before the first event).
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
    pub async fn events_after(&self, after: u64, limit: u64) -> Result<Vec<RevocationEvent>, RepositoryError> {
        let after = revocation_events::Column::Cursor.gt(cursor_to_stored(after));
        self.events_where(Condition::all().add(after), limit).await
    }

    /// Up to `limit` events in `(after, through]` whose tokens have not
    /// expired at `now`, in cursor order: a page of the snapshot.
    pub async fn unexpired_events(
        &self,
        after: u64,
        through: u64,
        now: Timestamp,
        limit: u64,
    ) -> Result<Vec<RevocationEvent>, RepositoryError> {
        let condition = Condition::all()
            .add(revocation_events::Column::Cursor.gt(cursor_to_stored(after)))
            .add(revocation_events::Column::Cursor.lte(cursor_to_stored(through)))
            .add(revocation_events::Column::ExpiresAt.gt(now.as_millis()));
        self.events_where(condition, limit).await
    }

    async fn events_where(&self, condition: Condition, limit: u64) -> Result<Vec<RevocationEvent>, RepositoryError> {
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

    /// Deletes the oldest events revoked before `cutoff`, at most `batch` of
    /// them, always a prefix of the cursor order so that `pruned_through`
    /// stays exact. Returns how many were deleted (0: nothing left to do).
    pub async fn prune_events(&self, cutoff: Timestamp, batch: u64) -> Result<u64, RepositoryError> {
        let transaction = self.begin_write().await?;
        let oldest = revocation_events::Entity::find()
            .order_by_asc(revocation_events::Column::Cursor)
            .limit(batch)
            .all(&*transaction)
            .await?;
        let Some(end) = oldest
            .iter()
            .take_while(|event| event.revoked_at < cutoff.as_millis())
            .last()
            .map(|event| event.cursor)
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

fn cursor_to_stored(cursor: u64) -> i64 {
    i64::try_from(cursor).unwrap_or(i64::MAX)
}

fn cursor_from_stored(cursor: i64) -> Result<u64, RepositoryError> {
    u64::try_from(cursor).map_err(|_| RepositoryError::corrupt(format!("negative revocation cursor {cursor}")))
}

/// An event before it has a cursor.
pub(super) struct EventDraft {
    session_id: SessionId,
    user_id: UserId,
    token_id: Option<TokenId>,
    reason: RevocationReason,
    revoked_at: Timestamp,
    expires_at: Timestamp,
}

impl EventDraft {
    /// A whole session revoked: it covers tokens up to the session's expiry.
    pub(super) fn revoked(session: &Session, reason: RevocationReason, now: Timestamp) -> Self {
        Self {
            session_id: session.id,
            user_id: session.user_id,
            token_id: None,
            reason,
            revoked_at: now,
            expires_at: session.expires_at,
        }
    }

    /// One token retired by a rotation.
    pub(super) fn rotated(session: &Session, rotation: &Rotation) -> Self {
        Self {
            session_id: session.id,
            user_id: session.user_id,
            token_id: Some(rotation.expected_token),
            reason: RevocationReason::Rotated,
            revoked_at: rotation.now,
            expires_at: rotation.retired_token_expires_at,
        }
    }
}

/// Gives the drafts the next cursors and inserts them. Call it last in the
/// transaction: the cursor row stays locked until commit, which is what keeps
/// cursors in commit order, so the shorter the wait the better.
pub(super) async fn append_events(
    connection: &impl ConnectionTrait,
    drafts: Vec<EventDraft>,
) -> Result<Vec<RevocationEvent>, RepositoryError> {
    if drafts.is_empty() {
        return Ok(Vec::new());
    }
    let count = i64::try_from(drafts.len()).map_err(|_| RepositoryError::corrupt("event count"))?;
    let allocated = revocation_cursor::Entity::update_many()
        .col_expr(
            revocation_cursor::Column::LastCursor,
            Expr::col(revocation_cursor::Column::LastCursor).add(count),
        )
        .filter(revocation_cursor::Column::Id.eq(CURSOR_ROW))
        .exec_with_returning(connection)
        .await?;
    let last = allocated
        .first()
        .map(|row| row.last_cursor)
        .ok_or_else(|| RepositoryError::corrupt("revocation_cursor row is missing"))?;
    let events: Vec<RevocationEvent> = drafts
        .into_iter()
        .zip(last - count + 1..)
        .map(|(draft, cursor)| RevocationEvent {
            cursor: cursor_from_stored(cursor).unwrap_or_default(),
            session_id: draft.session_id,
            user_id: draft.user_id,
            token_id: draft.token_id,
            reason: draft.reason,
            revoked_at: draft.revoked_at,
            expires_at: draft.expires_at,
        })
        .collect();
    for chunk in events.chunks(INSERT_CHUNK) {
        revocation_events::Entity::insert_many(chunk.iter().map(event_to_model))
            .exec_without_returning(connection)
            .await?;
    }
    Ok(events)
}

fn event_to_model(event: &RevocationEvent) -> revocation_events::ActiveModel {
    revocation_events::ActiveModel {
        cursor: Set(cursor_to_stored(event.cursor)),
        session_id: Set(event.session_id.as_uuid()),
        user_id: Set(event.user_id.as_uuid()),
        token_id: Set(event.token_id.map(|token| token.as_uuid())),
        reason: Set(event.reason.as_str().to_owned()),
        revoked_at: Set(event.revoked_at.as_millis()),
        expires_at: Set(event.expires_at.as_millis()),
    }
}

fn event_from_model(model: revocation_events::Model) -> Result<RevocationEvent, RepositoryError> {
    let reason = RevocationReason::from_stored(&model.reason)
        .ok_or_else(|| RepositoryError::corrupt(format!("reason of revocation event {}", model.cursor)))?;
    Ok(RevocationEvent {
        cursor: cursor_from_stored(model.cursor)?,
        session_id: SessionId::from_uuid(model.session_id),
        user_id: UserId::from_uuid(model.user_id),
        token_id: model.token_id.map(TokenId::from_uuid),
        reason,
        revoked_at: Timestamp::from_millis(model.revoked_at),
        expires_at: Timestamp::from_millis(model.expires_at),
    })
}
