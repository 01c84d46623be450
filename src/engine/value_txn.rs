//! Typed reads and writes of a whole value, for the commands of hashes and sets
//! (and the types after them): the value is lent to the caller under the key's shard lock,
//! and what the caller returns becomes the key's new state through the same store and
//! delete paths every string write takes, so the WAL, the tiers, the filter and the key
//! counts stay exact whatever the type (I1-I5).
//!
//! Commands that change a few fields or members of a collection say which
//! (`update_elements`): the changes are applied in place, with no copy of the collection,
//! and logged one element at a time, so an HSET costs the same in a hash of ten fields and
//! of a million. Replay applies the logged element changes through the same
//! `Value::apply` (`replay_element`).
//!
//! It must never decide a command's semantics: the caller checks the type (answering
//! `WrongType`) and says what changes; this file only resolves, applies, stores and
//! deletes. A collection that a change leaves empty is deleted, as Redis deletes empty
//! collections.

use super::api::{Access, EngineError, EngineResult};
use super::entry::NO_EXPIRY;
use super::hot::{ColdCopy, HotEntry, HotShard, PENDING_LSN};
use super::mutation::MutationBatch;
use super::resolve::{live_entry, Removal};
use super::txn::Txn;
use super::types::{Applied, AppliedCounts, ElementOp, Value, ValueType};
use super::{seconds, Engine};

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
        if !engine.resolve(access, shard, &encoded, now)?.found()
            || engine.purge_expired_fields(access, shard, &encoded, now)?
        {
            return Ok(read(None));
        }
        let touch = engine.touch(now);
        let entry = shard.get(&encoded, touch).expect("resolve found it live");
        // An empty collection is a removal that failed after its change (the cold tier
        // refused the delete): no key, for readers.
        let answer = match is_empty_collection(&entry.value) {
            true => read(None),
            false => read(Some(&entry.value)),
        };
        engine.settle(access, shard);
        Ok(answer)
    }

    /// Replaces the key's value with `value`, without a time to live, whatever it held (the
    /// *STORE commands); an empty collection deletes the key instead.
    pub fn replace_value(&mut self, db: u16, key: &[u8], value: Value) -> EngineResult<()> {
        let (engine, access) = (self.engine, self.access);
        let (encoded, shard, log) = self.locate(db, key)?;
        // Room first: making room may demote this very key, so it is resolved after.
        engine.check_room(access, shard)?;
        let now = engine.now_ms();
        let exists = engine.resolve(access, shard, &encoded, now)?.found();
        if is_empty_collection(&value) {
            if exists {
                engine.delete_resolved(access, shard, log, &encoded)?;
            }
            return Ok(());
        }
        let cold = match exists {
            true => live_entry(shard, &encoded).cold,
            false => ColdCopy::Absent,
        };
        let entry = HotEntry::written(value, NO_EXPIRY, cold, seconds(now));
        engine.store(shard, log, encoded, entry, !exists);
        engine.settle(access, shard);
        Ok(())
    }
}

impl Txn<'_> {
    /// Changes some elements of the collection of `value_type` at `key`: `plan` sees the
    /// current value (None if absent; `WrongType` is answered before it runs for a key of
    /// another type) and returns the element changes to make and its reply. An existing
    /// collection is changed in place and each change logged; a new one is stored whole;
    /// one left empty is deleted. Returns the reply and what the changes did.
    pub fn update_elements<T, E>(
        &mut self,
        db: u16,
        key: &[u8],
        value_type: ValueType,
        plan: impl FnOnce(Option<&Value>) -> Result<(Vec<ElementOp>, T), E>,
    ) -> Result<(T, AppliedCounts), E>
    where
        E: From<EngineError>,
    {
        let (engine, access) = (self.engine, self.access);
        let (encoded, shard, log) = self.locate(db, key)?;
        engine.check_room(access, shard)?;
        let now = engine.now_ms();
        let mut exists = engine.resolve(access, shard, &encoded, now)?.found()
            && !engine.purge_expired_fields(access, shard, &encoded, now)?;
        if exists && is_empty_collection(&live_entry(shard, &encoded).value) {
            // A removal that failed after its change (the cold tier refused the delete):
            // finish it before anything else.
            engine.prepare_removal(access, shard, &encoded)?;
            engine.delete_resolved(access, shard, log, &encoded)?;
            exists = false;
        }
        if !exists {
            let (ops, reply) = plan(None)?;
            let mut value = Value::empty_collection(value_type).expect("a collection type");
            let mut counts = AppliedCounts::default();
            for op in &ops {
                counts.count(value.apply(op));
            }
            if !value.is_empty() {
                let entry = HotEntry::written(value, NO_EXPIRY, ColdCopy::Absent, seconds(now));
                engine.store(shard, log, encoded, entry, true);
                engine.settle(access, shard);
            }
            return Ok((reply, counts));
        }
        let current = &live_entry(shard, &encoded).value;
        if current.value_type() != value_type {
            return Err(EngineError::WrongType.into());
        }
        let (ops, reply) = plan(Some(current))?;
        if ops.is_empty() {
            return Ok((reply, AppliedCounts::default()));
        }
        let removals = ops
            .iter()
            .filter(|op| matches!(op, ElementOp::Del { .. }))
            .count();
        if removals >= current.len() {
            // The change may empty the collection, and removing the key must not find it
            // has to block only after the change was made.
            engine.prepare_removal(access, shard, &encoded)?;
        }
        let (counts, emptied) =
            engine.apply_elements(shard, Some(log), &encoded, value_type, &ops, now);
        if emptied {
            engine.delete_resolved(access, shard, log, &encoded)?;
        }
        engine.settle(access, shard);
        Ok((reply, counts))
    }
}

