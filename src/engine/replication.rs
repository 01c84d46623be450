//! The engine's side of replication (DESIGN.md §9): what a primary reads for a full sync, how
//! a replica applies what it receives, and how long the WAL keeps records replicas need.
//!
//! A replica's WAL mirrors its primary's: record N of the replica's log is record N of the
//! primary's, byte for byte, so the replication offset is the LSN on every node, a replica can
//! serve its own replicas from its log, and a promoted replica goes on numbering where its
//! primary stopped (PSYNC2). To keep that true the replica's engine logs nothing of its own
//! (`replica mode`): it applies each record through the same path as WAL replay at startup
//! and then appends the primary's bytes unchanged. Expiry and demotion were never logged, and
//! clients' writes are refused with -READONLY above this layer.
//!
//! Why replay semantics are safe on a replica: replay writes removals straight to the cold
//! tier instead of waiting for the WAL (no tombstones), so after a crash the cold tier may be
//! ahead of the replica's log. Recovery then replays the log over a newer cold tier (as after
//! a fuzzy checkpoint) and the primary resends every record after the log's end, which brings
//! each key to the primary's value again; nothing is acknowledged to clients by a replica.
//!
//! A full sync snapshot is read key by key through SCAN's order (a key present for the whole
//! scan is always returned), each key read under its shard's lock from the hot entry or else
//! the cold copy, without promoting it. Records after the snapshot's LSN are streamed after
//! it, and every record is a whole-key or whole-element change, so keys read later than the
//! LSN converge to the primary's state once those records are applied.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::api::{Access, EngineResult, LogError};
use super::entry::{decode_cold_value, is_expired, ColdValue};
use super::filter::hash_key;
use super::mutation::MutationBatch;
use super::txn::{Guards, Txn};
use super::wal::Lsn;
use super::{CheckpointReason, Engine};

/// Replication's engine state.
pub(super) struct ReplicationState {
    /// This engine applies a primary's records and logs nothing of its own.
    replica: AtomicBool,
    /// The oldest LSN a replica stream still needs (`u64::MAX`: none): checkpoints keep every
    /// segment from here on, so a slow transfer never loops into another full sync.
    pinned_from: AtomicU64,
    /// WAL bytes checkpoints keep for partial resyncs (`repl-backlog-size`).
    backlog_bytes: AtomicU64,
}

impl Default for ReplicationState {
    fn default() -> Self {
        ReplicationState {
            replica: AtomicBool::new(false),
            pinned_from: AtomicU64::new(u64::MAX),
            backlog_bytes: AtomicU64::new(0),
        }
    }
}

impl ReplicationState {
    pub(super) fn is_replica(&self) -> bool {
        self.replica.load(Ordering::Acquire)
    }

    /// Where checkpoints may delete the log up to (exclusive), given a checkpoint at `lsn`.
    pub(super) fn removable_before(&self, lsn: Lsn) -> (Lsn, u64) {
        let pinned = self.pinned_from.load(Ordering::Acquire);
        (
            (lsn + 1).min(pinned),
            self.backlog_bytes.load(Ordering::Relaxed),
        )
    }
}

impl Engine {
    /// Switches replica mode: on, the engine logs nothing of its own and takes records only
    /// through [`Engine::apply_replicated`]; off (a promotion), it logs its writes again,
    /// numbering on from the last replicated record.
    pub fn set_replica_mode(&self, on: bool) -> EngineResult<()> {
        if on && self.wal.get().is_none() {
            return Err(LogError::ReplicationNeedsWal.into());
        }
        self.replication.replica.store(on, Ordering::Release);
        Ok(())
    }

    pub fn is_replica(&self) -> bool {
        self.replication.is_replica()
    }

    /// Keeps every WAL record from `lsn` on through checkpoints (None: no pin).
    pub fn pin_wal_from(&self, lsn: Option<Lsn>) {
        self.replication
            .pinned_from
            .store(lsn.unwrap_or(u64::MAX), Ordering::Release);
    }

