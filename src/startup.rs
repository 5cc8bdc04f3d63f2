//! The application: built from settings, it connects to the database, runs
//! migrations, loads the signing keys, binds its listener (port 0 in tests)
//! and serves until a shutdown future resolves. `main` and the tests take the
//! same path.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tonic::{
    server::NamedService,
    service::interceptor::InterceptedService,
    transport::{Server, server::TcpIncoming},
};
use tonic_health::{ServingStatus, server::HealthReporter};
use tracing::{info, warn};

use crate::{
    authority::{
        Authority, CleanupPolicy, LoginThrottle, PasswordPool, SessionCache, VerifiedTokens, cleanup_periodically,
    },
    domain::{
        Timestamp,
        passwords::PasswordHasher,
        tokens::{Keyring, SigningKey},
    },
    grpc::{
        AdminService, ApiKeys, TokenAuthorityService,
        proto::{
            token_authority_admin_server::TokenAuthorityAdminServer, token_authority_server::TokenAuthorityServer,
        },
    },
    metrics,
    repository::Repository,
    revocations::{FeedSettings, RevocationFeed},
    settings::{ServeSettings, TokenSettings},
};

/// The services whose health is reported, besides the whole server ("").
const HEALTH_SERVICES: [&str; 3] = [
    "",
    <TokenAuthorityServer<TokenAuthorityService> as NamedService>::NAME,
    <TokenAuthorityAdminServer<AdminService> as NamedService>::NAME,
];

/// The Prometheus scrape endpoint, when METRICS_ADDR is set.
struct MetricsEndpoint {
    listener: TcpListener,
    address: SocketAddr,
    handle: metrics_exporter_prometheus::PrometheusHandle,
}

/// How often the gauges that need a database count are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(15);

pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    repository: Repository,
    authority: Arc<Authority>,
    sessions: Arc<SessionCache>,
    throttle: Arc<LoginThrottle>,
    revocations: Arc<RevocationFeed>,
    api_keys: ApiKeys,
    metrics: Option<MetricsEndpoint>,
    cleanup_policy: CleanupPolicy,
    cleanup_interval: Duration,
    health_check_interval: Duration,
    shutdown_timeout: Duration,
}

impl Application {
    pub async fn build(settings: ServeSettings) -> anyhow::Result<Self> {
        settings.validate()?;
        let repository = Repository::connect(&settings.database.config()?)
            .await
            .context("DATABASE_URL: cannot open the database")?;
        repository.migrate().await.context("cannot apply the database migrations")?;
        let keyring = load_keyring(&repository, &settings.tokens).await?;
        let hasher = PasswordHasher::new(settings.argon2.settings()?)?;
        let passwords =
            PasswordPool::start(hasher, settings.password_hashing_threads(), settings.password_hashing_queue)
                .context("cannot start the password hashing threads")?;
        let sessions = Arc::new(SessionCache::new(settings.session_cache_capacity));
        let revocations = RevocationFeed::start(
            repository.clone(),
            sessions.clone(),
            FeedSettings {
                heartbeat: *settings.revocation_heartbeat,
                poll_interval: *settings.revocation_poll_interval,
                buffer: settings.revocation_buffer,
            },
        )
        .await
        .context("cannot read the revocation outbox")?;
        let throttle = Arc::new(LoginThrottle::new(settings.login_attempts_per_minute));
        let authority = Authority::new(
            repository.clone(),
            Arc::new(keyring),
            settings.tokens.lifetimes()?,
            passwords,
            sessions.clone(),
            Arc::new(VerifiedTokens::new(settings.verified_token_cache_capacity)),
        )
        .with_login_throttle(throttle.clone())
        .with_listener(revocations.clone());
        let api_keys = ApiKeys::new(&settings.admin_api_keys, &settings.service_api_keys);
        if !api_keys.admin_configured() {
            warn!(
                "ADMIN_API_KEYS is not set: every admin call will be refused (PERMISSION_DENIED); set ADMIN_API_KEYS=<key>[,<key>...] to enable the admin API"
            );
        }
        let metrics = match settings.metrics_addr {
            Some(address) => {
                let handle = metrics::install()?;
                let listener = metrics::bind(address).await?;
                let address = listener.local_addr()?;
                Some(MetricsEndpoint {
                    listener,
                    address,
                    handle,
                })
            }
            None => None,
        };
        let listener = TcpListener::bind(settings.listen_addr)
            .await
            .with_context(|| format!("LISTEN_ADDR: cannot listen on {}", settings.listen_addr))?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            local_addr,
            repository,
            authority: Arc::new(authority),
            sessions,
            throttle,
            revocations,
            api_keys,
            metrics,
            cleanup_policy: settings.retention.policy(&settings.tokens)?,
            cleanup_interval: *settings.retention.cleanup_interval,
            health_check_interval: *settings.health_check_interval,
            shutdown_timeout: *settings.shutdown_timeout,
        })
    }

    /// Where the server listens: the real port when LISTEN_ADDR asked for 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where Prometheus scrapes `/metrics`, when enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|endpoint| endpoint.address)
    }

    /// Serves until `shutdown` resolves; then health turns NOT_SERVING,
    /// revocation streams end with UNAVAILABLE (so their clients reconnect
    /// elsewhere), in-flight calls finish (up to SHUTDOWN_TIMEOUT) and it
    /// returns.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (health, health_service) = tonic_health::server::health_reporter();
        set_health(&health, ServingStatus::Serving).await;
        // Background tasks, aborted together when the server stops.
        let mut background = tokio::task::JoinSet::new();
        background.spawn(probe_database(self.repository.clone(), health.clone(), self.health_check_interval));

        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;
        let throttle = self.throttle.clone();
        background.spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(60));
            loop {
                ticker.tick().await;
                throttle.forget_idle();
            }
        });
        if let Some(endpoint) = self.metrics {
            background.spawn(metrics::serve(endpoint.listener, endpoint.handle));
            background.spawn(collect_gauges(self.repository.clone(), self.sessions.clone()));
            info!(address = %endpoint.address, "serving Prometheus metrics on /metrics");
        }
        background.spawn(cleanup_periodically(
            self.repository.clone(),
            self.sessions.clone(),
            self.cleanup_policy,
            self.cleanup_interval,
        ));
        let token_authority = TokenAuthorityServer::new(TokenAuthorityService::new(
            self.authority.clone(),
            self.revocations.clone(),
            self.api_keys.clone(),
        ));
        let admin = InterceptedService::new(
            TokenAuthorityAdminServer::new(AdminService::new(self.authority.clone())),
            self.api_keys.require_admin(),
        );

        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = Server::builder()
            .layer(metrics::RpcTimingLayer)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(token_authority)
            .add_service(admin)
            // TCP_NODELAY: without it, small gRPC replies can wait 40 ms for
            // a delayed ACK (Nagle's algorithm).
            .serve_with_incoming_shutdown(TcpIncoming::from(self.listener).with_nodelay(Some(true)), async {
                let _ = stopped.await;
            });
        tokio::pin!(server);
        info!(address = %self.local_addr, "serving gRPC");

        tokio::select! {
            result = &mut server => {
                background.abort_all();
                self.revocations.shut_down();
                return result.context("the gRPC server stopped");
            }
            () = shutdown => {}
        }

        info!("shutting down: health NOT_SERVING, ending revocation streams, finishing in-flight calls");
        background.abort_all();
        set_health(&health, ServingStatus::NotServing).await;
        self.revocations.shut_down();
        let _ = stop.send(());
        match tokio::time::timeout(self.shutdown_timeout, server).await {
            Ok(result) => result.context("the gRPC server failed while stopping")?,
            Err(_) => {
                warn!(timeout = ?self.shutdown_timeout, "in-flight calls did not finish within SHUTDOWN_TIMEOUT; stopping anyway")
            }
        }
        self.repository.close().await;
        info!("stopped");
        Ok(())
    }
}

