//! [`LocalVerifier`]: checks the authority's tokens in this process, in
//! microseconds for a token it has not seen and nanoseconds for one it has,
//! with the keys and the revocations the authority pushes over
//! `WatchRevocations`.
//!
//! Two tasks run beside it (owned by it: they stop when the last clone of
//! the verifier is dropped, or on [`LocalVerifier::shutdown`]):
//! - the follower takes the stream's per-session snapshot (keys first, then
//!   one entry per revoked or rotated session), then applies live events in
//!   cursor order; after a disconnect or a server restart it resumes from
//!   the last cursor, and when the server no longer holds that cursor
//!   (`OUT_OF_RANGE`) it takes a new snapshot;
//! - the sweeper forgets what has expired (plus the leeway).
//!
//! The hot path ([`LocalVerifier::verify_local`]) never performs I/O and
//! takes no lock a stream update holds for long: the key set is swapped
//! whole (`arc-swap`), sessions live in sharded concurrent maps.

mod keys;
mod sessions;
mod token;

use std::{
    hash::BuildHasher,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, UNIX_EPOCH},
};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use secrecy::{ExposeSecret, SecretBox};
use tokio::{sync::watch, task::AbortHandle};
use tonic::Code;

pub use keys::JwksError;
use keys::{KeySet, PublicKey};
use sessions::SessionStates;
use token::{Checked, TokenPolicy};

use crate::{Claims, Client, Clock, Error, Reason, SystemClock, VerifyError, proto};

/// What the verifier does when it has heard nothing from the authority (no
/// event, not even a heartbeat) for longer than its `max_staleness`: its
/// state may miss revocations, so it never silently trusts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenStale {
    /// Refuse every token with [`VerifyError::Unavailable`] (fail closed):
    /// the [`AuthLayer`](crate::AuthLayer) answers `UNAVAILABLE` / 503.
    Refuse,
    /// Ask the authority's Verify for each token instead (one call each),
    /// until the stream is back. If the authority cannot answer either,
    /// the token is refused with [`VerifyError::Unavailable`].
    AskAuthority,
}

/// Why [`LocalVerifier::verify_local`] did not accept a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LocalRefusal {
    /// The token is not good: the reason Verify would give.
    #[error("token refused: {0}")]
    Invalid(Reason),
    /// The verifier's state is too old to trust (or not built yet): see [`WhenStale`].
    #[error("the verifier has not heard from the authority within max_staleness")]
    Stale,
}

/// How a [`LocalVerifier`] checks tokens and follows the stream; see
/// [`LocalVerifier::builder`].
pub struct LocalVerifierBuilder {
    client: Client,
    issuer: String,
    audience: String,
    leeway: Duration,
    max_staleness: Duration,
    when_stale: WhenStale,
    hs256_secret: Option<SecretBox<Vec<u8>>>,
    clock: Arc<dyn Clock>,
    seen_capacity: usize,
    silence_limit: Duration,
    reconnect_delay: Duration,
    sweep_interval: Duration,
}

impl LocalVerifierBuilder {
    /// The clock skew accepted on `exp` and `nbf` (5 s by default, as the
    /// authority's JWT_LEEWAY). Entries are kept this long past expiry.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// How long the verifier trusts its state without hearing from the
    /// authority (60 s by default: four of the authority's heartbeats at
    /// its default REVOCATION_HEARTBEAT of 15 s), and what it does past it.
    pub fn max_staleness(mut self, max_staleness: Duration, when_stale: WhenStale) -> Self {
        self.max_staleness = max_staleness;
        self.when_stale = when_stale;
        self
    }

