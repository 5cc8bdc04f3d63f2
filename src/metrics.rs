//! Prometheus metrics: every name and label lives here, so the exported
//! contract is visible in one place. The rest of the code calls the small
//! functions below; without METRICS_ADDR nothing is installed and they cost
//! next to nothing.
//!
//! Exported (all prefixed `token_authority_`):
//! - `logins_total{outcome}`, `refreshes_total{outcome}`,
//!   `verifications_total{reason}`, `revocations_total{reason}`,
//!   `reuse_detections_total`: counters;
//! - `live_sessions`, `stream_subscribers`, `session_cache_entries`: gauges;
//! - `rpc_duration_seconds{method}`: a latency histogram per RPC.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::OnceLock,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use crate::{
    authority::{InvalidReason, Verdict},
    domain::{RevocationReason, tokens::TokenRejection},
};

const RPC_DURATION: &str = "token_authority_rpc_duration_seconds";
/// From 50µs (a Verify) to 5s (a Login under a queue of argon2 work).
const LATENCY_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls reuse it).
pub fn install() -> anyhow::Result<PrometheusHandle> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(RPC_DURATION.into()), &LATENCY_BUCKETS)?
        .install_recorder()?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Serves `GET /metrics` on `listener`, and keeps the histograms' windows
/// moving, until the task is stopped.
pub async fn serve(listener: TcpListener, handle: PrometheusHandle) {
    let upkeep = {
        let handle = handle.clone();
        async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(5));
            loop {
                ticker.tick().await;
                handle.run_upkeep();
            }
        }
    };
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move { handle.render() }
        }),
    );
    tokio::select! {
        served = axum::serve(listener, router) => {
            if let Err(error) = served {
                tracing::warn!(error = %error, "the metrics listener stopped");
            }
        }
        () = upkeep => {}
    }
}

/// Binds the metrics listener, naming the setting if that fails.
pub async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .map_err(|error| anyhow::anyhow!("METRICS_ADDR: cannot listen on {address}: {error}"))
}

/// How a Login ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    Ok,
    WrongPassword,
    UnknownUser,
    UserDisabled,
    Throttled,
}

impl LoginOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::WrongPassword => "wrong_password",
            Self::UnknownUser => "unknown_user",
            Self::UserDisabled => "user_disabled",
            Self::Throttled => "throttled",
        }
    }
}

/// How a Refresh ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshOutcome {
    Rotated,
    /// A retired token within the grace period: the current token again.
    Retry,
    ReuseDetected,
    Revoked,
    UnknownSession,
    InvalidToken,
    Conflict,
    Error,
}

impl RefreshOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Rotated => "rotated",
            Self::Retry => "retry",
            Self::ReuseDetected => "reuse_detected",
            Self::Revoked => "revoked",
            Self::UnknownSession => "unknown_session",
            Self::InvalidToken => "invalid_token",
            Self::Conflict => "conflict",
            Self::Error => "error",
        }
    }
}

/// Logs show outcomes with the same words as the metrics.
macro_rules! display_as_label {
    ($($outcome:ty),*) => {$(
        impl std::fmt::Display for $outcome {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.label())
            }
        }
    )*};
}
display_as_label!(LoginOutcome, RefreshOutcome);

fn verification_label(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Valid(_) => "ok",
        Verdict::Invalid(InvalidReason::Token(rejection)) => match rejection {
            TokenRejection::Malformed => "malformed",
            TokenRejection::BadSignature => "bad_signature",
            TokenRejection::Expired => "expired",
            TokenRejection::NotYetValid => "not_yet_valid",
            TokenRejection::WrongIssuer => "wrong_issuer",
            TokenRejection::WrongAudience => "wrong_audience",
        },
        Verdict::Invalid(InvalidReason::Revoked) => "revoked",
        Verdict::Invalid(InvalidReason::Rotated) => "rotated",
        Verdict::Invalid(InvalidReason::UnknownSession) => "unknown_session",
    }
}

pub fn login(outcome: LoginOutcome) {
    metrics::counter!("token_authority_logins_total", "outcome" => outcome.label()).increment(1);
}

pub fn refresh(outcome: RefreshOutcome) {
    metrics::counter!("token_authority_refreshes_total", "outcome" => outcome.label()).increment(1);
}

pub fn verification(verdict: &Verdict) {
    metrics::counter!("token_authority_verifications_total", "reason" => verification_label(verdict)).increment(1);
}

pub fn revocations(reason: RevocationReason, count: u64) {
    metrics::counter!("token_authority_revocations_total", "reason" => reason.as_str()).increment(count);
}

pub fn reuse_detected() {
    metrics::counter!("token_authority_reuse_detections_total").increment(1);
}

pub fn live_sessions(count: u64) {
    metrics::gauge!("token_authority_live_sessions").set(count as f64);
}

pub fn stream_subscribers(count: usize) {
    metrics::gauge!("token_authority_stream_subscribers").set(count as f64);
}

pub fn session_cache_entries(count: usize) {
    metrics::gauge!("token_authority_session_cache_entries").set(count as f64);
}

/// A tower layer that times every gRPC call by method (the request path).
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcTimingLayer;

impl<S> tower::Layer<S> for RpcTimingLayer {
    type Service = RpcTiming<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcTiming { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RpcTiming<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for RpcTiming<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Timed<S::Future>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // "/tokenauthority.v1.TokenAuthority/Verify" -> "TokenAuthority/Verify"
        let path = request.uri().path();
        let method = path.rsplit_once('.').map_or(path, |(_, method)| method).to_owned();
        Timed {
            inner: self.inner.call(request),
            method: Some(method),
            started: Instant::now(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future, recording its duration when it completes (for a
    /// stream: until its first response).
    pub struct Timed<F> {
        #[pin]
        inner: F,
        method: Option<String>,
        started: Instant,
    }
}

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(context));
        if let Some(method) = this.method.take() {
            metrics::histogram!(RPC_DURATION, "method" => method).record(this.started.elapsed().as_secs_f64());
        }
        Poll::Ready(output)
    }
}
