//! The question [`AuthLayer`](crate::AuthLayer) asks of each token, as a
//! trait, so that the same layer works with a [`LocalVerifier`] (the usual
//! choice) or with the authority's Verify (one call per request).

use std::{future::Future, sync::Arc};

use crate::{Claims, Client, Error, LocalVerifier, Reason};

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The token is not good: the caller must not be let in.
    #[error("token refused: {0}")]
    Invalid(Reason),
    /// The question could not be answered (the authority is unreachable,
    /// or a local verifier's state is too old to trust). Not the caller's
    /// fault: answer "try again later", not "log in again".
    #[error("token cannot be checked right now")]
    Unavailable(#[source] Error),
}

/// Checks bearer tokens.
pub trait Verifier: Clone + Send + Sync + 'static {
    /// The claims of `token` if it is good right now.
    fn verify(&self, token: &str) -> impl Future<Output = Result<Arc<Claims>, VerifyError>> + Send;
}

/// Local verification, with the stale-state policy it was built with.
impl Verifier for LocalVerifier {
    fn verify(&self, token: &str) -> impl Future<Output = Result<Arc<Claims>, VerifyError>> + Send {
        LocalVerifier::verify(self, token)
    }
}

/// Remote verification: one Verify call per token, retried on UNAVAILABLE.
impl Verifier for Client {
    async fn verify(&self, token: &str) -> Result<Arc<Claims>, VerifyError> {
        Client::verify(self, token).await.map(Arc::new)
    }
}
