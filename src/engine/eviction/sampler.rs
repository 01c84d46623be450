//! Choosing and removing victims once the disk budget is reached, as Redis does it: sample
//! a few keys at random (never scan), keep the best candidates in a small pool across
//! rounds, evict the best. Samples come from the cold tier: a random slot of the data space
//! for the allkeys policies, the expiry index for the volatile ones (its start for
//! volatile-ttl, a random deadline otherwise). Keys in the hot tier are skipped: they are
//! the ones in use, and they hold no disk space the cold copy would not.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::config::EvictionPolicy;

use super::super::api::EngineResult;
use super::super::cold::{Entries, Space};
use super::super::entry::{read_access_stamp, read_expire_at, NO_EXPIRY};
use super::super::filter::hash_key;
use super::super::keys;
use super::super::mutation::MutationBatch;
use super::super::resolve::push_cold_delete;
use super::super::{db_prefix, seconds, Engine};
use super::access::AccessStamp;

/// Candidates kept between rounds (Redis's EVPOOL_SIZE).
const POOL_SIZE: usize = 16;
/// Keys evicted per sampling round, in one cold write. A round reads
/// `SAMPLE_ROUNDS_PER_SEEK` times `maxmemory-samples` keys from one random place (one seek,
/// the cost of a cold sample, then sequential reads): twice Redis's samples per victim,
/// for about the seeks of one Redis sample per victim. With 4 victims of 40 samples the
/// error against an exact LRU measured 12% (8 victims of 40 samples: 28%;
/// tests/engine_eviction.rs).
const VICTIMS_PER_ROUND: usize = 4;
const SAMPLE_ROUNDS_PER_SEEK: usize = 8;
/// Hash slots a database's keys are spread over (a random one starts each sample).
const SLOTS: u32 = 16384;
/// The most time one enforcement round spends evicting before it lets the budget be
/// measured again.
const ROUND_TIME: Duration = Duration::from_millis(200);
/// Start evicting when the live estimate is above this share of the budget, stop below
/// the second. The rest is RocksDB's: obsolete versions and tombstones wait for
/// compaction there (with compaction at normal priority, 1.3-1.45x the live bytes under
/// the hit-ratio benchmark's churn, so the files stand at 1.05-1.15x maxdisk, within the
/// slack; at 66% the cache held 10% fewer keys: docs/performance.md).
const EVICT_ABOVE: f64 = 0.80;
const EVICT_DOWN_TO: f64 = 0.77;
/// Past this share over `maxdisk`, demotion pauses until compaction catches up. The
/// documented slack (a quarter of the budget plus 16 MB, docs/operations.md) leaves 16 MB
/// above it for the compaction output in flight and the lag of this 100 ms check. (At
/// 15%, compaction lagging on a loaded machine paused demotion long enough for writes
/// under allkeys-lru to be refused: 10-25 of 98,400 in tests/disk_full.rs.)
pub const DISK_SLACK: f64 = 0.25;
/// The least time between two compactions the budget pass asks for.
const COMPACTION_INTERVAL: Duration = Duration::from_secs(10);
/// How far (a share of the budget) writes may run ahead of the evictor before demotion
/// waits for it.
const EVICTOR_LEAD: f64 = 0.08;

/// A possible victim: an encoded data key and how good a victim it is (higher first).
#[derive(Clone, Debug)]
pub(super) struct Candidate {
    key: Vec<u8>,
    score: u64,
}

