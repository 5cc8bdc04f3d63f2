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

/// `Cache-Control` for a document that may be cached `max_age`.
fn cache_control(max_age: Duration) -> String {
    format!("public, max-age={}", max_age.as_secs())
}
