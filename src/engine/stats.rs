//! Engine counters, read by INFO `# Tiers` and the Prometheus endpoint (one source for both),
//! and [`Counter`], the striped counter every per-command statistic uses.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

/// Stripes per counter: more than the worker threads a typical machine runs.
const STRIPES: usize = 16;

/// One stripe on its own cache line, so threads bumping different stripes never contend.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Stripe(AtomicI64);

/// A counter that many threads bump without sharing a cache line: each thread adds to its
/// own stripe and readers sum them. The sum is exact; only reads are slower.
#[derive(Debug, Default)]
pub struct Counter {
    stripes: [Stripe; STRIPES],
}

fn stripe_of_this_thread() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|stripe| *stripe)
}

impl Counter {
    pub fn add(&self, delta: i64) {
        self.stripes[stripe_of_this_thread()]
            .0
            .fetch_add(delta, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.stripes
            .iter()
            .map(|stripe| stripe.0.load(Ordering::Relaxed))
            .sum()
    }

    /// Sets the total to zero (racing adds may survive; fine for statistics and for key
    /// counts, which are only reset with every shard held).
    pub fn reset(&self) {
        for stripe in &self.stripes {
            stripe.0.store(0, Ordering::Relaxed);
        }
    }
}

macro_rules! engine_counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Monotonic engine counters.
        #[derive(Debug, Default)]
        pub struct EngineStats {
            $($(#[$doc])* pub $name: Counter,)*
        }

        /// A point-in-time copy of [`EngineStats`].
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct StatsSnapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl EngineStats {
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $($name: self.$name.get().max(0) as u64,)* }
            }

            /// CONFIG RESETSTAT.
            pub fn reset(&self) {
                $(self.$name.reset();)*
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
    /// Cold-tier multi_gets made for batches of GETs from many clients.
    cold_read_batches,
    /// Keys read through those batches.
    cold_batched_reads,
    /// Batched keys read again under their shard lock because a cold write overlapped the
    /// batch (its result might be stale).
    cold_batch_rereads,
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
    /// Keys removed from the whole cache by the eviction policy (Redis's `evicted_keys`).
    evicted_keys,
    /// Of those, keys deleted from the cold tier to keep it within `maxdisk`.
    cold_evictions,
    /// Of those, keys dropped straight from RAM because the disk stood over its budget and
    /// slack (compaction behind) when they had to leave the hot tier: the policy takes them
    /// rather than writes being refused.
    ram_evictions,
    /// Clean entries written down again on leaving the hot tier, only so their cold copy's
    /// access stamp is fresh for the eviction policy.
    stamp_refreshes,
    /// Filter insertions that could not be stored (filter in bypass mode).
    filter_bypassed_inserts,
}
