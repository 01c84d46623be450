//! The filter's saved form: a versioned, self-describing, checksummed encoding that a clean
//! shutdown writes next to its checkpoint and the next start loads instead of rebuilding.
//!
//! It must never load input it cannot vouch for: truncated, corrupt (checksum) or
//! inconsistent data is rejected with a [`FilterDecodeError`], and the caller rebuilds the
//! filter from the cold tier. A filter that loaded must answer exactly as the one saved.

use std::fmt;

use xxhash_rust::xxh3::xxh3_64;

use super::table::{table_bytes, Slot, State, Table, XorShift64};
use super::{
    fingerprint_mask, with_state, CuckooFilter, FilterConfig, Tables, MAX_FINGERPRINT_BITS,
    MAX_NARROW_BITS, MIN_FINGERPRINT_BITS,
};

const MAGIC: [u8; 4] = *b"HCCF";
const FORMAT_VERSION: u8 = 1;
const FLAG_BYPASSED: u8 = 1;
/// magic, version, flags, fingerprint bits, table count, total length,
/// initial capacity, max bytes, rng state.
pub(super) const HEADER_LEN: usize = 4 + 1 + 1 + 1 + 1 + 8 + 8 + 8 + 8;
pub(super) const CHECKSUM_LEN: usize = 8;

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

impl<S: Slot> State<S> {
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

impl CuckooFilter {
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
