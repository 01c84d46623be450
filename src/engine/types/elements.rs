//! What hashes and sets share: the length-prefixed codec of their elements in the cold
//! tier and the WAL, and the memory charge of one element held in RAM.
//!
//! Layout: `count: u32 BE`, then per element its parts (a field and its value, or a
//! member), each `len: u32 BE` then the bytes. A count that the payload cannot hold is
//! reported as corrupt before anything is allocated for it.

use crate::engine::entry::CorruptValue;

/// Bytes one slot of a collection's map costs, charged per allocated slot: the entry (its
/// hash and a `SmallBytes`, 32 bytes) and its index slot (8 bytes and a control byte, at a
/// load of 7/8: about 10). An element too long to live in the entry adds its heap block.
pub(super) const SLOT_BYTES: usize = 42;

/// Bytes the allocator adds to each element's own block, on average: jemalloc rounds a
/// small request up to its size class (16-byte steps up to 128 bytes, 32 to 256).
pub(super) const ALLOCATION_ROUNDING_BYTES: usize = 12;

/// Appends one length-prefixed part.
pub(super) fn write_part(out: &mut Vec<u8>, part: &[u8]) {
    let len = u32::try_from(part.len()).expect("fields and members are shorter than 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(part);
}

pub(super) fn write_count(out: &mut Vec<u8>, count: usize) {
    let count = u32::try_from(count).expect("a collection holds fewer than 4G elements");
    out.extend_from_slice(&count.to_be_bytes());
}

/// Reads a payload written with `write_count` and `write_part`.
pub(super) struct PartReader<'a> {
    rest: &'a [u8],
}

impl<'a> PartReader<'a> {
    /// Starts reading; returns the element count, checked against the payload's length
    /// (each element takes at least `parts_per_element` 4-byte length prefixes).
    pub(super) fn new(
        payload: &'a [u8],
        parts_per_element: usize,
    ) -> Result<(Self, usize), CorruptValue> {
        let mut reader = PartReader { rest: payload };
        let count = u32::from_be_bytes(reader.take(4)?.try_into().expect("4 bytes")) as usize;
        if count.saturating_mul(4 * parts_per_element) > reader.rest.len() {
            return Err(CorruptValue("collection count exceeds its payload"));
        }
        Ok((reader, count))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], CorruptValue> {
        if self.rest.len() < len {
            return Err(CorruptValue("truncated collection payload"));
        }
        let (head, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(head)
    }

    pub(super) fn part(&mut self) -> Result<&'a [u8], CorruptValue> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
        self.take(len)
    }

    /// An 8-byte big-endian number (a field's deadline).
    pub(super) fn number(&mut self) -> Result<u64, CorruptValue> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    /// Checks nothing is left after the last element.
    pub(super) fn finish(self) -> Result<(), CorruptValue> {
        match self.rest.is_empty() {
            true => Ok(()),
            false => Err(CorruptValue("bytes after the last element")),
        }
    }
}
