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
    time::Duration,
};

use secrecy::{ExposeSecret, SecretString};

pub use args::{Cli, Command, LogArgs, LogFormat, UserCommand};

use crate::{
    authority::CleanupPolicy,
    domain::{
        TokenLifetimes,
        password_hash::Argon2Settings,
        tokens::{MIN_HMAC_SECRET_BYTES, TokenPolicy},
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
    pub argon2: Argon2Settings,
    pub password_hashing: PasswordHashingConfig,
    pub api_keys: ApiKeyConfig,
    pub revocations: FeedSettings,
    pub cleanup: CleanupConfig,
    /// Sessions Verify keeps in memory.
    pub session_cache_capacity: NonZeroUsize,
    /// Verified tokens Verify remembers; 0 remembers none.
    pub verified_token_cache_capacity: usize,
    /// Password checks per username and minute; `None`: unlimited.
    pub login_attempts_per_minute: Option<NonZeroU32>,
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
    pub admin: Vec<ApiKey>,
    /// May only watch revocations.
    pub service: Vec<ApiKey>,
}

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
        Ok(Self {
            listen_addr: args.listen_addr,
            database: database_config(args.database)?,
            argon2: argon2_settings(&args.argon2)?,
            password_hashing: PasswordHashingConfig {
                threads: args
                    .password_hashing_threads
                    .unwrap_or_else(|| std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)),
                queue: args.password_hashing_queue,
            },
            api_keys: ApiKeyConfig {
                admin: ApiKey::parse_all("ADMIN_API_KEYS", "admin", &args.admin_api_keys)?,
                service: ApiKey::parse_all("SERVICE_API_KEYS", "service", &args.service_api_keys)?,
            },
            revocations: FeedSettings {
                heartbeat: args.revocation_heartbeat,
                poll_interval: args.revocation_poll_interval,
                buffer: args.revocation_buffer,
            },
            cleanup,
            tokens,
            session_cache_capacity: args.session_cache_capacity,
            verified_token_cache_capacity: args.verified_token_cache_capacity,
            login_attempts_per_minute: NonZeroU32::new(args.login_attempts_per_minute),
            metrics_addr: args.metrics_addr,
            health_check_interval: args.health_check_interval,
            shutdown_timeout: args.shutdown_timeout,
        })
    }
}

impl Default for Config {
    /// The defaults of the command line, with nothing set.
    fn default() -> Self {
        Self::from_args(args::ServeArgs::defaults()).expect("the defaults are valid")
    }
}

impl TokenConfig {
    pub fn from_args(args: args::TokenArgs) -> Result<Self, ConfigError> {
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
        if !args.jwt_accepted_secrets.is_empty() && args.jwt_secret.is_none() {
            return Err(invalid("JWT_ACCEPTED_SECRETS", "needs JWT_SECRET, the secret that signs"));
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

impl CleanupConfig {
    pub fn from_args(args: &args::RetentionArgs, tokens: &TokenConfig) -> Self {
        let lifetimes = &tokens.lifetimes;
        Self {
            interval: args.cleanup_interval,
            policy: CleanupPolicy {
                // Past the leeway, no check accepts the token any more.
                session_grace: tokens.policy.leeway + Duration::from_secs(60),
                event_retention: lifetimes.standard.max(lifetimes.remember_me) + args.revocation_retention_margin,
            },
        }
    }
}

pub fn database_config(args: args::DatabaseArgs) -> Result<DatabaseConfig, ConfigError> {
    let url = args.database_url.expose_secret();
    if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(invalid("DATABASE_URL", "must start with sqlite: or postgres://"));
    }
    Ok(DatabaseConfig {
        url: url.to_owned(),
        max_connections: args.database_max_connections.get(),
        acquire_timeout: args.database_acquire_timeout,
    })
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
    fn accepted_secrets_need_a_signing_one_and_their_length() {
        let alone = parse(&["--jwt-accepted-secrets", &"x".repeat(32)]).unwrap_err();
        assert!(alone.starts_with("JWT_ACCEPTED_SECRETS"), "{alone}");
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
    fn zero_login_attempts_turns_the_throttle_off() {
        assert_eq!(parse(&["--login-attempts-per-minute", "0"]).unwrap().login_attempts_per_minute, None);
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
        assert_eq!(config.login_attempts_per_minute, NonZeroU32::new(10));
        assert_eq!(config.cleanup.policy.event_retention, Duration::from_secs(30 * 86_400 + 3600));
    }
}
