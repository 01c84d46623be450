//! Sets: unordered members, held whole in the hot tier and stored whole (one cold record,
//! one WAL value) in this first step of issue 17; changes are applied in place and logged
//! one member at a time (`ElementOp`). Any member can be picked by position in O(1), which
//! SPOP and SRANDMEMBER need.
//!
//! It owns the set's representation, its cold encoding (`elements`'s layout, one part per
//! member), its memory charge and the name OBJECT ENCODING gives it. It must never hold a
//! slice of a client's buffer: every member is copied in.

use indexmap::IndexSet;

use super::elements::{self, PartReader, ALLOCATION_ROUNDING_BYTES, SLOT_BYTES};
use crate::engine::entry::CorruptValue;

/// Redis's `set-max-intset-entries`, `set-max-listpack-entries` and
/// `set-max-listpack-value` defaults, for OBJECT ENCODING's answer.
const INTSET_MAX_ENTRIES: usize = 512;
const LISTPACK_MAX_ENTRIES: usize = 128;
const LISTPACK_MAX_VALUE: usize = 64;

type Members = IndexSet<Box<[u8]>, foldhash::fast::RandomState>;

/// The encoding Redis would have chosen for the same history of inserts. Redis never
/// converts back, so neither does this (until the next load from disk, as in Redis).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Encoding {
    #[default]
    Intset,
    Listpack,
    Hashtable,
}

#[derive(Clone, Debug, Default)]
pub struct SetValue {
    members: Members,
    /// Sum of every member's length, kept so the memory charge is O(1).
    data_bytes: usize,
    encoding: Encoding,
}

impl PartialEq for SetValue {
    fn eq(&self, other: &Self) -> bool {
        self.members.len() == other.members.len() && self.members.is_subset(&other.members)
    }
}

impl Eq for SetValue {}

impl SetValue {
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn contains(&self, member: &[u8]) -> bool {
        self.members.contains(member)
    }

    /// Adds `member` with one lookup; true if it is new. (The copy is made first, and
    /// wasted when the member is there already.)
    pub fn insert(&mut self, member: &[u8]) -> bool {
        let integer = self.encoding == Encoding::Intset && is_set_integer(member);
        let added = self.members.insert(Box::from(member));
        if added {
            self.data_bytes += member.len();
            self.note_insert(member.len(), integer);
        }
        added
    }

    /// Removes `member`; true if it was there.
    pub fn remove(&mut self, member: &[u8]) -> bool {
        match self.members.swap_remove_full(member) {
            Some(_) => {
                self.data_bytes -= member.len();
                true
            }
            None => false,
        }
    }

