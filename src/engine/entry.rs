//! Entry layout shared by both tiers: the absolute expiry, and the on-disk encoding of a
//! cold value (a header with the value's type and expiry, then the type's own payload; the
//! types themselves are in `types/`).
//!
//! Expiry is always an absolute Unix time in milliseconds (0 = never) so that a value read
//! back from disk, or replayed from a log, means the same thing at any later time.

use super::eviction::access::{self, AccessStamp};
use super::types::{Value, ValueType};

/// Absolute expiry in Unix milliseconds; `NO_EXPIRY` means the key never expires.
pub type ExpireAt = u64;
pub const NO_EXPIRY: ExpireAt = 0;

/// Cold value header: 1 flag byte, then the expiry as 8 big-endian bytes, then (when
/// `FLAG_ACCESS` is set) the entry's access stamp for the eviction policies, then the
/// payload in the value type's own encoding. The flag byte's high nibble is the value type's
/// tag (0 = string, so values written before types existed read as strings); its low bits
/// are the marker and stamp flags below and the type's own flags (a string's "compressed").
const HEADER_LEN: usize = 9;
const TYPE_TAG_SHIFT: u32 = 4;
/// The bits of the flag byte a value type may use for itself.
pub(crate) const TYPE_FLAGS_MASK: u8 = 0b0000_0001;
/// Written by the compaction filter in place of an expired value: the payload's space is
/// reclaimed at once, while the key stays so the engine still counts its removal exactly.
const FLAG_EXPIRED_MARKER: u8 = 0b0000_0010;
/// An access stamp follows the expiry. Values the demoter writes carry one; WAL records and
/// values written before the eviction policies existed do not.
const FLAG_ACCESS: u8 = 0b0000_0100;

/// The value the compaction filter writes over an expired entry.
pub static EXPIRED_MARKER: [u8; 1] = [FLAG_EXPIRED_MARKER];

