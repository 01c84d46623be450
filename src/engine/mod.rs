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
//! async workers and retry the rest on a blocking pool with `Access::MayBlock`.

pub mod budget;
pub mod cold;
pub mod entry;
pub mod filter;
pub mod glob;
pub mod hot;
pub mod keys;
pub mod mutation;
pub mod slot;
pub mod stats;
pub mod wal;
pub mod watch;

mod durability;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};

use crate::config::{ColdBackend, EngineConfig};
use budget::MemoryBudget;
use cold::{ColdError, ColdOp, ColdStore, MemCold, RocksCold, RocksSizing, SharedClock, Space};
use entry::{decode_cold_value, encode_cold_value, ColdValue, CorruptValue, ExpireAt, StoredValue};
use entry::{is_expired, NO_EXPIRY};
use filter::{hash_key, CuckooFilter, FilterConfig, InsertOutcome};
use hot::{ColdCopy, HotEntry, HotKey, HotShard, Tombstone, PENDING_LSN};
use mutation::MutationBatch;
use stats::{Counter, EngineStats, StatsSnapshot};
use watch::{WatchFlag, WatchRegistry};

pub use durability::{
    checkpoints_dir, list_checkpoints, read_checkpoint_record, read_saved_state, CheckpointInfo,
    CheckpointReason, CheckpointRecord, Durability, PersistenceReport, StartupReport,
};

pub use entry::ExpireAt as Deadline;

/// Whether a call may block its thread on disk I/O or a contended lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Fail with `WouldBlock` instead of blocking; nothing has changed when it does.
    HotOnly,
    /// Blocking is fine (a blocking-pool thread, a background task, a test).
    MayBlock,
}

