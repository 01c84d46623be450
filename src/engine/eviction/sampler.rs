//! Choosing and removing victims once the disk budget is reached, as Redis does it: sample
//! a few keys at random (never scan), keep the best candidates in a small pool across
//! rounds, evict the best. Samples come from the cold tier: a random slot of the data space
//! for the allkeys policies, the expiry index for the volatile ones (its start for
//! volatile-ttl, a random deadline otherwise). Keys in the hot tier are skipped: they are
//! the ones in use, and they hold no disk space the cold copy would not.

use std::time::{Duration, Instant};

use crate::config::EvictionPolicy;

use super::super::api::EngineResult;
use super::super::cold::Space;
use super::super::entry::{read_access_stamp, read_expire_at, NO_EXPIRY};
use super::super::filter::hash_key;
use super::super::keys;
use super::super::resolve::push_cold_delete;
use super::super::{db_prefix, seconds, Engine};
use super::access::AccessStamp;

/// Candidates kept between rounds (Redis's EVPOOL_SIZE).
const POOL_SIZE: usize = 16;
/// Hash slots a database's keys are spread over (a random one starts each sample).
const SLOTS: u32 = 16384;
/// The most time one enforcement round spends evicting before it lets the budget be
/// measured again.
const ROUND_TIME: Duration = Duration::from_millis(200);
/// Start evicting above this share of the budget, stop below the second.
const EVICT_ABOVE: f64 = 0.95;
const EVICT_DOWN_TO: f64 = 0.90;

/// A possible victim: an encoded data key and how good a victim it is (higher first).
#[derive(Clone, Debug)]
pub(super) struct Candidate {
    key: Vec<u8>,
    score: u64,
}

impl Engine {
    /// One pass of the disk budget (the evictor thread runs it every 100 ms): measures the
    /// cold tier, and past the budget evicts by the policy down to below it, or refuses
    /// writes when the policy allows no victim. Returns the keys evicted.
    pub fn enforce_disk_budget(&self) -> EngineResult<usize> {
        let cold_keys = self.cold_key_count();
        let report = self.eviction.budget.refresh(cold_keys);
        let limit = report.maxdisk as f64;
        let mut used = report.cold_used_bytes as f64;
        if used <= limit * EVICT_ABOVE {
            self.set_refusing(false);
            return Ok(0);
        }
        if self.eviction.policy() == EvictionPolicy::Noeviction {
            self.set_refusing(used > limit);
            return Ok(0);
        }
        let started = Instant::now();
        let mut evicted = 0;
        while used > limit * EVICT_DOWN_TO && started.elapsed() < ROUND_TIME {
            match self.evict_one()? {
                Some(bytes) => {
                    used -= self.eviction.budget.freed_by(bytes) as f64;
                    evicted += 1;
                }
                None => {
                    // Nothing the policy may take (volatile with no key with a TTL).
                    self.set_refusing(used > limit);
                    return Ok(evicted);
                }
            }
        }
        self.set_refusing(used > limit);
        Ok(evicted)
    }

    fn set_refusing(&self, refusing: bool) {
        let was = self
            .eviction
            .refusing
            .swap(refusing, std::sync::atomic::Ordering::Relaxed);
        if refusing && !was {
            tracing::warn!(
                policy = self.eviction.policy().name(),
                "disk budget (maxdisk) reached and nothing may be evicted: refusing writes"
            );
        }
    }

    /// Keys the cold tier holds: the filter counts each once (I4); without a usable
    /// filter, RocksDB's estimate.
    fn cold_key_count(&self) -> u64 {
        let filter = self.filter.read();
        if self.config.filter && !filter.is_bypassed() {
            filter.len() as u64
        } else {
            self.cold.estimate_keys()
        }
    }

    /// Evicts the best candidate still valid; `None` when sampling finds none. Returns the
    /// bytes the victim held.
    fn evict_one(&self) -> EngineResult<Option<usize>> {
        for _ in 0..POOL_SIZE * 2 {
            self.sample_into_pool()?;
            let Some(candidate) = self.eviction.pool.lock().pop() else {
                return Ok(None);
            };
            if let Some(bytes) = self.evict_cold_key(&candidate.key)? {
                return Ok(Some(bytes));
            }
        }
        Ok(None)
    }

    /// Removes a key from the cold tier, if it is there and not in the hot tier (in use),
    /// and the policy may take it. Under the key's shard lock, so no promotion, demotion or
    /// removal of the key runs meanwhile.
    fn evict_cold_key(&self, encoded: &[u8]) -> EngineResult<Option<usize>> {
        let shard = self.hot.lock_encoded(encoded);
        if shard.peek(encoded).is_some() || shard.has_tombstone(encoded) {
            return Ok(None);
        }
        let Some(raw) = self.cold.get(encoded)? else {
            return Ok(None);
        };
        let expire_at = read_expire_at(&raw).unwrap_or(NO_EXPIRY);
        if self.eviction.policy().volatile_only() && expire_at == NO_EXPIRY {
            return Ok(None);
        }
        let mut ops = Vec::new();
        push_cold_delete(&mut ops, encoded, expire_at);
        self.cold.write(ops)?;
        self.filter.forget(&[hash_key(encoded)]);
        self.count_key(keys::db_of(encoded), -1);
        self.watches.touch(encoded);
        self.stats.evicted_keys.add(1);
        self.stats.cold_evictions.add(1);
        drop(shard);
        Ok(Some(encoded.len() + raw.len()))
    }

