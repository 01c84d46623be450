//! Value types: what a key holds, behind one enum so the tiering code (resolve, demote,
//! expiry, SCAN, the WAL) stays type-agnostic. Each type owns, in its own file, its
//! representation, its codec for the cold tier and the WAL, its memory charge and its TYPE
//! name; adding a type means a variant here and a module beside `string`.
//!
//! What it must never do: let a command see a value of another type than it works on.
//! Typed accessors (`Value::as_string`) return `EngineError::WrongType`, which the command
//! layer answers with Redis's `-WRONGTYPE`.
//!
//! Collections that keep one cold record per field or member use the cold tier's
//! `Space::Members` (see `cold`), which SCAN, the key counts and the filter never read, so a
//! field is never counted or listed as a key.

pub mod string;

use super::api::{EngineError, EngineResult};
use super::entry::CorruptValue;
use string::StoredValue;

/// The type of a key's value, as TYPE names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ValueType {
    String,
}

impl ValueType {
    /// Every type, for code that must cover them all (the tag round-trip test today).
    pub const ALL: [ValueType; 1] = [ValueType::String];

    /// TYPE's reply (Redis's names).
    pub fn name(self) -> &'static str {
        match self {
            ValueType::String => "string",
        }
    }

    /// The tag stored in a cold value's header (4 bits). Never renumber: data on disk and
    /// in the WAL carries it.
    pub(super) fn tag(self) -> u8 {
        match self {
            ValueType::String => 0,
        }
    }

    pub(super) fn from_tag(tag: u8) -> Option<ValueType> {
        match tag {
            0 => Some(ValueType::String),
            _ => None,
        }
    }
}

/// A key's value as the hot tier holds it and the cold tier stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    String(StoredValue),
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::String(_) => ValueType::String,
        }
    }

    /// Bytes the value occupies in memory (charged to the hot tier with its key).
    pub fn memory_bytes(&self) -> usize {
        match self {
            Value::String(string) => string.memory_bytes(),
        }
    }

    /// STRLEN for a string; the number of fields or members for a collection.
    pub fn len(&self) -> usize {
        match self {
            Value::String(string) => string.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the value is held compressed.
    pub fn is_compressed(&self) -> bool {
        match self {
            Value::String(string) => string.is_compressed(),
        }
    }

    /// The string, or `WrongType` for any other type.
    pub fn as_string(&self) -> EngineResult<&StoredValue> {
        match self {
            Value::String(string) => Ok(string),
            #[expect(
                unreachable_patterns,
                reason = "strings are the only type until hashes and sets land"
            )]
            _ => Err(EngineError::WrongType),
        }
    }

    /// Length of `write_payload`'s output.
    pub(super) fn encoded_payload_len(&self) -> usize {
        match self {
            Value::String(string) => string.encoded_payload_len(),
        }
    }

    /// Appends the type's payload encoding; returns the type's flag bits for the header.
    pub(super) fn write_payload(&self, out: &mut Vec<u8>) -> u8 {
        match self {
            Value::String(string) => string.write_payload(out),
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
        assert_eq!(ValueType::from_tag(15), None);
    }
}
