//! Per-field deadlines of a hash (HEXPIRE and friends, as in Redis 7.4 and Valkey 9): an
//! absolute Unix time in milliseconds per field that has one, indexed by field and by
//! time, so the expired ones are found without walking the hash.
//!
//! It owns only the deadlines; `HashValue` keeps them in step with its fields (a field
//! that is set again or removed loses its deadline) and removes the expired fields when
//! the engine purges the hash on access. Deadlines are absolute, so a WAL record or a cold
//! value replayed later means the same thing: expired fields are never logged.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;

/// Bytes one deadline costs beyond its field name's copy: its entries in both indexes (a
/// `Bytes` handle and 8 bytes in each, plus the maps' own slots and nodes).
pub(super) const DEADLINE_OVERHEAD_BYTES: usize = 112;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct FieldDeadlines {
    by_field: HashMap<Bytes, u64, foldhash::fast::RandomState>,
    by_time: BTreeSet<(u64, Bytes)>,
    /// Sum of the field names' lengths (one copy each, shared by both indexes).
    name_bytes: usize,
}

impl FieldDeadlines {
    pub(super) fn len(&self) -> usize {
        self.by_field.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_field.is_empty()
    }

    /// Bytes the deadlines occupy in memory.
    pub(super) fn memory_bytes(&self) -> usize {
        self.name_bytes + self.len() * DEADLINE_OVERHEAD_BYTES
    }

    pub(super) fn get(&self, field: &[u8]) -> Option<u64> {
        self.by_field.get(field).copied()
    }

    /// Sets `field`'s deadline (`field` is this index's own copy of the name, which both
    /// maps share); true if it changed.
    pub(super) fn set(&mut self, field: Bytes, at: u64) -> bool {
        let len = field.len();
        match self.by_field.insert(field.clone(), at) {
            Some(old) if old == at => false,
            Some(old) => {
                self.by_time.remove(&(old, field.clone()));
                self.by_time.insert((at, field));
                true
            }
            None => {
                self.name_bytes += len;
                self.by_time.insert((at, field));
                true
            }
        }
    }

    /// Removes `field`'s deadline; true if it had one.
    pub(super) fn clear(&mut self, field: &[u8]) -> bool {
        match self.by_field.remove_entry(field) {
            Some((field, at)) => {
                self.name_bytes -= field.len();
                self.by_time.remove(&(at, field));
                true
            }
            None => false,
        }
    }

    /// Removes and returns the fields whose deadline is at or before `now_ms`.
    pub(super) fn take_expired(&mut self, now_ms: u64) -> Vec<Bytes> {
        let mut expired = Vec::new();
        while let Some((at, _)) = self.by_time.first() {
            if *at > now_ms {
                break;
            }
            let (_, field) = self.by_time.pop_first().expect("just seen");
            self.by_field.remove(&field);
            self.name_bytes -= field.len();
            expired.push(field);
        }
        expired
    }

    /// The earliest deadline.
    pub(super) fn earliest(&self) -> Option<u64> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Whether some deadline is at or before `now_ms` (cheap: the earliest one).
    pub(super) fn any_expired(&self, now_ms: u64) -> bool {
        self.by_time.first().is_some_and(|(at, _)| *at <= now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_indexes_stay_in_step() {
        let mut deadlines = FieldDeadlines::default();
        assert!(deadlines.set(Bytes::from_static(b"a"), 30));
        assert!(deadlines.set(Bytes::from_static(b"b"), 10));
        assert!(!deadlines.set(Bytes::from_static(b"b"), 10));
        assert!(deadlines.set(Bytes::from_static(b"b"), 20));
        assert_eq!(deadlines.get(b"b"), Some(20));
        assert!(!deadlines.any_expired(19));
        assert!(deadlines.any_expired(20));
        assert_eq!(deadlines.take_expired(25), vec![Bytes::from_static(b"b")]);
        assert!(deadlines.clear(b"a"));
        assert!(!deadlines.clear(b"a"));
        assert_eq!((deadlines.len(), deadlines.by_time.len()), (0, 0));
    }
}
