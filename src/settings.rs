//! Settings: every one a command-line flag with an environment variable,
//! defaults in code, checked once at start with messages that name the
//! setting. Secrets are `SecretString`s, so they never print.

use std::{net::SocketAddr, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::{ExposeSecret, SecretString};

use crate::{
    authority::CleanupPolicy,
    domain::{
        TokenLifetimes,
        passwords::Argon2Settings,
        tokens::{MIN_HMAC_SECRET_BYTES, TokenPolicy},
    },
    repository::DatabaseConfig,
};

/// Admin and service keys shorter than this are refused at start.
pub const MIN_API_KEY_BYTES: usize = 16;

#[derive(Debug, Parser)]
#[command(
    name = "token-authority",
    version,
    about = "Issues, refreshes, verifies and revokes JWT session tokens over gRPC."
)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogSettings,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the gRPC server (applies pending migrations first).
    Serve(Box<ServeSettings>),
    /// Applies pending database migrations and exits.
    Migrate(DatabaseSettings),
    /// Deletes expired sessions and old revocation events once, and exits.
    Cleanup(CleanupArgs),
    /// Manages users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
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
    pub database: DatabaseSettings,
    #[command(flatten)]
    pub argon2: Argon2Args,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    #[command(flatten)]
    pub database: DatabaseSettings,
    #[command(flatten)]
    pub tokens: TokenSettings,
    #[command(flatten)]
    pub retention: RetentionSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, Args)]
pub struct LogSettings {
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,
    /// Which logs to keep, as tracing filter directives (`info`, `token_authority=debug`).
    #[arg(long, env = "RUST_LOG", default_value = "info", global = true)]
    pub log_filter: String,
}

#[derive(Debug, Args)]
pub struct ServeSettings {
    /// Address the gRPC server listens on (port 0 picks a free port).
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:50051")]
    pub listen_addr: SocketAddr,
    #[command(flatten)]
    pub database: DatabaseSettings,
    #[command(flatten)]
    pub tokens: TokenSettings,
    #[command(flatten)]
    pub argon2: Argon2Args,
    /// Keys that authorise admin calls (`authorization: Bearer <key>`), comma-separated.
    /// With none, every admin call is refused.
    #[arg(long, env = "ADMIN_API_KEYS", value_delimiter = ',', value_parser = parse_api_key, hide_env_values = true)]
    pub admin_api_keys: Vec<SecretString>,
    /// Keys that may only watch revocations (WatchRevocations), comma-separated.
    #[arg(long, env = "SERVICE_API_KEYS", value_delimiter = ',', value_parser = parse_api_key, hide_env_values = true)]
    pub service_api_keys: Vec<SecretString>,
    /// A heartbeat goes out on a revocation stream idle this long.
    #[arg(long, env = "REVOCATION_HEARTBEAT", default_value = "15s")]
    pub revocation_heartbeat: humantime::Duration,
    /// Events kept in memory for subscribers; one further behind reads the database.
    #[arg(long, env = "REVOCATION_BUFFER", default_value_t = 4096)]
    pub revocation_buffer: usize,
    /// The outbox is read at least this often, besides every local commit.
    #[arg(long, env = "REVOCATION_POLL_INTERVAL", default_value = "1s")]
    pub revocation_poll_interval: humantime::Duration,
    #[command(flatten)]
    pub retention: RetentionSettings,
    /// How many sessions Verify keeps in memory (about 150 bytes each).
    #[arg(long, env = "SESSION_CACHE_CAPACITY", default_value_t = 1_000_000)]
    pub session_cache_capacity: usize,
    /// How many verified tokens Verify remembers, to skip their signature
    /// check and parsing when they come again (about 800 bytes each); 0: none.
    #[arg(long, env = "VERIFIED_TOKEN_CACHE_CAPACITY", default_value_t = 50_000)]
    pub verified_token_cache_capacity: usize,
    /// Password checks allowed per username and minute (Login, ChangePassword); 0: unlimited.
    #[arg(long, env = "LOGIN_ATTEMPTS_PER_MINUTE", default_value_t = 10)]
    pub login_attempts_per_minute: u32,
    /// Threads that run argon2 (default: one per core).
    #[arg(long, env = "PASSWORD_HASHING_THREADS")]
    pub password_hashing_threads: Option<usize>,
    /// Password checks that may wait for a thread; beyond, calls get RESOURCE_EXHAUSTED.
    #[arg(long, env = "PASSWORD_HASHING_QUEUE", default_value_t = 256)]
    pub password_hashing_queue: usize,
    /// Where Prometheus scrapes `/metrics` (for example 127.0.0.1:9090); unset: no metrics.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// How often health checks the database.
    #[arg(long, env = "HEALTH_CHECK_INTERVAL", default_value = "2s")]
    pub health_check_interval: humantime::Duration,
    /// How long shutdown waits for in-flight calls before exiting anyway.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "30s")]
    pub shutdown_timeout: humantime::Duration,
}

