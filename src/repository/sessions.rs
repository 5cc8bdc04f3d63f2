//! Sessions: opening, reading, rotating and revoking them.

use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, Iterable, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{CaseStatement, Expr, ExprTrait, Query},
};
use secrecy::{ExposeSecret, SecretString};

use super::{
    Repository, RepositoryError,
    audit::append_audit,
    entities::{sessions, users},
    events::append_events,
    throttle::{self, DEVICE, NETWORK},
    users::{UserRecord, user_from_model},
};
use crate::domain::{
    ClientContext, RetiredToken, Revocation, RevocationReason, Session, SessionId, Timestamp, TokenId, UserId,
    audit::AuditRecord,
    binding::{BoundAttributes, ClientBinding},
    throttle::ThrottleTake,
};

/// ListSessions answers with at most this many sessions, the newest.
pub const MAX_LISTED_SESSIONS: u64 = 1000;

/// A token rotation: retire `expected_token`, make `new_token` current.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub session_id: SessionId,
    pub expected_token: TokenId,
    /// When the retired token expires (the session's expiry before the rotation).
    pub retired_token_expires_at: Timestamp,
    pub new_token: TokenId,
    /// When the rotation happens, in whole seconds: the new token's `iat`.
    pub now: Timestamp,
    /// When the expected token is retired, to the millisecond: the grace
    /// period counts from here.
    pub retired_at: Timestamp,
    /// When the new token expires, for a standard and a remember-me session:
    /// the stored `remember_me` picks one, so a rotation needs no read first.
    pub expires_at: Timestamp,
    pub remember_me_expires_at: Timestamp,
    /// Replaces the stored client context when given.
    pub client: Option<ClientContext>,
    /// The binding values of `client` (network, user-agent family), stored with it.
    pub client_binding: Option<ClientBinding>,
    /// Rotate only if the session's stored binding matches `client_binding`
    /// on these attributes (each compared where the session has a value).
    pub require_binding: Option<BoundAttributes>,
    /// Rotate only if the last rotation is at least this long ago.
    pub min_interval: Option<std::time::Duration>,
    /// No rotation extends the session past this long after its login, and
    /// a session older than this does not rotate.
    pub max_lifetime: std::time::Duration,
    /// How long the retired token keeps working (told to stream consumers).
    pub grace: std::time::Duration,
    /// The session's user: rotation needs them enabled, and reads their
    /// current name and roles.
    pub user_id: UserId,
}

/// What a refresh's write found.
#[allow(clippy::large_enum_variant, reason = "made once per refresh, moved once")]
pub enum RotationResult {
    Rotated {
        session: Session,
        user: UserRecord,
        revocation: Revocation,
    },
    /// Nothing matched the guarded update, and nothing was written: the
    /// caller reads the session to tell why.
    NotApplied,
    /// The user is disabled (or gone): nothing was written.
    UserDisabled,
}

/// What a successful login writes besides its session, in the same transaction.
pub struct LoginWrites<'a> {
    pub audit: &'a AuditRecord,
    /// The device and network to remember for the user.
    pub device_id: Option<&'a str>,
    pub network: Option<&'a str>,
    /// The throttle attempts the password check took, given back.
    pub give_back: &'a [ThrottleTake],
    /// The counter of sessions opened from the client's address.
    pub sessions_from: Option<&'a ThrottleTake>,
}

/// What a login's write noticed, for anomaly detection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoginNotices {
    /// A device, or network, new to a user who had logged in before.
    pub new_device: bool,
    pub new_network: bool,
    /// More sessions from the client's address than SECURITY_SESSIONS_PER_IP allows.
    pub many_sessions_from_ip: bool,
}

/// Sessions revoked by a write and the revocations written to the outbox with them.
#[derive(Debug, Default)]
pub struct RevokedSessions {
    pub sessions: Vec<Session>,
    pub revocations: Vec<Revocation>,
}

#[allow(clippy::large_enum_variant, reason = "made once per password change")]
pub enum PasswordChange {
    Done {
        /// The caller's session, rotated to a new token.
        session: Session,
        /// The user's other sessions, revoked; the revocations include the
        /// caller's retired token.
        revoked: RevokedSessions,
    },
    /// The password or the caller's token changed meanwhile; nothing was written.
    Conflict,
}

