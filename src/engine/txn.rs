//! Transactions: operations on keys whose shards are held, atomic with respect to every
//! other caller (I7). Every command's key work happens here, alone (a one-shard
//! transaction from `single_key.rs`) or inside MULTI/EXEC and multi-key commands; each
//! transaction's changes reach the WAL as one record when it ends.

use bytes::Bytes;
use parking_lot::MutexGuard;

use super::api::{
    Access, EngineError, EngineResult, ExpireCondition, KeyInfo, KeyTtl, LogError, RenameOutcome,
    SetCondition, SetExpiry, SetOptions, SetOutcome,
};
use super::cold::{ColdOp, Space};
use super::entry::{is_expired, ExpireAt, NO_EXPIRY};
use super::hot::{self, ColdCopy, HotEntry, HotShard};
use super::keys;
use super::mutation::MutationBatch;
use super::resolve::live_entry;
use super::types::string::StoredValue;
use super::types::Value;
use super::{db_prefix, seconds, Engine};

/// The shards a transaction holds.
pub(super) enum Guards<'a> {
    One(usize, MutexGuard<'a, HotShard>),
    Many(Vec<(usize, MutexGuard<'a, HotShard>)>),
}

impl<'a> Guards<'a> {
    pub(super) fn for_each(&mut self, mut visit: impl FnMut(&mut HotShard)) {
        match self {
            Guards::One(_, guard) => visit(guard),
            Guards::Many(guards) => guards.iter_mut().for_each(|(_, guard)| visit(guard)),
        }
    }

    pub(super) fn shard(&mut self, index: usize) -> EngineResult<&mut HotShard> {
        match self {
            Guards::One(held, guard) if *held == index => Ok(guard),
            // Held in ascending index order.
            Guards::Many(guards) => match guards.binary_search_by_key(&index, |(held, _)| *held) {
                Ok(position) => Ok(&mut guards[position].1),
                Err(_) => Err(EngineError::NotLocked),
            },
            Guards::One(..) => Err(EngineError::NotLocked),
        }
    }

    pub(super) fn holds(&self, index: usize) -> bool {
        match self {
            Guards::One(held, _) => *held == index,
            Guards::Many(guards) => guards
                .binary_search_by_key(&index, |(held, _)| *held)
                .is_ok(),
        }
    }

    pub(super) fn count(&self) -> usize {
        match self {
            Guards::One(..) => 1,
            Guards::Many(guards) => guards.len(),
        }
    }

    /// Adds a shard taken after the others (a script's transaction growing), keeping the
    /// index order.
    pub(super) fn insert(&mut self, index: usize, guard: MutexGuard<'a, HotShard>) {
        if let Guards::One(..) = self {
            let Guards::One(held, first) = std::mem::replace(self, Guards::Many(Vec::new())) else {
                unreachable!("just matched");
            };
            *self = Guards::Many(vec![(held, first)]);
        }
        let Guards::Many(guards) = self else {
            unreachable!("made Many above");
        };
        let position = guards.partition_point(|(held, _)| *held < index);
        guards.insert(position, (index, guard));
    }
}

/// Operations on keys whose shards are held: atomic with respect to every other caller
/// (I7). Single-key engine calls are one-shard transactions; MULTI/EXEC and multi-key
/// commands lock every shard they touch up front, in ascending order.
pub struct Txn<'e> {
    pub(super) engine: &'e Engine,
    pub(super) access: Access,
    pub(super) guards: Guards<'e>,
    /// This transaction's changes, appended to the WAL as one record when it ends, while
    /// its shards are still held (so the log orders every key's changes as they happened).
    pub(super) log: MutationBatch,
    /// A script's transaction: it takes the shard of a key it did not declare when it first
    /// touches it (`script_txn.rs`) instead of failing with `NotLocked`.
    pub(super) grows: bool,
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        if let Some(lsn) = self.engine.append_to_wal(&mut self.log) {
            self.guards.for_each(|shard| shard.stamp_pending(lsn));
        }
    }
}

impl<'e> Txn<'e> {
    pub(super) fn new(engine: &'e Engine, access: Access, guards: Guards<'e>) -> Self {
        Txn {
            engine,
            access,
            guards,
            log: MutationBatch::default(),
            grows: false,
        }
    }

    /// How this transaction may block (`Inline` for a script started on an async worker).
    pub fn access(&self) -> Access {
        self.access
    }

