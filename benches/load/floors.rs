//! The floors: what the hardware and the libraries allow, measured in the
//! same run, in-process, without the service around them.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use token_authority::{
    clock::{Clock, SystemClock},
    domain::{
        Password, Session, TokenId,
        audit::{AuditKind, AuditRecord},
        binding::BindingPolicy,
        password_hash::{Argon2Hasher, Argon2Settings},
    },
    repository::{Repository, Rotation, RotationResult},
};

use super::load::Stats;

/// argon2id hashes with the server's parameters, on every core, for
/// `duration` (as completed calls over the elapsed time).
pub async fn argon2_hashes(duration: Duration) -> anyhow::Result<Stats> {
    tokio::task::spawn_blocking(move || argon2_blocking(duration)).await?
}

fn argon2_blocking(duration: Duration) -> anyhow::Result<Stats> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let hasher = Arc::new(Argon2Hasher::new(Argon2Settings::default())?);
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
    let mut stats = Stats::empty();
    stats.completed = hashes;
    stats.elapsed = started.elapsed();
    Ok(stats)
}

/// The write transaction a Refresh commits (the user read, the guarded
/// session update with its binding and refresh-limit conditions, the audit
/// record and the outbox row), through the same repository code and
/// database driver, from one task per session, each rotating its own session.
pub struct RotationFloor {
    repository: Repository,
    sessions: Vec<Session>,
}

impl RotationFloor {
    pub fn new(repository: Repository, sessions: Vec<Session>) -> Self {
        Self { repository, sessions }
    }

    /// Rotates for `duration` (after `warmup`, unmeasured).
    pub async fn run(&mut self, warmup: Duration, duration: Duration) -> Stats {
        let started = Instant::now();
        let measure_from = started + warmup;
        let deadline = measure_from + duration;
        let total = Arc::new(Mutex::new(Stats::empty()));
        let workers: Vec<_> = std::mem::take(&mut self.sessions)
            .into_iter()
            .map(|mut session| {
                let repository = self.repository.clone();
                let total = total.clone();
                tokio::spawn(async move {
                    let mut stats = Stats::empty();
                    loop {
                        let sent = Instant::now();
                        if sent >= deadline {
                            break;
                        }
                        let now = SystemClock.now().truncated_to_seconds();
                        let policy = BindingPolicy::default();
                        let rotation = Rotation {
                            session_id: session.id,
                            expected_token: session.current_token_id,
                            retired_token_expires_at: session.expires_at,
                            new_token: TokenId::generate(),
                            now,
                            retired_at: now,
                            expires_at: now.plus(Duration::from_secs(24 * 3600)),
                            remember_me_expires_at: now.plus(Duration::from_secs(30 * 24 * 3600)),
                            client_binding: Some(policy.binding_of(&session.client)),
                            client: Some(session.client.clone()),
                            require_binding: Some(policy.attributes),
                            min_interval: None,
                            max_lifetime: Duration::from_secs(90 * 24 * 3600),
                            grace: Duration::from_secs(10),
                            user_id: session.user_id,
                        };
                        let audit =
                            AuditRecord::new(AuditKind::Refresh, now).from_client(&session.client).detail("rotated");
                        let result = repository.rotate_session(&rotation, &audit).await;
                        let done = Instant::now();
                        let ok = matches!(&result, Ok(RotationResult::Rotated { .. }));
                        if let Ok(RotationResult::Rotated { session: rotated, .. }) = result {
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
                    total.absorb(&stats);
                    session
                })
            })
            .collect();
        for worker in workers {
            if let Ok(session) = worker.await {
                self.sessions.push(session);
            }
        }
        let mut stats = total.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        stats.elapsed = duration;
        stats
    }
}

/// Shapes of the rotation transaction on PostgreSQL, to put figures on the
/// outbox's design.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// As the server commits it: the session update and an outbox row that
    /// the sequencer numbers after commit.
    Sequenced,
    /// The outbox row takes its cursor inside the transaction, holding the
    /// cursor row's lock until commit (as on SQLite).
    CursorInTransaction,
    /// The same, plus a NOTIFY inside (a cluster-wide lock at commit).
    CursorAndNotifyInTransaction,
    /// The session update alone.
    WithoutOutbox,
}

/// Rotations per second of `sessions` (one task each) in the given shape.
pub async fn postgres_rotations(
    database_url: &str,
    sessions: Vec<Session>,
    shape: Shape,
    duration: Duration,
) -> anyhow::Result<f64> {
    use sea_orm::sqlx::{self, postgres::PgPoolOptions};
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(sessions.len()).unwrap_or(64).min(64))
        .connect(database_url)
        .await?;
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = sessions
        .into_iter()
        .map(|session| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut current = session.current_token_id.as_uuid();
                let mut rotations = 0u64;
                while Instant::now() < deadline {
                    let next = TokenId::generate().as_uuid();
                    let now = SystemClock.now().as_millis();
                    let mut transaction = pool.begin().await?;
                    sqlx::query(
                        "UPDATE sessions SET current_token_id = $1, previous_token_id = $2, previous_token_retired_at = $3, \
                         refreshed_at = $3, expires_at = $4, version = version + 1 \
                         WHERE id = $5 AND current_token_id = $2 AND revoked_at IS NULL",
                    )
                    .bind(next)
                    .bind(current)
                    .bind(now)
                    .bind(now + 86_400_000)
                    .bind(session.id.as_uuid())
                    .execute(&mut *transaction)
                    .await?;
                    if shape != Shape::WithoutOutbox {
                        let cursor: Option<i64> = if shape == Shape::Sequenced {
                            None
                        } else {
                            let (cursor,): (i64,) = sqlx::query_as(
                                "UPDATE revocation_cursor SET last_cursor = last_cursor + 1 WHERE id = 1 RETURNING last_cursor",
                            )
                            .fetch_one(&mut *transaction)
                            .await?;
                            Some(cursor)
                        };
                        sqlx::query(
                            "INSERT INTO revocation_events (cursor, session_id, user_id, token_id, reason, revoked_at, expires_at) \
                             VALUES ($1, $2, $3, $4, 'rotated', $5, $6)",
                        )
                        .bind(cursor)
                        .bind(session.id.as_uuid())
                        .bind(session.user_id.as_uuid())
                        .bind(current)
                        .bind(now)
                        .bind(now + 86_400_000)
                        .execute(&mut *transaction)
                        .await?;
                    }
                    if shape == Shape::CursorAndNotifyInTransaction {
                        sqlx::query("SELECT pg_notify('token_authority_benchmark', 'x')")
                            .execute(&mut *transaction)
                            .await?;
                    }
                    transaction.commit().await?;
                    current = next;
                    rotations += 1;
                }
                anyhow::Ok(rotations)
            })
        })
        .collect();
    let mut rotations = 0;
    for worker in workers {
        rotations += worker.await??;
    }
    pool.close().await;
    Ok(rotations as f64 / duration.as_secs_f64())
}
