//! How `maxmemory` is carved up (DESIGN I6), as configured, and the rules a split must
//! keep. The engine turns a valid split into byte amounts (`engine::budget`); this module
//! only describes and checks it.

use serde::{Deserialize, Serialize};

/// The smallest `maxmemory` accepted: RocksDB needs a few MiB of cache to work at all.
pub const MIN_MAXMEMORY: u64 = 16 << 20;

/// How `maxmemory` is split, in percent. Defaults are documented in configs/hypercache.yaml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySplit {
    /// Hot tier (LRU of entries). Default 55.
    pub hot_percent: u8,
    /// RocksDB block cache, memtables included. Default 25.
    pub cold_cache_percent: u8,
    /// Share of `cold_cache_percent` that memtables may use. Default 50.
    pub memtable_percent_of_cold_cache: u8,
    /// Cuckoo filter ceiling; unused filter room goes to the hot tier. Default 10.
    pub filter_percent: u8,
    /// Reserve for client query and output buffers. Default 10.
    pub clients_percent: u8,
}

impl Default for MemorySplit {
    fn default() -> Self {
        MemorySplit {
            hot_percent: 55,
            cold_cache_percent: 25,
            memtable_percent_of_cold_cache: 50,
            filter_percent: 10,
            clients_percent: 10,
        }
    }
}

impl MemorySplit {
    /// Checks the split against `maxmemory`; each message names what is wrong.
    pub fn check(&self, maxmemory: u64) -> Result<(), String> {
        if maxmemory < MIN_MAXMEMORY {
            return Err(format!(
                "maxmemory must be at least {} bytes (16mb), got {maxmemory}",
                MIN_MAXMEMORY
            ));
        }
        let total = u32::from(self.hot_percent)
            + u32::from(self.cold_cache_percent)
            + u32::from(self.filter_percent)
            + u32::from(self.clients_percent);
        if total > 100 {
            return Err(format!(
                "memory split adds up to {total}% (hot + cold_cache + filter + clients must be <= 100)"
            ));
        }
        if self.hot_percent == 0 || self.cold_cache_percent == 0 {
            return Err("memory split: hot_percent and cold_cache_percent must be > 0".into());
        }
        if self.memtable_percent_of_cold_cache == 0 || self.memtable_percent_of_cold_cache > 90 {
            return Err("memory split: memtable_percent_of_cold_cache must be 1..=90".into());
        }
        Ok(())
    }
}
