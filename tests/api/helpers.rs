//! Starting a server for a test, and small conveniences for talking to it.

use std::{net::SocketAddr, num::NonZeroUsize, sync::Arc, time::Duration};

use tempfile::TempDir;
use token_authority::{
    authority::{Pause, Pauses},
    clock::ManualClock,
    config::{ApiKey, Config},
    domain::{password_hash::Argon2Settings, throttle::ThrottlePolicy, tokens::SigningAlgorithm},
    proto::{
        self, token_authority_admin_client::TokenAuthorityAdminClient, token_authority_client::TokenAuthorityClient,
    },
    repository::{DatabaseConfig, Repository},
    startup::Application,
};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{
    Code, Request, Status, Streaming,
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

pub const ADMIN_KEY: &str = "test-admin-key-0123456789";
pub const SERVICE_KEY: &str = "test-service-key-0123456789";
/// Tests know the secret so that they can forge tokens of every shape.
pub const JWT_SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";
pub const PASSWORD: &str = "correct horse battery staple";

/// Sends the service key with every call that carries no `authorization`
/// of its own, as a backend service does.
#[derive(Debug, Clone, Copy)]
pub struct ServiceKey;

impl Interceptor for ServiceKey {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if !request.metadata().contains_key("authorization") {
            let bearer = format!("Bearer {SERVICE_KEY}").parse().expect("ASCII");
            request.metadata_mut().insert("authorization", bearer);
        }
        Ok(request)
    }
}

/// A TokenAuthority client that authenticates with the service key.
pub type Client = TokenAuthorityClient<InterceptedService<Channel, ServiceKey>>;

/// A server under test, with clients connected to it.
pub struct TestApp {
    pub address: SocketAddr,
    /// Where `/metrics` is served, when the test asked for it.
    pub metrics_address: Option<SocketAddr>,
    /// Where the HTTP listener (JWKS, discovery) is, when the test asked for it.
    pub http_address: Option<SocketAddr>,
    /// Sends the service key unless a request carries its own `authorization`.
    pub client: Client,
    /// Sends nothing by itself: each call names its key (`admin_request`).
    pub admin: TokenAuthorityAdminClient<Channel>,
    /// The connection both clients use, for clients of a test's own.
    pub channel: Channel,
    pub database_url: String,
    /// The server's clock: tests move it instead of sleeping.
    pub clock: ManualClock,
    config: TestConfig,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    /// Keeps the database file alive as long as the app.
    _directory: Arc<TempDir>,
}

/// The configuration of a test server: the defaults, with cheap argon2 (the
/// tests check behaviour, not cost), a known secret and keys, no leeway, and
/// a clock of its own that only moves when the test says so.
#[derive(Clone)]
pub struct TestConfig {
    pub config: Config,
    pub clock: ManualClock,
    /// Where the server holds calls for the test; none by default.
    pub pauses: Pauses,
    /// How the clients speak TLS to a server configured with it.
    pub client_tls: Option<tonic::transport::ClientTlsConfig>,
}

impl Default for TestConfig {
    fn default() -> Self {
        let mut config = Config {
            listen_addr: "127.0.0.1:0".parse().expect("an address"),
            ..Config::default()
        };
        config.api_keys.admin = vec![ApiKey::new("test-admin", ADMIN_KEY)];
        config.api_keys.service = vec![ApiKey::new("test-service", SERVICE_KEY)];
        // As Config reads JWT_SECRET without JWT_ALGORITHM: HS256 under the
        // secret, no stored keys.
        config.tokens.signing_secret = Some(JWT_SECRET.into());
        config.keys.stored = false;
        config.keys.rotation.algorithm = SigningAlgorithm::Hs256;
        config.tokens.policy.leeway = Duration::ZERO;
        config.argon2 = Argon2Settings {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        config.password_hashing.threads = NonZeroUsize::new(2).expect("not zero");
        // Tests log the same user in many times and refresh in quick
        // succession; the throttle and the refresh limit have their own tests.
        config.security.throttle = ThrottlePolicy {
            window: config.security.throttle.window,
            ..ThrottlePolicy::OFF
        };
        config.security.refresh_min_interval = None;
        Self {
            config,
            clock: ManualClock::starting_now(),
            pauses: Pauses::none(),
            client_tls: None,
        }
    }
}

impl TestConfig {
    /// Tokens live one second (remember-me ones still 30 days), with no
    /// grace and no refresh window.
    pub fn short_lived() -> Self {
        Self::default().configure(|config| {
            config.tokens.lifetimes.standard = Duration::from_secs(1);
            config.tokens.lifetimes.refresh_window = Duration::ZERO;
            config.tokens.lifetimes.rotation_grace = Duration::ZERO;
        })
    }