/// A cold value decoded from disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColdValue {
    Live {
        value: Value,
        expire_at: ExpireAt,
        /// The entry's access stamp as of its last write to the cold tier, if it has one.
        access: Option<AccessStamp>,
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

pub fn encode_cold_value(value: &Value, expire_at: ExpireAt) -> Vec<u8> {
    let mut out = Vec::with_capacity(cold_value_len(value));
    write_cold_value(&mut out, value, expire_at);
    out
}

/// `encode_cold_value` with the entry's access stamp, as the demoter writes values down.
pub fn encode_stamped_cold_value(
    value: &Value,
    expire_at: ExpireAt,
    stamp: AccessStamp,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(cold_value_len(value) + access::ENCODED_LEN);
    write_header_and_payload(&mut out, value, expire_at, Some(stamp));
    out
}

/// Length of `encode_cold_value`'s output.
pub fn cold_value_len(value: &Value) -> usize {
    HEADER_LEN + value.encoded_payload_len()
}

/// Appends the cold encoding of a value to `out` (the cold tier's values and the WAL's SET
/// records share it, so a replayed value decodes exactly as a cold one).
pub fn write_cold_value(out: &mut Vec<u8>, value: &Value, expire_at: ExpireAt) {
    write_header_and_payload(out, value, expire_at, None);
}

/// The one writer of the layout: flags, expiry, the stamp when given, the payload.
fn write_header_and_payload(
    out: &mut Vec<u8>,
    value: &Value,
    expire_at: ExpireAt,
    stamp: Option<AccessStamp>,
) {
    let flags_at = out.len();
    out.push(0);
    out.extend_from_slice(&expire_at.to_be_bytes());
    let mut flags = 0;
    if let Some(stamp) = stamp {
        stamp.encode(out);
        flags |= FLAG_ACCESS;
    }
    let type_flags = value.write_payload(out);
    debug_assert_eq!(type_flags & !TYPE_FLAGS_MASK, 0);
    flags |= (value.value_type().tag() << TYPE_TAG_SHIFT) | (type_flags & TYPE_FLAGS_MASK);
    out[flags_at] = flags;
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
    let value_type =
        ValueType::from_tag(flags >> TYPE_TAG_SHIFT).ok_or(CorruptValue("unknown value type"))?;
    let (access, payload) = if flags & FLAG_ACCESS != 0 {
        let stamp =
            AccessStamp::decode(&bytes[HEADER_LEN..]).ok_or(CorruptValue("short header"))?;
        (Some(stamp), &bytes[HEADER_LEN + access::ENCODED_LEN..])
    } else {
        (None, &bytes[HEADER_LEN..])
    };
    let value = Value::decode_payload(value_type, flags & TYPE_FLAGS_MASK, payload)?;
    Ok(ColdValue::Live {
        value,
        expire_at,
        access,
    })
}

/// The access stamp of an encoded cold value, read without decoding the payload (the
/// eviction sampler reads it for every key it samples). `None` for a marker or a value
/// without a stamp.
pub fn read_access_stamp(bytes: &[u8]) -> Option<AccessStamp> {
    let flags = *bytes.first()?;
    if flags & (FLAG_EXPIRED_MARKER | FLAG_ACCESS) != FLAG_ACCESS {
        return None;
    }
    AccessStamp::decode(bytes.get(HEADER_LEN..)?)
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
    use crate::engine::types::string::{StoredValue, FLAG_ZSTD};
    use bytes::Bytes;

    #[test]
    fn cold_encoding_round_trips_both_forms() {
        for stored in [
            Value::String(StoredValue::new(Bytes::from_static(b"v"), 0)),
            Value::String(StoredValue::new(Bytes::from(vec![7u8; 5000]), 64)),
        ] {
            let encoded = encode_cold_value(&stored, 1_700_000_000_123);
            assert_eq!(read_expire_at(&encoded), Some(1_700_000_000_123));
            assert_eq!(
                decode_cold_value(&encoded),
                Ok(ColdValue::Live {
                    value: stored.clone(),
                    expire_at: 1_700_000_000_123,
                    access: None,
                })
            );
            assert_eq!(read_access_stamp(&encoded), None);
            let stamp = AccessStamp {
                last_access_s: 1_700_000_000,
                lfu: 9,
            };
            let stamped = encode_stamped_cold_value(&stored, 77, stamp);
            assert_eq!(read_expire_at(&stamped), Some(77));
            assert_eq!(read_access_stamp(&stamped), Some(stamp));
            assert_eq!(
                decode_cold_value(&stamped),
                Ok(ColdValue::Live {
                    value: stored.clone(),
                    expire_at: 77,
                    access: Some(stamp),
                })
            );
        }
        assert_eq!(read_access_stamp(&EXPIRED_MARKER), None);
        assert_eq!(
            decode_cold_value(&EXPIRED_MARKER),
            Ok(ColdValue::ExpiredMarker)
        );
        assert!(decode_cold_value(&[]).is_err());
        assert!(decode_cold_value(&[0, 1, 2]).is_err());
        assert!(decode_cold_value(&[FLAG_ZSTD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 1]).is_err());
    }

    #[test]
    fn values_written_before_types_existed_read_as_strings() {
        // The layout of a raw string before the type tag: flags 0, expiry, the bytes.
        let mut old = vec![0u8];
        old.extend_from_slice(&42u64.to_be_bytes());
        old.extend_from_slice(b"v1");
        let ColdValue::Live {
            value, expire_at, ..
        } = decode_cold_value(&old).unwrap()
        else {
            panic!("a live value");
        };
        assert_eq!(value.value_type(), ValueType::String);
        assert_eq!(expire_at, 42);
        assert_eq!(encode_cold_value(&value, 42), old);
    }

    #[test]
    fn an_unknown_type_tag_is_corrupt_not_a_string() {
        let mut bytes = vec![0xF0u8];
        bytes.extend_from_slice(&[0; 8]);
        assert_eq!(
            decode_cold_value(&bytes),
            Err(CorruptValue("unknown value type"))
        );
    }

    #[test]
    fn expiry_zero_means_never() {
        assert!(!is_expired(NO_EXPIRY, u64::MAX));
        assert!(is_expired(10, 10));
        assert!(!is_expired(11, 10));
    }
}
