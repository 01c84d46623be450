//! A script's transaction. It starts holding the shards of the keys the script declares,
//! taken in ascending order as every transaction takes them, and takes the shard of any
//! other key when the script first touches it (Redis lets a script use keys it did not
//! declare; commands over every shard take the rest). Whatever it took stays held until it
//! ends, so the script is atomic however it found its keys (two-phase locking). A late shard
//! may be out of index order, so it is waited for only until a deadline: another
//! transaction holding it and waiting for one of ours gives up at its own deadline
//! (`busy-reply-threshold`), and this one at `busy-reply-threshold` or, with no threshold,
//! `LATE_SHARD_WAIT`; two transactions never wait on each other for ever.

use std::time::{Duration, Instant};

use super::api::{Access, EngineResult};
use super::inline::start_inline;
use super::txn::{Guards, Txn};
use super::Engine;

/// How long a script waits for the shard of a key it did not declare when
/// `busy-reply-threshold` sets no limit (Redis's default threshold).
const LATE_SHARD_WAIT: Duration = Duration::from_secs(5);

impl Engine {
    /// A transaction for a script declaring `keys`. With `Access::HotOnly` (the script is
    /// offered to an async worker) each shard is taken as a hot-path call takes one,
    /// `WouldBlock` with nothing held if one stays busy, and the transaction is then
    /// `Access::Inline`; otherwise it waits as any request does (`Busy` past
    /// `busy-reply-threshold`).
    pub fn transaction_for_script(&self, access: Access, keys: &[&[u8]]) -> EngineResult<Txn<'_>> {
        let mut indexes: Vec<usize> = keys
            .iter()
            .map(|key| self.hot.shard_of_user_key(key))
            .collect();
        let (guards, access) = match access {
            Access::HotOnly => {
                indexes.sort_unstable();
                indexes.dedup();
                let guards = indexes
                    .into_iter()
                    .map(|index| Ok((index, self.hot.lock(Access::HotOnly, index)?)))
                    .collect::<EngineResult<Vec<_>>>()?;
                start_inline();
                (guards, Access::Inline)
            }
            Access::Inline | Access::MayBlock => {
                (self.hot.lock_many_for_request(&indexes)?, access)
            }
        };
        let mut txn = Txn::new(self, access, Guards::Many(guards));
        txn.grows = true;
        Ok(txn)
    }
}

impl Txn<'_> {
    /// In a script's transaction, takes shard `index` if it is not held yet.
    pub(super) fn take_if_growing(&mut self, index: usize) -> EngineResult<()> {
        if !self.grows || self.guards.holds(index) {
            return Ok(());
        }
        let hot = &self.engine.hot;
        let guard = match hot.shards()[index].try_lock() {
            Some(guard) => guard,
            None => {
                self.access.prepare_to_block()?;
                let deadline = hot
                    .request_deadline()
                    .unwrap_or_else(|| Instant::now() + LATE_SHARD_WAIT);
                hot.lock_until(index, Some(deadline))?
            }
        };
        self.guards.insert(index, guard);
        Ok(())
    }

    /// In a script's transaction, takes every shard not held yet (a command over all of
    /// them: KEYS, SCAN, FLUSHDB, ...).
    pub(super) fn take_all_if_growing(&mut self) -> EngineResult<()> {
        if self.grows && self.guards.count() < self.engine.hot.shard_count() {
            for index in 0..self.engine.hot.shard_count() {
                self.take_if_growing(index)?;
            }
        }
        Ok(())
    }
}
