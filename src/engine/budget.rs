//! The one memory budget (DESIGN I6): `maxmemory` bounds the whole process, and this module
//! carves it into the hot tier, RocksDB's block cache (memtables charged to it), the cuckoo
//! filter and a reserve for client buffers. The filter starts small and grows into its share;
//! whatever share it is not using goes to the hot tier, so when it grows the hot tier shrinks.

use crate::config::MemorySplit;

/// Process memory outside the budget: code, thread stacks, allocator and runtime state,
/// RocksDB's table readers and background threads. RSS stays within `maxmemory` plus this
/// (measured by tests/memory_budget.rs; see docs/architecture.md).
pub const FIXED_OVERHEAD_BYTES: u64 = 48 << 20;

/// Byte amounts derived from `maxmemory` and a [`MemorySplit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryBudget {
    pub maxmemory: usize,
    pub hot_bytes: usize,
    pub block_cache_bytes: usize,
    pub memtable_bytes: usize,
    pub filter_max_bytes: usize,
    pub client_bytes: usize,
}

impl MemoryBudget {
    pub fn new(maxmemory: u64, split: &MemorySplit) -> Result<Self, String> {
        split.check(maxmemory)?;
        let part = |percent: u8| (maxmemory as u128 * u128::from(percent) / 100) as usize;
        let block_cache_bytes = part(split.cold_cache_percent);
        Ok(MemoryBudget {
            maxmemory: maxmemory as usize,
            hot_bytes: part(split.hot_percent),
            block_cache_bytes,
            memtable_bytes: block_cache_bytes * usize::from(split.memtable_percent_of_cold_cache)
                / 100,
            filter_max_bytes: part(split.filter_percent),
            client_bytes: part(split.clients_percent),
        })
    }

    /// The hot tier's limit when the filter uses `filter_bytes`: the hot share plus the
    /// filter room not yet in use.
    pub fn hot_limit(&self, filter_bytes: usize) -> usize {
        self.hot_bytes + self.filter_max_bytes.saturating_sub(filter_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_split_carves_the_whole_budget() {
        let budget = MemoryBudget::new(1 << 30, &MemorySplit::default()).unwrap();
        let sum = budget.hot_bytes
            + budget.block_cache_bytes
            + budget.filter_max_bytes
            + budget.client_bytes;
        assert!(sum <= 1 << 30);
        assert_eq!(budget.memtable_bytes, budget.block_cache_bytes / 2);
    }

    #[test]
    fn filter_growth_shrinks_the_hot_tier() {
        let budget = MemoryBudget::new(100 << 20, &MemorySplit::default()).unwrap();
        let before = budget.hot_limit(1 << 20);
        let after = budget.hot_limit(8 << 20);
        assert_eq!(before - after, 7 << 20);
        assert_eq!(budget.hot_limit(usize::MAX), budget.hot_bytes);
    }

    #[test]
    fn bad_splits_are_rejected() {
        let over = MemorySplit {
            hot_percent: 90,
            ..MemorySplit::default()
        };
        assert!(MemoryBudget::new(1 << 30, &over)
            .unwrap_err()
            .contains("adds up to"));
        assert!(MemoryBudget::new(1 << 20, &MemorySplit::default()).is_err());
    }
}
