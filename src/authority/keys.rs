//! The key set as every replica sees it: the keyring that signs and
//! verifies right now, rebuilt from the database whenever the stored keys
//! change, and the maintenance that keeps the set on schedule (publish the
//! next key ahead of its time, delete the keys whose tokens have all
//! expired). No replica coordinates with another: each reads the same rows
//! and the same clock, so each reaches the same states (see
//! `domain::tokens::schedule`), and every write is a conditional one that
//! only the first of racing replicas makes.
//!
//! Replicas hear of a change at once through the outbox (the revocation
//! follower reloads the keys on a key-set event, before it tells its
//! subscribers) and, should that be missed, within KEY_REFRESH_INTERVAL,
//! well inside the publish-ahead.

use std::{collections::HashSet, sync::Arc, time::Duration};

use arc_swap::{ArcSwap, Guard};
use secrecy::ExposeSecret;
use tokio::sync::Mutex;
use tracing::{info, warn};

use super::VerifiedTokens;
use crate::{
    clock::SharedClock,
    config::{KeyConfig, TokenConfig},
    domain::{
        Timestamp,
        tokens::{
            self, KeyEncryptionKey, KeyError, KeyInfo, KeyState, Keyring, KeyringKeys, PlannedKey, Replacement,
            RotationPolicy, Sealing, SealingError, SigningAlgorithm, SigningKey,
        },
    },
    repository::{KeyReplacement, NewKey, Repository, RepositoryError, StoredKey},
};

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("reading or writing the signing keys")]
    Repository(#[from] RepositoryError),
    #[error("signing key {kid}: {error}")]
    Sealing { kid: String, error: SealingError },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("no stored key {0}")]
    UnknownKey(String),
    #[error(
        "JWT_SECRET signs (HS256): no keys are kept in the database; set JWT_ALGORITHM (EdDSA, ES256, RS256) to move to stored keys"
    )]
    NotStored,
    #[error("key {kid} is published already and signs from {activates_at}; nothing to do")]
    AlreadyRotating { kid: String, activates_at: String },
    #[error("another replica changed the keys at the same moment; run the command again")]
    Raced,
}

/// A stored key as `keys list` shows it.
#[derive(Debug, Clone)]
pub struct ListedKey {
    pub info: KeyInfo,
    pub state: KeyState,
    /// When it is deleted (once it has a successor).
    pub deletes_at: Option<Timestamp>,
    pub sealed: bool,
}

/// What an emergency removal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemovedKey {
    /// Another key (or JWT_SECRET) signs, as before.
    NothingElse,
    /// The next key signs from now on.
    NextActivated { kid: String },
    /// A new key was made and signs from now on.
    NewKey { kid: String },
}

/// What a reload found, to tell whether the keyring must be rebuilt: every
/// published stored key with its schedule and how it is sealed.
type LoadedSet = Vec<(KeyInfo, Sealing)>;

pub struct KeyStore {
    repository: Repository,
    clock: SharedClock,
    rotation: RotationPolicy,
    /// Stored keys sign (and rotate); otherwise JWT_SECRET signs and stored
    /// keys only verify.
    stored: bool,
    encryption_key: Option<KeyEncryptionKey>,
    /// JWT_SECRET and JWT_ACCEPTED_SECRETS, kept to rebuild keyrings.
    signing_secret: Option<Vec<u8>>,
    accepted_secrets: Vec<Vec<u8>>,
    policy: tokens::TokenPolicy,
    refresh_interval: Duration,
    current: ArcSwap<Keyring>,
    /// Tokens Verify remembers as verified: forgotten whenever a key stops
    /// verifying, so that a removed key's tokens fail at once.
    verified_tokens: Arc<VerifiedTokens>,
    /// What the current keyring was built from. The lock also serialises
    /// reloads, so that an older read never replaces a newer one.
    loaded: Mutex<Option<LoadedSet>>,
}

impl KeyStore {
    /// Reads the stored keys and, where keys are stored, publishes the first
    /// one if there is none, so that the server can sign from its first
    /// call. Fails when a stored key cannot be opened (naming it), so that a
    /// wrong KEY_ENCRYPTION_KEY stops the start instead of the signing.
    pub async fn open(
        repository: Repository,
        keys: &KeyConfig,
        tokens: &TokenConfig,
        clock: SharedClock,
        verified_tokens: Arc<VerifiedTokens>,
    ) -> Result<Arc<Self>, KeyStoreError> {
        let mut store = Self::new(repository, keys, tokens, clock);
        store.verified_tokens = verified_tokens;
        let store = Arc::new(store);
        store.maintain().await?;
        Ok(store)
    }

