//! A tonic service protected by token-authority: every call needs a valid
//! bearer token, checked in this process by a [`LocalVerifier`] that
//! follows the authority's revocation stream (a logout anywhere is refused
//! here within milliseconds), and `WhoAmI` answers from the verified claims.
//!
//! Run it beside an authority (the key is one of its SERVICE_API_KEYS):
//!
//! ```sh
//! TOKEN_AUTHORITY_URL=http://127.0.0.1:50051 SERVICE_API_KEY=dev-service-key-change-me \
//!   cargo run -p token-authority-client --example protected_service
//! ```
//!
//! and call it with a token from Login:
//!
//! ```sh
//! grpcurl -plaintext -import-path client/examples/proto -proto notes/v1/notes.proto \
//!   -H "authorization: Bearer $TOKEN" 127.0.0.1:50061 notes.v1.Notes/WhoAmI
//! ```
//!
//! The crate's tests (`client/tests/protected_service.rs`) run this very
//! service against a real authority.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use token_authority_client::{Auth, AuthLayer, Claims, Client, LocalVerifier, WhenStale};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};
use tower_layer::Layer;

/// The example's own contract (client/examples/proto/notes/v1/notes.proto).
pub mod notes {
    tonic::include_proto!("notes.v1");
}

use notes::{
    WhoAmIRequest, WhoAmIResponse,
    notes_server::{Notes, NotesServer},
};

/// The service's handlers: they only ever run behind the layer.
#[derive(Debug, Default)]
pub struct NotesService;

#[tonic::async_trait]
impl Notes for NotesService {
    async fn who_am_i(&self, request: Request<WhoAmIRequest>) -> Result<Response<WhoAmIResponse>, Status> {
        // The layer put the verified claims here; a request without them
        // never reaches the handler.
        let claims = request
            .extensions()
            .get::<Arc<Claims>>()
            .ok_or_else(|| Status::internal("the service runs without its authentication layer"))?;
        Ok(Response::new(WhoAmIResponse {
            user_id: claims.user_id.clone(),
            username: claims.username.clone(),
            session_id: claims.session_id.clone(),
            roles: claims.roles.clone(),
        }))
    }
}

/// The Notes service behind the layer, ready for `Server::add_service`.
pub fn protected(verifier: LocalVerifier) -> Auth<NotesServer<NotesService>, LocalVerifier> {
    AuthLayer::new(verifier).layer(NotesServer::new(NotesService))
}

/// Serves the protected service on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    verifier: LocalVerifier,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(protected(verifier))
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), shutdown)
        .await
}

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(setting("RUST_LOG", "info")).init();
    let client = Client::builder(setting("TOKEN_AUTHORITY_URL", "http://127.0.0.1:50051"))
        .service_key(setting("SERVICE_API_KEY", "dev-service-key-change-me"))
        .connect_lazy()?;
    let verifier = LocalVerifier::builder(
        client,
        setting("JWT_ISSUER", "token-authority"),
        setting("JWT_AUDIENCE", "token-authority"),
    )
    // Four missed heartbeats at the authority's default of 15 s: refuse
    // (503 / UNAVAILABLE) rather than trust a state that may miss a logout.
    .max_staleness(Duration::from_secs(60), WhenStale::Refuse)
    .start();
    tracing::info!("waiting for the authority's keys and revocations");
    verifier.synced().await;
    let address: SocketAddr = setting("LISTEN_ADDR", "127.0.0.1:50061").parse()?;
    let listener = TcpListener::bind(address).await?;
    tracing::info!(%address, "serving notes.v1.Notes behind token-authority");
    serve(listener, verifier, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