    /// The WAL bytes checkpoints keep for partial resyncs (`repl-backlog-size`).
    pub fn set_replication_backlog(&self, bytes: u64) {
        self.replication
            .backlog_bytes
            .store(bytes, Ordering::Relaxed);
    }

    /// Applies the primary's record `lsn` and appends it, unchanged, to this replica's log.
    /// Records must come in order, each the successor of the log's last.
    pub fn apply_replicated(&self, lsn: Lsn, payload: &[u8]) -> EngineResult<()> {
        let wal = self.wal.get().ok_or(LogError::ReplicationNeedsWal)?;
        let expected = wal.last_lsn() + 1;
        if lsn != expected || payload.is_empty() {
            return Err(LogError::ReplicaOutOfStep { expected, got: lsn }.into());
        }
        // Applied first: a checkpoint at the log's last LSN must find that record's effect in
        // the hot tier (DESIGN §4, step 1).
        self.apply_record(lsn, payload)?;
        let appended = wal.append(payload)?;
        debug_assert_eq!(appended, lsn, "the replica is the log's only appender");
        Ok(())
    }

    /// Starts a full sync at the primary's LSN `lsn`: every key goes (unlogged), the log is
    /// emptied to go on after `lsn`, and a checkpoint at `lsn` follows at once, so the cold
    /// tier never names a checkpoint LSN the new log lacks (which would stop the next start).
    pub fn begin_full_sync(&self, lsn: Lsn) -> EngineResult<()> {
        let wal = self.wal.get().ok_or(LogError::ReplicationNeedsWal)?;
        if !self.is_replica() {
            return Err(LogError::NotAReplica.into());
        }
        self.reset_then_checkpoint(|| {
            {
                let mut txn = Txn::new(self, Access::MayBlock, Guards::Many(self.hot.lock_all()));
                txn.flushall()?;
            }
            wal.restart_at(lsn)?;
            Ok(())
        })
    }

    /// Applies one batch of a full sync's snapshot (not logged: the checkpoint that ends the
    /// sync makes it durable).
    pub fn load_snapshot_batch(&self, payload: &[u8]) -> EngineResult<()> {
        self.apply_record(0, payload)
    }

    /// Ends a full sync: a checkpoint makes the snapshot durable at the log's position, so a
    /// restart finds it and replays only the records after it.
    pub fn finish_full_sync(&self) -> EngineResult<()> {
        self.checkpoint(CheckpointReason::Requested)?;
        Ok(())
    }

    /// One step of a full sync's snapshot: the keys of `db` on the SCAN page at `cursor`,
    /// appended to `out` as whole-key puts. Returns the next cursor (0: `db` is done).
    pub fn snapshot_page(
        &self,
        db: u16,
        cursor: u64,
        count: usize,
        out: &mut MutationBatch,
    ) -> EngineResult<u64> {
        let page = self.scan(Access::MayBlock, db, cursor, None, count)?;
        let now = self.now_ms();
        for key in &page.keys {
            let encoded = self.encode(db, key)?;
            self.snapshot_key(&encoded, now, out)?;
        }
        Ok(page.cursor)
    }

    /// Appends the key's current value to `out`, read under its shard's lock from the hot
    /// entry or else the cold copy (not promoted: a full sync must not churn the hot tier).
    fn snapshot_key(&self, encoded: &[u8], now: u64, out: &mut MutationBatch) -> EngineResult<()> {
        let shard = self.hot.lock_encoded(encoded);
        if let Some(entry) = shard.peek(encoded) {
            if !is_expired(entry.expire_at, now) {
                out.put(encoded, &entry.value, entry.expire_at);
            }
            return Ok(());
        }
        if shard.has_tombstone(encoded) || !self.filter.may_contain(hash_key(encoded)) {
            return Ok(());
        }
        let Some(raw) = self.cold.get(encoded)? else {
            return Ok(());
        };
        if let ColdValue::Live {
            value, expire_at, ..
        } = decode_cold_value(&raw)?
        {
            if !is_expired(expire_at, now) {
                out.put(encoded, &value, expire_at);
            }
        }
        Ok(())
    }
}
