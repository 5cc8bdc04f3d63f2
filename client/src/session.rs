//! [`SessionHandle`]: a backend-for-frontend's hold on one user's session.
//!
//! The backend keeps the user's token (the browser holds only a cookie that
//! names the handle) and asks the handle for the token on each request. The
//! handle refreshes it when it enters its refresh window, once however many
//! requests ask at the same moment, and says when the session is over.

use std::{
    fmt,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime},
};

use tonic::Code;

use crate::{AccessToken, Client, Clock, Error, Login, Reason, SystemClock, VerifyError};

/// When a handle refreshes, and how it retries a refresh whose answer was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Refresh once the token has less than this left: the authority's
    /// JWT_REFRESH_WINDOW (2 hours by default).
    pub refresh_window: Duration,
    /// The authority's JWT_ROTATION_GRACE (10 seconds by default). A refresh
    /// that failed without an answer (UNAVAILABLE, deadline) may have gone
    /// through; sent again within this period with the same token, the
    /// authority answers with the same successor. Sent later, the same token
    /// counts as stolen and the session is revoked: so the handle retries
    /// only while the period since its first attempt, plus the next delay,
    /// has not run out.
    pub rotation_grace: Duration,
    /// The wait between two attempts at a refresh.
    pub retry_delay: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            refresh_window: Duration::from_secs(2 * 60 * 60),
            rotation_grace: Duration::from_secs(10),
            retry_delay: Duration::from_millis(500),
        }
    }
}

/// Why a session is over. Once over, a handle stays over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoggedOut {
    /// [`SessionHandle::logout`] ended it.
    Ended,
    /// The token expired before it could be refreshed.
    Expired,
    /// The authority revoked the session: a logout elsewhere, an operator,
    /// a password change, the user disabled, or a retired token presented
    /// again (token reuse, taken for theft).
    Revoked,
    /// The authority refused the token for another reason (as Verify gave
    /// it, when it could be asked).
    Refused(Option<Reason>),
}

impl fmt::Display for LoggedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ended => f.write_str("logged out"),
            Self::Expired => f.write_str("session expired"),
            Self::Revoked => f.write_str("session revoked"),
            Self::Refused(Some(reason)) => write!(f, "session token refused: {reason}"),
            Self::Refused(None) => f.write_str("session token refused"),
        }
    }
}

impl std::error::Error for LoggedOut {}

/// What [`SessionHandle::check`] and [`SessionHandle::logout`] can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    LoggedOut(#[from] LoggedOut),
    /// The authority could not be asked.
    #[error("the token authority cannot be reached")]
    Unavailable(#[source] Error),
}

/// One user's session, held by a backend. Cheap to clone: clones share the
/// session (and its single-flight refresh).
#[derive(Clone)]
pub struct SessionHandle {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    policy: SessionPolicy,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    /// Held by the one caller that refreshes; the others wait for its result.
    refreshing: tokio::sync::Mutex<()>,
}

struct State {
    token: AccessToken,
    expires_at: SystemTime,
    logged_out: Option<LoggedOut>,
    /// After a refresh that failed, the next one waits until then.
    next_attempt: Option<SystemTime>,
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("SessionHandle")
            .field("expires_at", &state.expires_at)
            .field("logged_out", &state.logged_out)
            .finish_non_exhaustive()
    }
}

impl SessionHandle {
    /// Holds the session a login opened.
    pub fn from_login(client: Client, login: &Login, policy: SessionPolicy) -> Self {
        Self::new(client, login.access_token.clone(), login.expires_at, policy)
    }

    /// Holds a session whose token the backend kept (across its own restart).
    pub fn new(client: Client, token: AccessToken, expires_at: SystemTime, policy: SessionPolicy) -> Self {
        Self::with_clock(client, token, expires_at, policy, SystemClock)
    }