#[derive(Debug)]
#[non_exhaustive]
pub enum EngineError {
    /// The call needs disk I/O or a contended lock and was made with `Access::HotOnly`.
    WouldBlock,
    /// RENAME of a key that does not exist.
    NoSuchKey,
    /// A database index outside `0..databases`.
    DbIndexOutOfRange,
    Cold(ColdError),
    Corrupt(CorruptValue),
    /// The configuration cannot be used.
    Config(String),
    /// A transaction touched a key whose shard it did not lock (a bug in the caller's key
    /// list, reported instead of deadlocking or panicking).
    NotLocked,
    /// The write-ahead log failed (or refuses to open); the message names the file.
    Wal(String),
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::WouldBlock => write!(f, "operation would block"),
            EngineError::NoSuchKey => write!(f, "no such key"),
            EngineError::DbIndexOutOfRange => write!(f, "DB index is out of range"),
            EngineError::Cold(err) => write!(f, "{err}"),
            EngineError::Corrupt(err) => write!(f, "{err}"),
            EngineError::Config(err) => write!(f, "invalid configuration: {err}"),
            EngineError::NotLocked => {
                write!(f, "internal error: key outside the transaction's shards")
            }
            EngineError::Wal(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for EngineError {}

impl From<ColdError> for EngineError {
    fn from(err: ColdError) -> Self {
        EngineError::Cold(err)
    }
}

impl From<wal::WalError> for EngineError {
    fn from(err: wal::WalError) -> Self {
        EngineError::Wal(err.to_string())
    }
}

impl From<CorruptValue> for EngineError {
    fn from(err: CorruptValue) -> Self {
        EngineError::Corrupt(err)
    }
}

pub type EngineResult<T> = Result<T, EngineError>;

/// SET's NX / XX.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetCondition {
    Always,
    /// NX: only if the key does not exist.
    IfAbsent,
    /// XX: only if the key exists.
    IfPresent,
}

/// What SET does to the key's time to live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetExpiry {
    /// Plain SET: the key no longer expires.
    Clear,
    /// KEEPTTL.
    Keep,
    /// EX/PX/EXAT/PXAT, already converted to an absolute time.
    At(ExpireAt),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetOptions {
    pub condition: SetCondition,
    pub expiry: SetExpiry,
    /// SET ... GET: return the previous value.
    pub return_previous: bool,
}

impl Default for SetOptions {
    fn default() -> Self {
        SetOptions {
            condition: SetCondition::Always,
            expiry: SetExpiry::Clear,
            return_previous: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetOutcome {
    /// False when NX/XX stopped the write.
    pub written: bool,
    /// The previous value, when `return_previous` was asked for.
    pub previous: Option<Bytes>,
}

/// EXPIRE's NX / XX / GT / LT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpireCondition {
    Always,
    /// Only if the key has no expiry.
    Nx,
    /// Only if the key has an expiry.
    Xx,
    /// Only if the new expiry is later (no expiry counts as infinite).
    Gt,
    /// Only if the new expiry is earlier (no expiry counts as infinite).
    Lt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyTtl {
    Missing,
    Persistent,
    ExpiresAt(ExpireAt),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenameOutcome {
    Renamed,
    /// RENAMENX found the destination taken.
    TargetExists,
}

/// One SCAN step: the next cursor (0 = done) and the keys found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanPage {
    pub cursor: u64,
    pub keys: Vec<Bytes>,
}

/// Calls its argument once per hot shard (the shards being locked one at a time, or held
/// by a transaction).
type ShardVisitor<'a> = dyn FnMut(&mut dyn FnMut(&HotShard)) + 'a;

/// Point-in-time figures for INFO `# Tiers` / `# Memory` and metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct TierReport {
    pub stats: StatsSnapshot,
    pub hot_used_bytes: usize,
    pub hot_limit_bytes: usize,
    pub hot_keys: usize,
    pub cold_disk_bytes: u64,
    /// RocksDB's estimate of the keys it holds (includes copies of promoted keys).
    pub cold_keys_estimate: u64,
    pub cold_memory_bytes: usize,
    pub filter_used_bytes: usize,
    pub filter_load_factor: f64,
    pub filter_fingerprints: usize,
    pub filter_bypassed: bool,
    pub keys_per_db: Vec<u64>,
}

impl TierReport {
    /// Memory the engine accounts for: hot tier + RocksDB cache/memtables + filter.
    pub fn accounted_bytes(&self) -> usize {
        self.hot_used_bytes + self.cold_memory_bytes + self.filter_used_bytes
    }
}

/// Entries written to the cold tier per WriteBatch on demotion.
const DEMOTION_BATCH_ENTRIES: usize = 256;
/// How long an `HotOnly` call waits for a busy shard before handing the work to a blocking
/// thread: long enough to ride out another hot-path holder, far shorter than a disk read.
const HOT_LOCK_WAIT: Duration = Duration::from_micros(50);
/// Expiry work per shard / per database in one active-expiry cycle.
const EXPIRY_BATCH: usize = 128;
/// Keys read per SCAN page when COUNT is not given (Redis's default).
pub const DEFAULT_SCAN_COUNT: usize = 10;

/// Keys read from the cold tier in one multi_get, waiting to be answered
/// (`Engine::read_cold_batch`).
pub struct ColdBatch {
    keys: Vec<(u16, Bytes)>,
    encoded: Vec<keys::EncodedKey>,
    /// Each key's shard's cold write epoch before the read; None if a write was in flight.
    epochs: Vec<Option<u64>>,
    /// Each key's raw cold value; None if the multi_get failed.
    values: Option<Vec<Option<Vec<u8>>>>,
}

pub struct Engine {
    config: EngineConfig,
    budget: MemoryBudget,
    shards: Box<[Mutex<HotShard>]>,
    /// Per-shard byte limit; shrinks as the filter grows.
    shard_limit: AtomicUsize,
    cold: cold::ColdTier,
    filter: RwLock<CuckooFilter>,
    /// Exact live key count per database (DBSIZE), changed on every existence change.
    key_counts: Box<[Counter]>,
    stats: EngineStats,
    clock: Arc<SharedClock>,
    demoter_wakeup: (Mutex<bool>, Condvar),
    /// Where the active expirer continues in each database's expiry index.
    expiry_cursors: Mutex<Vec<Vec<u8>>>,
    watches: WatchRegistry,
    /// False while the filter is empty and not bypassed: every key is then known absent
    /// from the cold tier without taking the filter's lock.
    filter_may_say_maybe: AtomicBool,
    /// Whether the background expirer runs (DEBUG SET-ACTIVE-EXPIRE turns it off so tests
    /// can watch keys expire lazily).
    active_expiry: AtomicBool,
    /// Per shard (bytes, entries) as last read by `tier_report`.
    shard_figures: Box<[(AtomicUsize, AtomicUsize)]>,
    /// The write-ahead log, attached once recovery has replayed it (never during replay,
    /// so replayed mutations are not logged again).
    wal: OnceLock<Arc<wal::Wal>>,
    /// Checkpoint policy, WAL settings, and what checkpoints and startup did.
    durability: durability::State,
}

impl Engine {
    /// Opens the engine over the configured cold tier (`<dir>/cold` for RocksDB).
    pub fn open(config: EngineConfig) -> EngineResult<Engine> {
        Self::open_with_clock(config, Arc::new(SharedClock::default()))
    }

    /// As [`Engine::open`], reading time from `clock` (tests freeze and move it).
    pub fn open_with_clock(config: EngineConfig, clock: Arc<SharedClock>) -> EngineResult<Engine> {
        let cold = Self::open_cold_tier(&config, &clock)?;
        Self::with_cold_store(config, cold, clock)
    }

    fn open_cold_tier(
        config: &EngineConfig,
        clock: &Arc<SharedClock>,
    ) -> EngineResult<Box<dyn ColdStore>> {
        config.validate().map_err(EngineError::Config)?;
        let budget = MemoryBudget::new(config.maxmemory.0, &config.memory_split)
            .map_err(EngineError::Config)?;
        Ok(match config.cold_backend {
            ColdBackend::Memory => Box::new(MemCold::new(clock.clone())),
            ColdBackend::Rocksdb => {
                let path = config.dir.join("cold");
                std::fs::create_dir_all(&path).map_err(|err| {
                    EngineError::Config(format!("cannot create {}: {err}", path.display()))
                })?;
                let sizing = RocksSizing {
                    block_cache_bytes: budget.block_cache_bytes,
                    memtable_bytes: budget.memtable_bytes,
                    engine_filter: config.filter && budget.filter_max_bytes > 0,
                };
                Box::new(RocksCold::open(&path, &sizing, clock.clone())?)
            }
        })
    }

    /// Opens the engine over a cold store the caller built (tests inject failing or
    /// in-memory stores this way). Key counts and the filter are rebuilt from what the cold
    /// tier holds.
    pub fn with_cold_store(
        config: EngineConfig,
        cold: Box<dyn ColdStore>,
        clock: Arc<SharedClock>,
    ) -> EngineResult<Engine> {
        let engine = Self::with_cold_store_unscanned(config, cold, clock)?;
        engine.rebuild_from_cold()?;
        engine.note_filter_state(&engine.filter.read());
        engine.recompute_shard_limit();
        Ok(engine)
    }

    fn with_cold_store_unscanned(
        config: EngineConfig,
        cold: Box<dyn ColdStore>,
        clock: Arc<SharedClock>,
    ) -> EngineResult<Engine> {
        config.validate().map_err(EngineError::Config)?;
        let budget = MemoryBudget::new(config.maxmemory.0, &config.memory_split)
            .map_err(EngineError::Config)?;
        let filter = CuckooFilter::new(FilterConfig {
            // Start at no more than a quarter of the filter's share, so a small budget
            // still leaves the filter room to grow before it must bypass.
            initial_capacity: config
                .filter_initial_capacity
                .min(
                    budget.filter_max_bytes
                        / (4 * filter::slot_bytes(config.filter_fingerprint_bits)),
                )
                .max(1),
            fingerprint_bits: config.filter_fingerprint_bits,
            // No room at all starts the filter in bypass mode: it answers "maybe" always.
            max_bytes: if config.filter {
                budget.filter_max_bytes
            } else {
                0
            },
        });
        let shards = (0..config.hot_shards)
            .map(|_| Mutex::new(HotShard::default()))
            .collect();
        let key_counts = (0..config.databases).map(|_| Counter::default()).collect();
        let expiry_cursors = (0..config.databases).map(db_prefix).collect();
        let engine = Engine {
            shard_limit: AtomicUsize::new(0),
            budget,
            shards,
            cold: cold::ColdTier::new(cold, config.hot_shards),
            filter: RwLock::new(filter),
            key_counts,
            stats: EngineStats::default(),
            clock,
            demoter_wakeup: (Mutex::new(false), Condvar::new()),
            expiry_cursors: Mutex::new(expiry_cursors),
            watches: WatchRegistry::default(),
            filter_may_say_maybe: AtomicBool::new(true),
            active_expiry: AtomicBool::new(true),
            shard_figures: (0..config.hot_shards)
                .map(|_| (AtomicUsize::new(0), AtomicUsize::new(0)))
                .collect(),
            wal: OnceLock::new(),
            durability: durability::State::new(Durability::default()),
            config,
        };
        Ok(engine)
    }

    /// Builds the engine without looking at the cold tier's contents yet (recovery decides
    /// between loading the saved filter and counts, and rebuilding them).
    fn assemble(
        config: EngineConfig,
        cold: Box<dyn ColdStore>,
        clock: Arc<SharedClock>,
        durability: Durability,
    ) -> EngineResult<Engine> {
        let mut engine = Self::with_cold_store_unscanned(config, cold, clock)?;
        engine.durability = durability::State::new(durability);
        Ok(engine)
    }

    /// Recounts keys per database and refills the filter from the cold tier.
    ///
    /// This reads every cold key, so startup time grows with the cold tier; persisting the
    /// filter and the counts with each checkpoint (the durability issue) replaces it.
    /// Expired values and compaction markers are counted: they are keys until the expirer
    /// or a read reclaims them, which decrements the count exactly once.
    fn rebuild_from_cold(&self) -> EngineResult<()> {
        let mut hashes = Vec::new();
        self.for_each_cold_page(|page| {
            for (key, _) in page {
                if key.len() >= keys::KEY_PREFIX_LEN {
                    self.count_key(keys::db_of(key), 1);
                    hashes.push(hash_key(key));
                }
            }
            self.learn_in_filter(&hashes);
            hashes.clear();
        })
    }

    /// Calls `visit` with every page of the cold tier's data for the user databases, in
    /// key order, without holding more than one page in memory.
    fn for_each_cold_page(&self, visit: impl FnMut(&cold::Entries)) -> EngineResult<()> {
        let end = db_prefix(self.databases());
        Ok(cold::for_each_data_page(&*self.cold, &end, visit)?)
    }

    /// Checks that every key in the cold tier passes the filter (I4). Returns
    /// (cold keys seen, keys the filter would wrongly call absent).
    pub fn check_filter_covers_cold(&self) -> EngineResult<(u64, u64)> {
        let (mut seen, mut missing) = (0, 0);
        self.for_each_cold_page(|page| {
            let filter = self.filter.read();
            for (key, _) in page {
                seen += 1;
                if !filter.may_contain(hash_key(key)) {
                    missing += 1;
                }
            }
        })?;
        Ok((seen, missing))
    }

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

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    // ----- single-key API (each call is its own one-shard transaction) -------------------

    pub fn get(&self, access: Access, db: u16, key: &[u8]) -> EngineResult<Option<Bytes>> {
        self.single(access, db, key)?.get(db, key)
    }

    /// The first half of a batched GET (GETs of keys that missed the hot tier, from many
    /// clients at once, with `MayBlock`): one cold-tier multi_get for every key, made without
    /// any shard lock (so hot-tier traffic on those shards goes on meanwhile).
    pub fn read_cold_batch(&self, keys: Vec<(u16, Bytes)>) -> ColdBatch {
        let encoded: Vec<keys::EncodedKey> = keys
            .iter()
            .map(|(db, key)| keys::EncodedKey::new(*db, key))
            .collect();
        let epochs = encoded
            .iter()
            .map(|key| self.cold.write_epoch(key))
            .collect();
        let refs: Vec<&[u8]> = encoded.iter().map(|key| &key[..]).collect();
        // A failed multi_get is no answer: each key is then read on its own.
        let values = self.cold.multi_get(&refs).ok();
        self.stats.cold_read_batches.add(1);
        self.stats.cold_batched_reads.add(keys.len() as i64);
        ColdBatch {
            keys,
            encoded,
            epochs,
            values,
        }
    }

    /// The second half: each key under its shard lock exactly as `get` would, using what
    /// the batch read. If a cold write to the key's shard overlapped the batch (a demotion,
    /// a delete, an expiry), its batched value might be stale (I1) or deleted since (I2),
    /// and it is read again under the lock instead. Each answer goes to `answer(index, ..)`
    /// as soon as it is made (in key order), so no client waits for the keys after its own.
    pub fn answer_cold_batch(
        &self,
        batch: ColdBatch,
        mut answer: impl FnMut(usize, EngineResult<Option<Bytes>>),
    ) {
        let ColdBatch {
            keys,
            encoded,
            epochs,
            values,
        } = batch;
        let mut values = values.map(Vec::into_iter);
        let answers =
            keys.iter()
                .zip(encoded.iter().zip(epochs))
                .map(|((db, key), (encoded, epoch))| {
                    let value = values.as_mut().and_then(Iterator::next);
                    let mut txn = self.single(Access::MayBlock, *db, key)?;
                    // Checked with the shard held: no write to it can start until the answer
                    // is made.
                    let prefetched = match (value, epoch) {
                        (Some(value), Some(epoch)) if self.cold.unchanged_since(encoded, epoch) => {
                            Some(value)
                        }
                        (Some(_), _) => {
                            self.stats.cold_batch_rereads.add(1);
                            None
                        }
                        (None, _) => None,
                    };
                    txn.get_with(*db, key, prefetched)
                });
        for (index, result) in answers.enumerate() {
            answer(index, result);
        }
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
        self.single(access, db, key)?.set(db, key, value, options)
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
        self.single(access, db, key)?.update(db, key, update)
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
        if access == Access::HotOnly {
            return Err(EngineError::WouldBlock);
        }
        self.transaction_for_keys(&[source, destination]).rename(
            db,
            source,
            destination,
            only_if_absent,
        )
    }

    /// FLUSHDB: removes every key of `db` from both tiers.
    pub fn flushdb(&self, access: Access, db: u16) -> EngineResult<()> {
        if access == Access::HotOnly {
            return Err(EngineError::WouldBlock);
        }
        self.transaction_all().flushdb(db)
    }

    /// FLUSHALL.
    pub fn flushall(&self, access: Access) -> EngineResult<()> {
        if access == Access::HotOnly {
            return Err(EngineError::WouldBlock);
        }
        self.transaction_all().flushall()
    }

    pub fn dbsize(&self, db: u16) -> EngineResult<u64> {
        let count = self
            .key_counts
            .get(usize::from(db))
            .ok_or(EngineError::DbIndexOutOfRange)?;
        Ok(count.get().max(0) as u64)
    }

    /// One SCAN step (locks one shard at a time; see [`Engine::scan_page`]).
    pub fn scan(
        &self,
        access: Access,
        db: u16,
        cursor: u64,
        pattern: Option<&[u8]>,
        count: usize,
    ) -> EngineResult<ScanPage> {
        if access == Access::HotOnly {
            return Err(EngineError::WouldBlock);
        }
        self.scan_page(db, cursor, pattern, count, &mut |visit| {
            for shard in self.shards.iter() {
                visit(&shard.lock());
            }
        })
    }

    /// KEYS: every live key of `db` matching `pattern`.
    pub fn keys(&self, access: Access, db: u16, pattern: &[u8]) -> EngineResult<Vec<Bytes>> {
        scan_to_end(|cursor| self.scan(access, db, cursor, Some(pattern), KEYS_SCAN_COUNT))
    }

    /// A transaction over the shards of `keys` (locked in ascending order; always
    /// `MayBlock`). A key's shard does not depend on its database, so keys of several
    /// databases (COPY ... DB, MOVE) can share one transaction.
    pub fn transaction_for_keys(&self, keys: &[&[u8]]) -> Txn<'_> {
        let indexes: Vec<usize> = keys.iter().map(|key| self.shard_of_user_key(key)).collect();
        Txn::new(
            self,
            Access::MayBlock,
            Guards::Many(self.lock_many(&indexes)),
        )
    }

    /// A transaction over every shard (FLUSHALL, KEYS inside EXEC, ...).
    pub fn transaction_all(&self) -> Txn<'_> {
        let all: Vec<usize> = (0..self.shards.len()).collect();
        Txn::new(self, Access::MayBlock, Guards::Many(self.lock_many(&all)))
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

    fn single(&self, access: Access, db: u16, key: &[u8]) -> EngineResult<Txn<'_>> {
        self.check_db(db)?;
        let index = self.shard_of_user_key(key);
        let guard = self.lock_index(access, index)?;
        Ok(Txn::new(self, access, Guards::One(index, guard)))
    }

