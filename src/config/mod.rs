//! Configuration, parsed once: the command line and environment (`args`)
//! become one typed [`Config`] at start, with every relation between
//! settings checked and every derived policy (token lifetimes, cleanup
//! retention, argon2 parameters) computed here and nowhere else. A bad value
//! stops the start with a message that names the setting, and never echoes a
//! secret.
//!
//! Tests build a `Config` directly: `Config::default()` holds the same
//! defaults as the command line, because it is parsed from an empty one.

pub mod args;

use std::{
    net::SocketAddr,
    num::{NonZeroU32, NonZeroUsize},
    path::{Path, PathBuf},
    time::Duration,
};

use secrecy::{ExposeSecret, SecretString};

pub use args::{Cli, Command, KeysCommand, LogArgs, LogFormat, UserCommand};

use crate::{
    authority::{CleanupPolicy, RevokeOn, SecurityPolicy},
    domain::{
        TokenLifetimes,
        binding::{BindingMode, BindingPolicy, BoundAttributes},
        password_hash::Argon2Settings,
        throttle::ThrottlePolicy,
        tokens::{KeyEncryptionKey, MIN_HMAC_SECRET_BYTES, RotationPolicy, SigningAlgorithm, TokenPolicy},
    },
    repository::DatabaseConfig,
    revocations::FeedSettings,
};

/// Everything `serve` needs, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where gRPC listens; port 0 picks a free port (tests).
    pub listen_addr: SocketAddr,
    pub database: DatabaseConfig,
    pub tokens: TokenConfig,
    pub keys: KeyConfig,
    pub http: HttpConfig,
    pub ext_authz: ExtAuthzConfig,
    pub argon2: Argon2Settings,
    pub password_hashing: PasswordHashingConfig,
    pub api_keys: ApiKeyConfig,
    pub callers: CallerConfig,
    /// TLS on the gRPC port; `None`: plaintext (loopback, or ALLOW_PLAINTEXT).
    pub tls: Option<TlsConfig>,
    pub limits: Limits,
    pub revocations: FeedSettings,
    pub cleanup: CleanupConfig,
    /// Sessions Verify keeps in memory.
    pub session_cache_capacity: NonZeroUsize,
    /// Verified tokens Verify remembers; 0 remembers none.
    pub verified_token_cache_capacity: usize,
    /// Session binding, refresh limits, the login throttle, anomaly actions.
    pub security: SecurityPolicy,
    /// Where Prometheus scrapes `/metrics`; `None`: no metrics.
    pub metrics_addr: Option<SocketAddr>,
    pub health_check_interval: Duration,
    pub shutdown_timeout: Duration,
}

/// How tokens are signed and how long they live.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// The HS256 secret that signs; `None`: the key kept in the database.
    pub signing_secret: Option<SecretString>,
    /// Secrets that verify but never sign (a rotation in progress).
    pub accepted_secrets: Vec<SecretString>,
    pub lifetimes: TokenLifetimes,
    pub policy: TokenPolicy,
}

/// Which keys sign, how they rotate, how they are kept.
#[derive(Debug, Clone)]
pub struct KeyConfig {
    /// The algorithm of new keys (JWT_ALGORITHM, resolved), how long each
    /// signs, how long ahead it is published, how long it is kept after.
    pub rotation: RotationPolicy,
    /// Whether keys are made, rotated and kept in the database; `false`
    /// when JWT_SECRET signs (HS256), as before.
    pub stored: bool,
    /// How often every replica re-reads the key set (besides when told).
    pub refresh_interval: Duration,
    /// Seals private keys at rest; `None`: stored as they are (a warning at
    /// start).
    pub encryption_key: Option<KeyEncryptionKey>,
    /// The `max-age` of the published JWKS: well under the publish-ahead,
    /// so that a cached copy always holds the next key before it signs.
    pub jwks_max_age: Duration,
}

/// The HTTP/1.1 listener (JWKS and discovery).
#[derive(Debug, Clone, Default)]
pub struct HttpConfig {
    /// `None`: no HTTP listener.
    pub address: Option<SocketAddr>,
    /// The URL clients reach it at, for discovery; `None`: the Host header.
    pub public_url: Option<String>,
}

/// Envoy's external authorization.
#[derive(Debug, Clone)]
pub struct ExtAuthzConfig {
    /// Prefixed to each identity header's name (`x-` gives `x-user-id`).
    pub header_prefix: String,
}

/// Longer prefixes make header names no proxy expects.
const MAX_HEADER_PREFIX_BYTES: usize = 64;

impl ExtAuthzConfig {
    /// Lower case only: HTTP/2 forbids upper-case header names, and Envoy
    /// passes them in lower case. Non-empty, so that a typo cannot make the
    /// headers bare `roles` or `username`, names an upstream may already use.
    pub fn from_args(args: args::ExtAuthzArgs) -> Result<Self, ConfigError> {
        let prefix = args.ext_authz_header_prefix;
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if prefix.is_empty() || prefix.len() > MAX_HEADER_PREFIX_BYTES || !prefix.chars().all(allowed) {
            return Err(invalid(
                "EXT_AUTHZ_HEADER_PREFIX",
                format!(
                    "{prefix:?} must be 1 to {MAX_HEADER_PREFIX_BYTES} lower-case letters, digits or '-' (for example `x-` or `x-auth-`)"
                ),
            ));
        }
        Ok(Self { header_prefix: prefix })
    }
}

/// A cached JWKS is at most this old, whatever KEY_PUBLISH_AHEAD says.
const MAX_JWKS_MAX_AGE: Duration = Duration::from_secs(300);

/// The argon2 threads and their queue.
#[derive(Debug, Clone, Copy)]
pub struct PasswordHashingConfig {
    pub threads: NonZeroUsize,
    pub queue: NonZeroUsize,
}

/// Keys that callers present as `authorization: Bearer <key>`, each with the
/// name that logs show for it.
#[derive(Debug, Clone, Default)]
pub struct ApiKeyConfig {
    /// May make admin calls, and every call a service may make.
    pub admin: Vec<ApiKey>,
    /// May make every `TokenAuthority` call, never an admin call.
    pub service: Vec<ApiKey>,
}

