//! One shard of the hot tier: an LRU of entries (crate `lru`), an index of keys by
//! (database, slot) so the shard can list a slot range's keys in slot order (SCAN merges
//! them with the cold tier), a deadline index for active expiry, and byte accounting
//! against the shard's share of the budget.
//!
//! A shard never touches disk and never decides policy: the engine, holding the shard's
//! lock, decides what to promote, demote, expire or delete, and calls in here.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use std::sync::Arc;

use foldhash::fast::RandomState;
use lru::LruCache;

use super::entry::{ExpireAt, NO_EXPIRY};
use super::eviction::access::{AccessStamp, LfuParams};
use super::types::Value;

/// Bytes charged per entry on top of key and value: the LRU node (key handle, entry,
/// links), its hash-table slot, the ordered-index node, and allocator rounding. Measured
/// with the memory-budget test; see docs/architecture.md "Memory budget".
pub const ENTRY_OVERHEAD_BYTES: usize = 200;

/// Whether the cold tier holds a copy of a hot entry's key, and with which expiry, so the
/// engine knows when a cold delete and a filter removal are due (DESIGN I2, I4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColdCopy {
    Absent,
    Present { expire_at: ExpireAt },
}

#[derive(Clone, Debug)]
pub struct HotEntry {
    pub value: Value,
    pub expire_at: ExpireAt,
    /// The cold tier does not hold exactly this value and expiry: eviction must demote it.
    pub dirty: bool,
    pub cold: ColdCopy,
    /// Last access and frequency counter (OBJECT IDLETIME / FREQ, the eviction policies).
    pub access: AccessStamp,
    /// The stamp the cold copy carries (unknown when there is none), so dropping a clean
    /// entry can tell whether the cold copy's stamp has fallen too far behind.
    pub cold_access: AccessStamp,
    /// The WAL record of the entry's last change (0 = none needed: replayed or loaded from
    /// the cold tier; [`PENDING_LSN`] = its transaction has not appended its record yet).
    /// The entry may reach the cold tier only once the WAL is durable up to here (I5).
    pub lsn: u64,
}

/// The LSN of a change whose transaction is still running: its record is appended, and the
/// LSN stamped, when the transaction ends.
pub const PENDING_LSN: u64 = u64::MAX;

/// The earliest field deadline of a hash entry (None for anything else).
fn earliest_field_deadline(entry: &HotEntry) -> Option<ExpireAt> {
    match &entry.value {
        Value::Hash(hash) => hash.earliest_deadline(),
        _ => None,
    }
}

/// A key removed from the hot tier whose cold copy must go too, but only once the WAL holds
/// the removal durably: deleting the cold copy earlier would let a crash lose a value whose
/// removal was never acknowledged. Until then the key reads as absent (I1, I2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tombstone {
    /// Expiry of the cold copy (for its expiry index entry).
    pub expire_at: ExpireAt,
    pub lsn: u64,
}

/// Bytes charged per tombstone on top of its key.
const TOMBSTONE_OVERHEAD_BYTES: usize = 64;

impl HotEntry {
    /// A value just written: dirty (the cold tier does not hold it), taking over `cold`, the
    /// cold copy of the value it replaces (if any), so removal or demotion deals with it.
    /// The access stamp is a new key's; `Engine::store` carries an overwritten key's over.
    pub fn written(value: Value, expire_at: ExpireAt, cold: ColdCopy, now_s: u32) -> Self {
        HotEntry {
            value,
            expire_at,
            dirty: true,
            cold,
            access: AccessStamp::new(now_s),
            cold_access: AccessStamp::unknown(),
            lsn: 0,
        }
    }

    /// A value just read from the cold tier, whose copy there carries `cold_access`: clean,
    /// its cold copy present. Promotion alone is no access (OBJECT IDLETIME promotes too);
    /// a GET touches the entry after promoting it.
    pub fn promoted(value: Value, expire_at: ExpireAt, cold_access: AccessStamp) -> Self {
        HotEntry {
            value,
            expire_at,
            dirty: false,
            cold: ColdCopy::Present { expire_at },
            access: cold_access,
            cold_access,
            lsn: 0,
        }
    }

    fn charge(key: &[u8], entry: &HotEntry) -> usize {
        key.len() + entry.value.memory_bytes() + ENTRY_OVERHEAD_BYTES
    }
}

/// An access to note in an entry's stamp: when, and the LFU knobs in force.
#[derive(Clone, Copy, Debug)]
pub struct Touch {
    pub now_s: u32,
    pub lfu: LfuParams,
}

