//! Logging: tracing with a filter from RUST_LOG, as readable lines or JSON.
//! Fields carry ids (user_id, session_id), never tokens, passwords or hashes.

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{LogArgs, LogFormat};

/// Installs the global subscriber; logs go to standard error, so that the
/// output of commands (a created user's id) stays clean on standard output.
pub fn init(settings: &LogArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&settings.log_filter).map_err(|error| anyhow::anyhow!("RUST_LOG: {error}"))?;
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = match settings.log_format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
    installed.map_err(|error| anyhow::anyhow!("could not install the logger: {error}"))
}

/// "outer: inner: root", for logs.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