    /// Changes the configuration.
    pub fn configure(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(&mut self.config);
        self
    }

    /// Holds calls where `pauses` says, so that a test can interleave others.
    pub fn pauses(mut self, pauses: Pauses) -> Self {
        self.pauses = pauses;
        self
    }

    /// Keys made, rotated and kept in the database, of `algorithm`, re-read
    /// every 100 ms (so that tests which move the clock see a due rotation
    /// soon), and an HTTP listener for the JWKS.
    pub fn stored_keys(self, algorithm: SigningAlgorithm) -> Self {
        self.configure(|config| {
            config.tokens.signing_secret = None;
            config.keys.stored = true;
            config.keys.rotation.algorithm = algorithm;
            config.keys.refresh_interval = Duration::from_millis(100);
            config.http.address = Some("127.0.0.1:0".parse().expect("an address"));
        })
    }

    /// Stored EdDSA keys rotating every 10 days, published an hour ahead;
    /// tokens live an hour (two with remember-me), so a key is deleted two
    /// hours after it retires. Revocations (and key sets) are polled every
    /// 100 ms.
    pub fn rotating_keys() -> Self {
        const HOUR: Duration = Duration::from_secs(3600);
        Self::default().stored_keys(SigningAlgorithm::EdDsa).configure(|config| {
            config.tokens.lifetimes.standard = HOUR;
            config.tokens.lifetimes.remember_me = 2 * HOUR;
            config.tokens.lifetimes.refresh_window = Duration::from_secs(600);
            config.keys.rotation.interval = 10 * 24 * HOUR;
            config.keys.rotation.publish_ahead = HOUR;
            config.keys.rotation.retention = 2 * HOUR;
            config.revocations.poll_interval = Duration::from_millis(100);
        })
    }

    /// The rotation grace period, in whole seconds.
    pub fn rotation_grace(self, seconds: u64) -> Self {
        self.configure(|config| config.tokens.lifetimes.rotation_grace = Duration::from_secs(seconds))
    }

    /// Changes the security policy (binding, limits, throttle, actions).
    pub fn security(self, change: impl FnOnce(&mut token_authority::authority::SecurityPolicy)) -> Self {
        self.configure(|config| change(&mut config.security))
    }

    /// A server on the same database and clock as `app` (which may be stopped).
    pub async fn spawn_sharing_database(mut self, app: &TestApp) -> TestApp {
        self.clock = app.clock.clone();
        TestApp::start(self, app.database_url.clone(), app._directory.clone()).await
    }

    /// A server on the database at `database_url`.
    pub async fn spawn_on(self, database_url: String) -> TestApp {
        let directory = Arc::new(TempDir::new().expect("temporary directory"));
        TestApp::start(self, database_url, directory).await
    }

