//! The filter's storage: fixed-size tables of 4-slot buckets of fingerprints, and the
//! growing list of them (`State`) that a scalable cuckoo filter keeps.
//!
//! Everything here keeps the one promise of the filter (see `super`): an insert that cannot
//! place a fingerprint leaves the table exactly as it was and hands the fingerprint back, so
//! the caller can put it in a larger table; it never drops one.

use super::InsertOutcome;

pub(super) const SLOTS_PER_BUCKET: usize = 4;
/// Long enough to reach ~95% load with 4-slot buckets, short enough that a
/// failing insert stays cheap.
const MAX_KICKS: usize = 500;

/// Xorshift64: tiny, deterministic, and good enough to break eviction cycles.
#[derive(Debug, Clone)]
pub(super) struct XorShift64(pub(super) u64);

impl XorShift64 {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// A fingerprint slot: `u16` or `u32`, little-endian when serialized.
pub(super) trait Slot: Copy + Eq + Default + 'static {
    const BYTES: usize;
    /// `fp` fits (the filter masks it to its bits, which chose this slot type).
    fn from_fingerprint(fp: u32) -> Self;
    fn value(self) -> u32;
    fn put_le(self, out: &mut Vec<u8>);
    /// `raw` is exactly `BYTES` long.
    fn get_le(raw: &[u8]) -> Self;
}

impl Slot for u16 {
    const BYTES: usize = 2;
    fn from_fingerprint(fp: u32) -> Self {
        fp as u16
    }
    fn value(self) -> u32 {
        u32::from(self)
    }
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn get_le(raw: &[u8]) -> Self {
        u16::from_le_bytes([raw[0], raw[1]])
    }
}

impl Slot for u32 {
    const BYTES: usize = 4;
    fn from_fingerprint(fp: u32) -> Self {
        fp
    }
    fn value(self) -> u32 {
        self
    }
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn get_le(raw: &[u8]) -> Self {
        u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]])
    }
}

