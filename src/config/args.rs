//! The command line: every setting a flag with an environment variable, and
//! its default, in one place. These structs only describe what an operator
//! can type; `Config::from_args` turns them into typed, checked values.
//!
//! What clap can check by itself it checks here, so the error names the
//! flag and its variable: numbers that must not be zero are `NonZero*`,
//! durations that must be positive go through [`positive_duration`].

use std::{
    net::SocketAddr,
    num::{NonZeroU32, NonZeroUsize},
    path::PathBuf,
    time::Duration,
};

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

use crate::domain::tokens::SigningAlgorithm;

#[derive(Debug, Parser)]
#[command(
    name = "token-authority",
    version,
    about = "Issues, refreshes, verifies and revokes JWT session tokens over gRPC."
)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the gRPC server (applies pending migrations first).
    Serve(Box<ServeArgs>),
    /// Applies pending database migrations and exits.
    Migrate(DatabaseArgs),
    /// Deletes expired sessions and old revocation events once, and exits.
    Cleanup(Box<CleanupArgs>),
    /// Manages users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Lists, rotates and removes the signing keys kept in the database.
    Keys {
        #[command(subcommand)]
        command: Box<KeysCommand>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Lists the stored keys: kid, algorithm, state and when each moves on.
    List(KeysArgs),
    /// Publishes a next key now; it signs after KEY_PUBLISH_AHEAD.
    Rotate(KeysArgs),
    /// Removes a key at once (a compromised key): every token it signed
    /// stops verifying, and its sessions cannot be refreshed.
    Remove(RemoveKeyArgs),
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub tokens: TokenArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Debug, Args)]
pub struct RemoveKeyArgs {
    /// The key to remove.
    #[arg(long)]
    pub kid: String,
    #[command(flatten)]
    pub keys: KeysArgs,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Creates a user; reads the password from standard input.
    Create(CreateUserArgs),
}

#[derive(Debug, Args)]
pub struct CreateUserArgs {
    #[arg(long)]
    pub username: String,
    /// A role to grant; repeat for several.
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub argon2: Argon2Args,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub tokens: TokenArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,
    /// Which logs to keep, as tracing filter directives (`info`, `token_authority=debug`).
    #[arg(long, env = "RUST_LOG", default_value = "info", global = true)]
    pub log_filter: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address the gRPC server listens on (port 0 picks a free port).
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:50051")]
    pub listen_addr: SocketAddr,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub tokens: TokenArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub ext_authz: ExtAuthzArgs,
    #[command(flatten)]
    pub argon2: Argon2Args,
    #[command(flatten)]
    pub callers: CallerArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// A heartbeat goes out on a revocation stream idle this long.
    #[arg(long, env = "REVOCATION_HEARTBEAT", default_value = "15s", value_parser = positive_duration)]
    pub revocation_heartbeat: Duration,
    /// Events kept in memory for subscribers; one further behind reads the database.
    #[arg(long, env = "REVOCATION_BUFFER", default_value = "4096")]
    pub revocation_buffer: NonZeroUsize,
    /// The outbox is read at least this often, besides every local commit.
    #[arg(long, env = "REVOCATION_POLL_INTERVAL", default_value = "1s", value_parser = positive_duration)]
    pub revocation_poll_interval: Duration,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// How many sessions Verify keeps in memory (about 320 bytes each).
    #[arg(long, env = "SESSION_CACHE_CAPACITY", default_value = "1000000")]
    pub session_cache_capacity: NonZeroUsize,
    /// How many verified tokens Verify remembers, to skip their signature
    /// check and parsing when they come again (about 800 bytes each); 0: none.
    #[arg(long, env = "VERIFIED_TOKEN_CACHE_CAPACITY", default_value_t = 50_000)]
    pub verified_token_cache_capacity: usize,
    #[command(flatten)]
    pub security: SecurityArgs,
    /// Threads that run argon2 (default: one per core).
    #[arg(long, env = "PASSWORD_HASHING_THREADS")]
    pub password_hashing_threads: Option<NonZeroUsize>,
    /// Password checks that may wait for a thread; beyond, calls get RESOURCE_EXHAUSTED.
    #[arg(long, env = "PASSWORD_HASHING_QUEUE", default_value = "256")]
    pub password_hashing_queue: NonZeroUsize,
    /// Where Prometheus scrapes `/metrics` (for example 127.0.0.1:9464); unset: no metrics.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// How often health checks the database.
    #[arg(long, env = "HEALTH_CHECK_INTERVAL", default_value = "2s", value_parser = positive_duration)]
    pub health_check_interval: Duration,
    /// How long shutdown waits for in-flight calls before exiting anyway.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub shutdown_timeout: Duration,
}

