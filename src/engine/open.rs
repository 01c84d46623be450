//! Opening the engine: validating the configuration, opening the cold store, building the
//! hot tier and the filter, and (without a saved state) rebuilding the filter and the key
//! counts from what the cold tier holds. Recovery with a WAL and saved state is in
//! `durability.rs`, which builds on `assemble` here.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use super::api::{EngineError, EngineResult};
use super::budget::MemoryBudget;
use super::cold::{self, ColdStore, MemCold, RocksCold, RocksSizing, SharedClock};
use super::durability::{self, Durability};
use super::eviction;
use super::filter::{self, hash_key, CuckooFilter, FilterConfig};
use super::hot_tier::HotTier;
use super::keys;
use super::shared_filter::SharedFilter;
use super::stats::{Counter, EngineStats};
use super::watch::WatchRegistry;
use super::{db_prefix, Engine};
use crate::config::{ColdBackend, EngineConfig};

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

    pub(super) fn open_cold_tier(
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
                std::fs::create_dir_all(&path).map_err(|source| EngineError::CreateDir {
                    path: path.clone(),
                    source,
                })?;
                let sizing = RocksSizing {
                    block_cache_bytes: budget.block_cache_bytes,
                    memtable_bytes: budget.memtable_bytes,
                    engine_filter: config.filter && budget.filter_max_bytes > 0,
                    disk_budget_bytes: config.maxdisk.map(|size| size.0),
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
        engine.recompute_shard_limit();
        Ok(engine)
    }

    pub(super) fn with_cold_store_unscanned(
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
        let key_counts = (0..config.databases).map(|_| Counter::default()).collect();
        let expiry_cursors = (0..config.databases).map(db_prefix).collect();
        let engine = Engine {
            budget,
            hot: HotTier::new(config.hot_shards),
            cold: cold::ColdTier::new(cold, config.hot_shards),
            filter: SharedFilter::new(filter),
            key_counts,
            stats: EngineStats::default(),
            clock,
            expiry_cursors: Mutex::new(expiry_cursors),
            watches: WatchRegistry::default(),
            active_expiry: AtomicBool::new(true),
            wal: OnceLock::new(),
            durability: durability::State::new(Durability::default()),
            replication: Default::default(),
            eviction: eviction::EvictionState::new(&config),
            config,
        };
        Ok(engine)
    }

    /// Builds the engine without looking at the cold tier's contents yet (recovery decides
    /// between loading the saved filter and counts, and rebuilding them).
    pub(super) fn assemble(
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
    pub(super) fn rebuild_from_cold(&self) -> EngineResult<()> {
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
    pub(super) fn for_each_cold_page(&self, visit: impl FnMut(&cold::Entries)) -> EngineResult<()> {
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
}