    /// Keeps the members `keep` says yes to (SINTER and SDIFF on a copy of one set).
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8]) -> bool) {
        let mut removed = 0;
        self.members.retain(|member| {
            let kept = keep(member);
            if !kept {
                removed += member.len();
            }
            kept
        });
        self.data_bytes -= removed;
    }

    /// Whether OBJECT ENCODING would name a compact encoding (intset or listpack), which
    /// Redis scans whole.
    pub fn is_compact(&self) -> bool {
        self.encoding != Encoding::Hashtable
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.members.iter().map(|member| &member[..])
    }

    /// The member at `index` (`0..len`), for random picks.
    pub fn at(&self, index: usize) -> Option<&[u8]> {
        self.members.get_index(index).map(|member| &member[..])
    }

    /// OBJECT ENCODING's name, by Redis's default limits.
    pub fn encoding(&self) -> &'static str {
        match self.encoding {
            Encoding::Intset => "intset",
            Encoding::Listpack => "listpack",
            Encoding::Hashtable => "hashtable",
        }
    }

    /// Redis's conversions on insert (`setTypeAdd`), called after `member` was added: an
    /// intset takes integers up to its limit; a listpack takes short members up to its
    /// limit; anything else is a hashtable for good.
    fn note_insert(&mut self, member_len: usize, integer: bool) {
        let len = self.members.len();
        let fits_listpack = len <= LISTPACK_MAX_ENTRIES && member_len <= LISTPACK_MAX_VALUE;
        self.encoding = match self.encoding {
            Encoding::Intset if !integer => match fits_listpack {
                true => Encoding::Listpack,
                false => Encoding::Hashtable,
            },
            Encoding::Intset if len > INTSET_MAX_ENTRIES => Encoding::Hashtable,
            Encoding::Listpack if !fits_listpack => Encoding::Hashtable,
            unchanged => unchanged,
        };
    }

    /// Bytes the set occupies in memory: its data, the allocator's rounding of each
    /// member's block, and the map's allocated slots.
    pub fn memory_bytes(&self) -> usize {
        self.data_bytes
            + self.members.len() * ALLOCATION_ROUNDING_BYTES
            + self.members.capacity() * SLOT_BYTES
    }

    pub(super) fn encoded_payload_len(&self) -> usize {
        4 + self.data_bytes + 4 * self.members.len()
    }

    pub(super) fn write_payload(&self, out: &mut Vec<u8>) -> u8 {
        elements::write_count(out, self.members.len());
        for member in self.iter() {
            elements::write_part(out, member);
        }
        0
    }

    pub(super) fn decode_payload(payload: &[u8]) -> Result<Self, CorruptValue> {
        let (mut reader, count) = PartReader::new(payload, 1)?;
        let mut set = SetValue {
            members: Members::with_capacity_and_hasher(count, Default::default()),
            ..SetValue::default()
        };
        for _ in 0..count {
            if !set.insert(reader.part()?) {
                return Err(CorruptValue("a set member appears twice"));
            }
        }
        reader.finish()?;
        Ok(set)
    }
}

/// Whether Redis would keep `member` in an intset: the canonical decimal form of an i64.
fn is_set_integer(member: &[u8]) -> bool {
    std::str::from_utf8(member)
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .is_some_and(|number| number.to_string().as_bytes() == member)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_and_pick_keep_the_data_size_exact() {
        let mut set = SetValue::default();
        assert!(set.insert(b"a"));
        assert!(set.insert(b"bb"));
        assert!(!set.insert(b"a"));
        assert_eq!(set.data_bytes, 3);
        assert!(set.remove(b"a"));
        assert!(!set.remove(b"a"));
        assert_eq!(set.at(0), Some(&b"bb"[..]));
        assert!(set.remove(b"bb"));
        assert!(set.is_empty());
        assert_eq!(set.data_bytes, 0);
    }

    #[test]
    fn the_payload_round_trips_and_damage_is_reported() {
        let mut set = SetValue::default();
        for i in 0..300 {
            set.insert(format!("member:{i}").as_bytes());
        }
        let mut out = Vec::new();
        set.write_payload(&mut out);
        assert_eq!(out.len(), set.encoded_payload_len());
        assert_eq!(SetValue::decode_payload(&out).unwrap(), set);
        assert!(SetValue::decode_payload(&out[..out.len() - 2]).is_err());
        let mut twice = Vec::new();
        elements::write_count(&mut twice, 2);
        elements::write_part(&mut twice, b"x");
        elements::write_part(&mut twice, b"x");
        assert!(SetValue::decode_payload(&twice).is_err());
    }

    #[test]
    fn encoding_names_follow_redis_conversions() {
        let mut set = SetValue::default();
        for i in 0..INTSET_MAX_ENTRIES {
            set.insert(i.to_string().as_bytes());
        }
        assert_eq!(set.encoding(), "intset");
        set.insert(b"512");
        assert_eq!(set.encoding(), "hashtable");

        let mut small = SetValue::default();
        small.insert(b"1");
        assert_eq!(small.encoding(), "intset");
        small.insert(b"01");
        assert_eq!(
            small.encoding(),
            "listpack",
            "01 is not an integer's canonical form"
        );
        small.insert(&[b'x'; 65]);
        assert_eq!(small.encoding(), "hashtable");
    }
}
