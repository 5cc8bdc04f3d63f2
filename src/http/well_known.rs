//! `GET /.well-known/jwks.json`: the published keys (RFC 7517), cacheable
//! for well under KEY_PUBLISH_AHEAD, so that every cached copy holds the
//! next key before it signs. `GET /.well-known/openid-configuration`: where
//! the keys are and which algorithms sign, for OIDC-aware middleware that
//! starts from the issuer. This is no OpenID provider (there is no
//! authorization endpoint); the document says only what a verifier needs.

use std::time::Duration;

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Serialize;

use super::{Caching, HttpState};

pub const JWKS_PATH: &str = "/.well-known/jwks.json";
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// What the discovery document says besides the keys.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// JWT_ISSUER: the `iss` of our tokens.
    pub issuer: String,
    /// HTTP_PUBLIC_URL, when set: the base of `jwks_uri`.
    pub public_url: Option<String>,
    /// How long clients may cache the JWKS and this document.
    pub max_age: Duration,
}

pub(super) fn routes() -> Router<HttpState> {
    Router::new().route(JWKS_PATH, get(jwks)).route(DISCOVERY_PATH, get(discovery))
}

async fn jwks(State(state): State<HttpState>) -> Response {
    json_response(state.authority.jwks().to_string(), Caching::Shared(state.discovery.max_age))
}

#[derive(Serialize)]
struct DiscoveryDocument<'a> {
    issuer: &'a str,
    jwks_uri: String,
    id_token_signing_alg_values_supported: Vec<&'static str>,
}

async fn discovery(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let max_age = state.discovery.max_age;
    let (base, caching) = match &state.discovery.public_url {
        Some(url) => (url.clone(), Caching::Shared(max_age)),
        None => (
            format!("http://{}", host(&headers).unwrap_or_else(|| state.local_addr.to_string())),
            Caching::PerHost(max_age),
        ),
    };
    let document = DiscoveryDocument {
        issuer: &state.discovery.issuer,
        jwks_uri: format!("{base}{JWKS_PATH}"),
        id_token_signing_alg_values_supported: state
            .authority
            .published_algorithms()
            .into_iter()
            .map(|algorithm| algorithm.as_str())
            .collect(),
    };
    match serde_json::to_string(&document) {
        Ok(body) => json_response(body, caching),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The request's Host, if it is a plain host name or address with an
/// optional port: anything else is not echoed into the document.
fn host(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let plain = !host.is_empty()
        && host.len() <= 255
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    plain.then(|| host.to_owned())
}

fn json_response(body: String, caching: Caching) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    caching.apply(headers);
    response
}
