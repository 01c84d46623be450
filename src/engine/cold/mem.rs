//! [`MemCold`]: the cold tier in memory, for tests and experiments (`cold_backend: memory`).
//! Same contract as RocksDB, checked by the same conformance suite, except that there is
//! nothing on disk: it must never claim a checkpoint it cannot write, so `create_checkpoint`
//! fails with [`ColdError::CheckpointUnsupported`].

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;

use super::{
    compaction_replacement, ColdError, ColdOp, ColdRead, ColdStore, Entries, SharedClock, Space,
};

/// In-memory cold tier for tests: same contract as RocksDB, no disk.
#[derive(Default)]
pub struct MemCold {
    data: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
    expiry: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
    members: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
    clock: Arc<SharedClock>,
}

impl MemCold {
    pub fn new(clock: Arc<SharedClock>) -> Self {
        MemCold {
            clock,
            ..MemCold::default()
        }
    }

    fn space(&self, space: Space) -> &RwLock<BTreeMap<Vec<u8>, Vec<u8>>> {
        match space {
            Space::Data => &self.data,
            Space::Expiry => &self.expiry,
            Space::Members => &self.members,
        }
    }
}

impl ColdRead for MemCold {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ColdError> {
        Ok(self.data.read().get(key).cloned())
    }

    fn multi_get(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, ColdError> {
        let data = self.data.read();
        Ok(keys.iter().map(|key| data.get(*key).cloned()).collect())
    }

    fn range(
        &self,
        space: Space,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Entries, ColdError> {
        if from >= to {
            return Ok(Vec::new());
        }
        Ok(self
            .space(space)
            .read()
            .range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn disk_bytes(&self) -> u64 {
        0
    }

    fn memory_bytes(&self) -> usize {
        let data = self.data.read();
        data.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    fn estimate_keys(&self) -> u64 {
        self.data.read().len() as u64
    }
}

impl ColdStore for MemCold {
    fn write(&self, ops: Vec<ColdOp>) -> Result<(), ColdError> {
        // Every map locked for the whole batch: atomic like a WriteBatch.
        let mut data = self.data.write();
        let mut expiry = self.expiry.write();
        let mut members = self.members.write();
        for op in ops {
            let space = match &op {
                ColdOp::Put { space, .. }
                | ColdOp::Delete { space, .. }
                | ColdOp::DeleteRange { space, .. } => *space,
            };
            let target = match space {
                Space::Data => &mut data,
                Space::Expiry => &mut expiry,
                Space::Members => &mut members,
            };
            match op {
                ColdOp::Put { key, value, .. } => {
                    target.insert(key, value);
                }
                ColdOp::Delete { key, .. } => {
                    target.remove(&key);
                }
                ColdOp::DeleteRange { from, to, .. } => {
                    let doomed: Vec<Vec<u8>> = target
                        .range::<[u8], _>((Bound::Included(&from[..]), Bound::Excluded(&to[..])))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for key in doomed {
                        target.remove(&key);
                    }
                }
            }
        }
        Ok(())
    }

    fn compact(&self) -> Result<(), ColdError> {
        let now = self.clock.now_ms();
        for (key, value) in self.data.write().iter_mut() {
            if let Some(replacement) = compaction_replacement(key, value, now) {
                *value = replacement.to_vec();
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), ColdError> {
        Ok(())
    }

    fn create_checkpoint(&self, _path: &Path) -> Result<(), ColdError> {
        Err(ColdError::CheckpointUnsupported { store: "in-memory" })
    }
}

#[cfg(test)]
mod tests {
    use super::MemCold;

    fn open(_dir: &std::path::Path, clock: std::sync::Arc<super::SharedClock>) -> MemCold {
        MemCold::new(clock)
    }

    crate::cold_store_conformance_tests!(open);
}