/// Who may call without a credential, and what is open to anyone.
#[derive(Debug, Clone, Copy)]
pub struct CallerConfig {
    /// TokenAuthority calls without a service credential are let through
    /// (a trusted network); admin calls still need an admin credential.
    pub allow_unauthenticated: bool,
    /// Server reflection is served (to anyone, like health).
    pub reflection: bool,
}

/// TLS on the gRPC port: the files are read at start and again whenever
/// they change (or on SIGHUP).
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Clients must present a certificate signed by one of these CAs.
    pub client_ca_file: Option<PathBuf>,
    /// Client certificate names that may make admin calls.
    pub admin_clients: Vec<String>,
    pub reload_interval: Duration,
    pub handshake_timeout: Duration,
}

/// What one connection, one call and one caller may hold, so that no
/// client can take the server's memory or every slot for itself.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_streams_per_connection: NonZeroU32,
    pub max_concurrent_calls: NonZeroUsize,
    pub request_timeout: Duration,
    pub max_request_bytes: usize,
    pub max_revocation_streams_per_caller: NonZeroUsize,
    pub max_security_streams_per_caller: NonZeroUsize,
    pub http_max_connections: NonZeroUsize,
    pub http2_keepalive_interval: Duration,
    pub http2_keepalive_timeout: Duration,
    pub tcp_keepalive: Duration,
}

/// The largest request the API has: ChangePassword with an 8 KiB token and
/// two 1 KiB passwords. A smaller MAX_REQUEST_KIB would refuse valid calls.
const MIN_REQUEST_KIB: usize = 12;

#[derive(Debug, Clone)]
pub struct ApiKey {
    pub name: String,
    pub key: SecretString,
}

impl ApiKey {
    pub fn new(name: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            key: SecretString::from(key.into()),
        }
    }

    /// Each of `values` is `name:key` or a bare key, which is named by its
    /// kind and position (`admin-1`, ...). A prefix before the first `:` that
    /// is not a plain name (letters, digits, `-`, `_`, `.`) belongs to a bare
    /// key. Errors name `setting` and never echo a key.
    fn parse_all(setting: &'static str, kind: &str, values: &[SecretString]) -> Result<Vec<Self>, ConfigError> {
        let plain = |name: &str| {
            !name.is_empty()
                && name.len() <= MAX_KEY_NAME_BYTES
                && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        let mut keys: Vec<Self> = Vec::with_capacity(values.len());
        for (index, value) in values.iter().enumerate() {
            let value = value.expose_secret();
            let (name, key) = match value.split_once(':') {
                Some((name, key)) if plain(name) => (name.to_owned(), key),
                _ => (format!("{kind}-{}", index + 1), value),
            };
            if key.len() < MIN_API_KEY_BYTES {
                return Err(invalid(
                    setting,
                    format!("every key must be at least {MIN_API_KEY_BYTES} characters (key {} is not)", index + 1),
                ));
            }
            if keys.iter().any(|other| other.name == name) {
                return Err(invalid(setting, format!("two keys are named {name:?}")));
            }
            keys.push(Self::new(name, key));
        }
        Ok(keys)
    }
}

/// Admin and service keys shorter than this are refused at start.
pub const MIN_API_KEY_BYTES: usize = 16;
/// Key names are short and plain, so that they read well in logs.
const MAX_KEY_NAME_BYTES: usize = 64;

/// When and what the background cleanup deletes.
#[derive(Debug, Clone, Copy)]
pub struct CleanupConfig {
    pub interval: Duration,
    pub policy: CleanupPolicy,
}

/// A setting whose value parses but cannot work.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub problem: String,
}

fn invalid(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        problem: problem.into(),
    }
}

impl Config {
    /// Checks what clap cannot (relations between settings, domain limits)
    /// and computes every derived value.
    pub fn from_args(args: args::ServeArgs) -> Result<Self, ConfigError> {
        let tokens = TokenConfig::from_args(args.tokens)?;
        let cleanup = CleanupConfig::from_args(&args.retention, &tokens);
        let tls = TlsConfig::from_args(&args.tls)?;
        if tls.is_none() && !args.listen_addr.ip().is_loopback() && !args.tls.allow_plaintext {
            return Err(invalid(
                "LISTEN_ADDR",
                format!(
                    "{} is not a loopback address: serve TLS there (TLS_CERT_FILE and TLS_KEY_FILE), or set ALLOW_PLAINTEXT=true on a trusted network",
                    args.listen_addr
                ),
            ));
        }
        let callers = args.callers;
        let admin = secrets_from(
            "ADMIN_API_KEYS",
            "ADMIN_API_KEYS_FILE",
            callers.admin_api_keys,
            callers.admin_api_keys_file.as_deref(),
        )?;
        let service = secrets_from(
            "SERVICE_API_KEYS",
            "SERVICE_API_KEYS_FILE",
            callers.service_api_keys,
            callers.service_api_keys_file.as_deref(),
        )?;
        let security = security_policy(&args.security, &tokens.lifetimes)?;
        Ok(Self {
            listen_addr: args.listen_addr,
            keys: KeyConfig::from_args(args.keys, &tokens)?,
            http: HttpConfig {
                address: args.http.http_addr,
                public_url: args.http.http_public_url,
            },
            ext_authz: ExtAuthzConfig::from_args(args.ext_authz)?,
            database: database_config(args.database)?,
            argon2: argon2_settings(&args.argon2)?,
            password_hashing: PasswordHashingConfig {
                threads: args
                    .password_hashing_threads
                    .unwrap_or_else(|| std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)),
                queue: args.password_hashing_queue,
            },
            api_keys: ApiKeyConfig {
                admin: ApiKey::parse_all("ADMIN_API_KEYS", "admin", &admin)?,
                service: ApiKey::parse_all("SERVICE_API_KEYS", "service", &service)?,
            },
            callers: CallerConfig {
                allow_unauthenticated: callers.allow_unauthenticated_callers,
                reflection: callers.reflection,
            },
            tls,
            limits: Limits::from_args(&args.limits)?,
            revocations: FeedSettings {
                heartbeat: args.revocation_heartbeat,
                poll_interval: args.revocation_poll_interval,
                buffer: args.revocation_buffer,
                rotation_grace: tokens.lifetimes.rotation_grace,
            },
            cleanup,
            tokens,
            session_cache_capacity: args.session_cache_capacity,
            verified_token_cache_capacity: args.verified_token_cache_capacity,
            security,
            metrics_addr: args.metrics_addr,
            health_check_interval: args.health_check_interval,
            shutdown_timeout: args.shutdown_timeout,
        })
    }

    /// Fails closed: refuses a configuration in which callers must prove
    /// who they are but no credential could ever be presented. Checked when
    /// the server is built, so that a `Config` made in code is held to it too.
    pub fn check_caller_credentials(&self) -> Result<(), ConfigError> {
        let client_certificates = self.tls.as_ref().is_some_and(|tls| tls.client_ca_file.is_some());
        if self.callers.allow_unauthenticated || !self.api_keys.service.is_empty() || client_certificates {
            return Ok(());
        }
        Err(invalid(
            "SERVICE_API_KEYS",
            "callers must authenticate, but no service credential is configured: set SERVICE_API_KEYS (or SERVICE_API_KEYS_FILE) for backend services, or TLS_CLIENT_CA_FILE for client certificates; on a trusted network, ALLOW_UNAUTHENTICATED_CALLERS=true turns the check off",
        ))
    }
}

