//! The application: built from a [`Config`] and a clock, it connects to the
//! database, runs migrations, loads the signing keys and binds its listeners
//! (port 0 in tests), and starts nothing. `run_until_stopped` then starts the
//! background tasks under one [`Supervisor`] and serves until a shutdown
//! future resolves. `main` and the tests take the same path.

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::net::TcpListener;
use tonic::{
    server::NamedService,
    transport::{Server, server::TcpIncoming},
};
use tonic_health::{ServingStatus, server::HealthReporter};
use tracing::{info, warn};

use crate::{
    authority::{
        Authority, AuthorityParts, KeyStore, PasswordPool, Pauses, SessionCache, VerifiedTokens, cleanup_periodically,
    },
    clock::SharedClock,
    config::{CleanupConfig, Config, Limits},
    domain::password_hash::Argon2Hasher,
    grpc::{
        AdminService, AuthorizationServer, CallLimitLayer, CallerAuth, CallerAuthLayer, EXT_AUTHZ_FILE_DESCRIPTOR_SET,
        ExtAuthzService, StreamKind, StreamQuota, TokenAuthorityService,
        proto::{
            token_authority_admin_server::TokenAuthorityAdminServer, token_authority_server::TokenAuthorityServer,
        },
    },
    http::{self, Discovery, HttpState},
    metrics,
    repository::Repository,
    revocations::RevocationFeed,
    security_feed::SecurityFeed,
    supervisor::Supervisor,
    tls::{self, Certificates, TlsIncoming},
};

/// The services whose health is reported, besides the whole server ("").
const HEALTH_SERVICES: [&str; 4] = [
    "",
    <TokenAuthorityServer<TokenAuthorityService> as NamedService>::NAME,
    <TokenAuthorityAdminServer<AdminService> as NamedService>::NAME,
    <AuthorizationServer<ExtAuthzService> as NamedService>::NAME,
];

/// How often the gauges that need a database count are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(15);

/// The HTTP/1.1 listener, when HTTP_ADDR is set.
struct HttpEndpoint {
    listener: TcpListener,
    address: SocketAddr,
    router: axum::Router,
}

/// The Prometheus scrape endpoint, when METRICS_ADDR is set.
struct MetricsEndpoint {
    listener: TcpListener,
    address: SocketAddr,
    handle: metrics_exporter_prometheus::PrometheusHandle,
}

/// The certificates being served, and how.
struct TlsServing {
    certificates: Arc<Certificates>,
    server_config: Arc<rustls::ServerConfig>,
    reload_interval: Duration,
    handshake_timeout: Duration,
}

pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    metrics: Option<MetricsEndpoint>,
    http: Option<HttpEndpoint>,
    repository: Repository,
    authority: Arc<Authority>,
    keys: Arc<KeyStore>,
    sessions: Arc<SessionCache>,
    revocations: Arc<RevocationFeed>,
    security_events: Arc<SecurityFeed>,
    auth: CallerAuthLayer,
    /// TLS on the gRPC port, when configured.
    tls: Option<TlsServing>,
    limits: Limits,
    /// EXT_AUTHZ_HEADER_PREFIX.
    ext_authz_header_prefix: String,
    reflection: bool,
    clock: SharedClock,
    cleanup: CleanupConfig,
    health_check_interval: Duration,
    shutdown_timeout: Duration,
}

impl Application {
    /// Builds everything and binds the listeners; starts no task, so a
    /// failure here leaves nothing running.
    pub async fn build(config: Config, clock: SharedClock) -> anyhow::Result<Self> {
        Self::build_with_pauses(config, clock, Pauses::none()).await
    }

