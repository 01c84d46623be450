//! Room in the hot tier when the cold tier will not take writes (a full, failing or
//! read-only disk, or a write stall that does not end): evicting clean entries, which the
//! cold tier already holds, and refusing writes that cannot be placed (I6, I8).
//!
//! It owns the rule that the hot tier never grows past its share to absorb writes the disk
//! refused: a dirty entry is never dropped (nothing acknowledged is lost), so a write that
//! finds its shard full of them is refused with `-OOM` after at most `ROOM_WAIT`, retried
//! with its shard released in between. It must never hold a shard lock while it waits.

use std::time::Instant;

use super::api::{Access, EngineError, EngineResult};
use super::disk_health::{Backoff, OomRefusal, ROOM_WAIT};
use super::hot::{ColdCopy, HotShard};
use super::keys;
use super::txn::{Guards, Txn};
use super::Engine;

impl Engine {
    /// Why writes are refused before they run, if they are (the dispatcher's `-OOM` check
    /// for commands flagged DENYOOM). Clears by itself once cold writes succeed again or
    /// the demoter finds every shard within its limit.
    pub fn oom_refusal(&self) -> Option<OomRefusal> {
        if self.eviction.refusing() {
            return Some(OomRefusal::DiskBudget);
        }
        self.cold.health().oom_refusal()
    }

    /// For a write about to grow a shard over its limit, where blocking is allowed: demote
    /// inline (unless the cold tier is known to be failing: the demoter retries it with
    /// backoff), then drop clean entries; refuse the write if the shard is still full.
    /// Nothing has changed when it refuses. With `take_from_ram`, a disk over its budget
    /// lets the policy evict hot entries instead of refusing (see `demote_until`).
    pub(super) fn make_room(&self, shard: &mut HotShard, take_from_ram: bool) -> EngineResult<()> {
        let marks = self.hot.watermarks();
        if shard.used_bytes() <= marks.limit {
            return Ok(());
        }
        if !self.cold.health().is_failing()
            && self
                .demote_until(shard, marks.target, take_from_ram)
                .is_ok()
        {
            return Ok(());
        }
        self.evict_clean(shard, marks.target);
        if take_from_ram && self.cold.health().works() {
            self.evict_from_ram(shard, marks.target);
        }
        if shard.used_bytes() <= marks.limit {
            return Ok(());
        }
        if self.cold.health().is_failing() {
            self.cold.health().refuse_writes();
        }
        self.hot.wake_demoter();
        Err(EngineError::OutOfMemory(OomRefusal::ColdWritesFailing))
    }

    /// Drops clean entries, least recently used first, until the shard uses at most
    /// `target` bytes or only dirty ones are left. Their values stay in the cold tier, so
    /// no key is lost and the key counts do not change.
    pub(super) fn evict_clean(&self, shard: &mut HotShard, target: usize) {
        let over = shard.used_bytes().saturating_sub(target);
        if over == 0 {
            return;
        }
        for key in shard.clean_keys_lru_first(over) {
            shard.remove(&key);
            self.stats.evictions.add(1);
        }
    }

    /// With the disk working but behind (writes stalled, or demotion paused over the budget),
    /// lets the policy take keys straight from RAM where that needs no cold write: entries
    /// the cold tier never held, least recently used first (clean ones have already gone).
    /// A key with an older cold copy stays: dropping it would need a cold delete, and
    /// without one the older value would come back.
    fn evict_from_ram(&self, shard: &mut HotShard, target: usize) {
        let over = shard.used_bytes().saturating_sub(target);
        if over == 0 {
            return;
        }
        let victims = shard.keys_lru_first(over, |entry| {
            entry.cold == ColdCopy::Absent && self.eviction.may_take_from_ram(entry)
        });
        for key in &victims {
            shard.remove(key);
        }
        self.note_ram_evictions(victims.iter().map(|key| &key[..]));
    }

    /// The bookkeeping of keys the policy took out of the whole cache straight from RAM
    /// (a cold copy, if there was one, the caller has deleted and unlearned already): the
    /// key counts, WATCH, and the eviction counters.
    pub(super) fn note_ram_evictions<'k>(&self, evicted: impl Iterator<Item = &'k [u8]>) {
        let mut count = 0;
        for key in evicted {
            self.count_key(keys::db_of(key), -1);
            self.watches.touch(key);
            count += 1;
        }
        self.stats.evictions.add(count);
        self.stats.evicted_keys.add(count);
        self.stats.ram_evictions.add(count);
    }

    /// A one-shard transaction for a write to `key`, whose shard has room for it. Where
    /// blocking is allowed and the shard is full, it tries again with the shard released
    /// and a growing pause in between, for at most `ROOM_WAIT`: a write stall that passes,
    /// or the demoter making room, lets the write through; at the end the policy may evict
    /// from RAM (allkeys-*, or a key with a TTL under volatile-*), and otherwise the refusal
    /// is its answer. (`HotOnly` callers are sent to a blocking thread by `check_room` instead.)
    pub(super) fn single_with_room(
        &self,
        access: Access,
        db: u16,
        key: &[u8],
    ) -> EngineResult<Txn<'_>> {
        if access == Access::HotOnly {
            return self.single(access, db, key);
        }
        let deadline = Instant::now() + ROOM_WAIT;
        let mut backoff = Backoff::new(ROOM_WAIT / 8);
        loop {
            let mut txn = self.single(access, db, key)?;
            // The wait is the backpressure that lets compaction catch up on a busy core;
            // once it is over, or once a stall has outlived its grace (waiting did not
            // help), the policy may evict from RAM rather than refuse.
            let last_try = Instant::now() >= deadline || self.cold.health().is_failing();
            let room = match &mut txn.guards {
                Guards::One(_, shard) => self.make_room(shard, last_try),
                Guards::Many(_) => Ok(()),
            };
            match room {
                Ok(()) => return Ok(txn),
                Err(err) => {
                    drop(txn);
                    if last_try || self.oom_refusal().is_some() {
                        return Err(err);
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    std::thread::sleep(backoff.next_wait().min(left));
                }
            }
        }
    }
}
