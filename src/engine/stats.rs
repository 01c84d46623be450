//! Engine counters, read by INFO `# Tiers` and the Prometheus endpoint (one source for both).

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! engine_counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Monotonic engine counters; relaxed atomics, since they are statistics, not state.
        #[derive(Debug, Default)]
        pub struct EngineStats {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        /// A point-in-time copy of [`EngineStats`].
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct StatsSnapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl EngineStats {
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }

            /// CONFIG RESETSTAT.
            pub fn reset(&self) {
                $(self.$name.store(0, Ordering::Relaxed);)*
            }
        }
    };
}

engine_counters! {
    /// Lookups answered by the hot tier.
    hot_hits,
    /// Lookups the hot tier could not answer.
    hot_misses,
    /// Cold reads that found a live value.
    cold_hits,
    /// Cold reads that found nothing live.
    cold_misses,
    /// Hot misses the filter answered "definitely absent" without disk I/O.
    filter_short_circuits,
    /// Cold reads the filter allowed that found no key at all.
    filter_false_positives,
    /// Entries copied from the cold tier into the hot tier.
    promotions,
    /// Dirty entries written to the cold tier on eviction.
    demotions,
    /// Entries that left the hot tier for lack of room (demoted or dropped clean).
    evictions,
    /// Keys removed because their time ran out.
    expired_keys,
    /// Filter insertions that could not be stored (filter in bypass mode).
    filter_bypassed_inserts,
}

impl EngineStats {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
