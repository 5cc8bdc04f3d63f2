//! What each command of the binary does: `serve`, `migrate`, `cleanup`,
//! `user create`, `keys list|rotate|remove`.

use std::{
    io::{BufRead, IsTerminal},
    num::NonZeroUsize,
};

use anyhow::Context;
use tracing::info;

use crate::{
    authority::{self, KeyStore, PasswordPool, RemovedKey, format_time},
    clock::{Clock, SystemClock},
    config::{
        self, Command, Config, KeyConfig, KeysCommand, TokenConfig, UserCommand,
        args::{CleanupArgs, CreateUserArgs, DatabaseArgs, KeysArgs},
    },
    domain::{NewPassword, Roles, Username, audit::Actor, password_hash::Argon2Hasher},
    repository::Repository,
    startup::Application,
};

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve(Config::from_args(*args)?).await,
        Command::Migrate(database) => migrate(database).await,
        Command::Cleanup(args) => cleanup(*args).await,
        Command::User {
            command: UserCommand::Create(args),
        } => create_user(args).await,
        Command::Keys { command } => keys(*command).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let application = Application::build(config, SystemClock::shared()).await?;
    application.run_until_stopped(shutdown_signal()).await
}

async fn connect(database: DatabaseArgs) -> anyhow::Result<Repository> {
    let repository = Repository::connect(&config::database_config(database)?)
        .await
        .context("DATABASE_URL: cannot open the database")?;
    repository.migrate().await.context("cannot apply the database migrations")?;
    Ok(repository)
}

async fn migrate(database: DatabaseArgs) -> anyhow::Result<()> {
    let repository = connect(database).await?;
    repository.close().await;
    info!("database schema is up to date");
    Ok(())
}

async fn cleanup(args: CleanupArgs) -> anyhow::Result<()> {
    let tokens = config::TokenConfig::from_args(args.tokens)?;
    let policy = config::CleanupConfig::from_args(&args.retention, &tokens).policy;
    let repository = connect(args.database).await?;
    let report = authority::cleanup(&repository, None, &policy, SystemClock.now()).await?;
    repository.close().await;
    println!(
        "deleted {} expired sessions, {} old revocation events, {} old audit records, {} idle throttle counters and {} stale known clients",
        report.sessions_deleted,
        report.events_deleted,
        report.audit_deleted,
        report.throttle_keys_deleted,
        report.known_clients_deleted
    );
    Ok(())
}

async fn create_user(args: CreateUserArgs) -> anyhow::Result<()> {
    let username = Username::parse("--username", &args.username)?;
    let roles = Roles::parse("--role", &args.roles)?;
    let password = NewPassword::parse("password (standard input)", read_password()?)?;
    let hasher = Argon2Hasher::new(config::argon2_settings(&args.argon2)?)?;
    let repository = connect(args.database).await?;
    let passwords = PasswordPool::start(hasher, NonZeroUsize::MIN, NonZeroUsize::MIN)?;
    let user_id =
        authority::create_user(&repository, &SystemClock, &passwords, Actor::command_line(), username, password, roles)
            .await?;
    repository.close().await;
    println!("{user_id}");
    Ok(())
}

async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::List(args) => {
            let (store, repository) = key_store(args).await?;
            print_keys(&store).await?;
            repository.close().await;
        }
        KeysCommand::Rotate(args) => {
            let (store, repository) = key_store(args).await?;
            let key = store.rotate_now().await?;
            tell_replicas(&repository).await?;
            repository.close().await;
            println!("published {} ({}); it signs from {} on", key.kid, key.algorithm, format_time(key.activates_at));
        }
        KeysCommand::Remove(remove) => {
            let (store, repository) = key_store(remove.keys).await?;
            let removed = store.remove(&remove.kid).await?;
            tell_replicas(&repository).await?;
            repository.close().await;
            println!(
                "removed {}: every token it signed stops verifying, and its sessions cannot be refreshed",
                remove.kid
            );
            match removed {
                RemovedKey::NothingElse => println!("signing goes on with the key that signed before"),
                RemovedKey::NextActivated { kid } => println!("{kid}, published ahead, signs from now on"),
                RemovedKey::NewKey { kid } => println!("a new key, {kid}, signs from now on"),
            }
        }
    }
    Ok(())
}

/// The key store of the database the command names, configured as the
/// server is (JWT_SECRET, JWT_ALGORITHM, KEY_*).
async fn key_store(args: KeysArgs) -> anyhow::Result<(KeyStore, Repository)> {
    let tokens = TokenConfig::from_args(args.tokens)?;
    let keys = KeyConfig::from_args(args.keys, &tokens)?;
    let repository = connect(args.database).await?;
    let store = KeyStore::new(repository.clone(), &keys, &tokens, SystemClock::shared());
    Ok((store, repository))
}

async fn print_keys(store: &KeyStore) -> anyhow::Result<()> {
    if !store.stores_keys()
        && let Some(kid) = store.configured_kid()
    {
        println!("JWT_SECRET signs (HS256, kid {kid}); stored keys, if any, only verify.");
    }
    let keys = store.list().await?;
    if keys.is_empty() {
        println!("no stored keys");
        return Ok(());
    }
    let time = |time: Option<crate::domain::Timestamp>| time.map_or_else(|| "-".to_owned(), format_time);
    println!(
        "{:<24} {:<6} {:<8} {:<21} {:<21} {:<21} {:<21} SEALED",
        "KID", "ALG", "STATE", "PUBLISHED", "ACTIVATES", "RETIRES", "DELETED"
    );
    for key in keys {
        let schedule = key.info.schedule;
        println!(
            "{:<24} {:<6} {:<8} {:<21} {:<21} {:<21} {:<21} {}",
            key.info.kid,
            key.info.algorithm.as_str(),
            key.state.as_str(),
            format_time(schedule.published_at),
            format_time(schedule.activates_at),
            time(schedule.retires_at),
            time(key.deletes_at),
            if key.sealed { "yes" } else { "no" }
        );
    }
    Ok(())
}

/// Numbers the key event this process wrote and tells the running replicas
/// (PostgreSQL; on SQLite they read the outbox within
/// REVOCATION_POLL_INTERVAL).
async fn tell_replicas(repository: &Repository) -> anyhow::Result<()> {
    while repository.sequence_events(500).await? == 500 {}
    repository.announce_revocations("token-authority keys").await?;
    Ok(())
}

/// The password comes from standard input, never from a flag (flags show in
/// `ps` and shell history). On a terminal it is asked for without echo.
fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password("Password: ").context("cannot read the password");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => info!("Ctrl-C received"),
        () = terminate => info!("SIGTERM received"),
    }
}
