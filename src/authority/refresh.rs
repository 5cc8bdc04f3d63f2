//! Refresh: rotate the token, recognise a retry, and treat the reuse of a
//! retired token as theft.

use tracing::{info, warn};

use super::{Authority, AuthorityError, IssuedSession};
use crate::{
    domain::{AccessToken, ClientContext, RevocationReason, Timestamp, TokenStanding},
    metrics,
};

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
        let claims = self.keyring.verify(token, Timestamp::now()).map_err(AuthorityError::InvalidToken)?;
        let span = tracing::Span::current();
        span.record("user_id", tracing::field::display(claims.user_id));
        span.record("session_id", tracing::field::display(claims.session_id));

        // The usual case: the presented token is its session's current one.
        // The guarded rotation settles that by itself (a revoked session,
        // which includes every session of a disabled user, or a retired token
        // does not match it), so try it first and read the session only when
        // it does not match. Tokens carry the name and roles they were
        // issued with, from login on.
        let now = Timestamp::now();
        let rotation = self.rotation_of(claims.session_id, claims.token_id, claims.expires_at, client, now);
        let ticket = self.sessions.ticket(claims.session_id);
        if let Some((rotated, revocation)) = self.repository.rotate_session(&rotation).await? {
            self.cache_live(ticket, &rotated);
            self.committed(&[], std::slice::from_ref(&revocation));
            info!(outcome = "rotated", "token refreshed");
            return Ok((self.issue(rotated, &claims.username, claims.roles)?, "rotated"));
        }

        let session = self
            .repository
            .find_session(claims.session_id)
            .await?
            .filter(|session| session.user_id == claims.user_id)
            .ok_or(AuthorityError::UnknownSession)?;
        let now = Timestamp::now();
        match session.standing(claims.token_id, now, self.lifetimes.rotation_grace) {
            TokenStanding::Revoked => {
                info!(outcome = "revoked", "refresh refused");
                Err(AuthorityError::SessionRevoked)
            }
            // The update above matches whenever this token is current, and a
            // token that stopped being current never becomes current again:
            // nothing should get here, so report a conflict (the client
            // retries) rather than guess.
            TokenStanding::Current => Err(AuthorityError::Conflict),
            TokenStanding::RetiredInGrace => {
                // A retry, or the loser of a race with a concurrent Refresh:
                // the session's current token, signed again.
                info!(outcome = "retry", "retired token within grace period; returning the current token");
                Ok((self.issue(session, &claims.username, claims.roles)?, "retry"))
            }
            TokenStanding::Retired => {
                warn!(outcome = "reuse_detected", "retired token presented again; revoking the session");
                metrics::reuse_detected();
                if let Some((revoked, revocation)) =
                    self.repository.revoke_session(session.id, RevocationReason::ReuseDetected, now).await?
                {
                    self.committed(std::slice::from_ref(&revoked), std::slice::from_ref(&revocation));
                }
                Err(AuthorityError::TokenReused)
            }
        }
    }
}
