//! The client's one error type.

use tonic::Code;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting cannot be used (a URL that does not parse, a service key
    /// that is not valid metadata). Names the setting, never echoes a secret.
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The channel could not be set up (TLS configuration, connection).
    #[error("cannot connect to the token authority")]
    Connect(#[source] tonic::transport::Error),
    /// The authority (or the transport) answered with a status.
    #[error("token authority: {}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// A [`LocalVerifier`](crate::LocalVerifier) has not heard from the
    /// authority within its `max_staleness` (or has not synced yet), and
    /// its policy is to refuse.
    #[error("the local verifier's state is stale (nothing heard from the token authority within max_staleness)")]
    Stale,
    /// The authority's answer lacks something it always sends.
    #[error("token authority sent an incomplete answer: {0} is missing")]
    Incomplete(&'static str),
}

impl Error {
    /// The gRPC status code, when the error is a status.
    pub fn code(&self) -> Option<Code> {
        match self {
            Self::Status(status) => Some(status.code()),
            _ => None,
        }
    }

    /// Whether trying again later may succeed (the authority or the network
    /// is down, or the deadline passed), as opposed to an answer.
    pub fn is_transient(&self) -> bool {
        matches!(self.code(), Some(Code::Unavailable | Code::DeadlineExceeded)) || matches!(self, Self::Connect(_))
    }
}