impl Engine {
    /// Before a change in place that may leave a collection empty: removing the key then
    /// deletes its cold copy at once when there is no WAL (no tombstone can wait for it),
    /// which may block, and a call that would block must fail with nothing changed.
    fn prepare_removal(
        &self,
        access: Access,
        shard: &HotShard,
        encoded: &[u8],
    ) -> EngineResult<()> {
        if !self.logging() && live_entry(shard, encoded).cold != ColdCopy::Absent {
            access.prepare_to_block()?;
        }
        Ok(())
    }

    /// Removes a live hash's expired fields before a command sees it; true when none is
    /// left, and then the key is removed too (as an expiry: nothing is logged, since the
    /// deadlines are absolute and replay finds the same fields expired).
    pub(super) fn purge_expired_fields(
        &self,
        access: Access,
        shard: &mut HotShard,
        encoded: &[u8],
        now: u64,
    ) -> EngineResult<bool> {
        match &live_entry(shard, encoded).value {
            Value::Hash(hash) if hash.has_expired_fields(now) => {}
            _ => return Ok(false),
        }
        self.prepare_removal(access, shard, encoded)?;
        let (_, emptied) = shard
            .modify(encoded, |entry| {
                let Value::Hash(hash) = &mut entry.value else {
                    unreachable!("checked above, under the same lock")
                };
                hash.purge_expired(now);
                entry.dirty = true;
                hash.is_empty()
            })
            .expect("the caller resolved the key live");
        // Redis signals a modified key when it expires a field lazily.
        self.watches.touch(encoded);
        if emptied {
            self.remove_resolved(access, shard, encoded, Removal::Expired)?;
        }
        Ok(emptied)
    }

    /// Applies element changes to the live collection at `encoded` in place, logging each
    /// one that changed something into `log` (None while replaying) and marking the entry
    /// dirty. Returns what they did and whether the collection is left empty (the caller
    /// deletes the key).
    fn apply_elements(
        &self,
        shard: &mut HotShard,
        log: Option<&mut MutationBatch>,
        encoded: &[u8],
        value_type: ValueType,
        ops: &[ElementOp],
        now: u64,
    ) -> (AppliedCounts, bool) {
        let logging = self.logging();
        let lfu = self.eviction.lfu();
        let mut log = log.filter(|_| logging);
        let (held, (counts, changed, emptied)) = shard
            .modify(encoded, |entry| {
                let (mut counts, mut changed) = (AppliedCounts::default(), false);
                for op in ops {
                    let applied = entry.value.apply(op);
                    counts.count(applied);
                    if applied != Applied::Unchanged {
                        changed = true;
                        if let Some(log) = log.as_deref_mut() {
                            log.element(value_type, encoded, op);
                        }
                    }
                }
                if changed {
                    entry.dirty = true;
                    entry.access = entry.access.touched(seconds(now), lfu);
                    if logging {
                        entry.lsn = PENDING_LSN;
                    }
                }
                (counts, changed, entry.value.is_empty())
            })
            .expect("the caller resolved the key live");
        // HSET and HINCRBY signal WATCH even when the value stays the same, as Redis does.
        let hash_write = value_type == ValueType::Hash
            && ops.iter().any(|op| matches!(op, ElementOp::Put { .. }));
        if changed || hash_write {
            self.watches.touch(encoded);
        }
        if changed && logging {
            shard.note_pending(held);
        }
        (counts, emptied)
    }

    /// Replays one logged element change. The key existed when it was logged: absent now
    /// means it expired since, another type means a later record (already applied to the
    /// cold tier) replaced it; either way the change is skipped and the records after it
    /// decide (see `mutation`).
    pub(super) fn replay_element(
        &self,
        encoded: &[u8],
        value_type: ValueType,
        op: &ElementOp,
    ) -> EngineResult<()> {
        let now = self.now_ms();
        let mut shard = self.hot.lock_encoded(encoded);
        if !self
            .resolve(Access::MayBlock, &mut shard, encoded, now)?
            .found()
            || live_entry(&shard, encoded).value.value_type() != value_type
        {
            return Ok(());
        }
        if self
            .apply_elements(
                &mut shard,
                None,
                encoded,
                value_type,
                std::slice::from_ref(op),
                now,
            )
            .1
        {
            self.remove_resolved(Access::MayBlock, &mut shard, encoded, Removal::Deleted)?;
        }
        self.settle(Access::MayBlock, &mut shard);
        Ok(())
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

    /// See [`Txn::update_elements`].
    pub fn update_elements<T, E>(
        &self,
        access: Access,
        db: u16,
        key: &[u8],
        value_type: ValueType,
        plan: impl FnOnce(Option<&Value>) -> Result<(Vec<ElementOp>, T), E>,
    ) -> Result<(T, AppliedCounts), E>
    where
        E: From<EngineError>,
    {
        self.single_with_room(access, db, key)?
            .update_elements(db, key, value_type, plan)
    }

    /// See [`Txn::replace_value`].
    pub fn replace_value(
        &self,
        access: Access,
        db: u16,
        key: &[u8],
        value: Value,
    ) -> EngineResult<()> {
        self.single_with_room(access, db, key)?
            .replace_value(db, key, value)
    }
}