/// Spreads a fingerprint over all index bits, so the alternate bucket is far from
/// the first one even when the table has more buckets than fingerprint values.
fn mix(fp: impl Slot) -> u64 {
    let mut h = u64::from(fp.value()).wrapping_add(0x9E37_79B9_7F4A_7C15);
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

#[derive(Clone)]
pub(super) struct Table<S> {
    pub(super) slots: Box<[S]>,
    bucket_mask: usize,
}

impl<S: Slot> Table<S> {
    /// `buckets` must be a power of two.
    pub(super) fn with_buckets(buckets: usize) -> Self {
        Self {
            slots: vec![S::default(); buckets * SLOTS_PER_BUCKET].into_boxed_slice(),
            bucket_mask: buckets - 1,
        }
    }

    pub(super) fn buckets(&self) -> usize {
        self.bucket_mask + 1
    }

    pub(super) fn bytes(&self) -> usize {
        self.slots.len() * S::BYTES
    }

    /// Both candidate buckets. Because table sizes are powers of two and the
    /// index is the low bits of the same hash, a key's pair in a smaller table is
    /// its pair in a larger table reduced modulo the smaller size; `remove`
    /// relies on that.
    fn index_pair(&self, key_hash: u64, fp: S) -> (usize, usize) {
        let i1 = key_hash as usize & self.bucket_mask;
        (i1, self.alt_index(i1, fp))
    }

    /// Involution: relocation can find a fingerprint's other bucket without its key.
    fn alt_index(&self, bucket: usize, fp: S) -> usize {
        (bucket ^ mix(fp) as usize) & self.bucket_mask
    }

    fn bucket(&self, bucket: usize) -> &[S] {
        let start = bucket * SLOTS_PER_BUCKET;
        &self.slots[start..start + SLOTS_PER_BUCKET]
    }

    fn bucket_mut(&mut self, bucket: usize) -> &mut [S] {
        let start = bucket * SLOTS_PER_BUCKET;
        &mut self.slots[start..start + SLOTS_PER_BUCKET]
    }

    fn contains(&self, (b1, b2): (usize, usize), fp: S) -> bool {
        self.bucket(b1).contains(&fp) || self.bucket(b2).contains(&fp)
    }

    fn try_put(&mut self, bucket: usize, fp: S) -> bool {
        match self
            .bucket_mut(bucket)
            .iter_mut()
            .find(|s| **s == S::default())
        {
            Some(slot) => {
                *slot = fp;
                true
            }
            None => false,
        }
    }

    fn take(&mut self, bucket: usize, fp: S) -> bool {
        match self.bucket_mut(bucket).iter_mut().find(|s| **s == fp) {
            Some(slot) => {
                *slot = S::default();
                true
            }
            None => false,
        }
    }

    /// Places `fp` by evicting random victims. On failure the whole chain is
    /// undone, so the table holds exactly what it held before and `fp` is still
    /// the caller's: a victim cannot be moved to a larger table because its
    /// full hash is unknown, whereas `fp`'s is.
    fn kick_in(&mut self, rng: &mut XorShift64, (b1, b2): (usize, usize), fp: S) -> bool {
        let mut path = [0usize; MAX_KICKS];
        let mut homeless = fp;
        let mut bucket = if rng.next() >> 63 == 0 { b1 } else { b2 };
        for step in path.iter_mut() {
            let pos = bucket * SLOTS_PER_BUCKET + (rng.next() >> 62) as usize;
            std::mem::swap(&mut homeless, &mut self.slots[pos]);
            *step = pos;
            bucket = self.alt_index(bucket, homeless);
            if self.try_put(bucket, homeless) {
                return true;
            }
        }
        for &pos in path.iter().rev() {
            std::mem::swap(&mut homeless, &mut self.slots[pos]);
        }
        false
    }
}

#[derive(Clone)]
pub(super) enum State<S> {
    /// `older` is oldest first; `newest` is the largest table and takes evictions.
    Active {
        older: Vec<Table<S>>,
        newest: Table<S>,
    },
    /// The memory cap was hit: no fingerprints kept, everything may be present.
    Bypassed,
}

impl<S: Slot> State<S> {
    /// Largest first: the order `remove` needs.
    pub(super) fn tables_newest_first(&self) -> impl Iterator<Item = &Table<S>> {
        let (newest, older) = match self {
            State::Active { older, newest } => (Some(newest), older.as_slice()),
            State::Bypassed => (None, &[][..]),
        };
        newest.into_iter().chain(older.iter().rev())
    }

    /// One empty table of `buckets`, or bypass if there is none or it passes `max_bytes`.
    pub(super) fn empty(buckets: Option<usize>, max_bytes: usize) -> Self {
        match buckets {
            Some(buckets) if table_bytes::<S>(buckets).is_some_and(|b| b <= max_bytes) => {
                State::Active {
                    older: Vec::new(),
                    newest: Table::with_buckets(buckets),
                }
            }
            _ => State::Bypassed,
        }
    }

    /// See [`CuckooFilter::insert`]; `None` = the filter must switch to bypass.
    pub(super) fn insert(
        &mut self,
        rng: &mut XorShift64,
        max_bytes: usize,
        key_hash: u64,
        fp: S,
    ) -> Option<InsertOutcome> {
        let State::Active { older, newest } = self else {
            return None;
        };
        // Removes free slots in older tables too; reusing them delays growth.
        for table in std::iter::once(&mut *newest).chain(older.iter_mut().rev()) {
            let (b1, b2) = table.index_pair(key_hash, fp);
            if table.try_put(b1, fp) || table.try_put(b2, fp) {
                return Some(InsertOutcome::Inserted);
            }
        }
        let pair = newest.index_pair(key_hash, fp);
        if newest.kick_in(rng, pair, fp) {
            return Some(InsertOutcome::Inserted);
        }
        let current_bytes: usize = older.iter().map(Table::bytes).sum::<usize>() + newest.bytes();
        let buckets = newest.buckets().checked_mul(2).filter(|&buckets| {
            table_bytes::<S>(buckets)
                .and_then(|b| b.checked_add(current_bytes))
                .is_some_and(|total| total <= max_bytes)
        })?;
        let mut table = Table::with_buckets(buckets);
        let (b1, _) = table.index_pair(key_hash, fp);
        // A fresh table has room in every bucket.
        table.slots[b1 * SLOTS_PER_BUCKET] = fp;
        older.push(std::mem::replace(newest, table));
        Some(InsertOutcome::Grew)
    }

    pub(super) fn may_contain(&self, key_hash: u64, fp: S) -> bool {
        self.tables_newest_first()
            .any(|t| t.contains(t.index_pair(key_hash, fp), fp))
    }

    pub(super) fn remove(&mut self, key_hash: u64, fp: S) -> bool {
        let State::Active { older, newest } = self else {
            return false;
        };
        // Largest table first keeps other keys sound: a copy found here may belong
        // to another key with the same fingerprint, but then both keys share their
        // bucket pair in this table and in every smaller one, so our own copy (which
        // is in this table or a smaller one, or we would have found it first) stands
        // in for the other key. Smallest first would break that.
        for table in std::iter::once(newest).chain(older.iter_mut().rev()) {
            let (b1, b2) = table.index_pair(key_hash, fp);
            if table.take(b1, fp) || table.take(b2, fp) {
                return true;
            }
        }
        false
    }
}

pub(super) fn table_bytes<S: Slot>(buckets: usize) -> Option<usize> {
    buckets.checked_mul(SLOTS_PER_BUCKET)?.checked_mul(S::BYTES)
}
