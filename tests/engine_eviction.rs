//! The eviction policies over both tiers (DESIGN section 8), against a model: once the cold
//! tier passes its disk budget, `enforce_disk_budget` removes keys by the policy's rule
//! (volatile-* never a key without a TTL, volatile-ttl the nearest deadline first,
//! noeviction none: it refuses writes instead), keeps DBSIZE exact, and an approximate
//! LRU's choice is measured against the exact one. Access stamps travel with a key between
//! the tiers (OBJECT IDLETIME and FREQ answer for cold keys).
//!
//! The engine runs on the in-memory cold store with a hot tier of a few entries, so nearly
//! every key is cold, and the budget pass is called directly (no background threads, a
//! manual clock): every outcome is deterministic but for the sampler's draws, and the
//! assertions hold for any draw.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use hypercache::config::{ByteSize, EngineConfig, EvictionPolicy};
use hypercache::engine::cold::{MemCold, SharedClock};
use hypercache::engine::{Access, Engine, OomRefusal, SetExpiry, SetOptions};

const BLOCK: Access = Access::MayBlock;
const VALUE_LEN: usize = 1000;
const NOW: u64 = 1_800_000_000_000;

struct Cache {
    engine: Engine,
    clock: Arc<SharedClock>,
    config: EngineConfig,
    _dir: tempfile::TempDir,
}

impl Cache {
    fn new(policy: EvictionPolicy) -> Cache {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(SharedClock::default());
        clock.set_manual_ms(NOW);
        let config = EngineConfig {
            dir: dir.path().to_path_buf(),
            maxmemory: ByteSize(16 << 20),
            hot_shards: 4,
            // A few entries per shard: nearly every key lives in the cold tier.
            hot_max_bytes: Some(ByteSize(8 << 10)),
            compress_min_bytes: 0,
            filter_initial_capacity: 4096,
            maxmemory_policy: policy,
            // No budget to speak of until a test sets one.
            maxdisk: Some(ByteSize(1 << 40)),
            ..EngineConfig::default()
        };
        let store = MemCold::new(clock.clone());
        let engine = Engine::with_cold_store(config.clone(), Box::new(store), clock.clone())
            .expect("engine opens");
        Cache {
            engine,
            clock,
            config,
            _dir: dir,
        }
    }

    fn set(&self, i: usize, expire_at: Option<u64>) {
        let options = SetOptions {
            expiry: expire_at.map_or(SetExpiry::Clear, SetExpiry::At),
            ..SetOptions::default()
        };
        self.engine
            .set(BLOCK, 0, &key(i), value(i), options)
            .expect("SET");
    }

    fn exists(&self, i: usize) -> bool {
        self.engine.get(BLOCK, 0, &key(i)).unwrap().is_some()
    }

    fn dbsize(&self) -> u64 {
        self.engine.dbsize(0).unwrap()
    }

    /// Sets the disk budget so that the keys now in the cold tier fill `fill` of it.
    fn budget_so_cold_fills(&mut self, fill: f64) {
        self.engine.enforce_disk_budget().unwrap();
        let used = self.engine.tier_report().disk.cold_used_bytes;
        assert!(used > 0, "the budget pass measured the cold tier");
        self.config.maxdisk = Some(ByteSize((used as f64 / fill) as u64));
        self.engine.apply_eviction_config(&self.config);
    }

    /// Runs budget passes until one finds nothing more to do.
    fn enforce(&self) {
        for _ in 0..1000 {
            if !self.engine.enforce_disk_budget().unwrap() {
                return;
            }
        }
        panic!("the disk budget never settled");
    }
}

fn key(i: usize) -> Vec<u8> {
    format!("key:{i}").into_bytes()
}

fn value(i: usize) -> Bytes {
    let mut bytes = format!("value-{i}-").into_bytes();
    bytes.resize(VALUE_LEN, b'v');
    Bytes::from(bytes)
}

#[test]
fn volatile_policies_never_evict_keys_without_a_ttl() {
    for policy in [
        EvictionPolicy::VolatileLru,
        EvictionPolicy::VolatileLfu,
        EvictionPolicy::VolatileRandom,
        EvictionPolicy::VolatileTtl,
    ] {
        let mut cache = Cache::new(policy);
        for i in 0..600 {
            let ttl = (i % 2 == 0).then_some(NOW + 3_600_000 + i as u64 * 1000);
            cache.set(i, ttl);
        }
        cache.budget_so_cold_fills(1.0);
        cache.enforce();
        let evicted = 600 - cache.dbsize();
        assert!(evicted > 100, "{policy:?} evicted only {evicted}");
        for i in (1..600).step_by(2) {
            assert!(
                cache.exists(i),
                "{policy:?} evicted key:{i}, which has no TTL"
            );
        }
        let live = (0..600).filter(|i| cache.exists(*i)).count() as u64;
        assert_eq!(live, cache.dbsize(), "{policy:?}: DBSIZE is exact");
    }
}

