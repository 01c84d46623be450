//! Cache semantics over both tiers (DESIGN section 8): the live eviction settings
//! (`maxmemory-policy`, `maxmemory-samples`, the LFU knobs), the disk budget (`maxdisk`) and
//! how full it is, and removing keys from the whole cache when the budget is reached.
//!
//! RAM pressure never loses a key: the hot tier demotes (`demote`). This module acts only on
//! the disk: once the cold tier nears `maxdisk`, it samples cold keys as Redis samples its
//! dictionary, keeps the best victims in a small pool, and deletes them from the cold tier;
//! under `noeviction` (or a volatile policy with nothing volatile left) it refuses instead,
//! and the writes that would need room get `-OOM`. Each entry's access stamp (`access`)
//! is what the LRU and LFU policies compare.

pub mod access;
mod budget;
mod sampler;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};

use parking_lot::Mutex;

use crate::config::{EngineConfig, EvictionPolicy};

use super::entry::NO_EXPIRY;
use super::hot::HotEntry;
use access::LfuParams;
pub use budget::DiskReport;
use sampler::Candidate;

/// Share of the budget past which stamps are kept fresh on disk (`stamps_matter`).
const STAMPS_MATTER_ABOVE: f64 = 0.5;

/// The most keys per victim a sampling round reads from the cold tier, whatever
/// `maxmemory-samples` says.
const MAX_COLD_SAMPLES: usize = 64;

/// Live settings and state of eviction. Settings are atomics because every GET reads the
/// LFU knobs and CONFIG SET may change them at any time.
pub(super) struct EvictionState {
    policy: AtomicU8,
    samples: AtomicU32,
    lfu_log_factor: AtomicU32,
    lfu_decay_minutes: AtomicU32,
    budget: budget::DiskBudget,
    /// The best victims seen by recent sampling rounds, best last (Redis's eviction pool).
    pool: Mutex<Vec<Candidate>>,
    /// Set while the disk budget is reached and nothing may be evicted: demotion stops and
    /// writes that need room get `-OOM`.
    refusing: AtomicBool,
    /// Set while the cold tier's files are over the budget: demotion waits for compaction
    /// and eviction to catch up (writes needing room wait for it, at most a second).
    paused: AtomicBool,
    /// Where volatile-ttl's last sample began in the expiry index: the nearest deadlines
    /// are evicted first, and seeking from the index's start each time would walk over
    /// the deleted entries of every earlier victim until compaction drops them.
    ttl_cursor: Mutex<Vec<u8>>,
    /// Set by the budget pass while the live estimate passes `STAMPS_MATTER_ABOVE` of the
    /// budget (read for every clean entry leaving RAM, so it is a flag, not a measurement).
    near_budget: AtomicBool,
    /// When the budget pass last compacted the cold tier to reclaim deleted bytes.
    last_compaction: Mutex<Option<std::time::Instant>>,
}

impl EvictionState {
    pub(super) fn new(config: &EngineConfig) -> Self {
        let state = EvictionState {
            policy: AtomicU8::new(0),
            samples: AtomicU32::new(5),
            lfu_log_factor: AtomicU32::new(10),
            lfu_decay_minutes: AtomicU32::new(1),
            budget: budget::DiskBudget::new(config),
            pool: Mutex::new(Vec::new()),
            refusing: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            ttl_cursor: Mutex::new(Vec::new()),
            last_compaction: Mutex::new(None),
            near_budget: AtomicBool::new(false),
        };
        state.apply(config);
        state
    }

    /// Takes the eviction settings of `config` (at start and on CONFIG SET).
    pub(super) fn apply(&self, config: &EngineConfig) {
        let index = EvictionPolicy::ALL
            .iter()
            .position(|policy| *policy == config.maxmemory_policy)
            .unwrap_or(0);
        let previous = self.policy.swap(index as u8, Ordering::Relaxed);
        if previous != index as u8 {
            // Scores of one policy mean nothing to another.
            self.pool.lock().clear();
        }
        self.samples
            .store(config.maxmemory_samples.max(1), Ordering::Relaxed);
        self.lfu_log_factor
            .store(config.lfu_log_factor, Ordering::Relaxed);
        self.lfu_decay_minutes
            .store(config.lfu_decay_time, Ordering::Relaxed);
        self.budget
            .set_configured(config.maxdisk.map(|size| size.0));
    }

    pub(super) fn policy(&self) -> EvictionPolicy {
        EvictionPolicy::ALL[usize::from(self.policy.load(Ordering::Relaxed))]
    }

    pub(super) fn lfu(&self) -> LfuParams {
        LfuParams {
            log_factor: self.lfu_log_factor.load(Ordering::Relaxed),
            decay_minutes: self.lfu_decay_minutes.load(Ordering::Relaxed),
        }
    }

    fn samples(&self) -> usize {
        (self.samples.load(Ordering::Relaxed) as usize).min(MAX_COLD_SAMPLES)
    }

    /// Notes an entry of `bytes` (key and encoded value) written to the cold tier.
    pub(super) fn note_written(&self, bytes: usize, expire_at: u64) {
        self.budget.note_written(bytes, expire_at);
    }

    pub(super) fn disk_report(&self) -> DiskReport {
        self.budget.report()
    }

    /// Whether the disk budget is reached with nothing to evict.
    pub(super) fn refusing(&self) -> bool {
        self.refusing.load(Ordering::Relaxed)
    }

    /// Whether demotion must wait: the policy evicts nothing, or the files are over budget.
    pub(super) fn demotion_paused(&self) -> bool {
        self.refusing() || self.paused.load(Ordering::Relaxed)
    }

    /// Whether the policy may take `entry` straight from RAM while demotion is paused:
    /// the allkeys policies any key, the volatile ones a key with a TTL, noeviction none.
    pub(super) fn may_take_from_ram(&self, entry: &HotEntry) -> bool {
        match self.policy() {
            EvictionPolicy::Noeviction => false,
            policy if policy.volatile_only() => entry.expire_at != NO_EXPIRY,
            _ => true,
        }
    }

    /// Whether the cold tier is near enough to its budget that stamps must be kept fresh
    /// on disk (a clean entry dropped with a much newer stamp than its cold copy's is
    /// written down again, so the sampler does not take a key in use for an idle one).
    pub(super) fn stamps_matter(&self) -> bool {
        self.near_budget.load(Ordering::Relaxed)
    }
}