    /// Encodes the key and finds its (held) shard, and the log its changes go to.
    pub(super) fn locate(
        &mut self,
        db: u16,
        key: &[u8],
    ) -> EngineResult<(Vec<u8>, &mut HotShard, &mut MutationBatch)> {
        let encoded = self.engine.encode(db, key)?;
        let index = self.engine.hot.shard_of_encoded(&encoded);
        self.take_if_growing(index)?;
        Ok((encoded, self.guards.shard(index)?, &mut self.log))
    }

    /// As `locate`, with the key encoded on the stack when short (read paths).
    pub(super) fn locate_for_read(
        &mut self,
        db: u16,
        key: &[u8],
    ) -> EngineResult<(keys::EncodedKey, &mut HotShard)> {
        self.engine.check_db(db)?;
        let encoded = keys::EncodedKey::new(db, key);
        let index = self.engine.hot.shard_of_encoded(&encoded);
        self.take_if_growing(index)?;
        Ok((encoded, self.guards.shard(index)?))
    }

    pub fn get(&mut self, db: u16, key: &[u8]) -> EngineResult<Option<Bytes>> {
        self.get_with(db, key, None)
    }

    /// GET, with the key's cold value already read when `prefetched` is given.
    pub(super) fn get_with(
        &mut self,
        db: u16,
        key: &[u8],
        prefetched: Option<Option<Vec<u8>>>,
    ) -> EngineResult<Option<Bytes>> {
        let (engine, access) = (self.engine, self.access);
        let (encoded, shard) = self.locate_for_read(db, key)?;
        let now = engine.now_ms();
        let touch = engine.touch(now);
        let in_hot = match shard.get(&encoded, touch) {
            Some(entry) if !is_expired(entry.expire_at, now) => {
                engine.stats.hot_hits.add(1);
                return Ok(Some(entry.value.as_string()?.to_bytes()));
            }
            Some(_) => true,
            None => false,
        };
        let found = if in_hot {
            engine.resolve(access, shard, &encoded, now)?.found()
        } else {
            engine
                .load_from_cold(access, shard, &encoded, now, prefetched)?
                .found()
        };
        // Counted once the miss is answered: a `HotOnly` attempt that would block is
        // tried again elsewhere, and that attempt counts it.
        engine.stats.hot_misses.add(1);
        let value = found
            .then(|| {
                // The read is an access of the entry just promoted.
                let entry = shard.get(&encoded, touch).expect("resolve found it live");
                entry.value.as_string().map(StoredValue::to_bytes)
            })
            .transpose();
        engine.settle(access, shard);
        value
    }

    /// Value length and layout without copying the value (STRLEN, OBJECT, MEMORY USAGE).
    pub fn inspect(&mut self, db: u16, key: &[u8]) -> EngineResult<Option<KeyInfo>> {
        let (engine, access) = (self.engine, self.access);
        let (encoded, shard) = self.locate_for_read(db, key)?;
        if !engine
            .resolve(access, shard, &encoded, engine.now_ms())?
            .found()
        {
            return Ok(None);
        }
        let entry = live_entry(shard, &encoded);
        let info = KeyInfo {
            value_type: entry.value.value_type(),
            len: entry.value.len(),
            compressed: entry.value.is_compressed(),
            memory_bytes: encoded.len() + entry.value.memory_bytes() + hot::ENTRY_OVERHEAD_BYTES,
            idle_seconds: entry.access.idle_seconds(seconds(engine.now_ms())),
            lfu_counter: entry
                .access
                .decayed_counter(seconds(engine.now_ms()), engine.eviction.lfu()),
        };
        engine.settle(access, shard);
        Ok(Some(info))
    }

    pub fn exists(&mut self, db: u16, key: &[u8]) -> EngineResult<bool> {
        let (engine, access) = (self.engine, self.access);
        let (encoded, shard) = self.locate_for_read(db, key)?;
        let found = engine
            .resolve(access, shard, &encoded, engine.now_ms())?
            .found();
        engine.settle(access, shard);
        Ok(found)
    }

