//! Point-in-time figures for INFO and metrics, read without waiting on a busy shard.

use super::api::TierReport;
use super::Engine;

impl Engine {
    /// Figures for INFO and metrics (never waits for a shard: see `HotTier::figures`).
    pub fn tier_report(&self) -> TierReport {
        let (hot_used_bytes, hot_keys) = self.hot.figures();
        let filter = self.filter.read();
        TierReport {
            stats: self.stats.snapshot(),
            hot_used_bytes,
            hot_limit_bytes: self.hot.limit_bytes(),
            hot_keys,
            cold_disk_bytes: self.cold.disk_bytes(),
            cold_keys_estimate: self.cold.estimate_keys(),
            cold_memory_bytes: self.cold.memory_bytes(),
            filter_used_bytes: filter.memory_bytes(),
            filter_load_factor: filter.load_factor(),
            filter_fingerprints: filter.len(),
            filter_bypassed: filter.is_bypassed(),
            disk: self.eviction.disk_report(),
            disk_budget_refusing: self.eviction.refusing(),
            keys_per_db: (0..self.databases())
                .map(|db| self.dbsize(db).unwrap_or(0))
                .collect(),
            disk_health: self.cold.health().report(),
        }
    }
}
