//! What each command of the binary does: `serve`, `migrate`, `user create`.

use std::io::{BufRead, IsTerminal};

use anyhow::Context;
use tracing::info;

use crate::{
    authority::{self, PasswordPool},
    domain::Timestamp,
    domain::{NewPassword, Roles, Username, passwords::PasswordHasher},
    repository::Repository,
    settings::{CleanupArgs, Command, CreateUserArgs, DatabaseSettings, ServeSettings, UserCommand},
    startup::Application,
};

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(settings) => serve(*settings).await,
        Command::Migrate(database) => migrate(&database).await,
        Command::Cleanup(args) => cleanup(args).await,
        Command::User {
            command: UserCommand::Create(args),
        } => create_user(args).await,
    }
}

async fn serve(settings: ServeSettings) -> anyhow::Result<()> {
    let application = Application::build(settings).await?;
    application.run_until_stopped(shutdown_signal()).await
}

async fn connect(database: &DatabaseSettings) -> anyhow::Result<Repository> {
    let repository =
        Repository::connect(&database.config()?).await.context("DATABASE_URL: cannot open the database")?;
    repository.migrate().await.context("cannot apply the database migrations")?;
    Ok(repository)
}

async fn migrate(database: &DatabaseSettings) -> anyhow::Result<()> {
    let repository = connect(database).await?;
    repository.close().await;
    info!("database schema is up to date");
    Ok(())
}

async fn cleanup(args: CleanupArgs) -> anyhow::Result<()> {
    let policy = args.retention.policy(&args.tokens)?;
    let repository = connect(&args.database).await?;
    let report = authority::cleanup(&repository, None, &policy, Timestamp::now()).await?;
    repository.close().await;
    println!(
        "deleted {} expired sessions and {} old revocation events",
        report.sessions_deleted, report.events_deleted
    );
    Ok(())
}

async fn create_user(args: CreateUserArgs) -> anyhow::Result<()> {
    let username = Username::parse("--username", &args.username)?;
    let roles = Roles::parse("--role", &args.roles)?;
    let password = NewPassword::parse("password (standard input)", read_password()?)?;
    let repository = connect(&args.database).await?;
    let passwords = PasswordPool::start(PasswordHasher::new(args.argon2.settings()?)?, 1, 1)?;
    let user_id = authority::create_user(&repository, &passwords, username, password, roles).await?;
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