    pub fn ttl(&mut self, db: u16, key: &[u8]) -> EngineResult<KeyTtl> {
        let (engine, access) = (self.engine, self.access);
        let (encoded, shard) = self.locate_for_read(db, key)?;
        if !engine
            .resolve(access, shard, &encoded, engine.now_ms())?
            .found()
        {
            return Ok(KeyTtl::Missing);
        }
        let ttl = match live_entry(shard, &encoded).expire_at {
            NO_EXPIRY => KeyTtl::Persistent,
            at => KeyTtl::ExpiresAt(at),
        };
        engine.settle(access, shard);
        Ok(ttl)
    }

    pub fn set(
        &mut self,
        db: u16,
        key: &[u8],
        value: Bytes,
        options: SetOptions,
    ) -> EngineResult<SetOutcome> {
        let (engine, access) = (self.engine, self.access);
        let (encoded, shard, log) = self.locate(db, key)?;
        engine.check_room(access, shard)?;
        let now = engine.now_ms();
        let exists = engine.resolve(access, shard, &encoded, now)?.found();
        // Only what the new entry inherits; cloning the whole entry would cost a refcount
        // upgrade (an allocation) on every overwrite.
        let current = exists.then(|| {
            let entry = live_entry(shard, &encoded);
            (entry.expire_at, entry.cold)
        });
        let previous = match options.return_previous && exists {
            true => Some(live_entry(shard, &encoded).value.as_string()?.to_bytes()),
            false => None,
        };
        let allowed = match options.condition {
            SetCondition::Always => true,
            SetCondition::IfAbsent => !exists,
            SetCondition::IfPresent => exists,
        };
        if !allowed {
            return Ok(SetOutcome {
                written: false,
                previous,
            });
        }
        let expire_at = match options.expiry {
            SetExpiry::Clear => NO_EXPIRY,
            SetExpiry::Keep => current.map_or(NO_EXPIRY, |(expire_at, _)| expire_at),
            SetExpiry::At(at) if at <= now => {
                // A deadline already past: the write happens and the key is gone at once.
                if exists {
                    engine.delete_resolved(access, shard, log, &encoded)?;
                }
                return Ok(SetOutcome {
                    written: true,
                    previous,
                });
            }
            SetExpiry::At(at) => at,
        };
        let entry = HotEntry::written(
            engine.string_value(value),
            expire_at,
            current.map_or(ColdCopy::Absent, |(_, cold)| cold),
            seconds(now),
        );
        engine.store(shard, log, encoded, entry, !exists);
        engine.settle(access, shard);
        Ok(SetOutcome {
            written: true,
            previous,
        })
    }

    /// DEL / UNLINK of one key; true if it existed.
    pub fn delete(&mut self, db: u16, key: &[u8]) -> EngineResult<bool> {
        let (engine, access) = (self.engine, self.access);
        let (encoded, shard, log) = self.locate(db, key)?;
        if !engine
            .resolve(access, shard, &encoded, engine.now_ms())?
            .found()
        {
            return Ok(false);
        }
        engine.delete_resolved(access, shard, log, &encoded)?;
        Ok(true)
    }

    /// EXPIRE family with an absolute deadline; true if the deadline was applied (or the
    /// key deleted because the deadline is already past).
    pub fn expire_at(
        &mut self,
        db: u16,
        key: &[u8],
        at: ExpireAt,
        condition: ExpireCondition,
    ) -> EngineResult<bool> {
        let (engine, access) = (self.engine, self.access);
        let (encoded, shard, log) = self.locate(db, key)?;
        let now = engine.now_ms();
        if !engine.resolve(access, shard, &encoded, now)?.found() {
            return Ok(false);
        }
        let mut entry = live_entry(shard, &encoded).clone();
        let current = entry.expire_at;
        let allowed = match condition {
            ExpireCondition::Always => true,
            ExpireCondition::Nx => current == NO_EXPIRY,
            ExpireCondition::Xx => current != NO_EXPIRY,
            ExpireCondition::Gt => current != NO_EXPIRY && at > current,
            ExpireCondition::Lt => current == NO_EXPIRY || at < current,
            ExpireCondition::XxLt => current != NO_EXPIRY && at < current,
        };
        if !allowed {
            return Ok(false);
        }
        if at <= now {
            engine.delete_resolved(access, shard, log, &encoded)?;
            return Ok(true);
        }
        entry.expire_at = at;
        entry.dirty = true;
        engine.store(shard, log, encoded, entry, false);
        Ok(true)
    }

