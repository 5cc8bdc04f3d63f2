//! Who may call what: one tower layer in front of every service, which sees
//! the method path (an interceptor does not) and decides before any handler
//! or message decoding runs.
//!
//! - [`PUBLIC`] methods (health, reflection) are open to anyone.
//! - Every other method, `tokenauthority.v1.TokenAuthority` and any path
//!   nobody serves, needs a service credential: a service or admin key in
//!   `authorization: Bearer <key>`, or (with TLS_CLIENT_CA_FILE) a verified
//!   client certificate, whose name becomes the caller's name. With
//!   ALLOW_UNAUTHENTICATED_CALLERS, a call without any credential passes as
//!   the caller `unauthenticated`.
//! - `tokenauthority.v1.TokenAuthorityAdmin` needs an admin key, or a client
//!   certificate named in TLS_ADMIN_CLIENTS.
//!
//! A call that passes carries its [`Caller`] in the request's extensions.
//! A presented key that is wrong is always refused, even where none is
//! needed, and so is a key in a malformed header: a caller that sends one
//! believes it needs it. Refusals are counted, and logged at a bounded rate
//! with a short fingerprint of the key (never the key).
//!
//! Keys are compared as SHA-256 digests in constant time, so neither timing
//! nor length tells an attacker how close a guess was.

use std::{
    net::SocketAddr,
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};
use tonic::{Status, transport::server::TcpConnectInfo};

use super::refused::RefusedOr;
use crate::{
    config::{ApiKey, ApiKeyConfig, CallerConfig, TlsConfig},
    metrics::{self, CallerRefusal},
    tls::ConnectionInfo,
};

/// Methods anyone may call, as full paths, or services as their path prefix
/// (ending in `/`). The one list to extend for a public method.
pub const PUBLIC: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Every method of this service needs an admin credential.
const ADMIN_SERVICE: &str = "/tokenauthority.v1.TokenAuthorityAdmin/";

/// The name of a caller let through without a credential
/// (ALLOW_UNAUTHENTICATED_CALLERS).
pub const UNAUTHENTICATED: &str = "unauthenticated";

/// Refusal log lines: a burst of this many, then one a second; the rest
/// are counted in the metric and in the next line's `suppressed`.
const LOG_BURST: u32 = 20;

type KeyDigest = [u8; 32];

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Admin calls, and everything a service may do.
    Admin,
    /// TokenAuthority calls.
    Service,
}

/// How a caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    ApiKey,
    ClientCertificate,
    /// None, on a server that lets such calls through.
    Nothing,
}

/// Who is calling: put into the request's extensions by the layer, so that
/// handlers (and logs, and the audit trail) can name the service or
/// operator that acted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key's name from the configuration (`name:key`), never the key; or
    /// the client certificate's name.
    pub name: Arc<str>,
    pub access: Access,
    pub credential: Credential,
}

/// What a method needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    Nothing,
    Service,
    Admin,
}

fn needs(path: &str) -> Needs {
    let public = |entry: &&str| {
        if entry.ends_with('/') {
            path.starts_with(entry)
        } else {
            path == *entry
        }
    };
    if PUBLIC.iter().any(public) {
        Needs::Nothing
    } else if path.starts_with(ADMIN_SERVICE) {
        Needs::Admin
    } else {
        Needs::Service
    }
}

/// The configured credentials, and the decision for each call.
pub struct CallerAuth {
    admin: Box<[(Arc<str>, KeyDigest)]>,
    service: Box<[(Arc<str>, KeyDigest)]>,
    /// Client certificate names that may make admin calls.
    admin_clients: Box<[Arc<str>]>,
    allow_unauthenticated: bool,
    refusals: RefusalLog,
}

impl CallerAuth {
    pub fn new(keys: &ApiKeyConfig, callers: &CallerConfig, tls: Option<&TlsConfig>) -> Self {
        Self {
            admin: keys.admin.iter().map(named_digest).collect(),
            service: keys.service.iter().map(named_digest).collect(),
            admin_clients: tls
                .map(|tls| tls.admin_clients.iter().map(|name| Arc::from(name.as_str())).collect())
                .unwrap_or_default(),
            allow_unauthenticated: callers.allow_unauthenticated,
            refusals: RefusalLog::new(),
        }
    }

    /// Whether any admin credential exists; without one, every admin call is refused.
    pub fn admin_configured(&self) -> bool {
        !self.admin.is_empty() || !self.admin_clients.is_empty()
    }

    pub fn into_layer(self) -> CallerAuthLayer {
        CallerAuthLayer { auth: Arc::new(self) }
    }