#[test]
fn a_volatile_policy_with_no_volatile_key_refuses_instead() {
    let mut cache = Cache::new(EvictionPolicy::VolatileLru);
    for i in 0..400 {
        cache.set(i, None);
    }
    cache.budget_so_cold_fills(1.0);
    cache.enforce();
    assert_eq!(cache.dbsize(), 400);
    assert_eq!(cache.engine.oom_refusal(), Some(OomRefusal::DiskBudget));
}

#[test]
fn volatile_ttl_takes_the_nearest_deadlines_first() {
    let mut cache = Cache::new(EvictionPolicy::VolatileTtl);
    // Written in shuffled order, so key order and write order say nothing of deadlines.
    let count = 600;
    for n in 0..count {
        let i = (n * 7919) % count;
        cache.set(i, Some(NOW + 60_000 + i as u64 * 1000));
    }
    cache.budget_so_cold_fills(1.0);
    cache.enforce();
    let evicted: Vec<usize> = (0..count).filter(|i| !cache.exists(*i)).collect();
    assert!(evicted.len() > 100, "evicted only {}", evicted.len());
    // Exactly the nearest deadlines: every evicted key's deadline comes before every
    // remaining cold key's (a handful of hot keys may stay whatever their deadline).
    let hot_slack = 16;
    let latest_evicted = *evicted.iter().max().unwrap();
    assert!(
        latest_evicted < evicted.len() + hot_slack,
        "evicted up to key:{latest_evicted} for {} evictions",
        evicted.len()
    );
}

#[test]
fn noeviction_refuses_writes_and_keeps_reads_and_deletes() {
    let mut cache = Cache::new(EvictionPolicy::Noeviction);
    for i in 0..400 {
        cache.set(i, None);
    }
    cache.budget_so_cold_fills(1.0);
    cache.enforce();
    assert_eq!(cache.dbsize(), 400, "noeviction evicts nothing");
    assert_eq!(cache.engine.oom_refusal(), Some(OomRefusal::DiskBudget));
    assert!(cache.exists(7), "reads keep working");
    // DEL makes room; once below the budget the refusal lifts by itself.
    for i in 0..300 {
        assert!(cache.engine.delete(BLOCK, 0, &key(i)).unwrap());
    }
    cache.enforce();
    assert_eq!(cache.engine.oom_refusal(), None);
    assert_eq!(cache.dbsize(), 100);
}

/// The approximate LRU against the exact one: keys last used at distinct times (key i at
/// second i), 30% evicted; the error is the share of evicted keys an exact LRU would have
/// kept (measured 11.6%; docs/operations.md). It must stay below 25%.
#[test]
fn approximate_lru_stays_close_to_exact_lru() {
    let mut cache = Cache::new(EvictionPolicy::AllkeysLru);
    let count = 2000;
    for i in 0..count {
        cache.clock.set_manual_ms(NOW + i as u64 * 1000);
        cache.set(i, None);
    }
    // Eviction brings the live data down to 77% of the budget: from 110%, 30% go.
    cache.budget_so_cold_fills(1.1);
    cache.enforce();
    let evicted: HashSet<usize> = (0..count).filter(|i| !cache.exists(*i)).collect();
    assert!(evicted.len() > count / 5, "evicted {}", evicted.len());
    let exact: HashSet<usize> = (0..evicted.len()).collect();
    let wrong = evicted.difference(&exact).count();
    let error = wrong as f64 / evicted.len() as f64;
    println!(
        "approximate LRU: {} evicted, {wrong} of them not in the exact LRU's choice: error {:.1}%",
        evicted.len(),
        error * 100.0
    );
    assert!(
        error < 0.25,
        "error {:.1}% against an exact LRU",
        error * 100.0
    );
}

#[test]
fn access_stamps_travel_between_the_tiers() {
    let cache = Cache::new(EvictionPolicy::AllkeysLfu);
    cache.set(1, None);
    for _ in 0..200 {
        cache.engine.get(BLOCK, 0, &key(1)).unwrap();
    }
    let hot = cache.engine.inspect(BLOCK, 0, &key(1)).unwrap().unwrap();
    assert!(
        hot.lfu_counter > 5,
        "200 hits raised the counter: {}",
        hot.lfu_counter
    );
    // Push it to the cold tier with its stamp, then look at it 100 s later.
    for i in 2..200 {
        cache.set(i, None);
    }
    cache.engine.flush_dirty_to_cold().unwrap();
    cache.clock.set_manual_ms(NOW + 100_000);
    let back = cache.engine.inspect(BLOCK, 0, &key(1)).unwrap().unwrap();
    assert_eq!(
        back.idle_seconds, 100,
        "IDLETIME of a key read back from disk"
    );
    assert!(
        back.lfu_counter + 2 >= hot.lfu_counter,
        "the counter survived the trip (decayed at most 1 per minute): {} then {}",
        hot.lfu_counter,
        back.lfu_counter
    );
}
