//! h2load (from nghttp2) as an independent load generator: a C program that
//! costs the shared CPU far less per call than a Rust gRPC client would, so
//! that a comparison of two cheap calls measures the server, not the client.
//! It sends the same request body every time, which suits calls whose cost
//! does not depend on the body (a health check, Verify of one token).

use std::{process::Command, time::Duration};

use anyhow::Context;
use prost::Message;

use super::load::{LoadSpec, Shape, Stats};

pub fn available() -> bool {
    Command::new("h2load").arg("--version").output().is_ok_and(|output| output.status.success())
}

/// A gRPC request body: the uncompressed-message flag, its length, the message.
fn frame(message: &impl Message) -> Vec<u8> {
    let encoded = message.encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&u32::try_from(encoded.len()).unwrap_or(u32::MAX).to_be_bytes());
    body.extend_from_slice(&encoded);
    body
}

/// Where h2load sends its calls, and with which credential.
pub struct Target {
    url: String,
    authorization: Option<String>,
}

impl Target {
    /// `method_path` on the server at `address`, over TLS when `tls` (h2load
    /// negotiates HTTP/2 by ALPN and does not check the certificate).
    pub fn new(address: std::net::SocketAddr, tls: bool, method_path: &str) -> Self {
        let scheme = if tls { "https" } else { "http" };
        Self {
            url: format!("{scheme}://{address}{method_path}"),
            authorization: None,
        }
    }

    /// Sends `authorization: Bearer <key>` with every call.
    pub fn authorized(self, key: &str) -> Self {
        Self {
            authorization: Some(format!("authorization: Bearer {key}")),
            ..self
        }
    }
}

/// Closed loop of `shape.in_flight()` calls, spread as `shape` says (`spec`
/// gives the durations).
pub async fn run(target: &Target, message: &impl Message, spec: LoadSpec, shape: Shape) -> anyhow::Result<Stats> {
    let directory = tempfile::TempDir::new()?;
    let body_path = directory.path().join("body.bin");
    let log_path = directory.path().join("requests.log");
    std::fs::write(&body_path, frame(message))?;
    let mut arguments = vec![
        "-D".to_owned(),
        format!("{}ms", spec.duration.as_millis()),
        "--warm-up-time".to_owned(),
        format!("{}ms", spec.warmup.as_millis().max(1)),
        "-c".to_owned(),
        shape.connections.to_string(),
        "-m".to_owned(),
        shape.streams.to_string(),
        "-H".to_owned(),
        "content-type: application/grpc".to_owned(),
        "-H".to_owned(),
        "te: trailers".to_owned(),
        "-d".to_owned(),
        body_path.display().to_string(),
        "--log-file".to_owned(),
        log_path.display().to_string(),
    ];
    if let Some(authorization) = &target.authorization {
        arguments.extend(["-H".to_owned(), authorization.clone()]);
    }
    arguments.push(target.url.clone());
    let output = tokio::process::Command::new("h2load").args(&arguments).output().await.context("running h2load")?;
    anyhow::ensure!(output.status.success(), "h2load failed: {}", String::from_utf8_lossy(&output.stderr));
    // One line per request of the measured period: start (µs since the epoch),
    // HTTP status, duration in µs.
    let log = std::fs::read_to_string(&log_path)?;
    let mut stats = Stats::empty();
    for line in log.lines() {
        let mut fields = line.split('\t');
        let status = fields.nth(1).unwrap_or_default();
        let micros: u64 = fields.next().and_then(|field| field.trim().parse().ok()).unwrap_or(0);
        if status == "200" {
            stats.record(Duration::from_micros(micros));
        } else {
            stats.errors += 1;
        }
    }
    stats.elapsed = spec.duration;
    Ok(stats)
}