    /// The caller of a call to `path`, `None` for a public method that got
    /// no credential; or the refusal.
    fn authenticate(
        &self,
        path: &str,
        headers: &http::HeaderMap,
        extensions: &http::Extensions,
    ) -> Result<Option<Caller>, Status> {
        let needs = needs(path);
        let connection = extensions.get::<ConnectionInfo>();
        let peer = connection
            .map(|connection| connection.remote_addr)
            .or_else(|| extensions.get::<TcpConnectInfo>().and_then(TcpConnectInfo::remote_addr));
        let refuse = |refusal: CallerRefusal, fingerprint: Option<&str>, status: Status| {
            self.refusals.record(refusal, fingerprint, peer, path);
            status
        };
        if needs == Needs::Admin && !self.admin_configured() {
            return Err(refuse(
                CallerRefusal::AdminDisabled,
                None,
                Status::permission_denied("the admin API is disabled: the server has no ADMIN_API_KEYS configured"),
            ));
        }
        let caller = match headers.get(http::header::AUTHORIZATION) {
            Some(value) => {
                let key = bearer_key(value).map_err(|status| refuse(CallerRefusal::Malformed, None, status))?;
                let digest: KeyDigest = Sha256::digest(key.as_bytes()).into();
                self.identify(&digest).ok_or_else(|| {
                    refuse(
                        CallerRefusal::UnknownKey,
                        Some(&fingerprint(&digest)),
                        Status::unauthenticated("authorization: unknown key"),
                    )
                })?
            }
            None => match connection.and_then(|connection| connection.client_name.clone()) {
                Some(name) => {
                    let admin = self.admin_clients.contains(&name);
                    Caller {
                        name,
                        access: if admin { Access::Admin } else { Access::Service },
                        credential: Credential::ClientCertificate,
                    }
                }
                None if needs == Needs::Nothing => return Ok(None),
                None if needs == Needs::Service && self.allow_unauthenticated => Caller {
                    name: Arc::from(UNAUTHENTICATED),
                    access: Access::Service,
                    credential: Credential::Nothing,
                },
                None => {
                    return Err(refuse(
                        CallerRefusal::Missing,
                        None,
                        Status::unauthenticated(
                            "authorization: missing; send `authorization: Bearer <key>` (or a client certificate)",
                        ),
                    ));
                }
            },
        };
        if needs == Needs::Admin {
            if caller.access != Access::Admin {
                return Err(refuse(
                    CallerRefusal::NotPermitted,
                    None,
                    Status::permission_denied(format!(
                        "caller {:?} may not make admin calls: they need an admin key (ADMIN_API_KEYS) or an admin client certificate (TLS_ADMIN_CLIENTS)",
                        &*caller.name
                    )),
                ));
            }
            tracing::info!(operator = %caller.name, "admin call");
        }
        Ok(Some(caller))
    }

    fn identify(&self, digest: &KeyDigest) -> Option<Caller> {
        let caller = |name, access| Caller {
            name,
            access,
            credential: Credential::ApiKey,
        };
        // Both lists are searched whatever is found first, so timing tells nothing.
        let admin = find(&self.admin, digest);
        let service = find(&self.service, digest);
        admin
            .map(|name| caller(name, Access::Admin))
            .or_else(|| service.map(|name| caller(name, Access::Service)))
    }
}

/// The name of the key whose digest is `digest`. Compares against every
/// key, without stopping early, so timing tells nothing.
fn find(keys: &[(Arc<str>, KeyDigest)], digest: &KeyDigest) -> Option<Arc<str>> {
    let mut found = None;
    for (name, key) in keys {
        if bool::from(digests_equal(key, digest)) {
            found = Some(name.clone());
        }
    }
    found
}

/// Whether two digests are equal, in constant time: the differences of
/// their 8-byte words are OR-ed together without a branch, and only that
/// one word goes through `subtle`. Comparing the 32 bytes one by one with
/// `subtle` (a barrier per byte) took 58 ns natively, this 4 ns, and it
/// runs for every key on every call.
fn digests_equal(a: &KeyDigest, b: &KeyDigest) -> Choice {
    let (a, b) = (a.as_chunks::<8>().0, b.as_chunks::<8>().0);
    let difference = a
        .iter()
        .zip(b)
        .fold(0u64, |difference, (a, b)| difference | (u64::from_ne_bytes(*a) ^ u64::from_ne_bytes(*b)));
    difference.ct_eq(&0)
}

fn named_digest(key: &ApiKey) -> (Arc<str>, KeyDigest) {
    (Arc::from(key.name.as_str()), Sha256::digest(key.key.expose_secret().as_bytes()).into())
}

/// The first 8 hex digits of the key's SHA-256: enough for an operator to
/// tell which key it was (`printf %s "$KEY" | sha256sum | cut -c1-8`),
/// far too little to recover it.
fn fingerprint(digest: &KeyDigest) -> String {
    digest[..4].iter().map(|byte| format!("{byte:02x}")).collect()
}