impl Engine {
    /// One pass of the disk budget (the evictor thread runs it): measures the cold tier,
    /// and past the budget evicts by the policy for up to `ROUND_TIME`, or refuses writes
    /// when the policy allows no victim. Returns whether it is still over (the evictor
    /// then goes on at once).
    pub fn enforce_disk_budget(&self) -> EngineResult<bool> {
        if self.is_replica() {
            // A replica holds its primary's keys: only the primary's deletes remove them (as
            // Redis replicas ignore maxmemory).
            return Ok(false);
        }
        let cold_keys = self.cold_key_count();
        let report = self.eviction.budget.refresh(cold_keys);
        self.eviction.near_budget.store(
            report.fill_ratio() > super::STAMPS_MATTER_ABOVE,
            Ordering::Relaxed,
        );
        let limit = report.maxdisk as f64;
        let mut used = report.cold_used_bytes as f64;
        // The hard guard: files past the budget and its slack, or live data running ahead
        // of the evictor, pause demotion (writes wait for room, at most a second each)
        // until compaction and eviction bring them back.
        let files_over = report.cold_file_bytes as f64 > limit * (1.0 + DISK_SLACK);
        let paused = files_over || used > limit * (EVICT_ABOVE + EVICTOR_LEAD);
        self.eviction.paused.store(paused, Ordering::Relaxed);
        if files_over && used <= limit * EVICT_ABOVE {
            // The live data fits but deleted bytes wait for a compaction that only new
            // writes would start, and demotion has paused those: compact now.
            self.compact_to_reclaim()?;
        }
        if used <= limit * EVICT_ABOVE {
            self.set_refusing(false);
            return Ok(false);
        }
        if self.eviction.policy() == EvictionPolicy::Noeviction {
            self.set_refusing(true);
            return Ok(false);
        }
        let started = Instant::now();
        while used > limit * EVICT_DOWN_TO {
            if started.elapsed() >= ROUND_TIME {
                return Ok(true);
            }
            match self.evict_batch()? {
                Some(bytes) => used -= self.eviction.budget.freed_by(bytes) as f64,
                None => {
                    // Nothing the policy may take (volatile with no key with a TTL).
                    self.set_refusing(true);
                    return Ok(false);
                }
            }
        }
        self.set_refusing(false);
        Ok(false)
    }

