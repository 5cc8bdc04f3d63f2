//! Verify's view of sessions, in memory, so that checking a token costs no
//! database round trip.
//!
//! Writes on this replica cache the new state right after commit; outbox
//! events (from every replica, this one included) invalidate. The subtle part
//! is a state racing a change made elsewhere: a Verify that read the old row,
//! or a local write that committed just before another replica's, could
//! otherwise cache a state that an event has already superseded. Each shard
//! therefore keeps an epoch, bumped by every invalidation; a state read or
//! written under a ticket is only cached if no invalidation happened in its
//! shard since the ticket was taken. Revoked states are final and always
//! cached. Versions (bumped by every database change) keep a newer state from
//! being replaced by an older one.
//!
//! Hand-written rather than a cache crate because both checks must happen
//! atomically with the insert, under the shard's lock.
//!
//! Entries live in a `HashTable` keyed by the state's own id rather than in
//! a map from id to state: the id is not stored twice. That is 16 of an
//! entry's 153 bytes, and a table doubles as it grows, so at 1,000,000
//! sessions it is 32 MB.

use std::{
    hash::{BuildHasher, RandomState},
    sync::Mutex,
};

use hashbrown::HashTable;

use crate::domain::{SessionId, SessionState, TokenId};

const SHARDS: usize = 64;

pub struct SessionCache {
    shards: Box<[Mutex<Shard>]>,
    /// Picks a session's shard.
    shard_hasher: RandomState,
    /// Places a session within its shard's table. Another hasher than the
    /// shard's: with the same one, every id of a shard would share the low
    /// bits the table places by.
    entry_hasher: RandomState,
    capacity_per_shard: usize,
}

#[derive(Default)]
struct Shard {
    entries: HashTable<SessionState>,
    epoch: u64,
}

/// Taken before reading a session from the database; see [`SessionCache::fill`].
#[derive(Debug, Clone, Copy)]
pub struct LoadTicket {
    shard: usize,
    epoch: u64,
}

impl SessionCache {
    /// Holds at most about `capacity` sessions; beyond that, arbitrary
    /// entries make room (a miss only costs a database read).
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            shard_hasher: RandomState::new(),
            entry_hasher: RandomState::new(),
            capacity_per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    pub fn get(&self, id: SessionId) -> Option<SessionState> {
        self.lock(self.shard_of(id))
            .entries
            .find(self.entry_hasher.hash_one(id), |cached| cached.id == id)
            .copied()
    }

    pub fn ticket(&self, id: SessionId) -> LoadTicket {
        let shard = self.shard_of(id);
        LoadTicket {
            shard,
            epoch: self.lock(shard).epoch,
        }
    }

    /// Caches a state read from the database, unless an invalidation in the
    /// same shard happened since `ticket` was taken.
    pub fn fill(&self, ticket: LoadTicket, state: SessionState) {
        let mut shard = self.lock(ticket.shard);
        if shard.epoch == ticket.epoch {
            self.insert_newer(&mut shard, state);
        }
    }

    /// Caches a revoked state this replica has just committed. Revocation is
    /// final, so no later change can make it stale.
    pub fn store_revoked(&self, state: SessionState) {
        debug_assert!(state.revoked, "only revoked states are stored unconditionally");
        let mut shard = self.lock(self.shard_of(state.id));
        self.insert_newer(&mut shard, state);
    }

    /// Forgets a session that changed elsewhere; the next Verify reads it.
    pub fn invalidate(&self, id: SessionId) {
        let mut shard = self.lock(self.shard_of(id));
        shard.epoch += 1;
        self.remove(&mut shard, id);
    }

    /// A revocation seen in the outbox: if cached, the session is revoked
    /// now. Revocation is final, so this never needs the database.
    pub fn mark_revoked(&self, id: SessionId) {
        let mut shard = self.lock(self.shard_of(id));
        shard.epoch += 1;
        if let Some(cached) = shard.entries.find_mut(self.entry_hasher.hash_one(id), |cached| cached.id == id) {
            cached.revoked = true;
        }
    }

