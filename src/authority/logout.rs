//! Ending sessions: Logout (the caller's session) and LogoutAll (every
//! session of the caller's user, or every other one).

use tracing::info;

use super::{Authority, AuthorityError};
use crate::domain::{
    AccessToken, RevocationReason, SessionId,
    audit::{AuditKind, AuditRecord},
};

impl Authority {
    /// Revokes the token's session. Takes any token we signed, even expired,
    /// rotated or already revoked: ending one's own session is always allowed,
    /// and doing it twice is not an error.
    #[tracing::instrument(name = "logout", skip_all, fields(user_id, session_id))]
    pub async fn logout(&self, token: &AccessToken) -> Result<SessionId, AuthorityError> {
        let now = self.now();
        let claims = self.keys.keyring().verify_ignoring_expiry(token, now).map_err(AuthorityError::InvalidToken)?;
        let span = tracing::Span::current();
        span.record("user_id", tracing::field::display(claims.user_id));
        span.record("session_id", tracing::field::display(claims.session_id));
        let audit = AuditRecord::new(AuditKind::Logout, now);
        match self.repository.revoke_session(claims.session_id, RevocationReason::Logout, now, &audit).await? {
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
        let now = self.now();
        let audit = AuditRecord::new(AuditKind::LogoutAll, now).user(claims.user_id).session(session.id);
        let revoked = self
            .repository
            .revoke_user_sessions(claims.user_id, keep, RevocationReason::LogoutAll, now, &audit)
            .await?;
        self.committed(&revoked.sessions, &revoked.revocations);
        info!(revoked_count = revoked.sessions.len(), keep_current, "logged out of all sessions");
        Ok(revoked.sessions.len())
    }
}
