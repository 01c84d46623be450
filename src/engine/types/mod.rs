//! Value types: what a key holds, behind one enum so the tiering code (resolve, demote,
//! expiry, SCAN, the WAL) stays type-agnostic. Each type owns, in its own file, its
//! representation, its codec for the cold tier and the WAL, its memory charge and its TYPE
//! name; adding a type means a variant here and a module beside `string`.
//!
//! What it must never do: let a command see a value of another type than it works on.
//! Typed accessors (`Value::as_string`) return `EngineError::WrongType`, which the command
//! layer answers with Redis's `-WRONGTYPE`.
//!
//! Hashes and sets are held and stored whole for now: one hot entry and one cold record per
//! key, so every tiering path works on them unchanged. A command changes a few elements in
//! place and the WAL logs just those (`ElementOp`, `mutation`); creating or replacing a
//! collection logs it whole. Large collections are to keep one cold record per field or
//! member in the cold tier's `Space::Members` (see `cold`), which SCAN, the key counts and
//! the filter never read, so a field is never counted or listed as a key (issue 17's next
//! step).

use bytes::Bytes;

mod compact;
mod elements;
mod field_expiry;
pub mod hash;
mod packed;
pub mod set;
mod small;
pub mod string;

use super::api::{EngineError, EngineResult};
use super::entry::CorruptValue;
use hash::HashValue;
use set::SetValue;
use string::StoredValue;

/// The type of a key's value, as TYPE names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ValueType {
    String,
    Hash,
    Set,
}

impl ValueType {
    /// Every type, for code that must cover them all (the tag round-trip test today).
    pub const ALL: [ValueType; 3] = [ValueType::String, ValueType::Hash, ValueType::Set];

    /// TYPE's reply (Redis's names).
    pub fn name(self) -> &'static str {
        match self {
            ValueType::String => "string",
            ValueType::Hash => "hash",
            ValueType::Set => "set",
        }
    }

    /// The tag stored in a cold value's header (4 bits). Never renumber: data on disk and
    /// in the WAL carries it.
    pub(super) fn tag(self) -> u8 {
        match self {
            ValueType::String => 0,
            ValueType::Hash => 1,
            ValueType::Set => 2,
        }
    }

    pub(super) fn from_tag(tag: u8) -> Option<ValueType> {
        match tag {
            0 => Some(ValueType::String),
            1 => Some(ValueType::Hash),
            2 => Some(ValueType::Set),
            _ => None,
        }
    }
}

/// One change to one field or member of a collection: what a command asks for, what the
/// WAL logs (`mutation`), and what replay applies, through the one `Value::apply`.
/// Its bytes are shared handles (an argument, a member of the set, a computed value);
/// applying one copies them into the collection's own allocations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElementOp {
    /// The hash field `element` holds `value`; the set member `element` is present (its
    /// `value` is empty).
    Put { element: Bytes, value: Bytes },
    /// The field or member `element` is absent.
    Del { element: Bytes },
    /// The hash field `element`, if present, expires at `at` (Unix ms; 0 = never).
    Expire { element: Bytes, at: u64 },
}

/// What one `ElementOp` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Unchanged,
    /// A new field or member.
    Added,
    /// A field took a new value.
    Updated,
    Removed,
}

/// What a batch of `ElementOp`s did: HSET and SADD answer `added`, HDEL and SREM `removed`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppliedCounts {
    pub added: usize,
    pub removed: usize,
}

impl Applied {
    /// The larger effect of two on one field (`Updated` beats `Unchanged`).
    fn max_with(self, other: Applied) -> Applied {
        match other {
            Applied::Unchanged => self,
            other => other,
        }
    }
}

impl AppliedCounts {
    pub fn count(&mut self, applied: Applied) {
        match applied {
            Applied::Added => self.added += 1,
            Applied::Removed => self.removed += 1,
            Applied::Unchanged | Applied::Updated => {}
        }
    }
}

