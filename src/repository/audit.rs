//! The audit trail: records written inside the transaction of the change
//! they record, a filtered and paged listing, and security events, which
//! also take a gapless cursor (from the single row of `security_cursor`,
//! inside their transaction) so that the admin stream reads them in commit
//! order without gaps.

use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, Query},
};

use super::{
    Repository, RepositoryError,
    entities::{audit_events, security_cursor, sessions},
    events::append_events,
    sessions::revoke_where,
};
use crate::domain::{
    Revocation, RevocationReason, Session, SessionId, Timestamp, UserId,
    audit::{Actor, AuditClient, AuditEntry, AuditKind, AuditQuery, AuditRecord, Severity},
};

/// The single row of `security_cursor`.
const CURSOR_ROW: i32 = 1;

impl Repository {
    /// Records a change that has no other write (a failed login).
    pub async fn append_audit(&self, record: &AuditRecord) -> Result<(), RepositoryError> {
        let transaction = self.begin_write().await?;
        append_audit(&*transaction, std::slice::from_ref(record)).await?;
        transaction.commit().await
    }

    /// Records a security event and, when `revoke` names its session,
    /// revokes that session (reason `SecurityAction`), in one transaction.
    /// Returns the event's cursor, and the session if this revoked it.
    pub async fn record_security_event(
        &self,
        event: &AuditRecord,
        revoke: Option<SessionId>,
    ) -> Result<(u64, Option<(Session, Revocation)>), RepositoryError> {
        let transaction = self.begin_write().await?;
        let mut revoked = None;
        if let Some(session_id) = revoke {
            let condition = Condition::all().add(sessions::Column::Id.eq(session_id.as_uuid()));
            let reason = RevocationReason::SecurityAction;
            if let Some(session) = revoke_where(&*transaction, condition, reason, event.occurred_at).await?.pop() {
                let revocation = Revocation::of_session(&session, reason, event.occurred_at);
                let mut record = AuditRecord::new(AuditKind::SessionRevoked, event.occurred_at)
                    .user(session.user_id)
                    .session(session.id)
                    .detail(format!("{}: {}", reason.as_str(), event.kind.as_string()));
                record.client = event.client.clone();
                append_audit(&*transaction, std::slice::from_ref(&record)).await?;
                append_events(&*transaction, std::slice::from_ref(&revocation)).await?;
                revoked = Some((session, revocation));
            }
        }
        // Last, so that PostgreSQL holds the cursor row's lock only until the commit right after.
        let cursor = security_cursor::Entity::update_many()
            .col_expr(security_cursor::Column::LastCursor, Expr::col(security_cursor::Column::LastCursor).add(1))
            .filter(security_cursor::Column::Id.eq(CURSOR_ROW))
            .exec_with_returning(&*transaction)
            .await?
            .first()
            .map(|row| row.last_cursor)
            .ok_or_else(|| RepositoryError::corrupt("security_cursor row is missing"))?;
        audit_events::Entity::insert(record_to_model(event, Some(cursor)))
            .exec_without_returning(&*transaction)
            .await?;
        transaction.commit().await?;
        Ok((u64::try_from(cursor).unwrap_or(0), revoked))
    }

    /// The last security event cursor handed out.
    pub async fn latest_security_cursor(&self) -> Result<u64, RepositoryError> {
        let row = security_cursor::Entity::find_by_id(CURSOR_ROW)
            .one(self.connection())
            .await?
            .ok_or_else(|| RepositoryError::corrupt("security_cursor row is missing"))?;
        Ok(u64::try_from(row.last_cursor).unwrap_or(0))
    }

    /// Up to `limit` security events after `after`, in cursor order.
    pub async fn security_events_after(&self, after: u64, limit: u64) -> Result<Vec<AuditEntry>, RepositoryError> {
        audit_events::Entity::find()
            .filter(audit_events::Column::SecurityCursor.gt(i64::try_from(after).unwrap_or(i64::MAX)))
            .order_by_asc(audit_events::Column::SecurityCursor)
            .limit(limit)
            .all(self.connection())
            .await?
            .into_iter()
            .map(entry_from_model)
            .collect()
    }