    /// As [`SessionHandle::new`], reading the time from `clock` (tests pass
    /// the authority's manual clock, so that the refresh window is reached
    /// without waiting for it).
    pub fn with_clock(
        client: Client,
        token: AccessToken,
        expires_at: SystemTime,
        policy: SessionPolicy,
        clock: impl Clock,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                policy,
                clock: Arc::new(clock),
                state: Mutex::new(State {
                    token,
                    expires_at,
                    logged_out: None,
                    next_attempt: None,
                }),
                refreshing: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The token to send on the user's behalf. Refreshes it first when it is
    /// in its refresh window: one refresh, however many callers ask at once.
    /// If the refresh cannot be done right now (the authority is down), the
    /// current token is returned while it is still valid, and the refresh is
    /// tried again after `retry_delay`.
    pub async fn access_token(&self) -> Result<AccessToken, LoggedOut> {
        if let Some(token) = self.usable_without_refresh()? {
            return Ok(token);
        }
        let _refreshing = self.inner.refreshing.lock().await;
        // Whoever held the lock before may have refreshed already.
        if let Some(token) = self.usable_without_refresh()? {
            return Ok(token);
        }
        self.refresh_locked().await
    }

    /// The current token and its expiry, to keep (in the backend's session
    /// store) after a refresh.
    pub fn current(&self) -> (AccessToken, SystemTime) {
        let state = self.state();
        (state.token.clone(), state.expires_at)
    }

    /// Why the session is over, if it is.
    pub fn logged_out(&self) -> Option<LoggedOut> {
        self.state().logged_out
    }

    /// Asks the authority (Verify) whether the session still stands, for a
    /// backend told 401 by a service: a revoked session is over at once.
    pub async fn check(&self) -> Result<(), SessionError> {
        let token = self.access_token().await?;
        match self.inner.client.verify(token.as_str()).await {
            Ok(_) => Ok(()),
            Err(VerifyError::Invalid(reason)) => Err(self.end(logged_out_by(reason)).into()),
            Err(VerifyError::Unavailable(error)) => Err(SessionError::Unavailable(error)),
        }
    }

    /// Ends the session at the authority (retried on UNAVAILABLE: logging
    /// out twice is harmless), and here.
    pub async fn logout(&self) -> Result<(), SessionError> {
        let _refreshing = self.inner.refreshing.lock().await;
        let token = self.state().token.clone();
        if let Some(cause) = self.state().logged_out {
            return Err(cause.into());
        }
        self.inner.client.logout(&token).await.map_err(SessionError::Unavailable)?;
        self.end(LoggedOut::Ended);
        Ok(())
    }

    /// The token, unless the session is over or the token should be refreshed now.
    fn usable_without_refresh(&self) -> Result<Option<AccessToken>, LoggedOut> {
        let now = self.inner.clock.now();
        let mut state = self.state();
        if let Some(cause) = state.logged_out {
            return Err(cause);
        }
        if now >= state.expires_at {
            state.logged_out = Some(LoggedOut::Expired);
            return Err(LoggedOut::Expired);
        }
        let in_window = now + self.inner.policy.refresh_window >= state.expires_at;
        let backing_off = state.next_attempt.is_some_and(|next| now < next);
        Ok((!in_window || backing_off).then(|| state.token.clone()))
    }

    /// Refreshes, holding the single-flight lock.
    async fn refresh_locked(&self) -> Result<AccessToken, LoggedOut> {
        let policy = self.inner.policy;
        let token = self.state().token.clone();
        let first_attempt = Instant::now();
        loop {
            let failure = match self.inner.client.refresh(&token, None).await {
                Ok(refreshed) => {
                    let mut state = self.state();
                    state.token = refreshed.access_token.clone();
                    state.expires_at = refreshed.expires_at;
                    state.next_attempt = None;
                    return Ok(refreshed.access_token);
                }
                Err(error) => error,
            };
            if failure.code() == Some(Code::Unauthenticated) {
                let cause = self.cause(&token).await;
                tracing::info!(%cause, "session over: the authority refused to refresh its token");
                return Err(self.end(cause));
            }
            let retry_fits_in_grace = first_attempt.elapsed() + policy.retry_delay < policy.rotation_grace;
            if failure.is_transient() && retry_fits_in_grace {
                // The refresh may have gone through and only its answer been
                // lost: within the grace period the same token gets the same
                // successor back.
                tokio::time::sleep(policy.retry_delay).await;
                continue;
            }
            tracing::warn!(error = %failure, "cannot refresh the session's token now; keeping the current one");
            let mut state = self.state();
            state.next_attempt = Some(self.inner.clock.now() + policy.retry_delay);
            if self.inner.clock.now() >= state.expires_at {
                state.logged_out = Some(LoggedOut::Expired);
                return Err(LoggedOut::Expired);
            }
            return Ok(state.token.clone());
        }
    }

    /// Why the authority refused to refresh `token`, as Verify tells it.
    async fn cause(&self, token: &AccessToken) -> LoggedOut {
        match self.inner.client.verify(token.as_str()).await {
            Err(VerifyError::Invalid(reason)) => logged_out_by(reason),
            Ok(_) | Err(VerifyError::Unavailable(_)) => LoggedOut::Refused(None),
        }
    }

    /// Marks the session over (the first cause stays); returns the cause.
    fn end(&self, cause: LoggedOut) -> LoggedOut {
        *self.state().logged_out.get_or_insert(cause)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is consistent after every assignment: a panic elsewhere
        // while it was held leaves nothing half-written.
        self.inner.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn logged_out_by(reason: Reason) -> LoggedOut {
    match reason {
        Reason::Revoked => LoggedOut::Revoked,
        Reason::Expired => LoggedOut::Expired,
        other => LoggedOut::Refused(Some(other)),
    }
}
