//! `GET /auth`: nginx's `auth_request` (and any proxy's "forward auth"). The
//! proxy sends a subrequest carrying the client's `Authorization` header;
//! 200 lets the request through, with the holder's identity in `X-User-Id`,
//! `X-Session-Id`, `X-Username` and `X-Roles` for the proxy to pass on
//! (`auth_request_set`), and 401 with an RFC 6750 `WWW-Authenticate`
//! refuses it. The decision is Verify's (`forward_auth`).
//!
//! Anyone who reaches the listener may call it: it tells the holder of a
//! token whether the token is good now and what its claims say, which the
//! holder can read from the token itself. It never mints or revokes
//! anything, so it needs no service key (nginx could not send one on a
//! subrequest without exposing it in its configuration anyway).
//!
//! A database failure answers 503: nginx treats any status but 2xx, 401 and
//! 403 as an error and refuses the request with 500, so a failure never
//! lets a request through.

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use super::HttpState;
use crate::{
    forward_auth::{self, Decision, Refusal},
    telemetry::error_chain,
};

pub const AUTH_PATH: &str = "/auth";

/// The identity headers, in the order of [`IDENTITY_HEADERS`]; fixed, as
/// nginx renames them with `auth_request_set` anyway.
const HEADERS: [&str; 4] = ["x-user-id", "x-session-id", "x-username", "x-roles"];

pub(super) fn routes() -> Router<HttpState> {
    Router::new().route(AUTH_PATH, get(auth))
}

async fn auth(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let authorization = headers.get_all(header::AUTHORIZATION).into_iter().map(|value| value.as_bytes().to_vec());
    match forward_auth::decide(&state.authority, authorization).await {
        Ok(Decision::Allow(identity)) => {
            let mut response = StatusCode::OK.into_response();
            for (name, value) in HEADERS.into_iter().zip(identity.values()) {
                // Usernames may hold any printable character, UTF-8 too:
                // sent as bytes, which HTTP/1.1 allows (obs-text).
                match HeaderValue::from_bytes(value.as_bytes()) {
                    Ok(value) => {
                        response.headers_mut().insert(HeaderName::from_static(name), value);
                    }
                    Err(_) => return refused(Refusal::InvalidToken),
                }
            }
            response
        }
        Ok(Decision::Refuse(refusal)) => refused(refusal),
        Err(error) => {
            tracing::warn!(error = %error_chain(&error), "auth_request: cannot verify");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

fn refused(refusal: Refusal) -> Response {
    let mut response = StatusCode::UNAUTHORIZED.into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(refusal.challenge()));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward_auth::IDENTITY_HEADERS;

    #[test]
    fn the_headers_are_the_identity_headers_with_x() {
        assert_eq!(HEADERS, IDENTITY_HEADERS.map(|name| format!("x-{name}")).each_ref().map(String::as_str));
    }
}
