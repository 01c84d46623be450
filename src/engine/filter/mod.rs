//! Cuckoo filter in front of the cold tier.
//!
//! Owns the set of fingerprints of the keys stored in the RocksDB cold tier, so a
//! lookup that misses the hot tier can be answered "definitely absent" without
//! touching disk.
//!
//! It must never answer "absent" for a key hash that was inserted and not since
//! removed: a false "present" costs one disk read, a false "absent" makes stored
//! data invisible. Every path that could drop a fingerprint therefore either keeps
//! it (a failed eviction chain is undone and the fingerprint goes to a new, larger
//! table) or stops answering "absent" altogether (bypass mode, when the memory cap
//! forbids another table).
//!
//! Layout: a scalable cuckoo filter. Each table has a power-of-two number of
//! 4-slot buckets of fingerprints (0 = empty; `u16` slots for up to 16 bits, `u32`
//! slots for 17 to 32) and every new table has twice the buckets of the previous
//! one. Lookups check every table. The tables live in `table`, the saved form in `persist`;
//! this file is the filter's API.

mod persist;
mod table;
#[cfg(test)]
mod tests;

use std::fmt;

use xxhash_rust::xxh3::xxh3_64;

pub use persist::FilterDecodeError;
use table::{Slot, State, Table, XorShift64, SLOTS_PER_BUCKET};

const MIN_FINGERPRINT_BITS: u32 = 8;
const MAX_FINGERPRINT_BITS: u32 = 32;
/// Widest fingerprint kept in 2-byte slots; wider ones take 4 bytes.
const MAX_NARROW_BITS: u32 = 16;

/// Bytes a slot takes for fingerprints of `fingerprint_bits`.
pub fn slot_bytes(fingerprint_bits: u32) -> usize {
    if fingerprint_bits <= MAX_NARROW_BITS {
        <u16 as Slot>::BYTES
    } else {
        <u32 as Slot>::BYTES
    }
}
/// Fixed so that victim choice, and with it the layout, is reproducible.
const RNG_SEED: u64 = 0x2545_F491_4F6C_DD1D;

/// Hash a key the way the filter expects: xxh3_64 of the key bytes.
pub fn hash_key(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// Configuration (the engine fills it from its config).
#[derive(Debug, Clone)]
pub struct FilterConfig {
    /// Number of keys the first table is sized for (rounded up so buckets are a power of two).
    pub initial_capacity: usize,
    /// 8..=32 (values outside are clamped); stored in u16 slots up to 16, u32 above.
    pub fingerprint_bits: u32,
    /// Memory cap for all tables together; growth past it switches to bypass mode.
    pub max_bytes: usize,
}

/// What [`CuckooFilter::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Stored in an existing table.
    Inserted,
    /// Stored, but a larger table had to be added.
    Grew,
    /// The filter is now (or already was) in bypass mode and answers "maybe" for everything.
    Bypassed,
}

/// The tables in the slot width the fingerprint bits call for.
#[derive(Clone)]
enum Tables {
    Narrow(State<u16>),
    Wide(State<u32>),
}

/// Runs `$body` with `$state` bound to the tables' `State`, whichever slot width.
macro_rules! with_state {
    ($tables:expr, $state:ident => $body:expr) => {
        match $tables {
            Tables::Narrow($state) => $body,
            Tables::Wide($state) => $body,
        }
    };
}
// A path to the macro, for `persist`.
use with_state;

/// Scalable cuckoo filter over 64-bit key hashes (see the module docs).
#[derive(Clone)]
pub struct CuckooFilter {
    config: FilterConfig,
    fingerprint_mask: u32,
    tables: Tables,
    len: usize,
    rng: XorShift64,
}

impl fmt::Debug for CuckooFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CuckooFilter")
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .field("tables", &self.table_count())
            .field("memory_bytes", &self.memory_bytes())
            .field("bypassed", &self.is_bypassed())
            .field("config", &self.config)
            .finish()
    }
}

fn initial_buckets(initial_capacity: usize) -> Option<usize> {
    initial_capacity
        .div_ceil(SLOTS_PER_BUCKET)
        .max(1)
        .checked_next_power_of_two()
}

fn fingerprint_mask(bits: u32) -> u32 {
    // bits is 8..=32, so the shift fits in u64 and the result in u32.
    ((1u64 << bits) - 1) as u32
}