    /// One SCAN step over `db`. The cursor is a slot position in the `[db][slot][key]` order
    /// both tiers share: each step covers whole slots, reading the hot keys first and the
    /// cold keys second, so a key present for the whole iteration is always returned (a
    /// demotion writes cold before it leaves hot; a promotion keeps the cold copy).
    /// `each_shard` calls its argument once per hot shard.
    fn scan_page(
        &self,
        db: u16,
        cursor: u64,
        pattern: Option<&[u8]>,
        count: usize,
        each_shard: &mut ShardVisitor<'_>,
    ) -> EngineResult<ScanPage> {
        self.check_db(db)?;
        let slot_count = u32::from(slot::SLOT_COUNT);
        let start = match u32::try_from(cursor) {
            Ok(start) if start < slot_count => start,
            _ => {
                return Ok(ScanPage {
                    cursor: 0,
                    keys: Vec::new(),
                })
            }
        };
        let count = count.max(1);
        let from = keys::slot_start(db, start);

        // Find where this page ends: after about `count` keys, on a slot boundary.
        let mut end = slot_count;
        let probe = self
            .cold
            .range(Space::Data, &from, &keys::slot_start(db, end), count)?;
        if probe.len() >= count {
            end = end.min(u32::from(keys::slot_of(&probe[count - 1].0)) + 1);
        }
        each_shard(&mut |shard| {
            let keys = shard.keys_in_slots(db, start, end, count);
            if keys.len() >= count {
                end = end.min(u32::from(keys::slot_of(&keys[count - 1])) + 1);
            }
        });

        // Collect both tiers for slots [start, end): hot first, then cold.
        let to = keys::slot_start(db, end);
        let now = self.now_ms();
        let mut candidates: BTreeMap<Bytes, bool> = BTreeMap::new();
        each_shard(&mut |shard| {
            for key in shard.keys_in_slots(db, start, end, usize::MAX) {
                let live = shard
                    .peek(&key)
                    .is_some_and(|entry| !is_expired(entry.expire_at, now));
                candidates.insert(Bytes::copy_from_slice(&key), live);
            }
            // Removed keys whose cold copies are not deleted yet.
            for key in shard.tombstones_in_slots(db, start, end) {
                candidates.insert(Bytes::copy_from_slice(&key), false);
            }
        });
        for (key, value) in self.cold.range(Space::Data, &from, &to, usize::MAX)? {
            let key = Bytes::from(key);
            if candidates.contains_key(&key) {
                continue;
            }
            let live = match decode_cold_value(&value)? {
                ColdValue::Live { expire_at, .. } => !is_expired(expire_at, now),
                ColdValue::ExpiredMarker => false,
            };
            candidates.insert(key, live);
        }
        let keys = candidates
            .into_iter()
            .filter(|(_, live)| *live)
            .map(|(key, _)| key.slice(keys::KEY_PREFIX_LEN..))
            .filter(|key| pattern.is_none_or(|pattern| glob::glob_match(pattern, key)))
            .collect();
        Ok(ScanPage {
            cursor: if end >= slot_count { 0 } else { u64::from(end) },
            keys,
        })
    }

