//! Sessions and the rules of their tokens: lifetimes, when to refresh, and
//! whether a presented token is the current one, a retry within the rotation
//! grace period, or a retired token coming back (reuse).

use std::time::Duration;

use super::{
    ClientContext, RevocationReason, SessionId, Timestamp, TokenId, UserId,
    binding::{BindingDigest, BindingPolicy, ClientBinding},
};

/// How long tokens live and when clients should refresh them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLifetimes {
    pub standard: Duration,
    pub remember_me: Duration,
    /// Clients are told to refresh within this long before expiry.
    pub refresh_window: Duration,
    /// A retired token still works this long after its rotation, so a client
    /// that lost the Refresh reply can retry instead of being logged out.
    pub rotation_grace: Duration,
}

impl TokenLifetimes {
    pub fn lifetime(&self, remember_me: bool) -> Duration {
        if remember_me { self.remember_me } else { self.standard }
    }

    pub fn needs_refresh(&self, expires_at: Timestamp, now: Timestamp) -> bool {
        now >= expires_at.minus(self.refresh_window)
    }
}

/// A token replaced by the last rotation, remembered for the grace period
/// and to recognise its reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetiredToken {
    pub id: TokenId,
    pub retired_at: Timestamp,
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    pub created_at: Timestamp,
    /// When the current token was issued (login or last rotation).
    pub refreshed_at: Timestamp,
    /// When the current token expires; no token of the session lives longer.
    pub expires_at: Timestamp,
    pub remember_me: bool,
    pub client: ClientContext,
    pub current_token_id: TokenId,
    pub previous_token: Option<RetiredToken>,
    pub revoked_at: Option<Timestamp>,
    pub revoke_reason: Option<RevocationReason>,
    /// Grows with every change, so a cache can tell newer from older.
    pub version: i64,
    /// The current token's generation (its `gen` claim): 0 at login, one
    /// more with each rotation.
    pub generation: u64,
    /// The client's network prefix and user-agent family, as the binding
    /// compares them (with `client.device_id`).
    pub ip_network: Option<String>,
    pub user_agent_family: Option<String>,
}

impl Session {
    /// A session that has just been opened by a login.
    pub fn open(
        user_id: UserId,
        remember_me: bool,
        client: ClientContext,
        lifetimes: &TokenLifetimes,
        now: Timestamp,
    ) -> Self {
        // Whole seconds: the stored times must equal the token's claims.
        let now = now.truncated_to_seconds();
        Self {
            id: SessionId::generate(),
            user_id,
            created_at: now,
            refreshed_at: now,
            expires_at: now.plus(lifetimes.lifetime(remember_me)),
            remember_me,
            client,
            current_token_id: TokenId::generate(),
            previous_token: None,
            revoked_at: None,
            revoke_reason: None,
            version: 1,
            generation: 0,
            ip_network: None,
            user_agent_family: None,
        }
    }

    /// Records the binding values of the session's client under `policy`.
    pub fn bound_by(mut self, policy: &BindingPolicy) -> Self {
        let binding = policy.binding_of(&self.client);
        self.ip_network = binding.network;
        self.user_agent_family = binding.user_agent_family;
        self
    }

    /// What the session is bound to.
    pub fn binding(&self) -> ClientBinding {
        ClientBinding {
            device_id: self.client.device_id.clone(),
            network: self.ip_network.clone(),
            user_agent_family: self.user_agent_family.clone(),
        }
    }

    pub fn state(&self) -> SessionState {
        SessionState {
            id: self.id,
            user_id: self.user_id,
            current_token_id: self.current_token_id,
            current_issued_at: self.refreshed_at,
            expires_at: self.expires_at,
            previous_token: self.previous_token,
            revoked: self.revoked_at.is_some(),
            version: self.version,
            binding: self.binding().digest(),
        }
    }

    pub fn standing(&self, token_id: TokenId, now: Timestamp, grace: Duration) -> TokenStanding {
        self.state().standing(token_id, now, grace)
    }
}

/// What Verify needs to know of a session: small and `Copy`, so a cache of
/// many of them stays cheap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionState {
    pub id: SessionId,
    pub user_id: UserId,
    pub current_token_id: TokenId,
    pub current_issued_at: Timestamp,
    pub expires_at: Timestamp,
    pub previous_token: Option<RetiredToken>,
    pub revoked: bool,
    pub version: i64,
    /// What the session is bound to, for a Verify that passes a client.
    pub binding: BindingDigest,
}

/// Where a presented token stands within its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStanding {
    Current,
    /// Retired by the last rotation, less than the grace period ago.
    RetiredInGrace,
    /// Retired, and past the grace period (or more than one rotation ago).
    Retired,
    Revoked,
}

impl SessionState {
    pub fn standing(&self, token_id: TokenId, now: Timestamp, grace: Duration) -> TokenStanding {
        if self.revoked {
            return TokenStanding::Revoked;
        }
        if token_id == self.current_token_id {
            return TokenStanding::Current;
        }
        match self.previous_token {
            Some(previous) if previous.id == token_id && now <= previous.retired_at.plus(grace) => {
                TokenStanding::RetiredInGrace
            }
            _ => TokenStanding::Retired,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn lifetimes() -> TokenLifetimes {
        TokenLifetimes {
            standard: 24 * HOUR,
            remember_me: 30 * 24 * HOUR,
            refresh_window: 2 * HOUR,
            rotation_grace: Duration::from_secs(10),
        }
    }

    #[test]
    fn remember_me_lives_longer() {
        let now = Timestamp::from_millis(1_000_500);
        let session = Session::open(UserId::generate(), true, ClientContext::default(), &lifetimes(), now);
        assert_eq!(session.created_at.as_millis(), 1_000_000);
        assert_eq!(session.created_at.until(session.expires_at), 30 * 24 * HOUR);
    }

    #[test]
    fn refresh_window_is_the_last_two_hours() {
        let expires_at = Timestamp::from_millis(100 * 3_600_000);
        let lifetimes = lifetimes();
        assert!(!lifetimes.needs_refresh(expires_at, expires_at.minus(2 * HOUR + Duration::from_secs(1))));
        assert!(lifetimes.needs_refresh(expires_at, expires_at.minus(2 * HOUR)));
    }

    #[test]
    fn standing_of_current_retired_and_revoked_tokens() {
        let now = Timestamp::from_millis(50_000_000);
        let mut session = Session::open(UserId::generate(), false, ClientContext::default(), &lifetimes(), now);
        let first = session.current_token_id;
        let grace = Duration::from_secs(10);
        assert_eq!(session.standing(first, now, grace), TokenStanding::Current);

        session.previous_token = Some(RetiredToken {
            id: first,
            retired_at: now,
        });
        session.current_token_id = TokenId::generate();
        assert_eq!(session.standing(first, now.plus(grace), grace), TokenStanding::RetiredInGrace);
        assert_eq!(session.standing(first, now.plus(grace + Duration::from_millis(1)), grace), TokenStanding::Retired);
        assert_eq!(session.standing(TokenId::generate(), now, grace), TokenStanding::Retired);

        session.revoked_at = Some(now);
        assert_eq!(session.standing(session.current_token_id, now, grace), TokenStanding::Revoked);
    }
}