    /// [`Application::build`], with points where a test holds calls.
    pub async fn build_with_pauses(config: Config, clock: SharedClock, pauses: Pauses) -> anyhow::Result<Self> {
        let repository =
            Repository::connect(&config.database).await.context("DATABASE_URL: cannot open the database")?;
        repository.migrate().await.context("cannot apply the database migrations")?;
        let verified_tokens = Arc::new(VerifiedTokens::new(config.verified_token_cache_capacity));
        let keys =
            KeyStore::open(repository.clone(), &config.keys, &config.tokens, clock.clone(), verified_tokens.clone())
                .await
                .context("cannot load the signing keys")?;
        log_key_setup(&keys, &config, &clock);
        let passwords = PasswordPool::start(
            Argon2Hasher::new(config.argon2).context("ARGON2_MEMORY_KIB")?,
            config.password_hashing.threads,
            config.password_hashing.queue,
        )
        .context("cannot start the password hashing threads")?;
        let sessions = Arc::new(SessionCache::new(config.session_cache_capacity.get()));
        let latest_cursor = repository.cursor_bounds().await.context("cannot read the revocation outbox")?.latest;
        let revocations = RevocationFeed::new(
            repository.clone(),
            sessions.clone(),
            keys.clone(),
            clock.clone(),
            config.revocations,
            latest_cursor,
        );
        let security_events = SecurityFeed::new(repository.clone(), config.revocations.poll_interval);
        let authority = Authority::new(AuthorityParts {
            repository: repository.clone(),
            keys: keys.clone(),
            lifetimes: config.tokens.lifetimes,
            passwords,
            sessions: sessions.clone(),
            verified_tokens,
            security: config.security,
            listener: revocations.clone(),
            security_listener: security_events.clone(),
            clock: clock.clone(),
            pauses,
        });
        config.check_caller_credentials()?;
        let auth = CallerAuth::new(&config.api_keys, &config.callers, config.tls.as_ref());
        if !auth.admin_configured() {
            warn!(
                "ADMIN_API_KEYS is not set: every admin call will be refused (PERMISSION_DENIED); set ADMIN_API_KEYS=<key>[,<key>...] to enable the admin API"
            );
        }
        if config.callers.allow_unauthenticated {
            warn!(
                "ALLOW_UNAUTHENTICATED_CALLERS=true: TokenAuthority calls need no credential; only on a trusted network"
            );
        }
        let tls = match &config.tls {
            Some(settings) => {
                let certificates = Certificates::load(settings)?;
                Some(TlsServing {
                    server_config: tls::server_config(certificates.clone(), settings)?,
                    certificates,
                    reload_interval: settings.reload_interval,
                    handshake_timeout: settings.handshake_timeout,
                })
            }
            None => None,
        };
        let metrics = match config.metrics_addr {
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
        let authority = Arc::new(authority);
        let http = match config.http.address {
            Some(address) => {
                let listener = http::bind(address).await?;
                let address = listener.local_addr()?;
                let discovery = Discovery {
                    issuer: config.tokens.policy.issuer.clone(),
                    public_url: config.http.public_url.clone(),
                    max_age: config.keys.jwks_max_age,
                };
                let router = http::router(HttpState::new(authority.clone(), discovery, address));
                Some(HttpEndpoint {
                    listener,
                    address,
                    router,
                })
            }
            None => None,
        };
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .with_context(|| format!("LISTEN_ADDR: cannot listen on {}", config.listen_addr))?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            local_addr,
            metrics,
            http,
            repository,
            authority,
            keys,
            sessions,
            revocations,
            security_events,
            auth: auth.into_layer(),
            tls,
            limits: config.limits,
            ext_authz_header_prefix: config.ext_authz.header_prefix.clone(),
            reflection: config.callers.reflection,
            clock,
            cleanup: config.cleanup,
            health_check_interval: config.health_check_interval,
            shutdown_timeout: config.shutdown_timeout,
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

    /// Where the HTTP listener (JWKS, discovery) listens, when enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|endpoint| endpoint.address)
    }

    /// Serves until `shutdown` resolves; then health turns NOT_SERVING,
    /// revocation streams end with UNAVAILABLE (so their clients reconnect
    /// elsewhere), in-flight calls finish (up to SHUTDOWN_TIMEOUT), the
    /// background tasks stop, and it returns. A background task that ends by
    /// itself stops the server with an error.
    pub async fn run_until_stopped(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (health, health_service) = tonic_health::server::health_reporter();
        set_health(&health, ServingStatus::Serving).await;
        let metrics = self.metrics.take();
        let http = self.http.take();
        let mut supervisor = self.start_background_tasks(&health, metrics, http);

        let limits = self.limits;
        let tls_enabled = self.tls.is_some();
        let max_request = limits.max_request_bytes;
        let token_authority = TokenAuthorityServer::new(TokenAuthorityService::new(
            self.authority.clone(),
            self.revocations.clone(),
            StreamQuota::new(StreamKind::Revocations, limits.max_revocation_streams_per_caller.get()),
        ))
        .max_decoding_message_size(max_request);
        let admin = TokenAuthorityAdminServer::new(AdminService::new(
            self.authority.clone(),
            self.security_events.clone(),
            StreamQuota::new(StreamKind::SecurityEvents, limits.max_security_streams_per_caller.get()),
        ))
        .max_decoding_message_size(max_request);
        let ext_authz =
            AuthorizationServer::new(ExtAuthzService::new(self.authority.clone(), &self.ext_authz_header_prefix))
                .max_decoding_message_size(max_request);
        let (reflection_v1, reflection_v1alpha) = if self.reflection {
            (
                Some(reflection().build_v1()?.max_decoding_message_size(max_request)),
                Some(reflection().build_v1alpha()?.max_decoding_message_size(max_request)),
            )
        } else {
            (None, None)
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stopped = async {
            let _ = stopped.await;
        };
        let router = Server::builder()
            .max_concurrent_streams(Some(limits.max_streams_per_connection.get()))
            .http2_keepalive_interval(Some(limits.http2_keepalive_interval))
            .http2_keepalive_timeout(Some(limits.http2_keepalive_timeout))
            // Outermost first: every call is timed, then bounded, then its
            // caller checked, before any service sees it.
            .layer(metrics::RpcTimingLayer)
            .layer(CallLimitLayer::new(limits.max_concurrent_calls.get(), limits.request_timeout))
            .layer(self.auth.clone())
            .add_service(health_service.max_decoding_message_size(max_request))
            .add_optional_service(reflection_v1)
            .add_optional_service(reflection_v1alpha)
            .add_service(token_authority)
            .add_service(admin)
            .add_service(ext_authz);
        let server: Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> = match self.tls.take() {
            Some(tls) => {
                let incoming =
                    TlsIncoming::new(self.listener, tls.server_config, tls.handshake_timeout, limits.tcp_keepalive);
                Box::pin(router.serve_with_incoming_shutdown(incoming, stopped))
            }
            // TCP_NODELAY: without it, small gRPC replies can wait 40 ms for
            // a delayed ACK (Nagle's algorithm).
            None => Box::pin(router.serve_with_incoming_shutdown(
                TcpIncoming::from(self.listener).with_nodelay(Some(true)).with_keepalive(Some(limits.tcp_keepalive)),
                stopped,
            )),
        };
        tokio::pin!(server);
        info!(address = %self.local_addr, tls = tls_enabled, "serving gRPC");

        let failure = tokio::select! {
            result = &mut server => {
                self.revocations.shut_down();
                self.security_events.shut_down();
                supervisor.stop().await;
                return result.context("the gRPC server stopped");
            }
            ended = supervisor.task_ended() => Some(ended),
            () = shutdown => None,
        };

        info!("shutting down: health NOT_SERVING, ending revocation streams, finishing in-flight calls");
        set_health(&health, ServingStatus::NotServing).await;
        self.revocations.shut_down();
        self.security_events.shut_down();
        let _ = stop.send(());
        match tokio::time::timeout(self.shutdown_timeout, server).await {
            Ok(result) => result.context("the gRPC server failed while stopping")?,
            Err(_) => warn!(
                timeout = ?self.shutdown_timeout,
                "in-flight calls did not finish within SHUTDOWN_TIMEOUT; stopping anyway"
            ),
        }
        supervisor.stop().await;
        self.repository.close().await;
        if let Some(failure) = failure {
            anyhow::bail!("{failure}; the server stopped");
        }
        info!("stopped");
        Ok(())
    }

    fn start_background_tasks(
        &self,
        health: &HealthReporter,
        metrics: Option<MetricsEndpoint>,
        http: Option<HttpEndpoint>,
    ) -> Supervisor {
        let mut supervisor = Supervisor::new();
        // The HTTP and metrics listeners hold connections as the gRPC port does.
        let http_bounds = http::HttpBounds {
            max_connections: self.limits.http_max_connections.get(),
            header_read_timeout: self.limits.request_timeout,
        };
        supervisor.spawn("revocation follower", self.revocations.clone().follow());
        let feed = self.revocations.clone();
        // A change of the keys wakes the follower: it numbers the event
        // (PostgreSQL), tells the other replicas, and fans the key set out.
        supervisor.spawn("signing keys", self.keys.clone().maintain_periodically(move || feed.wake()));
        if let Some(endpoint) = http {
            info!(address = %endpoint.address, "serving HTTP: /.well-known/jwks.json, /.well-known/openid-configuration, /auth");
            supervisor.spawn("HTTP listener", http::serve(endpoint.listener, endpoint.router, http_bounds, "http"));
        }
        if let Some(listener) = self.revocations.listener() {
            supervisor.spawn("revocation listener", listener);
        }
        supervisor
            .spawn("health probe", probe_database(self.repository.clone(), health.clone(), self.health_check_interval));
        supervisor.spawn(
            "cleanup",
            cleanup_periodically(
                self.repository.clone(),
                self.sessions.clone(),
                self.clock.clone(),
                self.cleanup.policy,
                self.cleanup.interval,
            ),
        );
        if let Some(tls) = &self.tls {
            supervisor.spawn("TLS certificate reload", tls.certificates.clone().watch(tls.reload_interval));
        }
        if let Some(endpoint) = metrics {
            info!(address = %endpoint.address, "serving Prometheus metrics on /metrics");
            supervisor.spawn("metrics listener", metrics::serve(endpoint.listener, endpoint.handle, http_bounds));
            supervisor
                .spawn("gauges", collect_gauges(self.repository.clone(), self.sessions.clone(), self.clock.clone()));
        }
        supervisor
    }
}

/// Refreshes the gauges that are not kept up to date as things happen.
async fn collect_gauges(repository: Repository, sessions: Arc<SessionCache>, clock: SharedClock) {
    let mut ticker = tokio::time::interval(GAUGE_INTERVAL);
    loop {
        ticker.tick().await;
        metrics::session_cache_entries(sessions.len());
        match repository.count_live_sessions(clock.now()).await {
            Ok(count) => metrics::live_sessions(count),
            Err(error) => warn!(error = %error, "cannot count live sessions for the metrics"),
        }
    }
}

/// Reflection over our services, Envoy's ext_authz, the health service and
/// the `google.rpc` error details (so grpcurl decodes a `RetryInfo`), so
/// that grpcurl can `list` and `describe` them with no proto file at hand.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::grpc::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(EXT_AUTHZ_FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
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

/// Says at start which key signs, and warns when private keys would be
/// stored as they are.
fn log_key_setup(keys: &KeyStore, config: &Config, clock: &SharedClock) {
    let keyring = keys.keyring();
    let signing = keyring.signing_kid(clock.now()).unwrap_or("none");
    if keys.stores_keys() {
        info!(
            kid = signing,
            algorithm = %config.keys.rotation.algorithm,
            rotation_interval = %humantime::format_duration(config.keys.rotation.interval),
            publish_ahead = %humantime::format_duration(config.keys.rotation.publish_ahead),
            "signing with keys kept in the database, rotated automatically"
        );
        if config.keys.encryption_key.is_none() {
            warn!(
                "KEY_ENCRYPTION_KEY is not set: private signing keys are stored unencrypted in the database; set KEY_ENCRYPTION_KEY or KEY_ENCRYPTION_KEY_FILE (32 bytes, base64: `openssl rand -base64 32`)"
            );
        }
    } else {
        info!(kid = signing, "signing with JWT_SECRET (HS256)");
    }
}