    /// Also accepts HS256 tokens signed with this secret (the authority's
    /// JWT_SECRET). Off unless called: whoever holds the secret can mint
    /// tokens, and the stream never sends it.
    pub fn hs256_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.hs256_secret = Some(SecretBox::new(Box::new(secret.into())));
        self
    }

    /// Where the verifier reads the time (the system clock by default).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How many verified tokens are remembered at most (100,000 by
    /// default); past it, new tokens are checked in full every time until
    /// the sweeper forgets expired ones.
    pub fn seen_capacity(mut self, capacity: usize) -> Self {
        self.seen_capacity = capacity;
        self
    }

    /// How long the stream may stay silent (no event, no heartbeat) before
    /// the connection is taken for dead and opened again (45 s by default:
    /// three heartbeats at the authority's default).
    pub fn silence_limit(mut self, limit: Duration) -> Self {
        self.silence_limit = limit;
        self
    }

    /// The wait before reconnecting after the stream failed (1 s by
    /// default; doubled on each failure in a row, up to 30 s).
    pub fn reconnect_delay(mut self, delay: Duration) -> Self {
        self.reconnect_delay = delay;
        self
    }

    /// Starts following the stream; the verifier refuses (or asks the
    /// authority, per [`WhenStale`]) until the first snapshot is in and the
    /// stream has caught up: await [`LocalVerifier::synced`] to wait for
    /// it. Needs a Tokio runtime.
    pub fn start(self) -> LocalVerifier {
        let (synced, _) = watch::channel(false);
        let verifier = LocalVerifier::with_parts(self.parts(), synced);
        let follower = tokio::spawn(follow(
            verifier.shared.clone(),
            self.client.clone(),
            self.silence_limit,
            self.reconnect_delay,
        ));
        let sweeper = tokio::spawn(sweep(Arc::downgrade(&verifier.shared), self.sweep_interval));
        verifier
            .tasks
            .handles
            .lock()
            .map(|mut handles| {
                handles.push(follower.abort_handle());
                handles.push(sweeper.abort_handle());
            })
            .ok();
        verifier
    }

    /// A verifier fed by hand with [`LocalVerifier::apply`] instead of the
    /// stream: for tests and benchmarks. It never goes stale.
    pub fn detached(mut self) -> LocalVerifier {
        self.max_staleness = Duration::MAX;
        let (synced, _) = watch::channel(true);
        LocalVerifier::with_parts(self.parts(), synced)
    }

    fn parts(&self) -> Parts {
        Parts {
            policy: TokenPolicy {
                issuer: self.issuer.clone(),
                audience: self.audience.clone(),
                leeway_seconds: i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX),
            },
            hs256: self.hs256_secret.as_ref().map(|secret| PublicKey::hs256(secret.expose_secret())),
            clock: self.clock.clone(),
            max_staleness_ms: i64::try_from(self.max_staleness.as_millis()).unwrap_or(i64::MAX),
            when_stale: self.when_stale,
            remote: self.client.clone(),
            seen_capacity: self.seen_capacity,
        }
    }
}

struct Parts {
    policy: TokenPolicy,
    hs256: Option<PublicKey>,
    clock: Arc<dyn Clock>,
    max_staleness_ms: i64,
    when_stale: WhenStale,
    remote: Client,
    seen_capacity: usize,
}

/// A verification remembered: the token's signature and claims are good;
/// its window and its session's state are checked again on every use.
struct Seen {
    /// The whole token, compared on every lookup: the map's key is the hash
    /// of its tail only.
    token: Box<str>,
    claims: Arc<Claims>,
    checked: Checked,
    /// The key set's epoch when it was verified: a key removed since
    /// invalidates it.
    epoch: u64,
}

/// Never heard from the authority.
const NEVER: i64 = i64::MIN;

/// How many bytes of a token's end are hashed to find it among the seen
/// tokens, as the authority's Verify does (`verified_tokens.rs`). They lie in
/// the signature (43 characters for HS256, 86 for EdDSA and ES256, 342 for
/// RS256): unpredictable without the signing key, and short, where hashing
/// the whole token (about 500 bytes) cost more than the rest of a lookup.
/// The whole token is then compared, so a token with the same tail and
/// another header or payload is a miss, and goes through the full check;
/// only tokens that passed it are inserted.
const HASHED_TAIL: usize = 32;

/// What the verifier, its clones and its tasks share.
struct Shared {
    policy: TokenPolicy,
    keys: ArcSwap<KeySet>,
    /// Moves on every key set that drops a key.
    key_epoch: AtomicU64,
    hs256: Option<PublicKey>,
    sessions: SessionStates,
    /// Keyed by [`Shared::seen_key`]; two tokens with the same key (a 64-bit
    /// collision): the later one wins, the other is checked in full again.
    seen: DashMap<u64, Seen, foldhash::fast::RandomState>,
    seen_hasher: foldhash::fast::RandomState,
    seen_capacity: usize,
    clock: Arc<dyn Clock>,
    /// Unix ms of the clock when the authority was last heard from.
    last_heard: AtomicI64,
    max_staleness_ms: i64,
    when_stale: WhenStale,
    remote: Client,
    /// The last live cursor applied (0 before the first snapshot).
    cursor: AtomicU64,
    synced: watch::Sender<bool>,
    /// Marked after each change that can turn an accepted token into a
    /// refused one (see [`LocalVerifier::changes`]); holds the cursor.
    changes: watch::Sender<u64>,
}