    pub async fn spawn(self) -> TestApp {
        let directory = Arc::new(TempDir::new().expect("temporary directory"));
        let database_url = fresh_database_url(directory.path()).await;
        TestApp::start(self, database_url, directory).await
    }
}

/// A server whose tokens live one second, and a session whose token has expired.
pub async fn expired_session() -> (TestApp, proto::LoginResponse) {
    let mut app = TestConfig::short_lived().spawn().await;
    let login = app.user_with_session("alice").await;
    app.clock.advance(Duration::from_secs(2));
    (app, login)
}

/// The PostgreSQL server the suite runs against, when it does: tests/run.sh
/// starts a throwaway one and sets TEST_POSTGRES_URL; plain `cargo test`
/// runs on SQLite.
pub fn postgres_server() -> Option<String> {
    std::env::var("TEST_POSTGRES_URL").ok().filter(|url| !url.is_empty())
}

/// A database of a test's own: a new SQLite file in `directory`, or a new
/// database on the PostgreSQL server.
pub async fn fresh_database_url(directory: &std::path::Path) -> String {
    match postgres_server() {
        Some(server) => create_postgres_database(&server).await,
        None => format!("sqlite:{}", directory.join("test.db").display()),
    }
}

pub async fn create_postgres_database(server: &str) -> String {
    use sqlx::Connection;
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut connection = sqlx::PgConnection::connect(server).await.expect("the test PostgreSQL answers");
    // The name is ours (a UUID), not input.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut connection)
        .await
        .expect("a test database is created");
    let (base, _) = server.rsplit_once('/').expect("TEST_POSTGRES_URL names a database");
    format!("{base}/{name}")
}

pub async fn spawn_app() -> TestApp {
    TestConfig::default().spawn().await
}

impl TestApp {
    async fn start(config: TestConfig, database_url: String, directory: Arc<TempDir>) -> Self {
        let mut server_config = config.config.clone();
        server_config.database.url = database_url.clone();
        let application = Application::build_with_pauses(server_config, config.clock.shared(), config.pauses.clone())
            .await
            .expect("the application builds");
        let address = application.local_addr();
        let metrics_address = application.metrics_addr();
        let http_address = application.http_addr();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(application.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let channel = match &config.client_tls {
            Some(tls) => Channel::from_shared(format!("https://{address}"))
                .expect("valid uri")
                .tls_config(tls.clone())
                .expect("a TLS client configuration"),
            None => Channel::from_shared(format!("http://{address}")).expect("valid uri"),
        };
        let channel = channel.connect().await.expect("the server accepts connections");
        Self {
            address,
            metrics_address,
            http_address,
            client: TokenAuthorityClient::with_interceptor(channel.clone(), ServiceKey),
            admin: TokenAuthorityAdminClient::new(channel.clone()),
            channel,
            database_url,
            clock: config.clock.clone(),
            config,
            shutdown: Some(shutdown),
            server: Some(server),
            _directory: directory,
        }
    }

    /// Stops the server gracefully and waits until it has.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server stops cleanly");
        }
    }