    // ----- maintenance -------------------------------------------------------------------

    /// Demotes (or drops, if clean) least recently used entries from every shard near its
    /// limit, down to the demotion target. The background demoter calls this; so can tests.
    pub fn demote_over_budget_shards(&self) -> EngineResult<()> {
        let marks = self.watermarks();
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            self.apply_tombstones(&mut shard, false)?;
            if shard.used_bytes() > marks.wake {
                self.demote_until(&mut shard, marks.target)?;
            }
        }
        Ok(())
    }

    /// One active-expiry cycle: removes hot entries whose deadline passed, then walks each
    /// database's cold expiry index up to now. Returns how many keys expired.
    pub fn run_active_expiry_cycle(&self) -> EngineResult<usize> {
        let before = self.stats.expired_keys.get();
        let now = self.now_ms();
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            for key in shard.expired_keys(now, EXPIRY_BATCH) {
                self.remove_resolved(Access::MayBlock, &mut shard, &key, Removal::Expired)?;
            }
        }
        for db in 0..self.databases() {
            self.expire_cold_index(db, now)?;
        }
        Ok((self.stats.expired_keys.get() - before) as usize)
    }

    /// Walks one step of `db`'s expiry index. An index entry `(t, key)` is acted on only if
    /// the key is not hot (a hot entry governs its own cold copy); the cold value decides:
    /// still carrying deadline `t` (or the compaction filter's marker) -> the key expires;
    /// anything else -> the index entry is stale and just goes.
    fn expire_cold_index(&self, db: u16, now: u64) -> EngineResult<()> {
        let from = self.expiry_cursors.lock()[usize::from(db)].clone();
        let mut to = db_prefix(db);
        to.extend_from_slice(&(now + 1).to_be_bytes());
        let entries = self.cold.range(Space::Expiry, &from, &to, EXPIRY_BATCH)?;
        let next_cursor = match entries.last() {
            Some((last, _)) => {
                let mut next = last.clone();
                next.push(0);
                next
            }
            None => db_prefix(db),
        };
        for (index_key, _) in entries {
            let Some((deadline, data_key)) = keys::parse_expiry_index_key(&index_key) else {
                continue;
            };
            let shard = self.shards[self.shard_index(&data_key)].lock();
            if shard.peek(&data_key).is_some() || shard.has_tombstone(&data_key) {
                continue;
            }
            let expires = match self.cold.get(&data_key)? {
                Some(raw) => match decode_cold_value(&raw)? {
                    ColdValue::Live { expire_at, .. } => expire_at == deadline,
                    ColdValue::ExpiredMarker => true,
                },
                None => false,
            };
            let mut ops = vec![ColdOp::Delete {
                space: Space::Expiry,
                key: index_key,
            }];
            if expires {
                ops.push(ColdOp::Delete {
                    space: Space::Data,
                    key: data_key.clone(),
                });
            }
            self.cold.write(ops)?;
            if expires {
                self.forget_in_filter(&[hash_key(&data_key)]);
                self.count_key(db, -1);
                self.stats.expired_keys.add(1);
            }
            drop(shard);
        }
        self.expiry_cursors.lock()[usize::from(db)] = next_cursor;
        Ok(())
    }

    /// Writes every dirty hot entry to the cold tier, marks it clean, deletes the cold copies
    /// of removed keys, and makes the cold tier durable (a checkpoint's step 2). A shard is
    /// held for one batch at a time, so every shard keeps serving in between. Returns the
    /// number of entries written.
    ///
    /// Covers every change made before the call: the dirty keys are listed after it, and a
    /// listed key that is no longer dirty when its batch comes was demoted (so the cold tier
    /// has it) or removed (and a later checkpoint covers that).
    pub fn flush_dirty_to_cold(&self) -> EngineResult<usize> {
        let mut written = 0;
        for shard in self.shards.iter() {
            // Nothing reaches the cold tier before its WAL record is durable (I5). Every wait
            // for that happens with the shard released, so writers to it are never stalled
            // behind an fsync.
            if let Some(wal) = self.wal.get() {
                if wal.durable_lsn() < wal.last_lsn() {
                    wal.sync()?;
                }
            }
            let dirty = {
                let mut shard = shard.lock();
                // Dead entries leave as removals, taking any cold copy with them (I2).
                for key in shard.expired_keys(self.now_ms(), usize::MAX) {
                    self.remove_resolved(Access::MayBlock, &mut shard, &key, Removal::Expired)?;
                }
                self.apply_tombstones(&mut shard, false)?;
                shard.dirty_keys()
            };
            for chunk in dirty.chunks(DEMOTION_BATCH_ENTRIES) {
                loop {
                    let mut shard = shard.lock();
                    let still_dirty: Vec<&HotKey> = chunk
                        .iter()
                        .filter(|key| shard.peek(key).is_some_and(|entry| entry.dirty))
                        .collect();
                    if still_dirty.is_empty() {
                        break;
                    }
                    let newest_lsn = still_dirty
                        .iter()
                        .map(|key| live_entry(&shard, key).lsn)
                        .max()
                        .unwrap_or(0);
                    if !self.wal_durable_at(newest_lsn) {
                        // Changed since the sync above: wait unlocked, then look again.
                        drop(shard);
                        self.wait_wal_durable(newest_lsn)?;
                        continue;
                    }
                    let mut ops = Vec::new();
                    let mut new_in_cold = Vec::new();
                    for key in &still_dirty {
                        push_demotion_ops(&mut ops, &mut new_in_cold, key, live_entry(&shard, key));
                    }
                    self.learn_in_filter(&new_in_cold);
                    self.cold.write(ops)?;
                    for key in &still_dirty {
                        let expire_at = live_entry(&shard, key).expire_at;
                        shard.mark_clean(key, ColdCopy::Present { expire_at });
                    }
                    written += still_dirty.len();
                    break;
                }
            }
            // Keys removed (by expiry too, which is not logged) while the batches ran leave
            // tombstones whose cold deletes this checkpoint must include.
            let newest_tombstone = shard.lock().max_tombstone_lsn();
            self.wait_wal_durable(newest_tombstone)?;
            self.apply_tombstones(&mut shard.lock(), false)?;
        }
        self.cold.sync()?;
        Ok(written)
    }

    /// Full compaction of the cold tier (runs the expiry compaction filter).
    pub fn compact_cold_tier(&self) -> EngineResult<()> {
        Ok(self.cold.compact()?)
    }

    /// Starts the demoter and the active expirer; they stop when the handle is dropped.
    pub fn start_background_tasks(self: &Arc<Self>) -> BackgroundTasks {
        let stop = Arc::new(AtomicBool::new(false));
        let demoter = {
            let engine = Arc::clone(self);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("hc-demoter".into())
                .spawn(move || engine.demoter_loop(&stop))
                .expect("spawn demoter thread")
        };
        let expirer = {
            let engine = Arc::clone(self);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("hc-expirer".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        // When off, expired keys go only when a command reads them.
                        if engine.active_expiry.load(Ordering::Relaxed) {
                            if let Err(err) = engine.run_active_expiry_cycle() {
                                tracing::warn!(%err, "active expiry cycle failed");
                            }
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                })
                .expect("spawn expirer thread")
        };
        let mut threads = vec![demoter, expirer];
        if self.logging() {
            let engine = Arc::clone(self);
            let stop = Arc::clone(&stop);
            threads.push(
                std::thread::Builder::new()
                    .name("hc-checkpointer".into())
                    .spawn(move || engine.checkpointer_loop(&stop))
                    .expect("spawn checkpointer thread"),
            );
        }
        BackgroundTasks {
            stop,
            engine: Arc::clone(self),
            threads,
        }
    }

    fn demoter_loop(&self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            {
                let (pending, wakeup) = &self.demoter_wakeup;
                let mut pending = pending.lock();
                if !*pending {
                    wakeup.wait_for(&mut pending, Duration::from_millis(100));
                }
                *pending = false;
            }
            if let Err(err) = self.demote_over_budget_shards() {
                tracing::warn!(%err, "demotion failed; entries stay in the hot tier");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Runs periodic checkpoints (by time and by WAL size) while the WAL is on.
    fn checkpointer_loop(&self, stop: &AtomicBool) {
        let mut last_run = std::time::Instant::now();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            if self.checkpoint_due(last_run) {
                // A failure is logged by `checkpoint`; the next interval tries again.
                let _ = self.checkpoint(CheckpointReason::Periodic);
                last_run = std::time::Instant::now();
            }
        }
    }

    fn wake_demoter(&self) {
        let (pending, wakeup) = &self.demoter_wakeup;
        *pending.lock() = true;
        wakeup.notify_one();
    }

    /// Figures for INFO and metrics.
    ///
    /// It never waits for a shard: INFO may run inside EXEC, whose transaction already
    /// holds shards, so a busy shard is reported with the figures last read from it.
    pub fn tier_report(&self) -> TierReport {
        let (mut hot_used_bytes, mut hot_keys) = (0, 0);
        for (shard, (last_bytes, last_keys)) in self.shards.iter().zip(self.shard_figures.iter()) {
            if let Some(shard) = shard.try_lock() {
                last_bytes.store(shard.used_bytes(), Ordering::Relaxed);
                last_keys.store(shard.len(), Ordering::Relaxed);
            }
            hot_used_bytes += last_bytes.load(Ordering::Relaxed);
            hot_keys += last_keys.load(Ordering::Relaxed);
        }
        let filter = self.filter.read();
        TierReport {
            stats: self.stats.snapshot(),
            hot_used_bytes,
            hot_limit_bytes: self.shard_limit.load(Ordering::Relaxed) * self.shards.len(),
            hot_keys,
            cold_disk_bytes: self.cold.disk_bytes(),
            cold_keys_estimate: self.cold.estimate_keys(),
            cold_memory_bytes: self.cold.memory_bytes(),
            filter_used_bytes: filter.memory_bytes(),
            filter_load_factor: filter.load_factor(),
            filter_fingerprints: filter.len(),
            filter_bypassed: filter.is_bypassed(),
            keys_per_db: (0..self.databases())
                .map(|db| self.dbsize(db).unwrap_or(0))
                .collect(),
        }
    }

    // ----- internals ---------------------------------------------------------------------

    fn check_db(&self, db: u16) -> EngineResult<()> {
        if db < self.databases() {
            Ok(())
        } else {
            Err(EngineError::DbIndexOutOfRange)
        }
    }

    fn encode(&self, db: u16, key: &[u8]) -> EngineResult<Vec<u8>> {
        self.check_db(db)?;
        Ok(keys::encode_key(db, key))
    }

    /// Shards are chosen by slot, so one slot's hot keys all live in one shard.
    fn shard_index(&self, encoded: &[u8]) -> usize {
        keys::hot_shard_of(encoded, self.shards.len())
    }

    fn shard_of_user_key(&self, key: &[u8]) -> usize {
        usize::from(slot::key_slot(key)) & (self.shards.len() - 1)
    }

    fn lock_index(&self, access: Access, index: usize) -> EngineResult<MutexGuard<'_, HotShard>> {
        let shard = &self.shards[index];
        match access {
            Access::MayBlock => Ok(shard.lock()),
            Access::HotOnly => shard
                .try_lock()
                .or_else(|| shard.try_lock_for(HOT_LOCK_WAIT))
                .ok_or(EngineError::WouldBlock),
        }
    }

    /// Locks shards in ascending index order, the one order every multi-shard caller uses,
    /// so two of them can never deadlock.
    fn lock_many(&self, indexes: &[usize]) -> Vec<(usize, MutexGuard<'_, HotShard>)> {
        let mut sorted = indexes.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        sorted
            .into_iter()
            .map(|index| (index, self.shards[index].lock()))
            .collect()
    }

    /// Writes an entry into the hot tier: the one place a key's value changes (the WAL
    /// append belongs here), which also tells watchers and counts new keys.
    fn store(
        &self,
        shard: &mut HotShard,
        log: &mut MutationBatch,
        encoded: Vec<u8>,
        mut entry: HotEntry,
        is_new_key: bool,
    ) {
        let logging = self.logging();
        if logging {
            log.put(&encoded, &entry.value, entry.expire_at);
            entry.lsn = PENDING_LSN;
            // A removed key written again: the new entry takes over the cold copy its
            // tombstone was waiting to delete (demotion overwrites it, removal deletes it).
            if let Some(tombstone) = shard.take_tombstone(&encoded) {
                if entry.cold == ColdCopy::Absent {
                    entry.cold = ColdCopy::Present {
                        expire_at: tombstone.expire_at,
                    };
                }
            }
        }
        if is_new_key {
            self.count_key(keys::db_of(&encoded), 1);
        }
        self.watches.touch(&encoded);
        let key = HotKey::from(encoded);
        if logging {
            shard.note_pending(key.clone());
        }
        shard.insert(key, entry);
    }

    fn count_key(&self, db: u16, delta: i64) {
        self.key_counts[usize::from(db)].add(delta);
    }

    /// Brings the key into normal form: afterwards it is either a live hot entry (returns
    /// true) or absent from both tiers (returns false). Dead hot entries and dead cold
    /// copies are reclaimed on the way (I2).
    fn resolve(
        &self,
        access: Access,
        shard: &mut HotShard,
        encoded: &[u8],
        now: u64,
    ) -> EngineResult<bool> {
        if let Some(entry) = shard.peek(encoded) {
            if !is_expired(entry.expire_at, now) {
                return Ok(true);
            }
            self.remove_resolved(access, shard, encoded, Removal::Expired)?;
            return Ok(false);
        }
        self.load_from_cold(access, shard, encoded, now, None)
    }

    /// The cold half of `resolve`, for a key known not to be in the hot tier. `prefetched`
    /// is what the cold tier holds for the key, when a batch already read it and no cold
    /// write can have changed it since (`answer_cold_batch`).
    fn load_from_cold(
        &self,
        access: Access,
        shard: &mut HotShard,
        encoded: &[u8],
        now: u64,
        prefetched: Option<Option<Vec<u8>>>,
    ) -> EngineResult<bool> {
        if shard.has_tombstone(encoded) {
            // Removed; its cold copy waits for the WAL before it is deleted.
            return Ok(false);
        }
        let hash = hash_key(encoded);
        let cold_may_hold_it = self.filter_may_say_maybe.load(Ordering::Acquire)
            && self.filter.read().may_contain(hash);
        if !cold_may_hold_it {
            self.stats.filter_short_circuits.add(1);
            return Ok(false);
        }
        let raw = match prefetched {
            Some(raw) => raw,
            None if access == Access::HotOnly => return Err(EngineError::WouldBlock),
            None => self.cold.get(encoded)?,
        };
        let Some(raw) = raw else {
            self.stats.cold_misses.add(1);
            self.stats.filter_false_positives.add(1);
            return Ok(false);
        };
        let dead_deadline = match decode_cold_value(&raw)? {
            ColdValue::Live { value, expire_at } if !is_expired(expire_at, now) => {
                self.stats.cold_hits.add(1);
                self.stats.promotions.add(1);
                let entry = HotEntry {
                    value,
                    expire_at,
                    dirty: false,
                    cold: ColdCopy::Present { expire_at },
                    last_access_s: seconds(now),
                    lsn: 0,
                };
                shard.insert(HotKey::from(encoded), entry);
                return Ok(true);
            }
            ColdValue::Live { expire_at, .. } => expire_at,
            // The marker's expiry index entry is left for the expirer, which drops it
            // once it finds the value gone.
            ColdValue::ExpiredMarker => NO_EXPIRY,
        };
        self.stats.cold_misses.add(1);
        let mut ops = Vec::new();
        push_cold_delete(&mut ops, encoded, dead_deadline);
        self.cold.write(ops)?;
        self.forget_in_filter(&[hash]);
        self.count_key(keys::db_of(encoded), -1);
        self.stats.expired_keys.add(1);
        Ok(false)
    }

    /// Removes a key that `resolve` found in the hot tier, deleting its cold copy first so
    /// it cannot come back (I2).
    fn remove_resolved(
        &self,
        access: Access,
        shard: &mut HotShard,
        encoded: &[u8],
        why: Removal,
    ) -> EngineResult<()> {
        let Some(entry) = shard.peek(encoded) else {
            // Every caller resolves the key just before; a miss here is an engine bug that
            // would leave a cold copy behind, so tests must hear of it.
            if cfg!(debug_assertions) {
                panic!("remove_resolved called for a key that is not in the hot tier");
            }
            return Ok(());
        };
        let entry_lsn = entry.lsn;
        match entry.cold {
            ColdCopy::Present { expire_at } if self.logging() => {
                // The cold copy goes once the WAL holds this removal (and the entry's last
                // change) durably; until then the tombstone makes the key read as absent.
                let lsn = match why {
                    Removal::Deleted => PENDING_LSN,
                    Removal::Expired => entry_lsn,
                };
                if let Some((key, _)) = shard.remove(encoded) {
                    shard.add_tombstone(key, Tombstone { expire_at, lsn });
                }
            }
            ColdCopy::Present { expire_at } => {
                if access == Access::HotOnly {
                    return Err(EngineError::WouldBlock);
                }
                let mut ops = Vec::new();
                push_cold_delete(&mut ops, encoded, expire_at);
                self.cold.write(ops)?;
                self.forget_in_filter(&[hash_key(encoded)]);
                shard.remove(encoded);
            }
            ColdCopy::Absent => {
                shard.remove(encoded);
            }
        }
        self.count_key(keys::db_of(encoded), -1);
        self.watches.touch(encoded);
        if why == Removal::Expired {
            self.stats.expired_keys.add(1);
        }
        Ok(())
    }

    /// DEL and every other removal a command asks for: `remove_resolved`, logged.
    fn delete_resolved(
        &self,
        access: Access,
        shard: &mut HotShard,
        log: &mut MutationBatch,
        encoded: &[u8],
    ) -> EngineResult<()> {
        self.remove_resolved(access, shard, encoded, Removal::Deleted)?;
        if self.logging() {
            log.del(encoded);
        }
        Ok(())
    }

    /// Deletes the cold copies of removed keys once the WAL holds their removal durably.
    /// With `wait`, first waits for the WAL to cover every tombstone whose transaction has
    /// ended (a blocking fsync wait: background and blocking threads only).
    fn apply_tombstones(&self, shard: &mut HotShard, wait: bool) -> EngineResult<()> {
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
        self.forget_in_filter(&hashes);
        Ok(())
    }

    /// Whether the WAL is durable up to `lsn` (always, without the WAL).
    fn wal_durable_at(&self, lsn: u64) -> bool {
        self.wal.get().is_none_or(|wal| lsn <= wal.durable_lsn())
    }

    /// Waits until the WAL is durable up to `lsn` (no-op without the WAL): a cold write that
    /// carries a change must never be on disk before the change's WAL record (I5).
    fn wait_wal_durable(&self, lsn: u64) -> EngineResult<()> {
        if lsn == PENDING_LSN {
            // Only an append that failed leaves a change unstamped once its transaction ended.
            return Err(EngineError::Wal(
                "a change was never logged (the WAL failed); refusing to write it to the cold tier"
                    .into(),
            ));
        }
        if let Some(wal) = self.wal.get() {
            if lsn > wal.durable_lsn() {
                wal.wait_durable(lsn)?;
            }
        }
        Ok(())
    }

    fn forget_in_filter(&self, hashes: &[u64]) {
        let mut filter = self.filter.write();
        for hash in hashes {
            filter.remove(*hash);
        }
        self.note_filter_state(&filter);
    }

    /// Publishes whether the filter can answer "maybe" at all, so lookups skip its lock
    /// while it is empty (no key has reached the cold tier). Called with the write lock
    /// held, after every change, so it is never stale in the unsafe direction: it turns
    /// true before the cold write that follows an insert.
    fn note_filter_state(&self, filter: &CuckooFilter) {
        let may_say_maybe = !filter.is_empty() || filter.is_bypassed();
        self.filter_may_say_maybe
            .store(may_say_maybe, Ordering::Release);
    }

    /// With `HotOnly`, refuses a write to a shard already over its limit, so the write is
    /// retried where it may demote inline: the hot tier stays within its budget under any
    /// load (the demoter normally keeps shards below the limit, see `Watermarks`).
    fn check_room(&self, access: Access, shard: &HotShard) -> EngineResult<()> {
        if access == Access::HotOnly
            && shard.used_bytes() > self.shard_limit.load(Ordering::Relaxed)
        {
            return Err(EngineError::WouldBlock);
        }
        Ok(())
    }

    /// After a change that may have grown the shard: wake the demoter once the shard nears
    /// its limit; past the limit, demote inline where blocking is allowed.
    fn settle(&self, access: Access, shard: &mut HotShard) {
        let marks = self.watermarks();
        let used = shard.used_bytes();
        if used <= marks.wake {
            return;
        }
        match access {
            Access::MayBlock if used > marks.limit => {
                if let Err(err) = self.demote_until(shard, marks.target) {
                    // The write itself succeeded and is safe in the hot tier; the demoter
                    // retries the eviction.
                    tracing::warn!(%err, "inline demotion failed");
                    self.wake_demoter();
                }
            }
            _ => self.wake_demoter(),
        }
    }

    fn watermarks(&self) -> Watermarks {
        Watermarks::for_limit(self.shard_limit.load(Ordering::Relaxed))
    }

    /// Evicts least recently used entries until the shard uses at most `target` bytes.
    /// Dirty entries are demoted in batches; nothing leaves the hot tier before the cold
    /// tier holds its current value (I3), and the filter learns a key before the cold tier
    /// does (I4).
    fn demote_until(&self, shard: &mut HotShard, target: usize) -> EngineResult<()> {
        self.apply_tombstones(shard, false)?;
        let mut blocked = false;
        while shard.used_bytes() > target && !blocked {
            let now = self.now_ms();
            let mut ops = Vec::new();
            let mut demoted = Vec::new();
            let mut expired = Vec::new();
            let mut new_in_cold = Vec::new();
            let mut newest_lsn = 0;
            while shard.used_bytes() > target && demoted.len() < DEMOTION_BATCH_ENTRIES {
                let Some((key, entry)) = shard.pop_lru() else {
                    break;
                };
                if entry.lsn == PENDING_LSN {
                    // Changed by the transaction running now, whose WAL record does not
                    // exist yet: it stays hot until that transaction ends.
                    shard.insert(key, entry);
                    blocked = true;
                    break;
                }
                if entry.dirty || entry.cold != ColdCopy::Absent {
                    newest_lsn = newest_lsn.max(entry.lsn);
                }
                if is_expired(entry.expire_at, now) {
                    if let ColdCopy::Present { expire_at } = entry.cold {
                        push_cold_delete(&mut ops, &key, expire_at);
                    }
                    expired.push((key, entry));
                    continue;
                }
                if !entry.dirty {
                    self.stats.evictions.add(1);
                    continue;
                }
                push_demotion_ops(&mut ops, &mut new_in_cold, &key, &entry);
                demoted.push((key, entry));
            }
            self.learn_in_filter(&new_in_cold);
            if !ops.is_empty() {
                let written = self
                    .wait_wal_durable(newest_lsn)
                    .and_then(|()| Ok(self.cold.write(ops)?));
                if let Err(err) = written {
                    for (key, entry) in demoted.into_iter().chain(expired) {
                        shard.insert(key, entry);
                    }
                    return Err(err);
                }
            }
            let demotions = demoted.len() as u64;
            self.stats.demotions.add(demotions as i64);
            self.stats.evictions.add(demotions as i64);
            for (key, entry) in expired {
                if matches!(entry.cold, ColdCopy::Present { .. }) {
                    self.forget_in_filter(&[hash_key(&key)]);
                }
                self.count_key(keys::db_of(&key), -1);
                self.stats.expired_keys.add(1);
            }
            if shard.is_empty() {
                break;
            }
        }
        if shard.used_bytes() > target {
            self.apply_tombstones(shard, true)?;
        }
        Ok(())
    }

    /// Inserts fingerprints for keys about to enter the cold tier. A grown filter takes
    /// room from the hot tier; a full one is bypassed (counted), never silently wrong.
    fn learn_in_filter(&self, hashes: &[u64]) {
        if hashes.is_empty() {
            return;
        }
        let mut grew = false;
        {
            let mut filter = self.filter.write();
            for hash in hashes {
                match filter.insert(*hash) {
                    InsertOutcome::Inserted => {}
                    InsertOutcome::Grew => grew = true,
                    InsertOutcome::Bypassed => self.stats.filter_bypassed_inserts.add(1),
                }
            }
            self.note_filter_state(&filter);
        }
        if grew {
            self.recompute_shard_limit();
        }
    }

    fn recompute_shard_limit(&self) {
        let filter_bytes = self.filter.read().memory_bytes();
        let mut hot_limit = self.budget.hot_limit(filter_bytes);
        if let Some(cap) = self.config.hot_max_bytes {
            hot_limit = hot_limit.min(cap.0 as usize);
        }
        let limit = hot_limit / self.shards.len();
        self.shard_limit.store(limit.max(1), Ordering::Relaxed);
    }
}