    /// A store that has read nothing yet (its keyring is empty), for the
    /// operator's commands, which must not publish a key by looking.
    pub fn new(repository: Repository, keys: &KeyConfig, tokens: &TokenConfig, clock: SharedClock) -> Self {
        let signing_secret = tokens.signing_secret.as_ref().map(|secret| secret.expose_secret().as_bytes().to_vec());
        let accepted_secrets =
            tokens.accepted_secrets.iter().map(|secret| secret.expose_secret().as_bytes().to_vec()).collect();
        Self {
            repository,
            clock,
            rotation: keys.rotation,
            // Without a configured secret, only stored keys can sign.
            stored: keys.stored || tokens.signing_secret.is_none(),
            encryption_key: keys.encryption_key.clone(),
            signing_secret,
            accepted_secrets,
            policy: tokens.policy.clone(),
            refresh_interval: keys.refresh_interval,
            current: ArcSwap::from_pointee(Keyring::assemble(KeyringKeys::default(), tokens.policy.clone())),
            verified_tokens: Arc::new(VerifiedTokens::new(0)),
            loaded: Mutex::new(None),
        }
    }

    /// The keyring of this moment: for signing and verifying. Cheap (no
    /// lock, no copy); hold it only for the call at hand.
    pub fn keyring(&self) -> Guard<Arc<Keyring>> {
        self.current.load()
    }

    /// The published keys, a JWK set in RFC 7517 JSON.
    pub fn jwks(&self) -> Arc<str> {
        self.current.load().jwks().clone()
    }

    /// Whether a configured secret can sign while no stored key does.
    fn fallback(&self) -> bool {
        self.signing_secret.is_some()
    }

    /// Re-reads the stored keys and rebuilds the keyring if they changed.
    /// Returns whether they did.
    pub async fn reload(&self) -> Result<bool, KeyStoreError> {
        let rows = self.repository.load_keys().await?;
        self.apply(rows).await
    }

    async fn apply(&self, rows: Vec<StoredKey>) -> Result<bool, KeyStoreError> {
        let mut loaded = self.loaded.lock().await;
        let now = self.clock.now();
        let published: Vec<StoredKey> = rows
            .into_iter()
            .filter(|key| key.info.schedule.state(now, self.rotation.retention) != KeyState::Expired)
            .collect();
        let set: LoadedSet = published.iter().map(|key| (key.info.clone(), key.private_key.sealing)).collect();
        if loaded.as_ref() == Some(&set) {
            return Ok(false);
        }
        let keyring = self.build(published)?;
        let before: HashSet<String> = self.current.load().kids().map(str::to_owned).collect();
        let gone: Vec<&String> = before.iter().filter(|kid| !keyring.kids().any(|kept| kept == kid.as_str())).collect();
        self.current.store(Arc::new(keyring));
        if !gone.is_empty() {
            // After the new keyring is in place: a verification that read
            // the old one took its ticket before this, and is not remembered.
            self.verified_tokens.clear();
            info!(kids = ?gone, "signing keys no longer verify here");
        }
        *loaded = Some(set);
        Ok(true)
    }

    /// A keyring of the configured secrets and the published stored keys.
    fn build(&self, published: Vec<StoredKey>) -> Result<Keyring, KeyStoreError> {
        let mut keys = KeyringKeys {
            fallback: self.signing_secret.clone().map(SigningKey::hs256).transpose()?,
            verify_only: self.accepted_secrets.iter().cloned().map(SigningKey::hs256).collect::<Result<_, _>>()?,
            scheduled: vec![],
        };
        for stored in published {
            let kid = stored.info.kid.clone();
            let material = tokens::open(self.encryption_key.as_ref(), &kid, &stored.private_key).map_err(|error| {
                KeyStoreError::Sealing {
                    kid: kid.clone(),
                    error,
                }
            })?;
            let mut key = SigningKey::from_material(kid, stored.info.algorithm, material)?;
            if stored.legacy_type {
                key = key.allow_legacy_type();
            }
            if self.stored {
                keys.scheduled.push((key, stored.info.generation, stored.info.schedule));
            } else {
                keys.verify_only.push(key);
            }
        }
        Ok(Keyring::assemble(keys, self.policy.clone()))
    }

