//! The cuckoo filter as the engine shares it between threads: its lock, the lock-free
//! "may it say maybe at all" flag, and the learn/forget bookkeeping that keeps it sound (I4).
//!
//! What it must never do: answer "absent" for a key the cold tier holds. Callers learn a key
//! *before* its cold write and forget it only *after* its cold delete, and only for keys they
//! learnt (each hot entry's `ColdCopy` says which); a full filter is bypassed (counted),
//! never silently lossy. When the filter grows, the hot tier's share shrinks (I6):
//! `Engine::learn_in_filter` recomputes the shard limit.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{RwLock, RwLockReadGuard};

use super::filter::{CuckooFilter, InsertOutcome};
use super::stats::EngineStats;
use super::Engine;

pub(super) struct SharedFilter {
    filter: RwLock<CuckooFilter>,
    /// False while the filter is empty and not bypassed: every key is then known absent
    /// from the cold tier without taking the filter's lock.
    may_say_maybe: AtomicBool,
}

impl SharedFilter {
    pub(super) fn new(filter: CuckooFilter) -> Self {
        let shared = SharedFilter {
            filter: RwLock::new(filter),
            may_say_maybe: AtomicBool::new(true),
        };
        shared.publish_state(&shared.filter.read());
        shared
    }

    /// Whether the cold tier may hold the key with this hash (false = definitely absent).
    pub(super) fn may_contain(&self, hash: u64) -> bool {
        self.may_say_maybe.load(Ordering::Acquire) && self.filter.read().may_contain(hash)
    }

    /// The filter, read-locked (reports, checks, saving it).
    pub(super) fn read(&self) -> RwLockReadGuard<'_, CuckooFilter> {
        self.filter.read()
    }

    /// Inserts fingerprints for keys about to enter the cold tier; counts the inserts a full
    /// filter bypassed. Returns whether the filter grew.
    pub(super) fn learn(&self, hashes: &[u64], stats: &EngineStats) -> bool {
        let mut grew = false;
        let mut filter = self.filter.write();
        for hash in hashes {
            match filter.insert(*hash) {
                InsertOutcome::Inserted => {}
                InsertOutcome::Grew => grew = true,
                InsertOutcome::Bypassed => stats.filter_bypassed_inserts.add(1),
            }
        }
        self.publish_state(&filter);
        grew
    }

    /// Removes the fingerprints of keys whose cold copies are deleted.
    pub(super) fn forget(&self, hashes: &[u64]) {
        let mut filter = self.filter.write();
        for hash in hashes {
            filter.remove(*hash);
        }
        self.publish_state(&filter);
    }

    /// Drops every fingerprint (FLUSHALL: no key is left in the cold tier).
    pub(super) fn clear(&self) {
        let mut filter = self.filter.write();
        filter.clear();
        self.publish_state(&filter);
    }

    /// Puts a filter loaded from a checkpoint in place of this one.
    pub(super) fn replace(&self, loaded: CuckooFilter) {
        let mut filter = self.filter.write();
        *filter = loaded;
        self.publish_state(&filter);
    }

    /// Publishes whether the filter can answer "maybe" at all, so lookups skip its lock
    /// while it is empty (no key has reached the cold tier). Called with the write lock
    /// held, after every change, so it is never stale in the unsafe direction: it turns
    /// true before the cold write that follows an insert.
    fn publish_state(&self, filter: &CuckooFilter) {
        let may_say_maybe = !filter.is_empty() || filter.is_bypassed();
        self.may_say_maybe.store(may_say_maybe, Ordering::Release);
    }
}

impl Engine {
    /// Inserts fingerprints for keys about to enter the cold tier. A grown filter takes
    /// room from the hot tier; a full one is bypassed (counted), never silently wrong.
    pub(super) fn learn_in_filter(&self, hashes: &[u64]) {
        if hashes.is_empty() {
            return;
        }
        if self.filter.learn(hashes, &self.stats) {
            self.recompute_shard_limit();
        }
    }

    /// Sets the hot tier's limit from the budget less what the filter uses now.
    pub(super) fn recompute_shard_limit(&self) {
        let filter_bytes = self.filter.read().memory_bytes();
        let mut hot_limit = self.budget.hot_limit(filter_bytes);
        if let Some(cap) = self.config.hot_max_bytes {
            hot_limit = hot_limit.min(cap.0 as usize);
        }
        self.hot.set_limit(hot_limit);
    }
}