#[derive(Debug, Args)]
pub struct RetentionSettings {
    /// How often expired sessions and old revocation events are deleted.
    #[arg(long, env = "CLEANUP_INTERVAL", default_value = "1h")]
    pub cleanup_interval: humantime::Duration,
    /// Revocation events are kept for the longest token lifetime plus this.
    #[arg(long, env = "REVOCATION_RETENTION_MARGIN", default_value = "1h")]
    pub revocation_retention_margin: humantime::Duration,
}

impl RetentionSettings {
    pub fn policy(&self, tokens: &TokenSettings) -> Result<CleanupPolicy, SettingsError> {
        if self.cleanup_interval.is_zero() {
            return Err(invalid("CLEANUP_INTERVAL", "must be longer than 0s"));
        }
        let lifetimes = tokens.lifetimes()?;
        Ok(CleanupPolicy {
            // Past the leeway, no check accepts the token any more.
            session_grace: *tokens.jwt_leeway + Duration::from_secs(60),
            event_retention: lifetimes.standard.max(lifetimes.remember_me) + *self.revocation_retention_margin,
        })
    }
}

#[derive(Debug, Args)]
pub struct DatabaseSettings {
    /// `sqlite:<file>` (created if missing) or `postgres://user:password@host/db`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite:token-authority.db",
        hide_env_values = true
    )]
    pub database_url: SecretString,
    /// Most connections the pool opens.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,
    /// How long a query waits for a free connection before failing UNAVAILABLE.
    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT", default_value = "5s")]
    pub database_acquire_timeout: humantime::Duration,
}

#[derive(Debug, Args)]
pub struct TokenSettings {
    /// HS256 signing secret, at least 32 bytes. Unset: a random key is generated
    /// on first start and kept in the database.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<SecretString>,
    /// More HS256 secrets, comma-separated, that verify but never sign: the
    /// former secret (its tokens keep working until they expire) or the next
    /// one, while rotating JWT_SECRET without logging anybody out.
    #[arg(long, env = "JWT_ACCEPTED_SECRETS", value_delimiter = ',', hide_env_values = true)]
    pub jwt_accepted_secrets: Vec<SecretString>,
    /// Lifetime of a token.
    #[arg(long, env = "JWT_EXPIRES_IN", default_value = "24h")]
    pub jwt_expires_in: humantime::Duration,
    /// Lifetime of a token issued with remember_me.
    #[arg(long, env = "JWT_REMEMBER_ME_EXPIRES_IN", default_value = "30d")]
    pub jwt_remember_me_expires_in: humantime::Duration,
    /// Verify reports needs_refresh this long before expiry.
    #[arg(long, env = "JWT_REFRESH_WINDOW", default_value = "2h")]
    pub jwt_refresh_window: humantime::Duration,
    /// A token retired by Refresh still works this long (a client's retry).
    #[arg(long, env = "JWT_ROTATION_GRACE", default_value = "10s")]
    pub jwt_rotation_grace: humantime::Duration,
    /// The `iss` claim.
    #[arg(long, env = "JWT_ISSUER", default_value = "token-authority")]
    pub jwt_issuer: String,
    /// The `aud` claim.
    #[arg(long, env = "JWT_AUDIENCE", default_value = "token-authority")]
    pub jwt_audience: String,
    /// Clock skew tolerated when checking `exp` and `nbf`.
    #[arg(long, env = "JWT_LEEWAY", default_value = "5s")]
    pub jwt_leeway: humantime::Duration,
}

#[derive(Debug, Args)]
pub struct Argon2Args {
    /// argon2id memory cost in KiB.
    #[arg(long, env = "ARGON2_MEMORY_KIB", default_value_t = 19_456)]
    pub argon2_memory_kib: u32,
    /// argon2id time cost (passes over memory).
    #[arg(long, env = "ARGON2_ITERATIONS", default_value_t = 2)]
    pub argon2_iterations: u32,
    /// argon2id lanes.
    #[arg(long, env = "ARGON2_PARALLELISM", default_value_t = 1)]
    pub argon2_parallelism: u32,
}