    /// Keeps the key set on schedule: seals unsealed keys when a
    /// KEY_ENCRYPTION_KEY is set, publishes the next key when one is due,
    /// deletes the keys whose tokens have all expired, and reloads. Returns
    /// whether it changed the stored keys (then the outbox holds an event
    /// for each change, and the caller wakes its follower).
    pub async fn maintain(&self) -> Result<bool, KeyStoreError> {
        let mut rows = self.repository.load_keys().await?;
        self.apply(rows.clone()).await?;
        let now = self.clock.now();
        let mut changed = self.seal_unsealed(&rows, now).await?;
        let infos: Vec<KeyInfo> = rows.iter().map(|key| key.info.clone()).collect();
        if self.stored
            && let Some(planned) = tokens::plan_rotation(&infos, now, &self.rotation, self.fallback())
        {
            changed |= self.publish(planned, now).await?.is_some();
        }
        let expired: Vec<String> = infos
            .iter()
            .filter(|key| key.schedule.state(now, self.rotation.retention) == KeyState::Expired)
            .map(|key| key.kid.clone())
            .collect();
        let deleted = self.repository.delete_retired_keys(&expired, now.minus(self.rotation.retention), now).await?;
        if deleted > 0 {
            info!(kids = ?expired, "deleted retired signing keys: every token they signed has expired");
            changed = true;
        }
        if changed {
            rows = self.repository.load_keys().await?;
            self.apply(rows).await?;
        }
        Ok(changed)
    }

    /// Seals, under KEY_ENCRYPTION_KEY, the keys stored without it.
    async fn seal_unsealed(&self, rows: &[StoredKey], now: Timestamp) -> Result<bool, KeyStoreError> {
        let Some(encryption_key) = &self.encryption_key else {
            return Ok(false);
        };
        let mut sealed_any = false;
        for row in rows.iter().filter(|row| row.private_key.sealing == Sealing::None) {
            let kid = &row.info.kid;
            let sealed = encryption_key.seal(kid, &row.private_key.bytes).map_err(|error| KeyStoreError::Sealing {
                kid: kid.clone(),
                error,
            })?;
            if self.repository.seal_key(kid, &sealed, now).await? {
                info!(kid = %kid, "sealed a stored signing key under KEY_ENCRYPTION_KEY");
                sealed_any = true;
            }
        }
        Ok(sealed_any)
    }

    /// Makes and publishes the planned key; `None` when another replica
    /// published that rotation first.
    async fn publish(&self, planned: PlannedKey, now: Timestamp) -> Result<Option<NewKey>, KeyStoreError> {
        let key = generate(self.rotation.algorithm).await?;
        let new = self.new_key(&key, planned.generation, now, planned.activates_at)?;
        if !self.repository.publish_key(&new).await? {
            return Ok(None);
        }
        info!(
            kid = %new.kid,
            algorithm = %new.algorithm,
            generation = new.generation,
            activates_at = %format_time(new.activates_at),
            reason = planned.reason.as_str(),
            "published a signing key"
        );
        Ok(Some(new))
    }

    fn new_key(
        &self,
        key: &SigningKey,
        generation: i64,
        now: Timestamp,
        activates_at: Timestamp,
    ) -> Result<NewKey, KeyStoreError> {
        let sealed = tokens::seal(self.encryption_key.as_ref(), key.kid(), key.material()).map_err(|error| {
            KeyStoreError::Sealing {
                kid: key.kid().to_owned(),
                error,
            }
        })?;
        Ok(NewKey {
            kid: key.kid().to_owned(),
            generation,
            algorithm: key.algorithm(),
            private_key: sealed,
            published_at: now,
            activates_at,
        })
    }

    /// Publishes a next key now (`token-authority keys rotate`); it signs
    /// after KEY_PUBLISH_AHEAD. Returns it.
    pub async fn rotate_now(&self) -> Result<NewKey, KeyStoreError> {
        if !self.stored {
            return Err(KeyStoreError::NotStored);
        }
        // Every stored key must open: a key made without the
        // KEY_ENCRYPTION_KEY the others are sealed with would be stored bare.
        self.reload().await?;
        let rows = self.repository.load_keys().await?;
        let infos: Vec<KeyInfo> = rows.iter().map(|key| key.info.clone()).collect();
        let now = self.clock.now();
        let Some(planned) = tokens::plan_requested_rotation(&infos, now, &self.rotation, self.fallback()) else {
            let next = infos
                .iter()
                .find(|key| key.schedule.state(now, self.rotation.retention) == KeyState::Next)
                .ok_or(KeyStoreError::Raced)?;
            return Err(KeyStoreError::AlreadyRotating {
                kid: next.kid.clone(),
                activates_at: format_time(next.schedule.activates_at),
            });
        };
        let published = self.publish(planned, now).await?.ok_or(KeyStoreError::Raced)?;
        self.reload().await?;
        Ok(published)
    }