impl Shared {
    fn now_ms(&self) -> i64 {
        let since = self.clock.now().duration_since(UNIX_EPOCH).unwrap_or_default();
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    }

    fn seen_key(&self, token: &str) -> u64 {
        let bytes = token.as_bytes();
        self.seen_hasher.hash_one(&bytes[bytes.len().saturating_sub(HASHED_TAIL)..])
    }

    fn heard(&self) {
        self.last_heard.store(self.now_ms(), Ordering::Release);
    }

    fn replace_keys(&self, jwks: &str) {
        let set = KeySet::from_jwks(jwks).unwrap_or_else(|error| {
            // A set that cannot be read trusts nothing: refusing every token
            // is safer than keeping keys the authority may have dropped.
            tracing::error!(%error, "the authority sent an unreadable key set; no key is trusted until the next one");
            KeySet::default()
        });
        let kept = self.keys.load().kids_kept_by(&set);
        tracing::debug!(keys = set.len(), "key set replaced");
        self.keys.store(Arc::new(set));
        if !kept {
            self.key_epoch.fetch_add(1, Ordering::AcqRel);
            self.seen.clear();
        }
    }
}

/// Stops the tasks when the last clone of the verifier goes.
#[derive(Default)]
struct Tasks {
    handles: std::sync::Mutex<Vec<AbortHandle>>,
}

impl Tasks {
    fn abort(&self) {
        if let Ok(handles) = self.handles.lock() {
            handles.iter().for_each(AbortHandle::abort);
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Checks the authority's tokens locally; cheap to clone (clones share the
/// state and the tasks).
///
/// ```no_run
/// use std::time::Duration;
/// use token_authority_client::{Client, LocalVerifier, WhenStale};
///
/// # async fn run() -> Result<(), token_authority_client::Error> {
/// let client = Client::builder("http://127.0.0.1:50051").service_key("dev-service-key-change-me").connect_lazy()?;
/// let verifier = LocalVerifier::builder(client, "token-authority", "token-authority")
///     .max_staleness(Duration::from_secs(60), WhenStale::AskAuthority)
///     .start();
/// verifier.synced().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct LocalVerifier {
    shared: Arc<Shared>,
    tasks: Arc<Tasks>,
}

impl std::fmt::Debug for LocalVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalVerifier")
            .field("cursor", &self.cursor())
            .field("keys", &self.shared.keys.load().len())
            .field("sessions", &self.shared.sessions.len())
            .finish_non_exhaustive()
    }
}

impl LocalVerifier {
    /// A verifier of the tokens of `issuer` for `audience` (the authority's
    /// JWT_ISSUER and JWT_AUDIENCE), following the stream through `client`
    /// (which needs a service key).
    pub fn builder(client: Client, issuer: impl Into<String>, audience: impl Into<String>) -> LocalVerifierBuilder {
        LocalVerifierBuilder {
            client,
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: Duration::from_secs(5),
            max_staleness: Duration::from_secs(60),
            when_stale: WhenStale::Refuse,
            hs256_secret: None,
            clock: Arc::new(SystemClock),
            seen_capacity: 100_000,
            silence_limit: Duration::from_secs(45),
            reconnect_delay: Duration::from_secs(1),
            sweep_interval: Duration::from_secs(10),
        }
    }

    fn with_parts(parts: Parts, synced: watch::Sender<bool>) -> Self {
        Self {
            shared: Arc::new(Shared {
                policy: parts.policy,
                keys: ArcSwap::from_pointee(KeySet::default()),
                key_epoch: AtomicU64::new(0),
                hs256: parts.hs256,
                sessions: SessionStates::default(),
                seen: DashMap::with_hasher(foldhash::fast::RandomState::default()),
                seen_hasher: foldhash::fast::RandomState::default(),
                seen_capacity: parts.seen_capacity,
                clock: parts.clock,
                last_heard: AtomicI64::new(NEVER),
                max_staleness_ms: parts.max_staleness_ms,
                when_stale: parts.when_stale,
                remote: parts.remote,
                cursor: AtomicU64::new(0),
                synced,
                changes: watch::Sender::new(0),
            }),
            tasks: Arc::new(Tasks::default()),
        }
    }