/// A setting with a value that parses but cannot work.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct SettingsError {
    pub setting: &'static str,
    pub problem: String,
}

fn invalid(setting: &'static str, problem: impl Into<String>) -> SettingsError {
    SettingsError {
        setting,
        problem: problem.into(),
    }
}

fn parse_api_key(value: &str) -> Result<SecretString, String> {
    if value.len() < MIN_API_KEY_BYTES {
        return Err(format!("every key must be at least {MIN_API_KEY_BYTES} characters"));
    }
    Ok(SecretString::from(value))
}

impl ServeSettings {
    /// Checks what clap cannot: relations between settings and domain limits.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.tokens.lifetimes()?;
        self.tokens.policy()?;
        let accepted = self.tokens.jwt_accepted_secrets.iter().map(|secret| ("JWT_ACCEPTED_SECRETS", secret));
        for (setting, secret) in self.tokens.jwt_secret.iter().map(|secret| ("JWT_SECRET", secret)).chain(accepted) {
            let length = secret.expose_secret().len();
            if length < MIN_HMAC_SECRET_BYTES {
                return Err(invalid(
                    setting,
                    format!("every secret must be at least {MIN_HMAC_SECRET_BYTES} bytes (got {length})"),
                ));
            }
        }
        if !self.tokens.jwt_accepted_secrets.is_empty() && self.tokens.jwt_secret.is_none() {
            return Err(invalid("JWT_ACCEPTED_SECRETS", "needs JWT_SECRET, the secret that signs"));
        }
        self.argon2.settings()?;
        self.database.config()?;
        if self.session_cache_capacity == 0 {
            return Err(invalid("SESSION_CACHE_CAPACITY", "must be at least 1"));
        }
        if self.password_hashing_threads == Some(0) {
            return Err(invalid("PASSWORD_HASHING_THREADS", "must be at least 1"));
        }
        if self.password_hashing_queue == 0 {
            return Err(invalid("PASSWORD_HASHING_QUEUE", "must be at least 1"));
        }
        self.retention.policy(&self.tokens)?;
        if self.revocation_heartbeat.is_zero() {
            return Err(invalid("REVOCATION_HEARTBEAT", "must be longer than 0s"));
        }
        if self.revocation_buffer == 0 {
            return Err(invalid("REVOCATION_BUFFER", "must be at least 1"));
        }
        if self.revocation_poll_interval.is_zero() {
            return Err(invalid("REVOCATION_POLL_INTERVAL", "must be longer than 0s"));
        }
        if self.health_check_interval.is_zero() {
            return Err(invalid("HEALTH_CHECK_INTERVAL", "must be longer than 0s"));
        }
        Ok(())
    }

    pub fn password_hashing_threads(&self) -> usize {
        self.password_hashing_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
    }
}

impl TokenSettings {
    pub fn lifetimes(&self) -> Result<TokenLifetimes, SettingsError> {
        let lifetimes = TokenLifetimes {
            standard: *self.jwt_expires_in,
            remember_me: *self.jwt_remember_me_expires_in,
            refresh_window: *self.jwt_refresh_window,
            rotation_grace: *self.jwt_rotation_grace,
        };
        // Token times are whole seconds.
        if lifetimes.standard < Duration::from_secs(1) {
            return Err(invalid("JWT_EXPIRES_IN", "must be at least 1s"));
        }
        if lifetimes.remember_me < Duration::from_secs(1) {
            return Err(invalid("JWT_REMEMBER_ME_EXPIRES_IN", "must be at least 1s"));
        }
        if lifetimes.refresh_window >= lifetimes.standard {
            return Err(invalid(
                "JWT_REFRESH_WINDOW",
                format!("must be shorter than JWT_EXPIRES_IN ({})", self.jwt_expires_in),
            ));
        }
        if lifetimes.rotation_grace >= lifetimes.standard {
            return Err(invalid(
                "JWT_ROTATION_GRACE",
                format!("must be shorter than JWT_EXPIRES_IN ({})", self.jwt_expires_in),
            ));
        }
        Ok(lifetimes)
    }

    pub fn policy(&self) -> Result<TokenPolicy, SettingsError> {
        if self.jwt_issuer.is_empty() {
            return Err(invalid("JWT_ISSUER", "must not be empty"));
        }
        if self.jwt_audience.is_empty() {
            return Err(invalid("JWT_AUDIENCE", "must not be empty"));
        }
        Ok(TokenPolicy {
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            leeway: *self.jwt_leeway,
        })
    }
}

