//! What the engine writes into the WAL: the effect of a command, not the command.
//!
//! A record is a batch of [`Mutation`]s, the complete effect of one engine transaction (one
//! command, or one EXEC): every change to a key's value or expiry is logged as the key's new
//! state (`Put` with the absolute expiry), every removal as `Del`, FLUSHDB/FLUSHALL as `Flush`.
//! INCR, APPEND, SETRANGE, ... therefore replay as the value they produced, RENAME as a `Del`
//! and a `Put` in one record, and replay is deterministic and idempotent: applying a record
//! twice, or over a cold tier that already holds some of its effect, gives the same state.
//! Expiry is not logged: an expired key is absent whenever it is read, replayed or not.
//!
//! Layout, little-endian: a run of ops, each `tag: u8` then
//! - `PUT`:   `key_len: u32, key, value_len: u32, value` (key encoded `[db][slot][key]`, value in
//!   the cold tier's encoding, which carries the expiry);
//! - `DEL`:   `key_len: u32, key`;
//! - `FLUSH`: `from_db: u16, to_db: u16` (databases `from_db..to_db`);
//! - `SERVER`: `name_len: u32, name, value_len: u32, value` (a server record, such as the
//!   FUNCTION libraries, replacing the record of that name whole; see `server_records`);
//! - `ELEMENT_PUT`: `type: u8, key_len: u32, key, element_len: u32, element, value_len: u32,
//!   value`: in the collection at `key` (of that value type's tag), the field or member
//!   `element` now holds `value` (empty for a set member);
//! - `ELEMENT_DEL`: `type: u8, key_len: u32, key, element_len: u32, element`: it is gone;
//! - `ELEMENT_EXPIRE`: `type: u8, key_len: u32, key, element_len: u32, element, at: u64`: the
//!   hash field expires at `at` (Unix ms, 0 = never). A field that expires is not logged:
//!   the deadline is absolute, so it is gone whenever it is read, replayed or not.
//!
//! Element records are logged only for a collection that existed before the command and
//! still does after it; creating, replacing or deleting a collection logs `PUT` / `DEL`.
//! That keeps replay exact: an element record whose key is absent at replay (it expired
//! since) or holds another type (a later record, already in the cold tier, replaced it) is
//! skipped, and the records after it decide the key's state, as they did when logged.

use bytes::Bytes;

use super::entry::{write_cold_value, ExpireAt};
use super::types::{ElementOp, Value, ValueType};

const PUT: u8 = 1;
const DEL: u8 = 2;
const FLUSH: u8 = 3;
const SERVER: u8 = 4;
const ELEMENT_PUT: u8 = 5;
const ELEMENT_DEL: u8 = 6;
const ELEMENT_EXPIRE: u8 = 7;

/// One logged change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation<'a> {
    /// The key now holds this cold-encoded value (which includes its expiry).
    Put {
        key: &'a [u8],
        value: &'a [u8],
    },
    Del {
        key: &'a [u8],
    },
    /// Every key of databases `from..to` is gone.
    Flush {
        from: u16,
        to: u16,
    },
    /// The server record `name` now holds `value` (it is not a key: no database, no expiry).
    Server {
        name: &'a [u8],
        value: &'a [u8],
    },
    /// One field or member of the existing collection at `key` changed.
    Element {
        value_type: ValueType,
        key: &'a [u8],
        op: ElementOp,
    },
}

/// The mutations of one transaction, encoded as they happen and appended to the WAL as one
/// record when the transaction ends (so a command is replayed whole or not at all).
#[derive(Debug, Default)]
pub struct MutationBatch {
    buf: Vec<u8>,
}

impl MutationBatch {
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn clear(&mut self) {
        self.buf.clear();
    }

    pub fn put(&mut self, key: &[u8], value: &Value, expire_at: ExpireAt) {
        self.buf.push(PUT);
        push_len(&mut self.buf, key.len());
        self.buf.extend_from_slice(key);
        let len_at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        write_cold_value(&mut self.buf, value, expire_at);
        let value_len = self.buf.len() - len_at - 4;
        self.buf[len_at..len_at + 4].copy_from_slice(&to_u32(value_len).to_le_bytes());
    }

    pub fn del(&mut self, key: &[u8]) {
        self.buf.push(DEL);
        push_len(&mut self.buf, key.len());
        self.buf.extend_from_slice(key);
    }

    pub fn flush(&mut self, from: u16, to: u16) {
        self.buf.push(FLUSH);
        self.buf.extend_from_slice(&from.to_le_bytes());
        self.buf.extend_from_slice(&to.to_le_bytes());
    }

    pub fn element(&mut self, value_type: ValueType, key: &[u8], op: &ElementOp) {
        let (tag, parts): (u8, &[&[u8]]) = match op {
            ElementOp::Put { element, value } => (ELEMENT_PUT, &[key, &element[..], &value[..]]),
            ElementOp::Del { element } => (ELEMENT_DEL, &[key, &element[..]]),
            ElementOp::Expire { element, .. } => (ELEMENT_EXPIRE, &[key, &element[..]]),
        };
        self.buf.push(tag);
        self.buf.push(value_type.tag());
        for part in parts {
            push_len(&mut self.buf, part.len());
            self.buf.extend_from_slice(part);
        }
        if let ElementOp::Expire { at, .. } = op {
            self.buf.extend_from_slice(&at.to_le_bytes());
        }
    }

    pub fn server_record(&mut self, name: &[u8], value: &[u8]) {
        self.buf.push(SERVER);
        for part in [name, value] {
            push_len(&mut self.buf, part.len());
            self.buf.extend_from_slice(part);
        }
    }
}

fn to_u32(len: usize) -> u32 {
    // Keys and values are bounded by proto-max-bulk-len (at most 4 GiB - 1 by config).
    u32::try_from(len).expect("keys and values are shorter than 4 GiB")
}

