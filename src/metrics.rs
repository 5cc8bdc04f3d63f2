//! Prometheus metrics: every name and label lives here, so the exported
//! contract is visible in one place. The rest of the code calls the small
//! functions below; without METRICS_ADDR nothing is installed and they cost
//! next to nothing.
//!
//! Exported (all prefixed `token_authority_`):
//! - `logins_total{outcome}`, `refreshes_total{outcome}`,
//!   `verifications_total{reason}`, `revocations_total{reason}`,
//!   `reuse_detections_total`, `caller_refusals_total{reason}`,
//!   `calls_shed_total{limit}`, `security_events_total{kind}`: counters;
//! - `live_sessions`, `stream_subscribers`, `session_cache_entries`: gauges;
//! - `rpc_duration_seconds{method}`: a latency histogram per RPC. `method`
//!   is `Service/Method` for each method this server serves (the two
//!   reflection versions share one label), `unknown` for any other path.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{Mutex, OnceLock, PoisonError},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use crate::{
    authority::{InvalidReason, Verdict},
    domain::{RevocationReason, audit::SecurityEventKind, tokens::TokenRejection},
};

const RPC_DURATION: &str = "token_authority_rpc_duration_seconds";
/// From 50µs (a Verify) to 5s (a Login under a queue of argon2 work).
const LATENCY_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls reuse it).
pub fn install() -> anyhow::Result<PrometheusHandle> {
    // Tests build several servers in one process, some at the same moment,
    // and a recorder can be installed only once per process.
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _installing = INSTALLING.lock().unwrap_or_else(PoisonError::into_inner);
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
pub async fn serve(listener: TcpListener, handle: PrometheusHandle, bounds: crate::http::HttpBounds) {
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
        () = crate::http::serve(listener, router, bounds, "metrics") => {}
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
    /// The password was right, but the user was disabled or the password
    /// changed before the session was written.
    UserChanged,
}

impl LoginOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::WrongPassword => "wrong_password",
            Self::UnknownUser => "unknown_user",
            Self::UserDisabled => "user_disabled",
            Self::Throttled => "throttled",
            Self::UserChanged => "user_changed",
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
    /// Beyond REFRESH_MIN_INTERVAL.
    RateLimited,
    /// The client does not match the session's binding (enforce).
    BindingMismatch,
    UserDisabled,
    /// The session reached SESSION_MAX_LIFETIME.
    MaxLifetime,
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
            Self::RateLimited => "rate_limited",
            Self::BindingMismatch => "binding_mismatch",
            Self::UserDisabled => "user_disabled",
            Self::MaxLifetime => "max_lifetime",
            Self::Error => "error",
        }
    }
}

/// Why the caller check refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerRefusal {
    /// No credential where one is needed.
    Missing,
    /// An `authorization` header that is not `Bearer <key>`.
    Malformed,
    /// A key that is not configured.
    UnknownKey,
    /// A known caller without the access the method needs.
    NotPermitted,
    /// An admin call on a server with no admin credential.
    AdminDisabled,
}

impl CallerRefusal {
    fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::UnknownKey => "unknown_key",
            Self::NotPermitted => "not_permitted",
            Self::AdminDisabled => "admin_disabled",
        }
    }
}

/// Which limit turned a call away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// MAX_CONCURRENT_CALLS calls were in progress.
    Concurrency,
    /// The call outlived REQUEST_TIMEOUT.
    Deadline,
    /// The caller held MAX_REVOCATION_STREAMS_PER_CALLER streams.
    RevocationStreams,
    SecurityStreams,
}

