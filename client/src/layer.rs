//! [`AuthLayer`]: bearer tokens checked in front of a tonic server or an
//! axum/hyper service. It speaks each caller's protocol: a gRPC request
//! (`content-type: application/grpc...`) is refused with a gRPC status, any
//! other with an HTTP status and a `WWW-Authenticate` challenge (RFC 6750).
//!
//! | outcome | gRPC | HTTP |
//! |---|---|---|
//! | no bearer token | `UNAUTHENTICATED` | 401, `WWW-Authenticate: Bearer` |
//! | token refused (any [`Reason`](crate::Reason)) | `UNAUTHENTICATED` | 401, `WWW-Authenticate: Bearer error="invalid_token"` |
//! | valid token without the required role | `PERMISSION_DENIED` | 403, `WWW-Authenticate: Bearer error="insufficient_scope"` |
//! | the verifier cannot answer | `UNAVAILABLE` | 503 |
//! | valid token | the request goes on with an `Arc<`[`Claims`]`>` in its extensions | the same |

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use tower_layer::Layer;
use tower_service::Service;

use crate::{Claims, Verifier, VerifyError};

/// What the layer lets through; shared by every clone of the service.
#[derive(Debug, Clone, Default)]
struct Policy {
    required_role: Option<String>,
    /// Paths served without a token (exact, or a prefix ending in `/`).
    public_paths: Vec<String>,
}

impl Policy {
    fn is_public(&self, path: &str) -> bool {
        self.public_paths.iter().any(|public| {
            if public.ends_with('/') {
                path.starts_with(public.as_str())
            } else {
                path == public
            }
        })
    }
}

/// A tower layer that lets a request through only with a good bearer token.
///
/// For a whole tonic server, `Server::builder().layer(AuthLayer::new(v))`
/// (let health checks through with
/// `.allow_unauthenticated("/grpc.health.v1.Health/")`); for one service,
/// `.add_service(AuthLayer::new(v).layer(MyServer::new(..)))` (the wrapped
/// service keeps its name); for axum, `Router::layer(AuthLayer::new(v))`.
#[derive(Debug, Clone)]
pub struct AuthLayer<V> {
    verifier: V,
    policy: Arc<Policy>,
}

impl<V: Verifier> AuthLayer<V> {
    pub fn new(verifier: V) -> Self {
        Self {
            verifier,
            policy: Arc::new(Policy::default()),
        }
    }

    /// Lets in only tokens that carry `role`; others get `PERMISSION_DENIED`
    /// (gRPC) or 403 (HTTP).
    pub fn require_role(mut self, role: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.policy).required_role = Some(role.into());
        self
    }

    /// Serves `path` without a token: an exact path, or every path under a
    /// prefix that ends in `/` (such as `/grpc.health.v1.Health/`).
    pub fn allow_unauthenticated(mut self, path: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.policy).public_paths.push(path.into());
        self
    }
}

impl<S, V: Clone> Layer<S> for AuthLayer<V> {
    type Service = Auth<S, V>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            verifier: self.verifier.clone(),
            policy: self.policy.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around another.
#[derive(Debug, Clone)]
pub struct Auth<S, V> {
    inner: S,
    verifier: V,
    policy: Arc<Policy>,
}

/// A wrapped tonic service keeps its name, so `Server::add_service` routes to it.
impl<S: tonic::server::NamedService, V> tonic::server::NamedService for Auth<S, V> {
    const NAME: &'static str = S::NAME;
}

impl<S, V, ReqBody, ResBody> Service<Request<ReqBody>> for Auth<S, V>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    V: Verifier,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The service that poll_ready readied is the one to call; the clone
        // stays behind for the next request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        let policy = self.policy.clone();
        Box::pin(async move {
            if policy.is_public(request.uri().path()) {
                return inner.call(request).await;
            }
            let protocol = Protocol::of(request.headers());
            let outcome = match bearer_token(request.headers()) {
                Some(token) => verifier.verify(token).await,
                None => return Ok(protocol.refuse(Refusal::NoToken)),
            };
            let claims = match outcome {
                Ok(claims) => claims,
                Err(VerifyError::Invalid(reason)) => {
                    tracing::debug!(%reason, "bearer token refused");
                    return Ok(protocol.refuse(Refusal::InvalidToken(reason.as_str())));
                }
                Err(VerifyError::Unavailable(error)) => {
                    tracing::warn!(error = %error, "bearer token cannot be checked; refusing with UNAVAILABLE");
                    return Ok(protocol.refuse(Refusal::Unavailable));
                }
            };
            if let Some(role) = &policy.required_role
                && !claims.has_role(role)
            {
                return Ok(protocol.refuse(Refusal::MissingRole(role)));
            }
            request.extensions_mut().insert::<Arc<Claims>>(claims);
            inner.call(request).await
        })
    }
}

