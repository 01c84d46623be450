//! The cold tier: an ordered key-value store on disk (RocksDB), behind the small
//! [`ColdStore`] trait so the engine can also run on [`MemCold`] in tests.
//!
//! It owns key encoding (`[db][slot][user key]`, the order SCAN and the cluster layer rely
//! on), the expiry index, and the compaction filter that reclaims expired values. It knows
//! nothing about the hot tier, the filter or the key counts: the engine keeps those right.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use super::entry::{self, ExpireAt};
use super::slot::key_slot;

/// Database index 0xFFFF is reserved for the engine's own metadata records.
pub const META_DB: u16 = u16::MAX;
const DB_LEN: usize = 2;
const SLOT_LEN: usize = 2;
/// Length of the `[db][slot]` prefix of an encoded key.
pub const KEY_PREFIX_LEN: usize = DB_LEN + SLOT_LEN;

/// Encodes `[db: u16 BE][slot: u16 BE][user key]`.
pub fn encode_key(db: u16, user_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(KEY_PREFIX_LEN + user_key.len());
    out.extend_from_slice(&db.to_be_bytes());
    out.extend_from_slice(&key_slot(user_key).to_be_bytes());
    out.extend_from_slice(user_key);
    out
}

/// An encoded key built on the stack when it is short: read paths (every GET) encode a key
/// only to look it up, and a heap allocation would cost as much as the lookup.
pub enum EncodedKey {
    Inline {
        bytes: [u8; INLINE_KEY_BYTES],
        len: usize,
    },
    Heap(Vec<u8>),
}

const INLINE_KEY_BYTES: usize = 96;

impl EncodedKey {
    pub fn new(db: u16, user_key: &[u8]) -> Self {
        let len = KEY_PREFIX_LEN + user_key.len();
        if len > INLINE_KEY_BYTES {
            return EncodedKey::Heap(encode_key(db, user_key));
        }
        let mut bytes = [0u8; INLINE_KEY_BYTES];
        bytes[..DB_LEN].copy_from_slice(&db.to_be_bytes());
        bytes[DB_LEN..KEY_PREFIX_LEN].copy_from_slice(&key_slot(user_key).to_be_bytes());
        bytes[KEY_PREFIX_LEN..len].copy_from_slice(user_key);
        EncodedKey::Inline { bytes, len }
    }
}

impl std::ops::Deref for EncodedKey {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            EncodedKey::Inline { bytes, len } => &bytes[..*len],
            EncodedKey::Heap(bytes) => bytes,
        }
    }
}

/// The first encoded key of `slot` in `db` (inclusive bound). `slot` may be `SLOT_COUNT`,
/// which gives the end of the database.
pub fn slot_start(db: u16, slot: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(KEY_PREFIX_LEN);
    if slot >= u32::from(super::slot::SLOT_COUNT) {
        out.extend_from_slice(&(u32::from(db) + 1).to_be_bytes()[2..]);
        out.extend_from_slice(&[0, 0]);
        if db == u16::MAX - 1 {
            // The next "database" is META_DB itself; stop right before its first key.
            out = vec![0xFF, 0xFF];
        }
        return out;
    }
    out.extend_from_slice(&db.to_be_bytes());
    out.extend_from_slice(&(slot as u16).to_be_bytes());
    out
}

pub fn db_of(encoded: &[u8]) -> u16 {
    u16::from_be_bytes([encoded[0], encoded[1]])
}

pub fn slot_of(encoded: &[u8]) -> u16 {
    u16::from_be_bytes([encoded[2], encoded[3]])
}

/// The hot shard, of `shards` (a power of two), that holds `encoded`. The engine locks shards
/// by it and `ColdTier` counts writes by it: batched reads are sound only while both agree.
pub fn hot_shard_of(encoded: &[u8], shards: usize) -> usize {
    usize::from(slot_of(encoded)) & (shards - 1)
}

pub fn user_key(encoded: &[u8]) -> &[u8] {
    &encoded[KEY_PREFIX_LEN..]
}

