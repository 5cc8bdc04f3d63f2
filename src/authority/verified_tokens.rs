//! Tokens Verify has already verified, exact string -> parsed claims, so
//! that a token presented again skips the signature check and the JSON
//! parsing: these were nearly all of what a Verify costs beyond a health
//! check (README, "What limits each figure").
//!
//! What is remembered is only what the signature vouches for and cannot
//! change: the claims. What can change is checked on every use as before:
//! the validity window against the clock (the caller, with
//! [`Keyring::check_window`](crate::domain::tokens::Keyring::check_window)),
//! and the session's state (the session cache or the database).
//!
//! A token is found by hashing its last bytes, which lie in its signature:
//! unpredictable for anyone without the key, and short. The whole token is
//! then compared, so a token with the same tail and another payload is a
//! miss, and goes through the full verification. Only fully verified tokens
//! are inserted.
//!
//! Bounded: at most `capacity` tokens (rounded up to a multiple of the
//! shard count); beyond that, arbitrary entries make room. An entry costs
//! about 300 bytes besides the token itself: 810 bytes for our 494-byte
//! tokens with one role (measured over 100,000 entries), so the default
//! capacity of 50,000 comes to about 40 MiB.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use crate::domain::{
    AccessToken,
    tokens::{TokenClaims, ValidityWindow},
};

const SHARDS: usize = 64;
/// How many bytes of a token's end are hashed to find it.
const HASHED_TAIL: usize = 32;

pub struct VerifiedTokens {
    shards: Box<[Mutex<HashMap<u64, Entry>>]>,
    hasher: RandomState,
    /// 0: nothing is remembered.
    capacity_per_shard: usize,
    /// Bumped by every [`VerifiedTokens::clear`]: a verification that began
    /// before it (with a key that may be gone now) is not inserted after it.
    generation: AtomicU64,
}

struct Entry {
    token: Box<str>,
    claims: TokenClaims,
    window: ValidityWindow,
}

/// Taken before a token is verified; see [`VerifiedTokens::insert`].
#[derive(Debug, Clone, Copy)]
pub struct InsertTicket {
    generation: u64,
}