    /// Compacts the cold tier, at most once per `COMPACTION_INTERVAL`.
    fn compact_to_reclaim(&self) -> EngineResult<()> {
        {
            let mut last = self.eviction.last_compaction.lock();
            if last.is_some_and(|at| at.elapsed() < COMPACTION_INTERVAL) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        tracing::info!("cold tier files over maxdisk and its slack: compacting to reclaim");
        self.cold.compact()?;
        Ok(())
    }

    fn set_refusing(&self, refusing: bool) {
        let was = self.eviction.refusing.swap(refusing, Ordering::Relaxed);
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

    /// Evicts up to `VICTIMS_PER_ROUND` of the best candidates still valid, after one
    /// sampling round; `None` when sampling finds none. Returns the bytes the victims held.
    fn evict_batch(&self) -> EngineResult<Option<usize>> {
        self.sample_into_pool()?;
        let victims: Vec<Candidate> = {
            let mut pool = self.eviction.pool.lock();
            let keep = pool.len().saturating_sub(VICTIMS_PER_ROUND);
            pool.split_off(keep)
        };
        if victims.is_empty() {
            return Ok(None);
        }
        self.evict_cold_keys(victims.iter().map(|c| c.key.as_slice()).collect())
            .map(Some)
    }

    /// Removes keys from the cold tier that are there and not in the hot tier (in use), if
    /// the policy may take them; in one cold write, under the keys' shard locks, so no
    /// promotion, demotion or removal of them runs meanwhile. Returns the bytes they held.
    fn evict_cold_keys(&self, keys: Vec<&[u8]>) -> EngineResult<usize> {
        let shard_indexes: Vec<usize> = keys
            .iter()
            .map(|key| self.hot.shard_of_encoded(key))
            .collect();
        let guards = self.hot.lock_many(&shard_indexes);
        let shard_of = |index: usize| {
            &guards
                .iter()
                .find(|(i, _)| *i == index)
                .expect("every victim's shard is locked")
                .1
        };
        let candidates: Vec<&[u8]> = keys
            .iter()
            .zip(&shard_indexes)
            .filter(|(key, index)| {
                let shard = shard_of(**index);
                shard.peek(key).is_none() && !shard.has_tombstone(key)
            })
            .map(|(key, _)| *key)
            .collect();
        let values = self.cold.multi_get(&candidates)?;
        let volatile_only = self.eviction.policy().volatile_only();
        let mut ops = Vec::new();
        let mut evicted = Vec::new();
        let mut bytes = 0;
        for (key, raw) in candidates.into_iter().zip(values) {
            let Some(raw) = raw else { continue };
            let expire_at = read_expire_at(&raw).unwrap_or(NO_EXPIRY);
            if volatile_only && expire_at == NO_EXPIRY {
                continue;
            }
            push_cold_delete(&mut ops, key, expire_at);
            bytes += key.len() + raw.len();
            evicted.push(key);
        }
        if evicted.is_empty() {
            return Ok(0);
        }
        self.cold.write(ops)?;
        if self.logging() {
            // Logged as deletes, under the victims' shard locks, as Redis propagates
            // evictions as DEL: a replica applies them (it evicts nothing itself), and
            // replay after a crash agrees with the cold tier.
            let mut log = MutationBatch::default();
            for key in &evicted {
                log.del(key);
            }
            self.append_to_wal(&mut log);
        }
        let hashes: Vec<u64> = evicted.iter().map(|key| hash_key(key)).collect();
        self.filter.forget(&hashes);
        for key in &evicted {
            self.count_key(keys::db_of(key), -1);
            self.watches.touch(key);
        }
        self.stats.evicted_keys.add(evicted.len() as i64);
        self.stats.cold_evictions.add(evicted.len() as i64);
        drop(guards);
        Ok(bytes)
    }

    /// Reads `maxmemory-samples` keys per victim of a round, at a random place, and merges
    /// them into the pool.
    fn sample_into_pool(&self) -> EngineResult<()> {
        let policy = self.eviction.policy();
        let Some(db) = self.random_nonempty_db() else {
            return Ok(());
        };
        let samples = self.eviction.samples() * SAMPLE_ROUNDS_PER_SEEK;
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
        let from = keys::slot_start(db, rand::random_range(0..SLOTS));
        let entries = self.range_wrapping(Space::Data, db, &from, samples)?;
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
        if policy == EvictionPolicy::VolatileTtl {
            return self.sample_nearest_deadlines(db, samples);
        }
        let first = self.cold.range(Space::Expiry, &start, &end, 1)?;
        let Some((first_key, _)) = first.first() else {
            return Ok(Vec::new());
        };
        let Some((earliest, _)) = keys::parse_expiry_index_key(first_key) else {
            return Ok(Vec::new());
        };
        let latest = self.eviction.budget.latest_deadline().max(earliest);
        let deadline = rand::random_range(earliest..=latest);
        let mut from = db_prefix(db);
        from.extend_from_slice(&deadline.to_be_bytes());
        let index = self.range_wrapping(Space::Expiry, db, &from, samples)?;
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

    /// Up to `limit` entries of `space` in database `db` from `from` on, continuing at the
    /// database's start when its end comes first.
    fn range_wrapping(
        &self,
        space: Space,
        db: u16,
        from: &[u8],
        limit: usize,
    ) -> EngineResult<Entries> {
        let (start, end) = (db_prefix(db), db_prefix(db + 1));
        let mut entries = self.cold.range(space, from, &end, limit)?;
        if entries.len() < limit && from > start.as_slice() {
            entries.extend(
                self.cold
                    .range(space, &start, from, limit - entries.len())?,
            );
        }
        Ok(entries)
    }

    /// volatile-ttl's sample: the nearest deadlines of `db`, read on from where the last
    /// sample began (deadlines only move forward; a later write with a nearer deadline is
    /// found once the cursor wraps at the index's end).
    fn sample_nearest_deadlines(
        &self,
        db: u16,
        samples: usize,
    ) -> EngineResult<Vec<(Vec<u8>, u64)>> {
        let (start, end) = (db_prefix(db), db_prefix(db + 1));
        let mut cursor = self.eviction.ttl_cursor.lock();
        if !cursor.starts_with(&start) {
            *cursor = start.clone();
        }
        let mut index = self.cold.range(Space::Expiry, &cursor, &end, samples)?;
        if index.len() < samples {
            // At the end: start over, for deadlines written before the cursor.
            index = self.cold.range(Space::Expiry, &start, &end, samples)?;
        }
        if let Some((first, _)) = index.first() {
            cursor.clone_from(first);
        }
        Ok(index
            .iter()
            .filter_map(|(index_key, _)| keys::parse_expiry_index_key(index_key))
            .map(|(expire_at, key)| (key, u64::MAX - expire_at))
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
