//! Serving a router over HTTP/1.1 with the bounds the gRPC port has, for the
//! HTTP listener and the metrics listener alike: at most `max_connections`
//! at once (more wait in the kernel's accept queue), and a connection that
//! has not sent a whole request head within `header_read_timeout` (idle
//! between requests, or sending headers a byte at a time) is closed. Without
//! them, `axum::serve` keeps every connection for as long as its peer likes.

use std::{sync::Arc, time::Duration};

use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore, task::JoinSet};

/// What one HTTP listener lets its clients hold.
#[derive(Debug, Clone, Copy)]
pub struct HttpBounds {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

/// How long to wait after a failed accept (out of file descriptors, say)
/// before trying again, so that the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until the task is stopped; stopping it
/// drops every open connection with it. `name` is for the logs.
pub async fn serve(listener: TcpListener, router: axum::Router, bounds: HttpBounds, name: &'static str) {
    let slots = Arc::new(Semaphore::new(bounds.max_connections));
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(listener = name, error = %error, "cannot accept a connection");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        connections.spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(bounds.header_read_timeout);
            if let Err(error) = builder.serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(listener = name, error = %error, "HTTP connection ended");
            }
        });
    }
}