    /// PERSIST; true if a deadline was removed.
    pub fn persist(&mut self, db: u16, key: &[u8]) -> EngineResult<bool> {
        let (engine, access) = (self.engine, self.access);
        let (encoded, shard, log) = self.locate(db, key)?;
        if !engine
            .resolve(access, shard, &encoded, engine.now_ms())?
            .found()
        {
            return Ok(false);
        }
        let mut entry = live_entry(shard, &encoded).clone();
        if entry.expire_at == NO_EXPIRY {
            return Ok(false);
        }
        entry.expire_at = NO_EXPIRY;
        entry.dirty = true;
        engine.store(shard, log, encoded, entry, false);
        Ok(true)
    }

    /// Read-modify-write of one value (INCR, APPEND, SETRANGE, SETBIT, ...). `update` sees
    /// the current value (None if absent) and returns the new value (None = leave it) and
    /// its reply. The key keeps its time to live.
    pub fn update<T, E>(
        &mut self,
        db: u16,
        key: &[u8],
        update: impl FnOnce(Option<Bytes>) -> Result<(Option<Bytes>, T), E>,
    ) -> Result<T, E>
    where
        E: From<EngineError>,
    {
        let (engine, access) = (self.engine, self.access);
        let (encoded, shard, log) = self.locate(db, key)?;
        engine.check_room(access, shard)?;
        let exists = engine
            .resolve(access, shard, &encoded, engine.now_ms())?
            .found();
        let current = exists.then(|| live_entry(shard, &encoded).clone());
        let current_value = match &current {
            Some(entry) => Some(entry.value.as_string()?.to_bytes()),
            None => None,
        };
        let (new_value, reply) = update(current_value)?;
        if let Some(value) = new_value {
            let entry = HotEntry::written(
                engine.string_value(value),
                current.as_ref().map_or(NO_EXPIRY, |entry| entry.expire_at),
                current.map_or(ColdCopy::Absent, |entry| entry.cold),
                seconds(engine.now_ms()),
            );
            engine.store(shard, log, encoded, entry, !exists);
            engine.settle(access, shard);
        }
        Ok(reply)
    }

    /// RENAME / RENAMENX within one database.
    pub fn rename(
        &mut self,
        db: u16,
        source: &[u8],
        destination: &[u8],
        only_if_absent: bool,
    ) -> EngineResult<RenameOutcome> {
        let Some(moved) = self.peek_live(db, source)? else {
            return Err(EngineError::NoSuchKey);
        };
        if source == destination {
            // RENAMENX of a key onto itself reports "exists", as in Redis.
            return Ok(if only_if_absent {
                RenameOutcome::TargetExists
            } else {
                RenameOutcome::Renamed
            });
        }
        if only_if_absent && self.exists(db, destination)? {
            return Ok(RenameOutcome::TargetExists);
        }
        self.delete(db, destination)?;
        self.remove_live(db, source)?;
        self.put_moved(db, destination, moved)?;
        Ok(RenameOutcome::Renamed)
    }

    /// COPY src [DB dst_db] dst [REPLACE]; false if the source is missing or the
    /// destination exists without REPLACE.
    pub fn copy(
        &mut self,
        db: u16,
        source: &[u8],
        dst_db: u16,
        destination: &[u8],
        replace: bool,
    ) -> EngineResult<bool> {
        let Some(entry) = self.peek_live(db, source)? else {
            return Ok(false);
        };
        if db == dst_db && source == destination {
            return Ok(false);
        }
        if self.exists(dst_db, destination)? {
            if !replace {
                return Ok(false);
            }
            self.delete(dst_db, destination)?;
        }
        self.put_moved(dst_db, destination, entry)?;
        Ok(true)
    }

    /// MOVE key db: false if the key is missing or exists in the target database.
    pub fn move_key(&mut self, db: u16, key: &[u8], dst_db: u16) -> EngineResult<bool> {
        if !self.exists(db, key)? || self.exists(dst_db, key)? {
            return Ok(false);
        }
        let Some(entry) = self.peek_live(db, key)? else {
            return Ok(false);
        };
        self.remove_live(db, key)?;
        self.put_moved(dst_db, key, entry)?;
        Ok(true)
    }

    /// The live entry of `key` (cloned), resolving it first.
    fn peek_live(&mut self, db: u16, key: &[u8]) -> EngineResult<Option<HotEntry>> {
        let (engine, access) = (self.engine, self.access);
        let (encoded, shard, _) = self.locate(db, key)?;
        if !engine
            .resolve(access, shard, &encoded, engine.now_ms())?
            .found()
        {
            return Ok(None);
        }
        Ok(Some(live_entry(shard, &encoded).clone()))
    }

