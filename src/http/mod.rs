//! The HTTP/1.1 listener (HTTP_ADDR, off unless set): what plain HTTP
//! clients need of the authority: key publication (`well_known`), the JWKS
//! and a discovery document, for Envoy's `jwt_authn`, Istio and JWT
//! middleware; and `GET /auth` (`auth_request`), nginx's `auth_request`. Each group of routes lives in a
//! file of its own and is merged into [`router`]; like `grpc`, handlers only
//! translate to and from the authority.
//!
//! Prometheus metrics stay on their own listener (METRICS_ADDR): this one
//! serves public documents, and is often exposed where metrics should not
//! be.

mod auth_request;
mod server;
mod well_known;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::TcpListener;

use crate::authority::Authority;

pub use server::{HttpBounds, serve};
pub use well_known::Discovery;

/// What the handlers share.
#[derive(Clone)]
pub struct HttpState {
    authority: Arc<Authority>,
    discovery: Arc<Discovery>,
    /// Where the listener is bound: the fallback for `jwks_uri` when a
    /// request has no usable Host header.
    local_addr: SocketAddr,
}

impl HttpState {
    pub fn new(authority: Arc<Authority>, discovery: Discovery, local_addr: SocketAddr) -> Self {
        Self {
            authority,
            discovery: Arc::new(discovery),
            local_addr,
        }
    }
}

/// Every route of the HTTP listener.
pub fn router(state: HttpState) -> axum::Router {
    well_known::routes().merge(auth_request::routes()).with_state(state)
}

/// Binds the listener, naming the setting if that fails.
pub async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .map_err(|error| anyhow::anyhow!("HTTP_ADDR: cannot listen on {address}: {error}"))
}

/// Who may keep a document, and for how long.
#[derive(Debug, Clone, Copy)]
enum Caching {
    /// The same for every request: any cache may keep it.
    Shared(Duration),
    /// Named after the request's Host: only the client may keep it, since
    /// a shared cache that handed it to a request for another host would
    /// send that host's verifiers wherever the first request said.
    PerHost(Duration),
}

impl Caching {
    /// Sets `Cache-Control` (and `Vary` for a per-host document).
    fn apply(self, headers: &mut axum::http::HeaderMap) {
        use axum::http::{HeaderValue, header};
        let (scope, max_age) = match self {
            Self::Shared(max_age) => ("public", max_age),
            Self::PerHost(max_age) => {
                headers.insert(header::VARY, HeaderValue::from_static("host"));
                ("private", max_age)
            }
        };
        if let Ok(value) = HeaderValue::from_str(&format!("{scope}, max-age={}", max_age.as_secs())) {
            headers.insert(header::CACHE_CONTROL, value);
        }
    }
}
