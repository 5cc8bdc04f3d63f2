//! The authority: the service's use cases (log in, refresh, verify, log out,
//! change password, administer users), written with domain types over the
//! repository. It knows nothing of gRPC; `grpc` translates requests into
//! calls here and results into responses.
//!
//! After every committed write it updates the session cache, so that Verify
//! on this replica sees the change at once, and announces the outbox events.

mod admin;
mod change_password;
mod cleanup;
mod error;
mod keys;
mod list_sessions;
mod login;
mod logout;
mod password_pool;
mod pauses;
mod refresh;
mod security;
mod session_cache;
mod verified_tokens;
mod verify;

use std::sync::Arc;

pub use admin::{MAX_AUDIT_PAGE, create_user};
pub use change_password::PasswordChanged;
pub use cleanup::{CleanupPolicy, CleanupReport, cleanup, cleanup_periodically};
pub use error::{AuthorityError, InternalError};
pub use keys::{KeyStore, KeyStoreError, ListedKey, RemovedKey, format_time};
pub use login::LoginRequest;
pub use password_pool::PasswordPool;
pub use pauses::{Pause, Pauses};
pub use security::{RevokeOn, SecurityListener, SecurityMonitor, SecurityPolicy};
pub use session_cache::{LoadTicket, SessionCache};
pub use verified_tokens::{InsertTicket, VerifiedTokens};
pub use verify::{InvalidReason, Verdict, VerifiedToken};

use crate::{
    clock::SharedClock,
    domain::{
        AccessToken, ClientContext, Revocation, RevocationReason, Session, SessionId, Timestamp, TokenId,
        TokenLifetimes, TokenStanding, UserId, tokens::TokenClaims,
    },
    metrics,
    repository::{Repository, Rotation},
};

/// A token just issued, with the session it belongs to.
#[derive(Debug)]
pub struct IssuedSession {
    pub access_token: AccessToken,
    pub session: Session,
}

/// Told about every committed batch of revocations (the revocation stream
/// listens here).
pub trait RevocationListener: Send + Sync {
    fn committed(&self, revocations: &[Revocation]);
}

pub struct Authority {
    repository: Repository,
    keys: Arc<KeyStore>,
    lifetimes: TokenLifetimes,
    passwords: PasswordPool,
    sessions: Arc<SessionCache>,
    verified_tokens: Arc<VerifiedTokens>,
    security: SecurityPolicy,
    monitor: SecurityMonitor,
    listener: Arc<dyn RevocationListener>,
    clock: SharedClock,
    pauses: Pauses,
}

/// Everything the authority works with; every part is required, so that
/// forgetting one (the security policy, the revocation listener) cannot compile.
pub struct AuthorityParts {
    pub repository: Repository,
    pub keys: Arc<KeyStore>,
    pub lifetimes: TokenLifetimes,
    pub passwords: PasswordPool,
    pub sessions: Arc<SessionCache>,
    /// Tokens Verify has checked in full, so a repeat skips the signature.
    pub verified_tokens: Arc<VerifiedTokens>,
    pub security: SecurityPolicy,
    pub listener: Arc<dyn RevocationListener>,
    /// Told of every recorded security event (the admin stream).
    pub security_listener: Arc<dyn SecurityListener>,
    pub clock: SharedClock,
    /// Where tests hold a call; [`Pauses::none`] in production.
    pub pauses: Pauses,
}

