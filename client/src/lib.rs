//! What a backend service needs from token-authority, in one crate.
//!
//! - [`LocalVerifier`]: checks the authority's tokens in this process, with
//!   the keys and revocations the authority pushes over its revocation
//!   stream: microseconds for a token seen for the first time, nanoseconds
//!   for one seen before, a logout elsewhere refused within milliseconds.
//!   When it has heard nothing from the authority for longer than its
//!   `max_staleness`, it refuses, or asks the authority ([`WhenStale`]).
//! - [`AuthLayer`]: a tower layer for tonic servers and for axum or hyper.
//!   It takes the bearer token, has a [`Verifier`] check it, puts the
//!   [`Claims`] into the request's extensions, and refuses with gRPC
//!   `UNAUTHENTICATED` or HTTP 401 and `WWW-Authenticate`; it can require a
//!   role.
//! - [`Client`]: the authority's gRPC API behind a small typed surface, with
//!   TLS or mutual TLS, the service key, a deadline on every call, and
//!   retries with backoff on `UNAVAILABLE` for the calls that are safe to
//!   repeat (see [`Client`] for which, and why).
//! - [`SessionHandle`]: the backend-for-frontend side of a user's session.
//!   It holds the user's token, refreshes it once (single-flight) when it
//!   enters its refresh window, retries a lost refresh only within the
//!   rotation grace period, and reports [`LoggedOut`] when the session has
//!   been revoked (logout elsewhere, an operator, a password change, token
//!   reuse) or has expired.
//!
//! ```no_run
//! use std::time::Duration;
//! use token_authority_client::{AuthLayer, Client, LocalVerifier, WhenStale};
//!
//! # async fn run() -> Result<(), token_authority_client::Error> {
//! let client = Client::builder("http://127.0.0.1:50051")
//!     .service_key("dev-service-key-change-me")
//!     .timeout(Duration::from_secs(2))
//!     .connect_lazy()?;
//! let verifier = LocalVerifier::builder(client, "token-authority", "token-authority")
//!     .max_staleness(Duration::from_secs(60), WhenStale::Refuse)
//!     .start();
//! verifier.synced().await;
//! // Any tonic service (or axum router) behind the layer now needs a valid token.
//! let layer = AuthLayer::new(verifier).require_role("reader");
//! # let _ = layer;
//! # Ok(())
//! # }
//! ```

mod claims;
mod client;
mod clock;
mod error;
mod layer;
mod local;
mod session;
mod token;
mod verifier;

pub use claims::{Claims, Reason};
pub use client::{Client, ClientBuilder, ClientContext, Login, Refreshed, RetryPolicy, SessionInfo};
pub use clock::{Clock, SystemClock};
pub use error::Error;
pub use layer::{Auth, AuthLayer};
pub use local::{JwksError, LocalRefusal, LocalVerifier, LocalVerifierBuilder, WhenStale};
pub use session::{LoggedOut, SessionError, SessionHandle, SessionPolicy};
pub use token::AccessToken;
pub use verifier::{Verifier, VerifyError};

/// The generated gRPC code for `tokenauthority.v1`, for what the typed API
/// does not cover (the revocation stream's messages, the admin service).
pub mod proto {
    tonic::include_proto!("tokenauthority.v1");
}
