//! Login: check the password, open a session, issue its first token.

use secrecy::SecretString;
use tracing::{info, warn};

use super::{Authority, AuthorityError, IssuedSession, pauses};
use crate::{
    domain::{ClientContext, Password, Session, Username},
    metrics::{self, LoginOutcome},
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
        if let Err(retry_after) = self.throttle.check(&request.username.key()) {
            refused(LoginOutcome::Throttled);
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
                refused(LoginOutcome::UnknownUser);
                return Err(AuthorityError::InvalidCredentials);
            }
            Some(user) if !check.matches || user.disabled => {
                tracing::Span::current().record("user_id", tracing::field::display(user.id));
                refused(if check.matches {
                    LoginOutcome::UserDisabled
                } else {
                    LoginOutcome::WrongPassword
                });
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

        let session = Session::open(user.id, request.remember_me, request.client, &self.lifetimes, self.now());
        let ticket = self.sessions.ticket(session.id);
        if !self.repository.open_session(&session, &verified_hash).await? {
            // Disabled, or the password changed, after the check: the
            // answer is the same as for a wrong password.
            refused(LoginOutcome::UserChanged);
            return Err(AuthorityError::InvalidCredentials);
        }
        tracing::Span::current().record("session_id", tracing::field::display(session.id));
        self.cache_live(ticket, &session);
        info!(remember_me = session.remember_me, outcome = %LoginOutcome::Ok, "login succeeded");
        metrics::login(LoginOutcome::Ok);
        self.issue(session, user.username.as_str(), user.roles.names())
    }
}