    /// A page of the audit trail, newest first.
    pub async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, RepositoryError> {
        let mut condition = Condition::all();
        if let Some(user_id) = query.user_id {
            condition = condition.add(audit_events::Column::UserId.eq(user_id.as_uuid()));
        }
        if let Some(session_id) = query.session_id {
            condition = condition.add(audit_events::Column::SessionId.eq(session_id.as_uuid()));
        }
        if !query.kinds.is_empty() {
            condition =
                condition.add(audit_events::Column::Kind.is_in(query.kinds.iter().map(|kind| kind.as_string())));
        }
        if let Some(since) = query.since {
            condition = condition.add(audit_events::Column::OccurredAt.gte(since.as_millis()));
        }
        if let Some(until) = query.until {
            condition = condition.add(audit_events::Column::OccurredAt.lt(until.as_millis()));
        }
        if let Some(before) = query.before_id {
            condition = condition.add(audit_events::Column::Id.lt(before));
        }
        audit_events::Entity::find()
            .filter(condition)
            .order_by_desc(audit_events::Column::Id)
            .limit(query.limit)
            .all(self.connection())
            .await?
            .into_iter()
            .map(entry_from_model)
            .collect()
    }

    /// Deletes up to `batch` audit records older than `cutoff`; how many.
    pub async fn prune_audit(&self, cutoff: Timestamp, batch: u64) -> Result<u64, RepositoryError> {
        let transaction = self.begin_write().await?;
        let old = Query::select()
            .column(audit_events::Column::Id)
            .from(audit_events::Entity)
            .and_where(audit_events::Column::OccurredAt.lt(cutoff.as_millis()))
            .order_by(audit_events::Column::Id, sea_orm::Order::Asc)
            .limit(batch)
            .to_owned();
        let deleted = audit_events::Entity::delete_many()
            .filter(audit_events::Column::Id.in_subquery(old))
            .exec(&*transaction)
            .await?
            .rows_affected;
        transaction.commit().await?;
        Ok(deleted)
    }
}

/// Writes audit records inside the transaction of the change they record.
pub(super) async fn append_audit(
    connection: &impl ConnectionTrait,
    records: &[AuditRecord],
) -> Result<(), RepositoryError> {
    if records.is_empty() {
        return Ok(());
    }
    audit_events::Entity::insert_many(records.iter().map(|record| record_to_model(record, None)))
        .exec_without_returning(connection)
        .await?;
    Ok(())
}

fn record_to_model(record: &AuditRecord, security_cursor: Option<i64>) -> audit_events::ActiveModel {
    audit_events::ActiveModel {
        id: NotSet,
        occurred_at: Set(record.occurred_at.as_millis()),
        kind: Set(record.kind.as_string()),
        actor: Set(record.actor.as_ref().map(|actor| actor.as_str().to_owned())),
        user_id: Set(record.user_id.map(|id| id.as_uuid())),
        session_id: Set(record.session_id.map(|id| id.as_uuid())),
        ip_address: Set(record.client.ip_address.map(|ip| ip.to_string())),
        user_agent_family: Set(record.client.user_agent_family.clone()),
        device_id: Set(record.client.device_id.clone()),
        detail: Set(record.detail.clone()),
        severity: Set(record.severity.map(|severity| severity.as_str().to_owned())),
        security_cursor: Set(security_cursor),
    }
}

fn entry_from_model(model: audit_events::Model) -> Result<AuditEntry, RepositoryError> {
    let corrupt = |what: &str| RepositoryError::corrupt(format!("{what} of audit event {}", model.id));
    let kind = AuditKind::from_stored(&model.kind).ok_or_else(|| corrupt("kind"))?;
    let ip_address = model.ip_address.as_deref().map(str::parse).transpose().map_err(|_| corrupt("ip_address"))?;
    let severity = model
        .severity
        .as_deref()
        .map(|severity| Severity::from_stored(severity).ok_or_else(|| corrupt("severity")))
        .transpose()?;
    Ok(AuditEntry {
        id: model.id,
        security_cursor: model.security_cursor.and_then(|cursor| u64::try_from(cursor).ok()),
        record: AuditRecord {
            kind,
            occurred_at: Timestamp::from_millis(model.occurred_at),
            actor: model.actor.map(Actor::from_stored),
            user_id: model.user_id.map(UserId::from_uuid),
            session_id: model.session_id.map(SessionId::from_uuid),
            client: AuditClient {
                ip_address,
                user_agent_family: model.user_agent_family,
                device_id: model.device_id,
            },
            detail: model.detail,
            severity,
        },
    })
}
