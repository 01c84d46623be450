//! Entry layout shared by both tiers: the value bytes (optionally zstd-compressed), the
//! absolute expiry, and the on-disk encoding of a cold value.
//!
//! Expiry is always an absolute Unix time in milliseconds (0 = never) so that a value read
//! back from disk, or replayed from a log, means the same thing at any later time.

use bytes::Bytes;

/// Absolute expiry in Unix milliseconds; `NO_EXPIRY` means the key never expires.
pub type ExpireAt = u64;
pub const NO_EXPIRY: ExpireAt = 0;

/// A value as held in memory: raw, or compressed when that saved enough.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredValue {
    Raw(Bytes),
    Zstd { compressed: Bytes, raw_len: usize },
}

/// Compression is only kept when it saves at least this share of the raw size (25%).
const MIN_SAVING_NUM: usize = 3;
const MIN_SAVING_DEN: usize = 4;
const ZSTD_LEVEL: i32 = 1;

thread_local! {
    // One zstd context per thread, reused: creating a context per value was 6% of the CPU
    // of a bulk load of 1 KB values (ZSTD_createCCtx in the profile).
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn zstd_compress(data: &[u8]) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with_borrow_mut(|slot| {
        if slot.is_none() {
            *slot = Some(zstd::bulk::Compressor::new(ZSTD_LEVEL)?);
        }
        slot.as_mut().expect("just set").compress(data)
    })
}

fn zstd_decompress(data: &[u8], raw_len: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with_borrow_mut(|slot| {
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        slot.as_mut().expect("just set").decompress(data, raw_len)
    })
}

impl StoredValue {
    /// Stores `value`, compressing it when it is at least `compress_min_bytes` long
    /// (0 disables compression) and zstd shrinks it to 75% or less.
    ///
    /// Raw values are copied into an allocation of their own: a value parsed off the wire
    /// is a slice of the connection's read buffer, and keeping that slice would keep the
    /// whole buffer alive, far beyond what the budget accounts for (I6).
    pub fn new(value: Bytes, compress_min_bytes: usize) -> Self {
        if compress_min_bytes == 0 || value.len() < compress_min_bytes {
            return StoredValue::Raw(Bytes::copy_from_slice(&value));
        }
        match zstd_compress(&value) {
            Ok(compressed) if compressed.len() * MIN_SAVING_DEN <= value.len() * MIN_SAVING_NUM => {
                StoredValue::Zstd {
                    raw_len: value.len(),
                    compressed: Bytes::from(compressed),
                }
            }
            _ => StoredValue::Raw(Bytes::copy_from_slice(&value)),
        }
    }

    /// The user's bytes.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            StoredValue::Raw(bytes) => bytes.clone(),
            StoredValue::Zstd {
                compressed,
                raw_len,
            } => Bytes::from(
                zstd_decompress(compressed, *raw_len)
                    .expect("zstd data written by this process decompresses"),
            ),
        }
    }

    /// Length of the user's value (STRLEN) without decompressing.
    pub fn len(&self) -> usize {
        match self {
            StoredValue::Raw(bytes) => bytes.len(),
            StoredValue::Zstd { raw_len, .. } => *raw_len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes this value occupies in memory.
    pub fn memory_bytes(&self) -> usize {
        match self {
            StoredValue::Raw(bytes) => bytes.len(),
            StoredValue::Zstd { compressed, .. } => compressed.len(),
        }
    }

    pub fn is_compressed(&self) -> bool {
        matches!(self, StoredValue::Zstd { .. })
    }
}

/// Cold value header: 1 flag byte, then the expiry as 8 big-endian bytes, then the payload.
const FLAG_ZSTD: u8 = 0b0000_0001;
/// Written by the compaction filter in place of an expired value: the payload's space is
/// reclaimed at once, while the key stays so the engine still counts its removal exactly.
const FLAG_EXPIRED_MARKER: u8 = 0b0000_0010;
const HEADER_LEN: usize = 9;

/// The value the compaction filter writes over an expired entry.
pub static EXPIRED_MARKER: [u8; 1] = [FLAG_EXPIRED_MARKER];

/// A cold value decoded from disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColdValue {
    Live {
        value: StoredValue,
        expire_at: ExpireAt,
    },
    /// The compaction filter found it expired and dropped the payload.
    ExpiredMarker,
}

/// Why bytes read from the cold tier could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptValue(pub &'static str);

impl std::fmt::Display for CorruptValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "corrupt cold value: {}", self.0)
    }
}

impl std::error::Error for CorruptValue {}

pub fn encode_cold_value(value: &StoredValue, expire_at: ExpireAt) -> Vec<u8> {
    let mut out = Vec::with_capacity(cold_value_len(value));
    write_cold_value(&mut out, value, expire_at);
    out
}