impl Repository {
    /// Inserts many sessions at once, a chunk per statement and per
    /// transaction (for imports and benchmark seeding).
    pub async fn insert_sessions(&self, sessions: &[Session]) -> Result<(), RepositoryError> {
        // 18 columns: well under SQLite's limit of bound parameters per statement.
        const ROWS_PER_STATEMENT: usize = 1000;
        const ROWS_PER_TRANSACTION: usize = 50_000;
        for batch in sessions.chunks(ROWS_PER_TRANSACTION) {
            let transaction = self.begin_write().await?;
            for chunk in batch.chunks(ROWS_PER_STATEMENT) {
                sessions::Entity::insert_many(chunk.iter().map(session_to_model))
                    .exec_without_returning(&*transaction)
                    .await?;
            }
            transaction.commit().await?;
        }
        Ok(())
    }

    /// Opens a login's session and writes what goes with it (its audit
    /// record, the user's known clients, the throttle's give-back), all in
    /// one transaction, and only if, when it commits, the user is still
    /// enabled and still has `verified_hash`, the password hash that Login
    /// checked the password against. `None`, with nothing written, when the
    /// user was disabled or the password changed since.
    ///
    /// The session is inserted by one statement, `INSERT INTO sessions …
    /// SELECT … FROM users WHERE id = ? AND NOT disabled AND password_hash =
    /// ?`, so there is no window between the check and the write. On
    /// PostgreSQL the user row is read `FOR SHARE`: a disable or password
    /// change that has written but not yet committed makes this wait, then
    /// re-check the row as committed; one that comes after waits for this
    /// commit, and its revocation then sees the new session. SQLite has one
    /// writer at a time, so the statement sees the committed state.
    pub async fn open_session(
        &self,
        session: &Session,
        verified_hash: &SecretString,
        writes: LoginWrites<'_>,
    ) -> Result<Option<LoginNotices>, RepositoryError> {
        let now = session.created_at;
        let insert = self.insert_session_if_user_as_checked(session, verified_hash)?;
        let transaction = self.begin_write().await?;
        if transaction.execute(&insert).await?.rows_affected() != 1 {
            // Dropping the transaction rolls it back; nothing was written.
            return Ok(None);
        }
        let mut audit = writes.audit.clone();
        audit.session_id = Some(session.id);
        audit.user_id = Some(session.user_id);
        append_audit(&*transaction, std::slice::from_ref(&audit)).await?;
        let mut notices = LoginNotices::default();
        let mut inserted = 0;
        if let Some(device_id) = writes.device_id
            && throttle::remember_client(&*transaction, session.user_id, DEVICE, device_id, now).await?
        {
            notices.new_device = true;
            inserted += 1;
        }
        if let Some(network) = writes.network
            && throttle::remember_client(&*transaction, session.user_id, NETWORK, network, now).await?
        {
            notices.new_network = true;
            inserted += 1;
        }
        // New only to a user who had logged in from somewhere before.
        if inserted > 0 && throttle::count_known_clients(&*transaction, session.user_id).await? <= inserted {
            notices.new_device = false;
            notices.new_network = false;
        }
        throttle::give_back(&*transaction, writes.give_back).await?;
        if let Some(take) = writes.sessions_from {
            notices.many_sessions_from_ip = throttle::count_session_from(&*transaction, take, now).await?;
        }
        transaction.commit().await?;
        Ok(Some(notices))
    }

    /// The statement that inserts `session` only while its user is enabled
    /// and has `verified_hash` (see [`Repository::open_session`]).
    fn insert_session_if_user_as_checked(
        &self,
        session: &Session,
        verified_hash: &SecretString,
    ) -> Result<sea_orm::sea_query::InsertStatement, RepositoryError> {
        let model = session_to_model(session);
        let columns: Vec<sessions::Column> = sessions::Column::iter().collect();
        let mut user_still_as_checked = Query::select();
        for column in &columns {
            match model.get(*column).into_value() {
                Some(value) => user_still_as_checked.expr(Expr::val(value)),
                None => user_still_as_checked.expr(Expr::null()),
            };
        }
        user_still_as_checked
            .from(users::Entity)
            .and_where(users::Column::Id.eq(session.user_id.as_uuid()))
            .and_where(users::Column::Disabled.eq(false))
            .and_where(users::Column::PasswordHash.eq(verified_hash.expose_secret()));
        if self.backend == super::Backend::Postgres {
            user_still_as_checked.lock_shared();
        }
        Ok(Query::insert()
            .into_table(sessions::Entity)
            .columns(columns)
            .select_from(user_still_as_checked)
            .map_err(|error| RepositoryError::Database(sea_orm::DbErr::Custom(format!("the session insert: {error}"))))?
            .to_owned())
    }