impl CuckooFilter {
    /// An empty filter with one table. `fingerprint_bits` is clamped to 8..=32.
    /// If even the first table would exceed `max_bytes`, the filter starts bypassed.
    pub fn new(config: FilterConfig) -> Self {
        let config = FilterConfig {
            fingerprint_bits: config
                .fingerprint_bits
                .clamp(MIN_FINGERPRINT_BITS, MAX_FINGERPRINT_BITS),
            ..config
        };
        let mut filter = Self {
            fingerprint_mask: fingerprint_mask(config.fingerprint_bits),
            tables: Self::bypassed_tables(config.fingerprint_bits),
            config,
            len: 0,
            rng: XorShift64(RNG_SEED),
        };
        filter.clear();
        filter
    }

    fn bypassed_tables(fingerprint_bits: u32) -> Tables {
        if fingerprint_bits <= MAX_NARROW_BITS {
            Tables::Narrow(State::Bypassed)
        } else {
            Tables::Wide(State::Bypassed)
        }
    }

    fn fingerprint(&self, key_hash: u64) -> u32 {
        // The low bits pick the bucket; the high bits stay independent of it.
        let fp = (key_hash >> 32) as u32 & self.fingerprint_mask;
        fp.max(1)
    }

    fn table_count(&self) -> usize {
        with_state!(&self.tables, state => state.tables_newest_first().count())
    }

    /// Records `key_hash`. Never loses a fingerprint: if the newest table is full
    /// the fingerprint goes into a new table twice its size, and if that would pass
    /// `max_bytes` the filter switches to bypass mode instead.
    pub fn insert(&mut self, key_hash: u64) -> InsertOutcome {
        let fp = self.fingerprint(key_hash);
        let (rng, max_bytes) = (&mut self.rng, self.config.max_bytes);
        let outcome = with_state!(&mut self.tables, state => {
            state.insert(rng, max_bytes, key_hash, Slot::from_fingerprint(fp))
        });
        match outcome {
            Some(outcome) => {
                self.len += 1;
                outcome
            }
            None => {
                self.tables = Self::bypassed_tables(self.config.fingerprint_bits);
                self.len = 0;
                InsertOutcome::Bypassed
            }
        }
    }

    /// `false` means `key_hash` is definitely not in the set.
    pub fn may_contain(&self, key_hash: u64) -> bool {
        if self.is_bypassed() {
            return true;
        }
        let fp = self.fingerprint(key_hash);
        with_state!(&self.tables, state => state.may_contain(key_hash, Slot::from_fingerprint(fp)))
    }

    /// Removes one copy of `key_hash`'s fingerprint; returns whether one was found.
    /// Only call it for hashes that were inserted: removing a never-inserted hash
    /// can delete another key's fingerprint. In bypass mode nothing is tracked and
    /// this returns `false`.
    pub fn remove(&mut self, key_hash: u64) -> bool {
        let fp = self.fingerprint(key_hash);
        let removed = with_state!(&mut self.tables, state => {
            state.remove(key_hash, Slot::from_fingerprint(fp))
        });
        self.len -= usize::from(removed);
        removed
    }

    /// Back to one empty table of the initial capacity, bypass off (unless even
    /// that table exceeds `max_bytes`).
    pub fn clear(&mut self) {
        self.len = 0;
        self.rng = XorShift64(RNG_SEED);
        let buckets = initial_buckets(self.config.initial_capacity);
        let max_bytes = self.config.max_bytes;
        with_state!(&mut self.tables, state => *state = State::empty(buckets, max_bytes));
    }

    /// Fingerprints stored (0 in bypass mode, where none are kept).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Total slots over all tables.
    pub fn capacity(&self) -> usize {
        with_state!(&self.tables, state => state.tables_newest_first().map(|t| t.slots.len()).sum())
    }

    /// `len / capacity`; 0 when there are no tables.
    pub fn load_factor(&self) -> f64 {
        match self.capacity() {
            0 => 0.0,
            cap => self.len as f64 / cap as f64,
        }
    }

    /// Heap bytes of the tables' slots (what `max_bytes` caps).
    pub fn memory_bytes(&self) -> usize {
        with_state!(&self.tables, state => state.tables_newest_first().map(Table::bytes).sum())
    }

    /// Fingerprint size in bits (the configured one, clamped to 8..=32).
    pub fn fingerprint_bits(&self) -> u32 {
        self.config.fingerprint_bits
    }

    /// The memory cap this filter was made with (0: made bypassed, the filter switched off).
    pub fn max_bytes(&self) -> usize {
        self.config.max_bytes
    }

    /// Moves the memory cap (a restart with another budget), for the growth still to come.
    /// The tables must fit under it already: the caller rebuilds a filter that does not.
    pub fn set_max_bytes(&mut self, max_bytes: usize) {
        debug_assert!(self.memory_bytes() <= max_bytes);
        self.config.max_bytes = max_bytes;
    }

    pub fn is_bypassed(&self) -> bool {
        with_state!(&self.tables, state => matches!(state, State::Bypassed))
    }
}
