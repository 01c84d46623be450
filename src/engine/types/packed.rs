//! A hash field and its value in one allocation, `[field_len: u32 LE][field][value]`, so a
//! stored field costs one heap block and its map entry 16 bytes, and a lookup that finds
//! the entry finds the field's bytes in the same block. It hashes and compares as its
//! field alone, and borrows as the field's bytes, so a map of them is looked up by field.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

const LEN_BYTES: usize = 4;

#[derive(Clone)]
pub(super) struct PackedField(Box<[u8]>);

impl PackedField {
    pub(super) fn new(field: &[u8], value: &[u8]) -> Self {
        let len = u32::try_from(field.len()).expect("fields are shorter than 4 GiB");
        let mut bytes = Vec::with_capacity(LEN_BYTES + field.len() + value.len());
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(field);
        bytes.extend_from_slice(value);
        PackedField(bytes.into_boxed_slice())
    }

    fn field_len(&self) -> usize {
        u32::from_le_bytes(self.0[..LEN_BYTES].try_into().expect("4 bytes")) as usize
    }

    pub(super) fn field(&self) -> &[u8] {
        &self.0[LEN_BYTES..LEN_BYTES + self.field_len()]
    }

    pub(super) fn value(&self) -> &[u8] {
        &self.0[LEN_BYTES + self.field_len()..]
    }

    /// Bytes of the allocation beyond the field and value themselves.
    pub(super) const HEADER_BYTES: usize = LEN_BYTES;
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
        let empty = PackedField::new(b"", b"");
        assert_eq!((empty.field(), empty.value()), (&b""[..], &b""[..]));
        let state = foldhash::fast::FixedState::with_seed(7);
        assert_eq!(state.hash_one(&packed), state.hash_one(&b"field"[..]));
        assert_eq!(packed, PackedField::new(b"field", b"other"));
    }
}