/// Length of `encode_cold_value`'s output.
pub fn cold_value_len(value: &StoredValue) -> usize {
    match value {
        StoredValue::Raw(bytes) => HEADER_LEN + bytes.len(),
        StoredValue::Zstd { compressed, .. } => HEADER_LEN + 4 + compressed.len(),
    }
}

/// Appends the cold encoding of a value to `out` (the cold tier's values and the WAL's SET
/// records share it, so a replayed value decodes exactly as a cold one).
pub fn write_cold_value(out: &mut Vec<u8>, value: &StoredValue, expire_at: ExpireAt) {
    let (flags, payload, raw_len) = match value {
        StoredValue::Raw(bytes) => (0, bytes, None),
        StoredValue::Zstd {
            compressed,
            raw_len,
        } => (FLAG_ZSTD, compressed, Some(*raw_len)),
    };
    out.push(flags);
    out.extend_from_slice(&expire_at.to_be_bytes());
    if let Some(raw_len) = raw_len {
        // The raw length bounds decompression, so a damaged payload cannot balloon memory.
        out.extend_from_slice(&(raw_len as u32).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

pub fn decode_cold_value(bytes: &[u8]) -> Result<ColdValue, CorruptValue> {
    let flags = *bytes.first().ok_or(CorruptValue("empty value"))?;
    if flags & FLAG_EXPIRED_MARKER != 0 {
        return Ok(ColdValue::ExpiredMarker);
    }
    if bytes.len() < HEADER_LEN {
        return Err(CorruptValue("short header"));
    }
    let expire_at = read_expire_at(bytes).ok_or(CorruptValue("short header"))?;
    let payload = &bytes[HEADER_LEN..];
    let value = if flags & FLAG_ZSTD != 0 {
        if payload.len() < 4 {
            return Err(CorruptValue("short compressed header"));
        }
        let raw_len = u32::from_be_bytes(payload[..4].try_into().expect("4 bytes")) as usize;
        let compressed = &payload[4..];
        // Check the payload once here so later reads of the in-memory copy cannot fail.
        zstd_decompress(compressed, raw_len)
            .map_err(|_| CorruptValue("zstd payload does not decompress"))?;
        StoredValue::Zstd {
            compressed: Bytes::copy_from_slice(compressed),
            raw_len,
        }
    } else {
        StoredValue::Raw(Bytes::copy_from_slice(payload))
    };
    Ok(ColdValue::Live { value, expire_at })
}

/// The expiry stored in an encoded cold value, read without copying the payload
/// (the compaction filter calls this for every entry it sees).
pub fn read_expire_at(bytes: &[u8]) -> Option<ExpireAt> {
    let raw: [u8; 8] = bytes.get(1..HEADER_LEN)?.try_into().ok()?;
    Some(u64::from_be_bytes(raw))
}

/// Whether a value with this expiry is dead at `now_ms`.
pub fn is_expired(expire_at: ExpireAt, now_ms: u64) -> bool {
    expire_at != NO_EXPIRY && expire_at <= now_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_stay_raw_and_large_compressible_ones_shrink() {
        let small = StoredValue::new(Bytes::from_static(b"hello"), 64);
        assert_eq!(small, StoredValue::Raw(Bytes::from_static(b"hello")));

        let large = Bytes::from(vec![b'a'; 4096]);
        let stored = StoredValue::new(large.clone(), 64);
        assert!(stored.is_compressed());
        assert!(stored.memory_bytes() < 1024);
        assert_eq!(stored.len(), 4096);
        assert_eq!(stored.to_bytes(), large);
    }

    #[test]
    fn incompressible_values_stay_raw() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let stored = StoredValue::new(Bytes::from(noise), 64);
        assert!(!stored.is_compressed());
    }

    #[test]
    fn cold_encoding_round_trips_both_forms() {
        for stored in [
            StoredValue::new(Bytes::from_static(b"v"), 0),
            StoredValue::new(Bytes::from(vec![7u8; 5000]), 64),
        ] {
            let encoded = encode_cold_value(&stored, 1_700_000_000_123);
            assert_eq!(read_expire_at(&encoded), Some(1_700_000_000_123));
            assert_eq!(
                decode_cold_value(&encoded),
                Ok(ColdValue::Live {
                    value: stored.clone(),
                    expire_at: 1_700_000_000_123
                })
            );
        }
        assert_eq!(
            decode_cold_value(&EXPIRED_MARKER),
            Ok(ColdValue::ExpiredMarker)
        );
        assert!(decode_cold_value(&[]).is_err());
        assert!(decode_cold_value(&[0, 1, 2]).is_err());
        assert!(decode_cold_value(&[FLAG_ZSTD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 1]).is_err());
    }

    #[test]
    fn expiry_zero_means_never() {
        assert!(!is_expired(NO_EXPIRY, u64::MAX));
        assert!(is_expired(10, 10));
        assert!(!is_expired(11, 10));
    }
}
