//! The hot tier as a whole: its shards, which shard a key lives in, how shards are locked,
//! each shard's byte limit and watermarks, and the demoter's wake-up.
//!
//! It owns the one rule every multi-shard caller depends on: shards are locked in
//! ascending index order, so two transactions can never deadlock. It decides nothing about
//! tiering (what to demote, promote or expire): the engine does, holding the shard locks this
//! type hands out.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::api::{Access, EngineError, EngineResult};
use super::hot::HotShard;
use super::keys;

/// How long an `HotOnly` call waits for a busy shard before handing the work to a blocking
/// thread: long enough to ride out another hot-path holder, far shorter than a disk read.
const HOT_LOCK_WAIT: Duration = Duration::from_micros(50);

pub(super) struct HotTier {
    shards: Box<[Mutex<HotShard>]>,
    /// Per-shard byte limit; shrinks as the filter grows.
    shard_limit: AtomicUsize,
    /// Set when a shard nears its limit; the demoter waits on it.
    demoter_wakeup: (Mutex<bool>, Condvar),
    /// Per shard (bytes, entries) as last read by `figures`.
    shard_figures: Box<[(AtomicUsize, AtomicUsize)]>,
    /// Most milliseconds a request waits for shards another command holds before it is
    /// answered `Busy` (`busy-reply-threshold`); 0 = no limit. Background work always waits.
    busy_after_ms: AtomicU64,
}

impl HotTier {
    /// `shards` must be a power of two (the config validates it).
    pub(super) fn new(shards: usize) -> Self {
        HotTier {
            shards: (0..shards)
                .map(|_| Mutex::new(HotShard::default()))
                .collect(),
            shard_limit: AtomicUsize::new(0),
            demoter_wakeup: (Mutex::new(false), Condvar::new()),
            shard_figures: (0..shards)
                .map(|_| (AtomicUsize::new(0), AtomicUsize::new(0)))
                .collect(),
            busy_after_ms: AtomicU64::new(0),
        }
    }

    pub(super) fn set_busy_after(&self, limit: Duration) {
        self.busy_after_ms
            .store(limit.as_millis() as u64, Ordering::Relaxed);
    }

