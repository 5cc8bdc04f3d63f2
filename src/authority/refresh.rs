//! Refresh: rotate the token, recognise a retry, and treat the reuse of a
//! retired token as theft. A rotation reads the user's current name and
//! roles (a disabled user cannot refresh), keeps within the session's
//! maximum lifetime and the refresh rate limit, and checks the session's
//! binding to its client.

use tracing::{info, warn};

use super::{Authority, AuthorityError, IssuedSession};
use crate::{
    domain::{
        AccessToken, ClientContext, RevocationReason, Session, SessionId, TokenStanding, UserId,
        audit::{AuditKind, AuditRecord, SecurityEventKind, Severity},
        binding::{BindingDigest, BindingMode},
        tokens::TokenClaims,
    },
    metrics::{self, RefreshOutcome},
    repository::RotationResult,
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
            Ok((_, outcome)) => *outcome,
            Err(AuthorityError::InvalidToken(_)) => RefreshOutcome::InvalidToken,
            Err(AuthorityError::UnknownSession) => RefreshOutcome::UnknownSession,
            Err(AuthorityError::SessionRevoked) => RefreshOutcome::Revoked,
            Err(AuthorityError::TokenReused) => RefreshOutcome::ReuseDetected,
            Err(AuthorityError::Conflict) => RefreshOutcome::Conflict,
            Err(AuthorityError::RefreshTooSoon(_)) => RefreshOutcome::RateLimited,
            Err(AuthorityError::BindingMismatch) => RefreshOutcome::BindingMismatch,
            Err(AuthorityError::UserDisabled) => RefreshOutcome::UserDisabled,
            Err(AuthorityError::SessionTooOld) => RefreshOutcome::MaxLifetime,
            Err(_) => RefreshOutcome::Error,
        });
        result.map(|(issued, _)| issued)
    }

    /// The refresh itself; also says how it went, for the metrics.
    async fn rotate(
        &self,
        token: &AccessToken,
        client: Option<ClientContext>,
    ) -> Result<(IssuedSession, RefreshOutcome), AuthorityError> {
        let now = self.now();
        let claims = self.keys.keyring().verify(token, now).map_err(AuthorityError::InvalidToken)?;
        let span = tracing::Span::current();
        span.record("user_id", tracing::field::display(claims.user_id));
        span.record("session_id", tracing::field::display(claims.session_id));

        // The usual case: the presented token is its session's current one,
        // from a client that matches the session's binding, not too soon
        // after the last rotation. The guarded rotation settles all of that
        // by itself (a revoked session, which includes every session of a
        // disabled user, or a retired token does not match it), so try it
        // first and read the session only when it does not match.
        let binding = &self.security.binding;
        let compared = binding.is_active() && client.is_some();
        let audit_client = client.clone().unwrap_or_default();
        let mut rotation =
            self.rotation_of(claims.session_id, claims.user_id, claims.token_id, claims.expires_at, client, now);
        rotation.min_interval = self.security.refresh_min_interval;
        rotation.require_binding = compared.then_some(binding.attributes);
        let presented = rotation.client_binding.as_ref().map(|binding| binding.digest());
        let audit = AuditRecord::new(AuditKind::Refresh, now).from_client(&audit_client).detail("rotated");

        let ticket = self.sessions.ticket(claims.session_id);
        match self.repository.rotate_session(&rotation, &audit).await? {
            RotationResult::Rotated {
                session,
                user,
                revocation,
            } => {
                self.cache_live(ticket, &session);
                self.committed(&[], std::slice::from_ref(&revocation));
                info!(outcome = %RefreshOutcome::Rotated, "token refreshed");
                return Ok((self.issue(session, user.username.as_str(), user.roles.names())?, RefreshOutcome::Rotated));
            }
            RotationResult::UserDisabled => {
                // Disabling revokes every session: say so when it did.
                let revoked = self
                    .repository
                    .find_session(claims.session_id)
                    .await?
                    .is_some_and(|session| session.revoked_at.is_some());
                info!(outcome = %RefreshOutcome::UserDisabled, "refresh refused");
                return Err(if revoked {
                    AuthorityError::SessionRevoked
                } else {
                    AuthorityError::UserDisabled
                });
            }
            RotationResult::NotApplied => {}
        }

        let session = self
            .repository
            .find_session(claims.session_id)
            .await?
            .filter(|session| session.user_id == claims.user_id)
            .ok_or(AuthorityError::UnknownSession)?;
        let now = self.now();
        let mismatch =
            compared && presented.is_some_and(|presented| !binding.matches(session.binding().digest(), presented));
        match session.standing(claims.token_id, now, self.lifetimes.rotation_grace) {
            TokenStanding::Revoked => {
                info!(outcome = %RefreshOutcome::Revoked, "refresh refused");
                Err(AuthorityError::SessionRevoked)
            }
            TokenStanding::RetiredInGrace if mismatch => {
                // The grace period belongs to the client that rotated, under
                // `log` too: handing the live token to another client is
                // exactly what a thief following the rotations needs.
                self.reuse_detected(&session, &audit_client, "a retry within the grace period from another client")
                    .await
            }
            TokenStanding::RetiredInGrace => {
                // A retry, or the loser of a race with a concurrent Refresh:
                // the session's current token, signed again.
                let user = self.repository.find_user(session.user_id).await?.ok_or(AuthorityError::UnknownSession)?;
                if user.disabled {
                    return Err(AuthorityError::UserDisabled);
                }
                info!(outcome = %RefreshOutcome::Retry, "retired token within grace period; returning the current token");
                Ok((self.issue(session, user.username.as_str(), user.roles.names())?, RefreshOutcome::Retry))
            }
            TokenStanding::Retired => {
                self.reuse_detected(&session, &audit_client, "a retired token presented again").await
            }
            TokenStanding::Current => self.refused_rotation(&claims, session, &audit_client, mismatch, rotation).await,
        }
    }

    /// The presented token is current but the guarded rotation did not
    /// match: tell which of its conditions failed.
    async fn refused_rotation(
        &self,
        claims: &TokenClaims,
        session: Session,
        client: &ClientContext,
        mismatch: bool,
        mut rotation: crate::repository::Rotation,
    ) -> Result<(IssuedSession, RefreshOutcome), AuthorityError> {
        let now = self.now();
        if session.created_at.plus(self.security.session_max_lifetime) <= rotation.retired_at {
            info!(outcome = %RefreshOutcome::MaxLifetime, "refresh refused");
            return Err(AuthorityError::SessionTooOld);
        }
        if mismatch {
            if self.security.binding.mode == BindingMode::Enforce {
                self.raise_binding_mismatch(session.user_id, session.id, client, Severity::High, "refresh").await?;
                return Err(AuthorityError::BindingMismatch);
            }
            self.raise_binding_mismatch(session.user_id, session.id, client, Severity::Medium, "refresh")
                .await?;
            // Logged only: rotate as if the binding held (once; a second
            // miss is a concurrent change, and the client retries).
            rotation.require_binding = None;
            let audit = AuditRecord::new(AuditKind::Refresh, now).from_client(client).detail("rotated");
            let ticket = self.sessions.ticket(claims.session_id);
            return match self.repository.rotate_session(&rotation, &audit).await? {
                RotationResult::Rotated {
                    session,
                    user,
                    revocation,
                } => {
                    self.cache_live(ticket, &session);
                    self.committed(&[], std::slice::from_ref(&revocation));
                    Ok((self.issue(session, user.username.as_str(), user.roles.names())?, RefreshOutcome::Rotated))
                }
                RotationResult::UserDisabled => Err(AuthorityError::UserDisabled),
                RotationResult::NotApplied => Err(AuthorityError::Conflict),
            };
        }
        if let (Some(interval), Some(previous)) = (self.security.refresh_min_interval, session.previous_token) {
            let allowed_at = previous.retired_at.plus(interval);
            if allowed_at > rotation.retired_at {
                let record = AuditRecord::security(SecurityEventKind::RefreshLimited, Severity::Medium, now)
                    .user(session.user_id)
                    .session(session.id)
                    .from_client(client)
                    .detail("refresh faster than REFRESH_MIN_INTERVAL");
                if self.raise(record, self.security.revoke_on.refresh_limited).await? {
                    return Err(AuthorityError::SessionRevoked);
                }
                info!(outcome = %RefreshOutcome::RateLimited, "refresh refused");
                return Err(AuthorityError::RefreshTooSoon(rotation.retired_at.until(allowed_at)));
            }
        }
        // Every condition holds now: a concurrent change; the client retries.
        Err(AuthorityError::Conflict)
    }

    /// A retired token came back: theft. Revokes the whole session.
    async fn reuse_detected(
        &self,
        session: &Session,
        client: &ClientContext,
        detail: &'static str,
    ) -> Result<(IssuedSession, RefreshOutcome), AuthorityError> {
        warn!(outcome = %RefreshOutcome::ReuseDetected, detail, "token reuse; revoking the session");
        metrics::reuse_detected();
        let now = self.now();
        let audit = AuditRecord::new(AuditKind::SessionRevoked, now)
            .from_client(client)
            .detail(RevocationReason::ReuseDetected.as_str());
        if let Some((revoked, revocation)) =
            self.repository.revoke_session(session.id, RevocationReason::ReuseDetected, now, &audit).await?
        {
            self.committed(std::slice::from_ref(&revoked), std::slice::from_ref(&revocation));
        }
        let record = AuditRecord::security(SecurityEventKind::ReuseDetected, Severity::High, now)
            .user(session.user_id)
            .session(session.id)
            .from_client(client)
            .detail(detail);
        self.raise(record, false).await?;
        Err(AuthorityError::TokenReused)
    }

    /// Records a binding mismatch; under SESSION_BINDING=enforce with
    /// SECURITY_REVOKE_ON=binding_mismatch, it also revokes the session.
    pub(super) async fn raise_binding_mismatch(
        &self,
        user_id: UserId,
        session_id: SessionId,
        client: &ClientContext,
        severity: Severity,
        during: &'static str,
    ) -> Result<bool, AuthorityError> {
        let record = AuditRecord::security(SecurityEventKind::BindingMismatch, severity, self.now())
            .user(user_id)
            .session(session_id)
            .from_client(client)
            .detail(during);
        let revoke = self.security.binding.mode == BindingMode::Enforce && self.security.revoke_on.binding_mismatch;
        self.raise(record, revoke).await
    }

    /// Whether `presented` matches what the session (`stored`) is bound to.
    pub(super) fn binding_matches(&self, stored: BindingDigest, client: &ClientContext) -> bool {
        let binding = &self.security.binding;
        !binding.is_active() || binding.matches(stored, binding.binding_of(client).digest())
    }
}