/// Who may call, and how they prove it.
#[derive(Debug, Args)]
pub struct CallerArgs {
    /// Keys that authorise admin calls (`authorization: Bearer <key>`), comma-separated,
    /// each `name:key` (the name shows in logs) or a bare key. Admin keys may make
    /// service calls too. With none, every admin call is refused.
    #[arg(long, env = "ADMIN_API_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub admin_api_keys: Vec<SecretString>,
    /// A file holding the admin keys, one per line (or comma-separated), as a secret mount provides it.
    #[arg(long, env = "ADMIN_API_KEYS_FILE")]
    pub admin_api_keys_file: Option<PathBuf>,
    /// Keys of the backend services that call TokenAuthority (Login, Verify, WatchRevocations, ...),
    /// comma-separated, `name:key` or bare.
    #[arg(long, env = "SERVICE_API_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub service_api_keys: Vec<SecretString>,
    /// A file holding the service keys, one per line (or comma-separated).
    #[arg(long, env = "SERVICE_API_KEYS_FILE")]
    pub service_api_keys_file: Option<PathBuf>,
    /// Let TokenAuthority calls through without a service key or client certificate (a
    /// trusted network only). Admin calls always need an admin credential.
    #[arg(long, env = "ALLOW_UNAUTHENTICATED_CALLERS", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_unauthenticated_callers: bool,
    /// Serve gRPC server reflection (what `grpcurl list` and `describe` read), to anyone.
    #[arg(long, env = "REFLECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub reflection: bool,
}

/// TLS for the gRPC port, and client certificates.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// The server's certificate chain (PEM). With TLS_KEY_FILE, gRPC is served over TLS only.
    #[arg(long, env = "TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// The private key of TLS_CERT_FILE (PEM).
    #[arg(long, env = "TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// CA certificates (PEM): every client must present a certificate signed by one (mTLS).
    /// Its name (subject CN, else its first DNS or URI name) identifies the caller.
    #[arg(long, env = "TLS_CLIENT_CA_FILE")]
    pub tls_client_ca_file: Option<PathBuf>,
    /// Client certificate names that may make admin calls, comma-separated.
    #[arg(long, env = "TLS_ADMIN_CLIENTS", value_delimiter = ',')]
    pub tls_admin_clients: Vec<String>,
    /// How often the certificate and key files are checked for a renewal (SIGHUP checks at once).
    #[arg(long, env = "TLS_RELOAD_INTERVAL", default_value = "30s", value_parser = positive_duration)]
    pub tls_reload_interval: Duration,
    /// A TLS handshake not finished within this is dropped.
    #[arg(long, env = "TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub tls_handshake_timeout: Duration,
    /// Serve plaintext gRPC on an address other than loopback (a trusted network, or TLS
    /// terminated in front). Without it, such a LISTEN_ADDR needs TLS_CERT_FILE.
    #[arg(long, env = "ALLOW_PLAINTEXT", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_plaintext: bool,
}

