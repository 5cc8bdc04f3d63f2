//! What each command of the binary does: `serve`, `migrate`, `cleanup`,
//! `user create`.

use std::{
    io::{BufRead, IsTerminal},
    num::NonZeroUsize,
};

use anyhow::Context;
use tracing::info;

use crate::{
    authority::{self, PasswordPool},
    clock::{Clock, SystemClock},
    config::{
        self, Command, Config, UserCommand,
        args::{CleanupArgs, CreateUserArgs, DatabaseArgs},
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
