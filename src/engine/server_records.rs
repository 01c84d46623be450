//! Server records: values the server keeps beside the users' data, by name (today the
//! FUNCTION libraries). This file owns how they are made durable and replayed.
//!
//! A record is written through the WAL, as one `Mutation::Server` record, so replay (and,
//! later, a replica following the log) sees it in order with the data; and at once to the
//! cold tier under `META_DB`, synced, where checkpoints, RocksDB backups and a restart with
//! the WAL off find it. The stored copy carries the LSN that wrote it, and replay applies a
//! logged record only when it is newer: a record the log lost (`appendfsync everysec`) never
//! makes an older one win over the copy the cold tier already synced.
//!
//! Records are small and rare (a FUNCTION LOAD), so each is one synced cold write; callers
//! serialise their own updates of one name.

use super::cold::{ColdOp, Space};
use super::keys::{self, META_DB};
use super::mutation::MutationBatch;
use super::wal::Lsn;
use super::{Engine, EngineError, EngineResult};

/// Server records live under this prefix in `META_DB`, apart from the engine's own meta
/// records (checkpoint, saved state).
const PREFIX: &[u8] = b"server:";

fn record_key(name: &[u8]) -> Vec<u8> {
    let mut key = PREFIX.to_vec();
    key.extend_from_slice(name);
    keys::encode_key(META_DB, &key)
}

/// `[lsn: u64 LE][value]`.
fn stored(lsn: Lsn, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(value);
    out
}

fn split_stored(raw: &[u8]) -> Option<(Lsn, &[u8])> {
    let (lsn, value) = raw.split_at_checked(8)?;
    Some((u64::from_le_bytes(lsn.try_into().ok()?), value))
}

impl Engine {
    /// Replaces the server record `name` with `value`, durably: in the WAL (when on) and in
    /// the cold tier, synced, before it returns.
    pub fn save_server_record(&self, name: &str, value: &[u8]) -> EngineResult<()> {
        let lsn = match self.wal() {
            None => 0,
            // The dispatcher refuses write commands while the WAL fails (MISCONF); a failure
            // now is reported and nothing reaches the cold tier.
            Some(wal) => {
                let mut log = MutationBatch::default();
                log.server_record(name.as_bytes(), value);
                wal.append(log.as_bytes()).map_err(EngineError::Wal)?
            }
        };
        self.store_server_record(lsn, name.as_bytes(), value)
    }

    /// The server record `name`, if one was ever saved.
    pub fn server_record(&self, name: &str) -> EngineResult<Option<Vec<u8>>> {
        let Some(raw) = self.cold.get(&record_key(name.as_bytes()))? else {
            return Ok(None);
        };
        match split_stored(&raw) {
            Some((_, value)) => Ok(Some(value.to_vec())),
            None => Err(EngineError::Cold(super::cold::ColdError::Storage(format!(
                "the server record '{name}' is damaged ({} bytes)",
                raw.len()
            )))),
        }
    }

    /// Replay of a logged server record: kept only if newer than the stored copy.
    pub(super) fn replay_server_record(
        &self,
        lsn: Lsn,
        name: &[u8],
        value: &[u8],
    ) -> EngineResult<()> {
        let stored_lsn = self
            .cold
            .get(&record_key(name))?
            .and_then(|raw| split_stored(&raw).map(|(lsn, _)| lsn));
        if stored_lsn.is_some_and(|stored_lsn| stored_lsn >= lsn) {
            return Ok(());
        }
        self.store_server_record(lsn, name, value)
    }

    fn store_server_record(&self, lsn: Lsn, name: &[u8], value: &[u8]) -> EngineResult<()> {
        self.cold.write(vec![ColdOp::Put {
            space: Space::Data,
            key: record_key(name),
            value: stored(lsn, value),
        }])?;
        self.cold.sync()?;
        Ok(())
    }
}
