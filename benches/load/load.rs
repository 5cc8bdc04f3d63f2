//! A closed-loop load generator: a fixed number of calls in flight, spread
//! over several HTTP/2 connections, each sent as soon as the previous one of
//! its worker returned. Latencies go to an HDR histogram (microseconds).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use tonic::transport::Channel;

#[derive(Debug, Clone, Copy)]
pub struct LoadSpec {
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

/// How the calls in flight are spread over HTTP/2 connections: a few
/// connections carrying many concurrent streams each, or many connections
/// carrying one. The server's cost per call differs between the two (how
/// many requests each read and write of a connection carries), so a ratio of
/// two cheap calls is shown in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub connections: usize,
    /// Calls in flight on each connection.
    pub streams: usize,
}

impl Shape {
    /// `concurrency` calls spread over at most `connections` connections.
    pub fn spread(concurrency: usize, connections: usize) -> Self {
        let connections = connections.clamp(1, concurrency.max(1));
        Self {
            connections,
            streams: concurrency.div_ceil(connections),
        }
    }

    pub fn in_flight(self) -> usize {
        self.connections * self.streams
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |count: usize| if count == 1 { "" } else { "s" };
        write!(
            f,
            "{} connection{} x {} stream{}",
            self.connections,
            plural(self.connections),
            self.streams,
            plural(self.streams)
        )
    }
}

/// `4x16`: connections x streams per connection.
impl std::str::FromStr for Shape {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parse = |part: &str| part.trim().parse::<usize>().ok().filter(|count| *count > 0);
        match text.split_once('x').map(|(connections, streams)| (parse(connections), parse(streams))) {
            Some((Some(connections), Some(streams))) => Ok(Self { connections, streams }),
            _ => Err(format!("{text:?}: expected <connections>x<streams>, e.g. 4x16")),
        }
    }
}

pub type Call = Arc<dyn Fn(usize, Channel) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

#[derive(Debug, Clone)]
pub struct Stats {
    pub completed: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Latencies in microseconds.
    pub latencies: Histogram<u64>,
}

impl Stats {
    pub fn empty() -> Self {
        Self {
            completed: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            latencies: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        }
    }

    pub fn per_second(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// A latency quantile in milliseconds.
    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        self.latencies.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// The longest latency in milliseconds.
    pub fn max_ms(&self) -> f64 {
        self.latencies.max() as f64 / 1000.0
    }

    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1);
        let _ = self.latencies.record(micros);
        self.completed += 1;
    }

    fn merge(&mut self, other: &Stats) {
        self.completed += other.completed;
        self.errors += other.errors;
        let _ = self.latencies.add(&other.latencies);
    }

    /// Adds a later slice of the same measurement.
    pub fn absorb(&mut self, slice: &Stats) {
        self.merge(slice);
        self.elapsed += slice.elapsed;
    }
}

/// Measures two things in alternating slices, `rounds` of each, and returns
/// both totals. On a shared, noisy machine, whatever slows one slice down
/// then weighs on both sides of the ratio alike.
pub async fn alternate(
    rounds: usize,
    mut first: impl AsyncFnMut() -> anyhow::Result<Stats>,
    mut second: impl AsyncFnMut() -> anyhow::Result<Stats>,
) -> anyhow::Result<(Stats, Stats)> {
    let (mut a, mut b) = (Stats::empty(), Stats::empty());
    for _ in 0..rounds.max(1) {
        a.absorb(&first().await?);
        b.absorb(&second().await?);
    }
    Ok((a, b))
}

/// Runs `call` from `spec.concurrency` workers; `call` answers whether the
/// request succeeded. Only calls that start after the warm-up and end
/// before the deadline are counted.
pub async fn closed_loop(channels: &[Channel], spec: LoadSpec, call: Call) -> Stats {
    let started = Instant::now();
    let measure_from = started + spec.warmup;
    let deadline = measure_from + spec.duration;
    let workers: Vec<_> = (0..spec.concurrency)
        .map(|worker| {
            let channel = channels[worker % channels.len()].clone();
            let call = call.clone();
            tokio::spawn(async move {
                let mut stats = Stats::empty();
                loop {
                    let sent = Instant::now();
                    if sent >= deadline {
                        return stats;
                    }
                    let ok = call(worker, channel.clone()).await;
                    let done = Instant::now();
                    if sent >= measure_from && done <= deadline {
                        if ok {
                            stats.record(done - sent);
                        } else {
                            stats.errors += 1;
                        }
                    }
                }
            })
        })
        .collect();
    let mut total = Stats::empty();
    for worker in workers {
        if let Ok(stats) = worker.await {
            total.merge(&stats);
        }
    }
    total.elapsed = spec.duration;
    total
}