    /// Reads `maxmemory-samples` keys at a random place and merges them into the pool.
    fn sample_into_pool(&self) -> EngineResult<()> {
        let policy = self.eviction.policy();
        let Some(db) = self.random_nonempty_db() else {
            return Ok(());
        };
        let samples = self.eviction.samples();
        let sampled: Vec<(Vec<u8>, u64)> = if policy.volatile_only() {
            self.sample_volatile(db, samples, policy)?
        } else {
            self.sample_all(db, samples, policy)?
        };
        let mut pool = self.eviction.pool.lock();
        for (key, score) in sampled {
            if let Some(existing) = pool.iter_mut().find(|c| c.key == key) {
                existing.score = score;
                continue;
            }
            pool.push(Candidate { key, score });
        }
        // Best last, so `pop` takes it; the worst leave when the pool overflows.
        pool.sort_by_key(|candidate| candidate.score);
        let overflow = pool.len().saturating_sub(POOL_SIZE);
        pool.drain(..overflow);
        Ok(())
    }

    /// A database holding keys, chosen at random (most servers use one).
    fn random_nonempty_db(&self) -> Option<u16> {
        let nonempty: Vec<u16> = (0..self.databases())
            .filter(|db| self.dbsize(*db).unwrap_or(0) > 0)
            .collect();
        if nonempty.is_empty() {
            return None;
        }
        Some(nonempty[rand::random_range(0..nonempty.len())])
    }

    /// Keys of `db` from a random slot on (wrapping to the start), scored by `policy`.
    fn sample_all(
        &self,
        db: u16,
        samples: usize,
        policy: EvictionPolicy,
    ) -> EngineResult<Vec<(Vec<u8>, u64)>> {
        let slot = rand::random_range(0..SLOTS);
        let end = db_prefix(db + 1);
        let mut entries =
            self.cold
                .range(Space::Data, &keys::slot_start(db, slot), &end, samples)?;
        if entries.len() < samples && slot > 0 {
            let more = self.cold.range(
                Space::Data,
                &db_prefix(db),
                &keys::slot_start(db, slot),
                samples - entries.len(),
            )?;
            entries.extend(more);
        }
        let now_s = seconds(self.now_ms());
        Ok(entries
            .into_iter()
            .filter_map(|(key, raw)| {
                let stamp = read_access_stamp(&raw);
                let expire_at = read_expire_at(&raw)?;
                Some((key, self.score(policy, stamp, expire_at, now_s)))
            })
            .collect())
    }

    /// Keys of `db` with a TTL, from the expiry index: the nearest deadlines for
    /// volatile-ttl, from a random deadline on otherwise.
    fn sample_volatile(
        &self,
        db: u16,
        samples: usize,
        policy: EvictionPolicy,
    ) -> EngineResult<Vec<(Vec<u8>, u64)>> {
        let (start, end) = (db_prefix(db), db_prefix(db + 1));
        let first = self.cold.range(Space::Expiry, &start, &end, 1)?;
        let Some((first_key, _)) = first.first() else {
            return Ok(Vec::new());
        };
        let Some((earliest, _)) = keys::parse_expiry_index_key(first_key) else {
            return Ok(Vec::new());
        };
        let from = if policy == EvictionPolicy::VolatileTtl {
            start.clone()
        } else {
            let latest = self.eviction.budget.latest_deadline().max(earliest);
            let deadline = rand::random_range(earliest..=latest);
            let mut from = db_prefix(db);
            from.extend_from_slice(&deadline.to_be_bytes());
            from
        };
        let mut index = self.cold.range(Space::Expiry, &from, &end, samples)?;
        if index.len() < samples {
            index.extend(
                self.cold
                    .range(Space::Expiry, &start, &from, samples - index.len())?,
            );
        }
        let parsed: Vec<(u64, Vec<u8>)> = index
            .iter()
            .filter_map(|(index_key, _)| keys::parse_expiry_index_key(index_key))
            .collect();
        let stamps: Vec<Option<AccessStamp>> =
            if policy == EvictionPolicy::VolatileLru || policy == EvictionPolicy::VolatileLfu {
                let keys: Vec<&[u8]> = parsed.iter().map(|(_, key)| key.as_slice()).collect();
                self.cold
                    .multi_get(&keys)?
                    .iter()
                    .map(|raw| raw.as_deref().and_then(read_access_stamp))
                    .collect()
            } else {
                vec![None; parsed.len()]
            };
        let now_s = seconds(self.now_ms());
        Ok(parsed
            .into_iter()
            .zip(stamps)
            .map(|((expire_at, key), stamp)| {
                let score = self.score(policy, stamp, expire_at, now_s);
                (key, score)
            })
            .collect())
    }

    /// How good a victim a key is under `policy` (higher goes first), as Redis ranks its
    /// pool: idle time for LRU, 255 minus the decayed counter for LFU, nearness of the
    /// deadline for volatile-ttl, a random draw for the random policies.
    fn score(
        &self,
        policy: EvictionPolicy,
        stamp: Option<AccessStamp>,
        expire_at: u64,
        now_s: u32,
    ) -> u64 {
        let stamp = stamp.unwrap_or_else(AccessStamp::unknown);
        match policy {
            EvictionPolicy::AllkeysLru | EvictionPolicy::VolatileLru => {
                u64::from(stamp.idle_seconds(now_s))
            }
            EvictionPolicy::AllkeysLfu | EvictionPolicy::VolatileLfu => {
                255 - u64::from(stamp.decayed_counter(now_s, self.eviction.lfu()))
            }
            EvictionPolicy::VolatileTtl => u64::MAX - expire_at,
            EvictionPolicy::AllkeysRandom
            | EvictionPolicy::VolatileRandom
            | EvictionPolicy::Noeviction => rand::random(),
        }
    }
}