    pub async fn find_session(&self, id: SessionId) -> Result<Option<Session>, RepositoryError> {
        sessions::Entity::find_by_id(id.as_uuid())
            .one(self.connection())
            .await?
            .map(session_from_model)
            .transpose()
    }

    /// The user's live sessions, newest first.
    pub async fn list_live_sessions(&self, user_id: UserId, now: Timestamp) -> Result<Vec<Session>, RepositoryError> {
        sessions::Entity::find()
            .filter(live_sessions_of(user_id, now))
            .order_by_desc(sessions::Column::CreatedAt)
            .order_by_desc(sessions::Column::Id)
            .limit(MAX_LISTED_SESSIONS)
            .all(self.connection())
            .await?
            .into_iter()
            .map(session_from_model)
            .collect()
    }

    /// Up to `limit` sessions, in id order after `after`, whose tokens have
    /// not all expired at `now` and that a stream consumer must know of:
    /// revoked ones, and ones rotated at least once. A page of the
    /// per-session snapshot.
    pub async fn sessions_to_snapshot(
        &self,
        after: Option<SessionId>,
        now: Timestamp,
        limit: u64,
    ) -> Result<Vec<Session>, RepositoryError> {
        let mut condition = Condition::all().add(sessions::Column::ExpiresAt.gt(now.as_millis())).add(
            Condition::any()
                .add(sessions::Column::RevokedAt.is_not_null())
                .add(sessions::Column::PreviousTokenId.is_not_null()),
        );
        if let Some(after) = after {
            condition = condition.add(sessions::Column::Id.gt(after.as_uuid()));
        }
        sessions::Entity::find()
            .filter(condition)
            .order_by_asc(sessions::Column::Id)
            .limit(limit)
            .all(self.connection())
            .await?
            .into_iter()
            .map(session_from_model)
            .collect()
    }

    /// How many sessions are live (not revoked, not expired) at `now`.
    pub async fn count_live_sessions(&self, now: Timestamp) -> Result<u64, RepositoryError> {
        Ok(sessions::Entity::find().filter(live(now)).count(self.connection()).await?)
    }

    /// Rotates a session's token if its current token is still the expected
    /// one, it is not revoked and every condition of `rotation` holds, and
    /// its user is enabled; writes `audit` with it. Reads the user in the
    /// same transaction, so that the new token carries their current name
    /// and roles.
    pub async fn rotate_session(
        &self,
        rotation: &Rotation,
        audit: &AuditRecord,
    ) -> Result<RotationResult, RepositoryError> {
        let transaction = self.begin_write().await?;
        let user = match users::Entity::find_by_id(rotation.user_id.as_uuid()).one(&*transaction).await? {
            Some(user) if !user.disabled => user_from_model(user)?,
            _ => return Ok(RotationResult::UserDisabled),
        };
        let Some(session) = rotate(&*transaction, rotation).await? else {
            return Ok(RotationResult::NotApplied);
        };
        let mut audit = audit.clone();
        audit.session_id = Some(session.id);
        audit.user_id = Some(session.user_id);
        append_audit(&*transaction, std::slice::from_ref(&audit)).await?;
        let revocation = rotated(&session, rotation);
        append_events(&*transaction, std::slice::from_ref(&revocation)).await?;
        transaction.commit().await?;
        Ok(RotationResult::Rotated {
            session,
            user,
            revocation,
        })
    }

    /// Revokes one session; `None` if it does not exist or was already revoked.
    /// `audit` is written with the revocation (its user and session filled in).
    pub async fn revoke_session(
        &self,
        id: SessionId,
        reason: RevocationReason,
        now: Timestamp,
        audit: &AuditRecord,
    ) -> Result<Option<(Session, Revocation)>, RepositoryError> {
        let transaction = self.begin_write().await?;
        let condition = Condition::all()
            .add(sessions::Column::Id.eq(id.as_uuid()))
            .add(sessions::Column::RevokedAt.is_null());
        let mut revoked = revoke_where(&*transaction, condition, reason, now).await?;
        let Some(session) = revoked.pop() else {
            return Ok(None);
        };
        let mut audit = audit.clone();
        audit.session_id = Some(session.id);
        audit.user_id = Some(session.user_id);
        append_audit(&*transaction, std::slice::from_ref(&audit)).await?;
        let revocation = Revocation::of_session(&session, reason, now);
        append_events(&*transaction, std::slice::from_ref(&revocation)).await?;
        transaction.commit().await?;
        Ok(Some((session, revocation)))
    }