/// The token of `authorization: Bearer <token>` (the scheme in any case).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

enum Refusal<'a> {
    NoToken,
    InvalidToken(&'static str),
    MissingRole(&'a str),
    Unavailable,
}

#[derive(Clone, Copy)]
enum Protocol {
    Grpc,
    Http,
}

impl Protocol {
    fn of(headers: &HeaderMap) -> Self {
        let grpc = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/grpc"));
        if grpc { Self::Grpc } else { Self::Http }
    }

    fn refuse<B: Default>(self, refusal: Refusal<'_>) -> Response<B> {
        match self {
            Self::Grpc => {
                let status = match refusal {
                    Refusal::NoToken => {
                        tonic::Status::unauthenticated("authorization: missing; send `authorization: Bearer <token>`")
                    }
                    Refusal::InvalidToken(reason) => tonic::Status::unauthenticated(format!("token refused: {reason}")),
                    Refusal::MissingRole(role) => tonic::Status::permission_denied(format!("requires the role {role}")),
                    Refusal::Unavailable => tonic::Status::unavailable("the token cannot be checked right now"),
                };
                status.into_http()
            }
            Self::Http => {
                let (status, challenge) = match refusal {
                    Refusal::NoToken => (StatusCode::UNAUTHORIZED, Some("Bearer".to_owned())),
                    Refusal::InvalidToken(reason) => (
                        StatusCode::UNAUTHORIZED,
                        Some(format!("Bearer error=\"invalid_token\", error_description=\"{reason}\"")),
                    ),
                    Refusal::MissingRole(role) => {
                        (StatusCode::FORBIDDEN, Some(format!("Bearer error=\"insufficient_scope\", scope=\"{role}\"")))
                    }
                    Refusal::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, None),
                };
                let mut response = Response::new(B::default());
                *response.status_mut() = status;
                if let Some(challenge) = challenge.and_then(|text| HeaderValue::from_str(&text).ok()) {
                    response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
                }
                response
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::{convert::Infallible, time::UNIX_EPOCH};

    use tower::{ServiceExt, service_fn};

    use crate::{Error, Reason};

    /// A verifier with a fixed answer.
    #[derive(Clone)]
    enum Fixed {
        Good(Vec<String>),
        Refused(Reason),
        Unreachable,
    }

    impl Verifier for Fixed {
        async fn verify(&self, _token: &str) -> Result<Arc<Claims>, VerifyError> {
            match self {
                Self::Good(roles) => Ok(Arc::new(Claims {
                    user_id: "u".into(),
                    username: "alice".into(),
                    session_id: "s".into(),
                    roles: roles.clone(),
                    issued_at: UNIX_EPOCH,
                    expires_at: UNIX_EPOCH,
                })),
                Self::Refused(reason) => Err(VerifyError::Invalid(*reason)),
                Self::Unreachable => Err(VerifyError::Unavailable(Error::Stale)),
            }
        }
    }

    /// Calls a handler behind `layer` that answers 200 and the username it
    /// found in the extensions.
    async fn call(layer: AuthLayer<Fixed>, grpc: bool, authorization: Option<&str>) -> Response<String> {
        let handler = service_fn(|request: Request<String>| async move {
            let username = request.extensions().get::<Arc<Claims>>().map(|claims| claims.username.clone());
            Ok::<_, Infallible>(Response::new(username.unwrap_or_default()))
        });
        let mut request = Request::builder().uri("/notes.v1.Notes/WhoAmI");
        if grpc {
            request = request.header(header::CONTENT_TYPE, "application/grpc+proto");
        }
        if let Some(authorization) = authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        match layer.layer(handler).oneshot(request.body(String::new()).unwrap()).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    fn grpc_code(response: &Response<String>) -> Option<tonic::Code> {
        tonic::Status::from_header_map(response.headers()).map(|status| status.code())
    }

    fn challenge(response: &Response<String>) -> Option<&str> {
        response.headers().get(header::WWW_AUTHENTICATE).and_then(|value| value.to_str().ok())
    }

    #[tokio::test]
    async fn a_good_token_goes_through_with_its_claims() {
        let response = call(AuthLayer::new(Fixed::Good(vec![])), false, Some("Bearer t")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.body(), "alice");
    }

    #[tokio::test]
    async fn http_callers_get_401_with_the_bearer_challenge() {
        let refused = call(AuthLayer::new(Fixed::Refused(Reason::Revoked)), false, Some("Bearer t")).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(challenge(&refused), Some("Bearer error=\"invalid_token\", error_description=\"revoked\""));
        let missing = call(AuthLayer::new(Fixed::Good(vec![])), false, None).await;
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(challenge(&missing), Some("Bearer"));
        let stale = call(AuthLayer::new(Fixed::Unreachable), false, Some("Bearer t")).await;
        assert_eq!(stale.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn grpc_callers_get_unauthenticated() {
        let refused = call(AuthLayer::new(Fixed::Refused(Reason::Expired)), true, Some("Bearer t")).await;
        assert_eq!(refused.status(), StatusCode::OK, "gRPC statuses travel in a 200");
        assert_eq!(grpc_code(&refused), Some(tonic::Code::Unauthenticated));
        let missing = call(AuthLayer::new(Fixed::Good(vec![])), true, Some("Basic dXNlcg==")).await;
        assert_eq!(grpc_code(&missing), Some(tonic::Code::Unauthenticated));
        let stale = call(AuthLayer::new(Fixed::Unreachable), true, Some("Bearer t")).await;
        assert_eq!(grpc_code(&stale), Some(tonic::Code::Unavailable));
    }

    #[tokio::test]
    async fn the_role_check_refuses_with_403_or_permission_denied() {
        let layer = AuthLayer::new(Fixed::Good(vec!["reader".into()])).require_role("writer");
        let http = call(layer.clone(), false, Some("Bearer t")).await;
        assert_eq!(http.status(), StatusCode::FORBIDDEN);
        assert_eq!(challenge(&http), Some("Bearer error=\"insufficient_scope\", scope=\"writer\""));
        assert_eq!(grpc_code(&call(layer, true, Some("Bearer t")).await), Some(tonic::Code::PermissionDenied));
        let writer = AuthLayer::new(Fixed::Good(vec!["writer".into()])).require_role("writer");
        assert_eq!(call(writer, false, Some("Bearer t")).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn public_paths_need_no_token() {
        let layer = AuthLayer::new(Fixed::Refused(Reason::Revoked)).allow_unauthenticated("/notes.v1.Notes/");
        assert_eq!(call(layer, true, None).await.status(), StatusCode::OK);
    }

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, authorization.parse().unwrap());
        headers
    }

    #[test]
    fn the_bearer_scheme_in_any_case_and_nothing_else() {
        assert_eq!(bearer_token(&headers("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&headers("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(&headers("BEARER abc")), Some("abc"));
        assert_eq!(bearer_token(&headers("Basic abc")), None);
        assert_eq!(bearer_token(&headers("Bearer ")), None);
        assert_eq!(bearer_token(&headers("Bearerabc")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[test]
    fn public_paths_are_exact_or_prefixes_ending_in_a_slash() {
        let policy = Policy {
            required_role: None,
            public_paths: vec!["/grpc.health.v1.Health/".into(), "/healthz".into()],
        };
        assert!(policy.is_public("/grpc.health.v1.Health/Check"));
        assert!(policy.is_public("/healthz"));
        assert!(!policy.is_public("/healthz/more"));
        assert!(!policy.is_public("/grpc.health.v1.HealthX/Check"));
    }
}