impl VerifiedTokens {
    /// Remembers about `capacity` tokens; 0 remembers none.
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            capacity_per_shard: capacity.div_ceil(SHARDS),
            generation: AtomicU64::new(0),
        }
    }

    /// The claims of `token` and its window (still to be checked against the
    /// clock), if it was verified before.
    pub fn get(&self, token: &AccessToken) -> Option<(TokenClaims, ValidityWindow)> {
        if self.capacity_per_shard == 0 {
            return None;
        }
        let token = token.expose();
        let key = self.key(token);
        let shard = self.lock(key);
        let entry = shard.get(&key).filter(|entry| *entry.token == *token)?;
        Some((entry.claims.clone(), entry.window))
    }

    /// Take this before reading the keyring to verify a token that [`get`]
    /// did not know.
    ///
    /// [`get`]: VerifiedTokens::get
    pub fn ticket(&self) -> InsertTicket {
        InsertTicket {
            generation: self.generation.load(Ordering::SeqCst),
        }
    }

    /// Remembers a token that has just passed the full verification, unless
    /// the cache was cleared since `ticket` was taken.
    pub fn insert(&self, ticket: InsertTicket, token: &AccessToken, claims: &TokenClaims, window: ValidityWindow) {
        if self.capacity_per_shard == 0 {
            return;
        }
        let token = token.expose();
        let key = self.key(token);
        let mut shard = self.lock(key);
        // Read under the shard's lock: `clear` bumps the generation before it
        // empties the shards, so either this sees the bump or `clear` removes
        // what this inserts.
        if self.generation.load(Ordering::SeqCst) != ticket.generation {
            return;
        }
        if shard.len() >= self.capacity_per_shard
            && !shard.contains_key(&key)
            && let Some(victim) = shard.keys().next().copied()
        {
            shard.remove(&victim);
        }
        // Two tokens with the same key (a 64-bit collision): the later wins.
        shard.insert(
            key,
            Entry {
                token: token.into(),
                claims: claims.clone(),
                window,
            },
        );
    }

    /// Forgets every token, for when a key stops being accepted: its tokens
    /// must then fail the full verification.
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        for shard in &self.shards {
            shard.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn key(&self, token: &str) -> u64 {
        let bytes = token.as_bytes();
        self.hasher.hash_one(&bytes[bytes.len().saturating_sub(HASHED_TAIL)..])
    }

    fn lock(&self, key: u64) -> MutexGuard<'_, HashMap<u64, Entry>> {
        // The shard's map also hashes the key; its top bits choose the shard.
        let shard = (key >> 58) as usize % SHARDS;
        // Every update is a single map operation, so a panic cannot leave a
        // shard half-updated: poisoning is ignored.
        self.shards[shard].lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{
        SessionId, Timestamp, TokenId, UserId,
        tokens::{Keyring, SigningKey, TokenPolicy},
    };

    fn keyring() -> Keyring {
        let policy = TokenPolicy {
            issuer: "issuer".into(),
            audience: "audience".into(),
            leeway: Duration::ZERO,
        };
        Keyring::new(SigningKey::hs256(vec![7; 32]).unwrap(), vec![], policy)
    }

    /// A freshly signed token, its claims and window.
    fn signed(keyring: &Keyring) -> (AccessToken, TokenClaims, ValidityWindow) {
        let now = Timestamp::from_unix_seconds(1_800_000_000);
        let claims = TokenClaims {
            user_id: UserId::generate(),
            session_id: SessionId::generate(),
            token_id: TokenId::generate(),
            username: "alice".into(),
            roles: vec!["reader".into()],
            issued_at: now,
            expires_at: now.plus(Duration::from_secs(60)),
            generation: 0,
        };
        let token = keyring.sign(&claims, now).unwrap();
        let (claims, window) = keyring.verify_with_window(&token, now).unwrap();
        (token, claims, window)
    }

    #[test]
    fn a_verified_token_is_found_with_its_claims() {
        let (cache, keyring) = (VerifiedTokens::new(100), keyring());
        let (token, claims, window) = signed(&keyring);
        assert!(cache.get(&token).is_none());
        cache.insert(cache.ticket(), &token, &claims, window);
        assert_eq!(cache.get(&token), Some((claims, window)));
    }

    #[test]
    fn only_the_exact_token_matches() {
        let (cache, keyring) = (VerifiedTokens::new(100), keyring());
        let (token, claims, window) = signed(&keyring);
        cache.insert(cache.ticket(), &token, &claims, window);
        // Same signature (so the same hashed tail), another payload.
        let (header, rest) = token.expose().split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let (other, _, _) = signed(&keyring);
        let (_, other_rest) = other.expose().split_once('.').unwrap();
        let (other_payload, _) = other_rest.split_once('.').unwrap();
        let spliced = AccessToken::issued(format!("{header}.{other_payload}.{signature}"));
        assert!(cache.get(&spliced).is_none());
        let truncated = AccessToken::issued(token.expose()[1..].to_owned());
        assert!(cache.get(&truncated).is_none());
    }

    #[test]
    fn capacity_is_bounded() {
        let (cache, keyring) = (VerifiedTokens::new(64), keyring());
        for _ in 0..1000 {
            let (token, claims, window) = signed(&keyring);
            cache.insert(cache.ticket(), &token, &claims, window);
        }
        assert!(cache.len() <= 64, "{}", cache.len());
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let (cache, keyring) = (VerifiedTokens::new(0), keyring());
        let (token, claims, window) = signed(&keyring);
        cache.insert(cache.ticket(), &token, &claims, window);
        assert!(cache.get(&token).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn clear_forgets_everything_and_voids_verifications_begun_before() {
        let (cache, keyring) = (VerifiedTokens::new(100), keyring());
        let (kept, claims, window) = signed(&keyring);
        cache.insert(cache.ticket(), &kept, &claims, window);
        let (late, late_claims, late_window) = signed(&keyring);
        let ticket = cache.ticket(); // a verification under way, with the old keys

        cache.clear();
        cache.insert(ticket, &late, &late_claims, late_window);

        assert!(cache.get(&kept).is_none());
        assert!(cache.get(&late).is_none(), "verified with keys from before the clear");
        cache.insert(cache.ticket(), &late, &late_claims, late_window);
        assert!(cache.get(&late).is_some());
    }
}