    /// Checks `token` here and now, without I/O: its signature (with a key
    /// of the stream's key set, or the HS256 secret if one was given), its
    /// type (`at+jwt`), `exp`, `nbf`, `iss`, `aud`, and its session's state
    /// by the per-session rule.
    pub fn verify_local(&self, token: &str) -> Result<Arc<Claims>, LocalRefusal> {
        let shared = &*self.shared;
        let now = shared.now_ms();
        let last_heard = shared.last_heard.load(Ordering::Acquire);
        if last_heard == NEVER || now.saturating_sub(last_heard) > shared.max_staleness_ms {
            return Err(LocalRefusal::Stale);
        }
        let epoch = shared.key_epoch.load(Ordering::Acquire);
        let key = shared.seen_key(token);
        let seen = shared.seen.get(&key).and_then(|entry| {
            let seen = entry.value();
            (seen.epoch == epoch && *seen.token == *token).then(|| (seen.claims.clone(), seen.checked))
        });
        let (claims, checked) = match seen {
            Some(seen) => seen,
            None => {
                let keys = shared.keys.load();
                let (claims, checked) = token::check(token, &keys, shared.hs256.as_ref(), &shared.policy, now)
                    .map_err(LocalRefusal::Invalid)?;
                let claims = Arc::new(claims);
                if shared.seen.len() < shared.seen_capacity {
                    let seen = Seen {
                        token: token.into(),
                        claims: claims.clone(),
                        checked,
                        epoch,
                    };
                    shared.seen.insert(key, seen);
                }
                (claims, checked)
            }
        };
        checked.window(&shared.policy, now).map_err(LocalRefusal::Invalid)?;
        shared
            .sessions
            .check(checked.session, checked.token, checked.generation, now)
            .map_err(LocalRefusal::Invalid)?;
        Ok(claims)
    }

    /// Checks `token` locally, or, when the state is stale and the policy
    /// says [`WhenStale::AskAuthority`], with the authority's Verify.
    pub async fn verify(&self, token: &str) -> Result<Arc<Claims>, VerifyError> {
        match self.verify_local(token) {
            Ok(claims) => Ok(claims),
            Err(LocalRefusal::Invalid(reason)) => Err(VerifyError::Invalid(reason)),
            Err(LocalRefusal::Stale) => match self.shared.when_stale {
                WhenStale::Refuse => Err(VerifyError::Unavailable(Error::Stale)),
                WhenStale::AskAuthority => self.shared.remote.verify(token).await.map(Arc::new),
            },
        }
    }

    /// Waits until the first snapshot is in and the stream has caught up
    /// with the authority (returns at once if it has).
    pub async fn synced(&self) {
        let mut receiver = self.shared.synced.subscribe();
        // The sender lives in `shared`, which `self` holds: never closed here.
        let _ = receiver.wait_for(|synced| *synced).await;
    }

    /// Applies one stream message by hand (see [`LocalVerifierBuilder::detached`]).
    pub fn apply(&self, event: &proto::RevocationEvent) {
        apply(&self.shared, event, Phase::Live);
    }

    /// Marked changed each time the verifier has applied something that
    /// can change its answers: a live revocation or rotation, a new key set,
    /// the end of a snapshot (the value is the cursor then). A service that
    /// checked a token once for a long-lived connection (a WebSocket, a
    /// gRPC stream) can check it again on each change, instead of on a
    /// timer, and close the connection within the stream's latency of a
    /// logout.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// The last live cursor applied (0 before the first snapshot).
    pub fn cursor(&self) -> u64 {
        self.shared.cursor.load(Ordering::Acquire)
    }

    /// Sessions with an entry (revoked, or rotated) and legacy denials held.
    pub fn session_entries(&self) -> usize {
        self.shared.sessions.len()
    }

    /// Verified tokens remembered.
    pub fn remembered_tokens(&self) -> usize {
        self.shared.seen.len()
    }

    /// Forgets what has expired (plus the leeway) now; the sweeper does it
    /// on its own every 10 s.
    pub fn forget_expired(&self) {
        forget_expired(&self.shared);
    }

    /// Stops following the stream (for every clone). From then on the
    /// state only ages: past `max_staleness`, the [`WhenStale`] policy applies.
    pub fn shutdown(&self) {
        self.tasks.abort();
    }
}

fn forget_expired(shared: &Shared) {
    let now = shared.now_ms();
    let leeway_ms = shared.policy.leeway_seconds.saturating_mul(1000);
    shared.sessions.forget_expired(now, leeway_ms);
    shared
        .seen
        .retain(|_, seen| seen.checked.expires.saturating_mul(1000).saturating_add(leeway_ms) >= now);
}