/// Byte levels of one hot shard. Demoting down to a target below the limit, rather than to
/// the limit itself, makes every cold write a batch (at the limit, each insert would demote
/// one entry in a RocksDB write of its own); waking the demoter before the limit keeps
/// writers on the async path, since only a shard over its limit sends them to inline
/// demotion.
#[derive(Debug, Clone, Copy)]
struct Watermarks {
    /// The shard's share of the hot budget: never exceeded by more than one entry.
    limit: usize,
    /// Above this the background demoter is woken.
    wake: usize,
    /// Demotion stops at or below this.
    target: usize,
}

impl Watermarks {
    fn for_limit(limit: usize) -> Self {
        Watermarks {
            limit,
            wake: limit - limit / 32,
            target: limit - limit / 16,
        }
    }
}

/// The shards a transaction holds.
enum Guards<'a> {
    One(usize, MutexGuard<'a, HotShard>),
    Many(Vec<(usize, MutexGuard<'a, HotShard>)>),
}

impl Guards<'_> {
    fn for_each(&mut self, mut visit: impl FnMut(&mut HotShard)) {
        match self {
            Guards::One(_, guard) => visit(guard),
            Guards::Many(guards) => guards.iter_mut().for_each(|(_, guard)| visit(guard)),
        }
    }

    fn shard(&mut self, index: usize) -> EngineResult<&mut HotShard> {
        match self {
            Guards::One(held, guard) if *held == index => Ok(guard),
            Guards::Many(guards) => guards
                .iter_mut()
                .find(|(held, _)| *held == index)
                .map(|(_, guard)| &mut **guard)
                .ok_or(EngineError::NotLocked),
            Guards::One(..) => Err(EngineError::NotLocked),
        }
    }
}

/// Operations on keys whose shards are held: atomic with respect to every other caller
/// (I7). Single-key engine calls are one-shard transactions; MULTI/EXEC and multi-key
/// commands lock every shard they touch up front, in ascending order.
pub struct Txn<'e> {
    engine: &'e Engine,
    access: Access,
    guards: Guards<'e>,
    /// This transaction's changes, appended to the WAL as one record when it ends, while
    /// its shards are still held (so the log orders every key's changes as they happened).
    log: MutationBatch,
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        if let Some(lsn) = self.engine.append_to_wal(&mut self.log) {
            self.guards.for_each(|shard| shard.stamp_pending(lsn));
        }
    }
}

