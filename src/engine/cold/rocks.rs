//! [`RocksCold`]: the cold tier on RocksDB. It owns the RocksDB options and their sizing
//! from the memory budget ([`RocksSizing`]), the two column families (data, expiry index)
//! and the compaction filter that turns expired values into the expired marker.
//!
//! It must never let RocksDB's memory grow past what the engine carved for it (memtables
//! are charged to the block cache, DESIGN I6), and never fsync per batch: its log is synced
//! at checkpoints (DESIGN §4), and the engine WAL covers the writes in between.

use std::path::Path;
use std::sync::Arc;

use super::{
    compaction_replacement, ColdError, ColdOp, ColdRead, ColdStore, Entries, SharedClock, Space,
};

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
    /// The configured disk budget (`maxdisk`), if any: a small budget gets smaller files
    /// and levels, so obsolete data waiting for compaction stays a small share of it.
    pub disk_budget_bytes: Option<u64>,
}

impl RocksSizing {
    /// The data space's shape: (memtable size, L0 files that trigger a compaction, L1
    /// target size, target file size). Without a budget (or a large one) the shape that
    /// loads fastest (see `open`); under a small one, levels of at most a tenth of the
    /// budget and files of at most 1/128 of it, so compaction reclaims evicted keys in
    /// small steps and the files stay within the budget's slack: a compaction from the
    /// base level rewrites the part of the last level one of its files overlaps, and keys
    /// spread over the whole key space (hash slots), so with files of 1/32 of the budget
    /// that was about a third of the last level at once (files up to 1.8x maxdisk under
    /// the hit-ratio benchmark).
    fn data_shape(&self) -> (usize, i32, u64, u64) {
        let write_buffer = (self.memtable_bytes / 2).max(1 << 20);
        let mut l0_trigger = 8;
        let mut level_base = (8 * write_buffer).max(32 << 20) as u64;
        let mut target_file = (2 * write_buffer).clamp(16 << 20, 64 << 20) as u64;
        if let Some(budget) = self.disk_budget_bytes {
            let l0_room = (budget / 16) / write_buffer as u64;
            l0_trigger = l0_room.clamp(2, 8) as i32;
            level_base = level_base.min(budget / 10).max(write_buffer as u64);
            target_file = target_file.min(budget / 128).max(1 << 20);
        }
        (write_buffer, l0_trigger, level_base, target_file)
    }
}

