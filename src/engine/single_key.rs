//! The single-key API: each call is its own one-shard transaction (`Engine::single`), plus
//! the calls that open transactions over several shards and WATCH. The work itself is in
//! `txn.rs`, so a key behaves the same alone and inside MULTI/EXEC.

use bytes::Bytes;

use super::api::{
    Access, EngineError, EngineResult, ExpireCondition, KeyInfo, KeyTtl, RenameOutcome, SetOptions,
    SetOutcome,
};
use super::entry::ExpireAt;
use super::txn::{Guards, Txn};
use super::watch::WatchFlag;
use super::Engine;

impl Engine {
    pub fn get(&self, access: Access, db: u16, key: &[u8]) -> EngineResult<Option<Bytes>> {
        self.single(access, db, key)?.get(db, key)
    }

    pub fn exists(&self, access: Access, db: u16, key: &[u8]) -> EngineResult<bool> {
        self.single(access, db, key)?.exists(db, key)
    }

    /// See [`Txn::inspect`].
    pub fn inspect(&self, access: Access, db: u16, key: &[u8]) -> EngineResult<Option<KeyInfo>> {
        self.single(access, db, key)?.inspect(db, key)
    }

    pub fn ttl(&self, access: Access, db: u16, key: &[u8]) -> EngineResult<KeyTtl> {
        self.single(access, db, key)?.ttl(db, key)
    }

    pub fn set(
        &self,
        access: Access,
        db: u16,
        key: &[u8],
        value: Bytes,
        options: SetOptions,
    ) -> EngineResult<SetOutcome> {
        self.single_with_room(access, db, key)?
            .set(db, key, value, options)
    }

    /// DEL / UNLINK of one key; true if it existed.
    pub fn delete(&self, access: Access, db: u16, key: &[u8]) -> EngineResult<bool> {
        self.single(access, db, key)?.delete(db, key)
    }

    pub fn expire_at(
        &self,
        access: Access,
        db: u16,
        key: &[u8],
        at: ExpireAt,
        condition: ExpireCondition,
    ) -> EngineResult<bool> {
        self.single(access, db, key)?
            .expire_at(db, key, at, condition)
    }

    pub fn persist(&self, access: Access, db: u16, key: &[u8]) -> EngineResult<bool> {
        self.single(access, db, key)?.persist(db, key)
    }

    /// See [`Txn::update`].
    pub fn update<T, E>(
        &self,
        access: Access,
        db: u16,
        key: &[u8],
        update: impl FnOnce(Option<Bytes>) -> Result<(Option<Bytes>, T), E>,
    ) -> Result<T, E>
    where
        E: From<EngineError>,
    {
        self.single_with_room(access, db, key)?
            .update(db, key, update)
    }

    /// RENAME / RENAMENX (always `MayBlock`: it is a two-key transaction).
    pub fn rename(
        &self,
        access: Access,
        db: u16,
        source: &[u8],
        destination: &[u8],
        only_if_absent: bool,
    ) -> EngineResult<RenameOutcome> {
        access.prepare_to_block()?;
        self.transaction_for_keys(&[source, destination])?.rename(
            db,
            source,
            destination,
            only_if_absent,
        )
    }

    /// FLUSHDB: removes every key of `db` from both tiers.
    pub fn flushdb(&self, access: Access, db: u16) -> EngineResult<()> {
        access.prepare_to_block()?;
        self.transaction_all()?.flushdb(db)
    }

    /// FLUSHALL.
    pub fn flushall(&self, access: Access) -> EngineResult<()> {
        access.prepare_to_block()?;
        self.transaction_all()?.flushall()
    }

    pub fn dbsize(&self, db: u16) -> EngineResult<u64> {
        let count = self
            .key_counts
            .get(usize::from(db))
            .ok_or(EngineError::DbIndexOutOfRange)?;
        Ok(count.get().max(0) as u64)
    }

    /// A transaction over the shards of `keys` (locked in ascending order; always
    /// `MayBlock`). A key's shard does not depend on its database, so keys of several
    /// databases (COPY ... DB, MOVE) can share one transaction.
    /// `Busy` if another command holds one of the shards past `busy-reply-threshold`.
    pub fn transaction_for_keys(&self, keys: &[&[u8]]) -> EngineResult<Txn<'_>> {
        let indexes: Vec<usize> = keys
            .iter()
            .map(|key| self.hot.shard_of_user_key(key))
            .collect();
        Ok(Txn::new(
            self,
            Access::MayBlock,
            Guards::Many(self.hot.lock_many_for_request(&indexes)?),
        ))
    }

    /// A transaction over every shard (FLUSHALL, KEYS inside EXEC, ...).
    pub fn transaction_all(&self) -> EngineResult<Txn<'_>> {
        Ok(Txn::new(
            self,
            Access::MayBlock,
            Guards::Many(self.hot.lock_all_for_request()?),
        ))
    }

    /// Takes `lock` as a request takes a shard another command holds: waiting at most
    /// `busy-reply-threshold`, then `Busy` (the scripts' one-at-a-time turn).
    pub fn lock_as_request<'a, T>(
        &self,
        lock: &'a parking_lot::Mutex<T>,
    ) -> EngineResult<parking_lot::MutexGuard<'a, T>> {
        match self.hot.request_deadline() {
            None => Ok(lock.lock()),
            Some(deadline) => lock
                .try_lock_until(deadline)
                .ok_or_else(|| self.hot.busy_error()),
        }
    }

    /// How long a request waits for shards another command holds before it is answered
    /// `Busy` (`busy-reply-threshold`; zero = no limit).
    pub fn set_busy_reply_threshold(&self, limit: std::time::Duration) {
        self.hot.set_busy_after(limit);
    }

    /// WATCH: `flag` is set when the key next changes in any way.
    pub fn watch(&self, db: u16, key: &[u8], flag: &WatchFlag) -> EngineResult<()> {
        self.watches.watch(self.encode(db, key)?, flag);
        Ok(())
    }

    pub fn unwatch(&self, db: u16, key: &[u8], flag: &WatchFlag) {
        if let Ok(encoded) = self.encode(db, key) {
            self.watches.unwatch(&encoded, flag);
        }
    }

    /// A blocking transaction over `key`'s shard, waiting for it until `deadline` at most.
    pub(super) fn single_until(
        &self,
        db: u16,
        key: &[u8],
        deadline: Option<std::time::Instant>,
    ) -> EngineResult<Txn<'_>> {
        self.check_db(db)?;
        let index = self.hot.shard_of_user_key(key);
        let guard = self.hot.lock_until(index, deadline)?;
        Ok(Txn::new(self, Access::MayBlock, Guards::One(index, guard)))
    }

    pub(super) fn single(&self, access: Access, db: u16, key: &[u8]) -> EngineResult<Txn<'_>> {
        self.check_db(db)?;
        let index = self.hot.shard_of_user_key(key);
        let guard = self.hot.lock(access, index)?;
        Ok(Txn::new(self, access, Guards::One(index, guard)))
    }
}