/// Key of the expiry index entry for an encoded key: `[db][expire_at: u64 BE][slot][user key]`,
/// so the expirer walks one database's deadlines in time order.
pub fn expiry_index_key(encoded: &[u8], expire_at: ExpireAt) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded.len() + 8);
    out.extend_from_slice(&encoded[..DB_LEN]);
    out.extend_from_slice(&expire_at.to_be_bytes());
    out.extend_from_slice(&encoded[DB_LEN..]);
    out
}

/// Splits an expiry index key back into (expire_at, encoded data key).
pub fn parse_expiry_index_key(index_key: &[u8]) -> Option<(ExpireAt, Vec<u8>)> {
    if index_key.len() < DB_LEN + 8 + SLOT_LEN {
        return None;
    }
    let expire_at = u64::from_be_bytes(index_key[DB_LEN..DB_LEN + 8].try_into().ok()?);
    let mut encoded = Vec::with_capacity(index_key.len() - 8);
    encoded.extend_from_slice(&index_key[..DB_LEN]);
    encoded.extend_from_slice(&index_key[DB_LEN + 8..]);
    Some((expire_at, encoded))
}

/// Key-value pairs read from a range, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// The two key spaces of the cold tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    /// Encoded key -> encoded cold value (see `entry`), plus META_DB records.
    Data,
    /// Expiry index key -> empty; one entry per cold value that has an expiry.
    Expiry,
}

/// One change in an atomic cold-tier write.
#[derive(Clone, Debug)]
pub enum ColdOp {
    Put {
        space: Space,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        space: Space,
        key: Vec<u8>,
    },
    /// Deletes `[from, to)`.
    DeleteRange {
        space: Space,
        from: Vec<u8>,
        to: Vec<u8>,
    },
}

/// A failure of the storage underneath; the engine reports it and keeps serving.
#[derive(Debug, Clone)]
pub struct ColdError(pub String);

impl std::fmt::Display for ColdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cold tier: {}", self.0)
    }
}

impl std::error::Error for ColdError {}

impl From<rocksdb::Error> for ColdError {
    fn from(err: rocksdb::Error) -> Self {
        ColdError(err.into_string())
    }
}

/// Calls `visit` with every page of data entries with keys below `end`, in key order, holding
/// no more than one page in memory (filter rebuild and check, `hypercache-tool check`).
pub fn for_each_data_page(
    cold: &dyn ColdRead,
    end: &[u8],
    mut visit: impl FnMut(&Entries),
) -> Result<(), ColdError> {
    let mut from = Vec::new();
    loop {
        let page = cold.range(Space::Data, &from, end, 4096)?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        from = last.clone();
        from.push(0);
        visit(&page);
    }
}