impl Argon2Args {
    pub fn settings(&self) -> Result<Argon2Settings, SettingsError> {
        let settings = Argon2Settings {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: self.argon2_parallelism,
        };
        if settings.iterations == 0 {
            return Err(invalid("ARGON2_ITERATIONS", "must be at least 1"));
        }
        if settings.parallelism == 0 {
            return Err(invalid("ARGON2_PARALLELISM", "must be at least 1"));
        }
        if settings.memory_kib < 8 * settings.parallelism {
            return Err(invalid(
                "ARGON2_MEMORY_KIB",
                format!("must be at least 8 x ARGON2_PARALLELISM ({})", 8 * settings.parallelism),
            ));
        }
        Ok(settings)
    }
}

impl DatabaseSettings {
    pub fn config(&self) -> Result<DatabaseConfig, SettingsError> {
        let url = self.database_url.expose_secret();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid("DATABASE_URL", "must start with sqlite: or postgres://"));
        }
        if self.database_max_connections == 0 {
            return Err(invalid("DATABASE_MAX_CONNECTIONS", "must be at least 1"));
        }
        Ok(DatabaseConfig {
            url: url.to_owned(),
            max_connections: self.database_max_connections,
            acquire_timeout: *self.database_acquire_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> Result<ServeSettings, String> {
        let mut argv = vec!["token-authority", "serve"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|error| error.to_string())?;
        let Command::Serve(settings) = cli.command else {
            unreachable!("serve parses as serve")
        };
        Ok(*settings)
    }

    #[test]
    fn durations_read_like_people_write_them() {
        let settings = serve(&["--jwt-expires-in", "90m", "--jwt-remember-me-expires-in", "30d"]).unwrap();
        assert_eq!(*settings.tokens.jwt_expires_in, Duration::from_secs(90 * 60));
        assert_eq!(*settings.tokens.jwt_remember_me_expires_in, Duration::from_secs(30 * 86_400));
    }

    #[test]
    fn a_bad_duration_names_the_setting() {
        let error = serve(&["--jwt-expires-in", "soon"]).unwrap_err();
        assert!(error.contains("JWT_EXPIRES_IN"), "{error}");
    }

    #[test]
    fn short_secret_is_refused_by_name() {
        let settings = serve(&["--jwt-secret", "too-short"]).unwrap();
        let error = settings.validate().unwrap_err();
        assert_eq!(error.setting, "JWT_SECRET");
        assert!(!error.to_string().contains("too-short"), "never echo the secret");
    }

    #[test]
    fn accepted_secrets_need_a_signing_one_and_their_length() {
        let alone = serve(&["--jwt-accepted-secrets", &"x".repeat(32)]).unwrap();
        assert_eq!(alone.validate().unwrap_err().setting, "JWT_ACCEPTED_SECRETS");
        let secret = "s".repeat(32);
        let short = serve(&["--jwt-secret", &secret, "--jwt-accepted-secrets", "short"]).unwrap();
        assert_eq!(short.validate().unwrap_err().setting, "JWT_ACCEPTED_SECRETS");
        let fine = serve(&["--jwt-secret", &secret, "--jwt-accepted-secrets", &"p".repeat(40)]).unwrap();
        fine.validate().unwrap();
    }

    #[test]
    fn refresh_window_must_fit_in_the_lifetime() {
        let settings = serve(&["--jwt-expires-in", "1h", "--jwt-refresh-window", "2h"]).unwrap();
        assert_eq!(settings.validate().unwrap_err().setting, "JWT_REFRESH_WINDOW");
    }

    #[test]
    fn short_admin_keys_are_refused() {
        let error = serve(&["--admin-api-keys", "short"]).unwrap_err();
        assert!(error.contains("ADMIN_API_KEYS"), "{error}");
    }

    #[test]
    fn defaults_match_the_readme() {
        let settings = serve(&[]).unwrap();
        settings.validate().unwrap();
        let lifetimes = settings.tokens.lifetimes().unwrap();
        assert_eq!(lifetimes.standard, Duration::from_secs(24 * 3600));
        assert_eq!(lifetimes.remember_me, Duration::from_secs(30 * 86_400));
        assert_eq!(lifetimes.refresh_window, Duration::from_secs(2 * 3600));
        assert_eq!(lifetimes.rotation_grace, Duration::from_secs(10));
        assert_eq!(settings.listen_addr.to_string(), "127.0.0.1:50051");
        assert_eq!(settings.argon2.settings().unwrap(), Argon2Settings::default());
    }
}