    /// A rotation seen in the outbox: if the cache still takes `token` for
    /// the current token, it is stale; the next Verify reads the session.
    pub fn retire(&self, id: SessionId, token: TokenId) {
        let mut shard = self.lock(self.shard_of(id));
        shard.epoch += 1;
        let hash = self.entry_hasher.hash_one(id);
        if let Ok(entry) = shard.entries.find_entry(hash, |cached| cached.id == id && cached.current_token_id == token)
        {
            entry.remove();
        }
    }

    pub fn len(&self) -> usize {
        (0..SHARDS).map(|shard| self.lock(shard).entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert_newer(&self, shard: &mut Shard, state: SessionState) {
        let hash = self.entry_hasher.hash_one(state.id);
        if let Some(cached) = shard.entries.find_mut(hash, |cached| cached.id == state.id) {
            if cached.version < state.version {
                *cached = state;
            }
            return;
        }
        if shard.entries.len() >= self.capacity_per_shard
            && let Some(victim) = shard.entries.iter().next().map(|cached| cached.id)
        {
            self.remove(shard, victim);
        }
        shard.entries.insert_unique(hash, state, |cached| self.entry_hasher.hash_one(cached.id));
    }

    fn remove(&self, shard: &mut Shard, id: SessionId) {
        if let Ok(entry) = shard.entries.find_entry(self.entry_hasher.hash_one(id), |cached| cached.id == id) {
            entry.remove();
        }
    }

    fn shard_of(&self, id: SessionId) -> usize {
        (self.shard_hasher.hash_one(id) as usize) % SHARDS
    }

    fn lock(&self, shard: usize) -> std::sync::MutexGuard<'_, Shard> {
        // A panic while holding the lock cannot leave a shard half-updated
        // (every update is a single map operation), so poisoning is ignored.
        self.shards[shard].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Timestamp, UserId};

    fn state(id: SessionId, version: i64) -> SessionState {
        SessionState {
            id,
            user_id: UserId::generate(),
            current_token_id: TokenId::generate(),
            current_issued_at: Timestamp::from_millis(0),
            expires_at: Timestamp::from_millis(1),
            previous_token: None,
            revoked: false,
            version,
            binding: Default::default(),
        }
    }

    #[test]
    fn newer_versions_win_older_are_ignored() {
        let cache = SessionCache::new(100);
        let id = SessionId::generate();
        cache.fill(cache.ticket(id), state(id, 2));
        cache.fill(cache.ticket(id), state(id, 1));
        assert_eq!(cache.get(id).unwrap().version, 2);
        cache.store_revoked(SessionState {
            revoked: true,
            ..state(id, 3)
        });
        assert_eq!(cache.get(id).unwrap().version, 3);
    }

    #[test]
    fn a_read_that_raced_an_invalidation_is_not_cached() {
        let cache = SessionCache::new(100);
        let id = SessionId::generate();
        let ticket = cache.ticket(id);
        cache.invalidate(id);
        cache.fill(ticket, state(id, 1));
        assert!(cache.get(id).is_none());
        cache.fill(cache.ticket(id), state(id, 1));
        assert!(cache.get(id).is_some());
    }

    #[test]
    fn a_local_write_that_raced_a_revocation_elsewhere_is_not_cached() {
        let cache = SessionCache::new(100);
        let id = SessionId::generate();
        let ticket = cache.ticket(id); // taken before the write
        cache.mark_revoked(id); // another replica's revocation, seen before our write is cached
        cache.fill(ticket, state(id, 2));
        assert!(cache.get(id).is_none(), "the next Verify reads the database");
    }

    #[test]
    fn outbox_events_revoke_or_evict_what_they_touch() {
        let cache = SessionCache::new(100);
        let id = SessionId::generate();
        let cached = state(id, 1);
        cache.fill(cache.ticket(id), cached);
        cache.retire(id, TokenId::generate());
        assert!(cache.get(id).is_some(), "another token's retirement changes nothing");
        cache.mark_revoked(id);
        assert!(cache.get(id).unwrap().revoked);
        cache.retire(id, cached.current_token_id);
        assert!(cache.get(id).is_none(), "the current token retired elsewhere: read it again");
    }

    #[test]
    fn capacity_is_bounded() {
        let cache = SessionCache::new(64);
        for _ in 0..1000 {
            let id = SessionId::generate();
            cache.fill(cache.ticket(id), state(id, 1));
        }
        assert!(cache.len() <= 64, "{}", cache.len());
    }
}
