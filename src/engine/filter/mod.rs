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
//! one. Lookups check every table.

use std::fmt;

use xxhash_rust::xxh3::xxh3_64;

const SLOTS_PER_BUCKET: usize = 4;
/// Long enough to reach ~95% load with 4-slot buckets, short enough that a
/// failing insert stays cheap.
const MAX_KICKS: usize = 500;
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

const MAGIC: [u8; 4] = *b"HCCF";
const FORMAT_VERSION: u8 = 1;
const FLAG_BYPASSED: u8 = 1;
/// magic, version, flags, fingerprint bits, table count, total length,
/// initial capacity, max bytes, rng state.
const HEADER_LEN: usize = 4 + 1 + 1 + 1 + 1 + 8 + 8 + 8 + 8;
const CHECKSUM_LEN: usize = 8;

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

/// Why [`CuckooFilter::from_bytes`] rejected its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterDecodeError {
    /// Shorter (or longer) than the length the header declares.
    Truncated,
    /// Not a serialized filter.
    BadMagic,
    /// Written by a format version this code does not read.
    UnsupportedVersion(u8),
    /// The payload does not match its checksum.
    ChecksumMismatch,
    /// Checksum matched but the contents break an invariant.
    Invalid(&'static str),
}

impl fmt::Display for FilterDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => write!(f, "cuckoo filter data is truncated"),
            Self::BadMagic => write!(f, "not cuckoo filter data (bad magic)"),
            Self::UnsupportedVersion(v) => {
                write!(f, "unsupported cuckoo filter format version {v}")
            }
            Self::ChecksumMismatch => {
                write!(f, "cuckoo filter data is corrupt (checksum mismatch)")
            }
            Self::Invalid(why) => write!(f, "invalid cuckoo filter data: {why}"),
        }
    }
}

impl std::error::Error for FilterDecodeError {}

/// Xorshift64: tiny, deterministic, and good enough to break eviction cycles.
#[derive(Debug, Clone)]
struct XorShift64(u64);

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
trait Slot: Copy + Eq + Default + 'static {
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
struct Table<S> {
    slots: Box<[S]>,
    bucket_mask: usize,
}

impl<S: Slot> Table<S> {
    /// `buckets` must be a power of two.
    fn with_buckets(buckets: usize) -> Self {
        Self {
            slots: vec![S::default(); buckets * SLOTS_PER_BUCKET].into_boxed_slice(),
            bucket_mask: buckets - 1,
        }
    }

    fn buckets(&self) -> usize {
        self.bucket_mask + 1
    }