/// Where a connection's stream is, which decides what its messages tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Snapshot entries: they change the state, but neither the cursor nor
    /// the freshness; SNAPSHOT_END says the state is whole as of its cursor.
    Snapshot,
    /// What was committed before the stream began (after the snapshot, or
    /// after the cursor resumed from): the cursor moves, but the verifier
    /// is not current until the heartbeat that ends it. Counting itself
    /// fresh at the first message would trust a state that still lacks the
    /// revocations made while it was away.
    CatchingUp,
    /// Every message is news from the authority as it is now.
    Live,
}

/// Applies one message of the stream in `phase`; the phase after it.
fn apply(shared: &Shared, event: &proto::RevocationEvent, phase: Phase) -> Phase {
    use proto::RevocationEventKind as Kind;
    match event.kind() {
        Kind::KeySet => {
            shared.replace_keys(&event.jwks);
            if phase != Phase::Snapshot {
                // The value (the cursor) stays; receivers are marked all the same.
                shared.changes.send_modify(|_| {});
            }
            if phase == Phase::Live {
                shared.heard();
            }
            phase
        }
        Kind::Revoked => {
            shared.sessions.apply(event);
            if phase != Phase::Snapshot {
                shared.cursor.store(event.cursor, Ordering::Release);
                shared.changes.send_replace(event.cursor);
            }
            if phase == Phase::Live {
                shared.heard();
            }
            phase
        }
        Kind::SnapshotEnd => {
            shared.cursor.store(event.cursor, Ordering::Release);
            shared.changes.send_replace(event.cursor);
            Phase::CatchingUp
        }
        // The authority sends one as soon as the stream has caught up, then
        // one whenever it is idle.
        Kind::Heartbeat if phase != Phase::Snapshot => {
            shared.heard();
            shared.synced.send_if_modified(|synced| !std::mem::replace(synced, true));
            Phase::Live
        }
        Kind::Heartbeat | Kind::Unspecified => phase,
    }
}

/// Follows the stream for as long as the verifier lives.
async fn follow(shared: Arc<Shared>, client: Client, silence_limit: Duration, reconnect_delay: Duration) {
    let mut resume: Option<u64> = None;
    let mut delay = reconnect_delay;
    loop {
        let mut delivered = false;
        match follow_once(&shared, &client, &mut resume, &mut delivered, silence_limit).await {
            Err(status) if status.code() == Code::OutOfRange => {
                tracing::info!("the authority no longer holds our cursor; taking a new snapshot");
                resume = None;
                continue;
            }
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "revocation stream lost; reconnecting");
            }
            Ok(()) => tracing::info!("revocation stream ended; reconnecting"),
        }
        // A connection that delivered something was a success: start the
        // backoff over; failures in a row wait longer each time.
        if delivered {
            delay = reconnect_delay;
        }
        tokio::time::sleep(delay).await;
        delay = delay.saturating_mul(2).min(MAX_RECONNECT_DELAY.max(reconnect_delay));
    }
}

/// The longest wait between two attempts to reconnect.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(30);

/// One connection of the stream, until it ends or fails.
async fn follow_once(
    shared: &Shared,
    client: &Client,
    resume: &mut Option<u64>,
    delivered: &mut bool,
    silence_limit: Duration,
) -> Result<(), tonic::Status> {
    let request = proto::WatchRevocationsRequest {
        after_cursor: resume.unwrap_or(0),
        include_snapshot: resume.is_none(),
        session_snapshot: true,
    };
    let mut stream = client.watch_revocations(request).await.map_err(|error| match error {
        Error::Status(status) => status,
        other => tonic::Status::unavailable(other.to_string()),
    })?;
    let mut phase = if resume.is_none() {
        Phase::Snapshot
    } else {
        Phase::CatchingUp
    };
    loop {
        let message = tokio::time::timeout(silence_limit, stream.message())
            .await
            .map_err(|_| tonic::Status::unavailable("the revocation stream was silent past the silence limit"))??;
        let Some(event) = message else { return Ok(()) };
        *delivered = true;
        match event.kind() {
            proto::RevocationEventKind::SnapshotEnd => *resume = Some(event.cursor),
            proto::RevocationEventKind::Revoked if phase != Phase::Snapshot => *resume = Some(event.cursor),
            _ => {}
        }
        phase = apply(shared, &event, phase);
    }
}

/// Forgets expired entries every `interval`, while the verifier lives.
async fn sweep(shared: std::sync::Weak<Shared>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        forget_expired(&shared);
    }
}

#[cfg(test)]
mod tests;