/// An encoded key as the hot tier holds it: one allocation (count and bytes together),
/// shared by the LRU, the slot index and the deadline index without further allocations.
pub type HotKey = Arc<[u8]>;

/// `(db << 16) | slot`: the position of a slot in the `[db][slot]` key order.
type SlotPosition = u32;

fn slot_position(encoded: &[u8]) -> SlotPosition {
    u32::from_be_bytes([encoded[0], encoded[1], encoded[2], encoded[3]])
}

pub struct HotShard {
    entries: LruCache<HotKey, HotEntry>,
    /// Keys by slot. Within a slot order does not matter (SCAN pages end on slot
    /// boundaries), so a hash set per slot replaces an ordered set of whole keys, whose
    /// inserts cost a dozen key comparisons each.
    keys_by_slot: BTreeMap<SlotPosition, HashSet<HotKey, RandomState>>,
    deadlines: BTreeSet<(ExpireAt, HotKey)>,
    /// Hashes with field deadlines, by their earliest one (the active expiry of fields).
    field_deadlines: BTreeSet<(ExpireAt, HotKey)>,
    /// Removed keys whose cold copies are still to be deleted (only with the WAL on).
    tombstones: HashMap<HotKey, Tombstone, RandomState>,
    /// Keys changed by the running transaction, whose LSN it stamps when it ends.
    pending: Vec<HotKey>,
    used_bytes: usize,
}

impl Default for HotShard {
    fn default() -> Self {
        HotShard {
            entries: LruCache::unbounded(),
            keys_by_slot: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            field_deadlines: BTreeSet::new(),
            tombstones: HashMap::default(),
            pending: Vec::new(),
            used_bytes: 0,
        }
    }
}

impl HotShard {
    /// Looks up, marks the entry most recently used and notes the access in its stamp.
    pub fn get(&mut self, key: &[u8], touch: Touch) -> Option<&HotEntry> {
        let entry = self.entries.get_mut(key)?;
        entry.access = entry.access.touched(touch.now_s, touch.lfu);
        Some(entry)
    }

    /// Looks up without changing the LRU order.
    pub fn peek(&self, key: &[u8]) -> Option<&HotEntry> {
        self.entries.peek(key)
    }

    /// Inserts or replaces (as most recently used), keeping every index and the byte count
    /// in step. Returns the previous entry.
    pub fn insert(&mut self, key: HotKey, entry: HotEntry) -> Option<HotEntry> {
        match self.overwrite(&key, entry, |_, _| {}) {
            Ok((_, previous)) => Some(previous),
            Err(entry) => {
                self.insert_absent(key, entry);
                None
            }
        }
    }

    /// Replaces the entry of a key already here, in place and as most recently used, once
    /// `merge` has seen the entry it replaces: one lookup, and no new key. Returns the key as
    /// held (a reference for the caller's lists) and the previous entry, or `Err(entry)` when
    /// the key is absent (then `insert_absent` it).
    pub fn overwrite(
        &mut self,
        key: &[u8],
        mut entry: HotEntry,
        merge: impl FnOnce(&HotEntry, &mut HotEntry),
    ) -> Result<(HotKey, HotEntry), HotEntry> {
        let Some((held, slot)) = self.entries.get_key_value_mut(key) else {
            return Err(entry);
        };
        merge(slot, &mut entry);
        let held = held.clone();
        let new_deadline = entry.expire_at;
        let new_field_deadline = earliest_field_deadline(&entry);
        let previous = std::mem::replace(slot, entry);
        let new_charge = HotEntry::charge(key, slot);
        // The key stays where it is in every index; only its deadline may move.
        self.used_bytes = self.used_bytes + new_charge - HotEntry::charge(key, &previous);
        if previous.expire_at != new_deadline {
            if previous.expire_at != NO_EXPIRY {
                self.deadlines.remove(&(previous.expire_at, held.clone()));
            }
            if new_deadline != NO_EXPIRY {
                self.deadlines.insert((new_deadline, held.clone()));
            }
        }
        self.move_field_deadline(
            &held,
            earliest_field_deadline(&previous),
            new_field_deadline,
        );
        Ok((held, previous))
    }

    /// Changes the entry at `key` in place (a collection's elements), keeping the charge
    /// exact; returns the key as held and `change`'s answer, or None when the key is absent.
    /// `change` must not move the deadline (that is `overwrite`'s work).
    pub fn modify<T>(
        &mut self,
        key: &[u8],
        change: impl FnOnce(&mut HotEntry) -> T,
    ) -> Option<(HotKey, T)> {
        let (held, slot) = self.entries.get_key_value_mut(key)?;
        let (old_charge, deadline) = (HotEntry::charge(key, slot), slot.expire_at);
        let old_field_deadline = earliest_field_deadline(slot);
        let answer = change(slot);
        debug_assert_eq!(slot.expire_at, deadline, "modify never moves a deadline");
        self.used_bytes = self.used_bytes + HotEntry::charge(key, slot) - old_charge;
        let (held, new_field_deadline) = (held.clone(), earliest_field_deadline(slot));
        self.move_field_deadline(&held, old_field_deadline, new_field_deadline);
        Some((held, answer))
    }

