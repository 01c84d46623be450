//! A hash field and its value as one `SmallBytes`, `[field_len][field][value]`, so a short
//! field and value live inside the map entry and a longer pair in one heap block, and a
//! lookup that finds the entry finds the field's bytes with it. The field's length is one
//! byte below 255, else 255 and 4 bytes. It hashes and compares as its field alone, and
//! borrows as the field's bytes, so a map of them is looked up by field.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

use super::small::SmallBytes;

/// A field length at or above this is written as this byte and a u32.
const LONG_FIELD: u8 = u8::MAX;

#[derive(Clone)]
pub(super) struct PackedField(SmallBytes);

impl PackedField {
    pub(super) fn new(field: &[u8], value: &[u8]) -> Self {
        match u8::try_from(field.len()) {
            Ok(len) if len < LONG_FIELD => PackedField(SmallBytes::new(&[&[len], field, value])),
            _ => {
                let len = u32::try_from(field.len()).expect("fields are shorter than 4 GiB");
                let mut header = [LONG_FIELD; 5];
                header[1..].copy_from_slice(&len.to_le_bytes());
                PackedField(SmallBytes::new(&[&header, field, value]))
            }
        }
    }

    /// Where the field starts and how long it is.
    fn field_span(&self) -> (usize, usize) {
        let bytes = self.0.as_slice();
        match bytes[0] {
            LONG_FIELD => {
                let len = u32::from_le_bytes(bytes[1..5].try_into().expect("4 bytes"));
                (5, len as usize)
            }
            len => (1, usize::from(len)),
        }
    }

    pub(super) fn field(&self) -> &[u8] {
        let (start, len) = self.field_span();
        &self.0.as_slice()[start..start + len]
    }

    pub(super) fn value(&self) -> &[u8] {
        let (start, len) = self.field_span();
        &self.0.as_slice()[start + len..]
    }

    /// Bytes held outside the map entry (0 when the pair fits inside it).
    pub(super) fn heap_bytes(&self) -> usize {
        self.0.heap_bytes()
    }
}

impl Hash for PackedField {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Exactly as `[u8]` hashes, so a lookup by `&[u8]` finds it.
        self.field().hash(state);
    }
}

impl PartialEq for PackedField {
    fn eq(&self, other: &Self) -> bool {
        self.field() == other.field()
    }
}

impl Eq for PackedField {}

impl Borrow<[u8]> for PackedField {
    fn borrow(&self) -> &[u8] {
        self.field()
    }
}

impl std::fmt::Debug for PackedField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?}={:?}",
            String::from_utf8_lossy(self.field()),
            String::from_utf8_lossy(self.value())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn parts_round_trip_and_hash_as_the_field() {
        let packed = PackedField::new(b"field", b"value!");
        assert_eq!(
            (packed.field(), packed.value()),
            (&b"field"[..], &b"value!"[..])
        );
        assert_eq!(packed.heap_bytes(), 0, "a short pair lives in the entry");
        let empty = PackedField::new(b"", b"");
        assert_eq!((empty.field(), empty.value()), (&b""[..], &b""[..]));
        let long_field = vec![b'f'; 300];
        let long = PackedField::new(&long_field, b"v");
        assert_eq!((long.field(), long.value()), (&long_field[..], &b"v"[..]));
        assert!(long.heap_bytes() > 300);
        let state = foldhash::fast::FixedState::with_seed(7);
        assert_eq!(state.hash_one(&packed), state.hash_one(&b"field"[..]));
        assert_eq!(packed, PackedField::new(b"field", b"other"));
    }
}