    /// Revokes every live session of a user, except `keep`.
    /// `audit` is written with the revocations, its detail the count.
    pub async fn revoke_user_sessions(
        &self,
        user_id: UserId,
        keep: Option<SessionId>,
        reason: RevocationReason,
        now: Timestamp,
        audit: &AuditRecord,
    ) -> Result<RevokedSessions, RepositoryError> {
        let transaction = self.begin_write().await?;
        let revocations = revoke_user_sessions(&transaction, user_id, keep, reason, now).await?;
        let audit = audit.clone().detail(format!("revoked {}", revocations.sessions.len()));
        append_audit(&*transaction, std::slice::from_ref(&audit)).await?;
        transaction.commit().await?;
        Ok(revocations)
    }

    /// Deletes up to `batch` sessions whose every token expired before
    /// `cutoff`; returns their ids (none left: an empty list).
    pub async fn delete_expired_sessions(
        &self,
        cutoff: Timestamp,
        batch: u64,
    ) -> Result<Vec<SessionId>, RepositoryError> {
        let transaction = self.begin_write().await?;
        let expired = Query::select()
            .column(sessions::Column::Id)
            .from(sessions::Entity)
            .and_where(sessions::Column::ExpiresAt.lt(cutoff.as_millis()))
            .limit(batch)
            .to_owned();
        let deleted = sessions::Entity::delete_many()
            .filter(sessions::Column::Id.in_subquery(expired))
            .exec_with_returning(&*transaction)
            .await?;
        transaction.commit().await?;
        Ok(deleted.into_iter().map(|model| SessionId::from_uuid(model.id)).collect())
    }

    /// Stores a new password hash, revokes every other live session of the
    /// user and rotates the caller's token: all or nothing.
    pub async fn change_password(
        &self,
        user_id: UserId,
        expected_hash: &SecretString,
        new_hash: String,
        caller: &Rotation,
        audit: &AuditRecord,
    ) -> Result<PasswordChange, RepositoryError> {
        let transaction = self.begin_write().await?;
        let updated = users::Entity::update_many()
            .col_expr(users::Column::PasswordHash, new_hash.into())
            .col_expr(users::Column::PasswordChangedAt, caller.now.as_millis().into())
            .filter(users::Column::Id.eq(user_id.as_uuid()))
            .filter(users::Column::PasswordHash.eq(expected_hash.expose_secret()))
            .exec(&*transaction)
            .await?;
        if updated.rows_affected == 0 {
            return Ok(PasswordChange::Conflict);
        }
        let others = Condition::all()
            .add(live_sessions_of(user_id, caller.now))
            .add(sessions::Column::Id.ne(caller.session_id.as_uuid()));
        let revoked = revoke_where(&*transaction, others, RevocationReason::PasswordChanged, caller.now).await?;
        let Some(session) = rotate(&*transaction, caller).await? else {
            return Ok(PasswordChange::Conflict);
        };
        let mut revocations: Vec<Revocation> = revoked
            .iter()
            .map(|session| Revocation::of_session(session, RevocationReason::PasswordChanged, caller.now))
            .collect();
        revocations.push(rotated(&session, caller));
        let audit = audit.clone().detail(format!("revoked {}", revoked.len()));
        append_audit(&*transaction, std::slice::from_ref(&audit)).await?;
        append_events(&*transaction, &revocations).await?;
        transaction.commit().await?;
        Ok(PasswordChange::Done {
            session,
            revoked: RevokedSessions {
                sessions: revoked,
                revocations,
            },
        })
    }
}

/// Revokes a user's live sessions inside `transaction` and writes their events.
pub(super) async fn revoke_user_sessions(
    transaction: &super::WriteTransaction,
    user_id: UserId,
    keep: Option<SessionId>,
    reason: RevocationReason,
    now: Timestamp,
) -> Result<RevokedSessions, RepositoryError> {
    let mut condition = Condition::all().add(live_sessions_of(user_id, now));
    if let Some(keep) = keep {
        condition = condition.add(sessions::Column::Id.ne(keep.as_uuid()));
    }
    let sessions = revoke_where(&**transaction, condition, reason, now).await?;
    let revocations: Vec<Revocation> =
        sessions.iter().map(|session| Revocation::of_session(session, reason, now)).collect();
    append_events(&**transaction, &revocations).await?;
    Ok(RevokedSessions { sessions, revocations })
}

