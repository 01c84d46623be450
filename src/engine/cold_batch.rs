//! Batched cold GETs: the server's cold readers collect GETs that missed the hot tier from
//! many clients and read them from the cold tier with one multi_get made without shard locks
//! (`read_cold_batch`), then answer each under its shard lock (`answer_cold_batch`),
//! re-reading any key whose shard had a cold write overlap the batch (I1, I2).

use bytes::Bytes;

use super::api::EngineResult;
use super::keys;
use super::Engine;

/// Keys read from the cold tier in one multi_get, waiting to be answered
/// (`Engine::read_cold_batch`).
pub struct ColdBatch {
    keys: Vec<(u16, Bytes)>,
    encoded: Vec<keys::EncodedKey>,
    /// Each key's shard's cold write epoch before the read; None if a write was in flight.
    epochs: Vec<Option<u64>>,
    /// Each key's raw cold value; None if the multi_get failed.
    values: Option<Vec<Option<Vec<u8>>>>,
}

impl Engine {
    /// The first half of a batched GET (GETs of keys that missed the hot tier, from many
    /// clients at once, with `MayBlock`): one cold-tier multi_get for every key, made without
    /// any shard lock (so hot-tier traffic on those shards goes on meanwhile).
    pub fn read_cold_batch(&self, keys: Vec<(u16, Bytes)>) -> ColdBatch {
        let encoded: Vec<keys::EncodedKey> = keys
            .iter()
            .map(|(db, key)| keys::EncodedKey::new(*db, key))
            .collect();
        let epochs = encoded
            .iter()
            .map(|key| self.cold.write_epoch(key))
            .collect();
        let refs: Vec<&[u8]> = encoded.iter().map(|key| &key[..]).collect();
        // A failed multi_get is no answer: each key is then read on its own.
        let values = self.cold.multi_get(&refs).ok();
        self.stats.cold_read_batches.add(1);
        self.stats.cold_batched_reads.add(keys.len() as i64);
        ColdBatch {
            keys,
            encoded,
            epochs,
            values,
        }
    }

    /// The second half: each key under its shard lock exactly as `get` would, using what
    /// the batch read. If a cold write to the key's shard overlapped the batch (a demotion,
    /// a delete, an expiry), its batched value might be stale (I1) or deleted since (I2),
    /// and it is read again under the lock instead. Each answer goes to `answer(index, ..)`
    /// as soon as it is made (in key order), so no client waits for the keys after its own.
    pub fn answer_cold_batch(
        &self,
        batch: ColdBatch,
        mut answer: impl FnMut(usize, EngineResult<Option<Bytes>>),
    ) {
        let ColdBatch {
            keys,
            encoded,
            epochs,
            values,
        } = batch;
        let mut values = values.map(Vec::into_iter);
        // The whole batch answers within one busy-reply-threshold: a key whose shard is
        // held past it is answered Busy, and the keys after it are not held up longer.
        let deadline = self.hot.request_deadline();
        let answers =
            keys.iter()
                .zip(encoded.iter().zip(epochs))
                .map(|((db, key), (encoded, epoch))| {
                    let value = values.as_mut().and_then(Iterator::next);
                    let mut txn = self.single_until(*db, key, deadline)?;
                    // Checked with the shard held: no write to it can start until the answer
                    // is made.
                    let prefetched = match (value, epoch) {
                        (Some(value), Some(epoch)) if self.cold.unchanged_since(encoded, epoch) => {
                            Some(value)
                        }
                        (Some(_), _) => {
                            self.stats.cold_batch_rereads.add(1);
                            None
                        }
                        (None, _) => None,
                    };
                    txn.get_with(*db, key, prefetched)
                });
        for (index, result) in answers.enumerate() {
            answer(index, result);
        }
    }
}
