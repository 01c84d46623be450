//! Moving entries down: keeping each hot shard within its share of the budget (inline when
//! a write pushed it over, or by the background demoter near the limit), and writing every
//! dirty entry down at a checkpoint. Nothing leaves the hot tier before the cold tier holds
//! its current value (I3); the filter learns a key before the cold tier does (I4); no cold
//! write carries a change before that change's WAL record is durable (I5).

use super::api::{Access, EngineError, EngineResult};
use super::cold::{ColdOp, Space};
use super::disk_health::{OomRefusal, StallRetry};
use super::entry::{encode_stamped_cold_value, is_expired, NO_EXPIRY};
use super::filter::hash_key;
use super::hot::{ColdCopy, HotEntry, HotKey, HotShard, PENDING_LSN};
use super::keys;
use super::resolve::{live_entry, push_cold_delete, Removal};
use super::Engine;

/// Entries written to the cold tier per WriteBatch on demotion.
const DEMOTION_BATCH_ENTRIES: usize = 256;

impl Engine {
    /// Demotes (or drops, if clean) least recently used entries from every shard near its
    /// limit, down to the demotion target. The background demoter calls this; so can tests.
    /// A shard whose demotion fails drops clean entries instead (`room.rs`) and the others
    /// are still served; the first error is returned once every shard was tried.
    pub fn demote_over_budget_shards(&self) -> EngineResult<()> {
        let marks = self.hot.watermarks();
        let mut first_error = None;
        let mut all_within_limit = true;
        for shard in self.hot.shards().iter() {
            let mut shard = shard.lock();
            let mut result = self.apply_tombstones(&mut shard, false);
            if result.is_ok() && shard.used_bytes() > marks.wake {
                result = self.demote_until(&mut shard, marks.target, false);
            }
            if let Err(err) = result {
                self.evict_clean(&mut shard, marks.target);
                first_error.get_or_insert(err);
            }
            all_within_limit &= shard.used_bytes() <= marks.limit;
        }
        if all_within_limit {
            self.cold.health().stop_refusing();
        }
        first_error.map_or(Ok(()), Err)
    }

    /// With `HotOnly`, refuses a write to a shard already over its limit, so the write is
    /// retried where it may demote inline: the hot tier stays within its budget under any
    /// load (the demoter normally keeps shards below the limit, see `Watermarks`). Where
    /// blocking is allowed, makes room or refuses the write (`room.rs`).
    pub(super) fn check_room(&self, access: Access, shard: &mut HotShard) -> EngineResult<()> {
        if shard.used_bytes() <= self.hot.shard_limit() {
            return Ok(());
        }
        access.prepare_to_block()?;
        self.make_room(shard, true)
    }

    /// After a change that may have grown the shard: wake the demoter once the shard nears
    /// its limit; past the limit, demote inline where blocking is allowed.
    pub(super) fn settle(&self, access: Access, shard: &mut HotShard) {
        let marks = self.hot.watermarks();
        let used = shard.used_bytes();
        if used <= marks.wake {
            return;
        }
        match access {
            Access::MayBlock if used > marks.limit => {
                let failing = self.cold.health().is_failing();
                if failing || self.demote_until(shard, marks.target, false).is_err() {
                    // The change itself is safe in the hot tier, within one entry of the
                    // limit (`check_room` let it in); clean entries make what room they
                    // can, and the demoter retries (the cold tier's health logs why).
                    self.evict_clean(shard, marks.target);
                    self.hot.wake_demoter();
                }
            }
            _ => self.hot.wake_demoter(),
        }
    }

