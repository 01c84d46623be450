//! Resolving a key against both tiers, and the one place a key's value changes or goes.
//!
//! `resolve` brings a key to normal form under its shard lock: afterwards it is a live hot
//! entry or absent from both tiers, dead copies being reclaimed on the way (I1, I2). `store`
//! is where every write lands (WAL batch, watchers, key counts); `remove_resolved` is where
//! every removal lands, deleting or tombstoning the cold copy before the command is answered.

use super::api::{Access, EngineResult};
use super::cold::{ColdOp, Space};
use super::entry::{decode_cold_value, is_expired, ColdValue, ExpireAt, NO_EXPIRY};
use super::eviction::access::AccessStamp;
use super::filter::hash_key;
use super::hot::{ColdCopy, HotEntry, HotKey, HotShard, Tombstone, PENDING_LSN};
use super::keys;
use super::mutation::MutationBatch;
use super::Engine;

/// Where `resolve` found a key. After `Hot` or `Cold` the key is a live hot entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lookup {
    /// It was in the hot tier.
    Hot,
    /// It was read from the cold tier and promoted.
    Cold,
    /// Neither tier holds it live.
    Absent,
}

impl Lookup {
    pub(super) fn found(self) -> bool {
        self != Lookup::Absent
    }
}

impl Engine {
    /// Writes an entry into the hot tier: the one place a key's value changes (the WAL
    /// append belongs here), which also tells watchers and counts new keys.
    pub(super) fn store(
        &self,
        shard: &mut HotShard,
        log: &mut MutationBatch,
        encoded: Vec<u8>,
        mut entry: HotEntry,
        is_new_key: bool,
    ) {
        let logging = self.logging();
        if logging {
            log.put(&encoded, &entry.value, entry.expire_at);
            entry.lsn = PENDING_LSN;
            // A removed key written again: the new entry takes over the cold copy its
            // tombstone was waiting to delete (demotion overwrites it, removal deletes it).
            if let Some(tombstone) = shard.take_tombstone(&encoded) {
                if entry.cold == ColdCopy::Absent {
                    entry.cold = ColdCopy::Present {
                        expire_at: tombstone.expire_at,
                    };
                }
            }
        }
        if is_new_key {
            self.count_key(keys::db_of(&encoded), 1);
        }
        self.watches.touch(&encoded);
        let lfu = self.eviction.lfu();
        // An overwrite is an access of the key, whose history it keeps (as Redis keeps the
        // LFU counter of an overwritten key). It reuses the key the tier holds.
        let overwritten = shard.overwrite(&encoded, entry, |previous, entry| {
            entry.access = previous.access.touched(entry.access.last_access_s, lfu);
            if entry.cold != ColdCopy::Absent {
                entry.cold_access = previous.cold_access;
            }
        });
        let key = match overwritten {
            Ok((held, _previous)) => held,
            Err(entry) => {
                let key = HotKey::from(encoded);
                shard.insert_absent(key.clone(), entry);
                key
            }
        };
        if logging {
            shard.note_pending(key);
        }
    }

    /// Brings the key into normal form: afterwards it is either a live hot entry (`Hot`, or
    /// `Cold` when it was just promoted from the cold tier) or absent from both tiers. Dead
    /// hot entries and dead cold copies are reclaimed on the way (I2).
    pub(super) fn resolve(
        &self,
        access: Access,
        shard: &mut HotShard,
        encoded: &[u8],
        now: u64,
    ) -> EngineResult<Lookup> {
        if let Some(entry) = shard.peek(encoded) {
            if !is_expired(entry.expire_at, now) {
                return Ok(Lookup::Hot);
            }
            self.remove_resolved(access, shard, encoded, Removal::Expired)?;
            return Ok(Lookup::Absent);
        }
        self.load_from_cold(access, shard, encoded, now, None)
    }

