//! Bounds on what callers can hold: calls in progress on the whole server
//! (refused at once beyond MAX_CONCURRENT_CALLS, never queued), how long a
//! call may take (REQUEST_TIMEOUT: a request body that stalls mid-message
//! is cut off), and revocation streams per caller. Streams per connection,
//! message size and keepalive are set on the server itself (`startup`).

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

use super::refused::RefusedOr;
use crate::metrics::{self, Shed};

/// Health checks are never turned away for load: an orchestrator that sees
/// a busy server fail its probes would restart it.
const EXEMPT: &str = "/grpc.health.v1.Health/";

#[derive(Clone)]
pub struct CallLimitLayer {
    permits: Arc<Semaphore>,
    max_calls: usize,
    timeout: Duration,
}

impl CallLimitLayer {
    pub fn new(max_calls: usize, timeout: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_calls)),
            max_calls,
            timeout,
        }
    }
}

impl<S> tower::Layer<S> for CallLimitLayer {
    type Service = CallLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallLimit {
            inner,
            limits: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct CallLimit<S> {
    inner: S,
    limits: CallLimitLayer,
}

impl<S, B, R> tower::Service<http::Request<B>> for CallLimit<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = RefusedOr<Limited<S::Future>, R>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let permit = if request.uri().path().starts_with(EXEMPT) {
            None
        } else {
            match self.limits.permits.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    metrics::call_shed(Shed::Concurrency);
                    return RefusedOr::refused(Status::resource_exhausted(format!(
                        "the server is busy: MAX_CONCURRENT_CALLS ({}) calls are in progress; retry shortly",
                        self.limits.max_calls
                    )));
                }
            }
        };
        RefusedOr::Passed {
            inner: Limited {
                inner: self.inner.call(request),
                deadline: tokio::time::sleep(self.limits.timeout),
                timeout: self.limits.timeout,
                _permit: permit,
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// A call in progress: it holds its permit until it answers (or is
    /// dropped), and answers DEADLINE_EXCEEDED when it outlives the timeout.
    pub struct Limited<F> {
        #[pin]
        inner: F,
        #[pin]
        deadline: tokio::time::Sleep,
        timeout: Duration,
        _permit: Option<OwnedSemaphorePermit>,
    }
}

impl<F, R, E> Future for Limited<F>
where
    F: Future<Output = Result<http::Response<R>, E>>,
    R: Default,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.inner.poll(context) {
            return Poll::Ready(output);
        }
        std::task::ready!(this.deadline.poll(context));
        metrics::call_shed(Shed::Deadline);
        Poll::Ready(Ok(Status::deadline_exceeded(format!(
            "the call took longer than REQUEST_TIMEOUT ({})",
            humantime::format_duration(*this.timeout)
        ))
        .into_http()))
    }
}

/// Streams of one kind open per caller, each held by a [`StreamSlot`].
pub struct StreamQuota {
    kind: StreamKind,
    per_caller: usize,
    open: Mutex<HashMap<Arc<str>, usize>>,
}

/// The long-lived streams, each capped per caller by a setting of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Revocations,
    SecurityEvents,
}

impl StreamKind {
    fn setting(self) -> &'static str {
        match self {
            Self::Revocations => "MAX_REVOCATION_STREAMS_PER_CALLER",
            Self::SecurityEvents => "MAX_SECURITY_STREAMS_PER_CALLER",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Self::Revocations => "revocation streams",
            Self::SecurityEvents => "security event streams",
        }
    }

    fn shed(self) -> Shed {
        match self {
            Self::Revocations => Shed::RevocationStreams,
            Self::SecurityEvents => Shed::SecurityStreams,
        }
    }
}

impl StreamQuota {
    pub fn new(kind: StreamKind, per_caller: usize) -> Arc<Self> {
        Arc::new(Self {
            kind,
            per_caller,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more stream of `caller`, or RESOURCE_EXHAUSTED.
    pub fn acquire(self: &Arc<Self>, caller: &Arc<str>) -> Result<StreamSlot, Status> {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(caller.clone()).or_default();
        if *count >= self.per_caller {
            metrics::call_shed(self.kind.shed());
            return Err(Status::resource_exhausted(format!(
                "caller {:?} already holds {} ({}) {}; close one first",
                &**caller,
                self.kind.setting(),
                self.per_caller,
                self.kind.what()
            )));
        }
        *count += 1;
        Ok(StreamSlot {
            quota: self.clone(),
            caller: caller.clone(),
        })
    }
}

/// One open stream; dropping it (when the stream ends) frees the slot.
pub struct StreamSlot {
    quota: Arc<StreamQuota>,
    caller: Arc<str>,
}

impl StreamSlot {
    /// `stream`, holding this slot until it ends.
    pub fn hold<S: tokio_stream::Stream>(self, stream: S) -> impl tokio_stream::Stream<Item = S::Item> {
        use tokio_stream::StreamExt;
        stream.map(move |item| {
            let _held = &self;
            item
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.quota.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.caller) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.caller);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_capped_per_caller_and_freed_when_they_end() {
        let quota = StreamQuota::new(StreamKind::Revocations, 2);
        let (billing, audit) = (Arc::from("billing"), Arc::from("audit"));
        let first = quota.acquire(&billing).unwrap();
        let _second = quota.acquire(&billing).unwrap();
        let refused = quota.acquire(&billing).err().unwrap();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("MAX_REVOCATION_STREAMS_PER_CALLER"), "{}", refused.message());
        let _other = quota.acquire(&audit).unwrap();
        drop(first);
        let _third = quota.acquire(&billing).unwrap();
    }
}