    /// Evicts least recently used entries until the shard uses at most `target` bytes.
    /// Dirty entries are demoted in batches; nothing leaves the hot tier before the cold
    /// tier holds its current value (I3), and the filter learns a key before the cold tier
    /// does (I4). While demotion is paused (the disk over its budget and slack), dirty
    /// entries stay, unless `take_from_ram` lets the policy evict them from the whole cache
    /// (a write that waited its turn for room is not refused under allkeys-*).
    pub(super) fn demote_until(
        &self,
        shard: &mut HotShard,
        target: usize,
        take_from_ram: bool,
    ) -> EngineResult<()> {
        self.apply_tombstones(shard, false)?;
        let mut blocked = false;
        let mut refused = false;
        while shard.used_bytes() > target && !blocked && !refused {
            let now = self.now_ms();
            let mut ops = Vec::new();
            let mut demoted = Vec::new();
            let mut expired = Vec::new();
            let mut new_in_cold = Vec::new();
            let mut dropped = Vec::new();
            let mut newest_lsn = 0;
            while shard.used_bytes() > target && demoted.len() < DEMOTION_BATCH_ENTRIES {
                let Some((key, entry)) = shard.pop_lru() else {
                    break;
                };
                if entry.lsn == PENDING_LSN {
                    // Changed by the transaction running now, whose WAL record does not
                    // exist yet: it stays hot until that transaction ends.
                    shard.insert(key, entry);
                    blocked = true;
                    break;
                }
                if entry.dirty || entry.cold != ColdCopy::Absent {
                    newest_lsn = newest_lsn.max(entry.lsn);
                }
                if is_expired(entry.expire_at, now) {
                    if let ColdCopy::Present { expire_at } = entry.cold {
                        push_cold_delete(&mut ops, &key, expire_at);
                    }
                    expired.push((key, entry));
                    continue;
                }
                let paused = self.eviction.demotion_paused();
                if !entry.dirty && (paused || !self.stamp_needs_refresh(&entry)) {
                    self.stats.evictions.add(1);
                    continue;
                }
                if paused {
                    if take_from_ram && self.eviction.may_take_from_ram(&entry) {
                        // The disk stands over its budget and slack (compaction behind):
                        // rather than refuse writes, the policy takes this key from the
                        // whole cache here, with any older cold copy.
                        if let ColdCopy::Present { expire_at } = entry.cold {
                            push_cold_delete(&mut ops, &key, expire_at);
                        }
                        dropped.push((key, entry));
                        continue;
                    }
                    // The entry stays until eviction and compaction make room; writes that
                    // need room are refused meanwhile (noeviction, or a volatile policy
                    // and a key without a TTL).
                    shard.insert(key, entry);
                    refused = true;
                    break;
                }
                if !entry.dirty {
                    self.stats.stamp_refreshes.add(1);
                }
                self.push_demotion_ops(&mut ops, &mut new_in_cold, &key, &entry);
                demoted.push((key, entry));
            }
            self.learn_in_filter(&new_in_cold);
            if !ops.is_empty() {
                let written = self
                    .wait_wal_durable(newest_lsn)
                    .and_then(|()| Ok(self.cold.write(ops)?));
                if let Err(err) = written {
                    // None of the batch reached the cold tier (one atomic write): the filter
                    // must not keep counting those keys (I4).
                    self.filter.forget(&new_in_cold);
                    for (key, entry) in demoted.into_iter().chain(expired).chain(dropped) {
                        shard.insert(key, entry);
                    }
                    return Err(err);
                }
            }
            let demotions = demoted.len() as u64;
            self.stats.demotions.add(demotions as i64);
            self.stats.evictions.add(demotions as i64);
            for (key, entry) in expired {
                if matches!(entry.cold, ColdCopy::Present { .. }) {
                    self.filter.forget(&[hash_key(&key)]);
                }
                self.count_key(keys::db_of(&key), -1);
                self.stats.expired_keys.add(1);
            }
            for (key, entry) in &dropped {
                if matches!(entry.cold, ColdCopy::Present { .. }) {
                    self.filter.forget(&[hash_key(key)]);
                }
            }
            self.note_ram_evictions(dropped.iter().map(|(key, _)| &key[..]));
            if shard.is_empty() {
                break;
            }
        }
        if shard.used_bytes() > target {
            self.apply_tombstones(shard, true)?;
        }
        if refused {
            return Err(EngineError::OutOfMemory(OomRefusal::DiskBudget));
        }
        Ok(())
    }

