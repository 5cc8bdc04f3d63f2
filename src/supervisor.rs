//! The one owner of the server's background tasks (outbox follower, LISTEN,
//! health probe, cleanup, gauges, the metrics listener).
//! They start when the server runs and stop together with it; none is
//! spawned anywhere else, so none outlives a failed start or a stop.

use std::future::Future;

use tokio::task::JoinSet;

#[derive(Default)]
pub struct Supervisor {
    tasks: JoinSet<&'static str>,
}

impl Supervisor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a task that should run until the server stops.
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(async move {
            task.await;
            name
        });
    }

    /// Resolves when a task ends by itself, which none should while the
    /// server runs: it names the task (and its panic, if it panicked).
    /// Never resolves when there is no task.
    pub async fn task_ended(&mut self) -> String {
        match self.tasks.join_next().await {
            Some(Ok(name)) => format!("the background task `{name}` ended"),
            Some(Err(error)) => format!("a background task failed: {error}"),
            None => std::future::pending().await,
        }
    }

    /// Stops every task and waits until each has.
    pub async fn stop(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicBool, Ordering},
        },
        time::Duration,
    };

    use super::*;

    /// Sets its flag when dropped: proof that its task was stopped.
    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn stop_ends_every_task_before_returning() {
        let mut supervisor = Supervisor::new();
        let flags: Vec<_> = (0..3).map(|_| Arc::new(AtomicBool::new(false))).collect();
        for flag in &flags {
            let guard = DropFlag(flag.clone());
            supervisor.spawn("forever", async move {
                let _guard = guard;
                std::future::pending::<()>().await;
            });
        }
        supervisor.stop().await;
        assert!(flags.iter().all(|flag| flag.load(Ordering::SeqCst)));
    }

    #[tokio::test]
    async fn a_task_that_ends_is_reported_by_name() {
        let mut supervisor = Supervisor::new();
        supervisor.spawn("forever", std::future::pending());
        supervisor.spawn("short-lived", tokio::time::sleep(Duration::from_millis(1)));
        assert_eq!(supervisor.task_ended().await, "the background task `short-lived` ended");
        supervisor.stop().await;
    }
}