    /// The cold half of `resolve`, for a key known not to be in the hot tier. `prefetched`
    /// is what the cold tier holds for the key, when a batch already read it and no cold
    /// write can have changed it since (`answer_cold_batch`).
    pub(super) fn load_from_cold(
        &self,
        access: Access,
        shard: &mut HotShard,
        encoded: &[u8],
        now: u64,
        prefetched: Option<Option<Vec<u8>>>,
    ) -> EngineResult<Lookup> {
        if shard.has_tombstone(encoded) {
            // Removed; its cold copy waits for the WAL before it is deleted.
            return Ok(Lookup::Absent);
        }
        let hash = hash_key(encoded);
        if !self.filter.may_contain(hash) {
            self.stats.filter_short_circuits.add(1);
            return Ok(Lookup::Absent);
        }
        let raw = match prefetched {
            Some(raw) => raw,
            None => {
                access.prepare_to_block()?;
                self.cold.get(encoded)?
            }
        };
        let Some(raw) = raw else {
            self.stats.cold_misses.add(1);
            self.stats.filter_false_positives.add(1);
            return Ok(Lookup::Absent);
        };
        let dead_deadline = match decode_cold_value(&raw)? {
            ColdValue::Live {
                value,
                expire_at,
                access,
            } if !is_expired(expire_at, now) => {
                self.stats.cold_hits.add(1);
                self.stats.promotions.add(1);
                let cold_access = access.unwrap_or_else(AccessStamp::unknown);
                let entry = HotEntry::promoted(value, expire_at, cold_access);
                shard.insert(HotKey::from(encoded), entry);
                return Ok(Lookup::Cold);
            }
            ColdValue::Live { expire_at, .. } => expire_at,
            // The marker's expiry index entry is left for the expirer, which drops it
            // once it finds the value gone.
            ColdValue::ExpiredMarker => NO_EXPIRY,
        };
        self.stats.cold_misses.add(1);
        let mut ops = Vec::new();
        push_cold_delete(&mut ops, encoded, dead_deadline);
        if self.cold.write(ops).is_err() {
            // The dead copy reads as absent whether or not it is deleted now; it stays a
            // key (DBSIZE) until a later read or the expirer reclaims it once the cold
            // tier takes writes again (the failure is in the tier's health).
            return Ok(Lookup::Absent);
        }
        self.filter.forget(&[hash]);
        self.count_key(keys::db_of(encoded), -1);
        self.stats.expired_keys.add(1);
        Ok(Lookup::Absent)
    }

    /// Removes a key that `resolve` found in the hot tier, deleting its cold copy first so
    /// it cannot come back (I2).
    pub(super) fn remove_resolved(
        &self,
        access: Access,
        shard: &mut HotShard,
        encoded: &[u8],
        why: Removal,
    ) -> EngineResult<()> {
        let Some(entry) = shard.peek(encoded) else {
            // Every caller resolves the key just before; a miss here is an engine bug that
            // would leave a cold copy behind, so tests must hear of it.
            if cfg!(debug_assertions) {
                panic!("remove_resolved called for a key that is not in the hot tier");
            }
            return Ok(());
        };
        let entry_lsn = entry.lsn;
        match entry.cold {
            ColdCopy::Present { expire_at } if self.logging() => {
                // The cold copy goes once the WAL holds this removal (and the entry's last
                // change) durably; until then the tombstone makes the key read as absent.
                let lsn = match why {
                    Removal::Deleted => PENDING_LSN,
                    Removal::Expired => entry_lsn,
                };
                if let Some((key, _)) = shard.remove(encoded) {
                    shard.add_tombstone(key, Tombstone { expire_at, lsn });
                }
            }
            ColdCopy::Present { expire_at } => {
                access.prepare_to_block()?;
                let mut ops = Vec::new();
                push_cold_delete(&mut ops, encoded, expire_at);
                self.cold.write(ops)?;
                self.filter.forget(&[hash_key(encoded)]);
                shard.remove(encoded);
            }
            ColdCopy::Absent => {
                shard.remove(encoded);
            }
        }
        self.count_key(keys::db_of(encoded), -1);
        self.watches.touch(encoded);
        if why == Removal::Expired {
            self.stats.expired_keys.add(1);
        }
        Ok(())
    }

    /// DEL and every other removal a command asks for: `remove_resolved`, logged.
    pub(super) fn delete_resolved(
        &self,
        access: Access,
        shard: &mut HotShard,
        log: &mut MutationBatch,
        encoded: &[u8],
    ) -> EngineResult<()> {
        self.remove_resolved(access, shard, encoded, Removal::Deleted)?;
        if self.logging() {
            log.del(encoded);
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Removal {
    Deleted,
    Expired,
}

/// The entry `resolve` just found live; its absence would be an engine bug.
pub(super) fn live_entry<'a>(shard: &'a HotShard, encoded: &[u8]) -> &'a HotEntry {
    shard
        .peek(encoded)
        .expect("resolve returned true, so the entry is in the hot tier")
}

pub(super) fn push_cold_delete(ops: &mut Vec<ColdOp>, encoded: &[u8], expire_at: ExpireAt) {
    ops.push(ColdOp::Delete {
        space: Space::Data,
        key: encoded.to_vec(),
    });
    if expire_at != NO_EXPIRY {
        ops.push(ColdOp::Delete {
            space: Space::Expiry,
            key: keys::expiry_index_key(encoded, expire_at),
        });
    }
}