    /// Adds a key that is not here (`overwrite` said so), to every index.
    pub fn insert_absent(&mut self, key: HotKey, entry: HotEntry) {
        let new_deadline = entry.expire_at;
        self.used_bytes += HotEntry::charge(&key, &entry);
        if new_deadline != NO_EXPIRY {
            self.deadlines.insert((new_deadline, key.clone()));
        }
        if let Some(at) = earliest_field_deadline(&entry) {
            self.field_deadlines.insert((at, key.clone()));
        }
        self.keys_by_slot
            .entry(slot_position(&key))
            .or_default()
            .insert(key.clone());
        self.entries.put(key, entry);
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<(HotKey, HotEntry)> {
        let (key, entry) = self.entries.pop_entry(key)?;
        self.forget(&key, &entry);
        Some((key, entry))
    }

    /// Removes the least recently used entry.
    pub fn pop_lru(&mut self) -> Option<(HotKey, HotEntry)> {
        let (key, entry) = self.entries.pop_lru()?;
        self.forget(&key, &entry);
        Some((key, entry))
    }

    fn forget(&mut self, key: &HotKey, entry: &HotEntry) {
        self.used_bytes -= HotEntry::charge(key, entry);
        let position = slot_position(key);
        if let Some(keys) = self.keys_by_slot.get_mut(&position) {
            keys.remove(key);
            if keys.is_empty() {
                self.keys_by_slot.remove(&position);
            }
        }
        if entry.expire_at != NO_EXPIRY {
            self.deadlines.remove(&(entry.expire_at, key.clone()));
        }
        if let Some(at) = earliest_field_deadline(entry) {
            self.field_deadlines.remove(&(at, key.clone()));
        }
    }

    /// Re-indexes a hash whose earliest field deadline went from `old` to `new`.
    fn move_field_deadline(&mut self, key: &HotKey, old: Option<ExpireAt>, new: Option<ExpireAt>) {
        if old == new {
            return;
        }
        if let Some(at) = old {
            self.field_deadlines.remove(&(at, key.clone()));
        }
        if let Some(at) = new {
            self.field_deadlines.insert((at, key.clone()));
        }
    }

    /// Up to `limit` hashes with a field whose deadline is at or before `now_ms`.
    pub fn hashes_with_expired_fields(&self, now_ms: u64, limit: usize) -> Vec<HotKey> {
        self.field_deadlines
            .iter()
            .take_while(|(deadline, _)| *deadline <= now_ms)
            .take(limit)
            .map(|(_, key)| key.clone())
            .collect()
    }

    /// Marks an entry clean after its value reached the cold tier (checkpoint flush).
    /// The cold tier now holds the entry as it is, stamp included.
    pub fn mark_clean(&mut self, key: &[u8], cold: ColdCopy) {
        if let Some(entry) = self.entries.peek_mut(key) {
            entry.dirty = false;
            entry.cold = cold;
            entry.cold_access = entry.access;
        }
    }

    /// Keys of database `db` in slots `from_slot..to_slot`, in slot order (any order within
    /// a slot). Stops after the slot in which `limit` keys were reached, so the result holds
    /// whole slots only.
    pub fn keys_in_slots(
        &self,
        db: u16,
        from_slot: u32,
        to_slot: u32,
        limit: usize,
    ) -> Vec<HotKey> {
        let base = u32::from(db) << 16;
        let (from, to) = (base + from_slot.min(1 << 16), base + to_slot.min(1 << 16));
        let mut out = Vec::new();
        if from >= to {
            return out;
        }
        for keys in self.keys_by_slot.range(from..to).map(|(_, keys)| keys) {
            out.extend(keys.iter().cloned());
            if out.len() >= limit {
                break;
            }
        }
        out
    }

    /// Every key of databases `from_db..to_db`.
    pub fn keys_in_databases(&self, from_db: u16, to_db: u16) -> Vec<HotKey> {
        let (from, to) = (u32::from(from_db) << 16, u32::from(to_db) << 16);
        self.keys_by_slot
            .range(from..to)
            .flat_map(|(_, keys)| keys.iter().cloned())
            .collect()
    }

    /// Up to `limit` keys whose deadline is at or before `now_ms`, earliest first.
    pub fn expired_keys(&self, now_ms: u64, limit: usize) -> Vec<HotKey> {
        self.deadlines
            .iter()
            .take_while(|(deadline, _)| *deadline <= now_ms)
            .take(limit)
            .map(|(_, key)| key.clone())
            .collect()
    }

    /// Clean entries' keys, least recently used first, until their charges add up to
    /// `bytes`: what can leave without a cold write (the cold tier holds their values).
    pub fn clean_keys_lru_first(&self, bytes: usize) -> Vec<HotKey> {
        self.keys_lru_first(bytes, |entry| !entry.dirty)
    }

    /// Keys of entries `may_go` accepts (never one a running transaction changed), least
    /// recently used first, until they add up to at least `bytes` of charge.
    pub fn keys_lru_first(&self, bytes: usize, may_go: impl Fn(&HotEntry) -> bool) -> Vec<HotKey> {
        let mut freed = 0;
        self.entries
            .iter()
            .rev()
            .filter(|(_, entry)| entry.lsn != PENDING_LSN && may_go(entry))
            .take_while(|(key, entry)| {
                let more = freed < bytes;
                freed += HotEntry::charge(key, entry);
                more
            })
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Every dirty entry's key, for a checkpoint flush.
    pub fn dirty_keys(&self) -> Vec<HotKey> {
        self.entries
            .iter()
            .filter(|(_, entry)| entry.dirty)
            .map(|(key, _)| key.clone())
            .collect()
    }

    pub fn used_bytes(&self) -> usize {
        self.used_bytes
    }

    /// Remembers that `key` was removed while its cold copy still exists.
    pub fn add_tombstone(&mut self, key: HotKey, tombstone: Tombstone) {
        if tombstone.lsn == PENDING_LSN {
            self.pending.push(key.clone());
        }
        let charge = key.len() + TOMBSTONE_OVERHEAD_BYTES;
        if self.tombstones.insert(key, tombstone).is_none() {
            self.used_bytes += charge;
        }
    }

    pub fn has_tombstone(&self, key: &[u8]) -> bool {
        !self.tombstones.is_empty() && self.tombstones.contains_key(key)
    }

    pub fn has_tombstones(&self) -> bool {
        !self.tombstones.is_empty()
    }

    /// Removes `key`'s tombstone (a new value now owns the cold copy).
    pub fn take_tombstone(&mut self, key: &[u8]) -> Option<Tombstone> {
        if self.tombstones.is_empty() {
            return None;
        }
        let (key, tombstone) = self.tombstones.remove_entry(key)?;
        self.used_bytes -= key.len() + TOMBSTONE_OVERHEAD_BYTES;
        Some(tombstone)
    }

    /// Removes and returns the tombstones whose removal is durable (LSN <= `durable`).
    pub fn take_due_tombstones(&mut self, durable: u64) -> Vec<(HotKey, Tombstone)> {
        let due: Vec<HotKey> = self
            .tombstones
            .iter()
            .filter(|(_, tombstone)| tombstone.lsn <= durable)
            .map(|(key, _)| key.clone())
            .collect();
        due.into_iter()
            .filter_map(|key| Some((key.clone(), self.take_tombstone(&key)?)))
            .collect()
    }

    /// The highest LSN among tombstones whose transaction has ended.
    pub fn max_tombstone_lsn(&self) -> u64 {
        self.tombstones
            .values()
            .map(|tombstone| tombstone.lsn)
            .filter(|lsn| *lsn != PENDING_LSN)
            .max()
            .unwrap_or(0)
    }

    /// Tombstoned keys of `db` in slots `from_slot..to_slot` (SCAN must not list their cold
    /// copies).
    pub fn tombstones_in_slots(&self, db: u16, from_slot: u32, to_slot: u32) -> Vec<HotKey> {
        let base = u32::from(db) << 16;
        let (from, to) = (base + from_slot.min(1 << 16), base + to_slot.min(1 << 16));
        self.tombstones
            .keys()
            .filter(|key| (from..to).contains(&slot_position(key)))
            .cloned()
            .collect()
    }

    /// Forgets the tombstones of databases `from_db..to_db` (a flush deletes their cold
    /// copies wholesale).
    pub fn drop_tombstones_in_databases(&mut self, from_db: u16, to_db: u16) {
        let (from, to) = (u32::from(from_db) << 16, u32::from(to_db) << 16);
        let doomed: Vec<HotKey> = self
            .tombstones
            .keys()
            .filter(|key| (from..to).contains(&slot_position(key)))
            .cloned()
            .collect();
        for key in doomed {
            self.take_tombstone(&key);
        }
    }

    /// Notes that the running transaction changed `key`'s entry (its LSN is pending).
    pub fn note_pending(&mut self, key: HotKey) {
        self.pending.push(key);
    }

    /// The running transaction appended its record as `lsn`: stamps every entry and
    /// tombstone it changed in this shard.
    pub fn stamp_pending(&mut self, lsn: u64) {
        for key in std::mem::take(&mut self.pending) {
            if let Some(entry) = self.entries.peek_mut(&key[..]) {
                if entry.lsn == PENDING_LSN {
                    entry.lsn = lsn;
                }
            }
            if let Some(tombstone) = self.tombstones.get_mut(&key[..]) {
                if tombstone.lsn == PENDING_LSN {
                    tombstone.lsn = lsn;
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::types::string::StoredValue;
    use bytes::Bytes;

    /// An encoded key `[db][slot][name]` with a chosen slot.
    fn key(db: u16, slot: u16, name: &str) -> HotKey {
        let mut out = db.to_be_bytes().to_vec();
        out.extend_from_slice(&slot.to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        HotKey::from(out)
    }

    fn entry(value: &'static [u8], expire_at: ExpireAt) -> HotEntry {
        HotEntry {
            value: Value::String(StoredValue::Raw(Bytes::from_static(value))),
            expire_at,
            dirty: true,
            cold: ColdCopy::Absent,
            access: AccessStamp::new(0),
            cold_access: AccessStamp::unknown(),
            lsn: 0,
        }
    }

    #[test]
    fn accounting_and_indexes_follow_every_change() {
        let mut shard = HotShard::default();
        let (a, b) = (key(0, 7, "a"), key(0, 9, "b"));
        shard.insert(b.clone(), entry(b"12345", 0));
        shard.insert(a.clone(), entry(b"1", 50));
        assert_eq!(shard.used_bytes(), 2 * 5 + 5 + 1 + 2 * ENTRY_OVERHEAD_BYTES);
        assert_eq!(
            shard.keys_in_slots(0, 0, 16384, 10),
            vec![a.clone(), b.clone()]
        );
        assert_eq!(shard.keys_in_slots(0, 8, 16384, 10), vec![b.clone()]);
        assert_eq!(shard.keys_in_slots(0, 0, 16384, 1), vec![a.clone()]);
        assert!(shard.keys_in_slots(1, 0, 16384, 10).is_empty());
        assert_eq!(shard.keys_in_databases(0, 1).len(), 2);
        assert_eq!(shard.expired_keys(49, 10), Vec::<HotKey>::new());
        assert_eq!(shard.expired_keys(50, 10), vec![a.clone()]);

        // Replacing in place drops the old deadline and charge and keeps one index entry.
        shard.insert(a.clone(), entry(b"xyz", 0));
        assert_eq!(shard.expired_keys(u64::MAX, 10), Vec::<HotKey>::new());
        assert_eq!(shard.used_bytes(), 2 * 5 + 5 + 3 + 2 * ENTRY_OVERHEAD_BYTES);
        assert_eq!(shard.keys_in_slots(0, 0, 16384, 10).len(), 2);
        shard.insert(a.clone(), entry(b"xyz", 70));
        assert_eq!(shard.expired_keys(u64::MAX, 10), vec![a.clone()]);

        // "b" is least recently used now.
        let (popped, _) = shard.pop_lru().unwrap();
        assert_eq!(popped, b);
        shard.remove(&a);
        assert_eq!(shard.used_bytes(), 0);
        assert!(shard.is_empty());
        assert!(shard.keys_in_slots(0, 0, 16384, 10).is_empty());
        assert!(shard.expired_keys(u64::MAX, 10).is_empty());
    }

    #[test]
    fn get_refreshes_recency_but_peek_does_not() {
        let mut shard = HotShard::default();
        let (old, new) = (key(0, 1, "old"), key(0, 1, "new"));
        shard.insert(old.clone(), entry(b"1", 0));
        shard.insert(new.clone(), entry(b"2", 0));
        shard.peek(&old);
        assert_eq!(shard.pop_lru().unwrap().0, old);
        shard.insert(old.clone(), entry(b"1", 0));
        shard.get(
            &new,
            Touch {
                now_s: 0,
                lfu: LfuParams::default(),
            },
        );
        assert_eq!(shard.pop_lru().unwrap().0, old);
        // An overwrite counts as a use too.
        shard.insert(old.clone(), entry(b"1", 0));
        shard.insert(new.clone(), entry(b"3", 0));
        assert_eq!(shard.pop_lru().unwrap().0, old);
    }
}
