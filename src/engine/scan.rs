//! SCAN and KEYS over both tiers. The cursor is a slot position in the `[db][slot][key]`
//! order both tiers share; each step reads whole slots, hot keys first and cold keys second,
//! so a key present for the whole iteration is always returned (DESIGN.md §3, SCAN).

use std::collections::BTreeMap;

use bytes::Bytes;

use super::api::{Access, EngineError, EngineResult, ScanPage};
use super::cold::Space;
use super::entry::{decode_cold_value, is_expired, ColdValue};
use super::glob;
use super::hot::HotShard;
use super::keys;
use super::slot;
use super::txn::{Guards, Txn};
use super::Engine;

/// Keys read per SCAN page when COUNT is not given (Redis's default).
pub const DEFAULT_SCAN_COUNT: usize = 10;

/// Calls its argument once per hot shard (the shards being locked one at a time, or held
/// by a transaction).
type ShardVisitor<'a> = dyn FnMut(&mut dyn FnMut(&HotShard)) -> EngineResult<()> + 'a;

impl Engine {
    /// One SCAN step (locks one shard at a time; see [`Engine::scan_page`]).
    pub fn scan(
        &self,
        access: Access,
        db: u16,
        cursor: u64,
        pattern: Option<&[u8]>,
        count: usize,
    ) -> EngineResult<ScanPage> {
        access.prepare_to_block()?;
        // One shard at a time, all within one busy-reply-threshold.
        let deadline = self.hot.request_deadline();
        self.scan_page(db, cursor, pattern, count, &mut |visit| {
            for index in 0..self.hot.shard_count() {
                visit(&*self.hot.lock_until(index, deadline)?);
            }
            Ok(())
        })
    }

    /// KEYS: every live key of `db` matching `pattern`.
    pub fn keys(&self, access: Access, db: u16, pattern: &[u8]) -> EngineResult<Vec<Bytes>> {
        scan_to_end(|cursor| self.scan(access, db, cursor, Some(pattern), KEYS_SCAN_COUNT))
    }

    /// One SCAN step over `db`. The cursor is a slot position in the `[db][slot][key]` order
    /// both tiers share: each step covers whole slots, reading the hot keys first and the
    /// cold keys second, so a key present for the whole iteration is always returned (a
    /// demotion writes cold before it leaves hot; a promotion keeps the cold copy).
    /// `each_shard` calls its argument once per hot shard.
    pub(super) fn scan_page(
        &self,
        db: u16,
        cursor: u64,
        pattern: Option<&[u8]>,
        count: usize,
        each_shard: &mut ShardVisitor<'_>,
    ) -> EngineResult<ScanPage> {
        self.check_db(db)?;
        let slot_count = u32::from(slot::SLOT_COUNT);
        let start = match u32::try_from(cursor) {
            Ok(start) if start < slot_count => start,
            _ => {
                return Ok(ScanPage {
                    cursor: 0,
                    keys: Vec::new(),
                })
            }
        };
        let count = count.max(1);
        let from = keys::slot_start(db, start);

        // Find where this page ends: after about `count` keys, on a slot boundary.
        let mut end = slot_count;
        let probe = self
            .cold
            .range(Space::Data, &from, &keys::slot_start(db, end), count)?;
        if probe.len() >= count {
            end = end.min(u32::from(keys::slot_of(&probe[count - 1].0)) + 1);
        }
        each_shard(&mut |shard| {
            let keys = shard.keys_in_slots(db, start, end, count);
            if keys.len() >= count {
                end = end.min(u32::from(keys::slot_of(&keys[count - 1])) + 1);
            }
        })?;

        // Collect both tiers for slots [start, end): hot first, then cold.
        let to = keys::slot_start(db, end);
        let now = self.now_ms();
        let mut candidates: BTreeMap<Bytes, bool> = BTreeMap::new();
        each_shard(&mut |shard| {
            for key in shard.keys_in_slots(db, start, end, usize::MAX) {
                let live = shard
                    .peek(&key)
                    .is_some_and(|entry| !is_expired(entry.expire_at, now));
                candidates.insert(Bytes::copy_from_slice(&key), live);
            }
            // Removed keys whose cold copies are not deleted yet.
            for key in shard.tombstones_in_slots(db, start, end) {
                candidates.insert(Bytes::copy_from_slice(&key), false);
            }
        })?;
        for (key, value) in self.cold.range(Space::Data, &from, &to, usize::MAX)? {
            let key = Bytes::from(key);
            if candidates.contains_key(&key) {
                continue;
            }
            let live = match decode_cold_value(&value)? {
                ColdValue::Live { expire_at, .. } => !is_expired(expire_at, now),
                ColdValue::ExpiredMarker => false,
            };
            candidates.insert(key, live);
        }
        let keys = candidates
            .into_iter()
            .filter(|(_, live)| *live)
            .map(|(key, _)| key.slice(keys::KEY_PREFIX_LEN..))
            .filter(|key| pattern.is_none_or(|pattern| glob::glob_match(pattern, key)))
            .collect();
        Ok(ScanPage {
            cursor: if end >= slot_count { 0 } else { u64::from(end) },
            keys,
        })
    }
}

impl Txn<'_> {
    /// One SCAN step with every shard held (SCAN/KEYS inside EXEC).
    pub fn scan(
        &mut self,
        db: u16,
        cursor: u64,
        pattern: Option<&[u8]>,
        count: usize,
    ) -> EngineResult<ScanPage> {
        let engine = self.engine;
        self.take_all_if_growing()?;
        let Guards::Many(guards) = &mut self.guards else {
            return Err(EngineError::NotLocked);
        };
        if guards.len() != engine.hot.shard_count() {
            return Err(EngineError::NotLocked);
        }
        engine.scan_page(db, cursor, pattern, count, &mut |visit| {
            for (_, guard) in guards.iter() {
                visit(guard);
            }
            Ok(())
        })
    }
}

/// Keys read per SCAN step when KEYS walks a whole database.
pub const KEYS_SCAN_COUNT: usize = 1024;

/// Runs SCAN steps from cursor 0 until the cursor comes back to 0, collecting every key
/// (KEYS, through the engine or through a transaction).
pub fn scan_to_end(
    mut step: impl FnMut(u64) -> EngineResult<ScanPage>,
) -> EngineResult<Vec<Bytes>> {
    let mut cursor = 0;
    let mut out = Vec::new();
    loop {
        let page = step(cursor)?;
        out.extend(page.keys);
        if page.cursor == 0 {
            return Ok(out);
        }
        cursor = page.cursor;
    }
}
