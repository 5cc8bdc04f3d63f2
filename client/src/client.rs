//! [`Client`]: the authority's gRPC API behind a small typed surface, with
//! TLS or mutual TLS, the service key on every call, a deadline on every
//! call, and retries of the calls that are safe to repeat.

use std::{future::Future, time::Duration, time::SystemTime};

use secrecy::{ExposeSecret, SecretString};
use tonic::{
    Code, Request, Response, Status, Streaming,
    metadata::AsciiMetadataValue,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

use crate::{
    AccessToken, Claims, Error, Reason, VerifyError,
    proto::{self, token_authority_client::TokenAuthorityClient},
};

/// How long one call may take, unless [`ClientBuilder::timeout`] says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Backoff between attempts of a call that is safe to retry. Each attempt
/// waits a random time between half and all of its backoff (jitter, so that
/// a fleet of services does not retry in step), and backoffs double up to
/// `max_backoff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 turns retries off.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// One attempt per call.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// How long to wait after failed attempt number `attempt` (from 1).
    fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(16);
        let ceiling = self.initial_backoff.saturating_mul(1 << doublings).min(self.max_backoff);
        let mut random = [0u8; 4];
        // Without randomness the wait is simply the ceiling: still bounded.
        let fraction = match getrandom::fill(&mut random) {
            Ok(()) => f64::from(u32::from_le_bytes(random)) / f64::from(u32::MAX),
            Err(_) => 1.0,
        };
        ceiling.mul_f64(0.5 + fraction / 2.0)
    }
}

/// Whether a call may be sent again after `UNAVAILABLE`. `UNAVAILABLE` can
/// come after the authority acted (the answer was lost), so only calls whose
/// repetition changes nothing are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    Safe,
    Never,
}

/// Who the end user is talking from, as the calling backend sees it; stored
/// on the session so that users and operators recognise their sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientContext {
    pub ip_address: String,
    pub user_agent: String,
    pub device_id: String,
}

impl From<ClientContext> for proto::ClientContext {
    fn from(context: ClientContext) -> Self {
        Self {
            ip_address: context.ip_address,
            user_agent: context.user_agent,
            device_id: context.device_id,
        }
    }
}

/// A session opened by [`Client::login`].
#[derive(Debug, Clone)]
pub struct Login {
    pub access_token: AccessToken,
    pub expires_at: SystemTime,
    pub user_id: String,
    pub session_id: String,
}

/// The successor of a refreshed (or password-changed) token.
#[derive(Debug, Clone)]
pub struct Refreshed {
    pub access_token: AccessToken,
    pub expires_at: SystemTime,
}

/// One of a user's live sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub session_id: String,
    pub created_at: Option<SystemTime>,
    pub last_refreshed_at: Option<SystemTime>,
    pub expires_at: Option<SystemTime>,
    pub remember_me: bool,
    pub ip_address: String,
    pub user_agent: String,
    pub device_id: String,
    /// The session of the token that asked.
    pub current: bool,
}

/// Settings of a [`Client`]; see [`Client::builder`].
#[derive(Debug)]
pub struct ClientBuilder {
    url: String,
    ca_certificate: Option<Vec<u8>>,
    native_roots: bool,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    domain: Option<String>,
    service_key: Option<SecretString>,
    timeout: Duration,
    connect_timeout: Duration,
    retry: RetryPolicy,
}