    fn bytes(&self) -> usize {
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
enum State<S> {
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
    fn tables_newest_first(&self) -> impl Iterator<Item = &Table<S>> {
        let (newest, older) = match self {
            State::Active { older, newest } => (Some(newest), older.as_slice()),
            State::Bypassed => (None, &[][..]),
        };
        newest.into_iter().chain(older.iter().rev())
    }

    /// One empty table of `buckets`, or bypass if there is none or it passes `max_bytes`.
    fn empty(buckets: Option<usize>, max_bytes: usize) -> Self {
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
    fn insert(
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

    fn may_contain(&self, key_hash: u64, fp: S) -> bool {
        self.tables_newest_first()
            .any(|t| t.contains(t.index_pair(key_hash, fp), fp))
    }

    fn remove(&mut self, key_hash: u64, fp: S) -> bool {
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

    fn write_tables(&self, out: &mut Vec<u8>) {
        let mut tables: Vec<&Table<S>> = self.tables_newest_first().collect();
        tables.reverse();
        for table in tables {
            out.extend_from_slice(&(table.buckets() as u64).to_le_bytes());
            for slot in table.slots.iter() {
                slot.put_le(out);
            }
        }
    }

    /// Reads `table_count` tables; returns them and the fingerprints they hold.
    fn read_tables(
        r: &mut Reader<'_>,
        table_count: u8,
        mask: u32,
        max_bytes: usize,
    ) -> Result<(Self, usize), FilterDecodeError> {
        let mut tables: Vec<Table<S>> = Vec::with_capacity(usize::from(table_count));
        let mut len = 0usize;
        let mut total_bytes = 0usize;
        for _ in 0..table_count {
            let buckets = r.usize()?;
            let previous = tables.last().map_or(0, Table::buckets);
            // Strictly growing powers of two keep the nesting `remove` relies on.
            if !buckets.is_power_of_two() || buckets <= previous {
                return Err(FilterDecodeError::Invalid("bad table size"));
            }
            let size =
                table_bytes::<S>(buckets).ok_or(FilterDecodeError::Invalid("bad table size"))?;
            let raw = r.take(size)?;
            let mut table = Table::with_buckets(buckets);
            for (slot, raw) in table.slots.iter_mut().zip(raw.chunks_exact(S::BYTES)) {
                *slot = S::get_le(raw);
                if slot.value() & !mask != 0 {
                    return Err(FilterDecodeError::Invalid(
                        "fingerprint wider than its bits",
                    ));
                }
                len += usize::from(*slot != S::default());
            }
            total_bytes += size;
            tables.push(table);
        }
        if total_bytes > max_bytes {
            return Err(FilterDecodeError::Invalid("tables exceed max_bytes"));
        }
        let state = match tables.pop() {
            Some(newest) => State::Active {
                older: tables,
                newest,
            },
            None => State::Bypassed,
        };
        Ok((state, len))
    }
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

fn table_bytes<S: Slot>(buckets: usize) -> Option<usize> {
    buckets.checked_mul(SLOTS_PER_BUCKET)?.checked_mul(S::BYTES)
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

    /// Versioned, self-describing encoding, little-endian, checksummed with xxh3_64.
    /// Slots take 2 bytes up to 16 fingerprint bits and 4 above (the header says which).
    pub fn to_bytes(&self) -> Vec<u8> {
        let total_len = HEADER_LEN + CHECKSUM_LEN + 8 * self.table_count() + self.memory_bytes();
        let mut out = Vec::with_capacity(total_len);
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_VERSION);
        out.push(if self.is_bypassed() { FLAG_BYPASSED } else { 0 });
        // Both fit in a byte: bits is 8..=32 and each table doubles, so at most 64 tables.
        out.push(self.config.fingerprint_bits as u8);
        out.push(self.table_count() as u8);
        out.extend_from_slice(&(total_len as u64).to_le_bytes());
        out.extend_from_slice(&(self.config.initial_capacity as u64).to_le_bytes());
        out.extend_from_slice(&(self.config.max_bytes as u64).to_le_bytes());
        out.extend_from_slice(&self.rng.0.to_le_bytes());
        with_state!(&self.tables, state => state.write_tables(&mut out));
        let checksum = xxh3_64(&out);
        out.extend_from_slice(&checksum.to_le_bytes());
        out
    }

    /// Inverse of [`to_bytes`](Self::to_bytes); rejects truncated, corrupt or
    /// inconsistent input.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, FilterDecodeError> {
        let mut r = Reader(bytes);
        if r.take(MAGIC.len())? != MAGIC {
            return Err(FilterDecodeError::BadMagic);
        }
        let version = r.u8()?;
        if version != FORMAT_VERSION {
            return Err(FilterDecodeError::UnsupportedVersion(version));
        }
        let flags = r.u8()?;
        let fingerprint_bits = u32::from(r.u8()?);
        let table_count = r.u8()?;
        let total_len = r.usize()?;
        if bytes.len() != total_len || total_len < HEADER_LEN + CHECKSUM_LEN {
            return Err(FilterDecodeError::Truncated);
        }
        let (payload, stored) = bytes.split_at(total_len - CHECKSUM_LEN);
        let stored = u64::from_le_bytes(
            stored
                .try_into()
                .map_err(|_| FilterDecodeError::Truncated)?,
        );
        if xxh3_64(payload) != stored {
            return Err(FilterDecodeError::ChecksumMismatch);
        }
        let config = FilterConfig {
            initial_capacity: r.usize()?,
            fingerprint_bits,
            max_bytes: r.usize()?,
        };
        let rng = r.u64()?;

        if flags & !FLAG_BYPASSED != 0 {
            return Err(FilterDecodeError::Invalid("unknown flags"));
        }
        if !(MIN_FINGERPRINT_BITS..=MAX_FINGERPRINT_BITS).contains(&fingerprint_bits) {
            return Err(FilterDecodeError::Invalid("fingerprint bits out of range"));
        }
        if rng == 0 {
            return Err(FilterDecodeError::Invalid("zero rng state"));
        }
        let mask = fingerprint_mask(fingerprint_bits);
        let bypassed = flags & FLAG_BYPASSED != 0;
        if bypassed != (table_count == 0) {
            return Err(FilterDecodeError::Invalid(
                "table count disagrees with bypass flag",
            ));
        }

        r.0 = &payload[HEADER_LEN..];
        let (tables, len) = if fingerprint_bits <= MAX_NARROW_BITS {
            let (state, len) = State::read_tables(&mut r, table_count, mask, config.max_bytes)?;
            (Tables::Narrow(state), len)
        } else {
            let (state, len) = State::read_tables(&mut r, table_count, mask, config.max_bytes)?;
            (Tables::Wide(state), len)
        };
        if !r.0.is_empty() {
            return Err(FilterDecodeError::Invalid("trailing bytes"));
        }
        Ok(Self {
            fingerprint_mask: mask,
            config,
            tables,
            len,
            rng: XorShift64(rng),
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FilterDecodeError> {
        if self.0.len() < n {
            return Err(FilterDecodeError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, FilterDecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, FilterDecodeError> {
        let raw = self.take(8)?;
        let mut buf = [0u8; 8];
        buf.copy_from_slice(raw);
        Ok(u64::from_le_bytes(buf))
    }

    fn usize(&mut self) -> Result<usize, FilterDecodeError> {
        usize::try_from(self.u64()?).map_err(|_| FilterDecodeError::Invalid("size exceeds usize"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::HashSet;

    fn config(initial_capacity: usize, fingerprint_bits: u32, max_bytes: usize) -> FilterConfig {
        FilterConfig {
            initial_capacity,
            fingerprint_bits,
            max_bytes,
        }
    }

    fn random_hashes(seed: u64, n: usize) -> Vec<u64> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random()).collect()
    }

    #[test]
    fn no_false_negatives_across_growth() {
        let mut f = CuckooFilter::new(config(1024, 12, usize::MAX));
        let keys = random_hashes(1, 200_000);
        let mut grew = 0;
        for &k in &keys {
            match f.insert(k) {
                InsertOutcome::Inserted => {}
                InsertOutcome::Grew => grew += 1,
                InsertOutcome::Bypassed => panic!("bypassed without a memory cap"),
            }
        }
        assert!(grew > 0, "test must force growth");
        assert_eq!(f.len(), keys.len());
        let missing = keys.iter().filter(|&&k| !f.may_contain(k)).count();
        assert_eq!(missing, 0, "false negatives after {grew} growths");
        println!(
            "200k keys: {grew} growths, load {:.3}, {:.2} bytes/key",
            f.load_factor(),
            f.memory_bytes() as f64 / f.len() as f64
        );
    }

    #[test]
    fn remove_deletes_only_what_it_should() {
        let mut empty = CuckooFilter::new(config(1024, 12, usize::MAX));
        assert!(!empty.remove(42));
        assert!(!empty.remove(0));

        let mut f = CuckooFilter::new(config(4096, 12, usize::MAX));
        let keys = random_hashes(2, 20_000);
        for &k in &keys {
            f.insert(k);
        }
        let (gone, kept) = keys.split_at(keys.len() / 2);
        for &k in gone {
            assert!(f.remove(k), "inserted key not found for removal");
        }
        assert_eq!(f.len(), kept.len());
        assert!(
            kept.iter().all(|&k| f.may_contain(k)),
            "kept key reads absent"
        );
        let still_present = gone.iter().filter(|&&k| f.may_contain(k)).count();
        let rate = still_present as f64 / gone.len() as f64;
        println!("removed keys still reported present: {rate:.4}");
        assert!(rate < 0.02, "removed keys mostly still present: {rate}");
    }

    /// Many fingerprint collisions (8 bits) spread over many tables: removing
    /// one key must never make another, still-inserted key read absent.
    #[test]
    fn remove_with_colliding_fingerprints_stays_sound() {
        let mut f = CuckooFilter::new(config(64, 8, usize::MAX));
        let mut rng = StdRng::seed_from_u64(3);
        let mut live: Vec<u64> = Vec::new();
        for round in 0..20_000 {
            if round % 3 == 2 && !live.is_empty() {
                let victim = live.swap_remove(rng.random_range(0..live.len()));
                assert!(f.remove(victim));
            } else {
                let k: u64 = rng.random();
                f.insert(k);
                live.push(k);
            }
        }
        assert!(f.table_count() >= 4, "test must span several tables");
        assert_eq!(f.len(), live.len());
        let missing = live.iter().filter(|&&k| !f.may_contain(k)).count();
        assert_eq!(missing, 0);
    }

    fn fpr_at_growth_point(bits: u32) -> f64 {
        let mut f = CuckooFilter::new(config(1 << 15, bits, usize::MAX));
        let first_capacity = f.capacity();
        let mut rng = StdRng::seed_from_u64(u64::from(bits));
        let mut inserted = HashSet::new();
        loop {
            let k: u64 = rng.random();
            inserted.insert(k);
            if f.insert(k) == InsertOutcome::Grew {
                break;
            }
        }
        let load = (f.len() - 1) as f64 / first_capacity as f64;
        let bytes_per_key = (first_capacity * slot_bytes(bits)) as f64 / (f.len() - 1) as f64;
        assert!(load >= 0.9, "growth started early, at load {load}");
        let mut probes = 0u32;
        let mut positives = 0u32;
        while probes < 1_000_000 {
            let k: u64 = rng.random();
            if inserted.contains(&k) {
                continue;
            }
            probes += 1;
            positives += u32::from(f.may_contain(k));
        }
        let fpr = f64::from(positives) / f64::from(probes);
        println!(
            "{bits}-bit fingerprints: growth at load {load:.4}, {bytes_per_key:.3} bytes/key, FPR {:.4}%",
            fpr * 100.0
        );
        fpr
    }

    #[test]
    fn false_positive_rate_12_bits() {
        assert!(fpr_at_growth_point(12) <= 0.01);
    }

    #[test]
    fn false_positive_rate_16_bits() {
        assert!(fpr_at_growth_point(16) <= 0.001);
    }

    /// 4-byte slots: about 8 in 4 billion probes match, so a million probes find none
    /// (16 bits would find ~100).
    #[test]
    fn false_positive_rate_32_bits() {
        assert!(fpr_at_growth_point(32) < 1e-5);
    }

    /// The wide slots keep every property the narrow ones have: no false negatives
    /// across growth and removal, and a byte-exact round trip.
    #[test]
    fn wide_fingerprints_grow_remove_and_round_trip() {
        let mut f = CuckooFilter::new(config(256, 32, usize::MAX));
        let keys = random_hashes(9, 5000);
        for &k in &keys {
            f.insert(k);
        }
        for &k in &keys[..1000] {
            assert!(f.remove(k));
        }
        assert!(f.table_count() >= 2, "test must cover several tables");
        assert_eq!(f.memory_bytes(), f.capacity() * 4);
        assert!(keys[1000..].iter().all(|&k| f.may_contain(k)));
        let g = CuckooFilter::from_bytes(&f.to_bytes()).expect("decodes");
        assert_eq!((g.len(), g.capacity()), (f.len(), f.capacity()));
        for &k in keys.iter().chain(&random_hashes(10, 20_000)) {
            assert_eq!(f.may_contain(k), g.may_contain(k));
        }
        assert_eq!(f.to_bytes(), g.to_bytes());
    }

    #[test]
    fn duplicates_are_counted() {
        let mut f = CuckooFilter::new(config(1024, 12, usize::MAX));
        let k = 0xDEAD_BEEF_1234_5678;
        for _ in 0..3 {
            f.insert(k);
        }
        assert_eq!(f.len(), 3);
        for _ in 0..3 {
            assert!(f.may_contain(k));
            assert!(f.remove(k));
        }
        assert!(!f.may_contain(k));
        assert!(!f.remove(k));

        // More copies than two buckets hold: each overflow must grow, not drop.
        let mut outcomes = Vec::new();
        for _ in 0..20 {
            outcomes.push(f.insert(k));
        }
        assert!(outcomes.contains(&InsertOutcome::Grew));
        for _ in 0..20 {
            assert!(f.may_contain(k));
            assert!(f.remove(k));
        }
        assert!(!f.may_contain(k));
        assert!(f.is_empty());
    }

    #[test]
    fn memory_cap_switches_to_bypass() {
        // 16 slots = 32 bytes, then 64, then 128 would pass the 100-byte cap.
        let mut f = CuckooFilter::new(config(16, 12, 100));
        let keys = random_hashes(4, 1000);
        let mut inserted = Vec::new();
        let mut saw_bypass = false;
        for &k in &keys {
            inserted.push(k);
            if f.insert(k) == InsertOutcome::Bypassed {
                saw_bypass = true;
                break;
            }
            assert!(f.memory_bytes() <= 100);
        }
        assert!(saw_bypass, "never bypassed");
        assert!(f.is_bypassed());
        assert_eq!(f.insert(keys[999]), InsertOutcome::Bypassed);
        assert!(inserted.iter().all(|&k| f.may_contain(k)));
        assert!(random_hashes(5, 1000).iter().all(|&k| f.may_contain(k)));
        assert!(!f.remove(inserted[0]));
        assert!(f.may_contain(inserted[0]));
    }

    #[test]
    fn first_table_over_cap_starts_bypassed() {
        let f = CuckooFilter::new(config(1024, 12, 16));
        assert!(f.is_bypassed());
        assert!(f.may_contain(1));
    }

    fn grown_filter() -> (CuckooFilter, Vec<u64>) {
        let mut f = CuckooFilter::new(config(256, 12, usize::MAX));
        let keys = random_hashes(6, 1500);
        for &k in &keys {
            f.insert(k);
        }
        for &k in &keys[..300] {
            f.remove(k);
        }
        assert!(f.table_count() >= 2, "test must cover several tables");
        (f, keys)
    }

    #[test]
    fn serialization_round_trip_preserves_answers() {
        let (mut f, keys) = grown_filter();
        let bytes = f.to_bytes();
        let mut g = CuckooFilter::from_bytes(&bytes).expect("decodes");
        assert_eq!(g.len(), f.len());
        assert_eq!(g.capacity(), f.capacity());
        assert_eq!(g.memory_bytes(), f.memory_bytes());
        assert!(!g.is_bypassed());
        let probes = random_hashes(7, 50_000);
        for &k in keys.iter().chain(&probes) {
            assert_eq!(f.may_contain(k), g.may_contain(k));
        }
        // Same rng state: both continue identically.
        for &k in &random_hashes(8, 3000) {
            assert_eq!(f.insert(k), g.insert(k));
        }
        assert_eq!(f.to_bytes(), g.to_bytes());

        let mut b = CuckooFilter::new(config(16, 12, 40));
        while b.insert(b.len() as u64 * 0x9E37_79B9) != InsertOutcome::Bypassed {}
        let b2 = CuckooFilter::from_bytes(&b.to_bytes()).expect("decodes bypassed");
        assert!(b2.is_bypassed());
        assert!(b2.may_contain(12345));
    }

    #[test]
    fn corrupt_or_truncated_input_is_rejected() {
        let (f, _) = grown_filter();
        let bytes = f.to_bytes();
        let positions = (0..HEADER_LEN + 16).chain((HEADER_LEN + 16..bytes.len()).step_by(97));
        for pos in positions.chain([bytes.len() - 1]) {
            let mut bad = bytes.clone();
            bad[pos] ^= 0x10;
            assert!(
                CuckooFilter::from_bytes(&bad).is_err(),
                "flip at {pos} accepted"
            );
        }
        let cuts = (0..HEADER_LEN + 16).chain((HEADER_LEN + 16..bytes.len()).step_by(101));
        for cut in cuts.chain([bytes.len() - 1]) {
            assert!(
                CuckooFilter::from_bytes(&bytes[..cut]).is_err(),
                "cut at {cut} accepted"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            CuckooFilter::from_bytes(&longer).unwrap_err(),
            FilterDecodeError::Truncated
        );
        let mut wrong_version = bytes.clone();
        wrong_version[4] = 99;
        assert_eq!(
            CuckooFilter::from_bytes(&wrong_version).unwrap_err(),
            FilterDecodeError::UnsupportedVersion(99)
        );
        let mut flipped_slot = bytes;
        let last_slot = flipped_slot.len() - CHECKSUM_LEN - 1;
        flipped_slot[last_slot] ^= 1;
        let err = CuckooFilter::from_bytes(&flipped_slot).unwrap_err();
        assert_eq!(err, FilterDecodeError::ChecksumMismatch);
        assert!(!err.to_string().is_empty());
    }

    #[test]
    fn clear_resets_everything() {
        let (mut f, keys) = grown_filter();
        let initial = CuckooFilter::new(config(256, 12, usize::MAX));
        f.clear();
        assert!(f.is_empty());
        assert_eq!(f.capacity(), initial.capacity());
        assert_eq!(f.to_bytes(), initial.to_bytes());
        assert!(keys.iter().all(|&k| !f.may_contain(k)));

        let mut b = CuckooFilter::new(config(16, 12, 100));
        while b.insert(b.len() as u64 * 0x9E37_79B9) != InsertOutcome::Bypassed {}
        b.clear();
        assert!(!b.is_bypassed());
        assert!(!b.may_contain(0));
        assert_eq!(b.insert(7), InsertOutcome::Inserted);
    }

    #[test]
    fn fingerprint_is_never_zero_and_fits_its_bits() {
        let f = CuckooFilter::new(config(16, 9, usize::MAX));
        assert_eq!(f.fingerprint(0), 1);
        assert_eq!(f.fingerprint(0x0000_0200_FFFF_FFFF), 1);
        assert_eq!(f.fingerprint(u64::MAX), 0x1FF);
        let clamped = CuckooFilter::new(config(16, 40, usize::MAX));
        assert_eq!(clamped.fingerprint(u64::MAX), u32::MAX);
        let wide = CuckooFilter::new(config(16, 24, usize::MAX));
        assert_eq!(wide.fingerprint(u64::MAX), 0xFF_FFFF);
        assert_eq!(wide.fingerprint(0x0100_0000_0000_0000), 1);
    }
}