impl<'e> Txn<'e> {
    fn new(engine: &'e Engine, access: Access, guards: Guards<'e>) -> Self {
        Txn {
            engine,
            access,
            guards,
            log: MutationBatch::default(),
        }
    }

    /// Encodes the key and finds its (held) shard, and the log its changes go to.
    fn locate(
        &mut self,
        db: u16,
        key: &[u8],
    ) -> EngineResult<(Vec<u8>, &mut HotShard, &mut MutationBatch)> {
        let encoded = self.engine.encode(db, key)?;
        let index = self.engine.shard_index(&encoded);
        Ok((encoded, self.guards.shard(index)?, &mut self.log))
    }

    /// As `locate`, with the key encoded on the stack when short (read paths).
    fn locate_for_read(
        &mut self,
        db: u16,
        key: &[u8],
    ) -> EngineResult<(keys::EncodedKey, &mut HotShard)> {
        self.engine.check_db(db)?;
        let encoded = keys::EncodedKey::new(db, key);
        let index = self.engine.shard_index(&encoded);
        Ok((encoded, self.guards.shard(index)?))
    }

    pub fn get(&mut self, db: u16, key: &[u8]) -> EngineResult<Option<Bytes>> {
        self.get_with(db, key, None)
    }

    /// GET, with the key's cold value already read when `prefetched` is given.
    fn get_with(
        &mut self,
        db: u16,
        key: &[u8],
        prefetched: Option<Option<Vec<u8>>>,
    ) -> EngineResult<Option<Bytes>> {
        let (engine, access) = (self.engine, self.access);
        let (encoded, shard) = self.locate_for_read(db, key)?;
        let now = engine.now_ms();
        let in_hot = match shard.get(&encoded, seconds(now)) {
            Some(entry) if !is_expired(entry.expire_at, now) => {
                engine.stats.hot_hits.add(1);
                return Ok(Some(entry.value.to_bytes()));
            }
            Some(_) => true,
            None => false,
        };
        let found = if in_hot {
            engine.resolve(access, shard, &encoded, now)?
        } else {
            engine.load_from_cold(access, shard, &encoded, now, prefetched)?
        };
        // Counted once the miss is answered: a `HotOnly` attempt that would block is
        // tried again elsewhere, and that attempt counts it.
        engine.stats.hot_misses.add(1);
        let value = found.then(|| live_entry(shard, &encoded).value.to_bytes());
        engine.settle(access, shard);
        Ok(value)
    }

