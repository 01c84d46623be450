//! Hashes: a map of fields to values, held whole in the hot tier and stored whole (one cold
//! record) in this first step of issue 17; changes are applied in place and logged one
//! field at a time (`ElementOp`). Fields may have their own deadlines (`field_expiry`).
//! Up to Redis's listpack limits a hash is packed in one buffer (`compact`), as Redis packs
//! it; beyond them (or once a field has a deadline) it is a map with each field in one
//! allocation holding the field and its value (`packed`), for good, as in Redis. Insertion
//! order is kept, as Redis's listpack keeps it, and the map picks a field by position in
//! O(1), which HRANDFIELD needs.
//!
//! It owns the hash's representation, its cold encoding (`elements`'s layout, a field then
//! its value per element), its memory charge and the name OBJECT ENCODING gives it. It
//! must never hold a slice of a client's buffer: every field and value is copied in.

use std::collections::HashSet;

use bytes::Bytes;
use indexmap::set::MutableValues;
use indexmap::IndexSet;

use super::compact::CompactList;
use super::elements::{self, PartReader, SLOT_BYTES};
use super::field_expiry::FieldDeadlines;
use super::packed::PackedField;
use super::Applied;
use crate::engine::entry::{CorruptValue, TYPE_FLAGS_MASK};

/// The header flag of a hash whose payload carries a deadline after each field's value.
const FLAG_FIELD_DEADLINES: u8 = 0b0000_0001 & TYPE_FLAGS_MASK;

/// Redis's `hash-max-listpack-entries` and `hash-max-listpack-value` defaults: up to these,
/// OBJECT ENCODING says `listpack`, as Redis would for the same hash.
const LISTPACK_MAX_ENTRIES: usize = 128;
const LISTPACK_MAX_VALUE: usize = 64;

/// Up to this many expired fields are removed one by one; more take one pass over the hash.
const PURGE_ONE_BY_ONE: usize = 16;

type Table = IndexSet<PackedField, foldhash::fast::RandomState>;

/// Where the fields are.
#[derive(Clone, Debug)]
enum Fields {
    /// Field, value, field, value, ... packed: Redis's listpack.
    Compact(CompactList),
    /// A map: Redis's hashtable.
    Table(Table),
}

impl Default for Fields {
    fn default() -> Self {
        Fields::Compact(CompactList::default())
    }
}

#[derive(Clone, Debug, Default)]
pub struct HashValue {
    fields: Fields,
    len: usize,
    /// Sum of every field's and value's length, kept so the memory charge is O(1).
    data_bytes: usize,
    /// Heap blocks of the map's pairs too long to live in their entries.
    heap_bytes: usize,
    /// The deadlines of the fields that have one; None until HEXPIRE sets one (and then the
    /// hash is a map, as Valkey converts it).
    deadlines: Option<Box<FieldDeadlines>>,
}

impl PartialEq for HashValue {
    fn eq(&self, other: &Self) -> bool {
        // Order and representation do not make two hashes different.
        self.len == other.len
            && self.iter().all(|(field, value)| {
                other.get(field) == Some(value) && self.deadline(field) == other.deadline(field)
            })
    }
}

impl Eq for HashValue {}

/// Fields and values in a hash's order.
pub struct FieldsIter<'a>(FieldsWalk<'a>);

enum FieldsWalk<'a> {
    Compact(super::compact::Parts<'a>),
    Table(indexmap::set::Iter<'a, PackedField>),
}

impl<'a> Iterator for FieldsIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            FieldsWalk::Compact(parts) => Some((parts.next()?, parts.next()?)),
            FieldsWalk::Table(held) => held.next().map(|held| (held.field(), held.value())),
        }
    }
}

