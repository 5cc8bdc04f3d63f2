//! The floors: what the hardware and the libraries allow, measured in the
//! same run, in-process, without the service around them.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use token_authority::{
    domain::{
        Password, Session, Timestamp, TokenId,
        passwords::{Argon2Settings, PasswordHasher},
    },
    repository::{Repository, Rotation},
};

use super::load::Stats;

/// argon2id hashes per second with the server's parameters, on every core.
pub fn argon2_per_second(duration: Duration) -> anyhow::Result<f64> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let hasher = Arc::new(PasswordHasher::new(Argon2Settings::default())?);
    let password = Password::parse("password", "benchmark passphrase".into())?;
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let hasher = hasher.clone();
            let password = password.clone();
            std::thread::spawn(move || {
                let mut hashes = 0u64;
                while started.elapsed() < duration {
                    let _ = hasher.hash(&password);
                    hashes += 1;
                }
                hashes
            })
        })
        .collect();
    let hashes: u64 = workers.into_iter().map(|worker| worker.join().unwrap_or(0)).sum();
    Ok(hashes as f64 / started.elapsed().as_secs_f64())
}

/// The write transaction a Refresh commits (the guarded session update, the
/// cursor, the outbox insert), through the same repository code and database
/// driver, from `concurrency` tasks, each rotating its own session.
pub async fn rotation_transactions(
    repository: Repository,
    sessions: Vec<Session>,
    warmup: Duration,
    duration: Duration,
) -> Stats {
    let started = Instant::now();
    let measure_from = started + warmup;
    let deadline = measure_from + duration;
    let total = Arc::new(Mutex::new(Stats::empty()));
    let workers: Vec<_> = sessions
        .into_iter()
        .map(|mut session| {
            let repository = repository.clone();
            let total = total.clone();
            tokio::spawn(async move {
                let mut stats = Stats::empty();
                loop {
                    let sent = Instant::now();
                    if sent >= deadline {
                        break;
                    }
                    let now = Timestamp::now().truncated_to_seconds();
                    let rotation = Rotation {
                        session_id: session.id,
                        expected_token: session.current_token_id,
                        retired_token_expires_at: session.expires_at,
                        new_token: TokenId::generate(),
                        now,
                        expires_at: now.plus(Duration::from_secs(24 * 3600)),
                        client: None,
                    };
                    let result = repository.rotate_session(&rotation).await;
                    let done = Instant::now();
                    let ok = matches!(&result, Ok(Some(_)));
                    if let Ok(Some((rotated, _))) = result {
                        session = rotated;
                    }
                    if sent >= measure_from && done <= deadline {
                        if ok {
                            stats.record(done - sent);
                        } else {
                            stats.errors += 1;
                        }
                    }
                }
                let mut total = total.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                total.completed += stats.completed;
                total.errors += stats.errors;
                let _ = total.latencies.add(&stats.latencies);
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    let mut stats = total.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    stats.elapsed = duration;
    stats
}