/// What one caller, one connection or one call may hold.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Calls (HTTP/2 streams) open at once on one connection; more are refused.
    #[arg(long, env = "MAX_STREAMS_PER_CONNECTION", default_value = "128")]
    pub max_streams_per_connection: NonZeroU32,
    /// Calls in progress at once on the whole server; beyond, RESOURCE_EXHAUSTED at once.
    /// A revocation stream counts while it opens; open ones are capped per caller.
    #[arg(long, env = "MAX_CONCURRENT_CALLS", default_value = "1024")]
    pub max_concurrent_calls: NonZeroUsize,
    /// A call (its request arriving, and its answer computed) is cut off after this.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub request_timeout: Duration,
    /// The largest request message accepted, in KiB.
    #[arg(long, env = "MAX_REQUEST_KIB", default_value = "16")]
    pub max_request_kib: NonZeroUsize,
    /// Revocation streams open at once per caller (key or client certificate name).
    #[arg(long, env = "MAX_REVOCATION_STREAMS_PER_CALLER", default_value = "256")]
    pub max_revocation_streams_per_caller: NonZeroUsize,
    /// Connections open at once on the HTTP listener, and again on the
    /// metrics listener; more wait to be accepted.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value = "1024")]
    pub http_max_connections: NonZeroUsize,
    /// Security event streams (WatchSecurityEvents) open at once per admin.
    #[arg(long, env = "MAX_SECURITY_STREAMS_PER_CALLER", default_value = "16")]
    pub max_security_streams_per_caller: NonZeroUsize,
    /// An HTTP/2 ping goes out on a connection idle this long.
    #[arg(long, env = "HTTP2_KEEPALIVE_INTERVAL", default_value = "60s", value_parser = positive_duration)]
    pub http2_keepalive_interval: Duration,
    /// A connection whose ping is not answered within this is closed.
    #[arg(long, env = "HTTP2_KEEPALIVE_TIMEOUT", default_value = "20s", value_parser = positive_duration)]
    pub http2_keepalive_timeout: Duration,
    /// TCP keepalive probes start on a connection idle this long (dead peers are dropped).
    #[arg(long, env = "TCP_KEEPALIVE", default_value = "60s", value_parser = positive_duration)]
    pub tcp_keepalive: Duration,
}