const EXPIRY_CF: &str = "expiry";
const MEMBERS_CF: &str = "members";

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

        let (write_buffer_bytes, l0_trigger, level_base, target_file) = sizing.data_shape();
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
        // (A small disk budget shrinks all three: `RocksSizing::data_shape`.)
        data_opts.set_level_zero_file_num_compaction_trigger(l0_trigger);
        data_opts.set_max_bytes_for_level_base(level_base);
        data_opts.set_target_file_size_base(target_file);
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

        let mut members_opts = rocksdb::Options::default();
        members_opts.set_block_based_table_factory(&table);
        members_opts.set_write_buffer_size((sizing.memtable_bytes / 4).max(1 << 20));
        members_opts.set_max_write_buffer_number(2);

        let mut db_opts = data_opts.clone();
        // Without a disk budget, compactions run at a lower CPU priority (nice), so on a
        // machine with few cores the commands being served preempt them (hot-set p99 under
        // the tiered benchmark: 1,465 -> 749 us); flushes keep normal priority, since a late
        // flush stalls writes. Under a configured `maxdisk` compaction is what keeps the
        // files within the budget, and niced on a busy core it fell behind: files reached
        // 1.6x maxdisk and writes waited for room (hit-ratio benchmark: peak du 402 MB
        // against 256 MB; at normal priority 253 MB, and 41k ops/s instead of 27k).
        let mut env = rocksdb::Env::new()?;
        if sizing.disk_budget_bytes.is_none() {
            env.lower_thread_pool_cpu_priority();
        }
        db_opts.set_env(&env);
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_write_buffer_manager(&write_buffer_manager);
        db_opts.set_max_background_jobs(2);
        db_opts.set_max_open_files(512);
        db_opts.set_keep_log_file_num(4);
        // A log file goes only once every column family with data in it has flushed; the
        // expiry index's memtable fills slowly, so without a cap it kept 18 MB of logs
        // alive under a 24 MB disk budget. Past the cap, RocksDB flushes the family
        // holding the oldest log.
        db_opts.set_max_total_wal_size((2 * sizing.memtable_bytes).max(4 << 20) as u64);

        let cfs = vec![
            rocksdb::ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, data_opts),
            rocksdb::ColumnFamilyDescriptor::new(EXPIRY_CF, expiry_opts),
            // Created on first open of a directory written before it existed.
            rocksdb::ColumnFamilyDescriptor::new(MEMBERS_CF, members_opts),
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
        // A directory written before the members space existed lacks its column family, and
        // a read-only open cannot create it: open what is there (`cf` reads a missing one as
        // empty).
        let existing = rocksdb::DB::list_cf(&opts, path)?;
        let cfs = [rocksdb::DEFAULT_COLUMN_FAMILY_NAME, EXPIRY_CF, MEMBERS_CF]
            .into_iter()
            .filter(|name| existing.iter().any(|have| have == name))
            .map(|name| rocksdb::ColumnFamilyDescriptor::new(name, opts.clone()))
            .collect::<Vec<_>>();
        let db = rocksdb::DB::open_cf_descriptors_read_only(&opts, path, cfs, false)?;
        Ok(RocksCold {
            db,
            cache,
            _write_buffer_manager: write_buffer_manager,
        })
    }

    /// The column family of `space`. `None` only for a space a directory opened read-only
    /// does not have yet (members, before they existed): it holds nothing.
    fn cf(&self, space: Space) -> Option<&rocksdb::ColumnFamily> {
        self.db.cf_handle(match space {
            Space::Data => rocksdb::DEFAULT_COLUMN_FAMILY_NAME,
            Space::Expiry => EXPIRY_CF,
            Space::Members => MEMBERS_CF,
        })
    }

    fn data_cf(&self) -> &rocksdb::ColumnFamily {
        self.cf(Space::Data)
            .expect("the default column family always exists")
    }

    /// The column family a write to `space` goes to.
    fn writable_cf(&self, space: Space) -> Result<&rocksdb::ColumnFamily, ColdError> {
        self.cf(space).ok_or_else(|| {
            ColdError::Storage(format!("the cold tier has no column family for {space:?}"))
        })
    }

    fn no_sync_write_options() -> rocksdb::WriteOptions {
        // RocksDB's log is synced at checkpoints (DESIGN §4), not per batch.
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(false);
        // Every write is made holding a hot shard's lock. Without this a write stall waits
        // in RocksDB until flushes and compactions catch up, which on a full disk is never
        // (compactions cancelled for lack of room, L0 at its stop trigger): every command
        // on the shard then hung. With it a stall is `ColdError::Stalled` at once, and the
        // engine retries with backoff, its locks released (`disk_health`).
        opts.set_no_slowdown(true);
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
            .batched_multi_get_cf(self.data_cf(), keys.iter().copied(), false)
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
        let Some(cf) = self.cf(space) else {
            return Ok(Vec::new());
        };
        if from >= to || limit == 0 {
            return Ok(Vec::new());
        }
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_upper_bound(to.to_vec());
        let iter = self.db.iterator_cf_opt(
            cf,
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
            .property_int_value_cf(self.data_cf(), "rocksdb.estimate-num-keys")
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
                ColdOp::Put { space, key, value } => {
                    batch.put_cf(self.writable_cf(*space)?, key, value)
                }
                ColdOp::Delete { space, key } => batch.delete_cf(self.writable_cf(*space)?, key),
                ColdOp::DeleteRange { space, from, to } => {
                    batch.delete_range_cf(self.writable_cf(*space)?, from, to)
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
            .compact_range_cf_opt(self.data_cf(), None::<&[u8]>, None::<&[u8]>, &opts);
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
    use super::{RocksCold, RocksSizing};
    use crate::engine::cold::SharedClock;
    use std::path::Path;
    use std::sync::Arc;

    fn open(dir: &Path, clock: Arc<SharedClock>) -> RocksCold {
        let sizing = RocksSizing {
            block_cache_bytes: 8 << 20,
            memtable_bytes: 4 << 20,
            engine_filter: true,
            disk_budget_bytes: None,
        };
        RocksCold::open(dir, &sizing, clock).expect("open rocksdb")
    }

    crate::cold_store_conformance_tests!(open);

    /// A directory written before the members space existed: a read-only open (the tool's
    /// `check`) reads it as empty, and a writable open adds it.
    #[test]
    fn a_directory_without_the_members_space_opens_both_ways() {
        use super::{ColdRead, ColdStore, Space, EXPIRY_CF};
        use crate::engine::cold::ColdOp;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        {
            let mut opts = rocksdb::Options::default();
            opts.create_if_missing(true);
            opts.create_missing_column_families(true);
            let db = rocksdb::DB::open_cf(&opts, &path, [EXPIRY_CF]).unwrap();
            db.put(b"key", b"value").unwrap();
        }
        {
            let old = RocksCold::open_read_only(&path).unwrap();
            assert_eq!(old.get(b"key").unwrap(), Some(b"value".to_vec()));
            assert!(old
                .range(Space::Members, b"", &[0xFF], 10)
                .unwrap()
                .is_empty());
        }
        let store = open(&path, Arc::new(SharedClock::default()));
        store
            .write(vec![ColdOp::Put {
                space: Space::Members,
                key: b"member".to_vec(),
                value: b"m".to_vec(),
            }])
            .unwrap();
        assert_eq!(
            store.range(Space::Members, b"", &[0xFF], 10).unwrap().len(),
            1
        );
        assert_eq!(store.get(b"key").unwrap(), Some(b"value".to_vec()));
    }
}