fn bearer_key(value: &http::HeaderValue) -> Result<&str, Status> {
    let text = value.to_str().map_err(|_| Status::unauthenticated("authorization: not valid text"))?;
    text.strip_prefix("Bearer ")
        .or_else(|| text.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .ok_or_else(|| Status::unauthenticated("authorization: expected `Bearer <key>`"))
}

/// Counts every refusal and logs them at a bounded rate, so that a flood of
/// bad keys cannot flood the logs.
struct RefusalLog {
    limiter: DefaultDirectRateLimiter,
    suppressed: AtomicU64,
}

impl RefusalLog {
    fn new() -> Self {
        let quota =
            Quota::per_second(NonZeroU32::MIN).allow_burst(NonZeroU32::new(LOG_BURST).unwrap_or(NonZeroU32::MIN));
        Self {
            limiter: RateLimiter::direct(quota),
            suppressed: AtomicU64::new(0),
        }
    }

    fn record(&self, refusal: CallerRefusal, key_fingerprint: Option<&str>, peer: Option<SocketAddr>, path: &str) {
        metrics::caller_refused(refusal);
        if self.limiter.check().is_err() {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // The path is the caller's to choose: bounded before it is logged.
        let method: String = path.chars().take(128).collect();
        tracing::warn!(
            reason = %refusal,
            key_fingerprint,
            peer = peer.map(tracing::field::display),
            method,
            suppressed = self.suppressed.swap(0, Ordering::Relaxed),
            "call refused: no valid caller credential"
        );
    }
}

/// The layer: every call goes through [`CallerAuth`] first.
#[derive(Clone)]
pub struct CallerAuthLayer {
    auth: Arc<CallerAuth>,
}

impl<S> tower::Layer<S> for CallerAuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            auth: self.auth.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    auth: Arc<CallerAuth>,
}

impl<S, B, R> tower::Service<http::Request<B>> for Authenticated<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = RefusedOr<S::Future, R>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match self.auth.authenticate(request.uri().path(), request.headers(), request.extensions()) {
            Ok(caller) => {
                if let Some(caller) = caller {
                    request.extensions_mut().insert(caller);
                }
                RefusedOr::Passed {
                    inner: self.inner.call(request),
                }
            }
            Err(status) => RefusedOr::refused(status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn auth(allow_unauthenticated: bool, admin_clients: &[&str]) -> CallerAuth {
        let keys = ApiKeyConfig {
            admin: vec![ApiKey::new("ops", "admin-key-0000000001")],
            service: vec![ApiKey::new("billing", "service-key-00000001")],
        };
        let callers = CallerConfig {
            allow_unauthenticated,
            reflection: true,
        };
        let tls = TlsConfig {
            cert_file: "cert.pem".into(),
            key_file: "key.pem".into(),
            client_ca_file: Some("ca.pem".into()),
            admin_clients: admin_clients.iter().map(ToString::to_string).collect(),
            reload_interval: std::time::Duration::from_secs(1),
            handshake_timeout: std::time::Duration::from_secs(1),
        };
        CallerAuth::new(&keys, &callers, Some(&tls))
    }

    fn headers(authorization: Option<&str>) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        }
        headers
    }

    fn certificate(name: &str) -> http::Extensions {
        let mut extensions = http::Extensions::new();
        extensions.insert(ConnectionInfo {
            remote_addr: "127.0.0.1:1".parse().unwrap(),
            client_name: Some(Arc::from(name)),
        });
        extensions
    }

    const VERIFY: &str = "/tokenauthority.v1.TokenAuthority/Verify";
    const CREATE_USER: &str = "/tokenauthority.v1.TokenAuthorityAdmin/CreateUser";

    #[test]
    fn health_and_reflection_are_public_everything_else_is_not() {
        assert_eq!(needs("/grpc.health.v1.Health/Check"), Needs::Nothing);
        assert_eq!(needs("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"), Needs::Nothing);
        assert_eq!(needs(VERIFY), Needs::Service);
        assert_eq!(needs("/invented.Service/Method"), Needs::Service);
        assert_eq!(needs("/grpc.health.v1.Healthy/Check"), Needs::Service);
        assert_eq!(needs(CREATE_USER), Needs::Admin);
    }

    #[test]
    fn keys_name_their_caller_and_their_access() {
        let auth = auth(false, &[]);
        let none = http::Extensions::new();
        let service = auth.authenticate(VERIFY, &headers(Some("Bearer service-key-00000001")), &none).unwrap();
        assert_eq!(service.map(|caller| (caller.name, caller.access)), Some((Arc::from("billing"), Access::Service)));
        let admin = auth.authenticate(CREATE_USER, &headers(Some("Bearer admin-key-0000000001")), &none).unwrap();
        assert_eq!(admin.map(|caller| caller.access), Some(Access::Admin));
        let denied = auth.authenticate(CREATE_USER, &headers(Some("Bearer service-key-00000001")), &none);
        assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);
    }

    #[test]
    fn missing_wrong_or_malformed_credentials_are_refused() {
        let auth = auth(false, &[]);
        let none = http::Extensions::new();
        for bad in [
            None,
            Some("Bearer wrong-key-000000001"),
            Some("service-key-00000001"),
            Some("Bearer "),
        ] {
            let error = auth.authenticate(VERIFY, &headers(bad), &none).unwrap_err();
            assert_eq!(error.code(), Code::Unauthenticated, "{bad:?}");
        }
        let public =
            auth.authenticate("/grpc.health.v1.Health/Check", &headers(Some("Bearer wrong-key-000000001")), &none);
        assert_eq!(
            public.unwrap_err().code(),
            Code::Unauthenticated,
            "a wrong key is refused even where none is needed"
        );
        assert_eq!(auth.authenticate("/grpc.health.v1.Health/Check", &headers(None), &none).unwrap(), None);
    }

    #[test]
    fn a_client_certificate_names_the_caller_and_may_be_an_admin() {
        let auth = auth(false, &["ops-console"]);
        let service = auth.authenticate(VERIFY, &headers(None), &certificate("billing.internal")).unwrap().unwrap();
        assert_eq!(
            (&*service.name, service.access, service.credential),
            ("billing.internal", Access::Service, Credential::ClientCertificate)
        );
        let denied = auth.authenticate(CREATE_USER, &headers(None), &certificate("billing.internal"));
        assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);
        let admin = auth.authenticate(CREATE_USER, &headers(None), &certificate("ops-console")).unwrap().unwrap();
        assert_eq!(admin.access, Access::Admin);
    }

    #[test]
    fn the_opt_out_lets_service_calls_through_but_never_admin_calls() {
        let auth = auth(true, &[]);
        let none = http::Extensions::new();
        let caller = auth.authenticate(VERIFY, &headers(None), &none).unwrap().unwrap();
        assert_eq!((&*caller.name, caller.credential), (UNAUTHENTICATED, Credential::Nothing));
        assert_eq!(auth.authenticate(CREATE_USER, &headers(None), &none).unwrap_err().code(), Code::Unauthenticated);
        let wrong = auth.authenticate(VERIFY, &headers(Some("Bearer wrong-key-000000001")), &none);
        assert_eq!(wrong.unwrap_err().code(), Code::Unauthenticated);
    }

    /// The inner service of the layer under test: answers with the
    /// caller it found in the request's extensions.
    #[derive(Clone)]
    struct EchoCaller;

    impl tower::Service<http::Request<()>> for EchoCaller {
        type Response = http::Response<Option<Caller>>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<()>) -> Self::Future {
            std::future::ready(Ok(http::Response::new(request.extensions().get::<Caller>().cloned())))
        }
    }

    #[tokio::test]
    async fn the_layer_leaves_the_caller_in_the_request_extensions() {
        use tower::{Layer, Service};
        let mut service = auth(false, &[]).into_layer().layer(EchoCaller);
        let request = http::Request::builder()
            .uri(VERIFY)
            .header("authorization", "Bearer service-key-00000001")
            .body(())
            .unwrap();
        let response = service.call(request).await.unwrap();
        let caller = response.into_body().expect("the caller is in the extensions");
        assert_eq!((&*caller.name, caller.access, caller.credential), ("billing", Access::Service, Credential::ApiKey));
        let refused = service.call(http::Request::builder().uri(VERIFY).body(()).unwrap()).await.unwrap();
        assert_eq!(refused.headers()["grpc-status"], "16", "UNAUTHENTICATED, before the service");
    }

    #[test]
    fn digests_are_equal_only_when_every_byte_is() {
        let digest: KeyDigest = Sha256::digest(b"service-key-00000001").into();
        assert!(bool::from(digests_equal(&digest, &digest.clone())));
        for position in 0..digest.len() {
            for bit in 0..8 {
                let mut other = digest;
                other[position] ^= 1 << bit;
                assert!(!bool::from(digests_equal(&digest, &other)), "byte {position}, bit {bit}");
            }
        }
    }

    #[test]
    fn fingerprints_are_eight_hex_digits_of_the_sha256() {
        let digest: KeyDigest = Sha256::digest(b"abc").into();
        assert_eq!(fingerprint(&digest), "ba7816bf");
    }
}