/// The caller's token retired by `rotation`.
fn rotated(session: &Session, rotation: &Rotation) -> Revocation {
    Revocation::of_token(
        session,
        rotation.expected_token,
        rotation.retired_token_expires_at,
        rotation.now,
        rotation.retired_at.plus(rotation.grace),
    )
}

/// Not revoked, and the current token not expired.
fn live(now: Timestamp) -> Condition {
    Condition::all()
        .add(sessions::Column::RevokedAt.is_null())
        .add(sessions::Column::ExpiresAt.gt(now.as_millis()))
}

fn live_sessions_of(user_id: UserId, now: Timestamp) -> Condition {
    live(now).add(sessions::Column::UserId.eq(user_id.as_uuid()))
}

/// Marks the matching unrevoked sessions revoked and returns them as they are now.
pub(super) async fn revoke_where(
    connection: &impl ConnectionTrait,
    condition: Condition,
    reason: RevocationReason,
    now: Timestamp,
) -> Result<Vec<Session>, RepositoryError> {
    sessions::Entity::update_many()
        .col_expr(sessions::Column::RevokedAt, now.as_millis().into())
        .col_expr(sessions::Column::RevokeReason, reason.as_str().into())
        .col_expr(sessions::Column::Version, Expr::col(sessions::Column::Version).add(1))
        .filter(condition.add(sessions::Column::RevokedAt.is_null()))
        .exec_with_returning(connection)
        .await?
        .into_iter()
        .map(session_from_model)
        .collect()
}

/// The conditional update at the heart of rotation: it only matches while the
/// expected token is current (so of two racing rotations one wins), the
/// session is within its maximum lifetime, not rotated too recently, and
/// bound to a matching client. A refresh never extends the session past
/// `created_at + max_lifetime`.
async fn rotate(connection: &impl ConnectionTrait, rotation: &Rotation) -> Result<Option<Session>, RepositoryError> {
    let max_lifetime = i64::try_from(rotation.max_lifetime.as_millis()).unwrap_or(i64::MAX);
    let cap = Expr::col(sessions::Column::CreatedAt).add(max_lifetime);
    let capped = |expires_at: Timestamp| -> Expr {
        CaseStatement::new()
            .case(cap.clone().lt(expires_at.as_millis()), cap.clone())
            .finally(expires_at.as_millis())
            .into()
    };
    let mut update = sessions::Entity::update_many()
        .col_expr(sessions::Column::CurrentTokenId, rotation.new_token.as_uuid().into())
        .col_expr(sessions::Column::PreviousTokenId, Some(rotation.expected_token.as_uuid()).into())
        .col_expr(sessions::Column::PreviousTokenRetiredAt, Some(rotation.retired_at.as_millis()).into())
        .col_expr(sessions::Column::RefreshedAt, rotation.now.as_millis().into())
        .col_expr(
            sessions::Column::ExpiresAt,
            CaseStatement::new()
                .case(Expr::col(sessions::Column::RememberMe).eq(true), capped(rotation.remember_me_expires_at))
                .finally(capped(rotation.expires_at))
                .into(),
        )
        .col_expr(sessions::Column::Version, Expr::col(sessions::Column::Version).add(1))
        .col_expr(sessions::Column::Generation, Expr::col(sessions::Column::Generation).add(1));
    if let Some(client) = &rotation.client {
        let (ip_address, user_agent, device_id) = client_to_stored(client);
        let binding = rotation.client_binding.clone().unwrap_or_default();
        update = update
            .col_expr(sessions::Column::IpAddress, ip_address.into())
            .col_expr(sessions::Column::UserAgent, user_agent.into())
            .col_expr(sessions::Column::DeviceId, device_id.into())
            .col_expr(sessions::Column::IpNetwork, binding.network.into())
            .col_expr(sessions::Column::UserAgentFamily, binding.user_agent_family.into());
    }
    let mut condition = Condition::all()
        .add(sessions::Column::Id.eq(rotation.session_id.as_uuid()))
        .add(sessions::Column::CurrentTokenId.eq(rotation.expected_token.as_uuid()))
        .add(sessions::Column::RevokedAt.is_null())
        .add(sessions::Column::CreatedAt.gt(rotation.retired_at.as_millis().saturating_sub(max_lifetime)));
    if let Some(interval) = rotation.min_interval {
        let latest_allowed = rotation.retired_at.minus(interval).as_millis();
        condition = condition.add(
            Condition::any()
                .add(sessions::Column::PreviousTokenRetiredAt.is_null())
                .add(sessions::Column::PreviousTokenRetiredAt.lte(latest_allowed)),
        );
    }
    if let Some(attributes) = rotation.require_binding {
        let presented = rotation.client_binding.clone().unwrap_or_default();
        condition = condition.add(binding_holds(attributes, &presented));
    }
    let mut rotated = update.filter(condition).exec_with_returning(connection).await?;
    rotated.pop().map(session_from_model).transpose()
}