impl Default for Config {
    /// The defaults of the command line, with nothing set.
    fn default() -> Self {
        Self::from_args(args::ServeArgs::defaults()).expect("the defaults are valid")
    }
}

impl TokenConfig {
    pub fn from_args(mut args: args::TokenArgs) -> Result<Self, ConfigError> {
        args.jwt_secret =
            secret_from("JWT_SECRET", "JWT_SECRET_FILE", args.jwt_secret, args.jwt_secret_file.as_deref())?;
        args.jwt_accepted_secrets = secrets_from(
            "JWT_ACCEPTED_SECRETS",
            "JWT_ACCEPTED_SECRETS_FILE",
            std::mem::take(&mut args.jwt_accepted_secrets),
            args.jwt_accepted_secrets_file.as_deref(),
        )?;
        let lifetimes = TokenLifetimes {
            standard: args.jwt_expires_in,
            remember_me: args.jwt_remember_me_expires_in,
            refresh_window: args.jwt_refresh_window,
            rotation_grace: args.jwt_rotation_grace,
        };
        if lifetimes.refresh_window >= lifetimes.standard {
            return Err(invalid(
                "JWT_REFRESH_WINDOW",
                format!("must be shorter than JWT_EXPIRES_IN ({})", humantime::format_duration(lifetimes.standard)),
            ));
        }
        if lifetimes.rotation_grace >= lifetimes.standard {
            return Err(invalid(
                "JWT_ROTATION_GRACE",
                format!("must be shorter than JWT_EXPIRES_IN ({})", humantime::format_duration(lifetimes.standard)),
            ));
        }
        let named = |setting| move |secret: &SecretString| (setting, secret.expose_secret().len());
        let lengths = args.jwt_secret.iter().map(named("JWT_SECRET"));
        for (setting, length) in lengths.chain(args.jwt_accepted_secrets.iter().map(named("JWT_ACCEPTED_SECRETS"))) {
            if length < MIN_HMAC_SECRET_BYTES {
                return Err(invalid(
                    setting,
                    format!("every secret must be at least {MIN_HMAC_SECRET_BYTES} bytes (got {length})"),
                ));
            }
        }
        Ok(Self {
            signing_secret: args.jwt_secret,
            accepted_secrets: args.jwt_accepted_secrets,
            lifetimes,
            policy: TokenPolicy {
                issuer: args.jwt_issuer,
                audience: args.jwt_audience,
                leeway: args.jwt_leeway,
            },
        })
    }
}

impl KeyConfig {
    pub fn from_args(args: args::KeyArgs, tokens: &TokenConfig) -> Result<Self, ConfigError> {
        let algorithm = match (args.jwt_algorithm, &tokens.signing_secret) {
            (Some(algorithm), _) => algorithm,
            (None, Some(_)) => SigningAlgorithm::Hs256,
            (None, None) => SigningAlgorithm::EdDsa,
        };
        if args.key_publish_ahead >= args.key_rotation_interval {
            return Err(invalid(
                "KEY_PUBLISH_AHEAD",
                format!(
                    "must be shorter than KEY_ROTATION_INTERVAL ({})",
                    humantime::format_duration(args.key_rotation_interval)
                ),
            ));
        }
        if args.key_refresh_interval > args.key_publish_ahead / 4 {
            return Err(invalid(
                "KEY_REFRESH_INTERVAL",
                format!(
                    "must be at most a quarter of KEY_PUBLISH_AHEAD ({}), so that every replica loads a key well before it signs",
                    humantime::format_duration(args.key_publish_ahead)
                ),
            ));
        }
        let encryption_key = match (args.key_encryption_key, args.key_encryption_key_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "KEY_ENCRYPTION_KEY_FILE",
                    "set KEY_ENCRYPTION_KEY or KEY_ENCRYPTION_KEY_FILE, not both",
                ));
            }
            (Some(text), None) => Some(
                KeyEncryptionKey::from_base64(text.expose_secret())
                    .map_err(|error| invalid("KEY_ENCRYPTION_KEY", error.to_string()))?,
            ),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path).map_err(|error| {
                    invalid("KEY_ENCRYPTION_KEY_FILE", format!("cannot read {}: {error}", path.display()))
                })?;
                Some(
                    KeyEncryptionKey::from_base64(&text)
                        .map_err(|error| invalid("KEY_ENCRYPTION_KEY_FILE", error.to_string()))?,
                )
            }
            (None, None) => None,
        };
        let lifetimes = &tokens.lifetimes;
        let jwks_max_age = Duration::from_secs((args.key_publish_ahead / 10).min(MAX_JWKS_MAX_AGE).as_secs());
        Ok(Self {
            rotation: RotationPolicy {
                algorithm,
                interval: args.key_rotation_interval,
                publish_ahead: args.key_publish_ahead,
                // A key's last token stays valid this long after it signed it.
                retention: lifetimes.standard.max(lifetimes.remember_me) + tokens.policy.leeway,
            },
            stored: !(algorithm == SigningAlgorithm::Hs256 && tokens.signing_secret.is_some()),
            refresh_interval: args.key_refresh_interval,
            encryption_key,
            jwks_max_age,
        })
    }
}