impl HashValue {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        match &self.fields {
            Fields::Compact(list) => {
                let (at, _) = list.find(field, 2)?;
                Some(list.part(list.next(at)))
            }
            Fields::Table(table) => table.get(field).map(PackedField::value),
        }
    }

    pub fn contains(&self, field: &[u8]) -> bool {
        self.get(field).is_some()
    }

    /// Moves the fields into a map, for good (Redis's listpack to hashtable conversion).
    fn convert_to_table(&mut self) {
        let Fields::Compact(list) = &self.fields else {
            return;
        };
        let mut table = Table::with_capacity_and_hasher(self.len, Default::default());
        let mut parts = list.iter();
        while let (Some(field), Some(value)) = (parts.next(), parts.next()) {
            let pair = PackedField::new(field, value);
            self.heap_bytes += pair.heap_bytes();
            table.insert(pair);
        }
        self.fields = Fields::Table(table);
    }

    /// Whether a hash one field longer, with parts this long, still fits a listpack.
    fn fits_compact(&self, grows: bool, longest_part: usize) -> bool {
        longest_part <= LISTPACK_MAX_VALUE && self.len + usize::from(grows) <= LISTPACK_MAX_ENTRIES
    }

    /// Sets `field` to `value` (one scan of a packed hash, one lookup in a map).
    pub fn put(&mut self, field: &[u8], value: &[u8]) -> Applied {
        let longest_part = field.len().max(value.len());
        if let Fields::Compact(list) = &self.fields {
            let found = list.find(field, 2);
            if !self.fits_compact(found.is_none(), longest_part) {
                self.convert_to_table();
            }
        }
        let changed = match &mut self.fields {
            Fields::Compact(list) => match list.find(field, 2) {
                Some((at, _)) => {
                    let value_at = list.next(at);
                    let held = list.part(value_at);
                    match held == value {
                        true => Applied::Unchanged,
                        false => {
                            self.data_bytes = self.data_bytes - held.len() + value.len();
                            list.replace(value_at, value);
                            Applied::Updated
                        }
                    }
                }
                None => {
                    list.push(field);
                    list.push(value);
                    self.len += 1;
                    self.data_bytes += field.len() + value.len();
                    Applied::Added
                }
            },
            Fields::Table(table) => {
                let pair = PackedField::new(field, value);
                let pair_heap = pair.heap_bytes();
                let (at, added) = table.insert_full(pair);
                match added {
                    true => {
                        self.len += 1;
                        self.data_bytes += field.len() + value.len();
                        self.heap_bytes += pair_heap;
                        Applied::Added
                    }
                    false => {
                        let held = table.get_index_mut2(at).expect("just found");
                        match held.value() == value {
                            true => Applied::Unchanged,
                            false => {
                                self.data_bytes =
                                    self.data_bytes - held.value().len() + value.len();
                                self.heap_bytes = self.heap_bytes - held.heap_bytes() + pair_heap;
                                // Same field, so the same hash: the set stays consistent.
                                *held = PackedField::new(field, value);
                                Applied::Updated
                            }
                        }
                    }
                }
            }
        };
        // A field set again loses its deadline, as in Redis.
        match self.clear_deadline(field) {
            true => Applied::Updated.max_with(changed),
            false => changed,
        }
    }

    /// The field's deadline (Unix ms), if it has one.
    pub fn deadline(&self, field: &[u8]) -> Option<u64> {
        self.deadlines.as_ref()?.get(field)
    }

    /// Sets the deadline of an existing field (0 removes it); `Unchanged` when the field is
    /// absent or already had this deadline.
    pub fn set_deadline(&mut self, field: &[u8], at: u64) -> Applied {
        if !self.contains(field) {
            return Applied::Unchanged;
        }
        let changed = match at {
            0 => self.clear_deadline(field),
            at => {
                self.convert_to_table();
                self.deadlines
                    .get_or_insert_default()
                    .set(Bytes::copy_from_slice(field), at)
            }
        };
        match changed {
            true => Applied::Updated,
            false => Applied::Unchanged,
        }
    }

    fn clear_deadline(&mut self, field: &[u8]) -> bool {
        let Some(deadlines) = self.deadlines.as_mut() else {
            return false;
        };
        let cleared = deadlines.clear(field);
        if deadlines.is_empty() {
            self.deadlines = None;
        }
        cleared
    }

    /// The earliest deadline of any field (what the hot tier indexes the hash by, for the
    /// active expiry of fields).
    pub fn earliest_deadline(&self) -> Option<u64> {
        self.deadlines.as_ref()?.earliest()
    }

    /// Whether some field's deadline has passed (then `purge_expired` has work).
    pub fn has_expired_fields(&self, now_ms: u64) -> bool {
        self.deadlines
            .as_ref()
            .is_some_and(|deadlines| deadlines.any_expired(now_ms))
    }

    /// Removes the fields whose deadline has passed; how many.
    pub fn purge_expired(&mut self, now_ms: u64) -> usize {
        let Some(deadlines) = self.deadlines.as_mut() else {
            return 0;
        };
        let expired = deadlines.take_expired(now_ms);
        if deadlines.is_empty() {
            self.deadlines = None;
        }
        if expired.len() <= PURGE_ONE_BY_ONE {
            for field in &expired {
                self.remove(field);
            }
            return expired.len();
        }
        // Many at once: one pass over the map (deadlines only exist in one), keeping order.
        let Fields::Table(table) = &mut self.fields else {
            unreachable!("a hash with deadlines is a map")
        };
        let expired_fields: HashSet<&[u8]> = expired.iter().map(|field| &field[..]).collect();
        let (mut freed, mut freed_heap, mut count) = (0, 0, 0);
        table.retain(|held| {
            let gone = expired_fields.contains(held.field());
            if gone {
                freed += held.field().len() + held.value().len();
                freed_heap += held.heap_bytes();
                count += 1;
            }
            !gone
        });
        self.data_bytes -= freed;
        self.heap_bytes -= freed_heap;
        self.len -= count;
        expired.len()
    }

    /// Removes `field`; true if it was there. In a listpack-sized hash the others keep
    /// their order, as in Redis (HKEYS after HDEL answers the same); beyond that the last
    /// field takes its place, in O(1) (a shift would cost the hash's size per field).
    pub fn remove(&mut self, field: &[u8]) -> bool {
        let freed = match &mut self.fields {
            Fields::Compact(list) => {
                let Some((at, _)) = list.find(field, 2) else {
                    return false;
                };
                let freed = field.len() + list.part(list.next(at)).len();
                list.remove(at, 2);
                freed
            }
            Fields::Table(table) => {
                let removed = match self.len <= LISTPACK_MAX_ENTRIES {
                    true => table.shift_remove_full(field),
                    false => table.swap_remove_full(field),
                };
                let Some((_, held)) = removed else {
                    return false;
                };
                self.heap_bytes -= held.heap_bytes();
                held.field().len() + held.value().len()
            }
        };
        self.len -= 1;
        self.data_bytes -= freed;
        self.clear_deadline(field);
        true
    }

    /// Fields and values in the hash's order.
    pub fn iter(&self) -> FieldsIter<'_> {
        match &self.fields {
            Fields::Compact(list) => FieldsIter(FieldsWalk::Compact(list.iter())),
            Fields::Table(table) => FieldsIter(FieldsWalk::Table(table.iter())),
        }
    }

    /// The field and value at `index` (`0..len`), for random picks and scans (a scan of
    /// a packed hash in a packed hash's size).
    pub fn at(&self, index: usize) -> Option<(&[u8], &[u8])> {
        match &self.fields {
            Fields::Compact(list) => {
                let at = list.offset_of(index, 2)?;
                Some((list.part(at), list.part(list.next(at))))
            }
            Fields::Table(table) => table
                .get_index(index)
                .map(|held| (held.field(), held.value())),
        }
    }

    /// OBJECT ENCODING's name, by Redis's default listpack limits.
    pub fn encoding(&self) -> &'static str {
        match self.is_compact() {
            true => "listpack",
            false => "hashtable",
        }
    }

    /// Whether it is packed, as Redis's listpack (which a scan answers whole).
    pub fn is_compact(&self) -> bool {
        matches!(self.fields, Fields::Compact(_))
    }

    /// Bytes the hash occupies in memory: a packed hash's buffer; or a map's allocated slots
    /// and the blocks of pairs too long for their entries; and the deadlines.
    pub fn memory_bytes(&self) -> usize {
        let deadlines = self
            .deadlines
            .as_ref()
            .map_or(0, |deadlines| deadlines.memory_bytes());
        let fields = match &self.fields {
            Fields::Compact(list) => list.memory_bytes(),
            Fields::Table(table) => self.heap_bytes + table.capacity() * SLOT_BYTES,
        };
        fields + deadlines
    }

    pub(super) fn encoded_payload_len(&self) -> usize {
        let per_deadline = if self.deadlines.is_some() { 8 } else { 0 };
        4 + self.data_bytes + (8 + per_deadline) * self.len
    }

    /// Appends the payload; with deadlines, each field's (0 = none) follows its value and
    /// the returned header flag says so.
    pub(super) fn write_payload(&self, out: &mut Vec<u8>) -> u8 {
        elements::write_count(out, self.len);
        for (field, value) in self.iter() {
            elements::write_part(out, field);
            elements::write_part(out, value);
            if self.deadlines.is_some() {
                out.extend_from_slice(&self.deadline(field).unwrap_or(0).to_be_bytes());
            }
        }
        match self.deadlines {
            Some(_) => FLAG_FIELD_DEADLINES,
            None => 0,
        }
    }

    pub(super) fn decode_payload(flags: u8, payload: &[u8]) -> Result<Self, CorruptValue> {
        let with_deadlines = flags & FLAG_FIELD_DEADLINES != 0;
        let (mut reader, count) = PartReader::new(payload, 2)?;
        let mut hash = HashValue::default();
        if count > LISTPACK_MAX_ENTRIES || with_deadlines {
            hash.fields = Fields::Table(Table::with_capacity_and_hasher(count, Default::default()));
        }
        for _ in 0..count {
            let field = reader.part()?;
            let value = reader.part()?;
            if hash.put(field, value) != Applied::Added {
                return Err(CorruptValue("a hash field appears twice"));
            }
            if with_deadlines {
                match reader.number()? {
                    0 => {}
                    at => {
                        hash.deadlines
                            .get_or_insert_default()
                            .set(Bytes::copy_from_slice(field), at);
                    }
                }
            }
        }
        reader.finish()?;
        Ok(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_replace_remove_keep_the_data_size_exact() {
        let mut hash = HashValue::default();
        assert_eq!(hash.put(b"f1", b"one"), Applied::Added);
        assert_eq!(hash.put(b"f2", b"two"), Applied::Added);
        assert_eq!(hash.put(b"f1", b"uno!"), Applied::Updated);
        assert_eq!(hash.put(b"f1", b"uno!"), Applied::Unchanged);
        assert_eq!(hash.len(), 2);
        assert!(hash.is_compact());
        assert_eq!(hash.get(b"f1"), Some(&b"uno!"[..]));
        assert_eq!(hash.data_bytes, 2 + 4 + 2 + 3);
        assert!(hash.remove(b"f2"));
        assert!(!hash.remove(b"f2"));
        assert_eq!(hash.data_bytes, 2 + 4);
        assert_eq!(hash.len(), 1);
    }

    #[test]
    fn the_payload_round_trips_and_damage_is_reported() {
        let mut hash = HashValue::default();
        for i in 0..200 {
            hash.put(format!("field:{i}").as_bytes(), &vec![b'v'; i]);
        }
        let mut out = Vec::new();
        hash.write_payload(&mut out);
        assert_eq!(out.len(), hash.encoded_payload_len());
        let back = HashValue::decode_payload(0, &out).unwrap();
        assert_eq!(back, hash);
        assert_eq!(back.data_bytes, hash.data_bytes);
        assert!(HashValue::decode_payload(0, &out[..out.len() - 1]).is_err());
        let mut longer = out.clone();
        longer.push(0);
        assert!(HashValue::decode_payload(0, &longer).is_err());
        // A count no payload of this size can hold is refused before allocating.
        assert!(HashValue::decode_payload(0, &[0xFF, 0xFF, 0xFF, 0xFF]).is_err());
    }

    /// Random puts and removes across the listpack limits (packed, then a map) agree with a
    /// plain map, and every state round-trips through the codec.
    #[test]
    fn packed_and_map_forms_agree_with_a_model() {
        let mut state: u64 = 17;
        let mut next = |below: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % below
        };
        for round in 0..20 {
            let mut hash = HashValue::default();
            let mut model = std::collections::BTreeMap::new();
            for _ in 0..400 {
                let field = format!("f{}", next(160 + round * 10)).into_bytes();
                if next(4) == 0 {
                    assert_eq!(hash.remove(&field), model.remove(&field).is_some());
                } else {
                    let long = next(50) == 0;
                    let value = vec![b'v'; if long { 70 } else { next(10) as usize }];
                    let expected = match model.insert(field.clone(), value.clone()) {
                        None => Applied::Added,
                        Some(old) if old == value => Applied::Unchanged,
                        Some(_) => Applied::Updated,
                    };
                    assert_eq!(hash.put(&field, &value), expected);
                }
                assert_eq!(hash.len(), model.len());
            }
            let data: usize = model.iter().map(|(f, v)| f.len() + v.len()).sum();
            assert_eq!(hash.data_bytes, data);
            for (field, value) in &model {
                assert_eq!(hash.get(field), Some(&value[..]));
            }
            let listed: std::collections::BTreeMap<Vec<u8>, Vec<u8>> =
                hash.iter().map(|(f, v)| (f.to_vec(), v.to_vec())).collect();
            assert_eq!(listed, model);
            assert_eq!(
                (0..hash.len()).filter_map(|i| hash.at(i)).count(),
                model.len()
            );
            let mut out = Vec::new();
            let flags = hash.write_payload(&mut out);
            assert_eq!(HashValue::decode_payload(flags, &out).unwrap(), hash);
        }
    }

    #[test]
    fn field_deadlines_round_trip_expire_and_reset_on_write() {
        let mut hash = HashValue::default();
        for field in [&b"a"[..], b"b", b"c"] {
            hash.put(field, b"v");
        }
        assert_eq!(hash.set_deadline(b"a", 100), Applied::Updated);
        assert_eq!(hash.set_deadline(b"a", 100), Applied::Unchanged);
        assert_eq!(hash.set_deadline(b"b", 200), Applied::Updated);
        assert_eq!(hash.set_deadline(b"zz", 200), Applied::Unchanged);
        assert_eq!(hash.encoding(), "hashtable");
        let mut out = Vec::new();
        let flags = hash.write_payload(&mut out);
        assert_eq!(out.len(), hash.encoded_payload_len());
        let back = HashValue::decode_payload(flags, &out).unwrap();
        assert_eq!(back, hash);
        assert_eq!(back.deadline(b"b"), Some(200));
        // Setting a field again drops its deadline.
        assert_eq!(hash.put(b"b", b"v"), Applied::Updated);
        assert_eq!(hash.deadline(b"b"), None);
        assert!(!hash.has_expired_fields(99));
        assert!(hash.has_expired_fields(100));
        assert_eq!(hash.purge_expired(150), 1);
        assert_eq!(hash.len(), 2);
        assert!(hash.get(b"a").is_none());
        assert!(hash.deadlines.is_none());
        assert_eq!(hash.data_bytes, 4);
    }

    #[test]
    fn encoding_names_follow_redis_listpack_limits() {
        let mut hash = HashValue::default();
        hash.put(b"f", b"v");
        assert_eq!(hash.encoding(), "listpack");
        hash.put(b"big", &[b'x'; 65]);
        assert_eq!(hash.encoding(), "hashtable");
        hash.remove(b"big");
        assert_eq!(
            hash.encoding(),
            "hashtable",
            "conversion is for good, as in Redis"
        );
        let mut many = HashValue::default();
        for i in 0..=LISTPACK_MAX_ENTRIES {
            assert_eq!(many.encoding(), "listpack");
            many.put(i.to_string().as_bytes(), b"v");
        }
        assert_eq!(many.encoding(), "hashtable");
    }
}