/// Refreshes the gauges that are not kept up to date as things happen.
async fn collect_gauges(repository: Repository, sessions: Arc<SessionCache>) {
    let mut ticker = tokio::time::interval(GAUGE_INTERVAL);
    loop {
        ticker.tick().await;
        metrics::session_cache_entries(sessions.len());
        match repository.count_live_sessions(Timestamp::now()).await {
            Ok(count) => metrics::live_sessions(count),
            Err(error) => warn!(error = %error, "cannot count live sessions for the metrics"),
        }
    }
}

/// Reflection over our services and the health service, so grpcurl can
/// `list` and `describe` them with no proto file at hand.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::grpc::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    for service in HEALTH_SERVICES {
        health.set_service_status(service, status).await;
    }
}

/// Reports SERVING while the database answers and NOT_SERVING while it does not.
async fn probe_database(repository: Repository, health: HealthReporter, interval: Duration) {
    let mut serving = true;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let reachable = matches!(tokio::time::timeout(interval, repository.ping()).await, Ok(Ok(())));
        if reachable != serving {
            serving = reachable;
            if reachable {
                info!("database reachable again: SERVING");
                set_health(&health, ServingStatus::Serving).await;
            } else {
                warn!("database unreachable: NOT_SERVING");
                set_health(&health, ServingStatus::NotServing).await;
            }
        }
    }
}

/// The configured secret (and the accepted ones, for verification only); or,
/// without one, the key kept in the database (generated on first start).
/// Several replicas starting at once may each store a key; all then sign
/// with the oldest, so they agree.
async fn load_keyring(repository: &Repository, tokens: &TokenSettings) -> anyhow::Result<Keyring> {
    let policy = tokens.policy()?;
    if let Some(secret) = &tokens.jwt_secret {
        let key = SigningKey::hs256(secret.expose_secret().as_bytes().to_vec()).context("JWT_SECRET")?;
        let accepted = tokens
            .jwt_accepted_secrets
            .iter()
            .map(|secret| SigningKey::hs256(secret.expose_secret().as_bytes().to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .context("JWT_ACCEPTED_SECRETS")?;
        let accepted_kids: Vec<&str> = accepted.iter().map(SigningKey::kid).collect();
        info!(kid = key.kid(), ?accepted_kids, "signing with JWT_SECRET");
        return Ok(Keyring::new(key, accepted, policy));
    }
    let mut keys = repository.load_signing_keys().await?;
    if keys.is_empty() {
        let key = SigningKey::generate_hs256()?;
        repository.insert_signing_key(&key, Timestamp::now()).await?;
        info!(kid = key.kid(), "no JWT_SECRET: generated a signing key and stored it in the database");
        keys = repository.load_signing_keys().await?;
    }
    let signing = keys.remove(0);
    info!(kid = signing.kid(), "signing with the key stored in the database");
    Ok(Keyring::new(signing, keys, policy))
}
