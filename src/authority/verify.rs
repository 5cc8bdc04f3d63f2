//! Verify: is this token good right now? Answered from the signature and the
//! in-memory session cache; the database is read only on a cache miss.

use super::{Authority, AuthorityError};
use crate::{
    domain::{
        AccessToken, ClientContext, SessionId, SessionState, Timestamp, TokenStanding,
        audit::Severity,
        binding::BindingMode,
        tokens::{TokenClaims, TokenRejection},
    },
    metrics,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Valid(VerifiedToken),
    Invalid(InvalidReason),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub claims: TokenClaims,
    /// Within the refresh window: the client should call Refresh.
    pub needs_refresh: bool,
    /// The caller's client does not match the session's binding
    /// (SESSION_BINDING=log; under enforce the token is refused instead).
    pub binding_mismatch: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidReason {
    Token(TokenRejection),
    Revoked,
    Rotated,
    UnknownSession,
    /// The caller's client does not match the session's binding
    /// (SESSION_BINDING=enforce).
    BindingMismatch,
}

impl Authority {
    pub async fn verify(&self, token: &AccessToken) -> Result<Verdict, AuthorityError> {
        let verdict = self.check(token).await?;
        metrics::verification(&verdict);
        Ok(verdict)
    }

    /// Verify for a caller that says which client presented the token: a
    /// valid token is also compared with the session's binding.
    pub async fn verify_for_client(
        &self,
        token: &AccessToken,
        client: &ClientContext,
    ) -> Result<Verdict, AuthorityError> {
        let verdict = match self.check(token).await? {
            Verdict::Valid(verified) if self.security.binding.is_active() => {
                self.check_binding(verified, client).await?
            }
            verdict => verdict,
        };
        metrics::verification(&verdict);
        Ok(verdict)
    }

    async fn check_binding(
        &self,
        mut verified: VerifiedToken,
        client: &ClientContext,
    ) -> Result<Verdict, AuthorityError> {
        let id = verified.claims.session_id;
        let Some(state) = self.session_state(id, false).await? else {
            return Ok(Verdict::Invalid(InvalidReason::UnknownSession));
        };
        if self.binding_matches(state.binding, client) {
            return Ok(Verdict::Valid(verified));
        }
        // From the claims: a repeat within SECURITY_EVENT_INTERVAL costs no database read.
        let user_id = verified.claims.user_id;
        if self.security.binding.mode == BindingMode::Enforce {
            self.raise_binding_mismatch(user_id, id, client, Severity::High, "verify").await?;
            return Ok(Verdict::Invalid(InvalidReason::BindingMismatch));
        }
        self.raise_binding_mismatch(user_id, id, client, Severity::Medium, "verify").await?;
        verified.binding_mismatch = true;
        Ok(Verdict::Valid(verified))
    }

    async fn check(&self, token: &AccessToken) -> Result<Verdict, AuthorityError> {
        let now = self.now();
        let claims = match self.token_claims(token, now) {
            Ok(claims) => claims,
            Err(rejection) => return Ok(Verdict::Invalid(InvalidReason::Token(rejection))),
        };
        let Some(mut state) = self.session_state(claims.session_id, false).await? else {
            return Ok(Verdict::Invalid(InvalidReason::UnknownSession));
        };
        let grace = self.lifetimes.rotation_grace;
        let mut standing = state.standing(claims.token_id, now, grace);
        // A token issued no earlier than the one we know as current may be a
        // newer one rotated on another replica: ask the database once.
        if standing == TokenStanding::Retired && claims.issued_at >= state.current_issued_at {
            let Some(fresh) = self.session_state(claims.session_id, true).await? else {
                return Ok(Verdict::Invalid(InvalidReason::UnknownSession));
            };
            state = fresh;
            standing = state.standing(claims.token_id, now, grace);
        }
        if state.user_id != claims.user_id {
            return Ok(Verdict::Invalid(InvalidReason::UnknownSession));
        }
        Ok(match standing {
            TokenStanding::Current | TokenStanding::RetiredInGrace => Verdict::Valid(VerifiedToken {
                needs_refresh: self.lifetimes.needs_refresh(claims.expires_at, now),
                claims,
                binding_mismatch: false,
            }),
            TokenStanding::Revoked => Verdict::Invalid(InvalidReason::Revoked),
            TokenStanding::Retired => Verdict::Invalid(InvalidReason::Rotated),
        })
    }

    /// The token's claims if it is good at `now`: remembered from an earlier
    /// Verify of the same token (its window checked again), or verified in
    /// full and then remembered.
    fn token_claims(&self, token: &AccessToken, now: Timestamp) -> Result<TokenClaims, TokenRejection> {
        if let Some((claims, window)) = self.verified_tokens.get(token) {
            self.keys.keyring().check_window(window, now)?;
            return Ok(claims);
        }
        let ticket = self.verified_tokens.ticket();
        let (claims, window) = self.keys.keyring().verify_with_window(token, now)?;
        self.verified_tokens.insert(ticket, token, &claims, window);
        Ok(claims)
    }

    /// The session's state from the cache or, on a miss (or when `fresh`),
    /// from the database.
    async fn session_state(&self, id: SessionId, fresh: bool) -> Result<Option<SessionState>, AuthorityError> {
        if !fresh && let Some(state) = self.sessions.get(id) {
            return Ok(Some(state));
        }
        let ticket = self.sessions.ticket(id);
        let state = self.repository.find_session(id).await?.map(|session| session.state());
        if let Some(state) = state {
            self.sessions.fill(ticket, state);
        }
        Ok(state)
    }
}