    /// Removes `key` from both tiers. It resolves again rather than trust an earlier
    /// resolve: a step in between (another key's promotion) may have evicted it.
    fn remove_live(&mut self, db: u16, key: &[u8]) -> EngineResult<()> {
        let (engine, access) = (self.engine, self.access);
        let (encoded, shard, log) = self.locate(db, key)?;
        if engine
            .resolve(access, shard, &encoded, engine.now_ms())?
            .found()
        {
            engine.delete_resolved(access, shard, log, &encoded)?;
        }
        Ok(())
    }

    /// Stores a moved or copied value under `key`, which the caller made absent: a new
    /// key, with no cold copy of its own.
    fn put_moved(&mut self, db: u16, key: &[u8], entry: HotEntry) -> EngineResult<()> {
        let (engine, access) = (self.engine, self.access);
        let (encoded, shard, log) = self.locate(db, key)?;
        let entry = HotEntry {
            dirty: true,
            cold: ColdCopy::Absent,
            ..entry
        };
        engine.store(shard, log, encoded, entry, true);
        engine.settle(access, shard);
        Ok(())
    }

    /// FLUSHDB: removes every key of `db` from both tiers. Needs every shard held.
    pub fn flushdb(&mut self, db: u16) -> EngineResult<()> {
        self.flush_databases(db..db + 1)
    }

    /// FLUSHALL. Needs every shard held.
    pub fn flushall(&mut self) -> EngineResult<()> {
        self.flush_databases(0..self.engine.databases())?;
        // No key is left in the cold tier, so every fingerprint can go (FLUSHDB cannot do
        // this: the filter does not know which database a fingerprint belongs to).
        self.engine.filter.clear();
        self.engine.recompute_shard_limit();
        Ok(())
    }

    pub(super) fn flush_databases(&mut self, dbs: std::ops::Range<u16>) -> EngineResult<()> {
        let engine = self.engine;
        if dbs.end > engine.databases() {
            return Err(EngineError::DbIndexOutOfRange);
        }
        self.take_all_if_growing()?;
        let all: Vec<usize> = (0..engine.hot.shard_count()).collect();
        for index in &all {
            self.guards.shard(*index)?;
        }
        let (from, to) = (db_prefix(dbs.start), db_prefix(dbs.end));
        if engine.logging() {
            // The range delete below cannot wait for the transaction's end like other cold
            // writes (tombstones would be one per cold key): the flush's record is appended
            // and made durable first, ending the transaction's record here.
            self.log.flush(dbs.start, dbs.end);
            let Some(lsn) = engine.append_to_wal(&mut self.log) else {
                return Err(LogError::FlushNotLogged.into());
            };
            self.guards.for_each(|shard| shard.stamp_pending(lsn));
            engine.wait_wal_durable(lsn)?;
        }
        engine.cold.write(vec![
            ColdOp::DeleteRange {
                space: Space::Data,
                from: from.clone(),
                to: to.clone(),
            },
            ColdOp::DeleteRange {
                space: Space::Expiry,
                from: from.clone(),
                to: to.clone(),
            },
            // Fields of collections stored member by member (I2: none outlives its key).
            ColdOp::DeleteRange {
                space: Space::Members,
                from: from.clone(),
                to: to.clone(),
            },
        ])?;
        for index in all {
            let shard = self.guards.shard(index)?;
            for key in shard.keys_in_databases(dbs.start, dbs.end) {
                shard.remove(&key);
            }
        }
        for index in 0..engine.hot.shard_count() {
            self.guards
                .shard(index)?
                .drop_tombstones_in_databases(dbs.start, dbs.end);
        }
        for db in dbs {
            engine.key_counts[usize::from(db)].reset();
        }
        engine.watches.touch_prefix_range(&from, &to);
        Ok(())
    }

    pub fn dbsize(&self, db: u16) -> EngineResult<u64> {
        self.engine.dbsize(db)
    }
}

impl Engine {
    /// A string value as the hot tier holds it (compressed when that pays, per the config).
    fn string_value(&self, value: Bytes) -> Value {
        Value::String(StoredValue::new(value, self.config.compress_min_bytes))
    }
}
