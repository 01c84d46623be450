//! Sets: unordered members (packed like Redis's intset and listpack while small, a map
//! beyond), held whole in the hot tier and stored whole (one cold record,
//! one WAL value) in this first step of issue 17; changes are applied in place and logged
//! one member at a time (`ElementOp`). Any member can be picked by position in O(1), which
//! SPOP and SRANDMEMBER need.
//!
//! It owns the set's representation, its cold encoding (`elements`'s layout, one part per
//! member), its memory charge and the name OBJECT ENCODING gives it. It must never hold a
//! slice of a client's buffer: every member is copied in.

use indexmap::IndexSet;

use super::compact::CompactList;
use super::elements::{self, PartReader, SLOT_BYTES};
use super::small::SmallBytes;
use crate::engine::entry::CorruptValue;

/// Redis's `set-max-intset-entries`, `set-max-listpack-entries` and
/// `set-max-listpack-value` defaults, for OBJECT ENCODING's answer.
const INTSET_MAX_ENTRIES: usize = 512;
const LISTPACK_MAX_ENTRIES: usize = 128;
const LISTPACK_MAX_VALUE: usize = 64;

type Table = IndexSet<SmallBytes, foldhash::fast::RandomState>;

/// The encoding Redis would have chosen for the same history of inserts. Redis never
/// converts back, so neither does this (until the next load from disk, as in Redis).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Encoding {
    #[default]
    Intset,
    Listpack,
    Hashtable,
}

/// Where the members are: packed while Redis would hold an intset or a listpack, a map
/// once it would hold a hashtable (for good, as in Redis).
#[derive(Clone, Debug)]
enum Members {
    Compact(CompactList),
    Table(Table),
}

impl Default for Members {
    fn default() -> Self {
        Members::Compact(CompactList::default())
    }
}

#[derive(Clone, Debug, Default)]
pub struct SetValue {
    members: Members,
    len: usize,
    /// Sum of every member's length, kept so the memory charge is O(1).
    data_bytes: usize,
    /// Heap blocks of the map's members too long to live in their entries.
    heap_bytes: usize,
    encoding: Encoding,
}

impl PartialEq for SetValue {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().all(|member| other.contains(member))
    }
}

impl Eq for SetValue {}

/// A set's members, in its order.
pub struct MembersIter<'a>(MembersWalk<'a>);

enum MembersWalk<'a> {
    Compact(super::compact::Parts<'a>),
    Table(indexmap::set::Iter<'a, SmallBytes>),
}

impl<'a> Iterator for MembersIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        match &mut self.0 {
            MembersWalk::Compact(parts) => parts.next(),
            MembersWalk::Table(members) => members.next().map(SmallBytes::as_slice),
        }
    }
}

impl SetValue {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn contains(&self, member: &[u8]) -> bool {
        match &self.members {
            Members::Compact(list) => list.find(member, 1).is_some(),
            Members::Table(table) => table.contains(member),
        }
    }

    /// Adds `member`; true if it is new. (In a map the copy is made first, for one lookup,
    /// and wasted when the member is there already.)
    pub fn insert(&mut self, member: &[u8]) -> bool {
        if let Members::Table(table) = &mut self.members {
            let member = SmallBytes::new(&[member]);
            let (len, heap) = (member.as_slice().len(), member.heap_bytes());
            let added = table.insert(member);
            if added {
                self.len += 1;
                self.data_bytes += len;
                self.heap_bytes += heap;
            }
            return added;
        }
        if self.contains(member) {
            return false;
        }
        let integer = self.encoding == Encoding::Intset && is_set_integer(member);
        self.len += 1;
        self.data_bytes += member.len();
        self.note_insert(member.len(), integer);
        if self.encoding == Encoding::Hashtable {
            self.convert_to_table();
        }
        match &mut self.members {
            Members::Compact(list) => list.push(member),
            Members::Table(table) => {
                let member = SmallBytes::new(&[member]);
                self.heap_bytes += member.heap_bytes();
                table.insert(member);
            }
        }
        true
    }

    /// Moves the members into a map, for good.
    fn convert_to_table(&mut self) {
        let Members::Compact(list) = &self.members else {
            return;
        };
        let mut table = Table::with_capacity_and_hasher(self.len, Default::default());
        for member in list.iter() {
            let member = SmallBytes::new(&[member]);
            self.heap_bytes += member.heap_bytes();
            table.insert(member);
        }
        self.members = Members::Table(table);
    }

    /// Removes `member`; true if it was there.
    pub fn remove(&mut self, member: &[u8]) -> bool {
        let removed = match &mut self.members {
            Members::Compact(list) => match list.find(member, 1) {
                Some((at, _)) => {
                    list.remove(at, 1);
                    true
                }
                None => false,
            },
            Members::Table(table) => match table.swap_remove_full(member) {
                Some((_, held)) => {
                    self.heap_bytes -= held.heap_bytes();
                    true
                }
                None => false,
            },
        };
        if removed {
            self.len -= 1;
            self.data_bytes -= member.len();
        }
        removed
    }

