//! Prepares a database before the server starts: the schema, two users and
//! many sessions, inserted in bulk through the repository; and tokens for
//! them, signed with the server's secret.

use std::time::Duration;

use std::num::NonZeroUsize;

use token_authority::{
    authority::{self, PasswordPool},
    clock::{Clock, SystemClock},
    domain::{
        ClientContext, NewPassword, Roles, Session, TokenLifetimes, UserId, Username,
        audit::Actor,
        binding::BindingPolicy,
        password_hash::{Argon2Hasher, Argon2Settings},
        tokens::{Keyring, SigningKey, TokenClaims, TokenPolicy},
    },
    repository::{DatabaseConfig, Repository},
};

use super::server::{AUDIENCE, ISSUER, JWT_SECRET};

pub const LOGIN_USER: &str = "bench-login";
pub const CLIENT_IP: &str = "203.0.113.7";
pub const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
pub const DEVICE_ID: &str = "bench-device";

/// The end user's client, as the benchmark's calls pass it.
pub fn client() -> ClientContext {
    ClientContext::parse(CLIENT_IP, USER_AGENT, DEVICE_ID).expect("a valid client context")
}
pub const PASSWORD: &str = "benchmark passphrase";

/// What the measurements need of a seeded database.
pub struct Seeded {
    /// Every seeded session, in insertion order.
    pub sessions: Vec<Session>,
}

pub fn lifetimes() -> TokenLifetimes {
    TokenLifetimes {
        standard: Duration::from_secs(24 * 3600),
        remember_me: Duration::from_secs(30 * 24 * 3600),
        refresh_window: Duration::from_secs(2 * 3600),
        rotation_grace: Duration::from_secs(10),
    }
}

pub async fn repository(database_url: &str) -> anyhow::Result<Repository> {
    let repository = Repository::connect(&DatabaseConfig {
        url: database_url.to_owned(),
        max_connections: 10,
        acquire_timeout: Duration::from_secs(30),
    })
    .await?;
    repository.migrate().await?;
    Ok(repository)
}

/// A new, empty database on the PostgreSQL server at `server_url`.
pub async fn create_postgres_database(server_url: &str) -> anyhow::Result<String> {
    use sea_orm::sqlx::{self, Connection};
    let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let mut connection = sqlx::PgConnection::connect(server_url).await?;
    // The name is ours (a UUID), not input.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut connection)
        .await?;
    let (base, _) =
        server_url.rsplit_once('/').ok_or_else(|| anyhow::anyhow!("--postgres-url must name a database"))?;
    Ok(format!("{base}/{name}"))
}

/// Creates the schema, the users and `count` sessions of one user.
pub async fn seed(database_url: &str, count: usize) -> anyhow::Result<Seeded> {
    let repository = repository(database_url).await?;
    let passwords = PasswordPool::start(
        Argon2Hasher::new(Argon2Settings::default())?,
        NonZeroUsize::new(2).expect("2"),
        NonZeroUsize::new(16).expect("16"),
    )?;
    let mut user_ids = Vec::new();
    for name in ["bench-sessions", LOGIN_USER] {
        let id = authority::create_user(
            &repository,
            &SystemClock,
            &passwords,
            Actor::command_line(),
            Username::parse("username", name)?,
            NewPassword::parse("password", PASSWORD.into())?,
            Roles::parse("roles", &["reader"])?,
        )
        .await?;
        user_ids.push(id);
    }
    let user_id: UserId = user_ids[0];
    let now = SystemClock.now();
    // Every session bound to the client the benchmark's calls present.
    let policy = BindingPolicy::default();
    let sessions: Vec<Session> = (0..count)
        .map(|_| Session::open(user_id, false, client(), &lifetimes(), now).bound_by(&policy))
        .collect();
    repository.insert_sessions(&sessions).await?;
    repository.close().await;
    Ok(Seeded { sessions })
}

/// Signs tokens exactly as the server does.
pub fn keyring() -> anyhow::Result<Keyring> {
    let policy = TokenPolicy {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        leeway: Duration::from_secs(5),
    };
    Ok(Keyring::new(SigningKey::hs256(JWT_SECRET.as_bytes().to_vec())?, vec![], policy))
}

/// The current token of a seeded session.
pub fn token_for(keyring: &Keyring, session: &Session) -> anyhow::Result<String> {
    let claims = TokenClaims {
        user_id: session.user_id,
        session_id: session.id,
        token_id: session.current_token_id,
        username: "bench-sessions".into(),
        roles: vec!["reader".into()],
        issued_at: session.refreshed_at,
        expires_at: session.expires_at,
        generation: session.generation,
    };
    Ok(keyring.sign(&claims, session.refreshed_at)?.into_string())
}

/// `count` sessions spread evenly over all of them.
pub fn spread(sessions: &[Session], count: usize) -> Vec<&Session> {
    let step = (sessions.len() / count.max(1)).max(1);
    sessions.iter().step_by(step).take(count).collect()
}
