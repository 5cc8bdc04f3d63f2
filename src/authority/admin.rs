//! Operator actions: creating and disabling users, revoking and listing
//! sessions. Callers are authenticated by the gRPC layer (admin keys).

use tracing::info;

use super::{Authority, AuthorityError, PasswordPool};
use crate::{
    clock::Clock,
    domain::{NewPassword, RevocationReason, Roles, Session, SessionId, UserId, Username},
    repository::{NewUser, Repository},
};

/// Creates a user. Shared by the admin RPC and the `user create` command,
/// which has no running server.
pub async fn create_user(
    repository: &Repository,
    clock: &dyn Clock,
    passwords: &PasswordPool,
    username: Username,
    password: NewPassword,
    roles: Roles,
) -> Result<UserId, AuthorityError> {
    let password_hash = passwords.hash(password.as_password().clone()).await?;
    let id = UserId::generate();
    let user = NewUser {
        id,
        username,
        password_hash,
        roles,
        created_at: clock.now(),
    };
    if !repository.create_user(user).await? {
        return Err(AuthorityError::UsernameTaken);
    }
    info!(user_id = %id, "user created");
    Ok(id)
}

impl Authority {
    pub async fn create_user(
        &self,
        username: Username,
        password: NewPassword,
        roles: Roles,
    ) -> Result<UserId, AuthorityError> {
        create_user(&self.repository, &*self.clock, &self.passwords, username, password, roles).await
    }

    /// Disables (revoking every session) or re-enables a user.
    #[tracing::instrument(name = "set_user_disabled", skip(self))]
    pub async fn set_user_disabled(&self, user_id: UserId, disabled: bool) -> Result<usize, AuthorityError> {
        let revoked = self
            .repository
            .set_user_disabled(user_id, disabled, self.now())
            .await?
            .ok_or(AuthorityError::UserNotFound(user_id))?;
        self.committed(&revoked.sessions, &revoked.revocations);
        info!(%user_id, disabled, revoked_count = revoked.sessions.len(), "user status changed");
        Ok(revoked.sessions.len())
    }

    /// Revokes one session; `false` if it was already revoked.
    #[tracing::instrument(name = "revoke_session", skip(self))]
    pub async fn revoke_session(&self, session_id: SessionId) -> Result<bool, AuthorityError> {
        match self.repository.revoke_session(session_id, RevocationReason::Admin, self.now()).await? {
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
}
