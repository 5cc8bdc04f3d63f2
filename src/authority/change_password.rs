//! ChangePassword: prove the current password, store the new one, end every
//! other session of the user and rotate the caller's token, in one
//! transaction.

use tracing::info;

use super::{Authority, AuthorityError};
use crate::{
    domain::{
        AccessToken, ClientContext, NewPassword, Password, Timestamp,
        audit::{AuditKind, AuditRecord},
        throttle::ThrottleVerdict,
    },
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
        // A stolen token must not turn into unlimited guesses of the
        // password: the same per-username throttle as Login (no address is
        // known here, so only the username's key counts).
        let takes = self.throttle_takes(&user.username, Some(user.id), &ClientContext::default()).await?;
        if let ThrottleVerdict::Refused { scope, retry_after } =
            self.repository.take_attempt(&takes, self.now()).await?
        {
            self.raise_throttled(scope, Some(user.id), &ClientContext::default()).await;
            return Err(AuthorityError::TooManyAttempts(retry_after));
        }
        let check = self.passwords.verify(current_password, Some(user.password_hash.clone())).await?;
        if !check.matches {
            info!(outcome = "wrong_password", "password change refused");
            return Err(AuthorityError::WrongCurrentPassword);
        }
        self.repository.give_back_attempts(&takes).await?;
        let new_hash = self.passwords.hash(new_password.as_password().clone()).await?;
        let now = self.now();
        let rotation =
            self.rotation_of(session.id, session.user_id, session.current_token_id, session.expires_at, None, now);
        let audit = AuditRecord::new(AuditKind::PasswordChanged, now).user(user.id).session(session.id);
        let ticket = self.sessions.ticket(session.id);
        match self.repository.change_password(user.id, &user.password_hash, new_hash, &rotation, &audit).await? {
            PasswordChange::Done { session, revoked } => {
                self.cache_live(ticket, &session);
                self.committed(&revoked.sessions, &revoked.revocations);
                let revoked_count = revoked.sessions.len();
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
}
