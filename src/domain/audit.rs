//! The audit trail and security events: what happened, to whom, from where,
//! and who acted. Records hold ids, coarse client attributes and a detail
//! from a fixed vocabulary: never a password, a hash, a key or a token.

use std::{fmt, net::IpAddr};

use super::{ClientContext, SessionId, Timestamp, UserId, binding::user_agent_family};

/// Anomalies the authority watches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityEventKind {
    /// A retired token came back (or a retry within the grace period came
    /// from another client, unless SESSION_BINDING=off); the session is revoked.
    ReuseDetected,
    /// A call presented a client that does not match the session's binding.
    BindingMismatch,
    /// A login from a device the user has not logged in from before.
    NewDevice,
    /// A login from a network the user has not logged in from before.
    NewNetwork,
    /// Failed logins for one username hit its throttle.
    FailedLoginsForUser,
    /// Failed logins from one address (across usernames) hit its throttle.
    FailedLoginsFromIp,
    /// Many sessions opened from one address.
    SessionsFromIp,
    /// A session tried to rotate faster than REFRESH_MIN_INTERVAL allows.
    RefreshLimited,
}

impl SecurityEventKind {
    pub const ALL: [Self; 8] = [
        Self::ReuseDetected,
        Self::BindingMismatch,
        Self::NewDevice,
        Self::NewNetwork,
        Self::FailedLoginsForUser,
        Self::FailedLoginsFromIp,
        Self::SessionsFromIp,
        Self::RefreshLimited,
    ];

    /// The stored form; also the metrics label and the setting's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReuseDetected => "reuse_detected",
            Self::BindingMismatch => "binding_mismatch",
            Self::NewDevice => "new_device",
            Self::NewNetwork => "new_network",
            Self::FailedLoginsForUser => "failed_logins_for_user",
            Self::FailedLoginsFromIp => "failed_logins_from_ip",
            Self::SessionsFromIp => "sessions_from_ip",
            Self::RefreshLimited => "refresh_limited",
        }
    }

    pub fn from_stored(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == value)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }

    pub fn from_stored(value: &str) -> Option<Self> {
        [Self::Low, Self::Medium, Self::High].into_iter().find(|severity| severity.as_str() == value)
    }
}

/// What an audit record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditKind {
    Login,
    LoginFailed,
    Refresh,
    Logout,
    LogoutAll,
    PasswordChanged,
    /// A session revoked by an operator, by reuse detection or by a security action.
    SessionRevoked,
    UserCreated,
    UserDisabled,
    UserEnabled,
    RolesChanged,
    Security(SecurityEventKind),
}

impl AuditKind {
    const PLAIN: [Self; 11] = [
        Self::Login,
        Self::LoginFailed,
        Self::Refresh,
        Self::Logout,
        Self::LogoutAll,
        Self::PasswordChanged,
        Self::SessionRevoked,
        Self::UserCreated,
        Self::UserDisabled,
        Self::UserEnabled,
        Self::RolesChanged,
    ];

    pub fn all() -> impl Iterator<Item = Self> {
        Self::PLAIN.into_iter().chain(SecurityEventKind::ALL.into_iter().map(Self::Security))
    }

    /// The stored form: `login`, ..., `security.reuse_detected`.
    pub fn as_string(self) -> String {
        match self {
            Self::Security(kind) => format!("security.{}", kind.as_str()),
            plain => plain.plain_name().to_owned(),
        }
    }

    fn plain_name(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::LoginFailed => "login_failed",
            Self::Refresh => "refresh",
            Self::Logout => "logout",
            Self::LogoutAll => "logout_all",
            Self::PasswordChanged => "password_changed",
            Self::SessionRevoked => "session_revoked",
            Self::UserCreated => "user_created",
            Self::UserDisabled => "user_disabled",
            Self::UserEnabled => "user_enabled",
            Self::RolesChanged => "roles_changed",
            Self::Security(_) => "security",
        }
    }

    pub fn from_stored(value: &str) -> Option<Self> {
        match value.strip_prefix("security.") {
            Some(kind) => SecurityEventKind::from_stored(kind).map(Self::Security),
            None => Self::PLAIN.into_iter().find(|kind| kind.plain_name() == value),
        }
    }
}

