//! Runs argon2 on its own threads, off the async workers, so that a burst of
//! logins cannot stall Verify. On Linux the threads run under SCHED_IDLE:
//! they take every core nobody else wants, and yield it the moment an async
//! worker wakes up. (A mere `nice` still let a worker wait for the end of an
//! argon2 time slice, which tripled Verify's p99 during a login burst.) Under
//! a load that keeps every core busy, logins wait in the queue.
//! The queue is bounded; when it is full, callers are told to retry
//! (RESOURCE_EXHAUSTED) instead of piling up unbounded work.

use std::{
    num::NonZeroUsize,
    panic::AssertUnwindSafe,
    sync::{
        Arc, Mutex,
        mpsc::{self, Receiver, SyncSender, TrySendError},
    },
    thread,
};

use secrecy::SecretString;
use tokio::sync::oneshot;
use tracing::Span;

use super::{AuthorityError, InternalError};
use crate::domain::{
    Password,
    password_hash::{Argon2Hasher, PasswordCheck},
};

type Job = Box<dyn FnOnce() + Send>;

/// Niceness of the hashing threads where SCHED_IDLE is refused.
const HASHING_NICENESS: i32 = 19;

#[derive(Clone)]
pub struct PasswordPool {
    hasher: Arc<Argon2Hasher>,
    jobs: SyncSender<Job>,
}

impl PasswordPool {
    /// Starts `threads` hashing threads behind a queue of `queue` jobs. They
    /// stop when the last clone of the pool is dropped.
    pub fn start(hasher: Argon2Hasher, threads: NonZeroUsize, queue: NonZeroUsize) -> std::io::Result<Self> {
        let (jobs, receiver) = mpsc::sync_channel::<Job>(queue.get());
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..threads.get() {
            let receiver = receiver.clone();
            thread::Builder::new().name(format!("argon2-{index}")).spawn(move || work(&receiver))?;
        }
        Ok(Self {
            hasher: Arc::new(hasher),
            jobs,
        })
    }

    pub async fn verify(
        &self,
        password: Password,
        stored: Option<SecretString>,
    ) -> Result<PasswordCheck, AuthorityError> {
        self.run(move |hasher| {
            use secrecy::ExposeSecret;
            hasher.verify(&password, stored.as_ref().map(|hash| hash.expose_secret()))
        })
        .await?
        .map_err(|error| InternalError::PasswordHashing(error).into())
    }

    pub async fn hash(&self, password: Password) -> Result<String, AuthorityError> {
        self.run(move |hasher| hasher.hash(&password))
            .await?
            .map_err(|error| InternalError::PasswordHashing(error).into())
    }

    async fn run<T: Send + 'static>(
        &self,
        task: impl FnOnce(&Argon2Hasher) -> T + Send + 'static,
    ) -> Result<T, AuthorityError> {
        let (reply, answer) = oneshot::channel();
        let hasher = self.hasher.clone();
        let span = Span::current();
        let job: Job = Box::new(move || {
            // The caller gave up (deadline, disconnect): skip the work.
            if reply.is_closed() {
                return;
            }
            let _entered = span.enter();
            let _ = reply.send(task(&hasher));
        });
        self.jobs.try_send(job).map_err(|error| match error {
            TrySendError::Full(_) => AuthorityError::Overloaded,
            TrySendError::Disconnected(_) => InternalError::PasswordPoolStopped.into(),
        })?;
        // The job panicked or the threads stopped: either way it will not answer.
        answer.await.map_err(|_| InternalError::PasswordPoolStopped.into())
    }
}

fn work(receiver: &Mutex<Receiver<Job>>) {
    lower_priority();
    loop {
        let job = {
            let receiver = receiver.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            receiver.recv()
        };
        let Ok(job) = job else {
            return; // the pool was dropped
        };
        // A panicking job drops its reply, which the caller sees as an error;
        // the thread lives on for the next job.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    let idle = libc::sched_param { sched_priority: 0 };
    // On Linux, both calls with id 0 apply to the calling thread only.
    // SAFETY: neither call has memory-safety preconditions; `idle` outlives the call.
    let scheduled = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &idle) };
    if scheduled != 0 {
        // SAFETY: as above.
        let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, HASHING_NICENESS) };
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}