impl CleanupConfig {
    pub fn from_args(args: &args::RetentionArgs, tokens: &TokenConfig) -> Self {
        let lifetimes = &tokens.lifetimes;
        Self {
            interval: args.cleanup_interval,
            policy: CleanupPolicy {
                // Past the leeway, no check accepts the token any more.
                session_grace: tokens.policy.leeway + Duration::from_secs(60),
                event_retention: lifetimes.standard.max(lifetimes.remember_me) + args.revocation_retention_margin,
                audit_retention: args.audit_retention,
                known_client_retention: args.known_client_retention,
            },
        }
    }
}

/// Where the database is when neither DATABASE_URL nor DATABASE_URL_FILE is set.
pub const DEFAULT_DATABASE_URL: &str = "sqlite:token-authority.db";

/// The security settings, checked against each other and the token lifetimes.
pub fn security_policy(args: &args::SecurityArgs, lifetimes: &TokenLifetimes) -> Result<SecurityPolicy, ConfigError> {
    use args::{BindingModeArg, BoundAttributeArg};
    if args.login_attempts_per_minute.is_some() {
        return Err(invalid(
            "LOGIN_ATTEMPTS_PER_MINUTE",
            "is replaced by LOGIN_ATTEMPTS_PER_USER_AND_IP, LOGIN_ATTEMPTS_PER_USER and LOGIN_ATTEMPTS_PER_IP, each per LOGIN_THROTTLE_WINDOW; unset it",
        ));
    }
    let longest = lifetimes.standard.max(lifetimes.remember_me);
    if args.session_max_lifetime < longest {
        return Err(invalid(
            "SESSION_MAX_LIFETIME",
            format!(
                "must be at least the longest token lifetime ({}, JWT_EXPIRES_IN or JWT_REMEMBER_ME_EXPIRES_IN)",
                humantime::format_duration(longest)
            ),
        ));
    }
    let per_user_and_ip = NonZeroU32::new(args.login_attempts_per_user_and_ip);
    let per_user = NonZeroU32::new(args.login_attempts_per_user);
    if let (Some(pair), Some(user)) = (per_user_and_ip, per_user)
        && user <= pair
    {
        return Err(invalid(
            "LOGIN_ATTEMPTS_PER_USER",
            format!(
                "must be more than LOGIN_ATTEMPTS_PER_USER_AND_IP ({pair}), so that one address cannot lock a user out of the others"
            ),
        ));
    }
    let mut attributes = BoundAttributes::NONE;
    for attribute in &args.session_binding_attributes {
        match attribute {
            BoundAttributeArg::DeviceId => attributes.device_id = true,
            BoundAttributeArg::IpPrefix => attributes.ip_prefix = true,
            BoundAttributeArg::UserAgentFamily => attributes.user_agent_family = true,
        }
    }
    let mut revoke_on = RevokeOn::default();
    for kind in &args.security_revoke_on {
        match kind.trim() {
            "binding_mismatch" => revoke_on.binding_mismatch = true,
            "refresh_limited" => revoke_on.refresh_limited = true,
            // Reuse always revokes; naming it changes nothing.
            "reuse_detected" | "none" | "" => {}
            other => {
                return Err(invalid(
                    "SECURITY_REVOKE_ON",
                    format!("{other:?} is not one of binding_mismatch, refresh_limited, reuse_detected, none"),
                ));
            }
        }
    }
    Ok(SecurityPolicy {
        binding: BindingPolicy {
            mode: match args.session_binding {
                BindingModeArg::Off => BindingMode::Off,
                BindingModeArg::Log => BindingMode::Log,
                BindingModeArg::Enforce => BindingMode::Enforce,
            },
            attributes,
            ipv4_prefix: args.session_binding_ipv4_prefix,
            ipv6_prefix: args.session_binding_ipv6_prefix,
        },
        refresh_min_interval: (!args.refresh_min_interval.is_zero()).then_some(args.refresh_min_interval),
        session_max_lifetime: args.session_max_lifetime,
        throttle: ThrottlePolicy {
            window: args.login_throttle_window,
            per_user_and_ip,
            per_user,
            per_ip: NonZeroU32::new(args.login_attempts_per_ip),
            sessions_per_ip: NonZeroU32::new(args.security_sessions_per_ip),
        },
        revoke_on,
        event_interval: args.security_event_interval,
    })
}

pub fn database_config(args: args::DatabaseArgs) -> Result<DatabaseConfig, ConfigError> {
    let url = secret_from("DATABASE_URL", "DATABASE_URL_FILE", args.database_url, args.database_url_file.as_deref())?
        .unwrap_or_else(|| SecretString::from(DEFAULT_DATABASE_URL));
    let url = url.expose_secret();
    if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(invalid("DATABASE_URL", "must start with sqlite: or postgres://"));
    }
    Ok(DatabaseConfig {
        url: url.to_owned(),
        max_connections: args.database_max_connections.get(),
        acquire_timeout: args.database_acquire_timeout,
    })
}