impl Authority {
    pub fn new(parts: AuthorityParts) -> Self {
        let AuthorityParts {
            repository,
            keys,
            lifetimes,
            passwords,
            sessions,
            verified_tokens,
            security,
            listener,
            security_listener,
            clock,
            pauses,
        } = parts;
        Self {
            repository,
            keys,
            lifetimes,
            passwords,
            sessions,
            verified_tokens,
            monitor: SecurityMonitor::new(security.event_interval, security_listener),
            security,
            listener,
            clock,
            pauses,
        }
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The public keys that verify our tokens, a JWK set (RFC 7517 JSON).
    pub fn jwks(&self) -> Arc<str> {
        self.keys.jwks()
    }

    /// The algorithms of the published keys.
    pub fn published_algorithms(&self) -> Vec<crate::domain::tokens::SigningAlgorithm> {
        self.keys.keyring().published_algorithms()
    }

    /// Signs the session's current token. Deterministic for the same session
    /// state, so a retry within the grace period gets the very same token.
    fn issue(&self, session: Session, username: &str, roles: Vec<String>) -> Result<IssuedSession, AuthorityError> {
        let claims = TokenClaims {
            user_id: session.user_id,
            session_id: session.id,
            token_id: session.current_token_id,
            username: username.to_owned(),
            roles,
            issued_at: session.refreshed_at,
            expires_at: session.expires_at,
            generation: session.generation,
        };
        let access_token = self.keys.keyring().sign(&claims, self.now()).map_err(InternalError::Signing)?;
        Ok(IssuedSession { access_token, session })
    }

    /// The rotation that replaces `current` (expiring at `current_expires_at`)
    /// of `user_id`'s session with a fresh token. It carries no refresh
    /// limit or binding condition; Refresh adds those.
    fn rotation_of(
        &self,
        session_id: SessionId,
        user_id: UserId,
        current: TokenId,
        current_expires_at: Timestamp,
        client: Option<ClientContext>,
        at: Timestamp,
    ) -> Rotation {
        let now = at.truncated_to_seconds();
        Rotation {
            session_id,
            expected_token: current,
            retired_token_expires_at: current_expires_at,
            new_token: TokenId::generate(),
            now,
            retired_at: at,
            expires_at: now.plus(self.lifetimes.lifetime(false)),
            remember_me_expires_at: now.plus(self.lifetimes.lifetime(true)),
            client_binding: client.as_ref().map(|client| self.security.binding.binding_of(client)),
            client,
            require_binding: None,
            min_interval: None,
            max_lifetime: self.security.session_max_lifetime,
            grace: self.lifetimes.rotation_grace,
            user_id,
        }
    }

    /// Makes committed revocations visible: the cache first, so that Verify
    /// here is consistent before the caller gets its answer, then the stream.
    /// A revocation is final, so its state can always be cached.
    fn committed(&self, revoked: &[Session], revocations: &[Revocation]) {
        for session in revoked {
            self.sessions.store_revoked(session.state());
        }
        for reason in RevocationReason::ALL {
            let count = revocations.iter().filter(|revocation| revocation.reason == reason).count() as u64;
            if count > 0 {
                metrics::revocations(reason, count);
            }
        }
        if !revocations.is_empty() {
            self.listener.committed(revocations);
        }
    }

    /// Caches a live session this replica has just written, unless a change
    /// from elsewhere touched the cache since `ticket` was taken (before the
    /// write): that change may be newer than ours, so the next Verify reads
    /// the database instead.
    fn cache_live(&self, ticket: LoadTicket, session: &Session) {
        self.sessions.fill(ticket, session.state());
    }

    /// A caller proving who they are with a token: it must verify and be the
    /// current token of a live session (or the one retired within the grace
    /// period). Reads the database, not the cache: writes follow.
    async fn authenticate(&self, token: &AccessToken) -> Result<(TokenClaims, Session), AuthorityError> {
        let now = self.now();
        let claims = self.keys.keyring().verify(token, now).map_err(AuthorityError::InvalidToken)?;
        let session = self
            .repository
            .find_session(claims.session_id)
            .await?
            .filter(|session| session.user_id == claims.user_id)
            .ok_or(AuthorityError::UnknownSession)?;
        match session.standing(claims.token_id, now, self.lifetimes.rotation_grace) {
            TokenStanding::Current | TokenStanding::RetiredInGrace => Ok((claims, session)),
            TokenStanding::Revoked => Err(AuthorityError::SessionRevoked),
            TokenStanding::Retired => Err(AuthorityError::TokenRotated),
        }
    }
}