/// Session binding, refresh limits, the login throttle and anomaly detection.
#[derive(Debug, Args)]
pub struct SecurityArgs {
    /// What a mismatch between a session and the client presenting its token does:
    /// off (nothing is compared), log (a security event; the call is answered as usual),
    /// enforce (a security event and a refusal). Under log and enforce, a retry within
    /// the rotation grace period from another client is reuse.
    #[arg(long, env = "SESSION_BINDING", value_enum, default_value_t = BindingModeArg::Log)]
    pub session_binding: BindingModeArg,
    /// What a session is bound to, comma-separated: device_id, ip_prefix, user_agent_family.
    #[arg(
        long,
        env = "SESSION_BINDING_ATTRIBUTES",
        value_enum,
        value_delimiter = ',',
        default_value = "device_id,ip_prefix,user_agent_family"
    )]
    pub session_binding_attributes: Vec<BoundAttributeArg>,
    /// Leading bits of an IPv4 address that make its network for the binding.
    #[arg(long, env = "SESSION_BINDING_IPV4_PREFIX", default_value_t = 24, value_parser = clap::value_parser!(u8).range(0..=32))]
    pub session_binding_ipv4_prefix: u8,
    /// Leading bits of an IPv6 address that make its network for the binding.
    #[arg(long, env = "SESSION_BINDING_IPV6_PREFIX", default_value_t = 64, value_parser = clap::value_parser!(u8).range(0..=128))]
    pub session_binding_ipv6_prefix: u8,
    /// A session rotates at most once per this interval (RESOURCE_EXHAUSTED beyond); 0s: no limit.
    #[arg(long, env = "REFRESH_MIN_INTERVAL", default_value = "30s", value_parser = duration)]
    pub refresh_min_interval: Duration,
    /// No refresh extends a session past this long after its login.
    #[arg(long, env = "SESSION_MAX_LIFETIME", default_value = "90d", value_parser = whole_seconds)]
    pub session_max_lifetime: Duration,
    /// The login throttle's window: each limit below is per this long.
    #[arg(long, env = "LOGIN_THROTTLE_WINDOW", default_value = "15m", value_parser = positive_duration)]
    pub login_throttle_window: Duration,
    /// Failed password checks per username and client address per window; 0: no limit.
    #[arg(long, env = "LOGIN_ATTEMPTS_PER_USER_AND_IP", default_value_t = 10)]
    pub login_attempts_per_user_and_ip: u32,
    /// Failed password checks per username per window, from networks the user has not
    /// logged in from (must exceed LOGIN_ATTEMPTS_PER_USER_AND_IP); 0: no limit.
    #[arg(long, env = "LOGIN_ATTEMPTS_PER_USER", default_value_t = 100)]
    pub login_attempts_per_user: u32,
    /// Failed password checks per client address per window, across usernames; 0: no limit.
    #[arg(long, env = "LOGIN_ATTEMPTS_PER_IP", default_value_t = 100)]
    pub login_attempts_per_ip: u32,
    /// Sessions opened from one address per window before a security event; 0: no rule.
    #[arg(long, env = "SECURITY_SESSIONS_PER_IP", default_value_t = 100)]
    pub security_sessions_per_ip: u32,
    /// Security events that also revoke their session, comma-separated: binding_mismatch,
    /// refresh_limited, or none. Reuse always revokes.
    #[arg(
        long,
        env = "SECURITY_REVOKE_ON",
        value_delimiter = ',',
        default_value = "binding_mismatch"
    )]
    pub security_revoke_on: Vec<String>,
    /// Replaced by LOGIN_ATTEMPTS_PER_USER_AND_IP, LOGIN_ATTEMPTS_PER_USER and
    /// LOGIN_ATTEMPTS_PER_IP; still read, so that a deployment setting it is told.
    #[arg(long, env = "LOGIN_ATTEMPTS_PER_MINUTE", hide = true)]
    pub login_attempts_per_minute: Option<String>,
    /// The same kind of security event about the same session, user or address is
    /// recorded at most once per this interval on each replica (metrics count every one).
    #[arg(long, env = "SECURITY_EVENT_INTERVAL", default_value = "1m", value_parser = duration)]
    pub security_event_interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BindingModeArg {
    Off,
    Log,
    Enforce,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[clap(rename_all = "snake_case")]
pub enum BoundAttributeArg {
    DeviceId,
    IpPrefix,
    UserAgentFamily,
}

#[derive(Debug, Args)]
pub struct RetentionArgs {
    /// How often expired sessions and old revocation events are deleted.
    #[arg(long, env = "CLEANUP_INTERVAL", default_value = "1h", value_parser = positive_duration)]
    pub cleanup_interval: Duration,
    /// Revocation events are kept for the longest token lifetime plus this.
    #[arg(long, env = "REVOCATION_RETENTION_MARGIN", default_value = "1h", value_parser = duration)]
    pub revocation_retention_margin: Duration,
    /// Audit records (security events included) are kept this long.
    #[arg(long, env = "AUDIT_RETENTION", default_value = "90d", value_parser = positive_duration)]
    pub audit_retention: Duration,
    /// A device or network a user has not logged in from for this long is new again.
    #[arg(long, env = "KNOWN_CLIENT_RETENTION", default_value = "90d", value_parser = positive_duration)]
    pub known_client_retention: Duration,
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// `sqlite:<file>` (created if missing) or `postgres://user:password@host/db`
    /// [default: sqlite:token-authority.db].
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretString>,
    /// A file holding DATABASE_URL (its password), as a secret mount provides it.
    #[arg(long, env = "DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,
    /// Most connections the pool opens.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value = "10")]
    pub database_max_connections: NonZeroU32,
    /// How long a query waits for a free connection before failing UNAVAILABLE.
    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = positive_duration)]
    pub database_acquire_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// HS256 secret, at least 32 bytes. With JWT_ALGORITHM unset or HS256 it
    /// signs, as before keys were kept in the database; with another
    /// JWT_ALGORITHM it signs only until the first stored key does, then
    /// verifies its tokens. Unset: keys are generated, rotated and kept in
    /// the database.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<SecretString>,
    /// A file holding JWT_SECRET, as a secret mount provides it.
    #[arg(long, env = "JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// More HS256 secrets, comma-separated, that verify but never sign: the
    /// former secret (its tokens keep working until they expire) or the next
    /// one, while rotating JWT_SECRET or moving off HS256 without logging
    /// anybody out.
    #[arg(long, env = "JWT_ACCEPTED_SECRETS", value_delimiter = ',', hide_env_values = true)]
    pub jwt_accepted_secrets: Vec<SecretString>,
    /// A file holding JWT_ACCEPTED_SECRETS, one per line (or comma-separated).
    #[arg(long, env = "JWT_ACCEPTED_SECRETS_FILE")]
    pub jwt_accepted_secrets_file: Option<PathBuf>,
    /// Lifetime of a token.
    #[arg(long, env = "JWT_EXPIRES_IN", default_value = "24h", value_parser = whole_seconds)]
    pub jwt_expires_in: Duration,
    /// Lifetime of a token issued with remember_me.
    #[arg(long, env = "JWT_REMEMBER_ME_EXPIRES_IN", default_value = "30d", value_parser = whole_seconds)]
    pub jwt_remember_me_expires_in: Duration,
    /// Verify reports needs_refresh this long before expiry.
    #[arg(long, env = "JWT_REFRESH_WINDOW", default_value = "2h", value_parser = duration)]
    pub jwt_refresh_window: Duration,
    /// A token retired by Refresh still works this long (a client's retry).
    #[arg(long, env = "JWT_ROTATION_GRACE", default_value = "10s", value_parser = duration)]
    pub jwt_rotation_grace: Duration,
    /// The `iss` claim.
    #[arg(long, env = "JWT_ISSUER", default_value = "token-authority", value_parser = not_empty)]
    pub jwt_issuer: String,
    /// The `aud` claim.
    #[arg(long, env = "JWT_AUDIENCE", default_value = "token-authority", value_parser = not_empty)]
    pub jwt_audience: String,
    /// Clock skew tolerated when checking `exp` and `nbf`.
    #[arg(long, env = "JWT_LEEWAY", default_value = "5s", value_parser = duration)]
    pub jwt_leeway: Duration,
}

