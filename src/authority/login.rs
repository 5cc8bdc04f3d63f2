//! Login: take an attempt from the throttle, check the password, open a
//! session, issue its first token; and watch for anomalies on the way.

use secrecy::SecretString;
use tracing::{info, warn};

use super::{Authority, AuthorityError, IssuedSession, pauses};
use crate::{
    domain::{
        ClientContext, Password, Session, UserId, Username,
        audit::{AuditKind, AuditRecord, SecurityEventKind, Severity},
        throttle::{ThrottleScope, ThrottleTake, ThrottleVerdict},
    },
    metrics::{self, LoginOutcome},
    repository::{LoginNotices, LoginWrites},
};

pub struct LoginRequest {
    pub username: Username,
    pub password: Password,
    pub remember_me: bool,
    pub client: ClientContext,
}

/// Counts and logs a login that did not open a session.
fn refused(outcome: LoginOutcome) {
    info!(%outcome, "login failed");
    metrics::login(outcome);
}

impl Authority {
    #[tracing::instrument(name = "login", skip_all, fields(user_id, session_id))]
    pub async fn login(&self, request: LoginRequest) -> Result<IssuedSession, AuthorityError> {
        let now = self.now();
        let user = self.repository.find_user_by_username(&request.username).await?;
        let takes = self.throttle_takes(&request.username, user.as_ref().map(|user| user.id), &request.client).await?;
        if let ThrottleVerdict::Refused { scope, retry_after } = self.repository.take_attempt(&takes, now).await? {
            refused(LoginOutcome::Throttled);
            self.raise_throttled(scope, user.as_ref().map(|user| user.id), &request.client).await;
            return Err(AuthorityError::TooManyAttempts(retry_after));
        }
        // Always one argon2 verification, against a dummy hash for unknown
        // users, so response times do not reveal which usernames exist.
        let stored_hash = user.as_ref().map(|user| user.password_hash.clone());
        let check = match self.passwords.verify(request.password.clone(), stored_hash).await {
            Ok(check) => check,
            Err(error) => {
                // No password was checked: the attempt does not count.
                if let Err(error) = self.repository.give_back_attempts(&takes).await {
                    warn!(error = %error, "could not give back a throttle attempt");
                }
                return Err(error);
            }
        };
        let failure = |outcome: LoginOutcome, user_id: Option<UserId>| {
            let mut record = AuditRecord::new(AuditKind::LoginFailed, now)
                .from_client(&request.client)
                .detail(outcome.to_string());
            record.user_id = user_id;
            record
        };
        let user = match user {
            None => {
                // The username is not logged nor recorded: people type passwords into it.
                refused(LoginOutcome::UnknownUser);
                self.repository.append_audit(&failure(LoginOutcome::UnknownUser, None)).await?;
                return Err(AuthorityError::InvalidCredentials);
            }
            Some(user) if !check.matches || user.disabled => {
                tracing::Span::current().record("user_id", tracing::field::display(user.id));
                let outcome = if check.matches {
                    LoginOutcome::UserDisabled
                } else {
                    LoginOutcome::WrongPassword
                };
                refused(outcome);
                self.repository.append_audit(&failure(outcome, Some(user.id))).await?;
                return Err(AuthorityError::InvalidCredentials);
            }
            Some(user) => user,
        };
        tracing::Span::current().record("user_id", tracing::field::display(user.id));

        // The hash the password was checked against: the session is opened
        // only if it is still the stored one when the write commits.
        let mut verified_hash = user.password_hash.clone();
        if check.needs_rehash {
            // The password is known right now: the one chance to upgrade its hash.
            let new_hash = self.passwords.hash(request.password).await?;
            match self.repository.upgrade_password_hash(user.id, &user.password_hash, new_hash.clone()).await {
                Ok(true) => {
                    info!("password hash upgraded to the configured argon2 parameters");
                    verified_hash = SecretString::from(new_hash);
                }
                // The password changed meanwhile: opening the session fails below.
                Ok(false) => {}
                Err(error) => {
                    warn!(error = %error, "could not store the upgraded password hash; will retry at next login")
                }
            }
        }
        pauses::at(&self.pauses.login_after_password_check).await;

        let session = Session::open(user.id, request.remember_me, request.client, &self.lifetimes, self.now())
            .bound_by(&self.security.binding);
        let audit = AuditRecord::new(AuditKind::Login, session.created_at)
            .from_client(&session.client)
            .detail(if session.remember_me { "remember_me" } else { "standard" });
        let sessions_from = self.security.throttle.sessions_from(session.client.ip_address);
        let ticket = self.sessions.ticket(session.id);
        let writes = LoginWrites {
            audit: &audit,
            device_id: session.client.device_id.as_deref(),
            network: session.ip_network.as_deref(),
            give_back: &takes,
            sessions_from: sessions_from.as_ref(),
        };
        let Some(notices) = self.repository.open_session(&session, &verified_hash, writes).await? else {
            // Disabled, or the password changed, after the check: the
            // answer is the same as for a wrong password, and the attempt
            // keeps counting against the throttle.
            refused(LoginOutcome::UserChanged);
            let record = AuditRecord::new(AuditKind::LoginFailed, now)
                .user(user.id)
                .from_client(&session.client)
                .detail(LoginOutcome::UserChanged.to_string());
            self.repository.append_audit(&record).await?;
            return Err(AuthorityError::InvalidCredentials);
        };
        tracing::Span::current().record("session_id", tracing::field::display(session.id));
        self.cache_live(ticket, &session);
        info!(remember_me = session.remember_me, outcome = %LoginOutcome::Ok, "login succeeded");
        metrics::login(LoginOutcome::Ok);
        self.raise_login_notices(notices, &session).await;
        self.issue(session, user.username.as_str(), user.roles.names())
    }