    /// Stops the server and starts a new one on the same database.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let config = self.config.clone();
        TestApp::start(config, self.database_url.clone(), self._directory.clone()).await
    }

    /// A TokenAuthority client that sends no credential by itself.
    pub fn unauthenticated_client(&self) -> TokenAuthorityClient<Channel> {
        TokenAuthorityClient::new(self.channel.clone())
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &Config {
        &self.config.config
    }

    pub fn channel_uri(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Creates a user through the admin API; returns its id.
    pub async fn create_user(&mut self, username: &str, password: &str, roles: &[&str]) -> String {
        let request = admin_request(proto::CreateUserRequest {
            username: username.into(),
            password: password.into(),
            roles: roles.iter().map(ToString::to_string).collect(),
        });
        self.admin.create_user(request).await.expect("user created").into_inner().user_id
    }

    pub async fn login(&mut self, username: &str, password: &str) -> Result<proto::LoginResponse, Status> {
        self.login_with(proto::LoginRequest {
            username: username.into(),
            password: password.into(),
            ..Default::default()
        })
        .await
    }

    /// A login with remember_me set.
    pub async fn login_remembered(&mut self, username: &str) -> proto::LoginResponse {
        self.login_with(proto::LoginRequest {
            username: username.into(),
            password: PASSWORD.into(),
            remember_me: true,
            client: None,
        })
        .await
        .expect("login succeeds")
    }

    pub async fn login_with(&mut self, request: proto::LoginRequest) -> Result<proto::LoginResponse, Status> {
        self.client.login(request).await.map(tonic::Response::into_inner)
    }

    /// A user named `username` with the standard password, logged in once.
    pub async fn user_with_session(&mut self, username: &str) -> proto::LoginResponse {
        self.create_user(username, PASSWORD, &["reader"]).await;
        self.login(username, PASSWORD).await.expect("login succeeds")
    }

    pub async fn verify(&mut self, token: &str) -> proto::VerifyResponse {
        self.client
            .verify(proto::VerifyRequest {
                access_token: token.into(),
                client: None,
            })
            .await
            .expect("Verify answers")
            .into_inner()
    }

    pub async fn refresh(&mut self, token: &str) -> Result<proto::RefreshResponse, Status> {
        self.client
            .refresh(proto::RefreshRequest {
                access_token: token.into(),
                client: None,
            })
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn logout(&mut self, token: &str) -> Result<proto::LogoutResponse, Status> {
        self.client
            .logout(proto::LogoutRequest {
                access_token: token.into(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn list_sessions(&mut self, token: &str) -> Result<Vec<proto::Session>, Status> {
        self.client
            .list_sessions(proto::ListSessionsRequest {
                access_token: token.into(),
            })
            .await
            .map(|response| response.into_inner().sessions)
    }
}

impl TestApp {
    /// Opens a revocation stream with the service key, past its first
    /// message (the key set, which every stream starts with).
    pub async fn watch(
        &mut self,
        after_cursor: u64,
        include_snapshot: bool,
    ) -> Result<Streaming<proto::RevocationEvent>, Status> {
        self.watch_with_keys(after_cursor, include_snapshot).await.map(|(stream, _)| stream)
    }

    /// Opens a revocation stream; returns it and its first message, which
    /// must be the current key set.
    pub async fn watch_with_keys(
        &mut self,
        after_cursor: u64,
        include_snapshot: bool,
    ) -> Result<(Streaming<proto::RevocationEvent>, proto::RevocationEvent), Status> {
        let request = with_key(
            proto::WatchRevocationsRequest {
                after_cursor,
                include_snapshot,
                session_snapshot: false,
            },
            SERVICE_KEY,
        );
        let mut stream = self.client.watch_revocations(request).await?.into_inner();
        let first = tokio::time::timeout(Duration::from_secs(60), stream.message())
            .await
            .expect("the key set comes first, at once")?
            .expect("the stream stays open");
        assert_eq!(first.kind(), proto::RevocationEventKind::KeySet, "every stream starts with the key set");
        Ok((stream, first))
    }

    /// The server's JWKS, from GetJwks.
    pub async fn jwks(&mut self) -> serde_json::Value {
        let response = self.client.get_jwks(proto::GetJwksRequest {}).await.expect("GetJwks answers").into_inner();
        serde_json::from_str(&response.jwks).expect("a JSON JWK set")
    }

    /// Waits until the outbox has handed out cursor `cursor`. On PostgreSQL
    /// the follower numbers events just after their commit, so a revocation
    /// that was acknowledged may still be on its way to its cursor.
    pub async fn wait_for_cursor(&self, cursor: u64) {
        let repository = self.repository().await;
        tokio::time::timeout(Duration::from_secs(30), async {
            while repository.cursor_bounds().await.expect("the outbox reads").latest < cursor {
                sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("cursor {cursor} was never handed out"));
    }

    /// A repository on the app's database, to look behind the API.
    pub async fn repository(&self) -> Repository {
        Repository::connect(&DatabaseConfig {
            url: self.database_url.clone(),
            max_connections: 2,
            acquire_timeout: Duration::from_secs(5),
        })
        .await
        .expect("the test database opens")
    }
}

/// The next `count` revocations (heartbeats and key sets skipped), failing the test if
/// they do not come within a generous bound (a hang detector, not a timer).
pub async fn next_revocations(
    stream: &mut Streaming<proto::RevocationEvent>,
    count: usize,
) -> Vec<proto::RevocationEvent> {
    let mut events = Vec::with_capacity(count);
    tokio::time::timeout(Duration::from_secs(60), async {
        while events.len() < count {
            let event = stream.message().await.expect("the stream stays healthy").expect("the stream stays open");
            if !matches!(event.kind(), proto::RevocationEventKind::Heartbeat | proto::RevocationEventKind::KeySet) {
                events.push(event);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {count} revocations arrived", events.len()));
    events
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// A Login of `username` with the standard password on its own client, to
/// run alongside others.
pub async fn login_on(mut client: Client, username: &str) -> Result<proto::LoginResponse, Status> {
    let request = proto::LoginRequest {
        username: username.into(),
        password: PASSWORD.into(),
        ..Default::default()
    };
    client.login(request).await.map(tonic::Response::into_inner)
}

/// A client context as a backend would pass it.
pub fn client(ip: &str, user_agent: &str, device_id: &str) -> proto::ClientContext {
    proto::ClientContext {
        ip_address: ip.into(),
        user_agent: user_agent.into(),
        device_id: device_id.into(),
    }
}

pub const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
pub const CHROME_ANDROID: &str = "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36";

impl TestApp {
    /// A login of `username` (standard password) from `client`.
    pub async fn login_from(
        &mut self,
        username: &str,
        password: &str,
        client: proto::ClientContext,
    ) -> Result<proto::LoginResponse, Status> {
        self.login_with(proto::LoginRequest {
            username: username.into(),
            password: password.into(),
            remember_me: false,
            client: Some(client),
        })
        .await
    }

    pub async fn refresh_from(
        &mut self,
        token: &str,
        client: proto::ClientContext,
    ) -> Result<proto::RefreshResponse, Status> {
        self.client
            .refresh(proto::RefreshRequest {
                access_token: token.into(),
                client: Some(client),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn verify_from(&mut self, token: &str, client: proto::ClientContext) -> proto::VerifyResponse {
        self.client
            .verify(proto::VerifyRequest {
                access_token: token.into(),
                client: Some(client),
            })
            .await
            .expect("Verify answers")
            .into_inner()
    }

    /// Every audit record matching `filter`, newest first, page after page.
    pub async fn audit(&mut self, filter: proto::ListAuditEventsRequest) -> Vec<proto::AuditEvent> {
        let mut events = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .admin
                .list_audit_events(admin_request(proto::ListAuditEventsRequest {
                    page_token: page_token.clone(),
                    ..filter.clone()
                }))
                .await
                .expect("the audit trail lists")
                .into_inner();
            events.extend(page.events);
            if page.next_page_token.is_empty() {
                return events;
            }
            page_token = page.next_page_token;
        }
    }

    /// The audit records of the given kinds.
    pub async fn audit_of(&mut self, kinds: &[proto::AuditKind]) -> Vec<proto::AuditEvent> {
        self.audit(proto::ListAuditEventsRequest {
            kinds: kinds.iter().map(|kind| *kind as i32).collect(),
            ..Default::default()
        })
        .await
    }

    /// Opens a security event stream with the admin key.
    pub async fn watch_security(&mut self, after_cursor: u64) -> Streaming<proto::SecurityEvent> {
        self.admin
            .watch_security_events(admin_request(proto::WatchSecurityEventsRequest { after_cursor }))
            .await
            .expect("the security stream opens")
            .into_inner()
    }

    /// Runs a statement on the app's database behind the API (to set up
    /// states the API cannot reach, such as a race's outcome).
    pub async fn execute_sql(&self, statement: &str) {
        use sqlx::Connection;
        let statement = sqlx::AssertSqlSafe(statement.to_owned());
        if self.database_url.starts_with("sqlite:") {
            let mut connection = sqlx::SqliteConnection::connect(&self.database_url).await.expect("the database opens");
            sqlx::query(statement).execute(&mut connection).await.expect("the statement runs");
        } else {
            let mut connection = sqlx::PgConnection::connect(&self.database_url).await.expect("the database opens");
            sqlx::query(statement).execute(&mut connection).await.expect("the statement runs");
        }
    }
}

/// The next `count` security events, failing the test if they do not come
/// within a generous bound (a hang detector, not a timer).
pub async fn next_security_events(
    stream: &mut Streaming<proto::SecurityEvent>,
    count: usize,
) -> Vec<proto::SecurityEvent> {
    let mut events = Vec::with_capacity(count);
    tokio::time::timeout(Duration::from_secs(60), async {
        while events.len() < count {
            let event = stream.message().await.expect("the stream stays healthy").expect("the stream stays open");
            events.push(event);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {count} security events arrived", events.len()));
    events
}

/// A Refresh on its own client, to race with others.
pub async fn refresh_on(mut client: Client, token: String) -> Result<String, Status> {
    let request = proto::RefreshRequest {
        access_token: token,
        client: None,
    };
    client.refresh(request).await.map(|response| response.into_inner().access_token)
}

/// A request carrying the admin key.
pub fn admin_request<T>(message: T) -> Request<T> {
    with_key(message, ADMIN_KEY)
}

pub fn with_key<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {key}").parse().expect("ascii"));
    request
}

pub fn reason(response: &proto::VerifyResponse) -> proto::VerifyReason {
    proto::VerifyReason::try_from(response.reason).expect("a known reason")
}

/// Asserts the status code and that the message names `mentions`.
#[track_caller]
pub fn assert_status(result: Result<impl std::fmt::Debug, Status>, code: Code, mentions: &str) -> Status {
    let status = result.expect_err("the call fails");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(mentions), "message {:?} does not mention {mentions:?}", status.message());
    status
}

/// Decodes a JWT's claims (no verification: tests read what they were given).
pub fn claims_of(token: &str) -> serde_json::Value {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON claims")
}

/// Signs arbitrary claims with the tests' secret, as HS256.
pub fn forge_token(header: serde_json::Value, claims: serde_json::Value) -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use hmac::{Hmac, Mac};
    let encode = |value: &serde_json::Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let message = format!("{}.{}", encode(&header), encode(&claims));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(JWT_SECRET.as_bytes()).expect("any key length");
    mac.update(message.as_bytes());
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

pub fn header_of(token: &str) -> serde_json::Value {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let header = token.split('.').next().expect("a JWT has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url")).expect("JSON header")
}

/// A plain HTTP/1.1 GET: the status code, the headers (names in lower
/// case) and the body.
pub async fn http_get(address: SocketAddr, path: &str) -> (u16, std::collections::HashMap<String, String>, String) {
    http_get_with(address, path, &[]).await
}

/// [`http_get`] with request headers of the test's own.
pub async fn http_get_with(
    address: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, std::collections::HashMap<String, String>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut connection = tokio::net::TcpStream::connect(address).await.expect("the HTTP listener accepts");
    let mut extra: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        extra.insert_str(0, &format!("Host: {address}\r\n"));
    }
    let request = format!("GET {path} HTTP/1.1\r\n{extra}Connection: close\r\n\r\n");
    connection.write_all(request.as_bytes()).await.expect("the request is sent");
    let mut response = Vec::new();
    connection.read_to_end(&mut response).await.expect("an answer");
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// The `kid`s of a JWK set, in its order.
pub fn kids(jwks: &serde_json::Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("a keys array")
        .iter()
        .map(|jwk| jwk["kid"].as_str().expect("a kid").to_owned())
        .collect()
}

/// Polls `condition` until it holds, failing after a generous bound: for
/// what a background task does on its own schedule (a hang detector, not a
/// timer).
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "{what} did not happen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn seconds(timestamp: &Option<prost_types::Timestamp>) -> i64 {
    timestamp.as_ref().expect("timestamp set").seconds
}

pub async fn sleep(duration: Duration) {
    tokio::time::sleep(duration).await;
}

/// A pause point that, once armed, holds the next call that reaches it until
/// the test releases it: the test knows the call is there, does something
/// else meanwhile, then lets it go on.
#[derive(Clone, Default)]
pub struct Gate {
    armed: Arc<std::sync::atomic::AtomicBool>,
    reached: Arc<tokio::sync::Notify>,
    released: Arc<tokio::sync::Notify>,
}

impl Gate {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The next call to reach the gate will wait there.
    pub fn arm(&self) {
        self.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Resolves when a call is waiting at the gate.
    pub async fn reached(&self) {
        tokio::time::timeout(Duration::from_secs(60), self.reached.notified())
            .await
            .expect("a call reaches the gate");
    }

    /// Lets the waiting call go on.
    pub fn release(&self) {
        self.released.notify_one();
    }
}

impl Pause for Gate {
    fn wait(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
                // notify_one keeps a permit, so the order of reached() and
                // release() against this call does not matter.
                self.reached.notify_one();
                self.released.notified().await;
            }
        })
    }
}

/// An HTTP/2 connection of the test's own (the h2 crate), which sends what
/// a well-behaved gRPC client never would: bodies that stop mid-message.
pub async fn raw_http2(app: &TestApp) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(app.address).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client.ready().await.unwrap()
}

pub fn grpc_request(path: &str) -> http::Request<()> {
    http::Request::builder()
        .method("POST")
        .uri(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {SERVICE_KEY}"))
        .body(())
        .unwrap()
}

/// The gRPC status of a trailers-only answer.
pub async fn status_of(response: h2::client::ResponseFuture) -> (tonic::Code, String) {
    let response = tokio::time::timeout(Duration::from_secs(60), response).await.expect("an answer").unwrap();
    let status = tonic::Status::from_header_map(response.headers()).expect("a trailers-only gRPC answer");
    (status.code(), status.message().to_owned())
}
