//! Bytes kept inside the map entry when short: up to 22 bytes inline, longer ones in a heap
//! block of their own. A map of them costs 24 bytes per entry either way, and a short
//! element costs no allocation and no extra cache miss to compare (Valkey keeps short keys
//! in its table entries for the same reason). It hashes, compares and borrows as its bytes.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

use super::elements::ALLOCATION_ROUNDING_BYTES;

/// The longest bytes kept inline (the enum stays 24 bytes: a length byte, 22 bytes and the
/// variant's tag).
const INLINE: usize = 22;

#[derive(Clone)]
pub(super) enum SmallBytes {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl SmallBytes {
    /// The concatenation of `parts`.
    pub(super) fn new(parts: &[&[u8]]) -> Self {
        let total: usize = parts.iter().map(|part| part.len()).sum();
        if total <= INLINE {
            let mut bytes = [0; INLINE];
            let mut at = 0;
            for part in parts {
                bytes[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            return SmallBytes::Inline {
                len: total as u8,
                bytes,
            };
        }
        let mut bytes = Vec::with_capacity(total);
        for part in parts {
            bytes.extend_from_slice(part);
        }
        SmallBytes::Heap(bytes.into_boxed_slice())
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        match self {
            SmallBytes::Inline { len, bytes } => &bytes[..usize::from(*len)],
            SmallBytes::Heap(bytes) => bytes,
        }
    }

    /// Bytes of memory held outside the entry (with the allocator's rounding): 0 inline.
    pub(super) fn heap_bytes(&self) -> usize {
        match self {
            SmallBytes::Inline { .. } => 0,
            SmallBytes::Heap(bytes) => bytes.len() + ALLOCATION_ROUNDING_BYTES,
        }
    }
}

impl Hash for SmallBytes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Exactly as `[u8]` hashes, so a lookup by `&[u8]` finds it.
        self.as_slice().hash(state);
    }
}

impl PartialEq for SmallBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SmallBytes {}

impl Borrow<[u8]> for SmallBytes {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::fmt::Debug for SmallBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_bytes_stay_inline_in_24_bytes() {
        assert_eq!(std::mem::size_of::<SmallBytes>(), 24);
        let short = SmallBytes::new(&[b"m:", b"000000000123"]);
        assert!(matches!(short, SmallBytes::Inline { .. }));
        assert_eq!(
            (short.as_slice(), short.heap_bytes()),
            (&b"m:000000000123"[..], 0)
        );
        let long = SmallBytes::new(&[&[b'x'; 23]]);
        assert!(matches!(long, SmallBytes::Heap(_)));
        assert_eq!(long.as_slice(), &[b'x'; 23][..]);
        assert_eq!(SmallBytes::new(&[b""]).as_slice(), b"");
        assert_eq!(short, SmallBytes::new(&[b"m:000000000123"]));
    }
}