    /// The throttle keys a password check for `username` from `client`
    /// counts against. A network the user has logged in from before is
    /// spared the per-username key.
    pub(super) async fn throttle_takes(
        &self,
        username: &Username,
        user_id: Option<UserId>,
        client: &ClientContext,
    ) -> Result<Vec<ThrottleTake>, AuthorityError> {
        let policy = &self.security.throttle;
        let known_network = match (user_id, client.ip_address) {
            (Some(user_id), Some(ip)) if policy.per_user.is_some() => {
                self.repository.is_known_network(user_id, &self.security.binding.network(ip)).await?
            }
            _ => false,
        };
        Ok(policy.takes(&username.key(), client.ip_address, known_network))
    }

    /// A burst of failed logins hit the throttle: a security event about the
    /// user (never the typed username) or the address.
    pub(super) async fn raise_throttled(&self, scope: ThrottleScope, user_id: Option<UserId>, client: &ClientContext) {
        let kind = match scope {
            ThrottleScope::Ip => SecurityEventKind::FailedLoginsFromIp,
            _ => SecurityEventKind::FailedLoginsForUser,
        };
        let mut record = AuditRecord::security(kind, Severity::Medium, self.now()).from_client(client);
        if kind == SecurityEventKind::FailedLoginsForUser {
            record.user_id = user_id;
        }
        // Never revokes, so it cannot fail the call.
        let _ = self.raise(record, false).await;
    }

    async fn raise_login_notices(&self, notices: LoginNotices, session: &Session) {
        let event = |kind, severity, detail: &str| {
            AuditRecord::security(kind, severity, session.created_at)
                .user(session.user_id)
                .session(session.id)
                .from_client(&session.client)
                .detail(detail)
        };
        let mut events = Vec::new();
        if notices.new_device {
            events.push(event(SecurityEventKind::NewDevice, Severity::Low, "login from a device new to the user"));
        }
        if notices.new_network {
            events.push(event(SecurityEventKind::NewNetwork, Severity::Low, "login from a network new to the user"));
        }
        if notices.many_sessions_from_ip {
            let mut record = event(
                SecurityEventKind::SessionsFromIp,
                Severity::Medium,
                "more sessions from this address than SECURITY_SESSIONS_PER_IP",
            );
            // About the address, not one user.
            record.user_id = None;
            record.session_id = None;
            events.push(record);
        }
        for record in events {
            // Never revokes, so it cannot fail the call.
            let _ = self.raise(record, false).await;
        }
    }
}
