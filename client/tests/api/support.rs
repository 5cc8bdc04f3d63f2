//! Starting a real authority (port 0, a SQLite database of its own, a manual
//! clock) and the example's protected service for the client crate's tests.

#![allow(dead_code)]

use std::{
    net::SocketAddr,
    num::NonZeroUsize,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tempfile::TempDir;
use token_authority::{
    clock::{Clock as _, ManualClock},
    config::{ApiKey, Config},
    domain::{password_hash::Argon2Settings, throttle::ThrottlePolicy, tokens::SigningAlgorithm},
    proto::{self as server_proto, token_authority_admin_client::TokenAuthorityAdminClient},
    startup::Application,
};
use token_authority_client::{Client, LocalVerifier, LocalVerifierBuilder};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::{Request, transport::Channel};

#[path = "../../examples/protected_service.rs"]
pub mod example;

pub const ADMIN_KEY: &str = "test-admin-key-0123456789";
pub const SERVICE_KEY: &str = "test-service-key-0123456789";
pub const PASSWORD: &str = "correct horse battery staple";
pub const ISSUER: &str = "token-authority";

/// The authority's manual clock, read by the verifier too: tests move time
/// for both instead of sleeping.
#[derive(Clone)]
pub struct SharedClock(pub ManualClock);

impl SharedClock {
    /// The clock's time plus `later`.
    pub fn now_plus(&self, later: Duration) -> SystemTime {
        token_authority_client::Clock::now(self) + later
    }
}

impl token_authority_client::Clock for SharedClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0.now().as_millis().unsigned_abs())
    }
}

/// A running authority.
pub struct Authority {
    pub address: SocketAddr,
    /// The configuration it was started with (its address and database aside).
    config: Config,
    pub clock: ManualClock,
    pub database_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    /// Keeps the database file alive.
    directory: Arc<TempDir>,
}

