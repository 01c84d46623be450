//! The tiered engine: the one API every command goes through.
//!
//! A key's value is its hot entry if present, else its live cold entry, else absent (I1).
//! Every operation locks the key's hot shard, *resolves* the key (promoting a live cold copy
//! into the hot tier, or reclaiming a dead one), and then works on the hot entry alone. The
//! shard lock is held across any cold-tier write for that shard, which keeps per-key order
//! between the tiers (no demotion can land after a later delete).
//!
//! The engine never touches sockets or async code. Calls take an [`Access`]: with
//! `Access::HotOnly` the call fails with [`EngineError::WouldBlock`] *before changing anything*
//! if it would need disk I/O or a contended lock, so the server can run the fast path on its
//! async workers and retry the rest on a blocking pool with `Access::MayBlock`. Work that
//! cannot be retried (a script under way) runs with `Access::Inline`: it leaves the async
//! worker before it blocks (`inline.rs`).

pub mod budget;
pub mod cold;
pub mod entry;
pub mod eviction;
pub mod filter;
pub mod glob;
pub mod hot;
pub mod keys;
pub mod mutation;
pub mod slot;
pub mod stats;
pub mod types;
pub mod wal;
pub mod watch;

mod api;
mod background;
mod cold_batch;
mod demote;
mod disk_health;
mod durability;
mod expiry;
mod hot_tier;
mod inline;
mod open;
mod replication;
mod report;
mod resolve;
mod room;
mod scan;
mod script_txn;
mod server_records;
mod shared_filter;
mod single_key;
mod tombstones;
mod txn;
mod value_txn;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::config::EngineConfig;
use budget::MemoryBudget;
use cold::SharedClock;
use hot_tier::HotTier;
use shared_filter::SharedFilter;
use stats::{Counter, EngineStats};
use watch::WatchRegistry;

pub use api::{
    Access, EngineError, EngineResult, ExpireCondition, KeyInfo, KeyTtl, LogError, RenameOutcome,
    ScanPage, SetCondition, SetExpiry, SetOptions, SetOutcome, TierReport,
};
pub use background::BackgroundTasks;
pub use cold_batch::ColdBatch;
pub use disk_health::{DiskHealthReport, OomRefusal};
pub use durability::{
    checkpoints_dir, list_checkpoints, read_checkpoint_record, read_saved_state, CheckpointInfo,
    CheckpointReason, CheckpointRecord, Durability, PersistenceReport, StartupReport,
};
pub use entry::ExpireAt as Deadline;
pub use inline::{leave_async_worker, set_leave_async_worker};
pub use scan::{scan_to_end, DEFAULT_SCAN_COUNT, KEYS_SCAN_COUNT};
pub use txn::Txn;

/// The tiered engine. Its state is split by owner: the hot tier (shards, limits, demoter
/// wake-up), the cold tier, the shared filter, the key counts, and durability; each
/// concern's `impl Engine` block lives in the file named after it (see the module list).
pub struct Engine {
    config: EngineConfig,
    budget: MemoryBudget,
    hot: HotTier,
    cold: cold::ColdTier,
    filter: SharedFilter,
    /// Exact live key count per database (DBSIZE), changed on every existence change.
    key_counts: Box<[Counter]>,
    stats: EngineStats,
    clock: Arc<SharedClock>,
    /// Where the active expirer continues in each database's expiry index.
    expiry_cursors: Mutex<Vec<Vec<u8>>>,
    watches: WatchRegistry,
    /// Whether the background expirer runs (DEBUG SET-ACTIVE-EXPIRE turns it off so tests
    /// can watch keys expire lazily).
    active_expiry: AtomicBool,
    /// The write-ahead log, attached once recovery has replayed it (never during replay,
    /// so replayed mutations are not logged again).
    wal: OnceLock<Arc<wal::Wal>>,
    /// Checkpoint policy, WAL settings, and what checkpoints and startup did.
    durability: durability::State,
    /// The eviction policy's live settings and the disk budget.
    eviction: eviction::EvictionState,
    /// Replica mode and the WAL records replicas still need.
    replication: replication::ReplicationState,
}

impl Engine {
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    pub fn databases(&self) -> u16 {
        self.config.databases
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn clock(&self) -> &Arc<SharedClock> {
        &self.clock
    }

    /// Turns the background expirer on or off (DEBUG SET-ACTIVE-EXPIRE).
    pub fn set_active_expiry(&self, on: bool) {
        self.active_expiry.store(on, Ordering::Relaxed);
    }

    /// Takes the eviction settings and disk budget of `config` (CONFIG SET): the policy,
    /// its knobs and `maxdisk` apply from the next access and the next budget pass.
    pub fn apply_eviction_config(&self, config: &EngineConfig) {
        self.eviction.apply(config);
    }

    pub fn eviction_policy(&self) -> crate::config::EvictionPolicy {
        self.eviction.policy()
    }

    /// An access at `now_ms` for an entry's stamp, with the LFU knobs in force.
    pub(super) fn touch(&self, now_ms: u64) -> hot::Touch {
        hot::Touch {
            now_s: seconds(now_ms),
            lfu: self.eviction.lfu(),
        }
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    pub(super) fn check_db(&self, db: u16) -> EngineResult<()> {
        if db < self.databases() {
            Ok(())
        } else {
            Err(EngineError::DbIndexOutOfRange)
        }
    }

    pub(super) fn encode(&self, db: u16, key: &[u8]) -> EngineResult<Vec<u8>> {
        self.check_db(db)?;
        Ok(keys::encode_key(db, key))
    }

    pub(super) fn count_key(&self, db: u16, delta: i64) {
        self.key_counts[usize::from(db)].add(delta);
    }
}

/// Unix seconds from Unix milliseconds, for access times.
pub(super) fn seconds(ms: u64) -> u32 {
    (ms / 1000) as u32
}

/// `[db]`: the prefix of every data and expiry-index key of one database.
pub(super) fn db_prefix(db: u16) -> Vec<u8> {
    db.to_be_bytes().to_vec()
}