    /// Keeps the members `keep` says yes to (SINTER and SDIFF on a copy of one set).
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8]) -> bool) {
        let (mut removed_bytes, mut removed, mut removed_heap) = (0, 0, 0);
        let mut judge = |member: &[u8], heap: usize| {
            let kept = keep(member);
            if !kept {
                removed_bytes += member.len();
                removed += 1;
                removed_heap += heap;
            }
            kept
        };
        match &mut self.members {
            Members::Compact(list) => {
                let mut kept = CompactList::default();
                for member in list.iter() {
                    if judge(member, 0) {
                        kept.push(member);
                    }
                }
                *list = kept;
            }
            Members::Table(table) => {
                table.retain(|member| judge(member.as_slice(), member.heap_bytes()))
            }
        }
        self.len -= removed;
        self.data_bytes -= removed_bytes;
        self.heap_bytes -= removed_heap;
    }

    /// Whether it is packed (Redis's intset or listpack, which a scan answers whole).
    pub fn is_compact(&self) -> bool {
        matches!(self.members, Members::Compact(_))
    }

    pub fn iter(&self) -> MembersIter<'_> {
        match &self.members {
            Members::Compact(list) => MembersIter(MembersWalk::Compact(list.iter())),
            Members::Table(table) => MembersIter(MembersWalk::Table(table.iter())),
        }
    }

    /// The member at `index` (`0..len`), for random picks and scans (in a packed set's
    /// size).
    pub fn at(&self, index: usize) -> Option<&[u8]> {
        match &self.members {
            Members::Compact(list) => list.offset_of(index, 1).map(|at| list.part(at)),
            Members::Table(table) => table.get_index(index).map(SmallBytes::as_slice),
        }
    }

    /// OBJECT ENCODING's name, by Redis's default limits.
    pub fn encoding(&self) -> &'static str {
        match self.encoding {
            Encoding::Intset => "intset",
            Encoding::Listpack => "listpack",
            Encoding::Hashtable => "hashtable",
        }
    }

    /// Redis's conversions on insert (`setTypeAdd`), called after `member` was counted: an
    /// intset takes integers up to its limit; a listpack takes short members up to its
    /// limit; anything else is a hashtable for good.
    fn note_insert(&mut self, member_len: usize, integer: bool) {
        let len = self.len;
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

    /// Bytes the set occupies in memory: a packed set's buffer; or a map's allocated slots
    /// and the blocks of members too long for their entries.
    pub fn memory_bytes(&self) -> usize {
        match &self.members {
            Members::Compact(list) => list.memory_bytes(),
            Members::Table(table) => self.heap_bytes + table.capacity() * SLOT_BYTES,
        }
    }

    pub(super) fn encoded_payload_len(&self) -> usize {
        4 + self.data_bytes + 4 * self.len
    }

    pub(super) fn write_payload(&self, out: &mut Vec<u8>) -> u8 {
        elements::write_count(out, self.len);
        for member in self.iter() {
            elements::write_part(out, member);
        }
        0
    }

    pub(super) fn decode_payload(payload: &[u8]) -> Result<Self, CorruptValue> {
        let (mut reader, count) = PartReader::new(payload, 1)?;
        let mut set = SetValue::default();
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

    /// Random inserts, removes and retains across the intset, listpack and map forms agree
    /// with a plain set, and every state round-trips through the codec.
    #[test]
    fn packed_and_map_forms_agree_with_a_model() {
        let mut state: u64 = 23;
        let mut next = |below: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % below
        };
        for round in 0..20 {
            let mut set = SetValue::default();
            let mut model = std::collections::BTreeSet::new();
            for step in 0..600 {
                let member = match next(3) {
                    0 if round % 2 == 0 => format!("m{}", next(200)).into_bytes(),
                    // Some too long to live in a map entry.
                    1 if round % 3 == 0 => format!("{:030}", next(100)).into_bytes(),
                    _ => next(700).to_string().into_bytes(),
                };
                match next(5) {
                    0 => assert_eq!(set.remove(&member), model.remove(&member)),
                    _ => assert_eq!(set.insert(&member), model.insert(member.clone())),
                }
                if step == 300 {
                    set.retain(|member| member.len() != 2);
                    model.retain(|member| member.len() != 2);
                }
                assert_eq!(set.len(), model.len());
            }
            assert_eq!(set.data_bytes, model.iter().map(Vec::len).sum::<usize>());
            let heap: usize = set
                .iter()
                .map(|member| SmallBytes::new(&[member]).heap_bytes())
                .sum();
            assert_eq!(set.heap_bytes, if set.is_compact() { 0 } else { heap });
            assert!(model.iter().all(|member| set.contains(member)));
            let listed: std::collections::BTreeSet<Vec<u8>> =
                set.iter().map(<[u8]>::to_vec).collect();
            assert_eq!(listed, model);
            let mut out = Vec::new();
            set.write_payload(&mut out);
            assert_eq!(SetValue::decode_payload(&out).unwrap(), set);
        }
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
