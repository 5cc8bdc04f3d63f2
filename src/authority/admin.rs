//! Operator actions: creating and disabling users, setting their roles,
//! revoking and listing sessions, reading the audit trail. Callers are
//! authenticated by the gRPC layer (admin keys), which names the acting key
//! as an [`Actor`] for the audit trail.

use tracing::info;

use super::{Authority, AuthorityError, PasswordPool};
use crate::{
    clock::Clock,
    domain::{
        NewPassword, RevocationReason, Roles, Session, SessionId, UserId, Username,
        audit::{Actor, AuditEntry, AuditKind, AuditQuery, AuditRecord},
    },
    repository::{NewUser, Repository},
};

/// Audit records an admin listing returns at most, per page.
pub const MAX_AUDIT_PAGE: u64 = 1000;

/// Creates a user. Shared by the admin RPC and the `user create` command,
/// which has no running server.
pub async fn create_user(
    repository: &Repository,
    clock: &dyn Clock,
    passwords: &PasswordPool,
    actor: Actor,
    username: Username,
    password: NewPassword,
    roles: Roles,
) -> Result<UserId, AuthorityError> {
    let password_hash = passwords.hash(password.as_password().clone()).await?;
    let id = UserId::generate();
    let now = clock.now();
    let user = NewUser {
        id,
        username,
        password_hash,
        roles,
        created_at: now,
    };
    let audit = AuditRecord::new(AuditKind::UserCreated, now).by(Some(actor));
    if !repository.create_user(user, &audit).await? {
        return Err(AuthorityError::UsernameTaken);
    }
    info!(user_id = %id, "user created");
    Ok(id)
}

impl Authority {
    pub async fn create_user(
        &self,
        actor: Actor,
        username: Username,
        password: NewPassword,
        roles: Roles,
    ) -> Result<UserId, AuthorityError> {
        create_user(&self.repository, &*self.clock, &self.passwords, actor, username, password, roles).await
    }

    /// Disables (revoking every session) or re-enables a user.
    #[tracing::instrument(name = "set_user_disabled", skip(self))]
    pub async fn set_user_disabled(
        &self,
        actor: Actor,
        user_id: UserId,
        disabled: bool,
    ) -> Result<usize, AuthorityError> {
        let now = self.now();
        let kind = if disabled {
            AuditKind::UserDisabled
        } else {
            AuditKind::UserEnabled
        };
        let audit = AuditRecord::new(kind, now).by(Some(actor));
        let revoked = self
            .repository
            .set_user_disabled(user_id, disabled, now, &audit)
            .await?
            .ok_or(AuthorityError::UserNotFound(user_id))?;
        self.committed(&revoked.sessions, &revoked.revocations);
        info!(%user_id, disabled, revoked_count = revoked.sessions.len(), "user status changed");
        Ok(revoked.sessions.len())
    }

    /// Replaces a user's roles; their tokens carry them from the next refresh.
    #[tracing::instrument(name = "set_user_roles", skip(self, roles))]
    pub async fn set_user_roles(&self, actor: Actor, user_id: UserId, roles: Roles) -> Result<(), AuthorityError> {
        let audit = AuditRecord::new(AuditKind::RolesChanged, self.now()).by(Some(actor));
        if !self.repository.set_user_roles(user_id, &roles, &audit).await? {
            return Err(AuthorityError::UserNotFound(user_id));
        }
        info!(%user_id, "roles changed");
        Ok(())
    }

    /// Revokes one session; `false` if it was already revoked.
    #[tracing::instrument(name = "revoke_session", skip(self))]
    pub async fn revoke_session(&self, actor: Actor, session_id: SessionId) -> Result<bool, AuthorityError> {
        let now = self.now();
        let audit = AuditRecord::new(AuditKind::SessionRevoked, now)
            .by(Some(actor))
            .detail(RevocationReason::Admin.as_str());
        match self.repository.revoke_session(session_id, RevocationReason::Admin, now, &audit).await? {
            Some((session, revocation)) => {
                self.committed(std::slice::from_ref(&session), std::slice::from_ref(&revocation));
                info!(user_id = %session.user_id, %session_id, "session revoked by an operator");
                Ok(true)
            }
            None if self.repository.find_session(session_id).await?.is_some() => Ok(false),
            None => Err(AuthorityError::SessionNotFound(session_id)),
        }
    }

    pub async fn list_user_sessions(&self, user_id: UserId) -> Result<Vec<Session>, AuthorityError> {
        if self.repository.find_user(user_id).await?.is_none() {
            return Err(AuthorityError::UserNotFound(user_id));
        }
        Ok(self.repository.list_live_sessions(user_id, self.now()).await?)
    }

    /// A page of the audit trail, newest first; the limit is capped at
    /// [`MAX_AUDIT_PAGE`].
    pub async fn list_audit(&self, mut query: AuditQuery) -> Result<Vec<AuditEntry>, AuthorityError> {
        query.limit = query.limit.clamp(1, MAX_AUDIT_PAGE);
        Ok(self.repository.list_audit(&query).await?)
    }
}