/// The signing keys the server makes, rotates and keeps in the database.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// The algorithm that signs: EdDSA (Ed25519), ES256, RS256 or HS256.
    /// Default: HS256 with JWT_SECRET when it is set, EdDSA otherwise.
    #[arg(long, env = "JWT_ALGORITHM", value_parser = algorithm)]
    pub jwt_algorithm: Option<SigningAlgorithm>,
    /// How long a key signs before its successor takes over.
    #[arg(long, env = "KEY_ROTATION_INTERVAL", default_value = "30d", value_parser = positive_duration)]
    pub key_rotation_interval: Duration,
    /// How long a key is published (JWKS, revocation stream) before it signs.
    #[arg(long, env = "KEY_PUBLISH_AHEAD", default_value = "1h", value_parser = positive_duration)]
    pub key_publish_ahead: Duration,
    /// How often every replica re-reads the keys and checks whether a
    /// rotation or a deletion is due (besides whenever told of a change).
    #[arg(long, env = "KEY_REFRESH_INTERVAL", default_value = "1m", value_parser = positive_duration)]
    pub key_refresh_interval: Duration,
    /// Seals the private keys in the database (AES-256-GCM): 32 bytes in
    /// base64, for example from `openssl rand -base64 32`.
    #[arg(long, env = "KEY_ENCRYPTION_KEY", hide_env_values = true)]
    pub key_encryption_key: Option<SecretString>,
    /// A file holding KEY_ENCRYPTION_KEY (base64), as secret mounts provide it.
    #[arg(long, env = "KEY_ENCRYPTION_KEY_FILE")]
    pub key_encryption_key_file: Option<PathBuf>,
}

