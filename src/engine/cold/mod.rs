//! The cold tier: an ordered, durable key-value store on disk (RocksDB), behind the small
//! [`ColdRead`] / [`ColdStore`] traits so the engine can also run on [`MemCold`] in tests.
//!
//! It owns the store's two key spaces ([`Space`]), atomic batches of changes ([`ColdOp`]),
//! the storage errors ([`ColdError`]), the engine's counted handle on the store
//! ([`ColdTier`]) and the expiry rule its compaction applies. Keys arrive already encoded
//! (`super::keys` owns their layout); values are opaque except for the expiry the
//! compaction filter reads (`super::entry`).
//!
//! It must never decide what is visible: it knows nothing about the hot tier, the filter or
//! the key counts, and the engine keeps those right. It must never drop a live value: the
//! only value it changes on its own is an expired one, which compaction turns into the
//! expired marker. Every store passes the same conformance suite (`conformance`, one file
//! per capability), whatever it is built on.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::disk_health::DiskHealth;
use super::entry;
use super::keys::{db_of, hot_shard_of, KEY_PREFIX_LEN, META_DB};

mod clock;
pub use clock::{FrozenTime, SharedClock};
pub mod faulty;
mod mem;
mod rocks;

#[cfg(any(test, feature = "cold-conformance"))]
pub mod conformance;

pub use faulty::{Fault, FaultSwitch, FaultyCold};
pub use mem::MemCold;
pub use rocks::{RocksCold, RocksSizing};

/// Key-value pairs read from a range, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// The key spaces of the cold tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    /// Encoded key -> encoded cold value (see `entry`), plus META_DB records.
    Data,
    /// Expiry index key -> empty; one entry per cold value that has an expiry.
    Expiry,
    /// Sub-records of collections stored field by field (`keys::member_key`): a collection's
    /// fields are one range, inside its key's slot. SCAN, the key counts, the filter and the
    /// expiry compaction filter read only `Data`, so a field is never listed, counted,
    /// filtered or expired as a key; only the batched GET's write epochs ignore it too,
    /// since a GET reads `Data` alone.
    Members,
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

/// A failure of the cold tier; the engine reports it and keeps serving.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ColdError {
    /// The storage underneath failed, in its own words (RocksDB's status message).
    Storage(String),
    /// The write would have to wait for the store to catch up (RocksDB's write stall:
    /// flushes or compactions behind); nothing was written. Writes are made with
    /// `no_slowdown` so that a stall that never ends (a flush or compaction that cannot
    /// finish on a full disk) never holds a hot shard's lock: the engine retries later.
    Stalled,
    /// The store keeps nothing on disk to copy; `store` names it ("in-memory").
    CheckpointUnsupported { store: &'static str },
    /// The checkpoint meta record is there but does not decode.
    DamagedCheckpointRecord,
    /// Recovery could not read the checkpoint record of the data directory `dir`;
    /// `hypercache-tool check` tells what else is wrong there.
    NeedsCheck { cause: Box<ColdError>, dir: PathBuf },
}

impl std::fmt::Display for ColdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cold tier: ")?;
        match self {
            ColdError::Storage(message) => write!(f, "{message}"),
            ColdError::Stalled => write!(f, "write stalled (flushes or compactions behind)"),
            ColdError::CheckpointUnsupported { store } => {
                write!(f, "the {store} cold tier cannot be checkpointed")
            }
            ColdError::DamagedCheckpointRecord => {
                write!(f, "the checkpoint meta record is damaged")
            }
            // The cause brings its own "cold tier: " prefix; the doubled prefix is the text
            // operators have always seen here, kept as it was.
            ColdError::NeedsCheck { cause, dir } => write!(
                f,
                "{cause}; run `hypercache-tool check --dir {}`",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for ColdError {}

impl From<rocksdb::Error> for ColdError {
    fn from(err: rocksdb::Error) -> Self {
        match err.kind() {
            // What a `no_slowdown` write returns instead of waiting out a stall.
            rocksdb::ErrorKind::Incomplete => ColdError::Stalled,
            _ => ColdError::Storage(err.into_string()),
        }
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
/// on; the store itself, whose `write` would not be counted, is not reachable. Every
/// write's outcome (and sync's, and compaction's) is recorded in the tier's [`DiskHealth`].
pub struct ColdTier {
    store: Box<dyn ColdStore>,
    /// Per hot shard (indexed like the engine's shards, by slot): writes started, finished.
    writes: Box<[(AtomicU64, AtomicU64)]>,
    health: DiskHealth,
}

impl ColdTier {
    /// `shards`: the engine's hot shard count, a power of two.
    pub fn new(store: Box<dyn ColdStore>, shards: usize) -> Self {
        ColdTier {
            store,
            writes: (0..shards.max(1))
                .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
                .collect(),
            health: DiskHealth::default(),
        }
    }

    /// Whether cold writes succeed, and whether writes are refused for it.
    pub(super) fn health(&self) -> &DiskHealth {
        &self.health
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
        let result = self.store.write(ops);
        self.health.record(&result);
        result
    }

    /// The shards whose keys' values `ops` may change. Expiry-index entries and members
    /// change no value a (batched) GET returns; a range (FLUSHDB) or a key without a slot counts for every shard.
    fn shards_written(&self, ops: &[ColdOp]) -> Vec<usize> {
        let mut shards = Vec::new();
        for op in ops {
            match op {
                ColdOp::Put { space, key, .. } | ColdOp::Delete { space, key } => {
                    if *space != Space::Data {
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
        let result = self.store.compact();
        self.health.record(&result);
        result
    }

    pub fn sync(&self) -> Result<(), ColdError> {
        let result = self.store.sync();
        self.health.record(&result);
        result
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

/// The compaction filter's rule: an expired live value becomes the expired marker.
/// Metadata records and markers are kept as they are. One rule for every store: RocksDB's
/// compaction filter and `MemCold::compact` both apply it.
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