/// A key's value as the hot tier holds it and the cold tier stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    String(StoredValue),
    // Boxed: a string is the common case, and every hot entry is as large as the largest
    // variant (issue 15 counts the bytes per key).
    Hash(Box<HashValue>),
    Set(Box<SetValue>),
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::String(_) => ValueType::String,
            Value::Hash(_) => ValueType::Hash,
            Value::Set(_) => ValueType::Set,
        }
    }

    /// Bytes the value occupies in memory (charged to the hot tier with its key).
    pub fn memory_bytes(&self) -> usize {
        match self {
            Value::String(string) => string.memory_bytes(),
            Value::Hash(hash) => hash.memory_bytes(),
            Value::Set(set) => set.memory_bytes(),
        }
    }

    /// STRLEN for a string; the number of fields or members for a collection.
    pub fn len(&self) -> usize {
        match self {
            Value::String(string) => string.len(),
            Value::Hash(hash) => hash.len(),
            Value::Set(set) => set.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the value is held compressed.
    pub fn is_compressed(&self) -> bool {
        match self {
            Value::String(string) => string.is_compressed(),
            Value::Hash(_) | Value::Set(_) => false,
        }
    }

    /// OBJECT ENCODING's name for a collection; strings are named by the command layer,
    /// which knows whether the text is an integer (`None` here).
    pub fn collection_encoding(&self) -> Option<&'static str> {
        match self {
            Value::String(_) => None,
            Value::Hash(hash) => Some(hash.encoding()),
            Value::Set(set) => Some(set.encoding()),
        }
    }

    /// An empty collection of `value_type`, for the first element a command adds (None for
    /// a string, which is never built element by element).
    pub fn empty_collection(value_type: ValueType) -> Option<Value> {
        match value_type {
            ValueType::String => None,
            ValueType::Hash => Some(Value::Hash(Box::default())),
            ValueType::Set => Some(Value::Set(Box::default())),
        }
    }

    /// Applies one element change. A string has no elements: nothing changes.
    pub fn apply(&mut self, op: &ElementOp) -> Applied {
        let removed = |was_there: bool| match was_there {
            true => Applied::Removed,
            false => Applied::Unchanged,
        };
        match (self, op) {
            (Value::String(_), _) => Applied::Unchanged,
            (Value::Hash(hash), ElementOp::Put { element, value }) => hash.put(element, value),
            (Value::Hash(hash), ElementOp::Del { element }) => removed(hash.remove(element)),
            (Value::Set(set), ElementOp::Put { element, .. }) => match set.insert(element) {
                true => Applied::Added,
                false => Applied::Unchanged,
            },
            (Value::Set(set), ElementOp::Del { element }) => removed(set.remove(element)),
            (Value::Hash(hash), ElementOp::Expire { element, at }) => {
                hash.set_deadline(element, *at)
            }
            (Value::Set(_), ElementOp::Expire { .. }) => Applied::Unchanged,
        }
    }

    /// The string, or `WrongType` for any other type.
    pub fn as_string(&self) -> EngineResult<&StoredValue> {
        match self {
            Value::String(string) => Ok(string),
            _ => Err(EngineError::WrongType),
        }
    }

    /// The hash, or `WrongType` for any other type.
    pub fn as_hash(&self) -> EngineResult<&HashValue> {
        match self {
            Value::Hash(hash) => Ok(hash),
            _ => Err(EngineError::WrongType),
        }
    }

    /// The set, or `WrongType` for any other type.
    pub fn as_set(&self) -> EngineResult<&SetValue> {
        match self {
            Value::Set(set) => Ok(set),
            _ => Err(EngineError::WrongType),
        }
    }

    /// Length of `write_payload`'s output.
    pub(super) fn encoded_payload_len(&self) -> usize {
        match self {
            Value::String(string) => string.encoded_payload_len(),
            Value::Hash(hash) => hash.encoded_payload_len(),
            Value::Set(set) => set.encoded_payload_len(),
        }
    }

    /// Appends the type's payload encoding; returns the type's flag bits for the header.
    pub(super) fn write_payload(&self, out: &mut Vec<u8>) -> u8 {
        match self {
            Value::String(string) => string.write_payload(out),
            Value::Hash(hash) => hash.write_payload(out),
            Value::Set(set) => set.write_payload(out),
        }
    }

    pub(super) fn decode_payload(
        value_type: ValueType,
        type_flags: u8,
        payload: &[u8],
    ) -> Result<Value, CorruptValue> {
        match value_type {
            ValueType::String => Ok(Value::String(StoredValue::decode_payload(
                type_flags, payload,
            )?)),
            ValueType::Hash => Ok(Value::Hash(Box::new(HashValue::decode_payload(
                type_flags, payload,
            )?))),
            ValueType::Set => Ok(Value::Set(Box::new(SetValue::decode_payload(payload)?))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_tag_round_trips_and_names_match_redis() {
        for value_type in ValueType::ALL {
            assert_eq!(ValueType::from_tag(value_type.tag()), Some(value_type));
        }
        assert_eq!(ValueType::String.name(), "string");
        assert_eq!(ValueType::Hash.name(), "hash");
        assert_eq!(ValueType::Set.name(), "set");
        assert_eq!(ValueType::from_tag(15), None);
    }
}
