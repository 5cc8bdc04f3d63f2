//! Login: check the password, open a session, issue its first token.

use tracing::{info, warn};

use super::{Authority, AuthorityError, IssuedSession};
use crate::{
    domain::{ClientContext, Password, Session, Timestamp, Username},
    metrics,
};

pub struct LoginRequest {
    pub username: Username,
    pub password: Password,
    pub remember_me: bool,
    pub client: ClientContext,
}

impl Authority {
    #[tracing::instrument(name = "login", skip_all, fields(user_id, session_id))]
    pub async fn login(&self, request: LoginRequest) -> Result<IssuedSession, AuthorityError> {
        if let Err(retry_after) = self.throttle.check(&request.username.key()) {
            info!(outcome = "throttled", "login refused: too many attempts for this username");
            metrics::login("throttled");
            return Err(AuthorityError::TooManyAttempts(retry_after));
        }
        let user = self.repository.find_user_by_username(&request.username).await?;
        // Always one argon2 verification, against a dummy hash for unknown
        // users, so response times do not reveal which usernames exist.
        let stored_hash = user.as_ref().map(|user| user.password_hash.clone());
        let check = self.passwords.verify(request.password.clone(), stored_hash).await?;
        let user = match user {
            None => {
                // The username is not logged: people type passwords into it.
                info!(outcome = "unknown_user", "login failed");
                metrics::login("unknown_user");
                return Err(AuthorityError::InvalidCredentials);
            }
            Some(user) if !check.matches || user.disabled => {
                tracing::Span::current().record("user_id", tracing::field::display(user.id));
                let outcome = if check.matches {
                    "user_disabled"
                } else {
                    "wrong_password"
                };
                info!(outcome, "login failed");
                metrics::login(outcome);
                return Err(AuthorityError::InvalidCredentials);
            }
            Some(user) => user,
        };
        tracing::Span::current().record("user_id", tracing::field::display(user.id));

        if check.needs_rehash {
            // The password is known right now: the one chance to upgrade its hash.
            let new_hash = self.passwords.hash(request.password).await?;
            if let Err(error) = self.repository.upgrade_password_hash(user.id, &user.password_hash, new_hash).await {
                warn!(error = %error, "could not store the upgraded password hash; will retry at next login");
            } else {
                info!("password hash upgraded to the configured argon2 parameters");
            }
        }

        let session = Session::open(user.id, request.remember_me, request.client, &self.lifetimes, Timestamp::now());
        let ticket = self.sessions.ticket(session.id);
        self.repository.insert_session(&session).await?;
        tracing::Span::current().record("session_id", tracing::field::display(session.id));
        self.cache_live(ticket, &session);
        info!(remember_me = session.remember_me, outcome = "ok", "login succeeded");
        metrics::login("ok");
        self.issue(session, user.username.as_str(), user.roles.names())
    }
}
