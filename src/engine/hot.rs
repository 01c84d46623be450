//! One shard of the hot tier: an LRU of entries (crate `lru`), a key-ordered index so the
//! shard can list its keys by slot (SCAN merges it with the cold tier), a deadline index
//! for active expiry, and byte accounting against the shard's share of the budget.
//!
//! A shard never touches disk and never decides policy: the engine, holding the shard's
//! lock, decides what to promote, demote, expire or delete, and calls in here.

use std::collections::BTreeSet;
use std::ops::Bound;

use bytes::Bytes;
use lru::LruCache;

use super::entry::{ExpireAt, StoredValue, NO_EXPIRY};

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
    pub value: StoredValue,
    pub expire_at: ExpireAt,
    /// The cold tier does not hold exactly this value and expiry: eviction must demote it.
    pub dirty: bool,
    pub cold: ColdCopy,
    /// Unix seconds of the last read or write (OBJECT IDLETIME).
    pub last_access_s: u32,
}

impl HotEntry {
    fn charge(key: &[u8], entry: &HotEntry) -> usize {
        key.len() + entry.value.memory_bytes() + ENTRY_OVERHEAD_BYTES
    }
}

pub struct HotShard {
    entries: LruCache<Bytes, HotEntry>,
    key_order: BTreeSet<Bytes>,
    deadlines: BTreeSet<(ExpireAt, Bytes)>,
    used_bytes: usize,
}

impl Default for HotShard {
    fn default() -> Self {
        HotShard {
            entries: LruCache::unbounded(),
            key_order: BTreeSet::new(),
            deadlines: BTreeSet::new(),
            used_bytes: 0,
        }
    }
}

impl HotShard {
    /// Looks up, marks the entry most recently used and notes the access time.
    pub fn get(&mut self, key: &[u8], now_s: u32) -> Option<&HotEntry> {
        let entry = self.entries.get_mut(key)?;
        entry.last_access_s = now_s;
        Some(entry)
    }

    /// Looks up without changing the LRU order.
    pub fn peek(&self, key: &[u8]) -> Option<&HotEntry> {
        self.entries.peek(key)
    }

    /// Inserts or replaces (as most recently used), keeping every index and the byte count
    /// in step. Returns the previous entry.
    pub fn insert(&mut self, key: Bytes, entry: HotEntry) -> Option<HotEntry> {
        let previous = self.remove(&key).map(|(_, old)| old);
        self.used_bytes += HotEntry::charge(&key, &entry);
        if entry.expire_at != NO_EXPIRY {
            self.deadlines.insert((entry.expire_at, key.clone()));
        }
        self.key_order.insert(key.clone());
        self.entries.put(key, entry);
        previous
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<(Bytes, HotEntry)> {
        let (key, entry) = self.entries.pop_entry(key)?;
        self.forget(&key, &entry);
        Some((key, entry))
    }

    /// Removes the least recently used entry.
    pub fn pop_lru(&mut self) -> Option<(Bytes, HotEntry)> {
        let (key, entry) = self.entries.pop_lru()?;
        self.forget(&key, &entry);
        Some((key, entry))
    }

    fn forget(&mut self, key: &Bytes, entry: &HotEntry) {
        self.used_bytes -= HotEntry::charge(key, entry);
        self.key_order.remove(key);
        if entry.expire_at != NO_EXPIRY {
            self.deadlines.remove(&(entry.expire_at, key.clone()));
        }
    }

    /// Marks an entry clean after its value reached the cold tier (checkpoint flush).
    pub fn mark_clean(&mut self, key: &[u8], cold: ColdCopy) {
        if let Some(entry) = self.entries.peek_mut(key) {
            entry.dirty = false;
            entry.cold = cold;
        }
    }

    /// Keys with `from <= key < to` in key order, at most `limit`.
    pub fn keys_in_range(&self, from: &[u8], to: &[u8], limit: usize) -> Vec<Bytes> {
        if from >= to {
            return Vec::new();
        }
        self.key_order
            .range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Up to `limit` keys whose deadline is at or before `now_ms`, earliest first.
    pub fn expired_keys(&self, now_ms: u64, limit: usize) -> Vec<Bytes> {
        self.deadlines
            .iter()
            .take_while(|(deadline, _)| *deadline <= now_ms)
            .take(limit)
            .map(|(_, key)| key.clone())
            .collect()
    }

    /// Every dirty entry's key, for a checkpoint flush.
    pub fn dirty_keys(&self) -> Vec<Bytes> {
        self.entries
            .iter()
            .filter(|(_, entry)| entry.dirty)
            .map(|(key, _)| key.clone())
            .collect()
    }

    pub fn used_bytes(&self) -> usize {
        self.used_bytes
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

    fn entry(value: &'static [u8], expire_at: ExpireAt) -> HotEntry {
        HotEntry {
            value: StoredValue::Raw(Bytes::from_static(value)),
            expire_at,
            dirty: true,
            cold: ColdCopy::Absent,
            last_access_s: 0,
        }
    }

    #[test]
    fn accounting_and_indexes_follow_every_change() {
        let mut shard = HotShard::default();
        shard.insert(Bytes::from_static(b"b"), entry(b"12345", 0));
        shard.insert(Bytes::from_static(b"a"), entry(b"1", 50));
        assert_eq!(shard.used_bytes(), 1 + 5 + 1 + 1 + 2 * ENTRY_OVERHEAD_BYTES);
        assert_eq!(
            shard.keys_in_range(b"a", b"z", 10),
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]
        );
        assert_eq!(shard.expired_keys(49, 10), Vec::<Bytes>::new());
        assert_eq!(shard.expired_keys(50, 10), vec![Bytes::from_static(b"a")]);

        // Replacing drops the old deadline and charge.
        shard.insert(Bytes::from_static(b"a"), entry(b"xyz", 0));
        assert_eq!(shard.expired_keys(u64::MAX, 10), Vec::<Bytes>::new());
        assert_eq!(shard.used_bytes(), 1 + 5 + 1 + 3 + 2 * ENTRY_OVERHEAD_BYTES);

        // "b" is least recently used now.
        let (key, _) = shard.pop_lru().unwrap();
        assert_eq!(key, Bytes::from_static(b"b"));
        shard.remove(b"a");
        assert_eq!(shard.used_bytes(), 0);
        assert!(shard.is_empty());
        assert!(shard.keys_in_range(b"", b"\xff", 10).is_empty());
    }

    #[test]
    fn get_refreshes_recency_but_peek_does_not() {
        let mut shard = HotShard::default();
        shard.insert(Bytes::from_static(b"old"), entry(b"1", 0));
        shard.insert(Bytes::from_static(b"new"), entry(b"2", 0));
        shard.peek(b"old");
        assert_eq!(shard.pop_lru().unwrap().0, Bytes::from_static(b"old"));
        shard.insert(Bytes::from_static(b"old"), entry(b"1", 0));
        shard.get(b"new", 0);
        assert_eq!(shard.pop_lru().unwrap().0, Bytes::from_static(b"old"));
    }
}