impl TlsConfig {
    fn from_args(args: &args::TlsArgs) -> Result<Option<Self>, ConfigError> {
        let (cert_file, key_file) = match (&args.tls_cert_file, &args.tls_key_file) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            (None, None) => {
                if args.tls_client_ca_file.is_some() {
                    return Err(invalid("TLS_CLIENT_CA_FILE", "needs TLS_CERT_FILE and TLS_KEY_FILE"));
                }
                if !args.tls_admin_clients.is_empty() {
                    return Err(invalid("TLS_ADMIN_CLIENTS", "needs TLS_CLIENT_CA_FILE"));
                }
                return Ok(None);
            }
            (Some(_), None) => return Err(invalid("TLS_KEY_FILE", "must be set with TLS_CERT_FILE")),
            (None, Some(_)) => return Err(invalid("TLS_CERT_FILE", "must be set with TLS_KEY_FILE")),
        };
        if !args.tls_admin_clients.is_empty() && args.tls_client_ca_file.is_none() {
            return Err(invalid("TLS_ADMIN_CLIENTS", "needs TLS_CLIENT_CA_FILE"));
        }
        let admin_clients: Vec<String> = args
            .tls_admin_clients
            .iter()
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .collect();
        Ok(Some(Self {
            cert_file,
            key_file,
            client_ca_file: args.tls_client_ca_file.clone(),
            admin_clients,
            reload_interval: args.tls_reload_interval,
            handshake_timeout: args.tls_handshake_timeout,
        }))
    }
}

impl Limits {
    fn from_args(args: &args::LimitArgs) -> Result<Self, ConfigError> {
        if args.max_request_kib.get() < MIN_REQUEST_KIB {
            return Err(invalid(
                "MAX_REQUEST_KIB",
                format!("must be at least {MIN_REQUEST_KIB}: a ChangePassword with an 8 KiB token needs that much"),
            ));
        }
        Ok(Self {
            max_streams_per_connection: args.max_streams_per_connection,
            max_concurrent_calls: args.max_concurrent_calls,
            request_timeout: args.request_timeout,
            max_request_bytes: args.max_request_kib.get().saturating_mul(1024),
            max_revocation_streams_per_caller: args.max_revocation_streams_per_caller,
            max_security_streams_per_caller: args.max_security_streams_per_caller,
            http_max_connections: args.http_max_connections,
            http2_keepalive_interval: args.http2_keepalive_interval,
            http2_keepalive_timeout: args.http2_keepalive_timeout,
            tcp_keepalive: args.tcp_keepalive,
        })
    }
}

/// A secret from its setting, or from the file its `_FILE` twin names (as
/// Kubernetes and other secret mounts provide them), never from both. The
/// file's final line break is not part of the secret. A setting set to the
/// empty string counts as unset (`VAR=` in a compose file or a unit).
fn secret_from(
    setting: &'static str,
    file_setting: &'static str,
    value: Option<SecretString>,
    file: Option<&Path>,
) -> Result<Option<SecretString>, ConfigError> {
    let value = value.filter(|value| !value.expose_secret().is_empty());
    match (value, file) {
        (Some(_), Some(_)) => Err(both_set(setting, file_setting)),
        (value, None) => Ok(value),
        (None, Some(path)) => {
            let text = read_secret_file(file_setting, path)?;
            let text = text.strip_suffix('\n').map(|text| text.strip_suffix('\r').unwrap_or(text)).unwrap_or(&text);
            if text.is_empty() {
                return Err(invalid(file_setting, format!("{} is empty", path.display())));
            }
            Ok(Some(SecretString::from(text)))
        }
    }
}

/// A list of secrets from its setting, or from the file its `_FILE` twin
/// names: one per line or comma-separated. Blank entries are ignored in
/// both, so a setting set to the empty string counts as unset.
fn secrets_from(
    setting: &'static str,
    file_setting: &'static str,
    values: Vec<SecretString>,
    file: Option<&Path>,
) -> Result<Vec<SecretString>, ConfigError> {
    let values: Vec<SecretString> =
        values.into_iter().filter(|value| !value.expose_secret().trim().is_empty()).collect();
    match file {
        None => Ok(values),
        Some(_) if !values.is_empty() => Err(both_set(setting, file_setting)),
        Some(path) => {
            let text = read_secret_file(file_setting, path)?;
            Ok(text
                .split(['\n', ','])
                .map(str::trim)
                .filter(|entry| !entry.is_empty())
                .map(SecretString::from)
                .collect())
        }
    }
}

fn both_set(setting: &'static str, file_setting: &'static str) -> ConfigError {
    invalid(setting, format!("set either {setting} or {file_setting}, not both"))
}

/// The file's text; the error names the setting and the path, never the content.
fn read_secret_file(file_setting: &'static str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|error| invalid(file_setting, format!("cannot read {}: {error}", path.display())))
}