impl Shed {
    fn label(self) -> &'static str {
        match self {
            Self::Concurrency => "concurrency",
            Self::Deadline => "deadline",
            Self::RevocationStreams => "revocation_streams",
            Self::SecurityStreams => "security_streams",
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
display_as_label!(LoginOutcome, RefreshOutcome, CallerRefusal, Shed);

/// Every `reason` of `verifications_total`, in the order of
/// [`verification_reason`].
const VERIFICATION_REASONS: [&str; 12] = [
    "ok",
    "malformed",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "wrong_issuer",
    "wrong_audience",
    "revoked",
    "rotated",
    "unknown_session",
    "binding_mismatch",
    "wrong_type",
];

/// The verdict's index in [`VERIFICATION_REASONS`].
fn verification_reason(verdict: &Verdict) -> usize {
    match verdict {
        Verdict::Valid(_) => 0,
        Verdict::Invalid(InvalidReason::Token(rejection)) => match rejection {
            TokenRejection::Malformed => 1,
            TokenRejection::BadSignature => 2,
            TokenRejection::Expired => 3,
            TokenRejection::NotYetValid => 4,
            TokenRejection::WrongIssuer => 5,
            TokenRejection::WrongAudience => 6,
            TokenRejection::WrongType => 11,
        },
        Verdict::Invalid(InvalidReason::Revoked) => 7,
        Verdict::Invalid(InvalidReason::Rotated) => 8,
        Verdict::Invalid(InvalidReason::UnknownSession) => 9,
        Verdict::Invalid(InvalidReason::BindingMismatch) => 10,
    }
}

/// The `verifications_total` counter of each reason, registered with the
/// recorder on its first use. Verify is the hottest call, and `counter!`
/// builds its key and looks it up in the registry every time (650
/// instructions a Verify under callgrind, even with no recorder at all).
static VERIFICATIONS: [OnceLock<metrics::Counter>; VERIFICATION_REASONS.len()] =
    [const { OnceLock::new() }; VERIFICATION_REASONS.len()];

pub fn login(outcome: LoginOutcome) {
    metrics::counter!("token_authority_logins_total", "outcome" => outcome.label()).increment(1);
}

pub fn refresh(outcome: RefreshOutcome) {
    metrics::counter!("token_authority_refreshes_total", "outcome" => outcome.label()).increment(1);
}

pub fn verification(verdict: &Verdict) {
    // Without a recorder nothing is counted. Checked first, so that no
    // handle of the no-op recorder is kept before `install` (tests start
    // servers without metrics and then one with, in one process).
    if HANDLE.get().is_none() {
        return;
    }
    let reason = verification_reason(verdict);
    VERIFICATIONS[reason]
        .get_or_init(
            || metrics::counter!("token_authority_verifications_total", "reason" => VERIFICATION_REASONS[reason]),
        )
        .increment(1);
}

pub fn revocations(reason: RevocationReason, count: u64) {
    metrics::counter!("token_authority_revocations_total", "reason" => reason.as_str()).increment(count);
}

pub fn caller_refused(refusal: CallerRefusal) {
    metrics::counter!("token_authority_caller_refusals_total", "reason" => refusal.label()).increment(1);
}

pub fn call_shed(limit: Shed) {
    metrics::counter!("token_authority_calls_shed_total", "limit" => limit.label()).increment(1);
}

pub fn reuse_detected() {
    metrics::counter!("token_authority_reuse_detections_total").increment(1);
}

pub fn security_event(kind: SecurityEventKind) {
    metrics::counter!("token_authority_security_events_total", "kind" => kind.as_str()).increment(1);
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

/// The `method` label of paths that name no method we serve.
pub const UNKNOWN_METHOD: &str = "unknown";

/// Every method served, as request path => `method` label, written out so
/// that labels are a fixed set: a label taken from the path itself would let
/// any client create a series per invented path, without bound. A test checks
/// the list against the services' descriptors.
macro_rules! rpc_methods {
    ($($path:literal => $label:literal,)*) => {
        /// Every `method` label but [`UNKNOWN_METHOD`].
        pub const METHOD_LABELS: &[&str] = &[$($label,)*];

        /// The `method` label of a request path.
        pub fn method_label(path: &str) -> &'static str {
            match path {
                $($path => $label,)*
                _ => UNKNOWN_METHOD,
            }
        }

        /// The latency histogram of a request path's method. Every key is
        /// static, so finding the handle allocates nothing.
        fn rpc_duration(path: &str) -> metrics::Histogram {
            match path {
                $($path => metrics::histogram!(RPC_DURATION, "method" => $label),)*
                _ => metrics::histogram!(RPC_DURATION, "method" => "unknown"),
            }
        }
    };
}

rpc_methods! {
    "/tokenauthority.v1.TokenAuthority/Login" => "TokenAuthority/Login",
    "/tokenauthority.v1.TokenAuthority/Refresh" => "TokenAuthority/Refresh",
    "/tokenauthority.v1.TokenAuthority/Logout" => "TokenAuthority/Logout",
    "/tokenauthority.v1.TokenAuthority/LogoutAll" => "TokenAuthority/LogoutAll",
    "/tokenauthority.v1.TokenAuthority/Verify" => "TokenAuthority/Verify",
    "/tokenauthority.v1.TokenAuthority/ChangePassword" => "TokenAuthority/ChangePassword",
    "/tokenauthority.v1.TokenAuthority/ListSessions" => "TokenAuthority/ListSessions",
    "/tokenauthority.v1.TokenAuthority/WatchRevocations" => "TokenAuthority/WatchRevocations",
    "/tokenauthority.v1.TokenAuthority/GetJwks" => "TokenAuthority/GetJwks",
    "/tokenauthority.v1.TokenAuthorityAdmin/CreateUser" => "TokenAuthorityAdmin/CreateUser",
    "/tokenauthority.v1.TokenAuthorityAdmin/SetUserDisabled" => "TokenAuthorityAdmin/SetUserDisabled",
    "/tokenauthority.v1.TokenAuthorityAdmin/RevokeSession" => "TokenAuthorityAdmin/RevokeSession",
    "/tokenauthority.v1.TokenAuthorityAdmin/ListUserSessions" => "TokenAuthorityAdmin/ListUserSessions",
    "/tokenauthority.v1.TokenAuthorityAdmin/SetUserRoles" => "TokenAuthorityAdmin/SetUserRoles",
    "/tokenauthority.v1.TokenAuthorityAdmin/ListAuditEvents" => "TokenAuthorityAdmin/ListAuditEvents",
    "/tokenauthority.v1.TokenAuthorityAdmin/WatchSecurityEvents" => "TokenAuthorityAdmin/WatchSecurityEvents",
    "/envoy.service.auth.v3.Authorization/Check" => "Authorization/Check",
    "/grpc.health.v1.Health/Check" => "Health/Check",
    "/grpc.health.v1.Health/Watch" => "Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo" => "ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo" => "ServerReflection/ServerReflectionInfo",
}

/// A tower layer that times every gRPC call by method (see [`method_label`]).
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
        let histogram = rpc_duration(request.uri().path());
        Timed {
            inner: self.inner.call(request),
            histogram: Some(histogram),
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
        histogram: Option<metrics::Histogram>,
        started: Instant,
    }
}

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(context));
        if let Some(histogram) = this.histogram.take() {
            histogram.record(this.started.elapsed().as_secs_f64());
        }
        Poll::Ready(output)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn each_verdict_counts_under_its_own_reason() {
        use InvalidReason::*;
        use TokenRejection::*;
        let invalid = [
            (Token(Malformed), "malformed"),
            (Token(BadSignature), "bad_signature"),
            (Token(Expired), "expired"),
            (Token(NotYetValid), "not_yet_valid"),
            (Token(WrongIssuer), "wrong_issuer"),
            (Token(WrongAudience), "wrong_audience"),
            (Revoked, "revoked"),
            (Rotated, "rotated"),
            (UnknownSession, "unknown_session"),
            (BindingMismatch, "binding_mismatch"),
            (Token(WrongType), "wrong_type"),
        ];
        for (reason, label) in invalid {
            assert_eq!(VERIFICATION_REASONS[verification_reason(&Verdict::Invalid(reason))], label);
        }
        assert_eq!(VERIFICATION_REASONS[0], "ok");
    }

    #[test]
    fn invented_paths_are_unknown() {
        for path in [
            "/evil.Service/M1",
            "/tokenauthority.v1.TokenAuthority/Nope",
            "/",
            "",
            "Verify",
        ] {
            assert_eq!(method_label(path), UNKNOWN_METHOD, "{path}");
        }
        assert_eq!(method_label("/tokenauthority.v1.TokenAuthority/Verify"), "TokenAuthority/Verify");
    }

    /// A method added to a proto without a label here would be timed as
    /// `unknown`.
    #[test]
    fn every_served_method_has_its_label() {
        let descriptor_sets = [
            crate::grpc::proto::FILE_DESCRIPTOR_SET,
            crate::grpc::EXT_AUTHZ_FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ];
        let mut methods = 0;
        for encoded in descriptor_sets {
            let set = prost_types::FileDescriptorSet::decode(encoded).unwrap();
            for file in &set.file {
                for service in &file.service {
                    for method in &service.method {
                        let (service, method) = (service.name(), method.name());
                        let path = format!("/{}.{service}/{method}", file.package());
                        assert_eq!(method_label(&path), format!("{service}/{method}"), "{path}");
                        methods += 1;
                    }
                }
            }
        }
        assert_eq!(methods, 21);
    }
}