    /// Value length and layout without copying the value (STRLEN, OBJECT, MEMORY USAGE).
    pub fn inspect(&mut self, db: u16, key: &[u8]) -> EngineResult<Option<KeyInfo>> {
        let (engine, access) = (self.engine, self.access);
        let (encoded, shard) = self.locate_for_read(db, key)?;
        if !engine.resolve(access, shard, &encoded, engine.now_ms())? {
            return Ok(None);
        }
        let entry = live_entry(shard, &encoded);
        let info = KeyInfo {
            len: entry.value.len(),
            compressed: entry.value.is_compressed(),
            memory_bytes: encoded.len() + entry.value.memory_bytes() + hot::ENTRY_OVERHEAD_BYTES,
            idle_seconds: seconds(engine.now_ms()).saturating_sub(entry.last_access_s),
        };
        engine.settle(access, shard);
        Ok(Some(info))
    }

    pub fn exists(&mut self, db: u16, key: &[u8]) -> EngineResult<bool> {
        let (engine, access) = (self.engine, self.access);
        let (encoded, shard) = self.locate_for_read(db, key)?;
        let found = engine.resolve(access, shard, &encoded, engine.now_ms())?;
        engine.settle(access, shard);
        Ok(found)
    }

    pub fn ttl(&mut self, db: u16, key: &[u8]) -> EngineResult<KeyTtl> {
        let (engine, access) = (self.engine, self.access);
        let (encoded, shard) = self.locate_for_read(db, key)?;
        if !engine.resolve(access, shard, &encoded, engine.now_ms())? {
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
        let exists = engine.resolve(access, shard, &encoded, now)?;
        // Only what the new entry inherits; cloning the whole entry would cost a refcount
        // upgrade (an allocation) on every overwrite.
        let current = exists.then(|| {
            let entry = live_entry(shard, &encoded);
            (entry.expire_at, entry.cold)
        });
        let previous = match options.return_previous && exists {
            true => Some(live_entry(shard, &encoded).value.to_bytes()),
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
        let entry = HotEntry {
            value: StoredValue::new(value, engine.config.compress_min_bytes),
            expire_at,
            dirty: true,
            cold: current.map_or(ColdCopy::Absent, |(_, cold)| cold),
            last_access_s: seconds(now),
            lsn: 0,
        };
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
        if !engine.resolve(access, shard, &encoded, engine.now_ms())? {
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
        if !engine.resolve(access, shard, &encoded, now)? {
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
        if !engine.resolve(access, shard, &encoded, engine.now_ms())? {
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
        let exists = engine.resolve(access, shard, &encoded, engine.now_ms())?;
        let current = exists.then(|| live_entry(shard, &encoded).clone());
        let (new_value, reply) = update(current.as_ref().map(|entry| entry.value.to_bytes()))?;
        if let Some(value) = new_value {
            let entry = HotEntry {
                value: StoredValue::new(value, engine.config.compress_min_bytes),
                expire_at: current.as_ref().map_or(NO_EXPIRY, |entry| entry.expire_at),
                dirty: true,
                cold: current.map_or(ColdCopy::Absent, |entry| entry.cold),
                last_access_s: seconds(engine.now_ms()),
                lsn: 0,
            };
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
        if !engine.resolve(access, shard, &encoded, engine.now_ms())? {
            return Ok(None);
        }
        Ok(Some(live_entry(shard, &encoded).clone()))
    }

    /// Removes `key` from both tiers. It resolves again rather than trust an earlier
    /// resolve: a step in between (another key's promotion) may have evicted it.
    fn remove_live(&mut self, db: u16, key: &[u8]) -> EngineResult<()> {
        let (engine, access) = (self.engine, self.access);
        let (encoded, shard, log) = self.locate(db, key)?;
        if engine.resolve(access, shard, &encoded, engine.now_ms())? {
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
        let mut filter = self.engine.filter.write();
        filter.clear();
        self.engine.note_filter_state(&filter);
        drop(filter);
        self.engine.recompute_shard_limit();
        Ok(())
    }

    fn flush_databases(&mut self, dbs: std::ops::Range<u16>) -> EngineResult<()> {
        let engine = self.engine;
        if dbs.end > engine.databases() {
            return Err(EngineError::DbIndexOutOfRange);
        }
        let all: Vec<usize> = (0..engine.shards.len()).collect();
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
                return Err(EngineError::Wal(
                    "the flush could not be logged; nothing was flushed".into(),
                ));
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
        ])?;
        for index in all {
            let shard = self.guards.shard(index)?;
            for key in shard.keys_in_databases(dbs.start, dbs.end) {
                shard.remove(&key);
            }
        }
        for index in 0..engine.shards.len() {
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

    /// One SCAN step with every shard held (SCAN/KEYS inside EXEC).
    pub fn scan(
        &mut self,
        db: u16,
        cursor: u64,
        pattern: Option<&[u8]>,
        count: usize,
    ) -> EngineResult<ScanPage> {
        let engine = self.engine;
        let Guards::Many(guards) = &mut self.guards else {
            return Err(EngineError::NotLocked);
        };
        if guards.len() != engine.shards.len() {
            return Err(EngineError::NotLocked);
        }
        engine.scan_page(db, cursor, pattern, count, &mut |visit| {
            for (_, guard) in guards.iter() {
                visit(guard);
            }
        })
    }
}

/// What OBJECT / MEMORY USAGE / STRLEN need to know about a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    pub len: usize,
    pub compressed: bool,
    pub memory_bytes: usize,
    pub idle_seconds: u32,
}

/// Stops and joins the engine's background threads when dropped.
pub struct BackgroundTasks {
    stop: Arc<AtomicBool>,
    engine: Arc<Engine>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for BackgroundTasks {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.engine.wake_demoter();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Removal {
    Deleted,
    Expired,
}

/// The entry `resolve` just found live; its absence would be an engine bug.
fn live_entry<'a>(shard: &'a HotShard, encoded: &[u8]) -> &'a HotEntry {
    shard
        .peek(encoded)
        .expect("resolve returned true, so the entry is in the hot tier")
}

/// The cold writes that make the cold tier hold `entry` exactly: the value, its expiry
/// index entry, and the removal of a stale index entry. Keys entering the cold tier for the
/// first time are added to `new_in_cold`, for the filter to learn before the write.
fn push_demotion_ops(
    ops: &mut Vec<ColdOp>,
    new_in_cold: &mut Vec<u64>,
    key: &[u8],
    entry: &HotEntry,
) {
    ops.push(ColdOp::Put {
        space: Space::Data,
        key: key.to_vec(),
        value: encode_cold_value(&entry.value, entry.expire_at),
    });
    match entry.cold {
        ColdCopy::Present { expire_at } => {
            if expire_at != NO_EXPIRY && expire_at != entry.expire_at {
                ops.push(ColdOp::Delete {
                    space: Space::Expiry,
                    key: keys::expiry_index_key(key, expire_at),
                });
            }
        }
        ColdCopy::Absent => new_in_cold.push(hash_key(key)),
    }
    if entry.expire_at != NO_EXPIRY {
        ops.push(ColdOp::Put {
            space: Space::Expiry,
            key: keys::expiry_index_key(key, entry.expire_at),
            value: Vec::new(),
        });
    }
}

fn push_cold_delete(ops: &mut Vec<ColdOp>, encoded: &[u8], expire_at: ExpireAt) {
    ops.push(ColdOp::Delete {
        space: Space::Data,
        key: encoded.to_vec(),
    });
    if expire_at != NO_EXPIRY {
        ops.push(ColdOp::Delete {
            space: Space::Expiry,
            key: keys::expiry_index_key(encoded, expire_at),
        });
    }
}

/// Keys read per SCAN step when KEYS walks a whole database.
pub const KEYS_SCAN_COUNT: usize = 1024;

/// Runs SCAN steps from cursor 0 until the cursor comes back to 0, collecting every key
/// (KEYS, through the engine or through a transaction).
pub fn scan_to_end(
    mut step: impl FnMut(u64) -> EngineResult<ScanPage>,
) -> EngineResult<Vec<Bytes>> {
    let mut cursor = 0;
    let mut out = Vec::new();
    loop {
        let page = step(cursor)?;
        out.extend(page.keys);
        if page.cursor == 0 {
            return Ok(out);
        }
        cursor = page.cursor;
    }
}

/// Unix seconds from Unix milliseconds, for access times.
fn seconds(ms: u64) -> u32 {
    (ms / 1000) as u32
}

/// `[db]`: the prefix of every data and expiry-index key of one database.
fn db_prefix(db: u16) -> Vec<u8> {
    db.to_be_bytes().to_vec()
}
