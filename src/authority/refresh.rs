//! Refresh: rotate the token, recognise a retry, and treat the reuse of a
//! retired token as theft.

use tracing::{info, warn};

use super::{Authority, AuthorityError, IssuedSession};
use crate::{
    domain::{AccessToken, ClientContext, RevocationReason, Timestamp, TokenStanding},
    metrics,
};

/// A rotation can lose a race to a concurrent one; it then re-reads the
/// session, finds its token retired a moment ago, and answers as a retry.
const MAX_ATTEMPTS: usize = 3;

impl Authority {
    #[tracing::instrument(name = "refresh", skip_all, fields(user_id, session_id))]
    pub async fn refresh(
        &self,
        token: &AccessToken,
        client: Option<ClientContext>,
    ) -> Result<IssuedSession, AuthorityError> {
        let result = self.rotate(token, client).await;
        metrics::refresh(match &result {
            Ok((_, outcome)) => outcome,
            Err(AuthorityError::InvalidToken(_)) => "invalid_token",
            Err(AuthorityError::UnknownSession) => "unknown_session",
            Err(AuthorityError::SessionRevoked) => "revoked",
            Err(AuthorityError::TokenReused) => "reuse_detected",
            Err(AuthorityError::Conflict) => "conflict",
            Err(_) => "error",
        });
        result.map(|(issued, _)| issued)
    }

    /// The refresh itself; also says how it went, for the metrics.
    async fn rotate(
        &self,
        token: &AccessToken,
        client: Option<ClientContext>,
    ) -> Result<(IssuedSession, &'static str), AuthorityError> {
        let claims = self.keyring.verify(token).map_err(AuthorityError::InvalidToken)?;
        let span = tracing::Span::current();
        span.record("user_id", tracing::field::display(claims.user_id));
        span.record("session_id", tracing::field::display(claims.session_id));

        // The usual case: the presented token is its session's current one.
        // The guarded rotation settles that by itself (a revoked session, a
        // disabled user or a retired token do not match it), so try it first,
        // and read the session only when it does not match. The new token
        // keeps the name and roles of the old one.
        let now = Timestamp::now();
        let rotation = self.rotation_of(claims.session_id, claims.token_id, claims.expires_at, client.clone(), now);
        let ticket = self.sessions.ticket(claims.session_id);
        if let Some((rotated, revocation)) = self.repository.rotate_session(&rotation).await? {
            self.cache_live(ticket, &rotated);
            self.committed(&[], std::slice::from_ref(&revocation));
            info!(outcome = "rotated", "token refreshed");
            return Ok((self.issue(rotated, &claims.username, claims.roles)?, "rotated"));
        }

        for _ in 0..MAX_ATTEMPTS {
            let (session, user) = self
                .repository
                .find_session_with_user(claims.session_id)
                .await?
                .filter(|(session, _)| session.user_id == claims.user_id)
                .ok_or(AuthorityError::UnknownSession)?;
            if user.disabled {
                return Err(AuthorityError::SessionRevoked);
            }
            let now = Timestamp::now();
            match session.standing(claims.token_id, now, self.lifetimes.rotation_grace) {
                TokenStanding::Revoked => {
                    info!(outcome = "revoked", "refresh refused");
                    return Err(AuthorityError::SessionRevoked);
                }
                TokenStanding::Current => {
                    let rotation =
                        self.rotation_of(session.id, session.current_token_id, session.expires_at, client.clone(), now);
                    let ticket = self.sessions.ticket(session.id);
                    let Some((rotated, revocation)) = self.repository.rotate_session(&rotation).await? else {
                        continue; // lost a race: look again
                    };
                    self.cache_live(ticket, &rotated);
                    self.committed(&[], std::slice::from_ref(&revocation));
                    info!(outcome = "rotated", "token refreshed");
                    return Ok((self.issue(rotated, user.username.as_str(), user.roles.names())?, "rotated"));
                }
                TokenStanding::RetiredInGrace => {
                    info!(outcome = "retry", "retired token within grace period; returning the current token");
                    return Ok((self.issue(session, user.username.as_str(), user.roles.names())?, "retry"));
                }
                TokenStanding::Retired => {
                    warn!(outcome = "reuse_detected", "retired token presented again; revoking the session");
                    metrics::reuse_detected();
                    if let Some((revoked, revocation)) = self
                        .repository
                        .revoke_session(session.id, RevocationReason::ReuseDetected, now)
                        .await?
                    {
                        self.committed(std::slice::from_ref(&revoked), std::slice::from_ref(&revocation));
                    }
                    return Err(AuthorityError::TokenReused);
                }
            }
        }
        Err(AuthorityError::Conflict)
    }
}