fn push_len(buf: &mut Vec<u8>, len: usize) {
    buf.extend_from_slice(&to_u32(len).to_le_bytes());
}

/// Decodes a record's mutations; any malformed byte is an error (the WAL's CRC has passed,
/// so this means a record from a different format, reported rather than guessed at).
pub fn decode(payload: &[u8]) -> Result<Vec<Mutation<'_>>, DecodeError> {
    let mut reader = Reader { rest: payload };
    let mut out = Vec::new();
    while !reader.rest.is_empty() {
        let tag = reader.take(1)?[0];
        out.push(match tag {
            PUT => {
                let key = reader.take_counted()?;
                let value = reader.take_counted()?;
                Mutation::Put { key, value }
            }
            DEL => Mutation::Del {
                key: reader.take_counted()?,
            },
            FLUSH => {
                let from = u16::from_le_bytes(reader.take(2)?.try_into().expect("2 bytes"));
                let to = u16::from_le_bytes(reader.take(2)?.try_into().expect("2 bytes"));
                Mutation::Flush { from, to }
            }
            SERVER => {
                let name = reader.take_counted()?;
                let value = reader.take_counted()?;
                Mutation::Server { name, value }
            }
            ELEMENT_PUT | ELEMENT_DEL | ELEMENT_EXPIRE => {
                let type_tag = reader.take(1)?[0];
                let value_type =
                    ValueType::from_tag(type_tag).ok_or(DecodeError::UnknownValueType(type_tag))?;
                let key = reader.take_counted()?;
                let element = Bytes::copy_from_slice(reader.take_counted()?);
                let op = match tag {
                    ELEMENT_PUT => ElementOp::Put {
                        element,
                        value: Bytes::copy_from_slice(reader.take_counted()?),
                    },
                    ELEMENT_EXPIRE => ElementOp::Expire {
                        element,
                        at: u64::from_le_bytes(reader.take(8)?.try_into().expect("8 bytes")),
                    },
                    _ => ElementOp::Del { element },
                };
                Mutation::Element {
                    value_type,
                    key,
                    op,
                }
            }
            other => return Err(DecodeError::UnknownTag(other)),
        });
    }
    Ok(out)
}

/// Why a record's payload is not a batch of mutations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    UnknownTag(u8),
    UnknownValueType(u8),
    Truncated { wanted: usize, left: usize },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::UnknownTag(tag) => write!(f, "unknown mutation tag {tag}"),
            DecodeError::UnknownValueType(tag) => write!(f, "unknown value type {tag}"),
            DecodeError::Truncated { wanted, left } => {
                write!(f, "mutation truncated: {wanted} bytes wanted, {left} left")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated {
                wanted: n,
                left: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn take_counted(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"));
        self.take(len as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::entry::{decode_cold_value, ColdValue};
    use crate::engine::types::string::StoredValue;
    use bytes::Bytes;

    #[test]
    fn batches_round_trip_in_order() {
        let mut batch = MutationBatch::default();
        let value = Value::String(StoredValue::new(Bytes::from_static(b"hello"), 0));
        batch.put(b"\0\0\0\x01key", &value, 1234);
        batch.del(b"\0\0\0\x02other");
        batch.flush(0, 16);
        batch.server_record(b"functions", b"\x01libraries");
        let decoded = decode(batch.as_bytes()).unwrap();
        assert_eq!(decoded.len(), 4);
        let Mutation::Put { key, value: raw } = decoded[0] else {
            panic!("first is a put: {decoded:?}");
        };
        assert_eq!(key, b"\0\0\0\x01key");
        assert_eq!(
            decode_cold_value(raw).unwrap(),
            ColdValue::Live {
                value,
                expire_at: 1234,
                access: None,
            }
        );
        assert_eq!(
            decoded[1],
            Mutation::Del {
                key: b"\0\0\0\x02other"
            }
        );
        assert_eq!(decoded[2], Mutation::Flush { from: 0, to: 16 });
        assert_eq!(
            decoded[3],
            Mutation::Server {
                name: b"functions",
                value: b"\x01libraries"
            }
        );
    }

    #[test]
    fn compressed_values_round_trip() {
        let mut batch = MutationBatch::default();
        let value = Value::String(StoredValue::new(Bytes::from(vec![b'x'; 4096]), 64));
        assert!(value.is_compressed());
        batch.put(b"\0\0\0\0k", &value, 0);
        let decoded = decode(batch.as_bytes()).unwrap();
        let Mutation::Put { value: raw, .. } = decoded[0] else {
            panic!("a put");
        };
        let ColdValue::Live { value: back, .. } = decode_cold_value(raw).unwrap() else {
            panic!("live");
        };
        assert_eq!(
            back.as_string().unwrap().to_bytes(),
            Bytes::from(vec![b'x'; 4096])
        );
    }

    #[test]
    fn every_truncation_and_unknown_tags_are_errors_not_panics() {
        let mut batch = MutationBatch::default();
        let value = Value::String(StoredValue::new(Bytes::from_static(b"v"), 0));
        batch.put(b"key", &value, 0);
        batch.del(b"key");
        batch.flush(1, 2);
        let bytes = batch.as_bytes();
        for cut in 1..bytes.len() {
            // A cut on an op boundary decodes (fewer ops); anywhere else is an error.
            if let Ok(ops) = decode(&bytes[..cut]) {
                assert!(ops.len() < 3, "cut at {cut}");
            }
        }
        assert_eq!(decode(&[9]).unwrap_err(), DecodeError::UnknownTag(9));
        assert!(decode(&[9])
            .unwrap_err()
            .to_string()
            .contains("unknown mutation tag"));
    }
}