    /// Until when a request may wait for a shard (None: for as long as it takes).
    pub(super) fn request_deadline(&self) -> Option<Instant> {
        match self.busy_after_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Instant::now() + Duration::from_millis(ms)),
        }
    }

    pub(super) fn lock_until(
        &self,
        index: usize,
        deadline: Option<Instant>,
    ) -> EngineResult<MutexGuard<'_, HotShard>> {
        let shard = &self.shards[index];
        match deadline {
            None => Ok(shard.lock()),
            Some(deadline) => shard
                .try_lock_until(deadline)
                .ok_or_else(|| self.busy_error()),
        }
    }

    /// A request waited out `busy-reply-threshold`.
    pub(super) fn busy_error(&self) -> EngineError {
        EngineError::Busy {
            waited_ms: self.busy_after_ms.load(Ordering::Relaxed),
        }
    }

    pub(super) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Every shard, in index order (lock them one at a time, or use `lock_many`).
    pub(super) fn shards(&self) -> &[Mutex<HotShard>] {
        &self.shards
    }

    /// Shards are chosen by slot, so one slot's hot keys all live in one shard.
    pub(super) fn shard_of_encoded(&self, encoded: &[u8]) -> usize {
        keys::hot_shard_of(encoded, self.shards.len())
    }

    /// The shard of a user key: the same as `shard_of_encoded` of the key in any database,
    /// since the database is not part of the slot.
    pub(super) fn shard_of_user_key(&self, key: &[u8]) -> usize {
        keys::hot_shard_of_user_key(key, self.shards.len())
    }

    /// Locks shard `index` for a request; with `HotOnly` a shard busy for longer than a
    /// hot-path call would hold it is `WouldBlock` instead, and with `MayBlock` one held
    /// past `busy-reply-threshold` is `Busy`.
    pub(super) fn lock(
        &self,
        access: Access,
        index: usize,
    ) -> EngineResult<MutexGuard<'_, HotShard>> {
        let shard = &self.shards[index];
        match access {
            Access::MayBlock => self.lock_until(index, self.request_deadline()),
            Access::HotOnly => shard
                .try_lock()
                .or_else(|| shard.try_lock_for(HOT_LOCK_WAIT))
                .ok_or(EngineError::WouldBlock),
            Access::Inline => match shard.try_lock() {
                Some(guard) => Ok(guard),
                None => {
                    access.prepare_to_block()?;
                    self.lock_until(index, self.request_deadline())
                }
            },
        }
    }

    /// Locks the shard holding an encoded key, blocking.
    pub(super) fn lock_encoded(&self, encoded: &[u8]) -> MutexGuard<'_, HotShard> {
        self.shards[self.shard_of_encoded(encoded)].lock()
    }

    /// Locks shards in ascending index order, the one order every multi-shard caller uses,
    /// so two of them can never deadlock.
    pub(super) fn lock_many(&self, indexes: &[usize]) -> Vec<(usize, MutexGuard<'_, HotShard>)> {
        let mut sorted = indexes.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        sorted
            .into_iter()
            .map(|index| (index, self.shards[index].lock()))
            .collect()
    }

    /// Every shard, locked in ascending order, waiting as long as it takes (WAL replay).
    pub(super) fn lock_all(&self) -> Vec<(usize, MutexGuard<'_, HotShard>)> {
        let all: Vec<usize> = (0..self.shards.len()).collect();
        self.lock_many(&all)
    }

    /// Shards for a request, in ascending order, within one `busy-reply-threshold` for all
    /// of them: `Busy` (holding none) if another command keeps one longer.
    pub(super) fn lock_many_for_request(
        &self,
        indexes: &[usize],
    ) -> EngineResult<Vec<(usize, MutexGuard<'_, HotShard>)>> {
        let mut sorted = indexes.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let deadline = self.request_deadline();
        sorted
            .into_iter()
            .map(|index| Ok((index, self.lock_until(index, deadline)?)))
            .collect()
    }

    /// Every shard for a request (FLUSHALL, KEYS inside EXEC, ...), as `lock_many_for_request`.
    pub(super) fn lock_all_for_request(
        &self,
    ) -> EngineResult<Vec<(usize, MutexGuard<'_, HotShard>)>> {
        let all: Vec<usize> = (0..self.shards.len()).collect();
        self.lock_many_for_request(&all)
    }

    /// One shard's share of the hot budget in bytes.
    pub(super) fn shard_limit(&self) -> usize {
        self.shard_limit.load(Ordering::Relaxed)
    }

    /// The whole hot tier's limit (INFO).
    pub(super) fn limit_bytes(&self) -> usize {
        self.shard_limit() * self.shards.len()
    }

    /// Shares `hot_limit_bytes` out among the shards.
    pub(super) fn set_limit(&self, hot_limit_bytes: usize) {
        let limit = hot_limit_bytes / self.shards.len();
        self.shard_limit.store(limit.max(1), Ordering::Relaxed);
    }

    pub(super) fn watermarks(&self) -> Watermarks {
        Watermarks::for_limit(self.shard_limit())
    }

    pub(super) fn wake_demoter(&self) {
        let (pending, wakeup) = &self.demoter_wakeup;
        *pending.lock() = true;
        wakeup.notify_one();
    }

    /// The demoter's wait: returns once woken or after `timeout`, clearing the wake-up.
    pub(super) fn wait_for_demoter_wakeup(&self, timeout: Duration) {
        let (pending, wakeup) = &self.demoter_wakeup;
        let mut pending = pending.lock();
        if !*pending {
            wakeup.wait_for(&mut pending, timeout);
        }
        *pending = false;
    }

    /// (bytes used, entries) over every shard.
    ///
    /// It never waits for a shard: INFO may run inside EXEC, whose transaction already
    /// holds shards, so a busy shard is reported with the figures last read from it.
    pub(super) fn figures(&self) -> (usize, usize) {
        let (mut used_bytes, mut keys) = (0, 0);
        for (shard, (last_bytes, last_keys)) in self.shards.iter().zip(self.shard_figures.iter()) {
            if let Some(shard) = shard.try_lock() {
                last_bytes.store(shard.used_bytes(), Ordering::Relaxed);
                last_keys.store(shard.len(), Ordering::Relaxed);
            }
            used_bytes += last_bytes.load(Ordering::Relaxed);
            keys += last_keys.load(Ordering::Relaxed);
        }
        (used_bytes, keys)
    }
}

/// Byte levels of one hot shard. Demoting down to a target below the limit, rather than to
/// the limit itself, makes every cold write a batch (at the limit, each insert would demote
/// one entry in a RocksDB write of its own); waking the demoter before the limit keeps
/// writers on the async path, since only a shard over its limit sends them to inline
/// demotion.
#[derive(Debug, Clone, Copy)]
pub(super) struct Watermarks {
    /// The shard's share of the hot budget: never exceeded by more than one entry.
    pub(super) limit: usize,
    /// Above this the background demoter is woken.
    pub(super) wake: usize,
    /// Demotion stops at or below this.
    pub(super) target: usize,
}

impl Watermarks {
    fn for_limit(limit: usize) -> Self {
        Watermarks {
            limit,
            wake: limit - limit / 32,
            target: limit - limit / 16,
        }
    }
}