pub fn argon2_settings(args: &args::Argon2Args) -> Result<Argon2Settings, ConfigError> {
    let settings = Argon2Settings {
        memory_kib: args.argon2_memory_kib,
        iterations: args.argon2_iterations.get(),
        parallelism: args.argon2_parallelism.get(),
    };
    if settings.memory_kib < 8 * settings.parallelism {
        return Err(invalid(
            "ARGON2_MEMORY_KIB",
            format!("must be at least 8 x ARGON2_PARALLELISM ({})", 8 * settings.parallelism),
        ));
    }
    settings.check().map_err(|error| invalid("ARGON2_MEMORY_KIB", error.to_string()))?;
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["token-authority", "serve"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|error| error.to_string())?;
        let Command::Serve(serve) = cli.command else {
            unreachable!("serve parses as serve")
        };
        Config::from_args(*serve).map_err(|error| error.to_string())
    }

    #[test]
    fn durations_read_like_people_write_them() {
        let config = parse(&[
            "--jwt-expires-in",
            "90m",
            "--jwt-remember-me-expires-in",
            "30d",
            "--jwt-refresh-window",
            "10m",
        ])
        .unwrap();
        assert_eq!(config.tokens.lifetimes.standard, Duration::from_secs(90 * 60));
        assert_eq!(config.tokens.lifetimes.remember_me, Duration::from_secs(30 * 86_400));
    }

    #[test]
    fn a_bad_value_names_the_setting() {
        for (flag, value, named) in [
            ("--jwt-expires-in", "soon", "JWT_EXPIRES_IN"),
            ("--jwt-expires-in", "1500ms", "JWT_EXPIRES_IN"),
            ("--session-cache-capacity", "0", "SESSION_CACHE_CAPACITY"),
            ("--revocation-heartbeat", "0s", "REVOCATION_HEARTBEAT"),
            ("--argon2-iterations", "0", "ARGON2_ITERATIONS"),
            ("--argon2-memory-kib", "7", "ARGON2_MEMORY_KIB"),
            ("--jwt-refresh-window", "48h", "JWT_REFRESH_WINDOW"),
            ("--jwt-issuer", "", "JWT_ISSUER"),
            ("--admin-api-keys", "short", "ADMIN_API_KEYS"),
        ] {
            let error = parse(&[flag, value]).unwrap_err();
            assert!(error.contains(named), "{flag} {value}: {error}");
        }
    }

    #[test]
    fn short_secrets_are_refused_by_name_without_echo() {
        let error = parse(&["--jwt-secret", "too-short"]).unwrap_err();
        assert!(error.starts_with("JWT_SECRET"), "{error}");
        assert!(!error.contains("too-short"), "never echo the secret");
    }

    #[test]
    fn accepted_secrets_need_their_length_and_verify_beside_stored_keys() {
        let alone = parse(&["--jwt-accepted-secrets", &"x".repeat(32)]).unwrap();
        assert!(alone.keys.stored, "without JWT_SECRET, stored keys sign");
        let secret = "s".repeat(32);
        let short = parse(&["--jwt-secret", &secret, "--jwt-accepted-secrets", "short"]).unwrap_err();
        assert!(short.starts_with("JWT_ACCEPTED_SECRETS"), "{short}");
        parse(&["--jwt-secret", &secret, "--jwt-accepted-secrets", &"p".repeat(40)]).unwrap();
    }

    #[test]
    fn api_keys_are_named_or_named_by_position() {
        let config = parse(&[
            "--admin-api-keys",
            "ops:0123456789abcdef,fedcba9876543210",
            "--service-api-keys",
            "a:b:0123456789abcdef",
        ])
        .unwrap();
        let names: Vec<&str> = config.api_keys.admin.iter().map(|key| key.name.as_str()).collect();
        assert_eq!(names, ["ops", "admin-2"]);
        assert_eq!(config.api_keys.admin[0].key.expose_secret(), "0123456789abcdef");
        assert_eq!(config.api_keys.service[0].name, "a");
        assert_eq!(config.api_keys.service[0].key.expose_secret(), "b:0123456789abcdef");
        let error = parse(&["--admin-api-keys", "ops:short"]).unwrap_err();
        assert!(error.contains("ADMIN_API_KEYS") && !error.contains("short"), "{error}");
    }

    #[test]
    fn secrets_come_from_files_without_their_final_line_break() {
        let directory = tempfile::TempDir::new().unwrap();
        let file = |name: &str, content: &str| {
            let path = directory.path().join(name);
            std::fs::write(&path, content).unwrap();
            path.display().to_string()
        };
        let secret = file("secret", &format!("{}\r\n", "s".repeat(40)));
        let keys = file("keys", "ops:0123456789abcdef\n\nfedcba9876543210, other:aaaaaaaaaaaaaaaa\n");
        let url = file("url", "sqlite:from-file.db\n");
        let config = parse(&[
            "--jwt-secret-file",
            &secret,
            "--admin-api-keys-file",
            &keys,
            "--database-url-file",
            &url,
        ])
        .unwrap();
        assert_eq!(config.tokens.signing_secret.unwrap().expose_secret(), "s".repeat(40));
        let names: Vec<&str> = config.api_keys.admin.iter().map(|key| key.name.as_str()).collect();
        assert_eq!(names, ["ops", "admin-2", "other"]);
        assert_eq!(config.database.url, "sqlite:from-file.db");
    }

    #[test]
    fn a_setting_set_to_the_empty_string_counts_as_unset() {
        let directory = tempfile::TempDir::new().unwrap();
        let path = directory.path().join("keys");
        std::fs::write(&path, "billing:0123456789abcdef\n").unwrap();
        let path = path.display().to_string();
        let config = parse(&[
            "--service-api-keys",
            "",
            "--service-api-keys-file",
            &path,
            "--database-url",
            "",
            "--jwt-secret",
            "",
        ])
        .unwrap();
        assert_eq!(config.api_keys.service[0].name, "billing");
        assert_eq!(config.database.url, DEFAULT_DATABASE_URL);
        assert!(config.tokens.signing_secret.is_none());
        assert!(parse(&["--admin-api-keys", ""]).unwrap().api_keys.admin.is_empty());
    }

    #[test]
    fn a_setting_and_its_file_twin_together_are_refused_by_both_names() {
        let directory = tempfile::TempDir::new().unwrap();
        let path = directory.path().join("secret");
        std::fs::write(&path, "s".repeat(40)).unwrap();
        let path = path.display().to_string();
        for (flag, value, file_flag, names) in [
            ("--jwt-secret", "t".repeat(40), "--jwt-secret-file", ["JWT_SECRET", "JWT_SECRET_FILE"]),
            (
                "--service-api-keys",
                "k".repeat(20),
                "--service-api-keys-file",
                ["SERVICE_API_KEYS", "SERVICE_API_KEYS_FILE"],
            ),
            ("--database-url", "sqlite:x.db".into(), "--database-url-file", ["DATABASE_URL", "DATABASE_URL_FILE"]),
        ] {
            let error = parse(&[flag, &value, file_flag, &path]).unwrap_err();
            assert!(names.iter().all(|name| error.contains(name)), "{error}");
            assert!(!error.contains(&value) || flag == "--database-url", "no secret echoed: {error}");
        }
        let missing = parse(&["--jwt-secret-file", "/nonexistent/secret"]).unwrap_err();
        assert!(missing.starts_with("JWT_SECRET_FILE") && missing.contains("/nonexistent/secret"), "{missing}");
    }

    #[test]
    fn tls_settings_go_together() {
        for (args, named) in [
            (vec!["--tls-cert-file", "c.pem"], "TLS_KEY_FILE"),
            (vec!["--tls-key-file", "k.pem"], "TLS_CERT_FILE"),
            (vec!["--tls-client-ca-file", "ca.pem"], "TLS_CLIENT_CA_FILE"),
            (
                vec![
                    "--tls-cert-file",
                    "c.pem",
                    "--tls-key-file",
                    "k.pem",
                    "--tls-admin-clients",
                    "ops",
                ],
                "TLS_ADMIN_CLIENTS",
            ),
            (vec!["--listen-addr", "0.0.0.0:50051"], "ALLOW_PLAINTEXT"),
        ] {
            let error = parse(&args).unwrap_err();
            assert!(error.contains(named), "{args:?}: {error}");
        }
        let tls = parse(&[
            "--listen-addr",
            "0.0.0.0:50051",
            "--tls-cert-file",
            "c.pem",
            "--tls-key-file",
            "k.pem",
        ])
        .unwrap();
        assert_eq!(tls.tls.unwrap().cert_file, std::path::PathBuf::from("c.pem"));
        let plaintext = parse(&["--listen-addr", "0.0.0.0:50051", "--allow-plaintext", "true"]).unwrap();
        assert!(plaintext.tls.is_none());
    }

    #[test]
    fn callers_must_be_able_to_authenticate_unless_the_operator_opts_out() {
        let error = Config::default().check_caller_credentials().unwrap_err().to_string();
        for setting in [
            "SERVICE_API_KEYS",
            "TLS_CLIENT_CA_FILE",
            "ALLOW_UNAUTHENTICATED_CALLERS",
        ] {
            assert!(error.contains(setting), "{error}");
        }
        parse(&["--service-api-keys", "0123456789abcdef"]).unwrap().check_caller_credentials().unwrap();
        parse(&["--allow-unauthenticated-callers", "true"]).unwrap().check_caller_credentials().unwrap();
        let mtls = parse(&[
            "--tls-cert-file",
            "c.pem",
            "--tls-key-file",
            "k.pem",
            "--tls-client-ca-file",
            "ca.pem",
        ]);
        mtls.unwrap().check_caller_credentials().unwrap();
    }

    #[test]
    fn limits_fit_the_api() {
        let config = Config::default();
        assert_eq!(config.limits.max_request_bytes, 16 * 1024);
        assert_eq!(config.limits.max_streams_per_connection.get(), 128);
        assert_eq!(config.limits.request_timeout, Duration::from_secs(10));
        let error = parse(&["--max-request-kib", "8"]).unwrap_err();
        assert!(error.contains("MAX_REQUEST_KIB"), "{error}");
        for (flag, named) in [
            ("--max-streams-per-connection", "MAX_STREAMS_PER_CONNECTION"),
            ("--max-concurrent-calls", "MAX_CONCURRENT_CALLS"),
            ("--max-revocation-streams-per-caller", "MAX_REVOCATION_STREAMS_PER_CALLER"),
        ] {
            let error = parse(&[flag, "0"]).unwrap_err();
            assert!(error.contains(named), "{error}");
        }
        assert!(parse(&["--request-timeout", "0s"]).unwrap_err().contains("REQUEST_TIMEOUT"));
    }

    #[test]
    fn zero_turns_each_throttle_limit_off() {
        let config = parse(&[
            "--login-attempts-per-user-and-ip",
            "0",
            "--login-attempts-per-user",
            "0",
            "--login-attempts-per-ip",
            "0",
            "--security-sessions-per-ip",
            "0",
            "--refresh-min-interval",
            "0s",
        ])
        .unwrap();
        assert_eq!(
            config.security.throttle,
            ThrottlePolicy {
                window: config.security.throttle.window,
                ..ThrottlePolicy::OFF
            }
        );
        assert_eq!(config.security.refresh_min_interval, None);
    }

    #[test]
    fn security_settings_are_checked_against_each_other() {
        let error = parse(&[
            "--login-attempts-per-user",
            "10",
            "--login-attempts-per-user-and-ip",
            "10",
        ])
        .unwrap_err();
        assert!(error.starts_with("LOGIN_ATTEMPTS_PER_USER:"), "{error}");
        let error = parse(&["--session-max-lifetime", "7d"]).unwrap_err();
        assert!(error.starts_with("SESSION_MAX_LIFETIME"), "{error}");
        let error = parse(&["--security-revoke-on", "binding_mismatch,everything"]).unwrap_err();
        assert!(error.starts_with("SECURITY_REVOKE_ON") && error.contains("everything"), "{error}");
        for (flag, value, named) in [
            ("--session-binding", "sometimes", "SESSION_BINDING"),
            ("--session-binding-attributes", "shoe_size", "SESSION_BINDING_ATTRIBUTES"),
            ("--session-binding-ipv4-prefix", "33", "SESSION_BINDING_IPV4_PREFIX"),
            ("--login-throttle-window", "0s", "LOGIN_THROTTLE_WINDOW"),
            ("--audit-retention", "0s", "AUDIT_RETENTION"),
        ] {
            let error = parse(&[flag, value]).unwrap_err();
            assert!(error.contains(named), "{flag} {value}: {error}");
        }
        let config = parse(&[
            "--session-binding",
            "enforce",
            "--session-binding-attributes",
            "device_id",
            "--security-revoke-on",
            "refresh_limited",
        ])
        .unwrap();
        let binding = config.security.binding;
        assert_eq!(binding.mode, BindingMode::Enforce);
        assert_eq!(
            binding.attributes,
            BoundAttributes {
                device_id: true,
                ip_prefix: false,
                user_agent_family: false
            }
        );
        assert_eq!(
            config.security.revoke_on,
            RevokeOn {
                binding_mismatch: false,
                refresh_limited: true
            }
        );
    }

    #[test]
    fn the_algorithm_follows_jwt_secret_unless_named() {
        let secret = "s".repeat(32);
        let fresh = parse(&[]).unwrap().keys;
        assert_eq!((fresh.rotation.algorithm, fresh.stored), (SigningAlgorithm::EdDsa, true));
        let configured = parse(&["--jwt-secret", &secret]).unwrap().keys;
        assert_eq!((configured.rotation.algorithm, configured.stored), (SigningAlgorithm::Hs256, false));
        let moving = parse(&["--jwt-secret", &secret, "--jwt-algorithm", "eddsa"]).unwrap().keys;
        assert_eq!((moving.rotation.algorithm, moving.stored), (SigningAlgorithm::EdDsa, true));
        let stored_hs256 = parse(&["--jwt-algorithm", "HS256"]).unwrap().keys;
        assert_eq!((stored_hs256.rotation.algorithm, stored_hs256.stored), (SigningAlgorithm::Hs256, true));
        let error = parse(&["--jwt-algorithm", "HS512"]).unwrap_err();
        assert!(error.contains("JWT_ALGORITHM"), "{error}");
    }

    #[test]
    fn key_timings_must_leave_every_replica_time_to_load_a_key() {
        let error = parse(&["--key-publish-ahead", "30d"]).unwrap_err();
        assert!(error.starts_with("KEY_PUBLISH_AHEAD"), "{error}");
        let error = parse(&["--key-refresh-interval", "20m"]).unwrap_err();
        assert!(error.starts_with("KEY_REFRESH_INTERVAL"), "{error}");
        parse(&["--key-refresh-interval", "15m"]).unwrap();
        for (flag, value) in [("--key-rotation-interval", "0s"), ("--key-publish-ahead", "soon")] {
            assert!(parse(&[flag, value]).is_err(), "{flag} {value}");
        }
    }

    #[test]
    fn the_jwks_max_age_is_well_under_the_publish_ahead() {
        assert_eq!(parse(&[]).unwrap().keys.jwks_max_age, Duration::from_secs(300));
        let short = parse(&["--key-publish-ahead", "10m", "--key-refresh-interval", "1m"]).unwrap();
        assert_eq!(short.keys.jwks_max_age, Duration::from_secs(60));
    }

    #[test]
    fn the_key_encryption_key_comes_from_the_setting_or_a_file_never_echoed() {
        use base64::Engine;
        let text = base64::engine::general_purpose::STANDARD.encode([5u8; 32]);
        assert!(parse(&["--key-encryption-key", &text]).unwrap().keys.encryption_key.is_some());
        let directory = tempfile::TempDir::new().unwrap();
        let file = directory.path().join("kek");
        std::fs::write(&file, format!("{text}\n")).unwrap();
        let from_file = parse(&["--key-encryption-key-file", file.to_str().unwrap()]).unwrap();
        assert!(from_file.keys.encryption_key.is_some());
        let both = parse(&[
            "--key-encryption-key",
            &text,
            "--key-encryption-key-file",
            file.to_str().unwrap(),
        ]);
        assert!(both.unwrap_err().starts_with("KEY_ENCRYPTION_KEY_FILE"));
        let short = base64::engine::general_purpose::STANDARD.encode([5u8; 16]);
        let error = parse(&["--key-encryption-key", &short]).unwrap_err();
        assert!(error.starts_with("KEY_ENCRYPTION_KEY") && !error.contains(&short), "{error}");
        let missing = parse(&["--key-encryption-key-file", "/nonexistent/kek"]).unwrap_err();
        assert!(missing.starts_with("KEY_ENCRYPTION_KEY_FILE"), "{missing}");
    }

    #[test]
    fn the_ext_authz_header_prefix_is_lower_case_and_not_empty() {
        assert_eq!(Config::default().ext_authz.header_prefix, "x-");
        assert_eq!(parse(&["--ext-authz-header-prefix", "x-auth-"]).unwrap().ext_authz.header_prefix, "x-auth-");
        for bad in ["", "X-", "x_", "x-\r\n", &"x".repeat(65)] {
            let error = parse(&["--ext-authz-header-prefix", bad]).unwrap_err();
            assert!(error.contains("EXT_AUTHZ_HEADER_PREFIX"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn the_public_url_must_be_http_or_https() {
        let config = parse(&["--http-public-url", "https://auth.example.com/"]).unwrap();
        assert_eq!(config.http.public_url.as_deref(), Some("https://auth.example.com"));
        let error = parse(&["--http-public-url", "auth.example.com"]).unwrap_err();
        assert!(error.contains("HTTP_PUBLIC_URL"), "{error}");
    }

    #[test]
    fn defaults_match_the_readme_and_the_command_line() {
        let config = Config::default();
        let lifetimes = config.tokens.lifetimes;
        assert_eq!(lifetimes.standard, Duration::from_secs(24 * 3600));
        assert_eq!(lifetimes.remember_me, Duration::from_secs(30 * 86_400));
        assert_eq!(lifetimes.refresh_window, Duration::from_secs(2 * 3600));
        assert_eq!(lifetimes.rotation_grace, Duration::from_secs(10));
        assert_eq!(config.listen_addr.to_string(), "127.0.0.1:50051");
        assert_eq!(config.argon2, Argon2Settings::default());
        let security = config.security;
        assert_eq!(security.binding, BindingPolicy::default());
        assert_eq!(security.refresh_min_interval, Some(Duration::from_secs(30)));
        assert_eq!(security.session_max_lifetime, Duration::from_secs(90 * 86_400));
        assert_eq!(security.throttle.window, Duration::from_secs(15 * 60));
        assert_eq!(security.throttle.per_user_and_ip, NonZeroU32::new(10));
        assert_eq!(security.throttle.per_user, NonZeroU32::new(100));
        assert_eq!(security.throttle.per_ip, NonZeroU32::new(100));
        assert_eq!(security.throttle.sessions_per_ip, NonZeroU32::new(100));
        assert!(security.revoke_on.binding_mismatch && !security.revoke_on.refresh_limited);
        assert_eq!(security.event_interval, Duration::from_secs(60));
        assert_eq!(config.cleanup.policy.audit_retention, Duration::from_secs(90 * 86_400));
        assert_eq!(config.cleanup.policy.event_retention, Duration::from_secs(30 * 86_400 + 3600));
        assert_eq!(config.keys.rotation.interval, Duration::from_secs(30 * 86_400));
        assert_eq!(config.keys.rotation.publish_ahead, Duration::from_secs(3600));
        assert_eq!(config.keys.rotation.retention, Duration::from_secs(30 * 86_400 + 5));
        assert_eq!(config.keys.refresh_interval, Duration::from_secs(60));
        assert_eq!(config.http.address, None);
    }
}