/// The configuration of a test authority: EdDSA keys in the database, cheap
/// argon2, no throttle, the test's keys, and a 1 s heartbeat.
pub fn config(address: SocketAddr) -> Config {
    let mut config = Config {
        listen_addr: address,
        ..Config::default()
    };
    config.api_keys.admin = vec![ApiKey::new("test-admin", ADMIN_KEY)];
    config.api_keys.service = vec![ApiKey::new("test-service", SERVICE_KEY)];
    config.tokens.signing_secret = None;
    config.keys.stored = true;
    config.keys.rotation.algorithm = SigningAlgorithm::EdDsa;
    config.tokens.policy.leeway = Duration::ZERO;
    config.argon2 = Argon2Settings {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    config.password_hashing.threads = NonZeroUsize::new(2).expect("not zero");
    config.security.throttle = ThrottlePolicy {
        window: config.security.throttle.window,
        ..ThrottlePolicy::OFF
    };
    config.security.refresh_min_interval = None;
    config.revocations.heartbeat = Duration::from_secs(1);
    config
}

impl Authority {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// An authority whose configuration `change` adjusts.
    pub async fn spawn_with(change: impl FnOnce(&mut Config)) -> Self {
        let directory = Arc::new(TempDir::new().expect("a temporary directory"));
        let database_url = format!("sqlite:{}", directory.path().join("test.db").display());
        let clock = ManualClock::starting_now();
        let mut config = config("127.0.0.1:0".parse().expect("an address"));
        change(&mut config);
        Self::start(config, database_url, clock, directory).await
    }

    async fn start(config: Config, database_url: String, clock: ManualClock, directory: Arc<TempDir>) -> Self {
        let mut server_config = config.clone();
        server_config.database.url = database_url.clone();
        let application = Application::build(server_config, clock.shared()).await.expect("the authority builds");
        let address = application.local_addr();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(application.run_until_stopped(async {
            let _ = stopped.await;
        }));
        Self {
            address,
            config,
            clock,
            database_url,
            shutdown: Some(shutdown),
            server: Some(server),
            directory,
        }
    }

    /// Another authority on the same database and clock, at `address`
    /// (port 0 for any).
    pub async fn another_on(&self, address: SocketAddr) -> Self {
        let config = Config {
            listen_addr: address,
            ..self.config.clone()
        };
        Self::start(config, self.database_url.clone(), self.clock.clone(), self.directory.clone()).await
    }

    /// Stops the authority and waits until it has (streams end with UNAVAILABLE).
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("the server task").expect("the server stops cleanly");
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A typed client with the service key.
    pub fn client(&self) -> Client {
        Client::builder(self.url()).service_key(SERVICE_KEY).connect_lazy().expect("a client")
    }

    /// A verifier of this authority's tokens on its clock, not started.
    pub fn verifier(&self) -> LocalVerifierBuilder {
        LocalVerifier::builder(self.client(), ISSUER, ISSUER)
            .leeway(Duration::ZERO)
            .clock(SharedClock(self.clock.clone()))
            .reconnect_delay(Duration::from_millis(50))
    }

    pub async fn create_user(&self, username: &str, roles: &[&str]) -> String {
        let channel = Channel::from_shared(self.url()).expect("a URI").connect().await.expect("connects");
        self.create_user_on(channel, username, roles).await
    }

    /// Creates a user over `channel` (one of the test's own, for TLS).
    pub async fn create_user_on(&self, channel: Channel, username: &str, roles: &[&str]) -> String {
        let mut request = Request::new(server_proto::CreateUserRequest {
            username: username.into(),
            password: PASSWORD.into(),
            roles: roles.iter().map(ToString::to_string).collect(),
        });
        let bearer = format!("Bearer {ADMIN_KEY}").parse().expect("ASCII");
        request.metadata_mut().insert("authorization", bearer);
        TokenAuthorityAdminClient::new(channel)
            .create_user(request)
            .await
            .expect("the user is created")
            .into_inner()
            .user_id
    }
}

/// The example's protected service, on a port of its own.
pub struct Protected {
    pub address: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Protected {
    pub async fn spawn(verifier: LocalVerifier) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let address = listener.local_addr().expect("an address");
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(example::serve(listener, verifier, async {
            let _ = stopped.await;
        }));
        Self {
            address,
            shutdown: Some(shutdown),
        }
    }

    /// Calls WhoAmI with `token` as the bearer token.
    pub async fn who_am_i(&self, token: &str) -> Result<example::notes::WhoAmIResponse, tonic::Status> {
        let channel = Channel::from_shared(format!("http://{}", self.address))
            .expect("a URI")
            .connect()
            .await
            .expect("the service accepts connections");
        let mut request = Request::new(example::notes::WhoAmIRequest {});
        if !token.is_empty() {
            let bearer = format!("Bearer {token}").parse().expect("ASCII");
            request.metadata_mut().insert("authorization", bearer);
        }
        example::notes::notes_client::NotesClient::new(channel)
            .who_am_i(request)
            .await
            .map(tonic::Response::into_inner)
    }
}

impl Drop for Protected {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Polls `condition` until it holds, failing after a generous bound (a hang
/// detector, not a timer).
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "{what} did not happen");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The status of a plain HTTP request with `token` through `layer` to a
/// handler that answers 200.
pub async fn call_behind(layer: token_authority_client::AuthLayer<LocalVerifier>, token: &str) -> u16 {
    use tower::{Layer as _, ServiceExt as _};
    let handler = tower::service_fn(|_request: http::Request<String>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    });
    let request = http::Request::builder()
        .uri("/notes")
        .header("authorization", format!("Bearer {token}"))
        .body(String::new())
        .expect("a request");
    match layer.layer(handler).oneshot(request).await {
        Ok(response) => response.status().as_u16(),
        Err(never) => match never {},
    }
}

impl Authority {
    /// How many refreshes the audit trail holds for `user_id`.
    pub async fn refreshes_of(&self, user_id: &str) -> usize {
        let channel = Channel::from_shared(self.url()).expect("a URI").connect().await.expect("connects");
        let mut request = Request::new(server_proto::ListAuditEventsRequest {
            user_id: user_id.into(),
            kinds: vec![server_proto::AuditKind::Refresh.into()],
            ..Default::default()
        });
        let bearer = format!("Bearer {ADMIN_KEY}").parse().expect("ASCII");
        request.metadata_mut().insert("authorization", bearer);
        TokenAuthorityAdminClient::new(channel)
            .list_audit_events(request)
            .await
            .expect("the audit trail answers")
            .into_inner()
            .events
            .len()
    }
}
