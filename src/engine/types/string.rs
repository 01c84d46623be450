//! Strings: the value type every SET writes. A string is held raw, or zstd-compressed when
//! that saves at least a quarter of its size (`storage.compress_min_bytes`); either way the
//! engine charges the bytes actually held, and the user always gets the raw bytes back.

use bytes::Bytes;

use crate::engine::entry::{CorruptValue, TYPE_FLAGS_MASK};

/// The header flag of a compressed string (within the type's own flag bits).
pub(crate) const FLAG_ZSTD: u8 = 0b0000_0001 & TYPE_FLAGS_MASK;

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

    /// Length of `write_payload`'s output.
    pub(super) fn encoded_payload_len(&self) -> usize {
        match self {
            StoredValue::Raw(bytes) => bytes.len(),
            StoredValue::Zstd { compressed, .. } => 4 + compressed.len(),
        }
    }

    /// Appends the payload of the cold encoding; returns the header flags (compressed or
    /// not).
    pub(super) fn write_payload(&self, out: &mut Vec<u8>) -> u8 {
        match self {
            StoredValue::Raw(bytes) => {
                out.extend_from_slice(bytes);
                0
            }
            StoredValue::Zstd {
                compressed,
                raw_len,
            } => {
                // The raw length bounds decompression, so a damaged payload cannot balloon
                // memory.
                out.extend_from_slice(&(*raw_len as u32).to_be_bytes());
                out.extend_from_slice(compressed);
                FLAG_ZSTD
            }
        }
    }

    pub(super) fn decode_payload(flags: u8, payload: &[u8]) -> Result<Self, CorruptValue> {
        if flags & FLAG_ZSTD == 0 {
            return Ok(StoredValue::Raw(Bytes::copy_from_slice(payload)));
        }
        if payload.len() < 4 {
            return Err(CorruptValue("short compressed header"));
        }
        let raw_len = u32::from_be_bytes(payload[..4].try_into().expect("4 bytes")) as usize;
        let compressed = &payload[4..];
        // Check the payload once here so later reads of the in-memory copy cannot fail.
        zstd_decompress(compressed, raw_len)
            .map_err(|_| CorruptValue("zstd payload does not decompress"))?;
        Ok(StoredValue::Zstd {
            compressed: Bytes::copy_from_slice(compressed),
            raw_len,
        })
    }
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
}