impl ClientBuilder {
    /// Trusts this CA (PEM) for the authority's certificate, and turns TLS on.
    pub fn ca_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_certificate = Some(pem.into());
        self
    }

    /// Trusts the system's root certificates, and turns TLS on.
    pub fn native_roots(mut self) -> Self {
        self.native_roots = true;
        self
    }

    /// Presents this certificate and private key (PEM) to the authority:
    /// mutual TLS. Turns TLS on.
    pub fn client_identity(mut self, certificate_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.identity = Some((certificate_pem.into(), key_pem.into()));
        self
    }

    /// The name the authority's certificate must carry, when it differs
    /// from the URL's host.
    pub fn tls_domain(mut self, name: impl Into<String>) -> Self {
        self.domain = Some(name.into());
        self
    }

    /// Sent as `authorization: Bearer <key>` on every call: a key from the
    /// authority's SERVICE_API_KEYS (or ADMIN_API_KEYS).
    pub fn service_key(mut self, key: impl Into<String>) -> Self {
        self.service_key = Some(SecretString::from(key.into()));
        self
    }

    /// The deadline of each attempt of each unary call (5 s by default). It
    /// is sent to the authority (`grpc-timeout`) and enforced here.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Connects now; fails if the authority cannot be reached.
    pub async fn connect(self) -> Result<Client, Error> {
        let (endpoint, rest) = self.endpoint()?;
        let channel = endpoint.connect().await.map_err(Error::Connect)?;
        Ok(rest.client(channel))
    }

    /// Connects on first use, and reconnects by itself whenever the
    /// connection drops: a service can start before the authority.
    pub fn connect_lazy(self) -> Result<Client, Error> {
        let (endpoint, rest) = self.endpoint()?;
        Ok(rest.client(endpoint.connect_lazy()))
    }

    fn endpoint(self) -> Result<(Endpoint, Parts), Error> {
        let mut endpoint = Endpoint::from_shared(self.url.clone())
            .map_err(|_| Error::Config("url: not a valid URI".into()))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        let tls_wanted = self.url.starts_with("https:")
            || self.ca_certificate.is_some()
            || self.identity.is_some()
            || self.native_roots;
        if tls_wanted {
            let mut tls = ClientTlsConfig::new();
            if let Some(pem) = &self.ca_certificate {
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            if self.native_roots || self.ca_certificate.is_none() {
                tls = tls.with_native_roots();
            }
            if let Some((certificate, key)) = &self.identity {
                tls = tls.identity(Identity::from_pem(certificate, key));
            }
            if let Some(domain) = &self.domain {
                tls = tls.domain_name(domain.clone());
            }
            endpoint = endpoint.tls_config(tls).map_err(Error::Connect)?;
        }
        let key = match &self.service_key {
            Some(key) => {
                let invalid = || Error::Config("service_key: not valid in a header (visible ASCII only)".into());
                let key = key.expose_secret();
                // The header parser lets bytes above 0x7f through; the authority compares ASCII keys.
                if key.is_empty() || !key.bytes().all(|byte| byte.is_ascii_graphic()) {
                    return Err(invalid());
                }
                let mut value: AsciiMetadataValue = format!("Bearer {key}").parse().map_err(|_| invalid())?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok((
            endpoint,
            Parts {
                key,
                timeout: self.timeout,
                retry: self.retry,
            },
        ))
    }
}

struct Parts {
    key: Option<AsciiMetadataValue>,
    timeout: Duration,
    retry: RetryPolicy,
}

impl Parts {
    fn client(self, channel: Channel) -> Client {
        Client {
            stub: TokenAuthorityClient::new(channel),
            key: self.key,
            timeout: self.timeout,
            retry: self.retry,
        }
    }
}

/// A connection to the token authority. Cheap to clone: clones share the
/// connection.
///
/// Every call carries the service key and a deadline. A call that fails with
/// `UNAVAILABLE` is sent again, with backoff ([`RetryPolicy`]), only when
/// repeating it cannot change the outcome, since `UNAVAILABLE` may come
/// after the authority acted and only the answer was lost:
///
/// | call | retried | why |
/// |---|---|---|
/// | [`verify`](Self::verify), [`list_sessions`](Self::list_sessions) | yes | they only read |
/// | [`logout`](Self::logout), [`logout_all`](Self::logout_all) | yes | revoking a revoked session changes nothing, and the authority accepts it (a repeated `logout_all` may count 0) |
/// | [`login`](Self::login) | no | each attempt would open a session of its own, and cost a password check and a slot of the login throttle |
/// | [`refresh`](Self::refresh) | no | a repeat after the rotation grace period is taken for token theft and revokes the session; [`SessionHandle`](crate::SessionHandle) retries within the grace period itself |
/// | [`change_password`](Self::change_password) | no | a repeat of a change that went through fails (the current password changed) and the caller would never learn its new token |
///
/// The revocation stream is not retried here: its consumer resumes from its cursor.
#[derive(Debug, Clone)]
pub struct Client {
    stub: TokenAuthorityClient<Channel>,
    key: Option<AsciiMetadataValue>,
    timeout: Duration,
    retry: RetryPolicy,
}

impl Client {
    /// Settings for a client of the authority at `url`
    /// (`http://host:port`, or `https://` for TLS).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            ca_certificate: None,
            native_roots: false,
            identity: None,
            domain: None,
            service_key: None,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            retry: RetryPolicy::default(),
        }
    }

    /// Checks a username and password and opens a session.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        remember_me: bool,
        client: Option<ClientContext>,
    ) -> Result<Login, Error> {
        let message = proto::LoginRequest {
            username: username.into(),
            password: password.into(),
            remember_me,
            client: client.map(Into::into),
        };
        let response = self
            .unary(Retry::Never, message, |mut stub, request| async move { stub.login(request).await })
            .await?;
        let session = response.session.ok_or(Error::Incomplete("session"))?;
        Ok(Login {
            access_token: AccessToken::new(response.access_token),
            expires_at: time(response.expires_at).ok_or(Error::Incomplete("expires_at"))?,
            user_id: response.user_id,
            session_id: session.session_id,
        })
    }

    /// Rotates a token: the answer is its successor. Not retried (see above).
    pub async fn refresh(&self, token: &AccessToken, client: Option<ClientContext>) -> Result<Refreshed, Error> {
        let message = proto::RefreshRequest {
            access_token: token.as_str().into(),
            client: client.map(Into::into),
        };
        let response = self
            .unary(Retry::Never, message, |mut stub, request| async move { stub.refresh(request).await })
            .await?;
        Ok(Refreshed {
            access_token: AccessToken::new(response.access_token),
            expires_at: time(response.expires_at).ok_or(Error::Incomplete("expires_at"))?,
        })
    }

    /// Revokes the token's session; returns its id.
    pub async fn logout(&self, token: &AccessToken) -> Result<String, Error> {
        let message = proto::LogoutRequest {
            access_token: token.as_str().into(),
        };
        let response = self
            .unary(Retry::Safe, message, |mut stub, request| async move { stub.logout(request).await })
            .await?;
        Ok(response.session_id)
    }

    /// Revokes every session of the token's user (every other one with
    /// `keep_current`); returns how many were revoked.
    pub async fn logout_all(&self, token: &AccessToken, keep_current: bool) -> Result<u32, Error> {
        let message = proto::LogoutAllRequest {
            access_token: token.as_str().into(),
            keep_current,
        };
        let response = self
            .unary(Retry::Safe, message, |mut stub, request| async move { stub.logout_all(request).await })
            .await?;
        Ok(response.revoked_count)
    }

    /// Asks the authority whether a token is good right now. A refusal is
    /// [`VerifyError::Invalid`] with the reason; [`VerifyError::Unavailable`]
    /// means the question could not be answered.
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        let message = proto::VerifyRequest {
            access_token: token.into(),
            client: None,
        };
        let response = match self
            .unary(Retry::Safe, message, |mut stub, request| async move { stub.verify(request).await })
            .await
        {
            Ok(response) => response,
            // An empty or oversized token is refused before any check.
            Err(Error::Status(status)) if status.code() == Code::InvalidArgument => {
                return Err(VerifyError::Invalid(Reason::Malformed));
            }
            Err(error) => return Err(VerifyError::Unavailable(error)),
        };
        if !response.valid {
            return Err(VerifyError::Invalid(Reason::from_proto(response.reason)));
        }
        let missing = |field| VerifyError::Unavailable(Error::Incomplete(field));
        Ok(Claims {
            issued_at: time(response.issued_at).ok_or_else(|| missing("issued_at"))?,
            expires_at: time(response.expires_at).ok_or_else(|| missing("expires_at"))?,
            user_id: response.user_id,
            username: response.username,
            session_id: response.session_id,
            roles: response.roles,
        })
    }

    /// Changes the user's password, revokes every other session of theirs,
    /// and rotates this token: the answer is its successor.
    pub async fn change_password(
        &self,
        token: &AccessToken,
        current_password: &str,
        new_password: &str,
    ) -> Result<Refreshed, Error> {
        let message = proto::ChangePasswordRequest {
            access_token: token.as_str().into(),
            current_password: current_password.into(),
            new_password: new_password.into(),
        };
        let response = self
            .unary(Retry::Never, message, |mut stub, request| async move { stub.change_password(request).await })
            .await?;
        Ok(Refreshed {
            access_token: AccessToken::new(response.access_token),
            expires_at: time(response.expires_at).ok_or(Error::Incomplete("expires_at"))?,
        })
    }

    /// The user's live sessions, newest first.
    pub async fn list_sessions(&self, token: &AccessToken) -> Result<Vec<SessionInfo>, Error> {
        let message = proto::ListSessionsRequest {
            access_token: token.as_str().into(),
        };
        let response = self
            .unary(Retry::Safe, message, |mut stub, request| async move { stub.list_sessions(request).await })
            .await?;
        Ok(response
            .sessions
            .into_iter()
            .map(|session| SessionInfo {
                session_id: session.session_id,
                created_at: time(session.created_at),
                last_refreshed_at: time(session.last_refreshed_at),
                expires_at: time(session.expires_at),
                remember_me: session.remember_me,
                ip_address: session.ip_address,
                user_agent: session.user_agent,
                device_id: session.device_id,
                current: session.current,
            })
            .collect())
    }

    /// Opens the revocation stream (needs the service key), without a
    /// deadline. Not retried: its consumer resumes from its last cursor.
    pub async fn watch_revocations(
        &self,
        request: proto::WatchRevocationsRequest,
    ) -> Result<Streaming<proto::RevocationEvent>, Error> {
        let request = self.authorize(Request::new(request));
        Ok(self.stub.clone().watch_revocations(request).await?.into_inner())
    }

    /// The generated stub on this client's connection, for calls the typed
    /// API does not cover; pass requests through [`Client::authorize`].
    pub fn stub(&self) -> TokenAuthorityClient<Channel> {
        self.stub.clone()
    }

    /// Adds the service key to a request.
    pub fn authorize<T>(&self, mut request: Request<T>) -> Request<T> {
        if let Some(key) = &self.key {
            request.metadata_mut().insert("authorization", key.clone());
        }
        request
    }

    /// One unary call: the key and the deadline on each attempt, and retries
    /// on UNAVAILABLE when `retry` allows them.
    async fn unary<M, R, F, Fut>(&self, retry: Retry, message: M, call: F) -> Result<R, Error>
    where
        M: Clone,
        F: Fn(TokenAuthorityClient<Channel>, Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let mut attempt = 1;
        loop {
            let mut request = self.authorize(Request::new(message.clone()));
            request.set_timeout(self.timeout);
            let result = match tokio::time::timeout(self.timeout, call(self.stub.clone(), request)).await {
                Ok(result) => result,
                Err(_) => Err(Status::deadline_exceeded("the token authority did not answer within the deadline")),
            };
            match result {
                Ok(response) => return Ok(response.into_inner()),
                Err(status)
                    if retry == Retry::Safe
                        && status.code() == Code::Unavailable
                        && attempt < self.retry.max_attempts =>
                {
                    let wait = self.retry.backoff(attempt);
                    tracing::debug!(
                        attempt,
                        ?wait,
                        message = status.message(),
                        "token authority unavailable; retrying"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(status) => return Err(Error::Status(status)),
            }
        }
    }
}

fn time(timestamp: Option<prost_types::Timestamp>) -> Option<SystemTime> {
    timestamp.and_then(|timestamp| SystemTime::try_from(timestamp).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_ceiling_with_jitter() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
        };
        for _ in 0..100 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100), "{first:?}");
            let third = policy.backoff(3);
            assert!(third >= Duration::from_millis(175) && third <= Duration::from_millis(350), "{third:?}");
            assert!(policy.backoff(40) <= Duration::from_millis(350));
        }
    }

    #[tokio::test]
    async fn a_service_key_that_is_not_ascii_is_refused_without_echoing_it() {
        let error = Client::builder("http://127.0.0.1:1").service_key("clé-secrète").connect_lazy().unwrap_err();
        let text = error.to_string();
        assert!(text.contains("service_key"), "{text}");
        assert!(!text.contains("secrète"), "{text}");
    }
}