/// What the engine reads from its cold store, and the store's sizes. Nothing here changes a
/// value; `ColdTier` hands out only this half, so no write can skip its counting.
pub trait ColdRead: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ColdError>;
    /// Point reads batched into one call (RocksDB `multi_get`).
    fn multi_get(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, ColdError>;
    /// Up to `limit` entries of `space` with `from <= key < to`, in key order.
    fn range(
        &self,
        space: Space,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Entries, ColdError>;
    /// Bytes on disk (live SST and log files), an estimate.
    fn disk_bytes(&self) -> u64;
    /// Memory the store uses now (block cache incl. memtables charged to it).
    fn memory_bytes(&self) -> usize;
    /// Number of data entries, an estimate.
    fn estimate_keys(&self) -> u64;
}

/// Everything the engine needs from an ordered, durable key-value store.
pub trait ColdStore: ColdRead {
    /// Applies all `ops` atomically, in order.
    fn write(&self, ops: Vec<ColdOp>) -> Result<(), ColdError>;
    /// Runs a full compaction, which passes every value through the expiry compaction filter.
    fn compact(&self) -> Result<(), ColdError>;
    /// Makes every write so far durable (fsync of the store's own log).
    fn sync(&self) -> Result<(), ColdError>;
    /// Writes a consistent copy of the store into the new directory `path` (hard links where
    /// the file system allows): a backup the store can be reopened from.
    fn create_checkpoint(&self, path: &Path) -> Result<(), ColdError>;
}

/// The engine's handle on its cold store. Every write passes through here and is counted,
/// per hot shard whose keys it writes, before and after; a read made without the shard
/// locks (a batch of cold GETs, `Engine::read_cold_batch`) can then tell, with a key's shard
/// held, whether any write could have changed what it read. Every cold write holds the
/// shards of the keys it writes, so once the shard is held no new write can start on them.
/// Reads deref to the store's read half; `compact`, `sync` and `create_checkpoint` are passed
/// on; the store itself, whose `write` would not be counted, is not reachable.
pub struct ColdTier {
    store: Box<dyn ColdStore>,
    /// Per hot shard (indexed like the engine's shards, by slot): writes started, finished.
    writes: Box<[(AtomicU64, AtomicU64)]>,
}

impl ColdTier {
    /// `shards`: the engine's hot shard count, a power of two.
    pub fn new(store: Box<dyn ColdStore>, shards: usize) -> Self {
        ColdTier {
            store,
            writes: (0..shards.max(1))
                .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
                .collect(),
        }
    }

    /// `ColdStore::write`, counted.
    pub fn write(&self, ops: Vec<ColdOp>) -> Result<(), ColdError> {
        /// Counts the write finished even if the store panics, or its shards would look
        /// written-to forever (every batched read of them read again).
        struct Finished<'a>(&'a ColdTier, Vec<usize>);
        impl Drop for Finished<'_> {
            fn drop(&mut self) {
                for &shard in &self.1 {
                    self.0.writes[shard].1.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        let shards = self.shards_written(&ops);
        for &shard in &shards {
            self.writes[shard].0.fetch_add(1, Ordering::SeqCst);
        }
        let _finished = Finished(self, shards);
        self.store.write(ops)
    }

    /// The shards whose keys' values `ops` may change. Expiry-index entries change no value
    /// a read returns; a range (FLUSHDB) or a key without a slot counts for every shard.
    fn shards_written(&self, ops: &[ColdOp]) -> Vec<usize> {
        let mut shards = Vec::new();
        for op in ops {
            match op {
                ColdOp::Put { space, key, .. } | ColdOp::Delete { space, key } => {
                    if *space == Space::Expiry {
                        continue;
                    }
                    if key.len() < KEY_PREFIX_LEN {
                        return (0..self.writes.len()).collect();
                    }
                    shards.push(self.shard_of(key));
                }
                ColdOp::DeleteRange { space, .. } => {
                    if *space == Space::Data {
                        return (0..self.writes.len()).collect();
                    }
                }
            }
        }
        shards.sort_unstable();
        shards.dedup();
        shards
    }

    fn shard_of(&self, encoded: &[u8]) -> usize {
        hot_shard_of(encoded, self.writes.len())
    }

    /// The write epoch of `encoded`'s shard, to check a lock-free read of it against; taken
    /// before the read. `None` while a write to that shard is in flight (the read might see
    /// part of it).
    pub fn write_epoch(&self, encoded: &[u8]) -> Option<u64> {
        let (started, finished) = &self.writes[self.shard_of(encoded)];
        let epoch = started.load(Ordering::SeqCst);
        (finished.load(Ordering::SeqCst) == epoch).then_some(epoch)
    }

    /// No write to `encoded`'s shard has started since `write_epoch` returned `epoch`: what
    /// was read then is what a read now would return.
    pub fn unchanged_since(&self, encoded: &[u8], epoch: u64) -> bool {
        self.writes[self.shard_of(encoded)].0.load(Ordering::SeqCst) == epoch
    }

    /// Compaction drops only expired values (the compaction filter), which no read returns.
    pub fn compact(&self) -> Result<(), ColdError> {
        self.store.compact()
    }

    pub fn sync(&self) -> Result<(), ColdError> {
        self.store.sync()
    }

    pub fn create_checkpoint(&self, path: &Path) -> Result<(), ColdError> {
        self.store.create_checkpoint(path)
    }
}

impl std::ops::Deref for ColdTier {
    type Target = dyn ColdRead;

    fn deref(&self) -> &Self::Target {
        self.store.as_ref()
    }
}

/// The clock the compaction filter reads, shared with the engine so tests can move time.
#[derive(Debug, Default)]
pub struct SharedClock {
    /// 0 = use the system clock; otherwise a fixed time in Unix milliseconds.
    manual_ms: AtomicU64,
}

impl SharedClock {
    pub fn now_ms(&self) -> u64 {
        match self.manual_ms.load(Ordering::Relaxed) {
            0 => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            manual => manual,
        }
    }

    /// Freezes the clock at `ms` (tests only ever need this; 0 goes back to system time).
    pub fn set_manual_ms(&self, ms: u64) {
        self.manual_ms.store(ms, Ordering::Relaxed);
    }
}

/// The compaction filter's rule: an expired live value becomes the expired marker.
/// Metadata records and markers are kept as they are.
fn compaction_replacement(key: &[u8], value: &[u8], now_ms: u64) -> Option<&'static [u8]> {
    if key.len() < KEY_PREFIX_LEN || db_of(key) == META_DB {
        return None;
    }
    if value
        .first()
        .is_some_and(|flags| value == entry::EXPIRED_MARKER && *flags != 0)
    {
        return None;
    }
    let expire_at = entry::read_expire_at(value)?;
    entry::is_expired(expire_at, now_ms).then_some(&entry::EXPIRED_MARKER[..])
}

/// In-memory cold tier for tests: same contract as RocksDB, no disk.
#[derive(Default)]
pub struct MemCold {
    data: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
    expiry: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
    clock: Arc<SharedClock>,
}

impl MemCold {
    pub fn new(clock: Arc<SharedClock>) -> Self {
        MemCold {
            clock,
            ..MemCold::default()
        }
    }

    fn space(&self, space: Space) -> &RwLock<BTreeMap<Vec<u8>, Vec<u8>>> {
        match space {
            Space::Data => &self.data,
            Space::Expiry => &self.expiry,
        }
    }
}

impl ColdRead for MemCold {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ColdError> {
        Ok(self.data.read().get(key).cloned())
    }

    fn multi_get(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, ColdError> {
        let data = self.data.read();
        Ok(keys.iter().map(|key| data.get(*key).cloned()).collect())
    }

    fn range(
        &self,
        space: Space,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Entries, ColdError> {
        if from >= to {
            return Ok(Vec::new());
        }
        Ok(self
            .space(space)
            .read()
            .range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn disk_bytes(&self) -> u64 {
        0
    }

    fn memory_bytes(&self) -> usize {
        let data = self.data.read();
        data.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    fn estimate_keys(&self) -> u64 {
        self.data.read().len() as u64
    }
}

impl ColdStore for MemCold {
    fn write(&self, ops: Vec<ColdOp>) -> Result<(), ColdError> {
        // Both maps locked for the whole batch: atomic like a WriteBatch.
        let mut data = self.data.write();
        let mut expiry = self.expiry.write();
        for op in ops {
            let map = |space| match space {
                Space::Data => 0,
                Space::Expiry => 1,
            };
            match op {
                ColdOp::Put { space, key, value } => {
                    if map(space) == 0 {
                        &mut data
                    } else {
                        &mut expiry
                    }
                    .insert(key, value);
                }
                ColdOp::Delete { space, key } => {
                    if map(space) == 0 {
                        &mut data
                    } else {
                        &mut expiry
                    }
                    .remove(&key);
                }
                ColdOp::DeleteRange { space, from, to } => {
                    let target = if map(space) == 0 {
                        &mut data
                    } else {
                        &mut expiry
                    };
                    let doomed: Vec<Vec<u8>> = target
                        .range::<[u8], _>((Bound::Included(&from[..]), Bound::Excluded(&to[..])))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for key in doomed {
                        target.remove(&key);
                    }
                }
            }
        }
        Ok(())
    }

    fn compact(&self) -> Result<(), ColdError> {
        let now = self.clock.now_ms();
        for (key, value) in self.data.write().iter_mut() {
            if let Some(replacement) = compaction_replacement(key, value, now) {
                *value = replacement.to_vec();
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), ColdError> {
        Ok(())
    }

    fn create_checkpoint(&self, _path: &Path) -> Result<(), ColdError> {
        Err(ColdError(
            "the in-memory cold tier cannot be checkpointed".into(),
        ))
    }
}

/// Sizes the cold tier may use in memory, carved from `maxmemory` by the engine.
#[derive(Debug, Clone)]
pub struct RocksSizing {
    /// Block cache capacity; memtables are charged to it through a write-buffer manager.
    pub block_cache_bytes: usize,
    /// Memtable share of the block cache (write-buffer manager limit).
    pub memtable_bytes: usize,
    /// The engine's cuckoo filter answers absent keys (`storage.filter`, with room), so
    /// files written now leave out last-level bloom filters. Files keep what they were
    /// written with. A filter that later outgrows its share (bypass) sends absent keys to
    /// the last level's index and a data block: no more than reading a bloom filter block
    /// the block cache would not hold at that size either.
    pub engine_filter: bool,
}

const EXPIRY_CF: &str = "expiry";

/// The RocksDB cold tier.
pub struct RocksCold {
    db: rocksdb::DB,
    cache: rocksdb::Cache,
    // Kept alive for the DB's lifetime; RocksDB holds a reference to it.
    _write_buffer_manager: rocksdb::WriteBufferManager,
}

impl RocksCold {
    pub fn open(
        path: &Path,
        sizing: &RocksSizing,
        clock: Arc<SharedClock>,
    ) -> Result<Self, ColdError> {
        let cache = rocksdb::Cache::new_lru_cache(sizing.block_cache_bytes);
        // Memtables are charged to the block cache so one number bounds RocksDB's memory
        // (DESIGN I6); allow_stall makes writers wait rather than overshoot.
        let write_buffer_manager = rocksdb::WriteBufferManager::new_write_buffer_manager_with_cache(
            sizing.memtable_bytes,
            true,
            cache.clone(),
        );

        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        table.set_bloom_filter(10.0, false);
        table.set_block_size(16 * 1024);

        let write_buffer_bytes = (sizing.memtable_bytes / 2).max(1 << 20);
        let mut data_opts = rocksdb::Options::default();
        data_opts.set_block_based_table_factory(&table);
        // With the engine's filter in front, nearly every read that reaches RocksDB is for
        // a key it holds, and a key not found above the last level is in it: the last
        // level (90% of the keys) needs no bloom filter. Dropping it frees block cache for
        // index blocks: Zipf reads over 2M keys, 47.6/50.4k -> 52.2/55.1k ops/s.
        data_opts.set_optimize_filters_for_hits(sizing.engine_filter);
        // Values worth compressing already are (zstd, `compress_min_bytes`); RocksDB's LZ4
        // spent 13% of a bulk load's CPU on values that do not compress.
        data_opts.set_compression_type(rocksdb::DBCompressionType::None);
        data_opts.set_write_buffer_size(write_buffer_bytes);
        data_opts.set_max_write_buffer_number(2);
        // Keys start with their hash slot, so every memtable flush spans the whole key space
        // and each L0 -> L1 compaction rewrites all of L1. Merging 8 flushes at a time into
        // an L1 sized to match, rather than 4 into RocksDB's default 256 MB, halved the time
        // to load 2 GB through a 64 MB budget (70 s -> 36 s, docs/performance.md).
        data_opts.set_level_zero_file_num_compaction_trigger(8);
        data_opts.set_max_bytes_for_level_base((8 * write_buffer_bytes).max(32 << 20) as u64);
        data_opts
            .set_target_file_size_base((2 * write_buffer_bytes).clamp(16 << 20, 64 << 20) as u64);
        let filter_clock = clock.clone();
        data_opts.set_compaction_filter(
            "hypercache-expiry",
            move |_level: u32, key: &[u8], value: &[u8]| match compaction_replacement(
                key,
                value,
                filter_clock.now_ms(),
            ) {
                Some(marker) => rocksdb::CompactionDecision::Change(marker),
                None => rocksdb::CompactionDecision::Keep,
            },
        );

        let mut expiry_opts = rocksdb::Options::default();
        expiry_opts.set_block_based_table_factory(&table);
        expiry_opts.set_write_buffer_size((sizing.memtable_bytes / 4).max(1 << 20));
        expiry_opts.set_max_write_buffer_number(2);

        let mut db_opts = data_opts.clone();
        // Compactions run at a lower CPU priority (nice), so on a machine with few cores
        // the commands being served preempt them; flushes keep normal priority, since a
        // late flush stalls writes.
        let mut env = rocksdb::Env::new()?;
        env.lower_thread_pool_cpu_priority();
        db_opts.set_env(&env);
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_write_buffer_manager(&write_buffer_manager);
        db_opts.set_max_background_jobs(2);
        db_opts.set_max_open_files(512);
        db_opts.set_keep_log_file_num(4);

        let cfs = vec![
            rocksdb::ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, data_opts),
            rocksdb::ColumnFamilyDescriptor::new(EXPIRY_CF, expiry_opts),
        ];
        let db = rocksdb::DB::open_cf_descriptors(&db_opts, path, cfs)?;
        Ok(RocksCold {
            db,
            cache,
            _write_buffer_manager: write_buffer_manager,
        })
    }

    /// Opens an existing store read-only (`hypercache-tool check` on a directory a live
    /// server holds, and listing retained checkpoints). Writes fail.
    pub fn open_read_only(path: &Path) -> Result<Self, ColdError> {
        let cache = rocksdb::Cache::new_lru_cache(8 << 20);
        let write_buffer_manager = rocksdb::WriteBufferManager::new_write_buffer_manager_with_cache(
            1 << 20,
            false,
            cache.clone(),
        );
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&cache);
        let mut opts = rocksdb::Options::default();
        opts.set_block_based_table_factory(&table);
        let cfs = vec![
            rocksdb::ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, opts.clone()),
            rocksdb::ColumnFamilyDescriptor::new(EXPIRY_CF, opts.clone()),
        ];
        let db = rocksdb::DB::open_cf_descriptors_read_only(&opts, path, cfs, false)?;
        Ok(RocksCold {
            db,
            cache,
            _write_buffer_manager: write_buffer_manager,
        })
    }

    fn expiry_cf(&self) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(EXPIRY_CF)
            .expect("expiry column family is created at open")
    }

    fn cf(&self, space: Space) -> &rocksdb::ColumnFamily {
        match space {
            Space::Data => self
                .db
                .cf_handle(rocksdb::DEFAULT_COLUMN_FAMILY_NAME)
                .expect("default column family always exists"),
            Space::Expiry => self.expiry_cf(),
        }
    }

    fn no_sync_write_options() -> rocksdb::WriteOptions {
        // RocksDB's log is synced at checkpoints (DESIGN §4), not per batch.
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(false);
        opts
    }
}

impl ColdRead for RocksCold {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ColdError> {
        Ok(self.db.get_pinned(key)?.map(|slice| slice.to_vec()))
    }

    fn multi_get(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, ColdError> {
        // The batched form: one pass through the memtables and each file's filter and index
        // for all keys (the plain `multi_get` is a loop of single gets).
        self.db
            .batched_multi_get_cf(self.cf(Space::Data), keys.iter().copied(), false)
            .into_iter()
            .map(|result| Ok(result?.map(|slice| slice.to_vec())))
            .collect()
    }

    fn range(
        &self,
        space: Space,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Entries, ColdError> {
        if from >= to || limit == 0 {
            return Ok(Vec::new());
        }
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_upper_bound(to.to_vec());
        let iter = self.db.iterator_cf_opt(
            self.cf(space),
            opts,
            rocksdb::IteratorMode::From(from, rocksdb::Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            let (key, value) = item?;
            out.push((key.to_vec(), value.to_vec()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn disk_bytes(&self) -> u64 {
        let prop = |name| self.db.property_int_value(name).ok().flatten().unwrap_or(0);
        prop("rocksdb.total-sst-files-size") + prop("rocksdb.cur-size-all-mem-tables")
    }

    fn memory_bytes(&self) -> usize {
        self.cache.get_usage()
    }

    fn estimate_keys(&self) -> u64 {
        self.db
            .property_int_value_cf(self.cf(Space::Data), "rocksdb.estimate-num-keys")
            .ok()
            .flatten()
            .unwrap_or(0)
    }
}

impl ColdStore for RocksCold {
    fn write(&self, ops: Vec<ColdOp>) -> Result<(), ColdError> {
        let mut batch = rocksdb::WriteBatch::default();
        for op in &ops {
            match op {
                ColdOp::Put { space, key, value } => batch.put_cf(self.cf(*space), key, value),
                ColdOp::Delete { space, key } => batch.delete_cf(self.cf(*space), key),
                ColdOp::DeleteRange { space, from, to } => {
                    batch.delete_range_cf(self.cf(*space), from, to)
                }
            }
        }
        self.db.write_opt(batch, &Self::no_sync_write_options())?;
        Ok(())
    }

    fn compact(&self) -> Result<(), ColdError> {
        let mut opts = rocksdb::CompactOptions::default();
        opts.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        self.db.flush()?;
        self.db
            .compact_range_cf_opt(self.cf(Space::Data), None::<&[u8]>, None::<&[u8]>, &opts);
        Ok(())
    }

    fn sync(&self) -> Result<(), ColdError> {
        self.db.flush_wal(true)?;
        Ok(())
    }

    fn create_checkpoint(&self, path: &Path) -> Result<(), ColdError> {
        self.db.flush_wal(true)?;
        rocksdb::checkpoint::Checkpoint::new(&self.db)?.create_checkpoint(path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_and_heap_encodings_match_encode_key() {
        for key in [
            &b"k"[..],
            &[b'x'; 92][..],
            &[b'y'; 93][..],
            &[b'z'; 500][..],
        ] {
            assert_eq!(&*EncodedKey::new(7, key), &encode_key(7, key)[..]);
        }
    }

    #[test]
    fn encoded_keys_sort_by_db_then_slot_then_key() {
        let a = encode_key(0, b"foo"); // slot 12182
        let b = encode_key(0, b"bar"); // slot 5061
        let c = encode_key(1, b"bar");
        assert!(b < a, "slot order comes before key order");
        assert!(a < c, "database order comes first");
        assert_eq!(user_key(&a), b"foo");
        assert_eq!(slot_of(&a), 12182);
        assert_eq!(db_of(&c), 1);
        assert!(slot_start(0, 12182) <= a && a < slot_start(0, 12183));
        assert!(c >= slot_start(0, 16384) && c < slot_start(1, 16384));
        assert!(slot_start(u16::MAX - 1, 16384) <= vec![0xFF, 0xFF, 0, 0]);
    }

    #[test]
    fn expiry_index_keys_round_trip_and_sort_by_time() {
        let key = encode_key(3, b"user:1");
        let early = expiry_index_key(&key, 1000);
        let late = expiry_index_key(&encode_key(3, b"a"), 2000);
        assert!(early < late);
        assert_eq!(parse_expiry_index_key(&early), Some((1000, key)));
        assert_eq!(parse_expiry_index_key(&[1, 2]), None);
    }
}

/// One conformance suite, run against both implementations (CONVENTIONS 6).
#[cfg(test)]
mod conformance {
    use super::*;
    use crate::engine::entry::{encode_cold_value, StoredValue};
    use bytes::Bytes;

    fn sizing() -> RocksSizing {
        RocksSizing {
            block_cache_bytes: 8 << 20,
            memtable_bytes: 4 << 20,
            engine_filter: true,
        }
    }

    fn with_each_store(test: impl Fn(&dyn ColdStore, &SharedClock)) {
        let clock = Arc::new(SharedClock::default());
        test(&MemCold::new(clock.clone()), &clock);
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(SharedClock::default());
        let rocks = RocksCold::open(dir.path(), &sizing(), clock.clone()).expect("open rocksdb");
        test(&rocks, &clock);
    }

    fn put(key: &[u8], value: &[u8]) -> ColdOp {
        ColdOp::Put {
            space: Space::Data,
            key: key.to_vec(),
            value: value.to_vec(),
        }
    }

    #[test]
    fn get_put_delete_and_multi_get() {
        with_each_store(|store, _| {
            assert_eq!(store.get(b"k1").unwrap(), None);
            store
                .write(vec![put(b"k1", b"v1"), put(b"k2", b"v2")])
                .unwrap();
            assert_eq!(store.get(b"k1").unwrap(), Some(b"v1".to_vec()));
            store
                .write(vec![ColdOp::Delete {
                    space: Space::Data,
                    key: b"k1".to_vec(),
                }])
                .unwrap();
            assert_eq!(
                store.multi_get(&[b"k1", b"k2", b"k3"]).unwrap(),
                vec![None, Some(b"v2".to_vec()), None]
            );
        });
    }

    #[test]
    fn batches_apply_in_order() {
        with_each_store(|store, _| {
            store
                .write(vec![
                    put(b"k", b"first"),
                    ColdOp::Delete {
                        space: Space::Data,
                        key: b"k".to_vec(),
                    },
                    put(b"k", b"second"),
                ])
                .unwrap();
            assert_eq!(store.get(b"k").unwrap(), Some(b"second".to_vec()));
        });
    }

    #[test]
    fn range_is_ordered_bounded_and_limited_and_spaces_are_separate() {
        with_each_store(|store, _| {
            let ops = (0u8..10).map(|i| put(&[b'a', i], &[i])).collect();
            store.write(ops).unwrap();
            store
                .write(vec![ColdOp::Put {
                    space: Space::Expiry,
                    key: vec![b'a', 3],
                    value: Vec::new(),
                }])
                .unwrap();
            let got = store.range(Space::Data, &[b'a', 2], &[b'a', 8], 4).unwrap();
            let keys: Vec<u8> = got.iter().map(|(k, _)| k[1]).collect();
            assert_eq!(keys, vec![2, 3, 4, 5]);
            assert_eq!(
                store
                    .range(Space::Data, &[b'a', 8], b"b", 100)
                    .unwrap()
                    .len(),
                2
            );
            assert_eq!(
                store.range(Space::Expiry, b"", &[0xFF], 100).unwrap().len(),
                1
            );
            store
                .write(vec![ColdOp::DeleteRange {
                    space: Space::Data,
                    from: vec![b'a', 1],
                    to: vec![b'a', 9],
                }])
                .unwrap();
            let left: Vec<u8> = store
                .range(Space::Data, b"", &[0xFF], 100)
                .unwrap()
                .iter()
                .map(|(k, _)| k[1])
                .collect();
            assert_eq!(left, vec![0, 9]);
        });
    }

    #[test]
    fn compaction_turns_expired_values_into_markers_and_keeps_the_rest() {
        with_each_store(|store, clock| {
            clock.set_manual_ms(10_000);
            let live = encode_cold_value(&StoredValue::Raw(Bytes::from_static(b"live")), 20_000);
            let dead = encode_cold_value(&StoredValue::Raw(Bytes::from_static(b"dead")), 5_000);
            let forever = encode_cold_value(&StoredValue::Raw(Bytes::from_static(b"f")), 0);
            let k_live = encode_key(0, b"live");
            let k_dead = encode_key(0, b"dead");
            let k_forever = encode_key(0, b"forever");
            store
                .write(vec![
                    put(&k_live, &live),
                    put(&k_dead, &dead),
                    put(&k_forever, &forever),
                ])
                .unwrap();
            store.compact().unwrap();
            assert_eq!(store.get(&k_live).unwrap(), Some(live));
            assert_eq!(store.get(&k_forever).unwrap(), Some(forever));
            assert_eq!(
                store.get(&k_dead).unwrap(),
                Some(entry::EXPIRED_MARKER.to_vec())
            );
        });
    }
}
