//! Small collections packed back to back, as Redis's listpack packs them: each part is
//! `[len: u8][bytes]` in one buffer, so a hash of a few short fields or a set of a few
//! short members costs its bytes plus one byte per part, not a map entry and a heap block
//! each. Lookups scan the buffer; that is what Redis does below its listpack limits
//! (128 elements of at most 64 bytes), and why the types convert to a map beyond them.
//!
//! It owns only the layout. A hash stores field, value, field, value, ... (`stride` 2), a
//! set its members (`stride` 1); the types decide when to convert.

#[derive(Clone, Debug, Default)]
pub(super) struct CompactList {
    bytes: Vec<u8>,
}

impl CompactList {
    /// The parts, in order.
    pub(super) fn iter(&self) -> Parts<'_> {
        Parts {
            bytes: &self.bytes,
            at: 0,
        }
    }

    /// Appends a part (at most `MAX_PART` bytes).
    pub(super) fn push(&mut self, part: &[u8]) {
        let len = u8::try_from(part.len()).expect("a compact part is at most 255 bytes");
        self.bytes.push(len);
        self.bytes.extend_from_slice(part);
    }

    /// The byte offset and element index of the element whose first part is `key`,
    /// looking at every `stride`-th part.
    pub(super) fn find(&self, key: &[u8], stride: usize) -> Option<(usize, usize)> {
        let mut at = 0;
        let mut index = 0;
        while at < self.bytes.len() {
            let len = usize::from(self.bytes[at]);
            if &self.bytes[at + 1..at + 1 + len] == key {
                return Some((at, index));
            }
            at = self.skip(at, stride);
            index += 1;
        }
        None
    }

    /// The offset after `parts` parts starting at `at`.
    fn skip(&self, mut at: usize, parts: usize) -> usize {
        for _ in 0..parts {
            at += 1 + usize::from(self.bytes[at]);
        }
        at
    }

    /// The part at byte offset `at`.
    pub(super) fn part(&self, at: usize) -> &[u8] {
        let len = usize::from(self.bytes[at]);
        &self.bytes[at + 1..at + 1 + len]
    }

    /// The offset of the part after the one at `at`.
    pub(super) fn next(&self, at: usize) -> usize {
        self.skip(at, 1)
    }

    /// The offset of element `index` (each `stride` parts).
    pub(super) fn offset_of(&self, index: usize, stride: usize) -> Option<usize> {
        let mut at = 0;
        for _ in 0..index {
            if at >= self.bytes.len() {
                return None;
            }
            at = self.skip(at, stride);
        }
        (at < self.bytes.len()).then_some(at)
    }

    /// Removes `parts` parts starting at offset `at`; the ones after keep their order.
    pub(super) fn remove(&mut self, at: usize, parts: usize) {
        let end = self.skip(at, parts);
        self.bytes.drain(at..end);
    }

    /// Replaces the part at offset `at` with `part`.
    pub(super) fn replace(&mut self, at: usize, part: &[u8]) {
        let end = self.next(at);
        let len = u8::try_from(part.len()).expect("a compact part is at most 255 bytes");
        let new = std::iter::once(len).chain(part.iter().copied());
        self.bytes.splice(at..end, new);
    }

    /// Bytes of memory held (the buffer as allocated).
    pub(super) fn memory_bytes(&self) -> usize {
        self.bytes.capacity()
    }
}

pub(super) struct Parts<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Parts<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let len = usize::from(*self.bytes.get(self.at)?);
        let part = &self.bytes[self.at + 1..self.at + 1 + len];
        self.at += 1 + len;
        Some(part)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_found_replaced_and_removed_in_place() {
        let mut list = CompactList::default();
        for part in [&b"f1"[..], b"v1", b"f2", b"", b"f3", b"v3"] {
            list.push(part);
        }
        assert_eq!(list.find(b"f2", 2).map(|(_, index)| index), Some(1));
        assert_eq!(list.find(b"v1", 2), None, "values are not keys");
        let (at, _) = list.find(b"f2", 2).unwrap();
        let value_at = list.next(at);
        assert_eq!(list.part(value_at), b"");
        list.replace(value_at, b"two");
        assert_eq!(
            list.iter().collect::<Vec<_>>(),
            [&b"f1"[..], b"v1", b"f2", b"two", b"f3", b"v3"]
        );
        list.remove(at, 2);
        assert_eq!(
            list.iter().collect::<Vec<_>>(),
            [&b"f1"[..], b"v1", b"f3", b"v3"]
        );
        assert_eq!(
            list.offset_of(1, 2).map(|at| list.part(at)),
            Some(&b"f3"[..])
        );
        assert_eq!(list.offset_of(2, 2), None);
    }
}
