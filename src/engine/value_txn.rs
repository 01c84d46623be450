//! Typed reads and read-modify-writes of a whole value, for the commands of hashes and sets
//! (and the types after them): the value is lent to the caller under the key's shard lock,
//! and what the caller returns becomes the key's new state through the same store and
//! delete paths every string write takes, so the WAL, the tiers, the filter and the key
//! counts stay exact whatever the type (I1-I5).
//!
//! It must never decide a command's semantics: the caller checks the type (answering
//! `WrongType`) and builds the new value; this file only resolves, stores and deletes.
//! A collection that a change leaves empty is deleted, as Redis deletes empty collections.

use super::api::{Access, EngineError, EngineResult};
use super::entry::{ExpireAt, NO_EXPIRY};
use super::hot::{ColdCopy, HotEntry};
use super::resolve::live_entry;
use super::txn::Txn;
use super::types::Value;
use super::{seconds, Engine};

/// What a read-modify-write leaves in the key.
#[derive(Debug)]
pub enum ValueChange {
    /// Nothing changed (no write, no log record).
    Keep,
    /// The key now holds this value and keeps its time to live (HSET, SADD, ...); an empty
    /// collection deletes the key instead.
    Put(Value),
    /// The key now holds this value without a time to live, whatever it held before
    /// (SINTERSTORE and the other *STORE commands); empty deletes the key.
    Replace(Value),
    /// The key is deleted.
    Delete,
}

impl Txn<'_> {
    /// Lends the key's live value (None when absent) to `read`.
    pub fn read_value<T>(
        &mut self,
        db: u16,
        key: &[u8],
        read: impl FnOnce(Option<&Value>) -> T,
    ) -> EngineResult<T> {
        let (engine, access) = (self.engine, self.access);
        let (encoded, shard) = self.locate_for_read(db, key)?;
        let now = engine.now_ms();
        if !engine.resolve(access, shard, &encoded, now)?.found() {
            return Ok(read(None));
        }
        let touch = engine.touch(now);
        let entry = shard.get(&encoded, touch).expect("resolve found it live");
        let answer = read(Some(&entry.value));
        engine.settle(access, shard);
        Ok(answer)
    }

    /// Read-modify-write of one value: `update` sees the current value (None if absent)
    /// and returns the change to make and its reply. An error from `update` changes
    /// nothing.
    pub fn update_value<T, E>(
        &mut self,
        db: u16,
        key: &[u8],
        update: impl FnOnce(Option<&Value>) -> Result<(ValueChange, T), E>,
    ) -> Result<T, E>
    where
        E: From<EngineError>,
    {
        let (engine, access) = (self.engine, self.access);
        let (encoded, shard, log) = self.locate(db, key)?;
        // Room first: making room may demote this very key, so it is resolved after.
        engine.check_room(access, shard)?;
        let now = engine.now_ms();
        let exists = engine.resolve(access, shard, &encoded, now)?.found();
        let (change, reply, kept) = match exists {
            true => {
                let entry = live_entry(shard, &encoded);
                let (change, reply) = update(Some(&entry.value))?;
                (change, reply, Some((entry.expire_at, entry.cold)))
            }
            false => {
                let (change, reply) = update(None)?;
                (change, reply, None)
            }
        };
        let (value, expire_at): (Value, ExpireAt) = match change {
            ValueChange::Keep => return Ok(reply),
            ValueChange::Delete => {
                if exists {
                    engine.delete_resolved(access, shard, log, &encoded)?;
                }
                return Ok(reply);
            }
            ValueChange::Put(value) => (value, kept.map_or(NO_EXPIRY, |(at, _)| at)),
            ValueChange::Replace(value) => (value, NO_EXPIRY),
        };
        if is_empty_collection(&value) {
            if exists {
                engine.delete_resolved(access, shard, log, &encoded)?;
            }
            return Ok(reply);
        }
        let cold = kept.map_or(ColdCopy::Absent, |(_, cold)| cold);
        let entry = HotEntry::written(value, expire_at, cold, seconds(now));
        engine.store(shard, log, encoded, entry, !exists);
        engine.settle(access, shard);
        Ok(reply)
    }
}

/// An empty hash or set is no key at all (Redis deletes it); an empty string is a value.
fn is_empty_collection(value: &Value) -> bool {
    !matches!(value, Value::String(_)) && value.is_empty()
}

impl Engine {
    /// See [`Txn::read_value`].
    pub fn read_value<T>(
        &self,
        access: Access,
        db: u16,
        key: &[u8],
        read: impl FnOnce(Option<&Value>) -> T,
    ) -> EngineResult<T> {
        self.single(access, db, key)?.read_value(db, key, read)
    }

    /// See [`Txn::update_value`].
    pub fn update_value<T, E>(
        &self,
        access: Access,
        db: u16,
        key: &[u8],
        update: impl FnOnce(Option<&Value>) -> Result<(ValueChange, T), E>,
    ) -> Result<T, E>
    where
        E: From<EngineError>,
    {
        self.single_with_room(access, db, key)?
            .update_value(db, key, update)
    }
}