/// Who acted, when it was not the user: an operator (by the name of their
/// admin key or client certificate, never the key) or the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(String);

impl Actor {
    /// An admin key's or admin client certificate's name.
    pub fn admin(name: &str) -> Self {
        Self(format!("admin:{name}"))
    }

    pub fn command_line() -> Self {
        Self("cli".into())
    }

    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the end user was, as recorded: the address, the coarse user-agent
/// family (not the whole string) and the device id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditClient {
    pub ip_address: Option<IpAddr>,
    pub user_agent_family: Option<String>,
    pub device_id: Option<String>,
}

impl From<&ClientContext> for AuditClient {
    fn from(client: &ClientContext) -> Self {
        Self {
            ip_address: client.ip_address,
            user_agent_family: client.user_agent.as_deref().map(user_agent_family),
            device_id: client.device_id.clone(),
        }
    }
}

/// One record of the audit trail, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub kind: AuditKind,
    pub occurred_at: Timestamp,
    pub actor: Option<Actor>,
    pub user_id: Option<UserId>,
    pub session_id: Option<SessionId>,
    pub client: AuditClient,
    /// From a fixed vocabulary (an outcome, a reason, a count).
    pub detail: Option<String>,
    /// Set for security events.
    pub severity: Option<Severity>,
}

impl AuditRecord {
    pub fn new(kind: AuditKind, occurred_at: Timestamp) -> Self {
        Self {
            kind,
            occurred_at,
            actor: None,
            user_id: None,
            session_id: None,
            client: AuditClient::default(),
            detail: None,
            severity: None,
        }
    }

    pub fn security(kind: SecurityEventKind, severity: Severity, occurred_at: Timestamp) -> Self {
        Self {
            severity: Some(severity),
            ..Self::new(AuditKind::Security(kind), occurred_at)
        }
    }

    pub fn by(mut self, actor: Option<Actor>) -> Self {
        self.actor = actor;
        self
    }

    pub fn user(mut self, user_id: UserId) -> Self {
        self.user_id = Some(user_id);
        self
    }

    pub fn session(mut self, session_id: SessionId) -> Self {
        self.session_id = Some(session_id);
        self
    }

    pub fn from_client(mut self, client: &ClientContext) -> Self {
        self.client = AuditClient::from(client);
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The security event this record is, if any.
    pub fn security_kind(&self) -> Option<SecurityEventKind> {
        match self.kind {
            AuditKind::Security(kind) => Some(kind),
            _ => None,
        }
    }
}

/// A record as stored: with its place in the trail, and for a security
/// event its place in the security stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub security_cursor: Option<u64>,
    pub record: AuditRecord,
}

/// A page of the audit trail: newest first, every filter optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub user_id: Option<UserId>,
    pub session_id: Option<SessionId>,
    /// Any of these kinds; empty: every kind.
    pub kinds: Vec<AuditKind>,
    /// From this time on (inclusive).
    pub since: Option<Timestamp>,
    /// Before this time (exclusive).
    pub until: Option<Timestamp>,
    /// Records older than this id (the previous page's last): the page token.
    pub before_id: Option<i64>,
    pub limit: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_stored_form() {
        for kind in AuditKind::all() {
            assert_eq!(AuditKind::from_stored(&kind.as_string()), Some(kind), "{kind:?}");
        }
        assert_eq!(AuditKind::Security(SecurityEventKind::NewDevice).as_string(), "security.new_device");
        assert_eq!(AuditKind::from_stored("security.bogus"), None);
        assert_eq!(AuditKind::from_stored("security"), None);
    }

    #[test]
    fn the_client_is_recorded_coarsely() {
        let client =
            ClientContext::parse("203.0.113.7", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", "laptop").unwrap();
        let recorded = AuditClient::from(&client);
        assert_eq!(recorded.user_agent_family.as_deref(), Some("Firefox on Linux"));
        assert_eq!(recorded.device_id.as_deref(), Some("laptop"));
    }
}