/// The HTTP/1.1 listener: JWKS, discovery, nginx's auth_request.
#[derive(Debug, Args)]
pub struct HttpArgs {
    /// Serves /.well-known/jwks.json, /.well-known/openid-configuration and
    /// /auth (nginx auth_request) over HTTP/1.1 (for example 0.0.0.0:8080);
    /// unset: no HTTP listener.
    #[arg(long, env = "HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// The URL that clients reach the HTTP listener at (for example
    /// https://auth.example.com), for `jwks_uri` in discovery. Unset: the
    /// request's Host header, over http.
    #[arg(long, env = "HTTP_PUBLIC_URL", value_parser = public_url)]
    pub http_public_url: Option<String>,
}

/// Envoy's external authorization (`envoy.service.auth.v3.Authorization/Check`).
#[derive(Debug, Args)]
pub struct ExtAuthzArgs {
    /// The prefix of the headers an allowed request carries upstream
    /// (`<prefix>user-id`, `<prefix>session-id`, `<prefix>username`,
    /// `<prefix>roles`): lower-case letters, digits and '-'.
    #[arg(long, env = "EXT_AUTHZ_HEADER_PREFIX", default_value = "x-")]
    pub ext_authz_header_prefix: String,
}

#[derive(Debug, Args)]
pub struct Argon2Args {
    /// argon2id memory cost in KiB.
    #[arg(long, env = "ARGON2_MEMORY_KIB", default_value_t = 19_456)]
    pub argon2_memory_kib: u32,
    /// argon2id time cost (passes over memory).
    #[arg(long, env = "ARGON2_ITERATIONS", default_value = "2")]
    pub argon2_iterations: NonZeroU32,
    /// argon2id lanes.
    #[arg(long, env = "ARGON2_PARALLELISM", default_value = "1")]
    pub argon2_parallelism: NonZeroU32,
}

impl ServeArgs {
    /// The settings as they are with no flag and no environment variable:
    /// the one source of the defaults, for `Config::default`.
    pub fn defaults() -> Self {
        use clap::{CommandFactory, FromArgMatches};
        let command = DefaultsOnly::command().mut_args(|arg| arg.env(None));
        let matches = command.try_get_matches_from(["token-authority"]).expect("the defaults parse");
        DefaultsOnly::from_arg_matches(&matches).expect("the defaults parse").serve
    }
}

/// `ServeArgs` alone, so that its defaults can be parsed without a subcommand.
#[derive(Debug, Parser)]
struct DefaultsOnly {
    #[command(flatten)]
    serve: ServeArgs,
}

fn duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value).map_err(|error| format!("{error} (write durations like 90s, 15m, 24h, 30d)"))
}

fn positive_duration(value: &str) -> Result<Duration, String> {
    let parsed = duration(value)?;
    if parsed.is_zero() {
        return Err("must be longer than 0s".into());
    }
    Ok(parsed)
}

/// Token times are whole seconds (JWT `exp` and `iat`).
fn whole_seconds(value: &str) -> Result<Duration, String> {
    let parsed = duration(value)?;
    if parsed < Duration::from_secs(1) || parsed.subsec_nanos() != 0 {
        return Err("must be a whole number of seconds, at least 1s".into());
    }
    Ok(parsed)
}

/// A signing algorithm by its JOSE name, in any case.
fn algorithm(value: &str) -> Result<SigningAlgorithm, String> {
    SigningAlgorithm::ALL
        .into_iter()
        .find(|algorithm| algorithm.as_str().eq_ignore_ascii_case(value))
        .ok_or_else(|| "must be EdDSA, ES256, RS256 or HS256".to_owned())
}

/// An http(s) URL without a trailing slash, a query or a fragment.
fn public_url(value: &str) -> Result<String, String> {
    let rest = value.strip_prefix("https://").or_else(|| value.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.contains(['?', '#', ' ']) => Ok(value.trim_end_matches('/').to_owned()),
        _ => Err("must be an http:// or https:// URL, without query or fragment".into()),
    }
}

fn not_empty(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(value.to_owned())
}