    /// Writes every dirty hot entry to the cold tier, marks it clean, deletes the cold copies
    /// of removed keys, and makes the cold tier durable (a checkpoint's step 2). A shard is
    /// held for one batch at a time, so every shard keeps serving in between. Returns the
    /// number of entries written.
    ///
    /// Covers every change made before the call: the dirty keys are listed after it, and a
    /// listed key that is no longer dirty when its batch comes was demoted (so the cold tier
    /// has it) or removed (and a later checkpoint covers that).
    pub fn flush_dirty_to_cold(&self) -> EngineResult<usize> {
        let mut written = 0;
        let mut stalls = StallRetry::new();
        for shard in self.hot.shards().iter() {
            // Nothing reaches the cold tier before its WAL record is durable (I5). Every wait
            // for that happens with the shard released, so writers to it are never stalled
            // behind an fsync.
            if let Some(wal) = self.wal.get() {
                if wal.durable_lsn() < wal.last_lsn() {
                    wal.sync()?;
                }
            }
            let dirty = {
                let mut shard = shard.lock();
                // Dead entries leave as removals, taking any cold copy with them (I2).
                for key in shard.expired_keys(self.now_ms(), usize::MAX) {
                    self.remove_resolved(Access::MayBlock, &mut shard, &key, Removal::Expired)?;
                }
                self.apply_tombstones(&mut shard, false)?;
                shard.dirty_keys()
            };
            for chunk in dirty.chunks(DEMOTION_BATCH_ENTRIES) {
                loop {
                    let mut shard = shard.lock();
                    let still_dirty: Vec<&HotKey> = chunk
                        .iter()
                        .filter(|key| shard.peek(key).is_some_and(|entry| entry.dirty))
                        .collect();
                    if still_dirty.is_empty() {
                        break;
                    }
                    let newest_lsn = still_dirty
                        .iter()
                        .map(|key| live_entry(&shard, key).lsn)
                        .max()
                        .unwrap_or(0);
                    if !self.wal_durable_at(newest_lsn) {
                        // Changed since the sync above: wait unlocked, then look again.
                        drop(shard);
                        self.wait_wal_durable(newest_lsn)?;
                        continue;
                    }
                    let mut ops = Vec::new();
                    let mut new_in_cold = Vec::new();
                    for key in &still_dirty {
                        let entry = live_entry(&shard, key);
                        self.push_demotion_ops(&mut ops, &mut new_in_cold, key, entry);
                    }
                    self.learn_in_filter(&new_in_cold);
                    if let Err(err) = self.cold.write(ops) {
                        self.filter.forget(&new_in_cold);
                        drop(shard);
                        stalls.wait_or_fail(err)?;
                        continue;
                    }
                    for key in &still_dirty {
                        let expire_at = live_entry(&shard, key).expire_at;
                        shard.mark_clean(key, ColdCopy::Present { expire_at });
                    }
                    written += still_dirty.len();
                    break;
                }
            }
            // Keys removed (by expiry too, which is not logged) while the batches ran leave
            // tombstones whose cold deletes this checkpoint must include.
            let newest_tombstone = shard.lock().max_tombstone_lsn();
            self.wait_wal_durable(newest_tombstone)?;
            self.apply_tombstones(&mut shard.lock(), false)?;
        }
        self.cold.sync()?;
        Ok(written)
    }
}

impl Engine {
    /// Whether a clean entry leaving the hot tier must be written down anyway, because the
    /// eviction policy would misjudge it by its cold copy's stamp: only near the disk
    /// budget (when eviction is close), under an LRU or LFU policy, and when the stamp has
    /// moved (the key was used since it was written down or promoted).
    fn stamp_needs_refresh(&self, entry: &HotEntry) -> bool {
        use crate::config::EvictionPolicy::*;
        let policy = self.eviction.policy();
        if entry.cold == ColdCopy::Absent
            || !self.eviction.stamps_matter()
            // A volatile policy never takes this key: its stamp does not matter.
            || (policy.volatile_only() && entry.expire_at == NO_EXPIRY)
        {
            return false;
        }
        match policy {
            AllkeysLru | VolatileLru => {
                entry.access.last_access_s > entry.cold_access.last_access_s
            }
            AllkeysLfu | VolatileLfu => entry.access.lfu != entry.cold_access.lfu,
            _ => false,
        }
    }

    /// The cold writes that make the cold tier hold `entry` exactly: the value with its
    /// access stamp, its expiry index entry, and the removal of a stale index entry. Keys
    /// entering the cold tier for the first time are added to `new_in_cold`, for the filter
    /// to learn before the write.
    fn push_demotion_ops(
        &self,
        ops: &mut Vec<ColdOp>,
        new_in_cold: &mut Vec<u64>,
        key: &[u8],
        entry: &HotEntry,
    ) {
        let value = encode_stamped_cold_value(&entry.value, entry.expire_at, entry.access);
        self.eviction
            .note_written(key.len() + value.len(), entry.expire_at);
        ops.push(ColdOp::Put {
            space: Space::Data,
            key: key.to_vec(),
            value,
        });
        match entry.cold {
            ColdCopy::Present { expire_at } => {
                if expire_at != NO_EXPIRY && expire_at != entry.expire_at {
                    ops.push(ColdOp::Delete {
                        space: Space::Expiry,
                        key: keys::expiry_index_key(key, expire_at),
                    });
                }
            }
            ColdCopy::Absent => new_in_cold.push(hash_key(key)),
        }
        if entry.expire_at != NO_EXPIRY {
            ops.push(ColdOp::Put {
                space: Space::Expiry,
                key: keys::expiry_index_key(key, entry.expire_at),
                value: Vec::new(),
            });
        }
    }
}
