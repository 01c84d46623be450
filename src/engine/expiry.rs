//! Active expiry: the background cycle that removes dead hot entries and the expired fields
//! of hot hashes, and walks each database's cold expiry index, and the full compaction that runs the cold tier's expiry
//! compaction filter. Lazy expiry (a read finding a dead key) is in `resolve.rs`.

use super::api::{Access, EngineResult};
use super::cold::{ColdOp, Space};
use super::entry::{decode_cold_value, ColdValue};
use super::filter::hash_key;
use super::keys;
use super::resolve::Removal;
use super::{db_prefix, Engine};

/// Expiry work per shard / per database in one active-expiry cycle.
const EXPIRY_BATCH: usize = 128;

impl Engine {
    /// One active-expiry cycle: removes hot entries whose deadline passed, then walks each
    /// database's cold expiry index up to now. Returns how many keys expired.
    pub fn run_active_expiry_cycle(&self) -> EngineResult<usize> {
        let before = self.stats.expired_keys.get();
        let now = self.now_ms();
        for shard in self.hot.shards().iter() {
            let mut shard = shard.lock();
            for key in shard.expired_keys(now, EXPIRY_BATCH) {
                self.remove_resolved(Access::MayBlock, &mut shard, &key, Removal::Expired)?;
            }
            // Hash fields whose deadline passed (a hash left empty goes as an expired key).
            for key in shard.hashes_with_expired_fields(now, EXPIRY_BATCH) {
                self.purge_expired_fields(Access::MayBlock, &mut shard, &key, now)?;
            }
        }
        for db in 0..self.databases() {
            self.expire_cold_index(db, now)?;
        }
        Ok((self.stats.expired_keys.get() - before) as usize)
    }

    /// Walks one step of `db`'s expiry index. An index entry `(t, key)` is acted on only if
    /// the key is not hot (a hot entry governs its own cold copy); the cold value decides:
    /// still carrying deadline `t` (or the compaction filter's marker) -> the key expires;
    /// anything else -> the index entry is stale and just goes.
    pub(super) fn expire_cold_index(&self, db: u16, now: u64) -> EngineResult<()> {
        let from = self.expiry_cursors.lock()[usize::from(db)].clone();
        let mut to = db_prefix(db);
        to.extend_from_slice(&(now + 1).to_be_bytes());
        let entries = self.cold.range(Space::Expiry, &from, &to, EXPIRY_BATCH)?;
        let next_cursor = match entries.last() {
            Some((last, _)) => {
                let mut next = last.clone();
                next.push(0);
                next
            }
            None => db_prefix(db),
        };
        for (index_key, _) in entries {
            let Some((deadline, data_key)) = keys::parse_expiry_index_key(&index_key) else {
                continue;
            };
            let shard = self.hot.lock_encoded(&data_key);
            if shard.peek(&data_key).is_some() || shard.has_tombstone(&data_key) {
                continue;
            }
            let expires = match self.cold.get(&data_key)? {
                Some(raw) => match decode_cold_value(&raw)? {
                    ColdValue::Live { expire_at, .. } => expire_at == deadline,
                    ColdValue::ExpiredMarker => true,
                },
                None => false,
            };
            let mut ops = vec![ColdOp::Delete {
                space: Space::Expiry,
                key: index_key,
            }];
            if expires {
                ops.push(ColdOp::Delete {
                    space: Space::Data,
                    key: data_key.clone(),
                });
            }
            self.cold.write(ops)?;
            if expires {
                self.filter.forget(&[hash_key(&data_key)]);
                self.count_key(db, -1);
                self.stats.expired_keys.add(1);
            }
            drop(shard);
        }
        self.expiry_cursors.lock()[usize::from(db)] = next_cursor;
        Ok(())
    }

    /// Full compaction of the cold tier (runs the expiry compaction filter).
    pub fn compact_cold_tier(&self) -> EngineResult<()> {
        Ok(self.cold.compact()?)
    }
}