/// Each bound attribute either unset on the session or equal to the
/// presented one (a presented client lacking it does not match).
fn binding_holds(attributes: BoundAttributes, presented: &ClientBinding) -> Condition {
    [
        (attributes.device_id, sessions::Column::DeviceId, &presented.device_id),
        (attributes.ip_prefix, sessions::Column::IpNetwork, &presented.network),
        (attributes.user_agent_family, sessions::Column::UserAgentFamily, &presented.user_agent_family),
    ]
    .into_iter()
    .filter(|(bound, _, _)| *bound)
    .fold(Condition::all(), |condition, (_, column, value)| {
        let holds = Condition::any().add(column.is_null());
        condition.add(match value {
            Some(value) => holds.add(column.eq(value.as_str())),
            None => holds,
        })
    })
}

fn client_to_stored(client: &ClientContext) -> (Option<String>, Option<String>, Option<String>) {
    (client.ip_address.map(|ip| ip.to_string()), client.user_agent.clone(), client.device_id.clone())
}

fn session_to_model(session: &Session) -> sessions::ActiveModel {
    let (ip_address, user_agent, device_id) = client_to_stored(&session.client);
    sessions::ActiveModel {
        id: Set(session.id.as_uuid()),
        user_id: Set(session.user_id.as_uuid()),
        created_at: Set(session.created_at.as_millis()),
        refreshed_at: Set(session.refreshed_at.as_millis()),
        expires_at: Set(session.expires_at.as_millis()),
        remember_me: Set(session.remember_me),
        ip_address: Set(ip_address),
        user_agent: Set(user_agent),
        device_id: Set(device_id),
        current_token_id: Set(session.current_token_id.as_uuid()),
        previous_token_id: Set(session.previous_token.map(|token| token.id.as_uuid())),
        previous_token_retired_at: Set(session.previous_token.map(|token| token.retired_at.as_millis())),
        revoked_at: Set(session.revoked_at.map(Timestamp::as_millis)),
        revoke_reason: Set(session.revoke_reason.map(|reason| reason.as_str().to_owned())),
        version: Set(session.version),
        generation: Set(i64::try_from(session.generation).unwrap_or(i64::MAX)),
        ip_network: Set(session.ip_network.clone()),
        user_agent_family: Set(session.user_agent_family.clone()),
    }
}

pub(super) fn session_from_model(model: sessions::Model) -> Result<Session, RepositoryError> {
    let corrupt = |what: &str| RepositoryError::corrupt(format!("{what} of session {}", model.id));
    let ip_address = model.ip_address.as_deref().map(str::parse).transpose().map_err(|_| corrupt("ip_address"))?;
    let previous_token = match (model.previous_token_id, model.previous_token_retired_at) {
        (Some(id), Some(retired_at)) => Some(RetiredToken {
            id: TokenId::from_uuid(id),
            retired_at: Timestamp::from_millis(retired_at),
        }),
        _ => None,
    };
    let revoke_reason = model
        .revoke_reason
        .as_deref()
        .map(|reason| RevocationReason::from_stored(reason).ok_or_else(|| corrupt("revoke_reason")))
        .transpose()?;
    Ok(Session {
        id: SessionId::from_uuid(model.id),
        user_id: UserId::from_uuid(model.user_id),
        created_at: Timestamp::from_millis(model.created_at),
        refreshed_at: Timestamp::from_millis(model.refreshed_at),
        expires_at: Timestamp::from_millis(model.expires_at),
        remember_me: model.remember_me,
        client: ClientContext {
            ip_address,
            user_agent: model.user_agent,
            device_id: model.device_id,
        },
        current_token_id: TokenId::from_uuid(model.current_token_id),
        previous_token,
        revoked_at: model.revoked_at.map(Timestamp::from_millis),
        revoke_reason,
        version: model.version,
        generation: u64::try_from(model.generation).map_err(|_| corrupt("generation"))?,
        ip_network: model.ip_network,
        user_agent_family: model.user_agent_family,
    })
}
