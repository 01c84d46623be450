//! Removed keys whose cold copies wait for the WAL: with the WAL on, a removal's cold delete
//! is applied only once the WAL holds the removal durably, so a crash can never lose a value
//! whose removal was not acknowledged (I2, I5). Until then the key reads as absent.

use super::api::{EngineResult, LogError};
use super::filter::hash_key;
use super::hot::{HotShard, PENDING_LSN};
use super::resolve::push_cold_delete;
use super::Engine;

impl Engine {
    /// Deletes the cold copies of removed keys once the WAL holds their removal durably.
    /// With `wait`, first waits for the WAL to cover every tombstone whose transaction has
    /// ended (a blocking fsync wait: background and blocking threads only).
    pub(super) fn apply_tombstones(&self, shard: &mut HotShard, wait: bool) -> EngineResult<()> {
        if !shard.has_tombstones() {
            return Ok(());
        }
        let Some(wal) = self.wal.get() else {
            return Ok(());
        };
        if wait {
            let newest = shard.max_tombstone_lsn();
            if newest > wal.durable_lsn() {
                wal.wait_durable(newest)?;
            }
        }
        let due = shard.take_due_tombstones(wal.durable_lsn());
        if due.is_empty() {
            return Ok(());
        }
        let mut ops = Vec::new();
        for (key, tombstone) in &due {
            push_cold_delete(&mut ops, key, tombstone.expire_at);
        }
        if let Err(err) = self.cold.write(ops) {
            for (key, tombstone) in due {
                shard.add_tombstone(key, tombstone);
            }
            return Err(err.into());
        }
        let hashes: Vec<u64> = due.iter().map(|(key, _)| hash_key(key)).collect();
        self.filter.forget(&hashes);
        Ok(())
    }

    /// Whether the WAL is durable up to `lsn` (always, without the WAL).
    pub(super) fn wal_durable_at(&self, lsn: u64) -> bool {
        self.wal.get().is_none_or(|wal| lsn <= wal.durable_lsn())
    }

    /// Waits until the WAL is durable up to `lsn` (no-op without the WAL): a cold write that
    /// carries a change must never be on disk before the change's WAL record (I5).
    pub(super) fn wait_wal_durable(&self, lsn: u64) -> EngineResult<()> {
        if lsn == PENDING_LSN {
            // Only an append that failed leaves a change unstamped once its transaction ended.
            return Err(LogError::ChangeNeverLogged.into());
        }
        if let Some(wal) = self.wal.get() {
            if lsn > wal.durable_lsn() {
                wal.wait_durable(lsn)?;
            }
        }
        Ok(())
    }
}
