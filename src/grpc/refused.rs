//! The response future of a layer that may answer a call itself (a refusal)
//! instead of passing it on: no box on the path that passes.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tonic::Status;

pin_project_lite::pin_project! {
    #[project = RefusedOrProjection]
    pub enum RefusedOr<F, B> {
        /// Answered here, before the service saw the call.
        Refused { response: Option<http::Response<B>> },
        Passed { #[pin] inner: F },
    }
}

impl<F, B> RefusedOr<F, B> {
    /// A gRPC answer with `status` (trailers only), from the layer.
    pub fn refused(status: Status) -> Self
    where
        B: Default,
    {
        Self::Refused {
            response: Some(status.into_http()),
        }
    }
}

impl<F, B, E> Future for RefusedOr<F, B>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    B: Default,
{
    type Output = Result<http::Response<B>, E>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            RefusedOrProjection::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                // Polled again after it answered: a bug in the caller, answered safely.
                None => Poll::Ready(Ok(Status::internal("polled after completion").into_http())),
            },
            RefusedOrProjection::Passed { inner } => inner.poll(context),
        }
    }
}
