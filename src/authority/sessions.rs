//! Ending sessions (logout, logout of all sessions, password change) and
//! listing them.

use tracing::info;

use super::{Authority, AuthorityError};
use crate::{
    domain::{AccessToken, NewPassword, Password, RevocationReason, Session, SessionId, Timestamp},
    repository::PasswordChange,
};

/// The caller's new token after a password change.
#[derive(Debug)]
pub struct PasswordChanged {
    pub access_token: AccessToken,
    pub expires_at: Timestamp,
    pub revoked_count: usize,
}

impl Authority {
    /// Revokes the token's session. Takes any token we signed, even expired,
    /// rotated or already revoked: ending one's own session is always allowed,
    /// and doing it twice is not an error.
    #[tracing::instrument(name = "logout", skip_all, fields(user_id, session_id))]
    pub async fn logout(&self, token: &AccessToken) -> Result<SessionId, AuthorityError> {
        let claims =
            self.keyring.verify_ignoring_expiry(token, Timestamp::now()).map_err(AuthorityError::InvalidToken)?;
        let span = tracing::Span::current();
        span.record("user_id", tracing::field::display(claims.user_id));
        span.record("session_id", tracing::field::display(claims.session_id));
        match self
            .repository
            .revoke_session(claims.session_id, RevocationReason::Logout, Timestamp::now())
            .await?
        {
            Some((session, revocation)) => {
                self.committed(std::slice::from_ref(&session), std::slice::from_ref(&revocation));
                info!(outcome = "revoked", "logged out");
            }
            None => info!(outcome = "already_ended", "logout of a session that had already ended"),
        }
        Ok(claims.session_id)
    }

    #[tracing::instrument(name = "logout_all", skip_all, fields(user_id, session_id))]
    pub async fn logout_all(&self, token: &AccessToken, keep_current: bool) -> Result<usize, AuthorityError> {
        let (claims, session) = self.authenticate(token).await?;
        let span = tracing::Span::current();
        span.record("user_id", tracing::field::display(claims.user_id));
        span.record("session_id", tracing::field::display(session.id));
        let keep = keep_current.then_some(session.id);
        let revocations = self
            .repository
            .revoke_user_sessions(claims.user_id, keep, RevocationReason::LogoutAll, Timestamp::now())
            .await?;
        self.committed(&revocations.sessions, &revocations.revocations);
        info!(revoked_count = revocations.sessions.len(), keep_current, "logged out of all sessions");
        Ok(revocations.sessions.len())
    }

    /// Checks the current password, stores the new one, revokes every other
    /// session of the user and rotates the caller's token, in one transaction.
    #[tracing::instrument(name = "change_password", skip_all, fields(user_id, session_id))]
    pub async fn change_password(
        &self,
        token: &AccessToken,
        current_password: Password,
        new_password: NewPassword,
    ) -> Result<PasswordChanged, AuthorityError> {
        let (claims, session) = self.authenticate(token).await?;
        let span = tracing::Span::current();
        span.record("user_id", tracing::field::display(claims.user_id));
        span.record("session_id", tracing::field::display(session.id));
        let user = self.repository.find_user(claims.user_id).await?.ok_or(AuthorityError::UnknownSession)?;
        // A stolen token must not turn into unlimited guesses of the password.
        self.throttle.check(&user.username.key()).map_err(AuthorityError::TooManyAttempts)?;
        let check = self.passwords.verify(current_password, Some(user.password_hash.clone())).await?;
        if !check.matches {
            info!(outcome = "wrong_password", "password change refused");
            return Err(AuthorityError::WrongCurrentPassword);
        }
        let new_hash = self.passwords.hash(new_password.as_password().clone()).await?;
        let rotation =
            self.rotation_of(session.id, session.current_token_id, session.expires_at, None, Timestamp::now());
        let ticket = self.sessions.ticket(session.id);
        match self.repository.change_password(user.id, &user.password_hash, new_hash, &rotation).await? {
            PasswordChange::Done { session, revocations } => {
                self.cache_live(ticket, &session);
                self.committed(&revocations.sessions, &revocations.revocations);
                let revoked_count = revocations.sessions.len();
                info!(revoked_count, outcome = "ok", "password changed");
                let issued = self.issue(session, user.username.as_str(), user.roles.names())?;
                Ok(PasswordChanged {
                    expires_at: issued.session.expires_at,
                    access_token: issued.access_token,
                    revoked_count,
                })
            }
            PasswordChange::Conflict => Err(AuthorityError::Conflict),
        }
    }

    /// The caller's live sessions, newest first, and which one is theirs.
    pub async fn list_sessions(&self, token: &AccessToken) -> Result<(Vec<Session>, SessionId), AuthorityError> {
        let (claims, session) = self.authenticate(token).await?;
        let sessions = self.repository.list_live_sessions(claims.user_id, Timestamp::now()).await?;
        Ok((sessions, session.id))
    }
}