    /// Removes `kid` at once (a compromised key). Every token it signed
    /// stops verifying here now, and on every replica as soon as it reads
    /// the outbox; if it was the key that signs, the next key (or a new
    /// one) signs from now on.
    pub async fn remove(&self, kid: &str) -> Result<RemovedKey, KeyStoreError> {
        self.reload().await?;
        let rows = self.repository.load_keys().await?;
        let infos: Vec<KeyInfo> = rows.iter().map(|key| key.info.clone()).collect();
        if !infos.iter().any(|key| key.kid == kid) {
            return Err(KeyStoreError::UnknownKey(kid.to_owned()));
        }
        let now = self.clock.now();
        let fallback = !self.stored || self.fallback();
        let (replacement, removed) = match tokens::plan_removal(&infos, kid, now, self.rotation.retention, fallback) {
            Replacement::None => (KeyReplacement::None, RemovedKey::NothingElse),
            Replacement::ActivateNext { kid } => {
                (KeyReplacement::ActivateNext { kid: kid.clone() }, RemovedKey::NextActivated { kid })
            }
            Replacement::NewKey { generation } => {
                let key = generate(self.rotation.algorithm).await?;
                let new = self.new_key(&key, generation, now, now)?;
                let kid = new.kid.clone();
                (KeyReplacement::New(new), RemovedKey::NewKey { kid })
            }
        };
        if !self.repository.remove_key(kid, &replacement, now).await? {
            return Err(KeyStoreError::UnknownKey(kid.to_owned()));
        }
        warn!(kid = %kid, replacement = ?removed, "removed a signing key: every token it signed stops verifying");
        self.reload().await?;
        Ok(removed)
    }

    /// Every stored key with its state now.
    pub async fn list(&self) -> Result<Vec<ListedKey>, KeyStoreError> {
        let now = self.clock.now();
        let retention = self.rotation.retention;
        Ok(self
            .repository
            .load_keys()
            .await?
            .into_iter()
            .map(|key| ListedKey {
                state: key.info.schedule.state(now, retention),
                deletes_at: key.info.schedule.deletes_at(retention),
                sealed: key.private_key.sealing != Sealing::None,
                info: key.info,
            })
            .collect())
    }

    /// Whether keys are kept in the database (and rotate).
    pub fn stores_keys(&self) -> bool {
        self.stored
    }

    /// The kid of the configured secret that signs (JWT_SECRET), if any.
    pub fn configured_kid(&self) -> Option<String> {
        self.signing_secret
            .clone()
            .and_then(|secret| SigningKey::hs256(secret).ok())
            .map(|key| key.kid().to_owned())
    }

    /// Runs [`KeyStore::maintain`] every KEY_REFRESH_INTERVAL until the task
    /// is stopped, calling `changed` after every change it made (the
    /// revocation follower then numbers, announces and fans out its event).
    pub async fn maintain_periodically(self: Arc<Self>, changed: impl Fn() + Send + 'static) {
        let mut ticker = tokio::time::interval(self.refresh_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match self.maintain().await {
                Ok(true) => changed(),
                Ok(false) => {}
                Err(error) => warn!(
                    error = %crate::telemetry::error_chain(&error),
                    "cannot maintain the signing keys; keeping the current ones, retrying at the next interval"
                ),
            }
        }
    }
}

/// A new key, made off the async workers: an RSA key takes a while.
async fn generate(algorithm: SigningAlgorithm) -> Result<SigningKey, KeyStoreError> {
    tokio::task::spawn_blocking(move || SigningKey::generate(algorithm))
        .await
        .map_err(|_| KeyStoreError::Key(KeyError::Generation(algorithm)))?
        .map_err(KeyStoreError::Key)
}

/// A time for people: RFC 3339, in seconds.
pub fn format_time(time: Timestamp) -> String {
    let system = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(time.as_millis()).unwrap_or(0));
    humantime::format_rfc3339_seconds(system).to_string()
}
