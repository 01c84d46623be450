//! [`FaultyCold`]: any cold store behind a switch that makes its writes or its reads fail,
//! at runtime, the way a full, failing or read-only disk (or a RocksDB write stall) makes
//! RocksDB fail. Tests open the engine over it (`Engine::with_cold_store`) to check that a
//! failing disk is a state, not a hang (I8).
//!
//! It is public and always built, like [`super::MemCold`]: a test double any crate with
//! its own store can wrap around it, with no cost to a server that does not use it (the
//! engine only ever sees a `ColdStore`). It must never change what the store underneath
//! holds except through a write it let through.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{ColdError, ColdOp, ColdRead, ColdStore, Entries, Space};

/// How an operation fails, with the text RocksDB would give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// ENOSPC: the file system is full.
    NoSpace,
    /// EIO: the device failed.
    Io,
    /// EROFS: the file system went read-only.
    ReadOnly,
    /// A write stall that does not end (`ColdError::Stalled`, as `no_slowdown` reports it).
    Stall,
}

impl Fault {
    fn error(self) -> ColdError {
        match self {
            Fault::NoSpace => ColdError::Storage(
                "IO error: No space left on device: While appending to file (injected)".into(),
            ),
            Fault::Io => ColdError::Storage("IO error: Input/output error (injected)".into()),
            Fault::ReadOnly => {
                ColdError::Storage("IO error: Read-only file system (injected)".into())
            }
            Fault::Stall => ColdError::Stalled,
        }
    }
}

/// The switch a test holds: which operations fail now, and how many were refused.
#[derive(Debug, Default)]
pub struct FaultSwitch {
    writes: Mutex<Option<Fault>>,
    reads: Mutex<Option<Fault>>,
    refused_writes: AtomicU64,
    refused_reads: AtomicU64,
}

impl FaultSwitch {
    /// Makes every write, sync and compaction fail with `fault` (`None`: succeed again).
    pub fn fail_writes(&self, fault: Option<Fault>) {
        *self.writes.lock() = fault;
    }

    /// Makes every read fail with `fault` (`None`: succeed again).
    pub fn fail_reads(&self, fault: Option<Fault>) {
        *self.reads.lock() = fault;
    }

    /// Writes (and syncs and compactions) refused so far.
    pub fn refused_writes(&self) -> u64 {
        self.refused_writes.load(Ordering::Relaxed)
    }

    /// Reads refused so far.
    pub fn refused_reads(&self) -> u64 {
        self.refused_reads.load(Ordering::Relaxed)
    }

    fn check_write(&self) -> Result<(), ColdError> {
        match *self.writes.lock() {
            Some(fault) => {
                self.refused_writes.fetch_add(1, Ordering::Relaxed);
                Err(fault.error())
            }
            None => Ok(()),
        }
    }

    fn check_read(&self) -> Result<(), ColdError> {
        match *self.reads.lock() {
            Some(fault) => {
                self.refused_reads.fetch_add(1, Ordering::Relaxed);
                Err(fault.error())
            }
            None => Ok(()),
        }
    }
}

/// A cold store whose operations fail while its [`FaultSwitch`] says so.
pub struct FaultyCold<S> {
    inner: S,
    switch: Arc<FaultSwitch>,
}

impl<S: ColdStore> FaultyCold<S> {
    /// Wraps `inner`; nothing fails until the returned switch says so.
    pub fn new(inner: S) -> (Self, Arc<FaultSwitch>) {
        let switch = Arc::new(FaultSwitch::default());
        (
            FaultyCold {
                inner,
                switch: Arc::clone(&switch),
            },
            switch,
        )
    }
}

impl<S: ColdStore> ColdRead for FaultyCold<S> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ColdError> {
        self.switch.check_read()?;
        self.inner.get(key)
    }

    fn multi_get(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, ColdError> {
        self.switch.check_read()?;
        self.inner.multi_get(keys)
    }

    fn range(
        &self,
        space: Space,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Entries, ColdError> {
        self.switch.check_read()?;
        self.inner.range(space, from, to, limit)
    }

    fn disk_bytes(&self) -> u64 {
        self.inner.disk_bytes()
    }

    fn memory_bytes(&self) -> usize {
        self.inner.memory_bytes()
    }

    fn estimate_keys(&self) -> u64 {
        self.inner.estimate_keys()
    }
}

impl<S: ColdStore> ColdStore for FaultyCold<S> {
    fn write(&self, ops: Vec<ColdOp>) -> Result<(), ColdError> {
        self.switch.check_write()?;
        self.inner.write(ops)
    }

    fn compact(&self) -> Result<(), ColdError> {
        self.switch.check_write()?;
        self.inner.compact()
    }

    fn sync(&self) -> Result<(), ColdError> {
        self.switch.check_write()?;
        self.inner.sync()
    }

    fn create_checkpoint(&self, path: &Path) -> Result<(), ColdError> {
        self.switch.check_write()?;
        self.inner.create_checkpoint(path)
    }
}

#[cfg(test)]
mod tests {
    use super::{Fault, FaultyCold};
    use crate::engine::cold::{ColdError, ColdOp, ColdRead, ColdStore, MemCold, Space};

    fn open(
        _dir: &std::path::Path,
        clock: std::sync::Arc<super::super::SharedClock>,
    ) -> impl ColdStore {
        FaultyCold::new(MemCold::new(clock)).0
    }

    // With no fault switched on it is the store underneath: the same contract.
    crate::cold_store_conformance_tests!(open);

    #[test]
    fn switched_faults_fail_and_leave_the_store_unchanged() {
        let (store, switch) = FaultyCold::new(MemCold::default());
        let put = |value: &[u8]| {
            vec![ColdOp::Put {
                space: Space::Data,
                key: b"k".to_vec(),
                value: value.to_vec(),
            }]
        };
        store.write(put(b"1")).unwrap();
        switch.fail_writes(Some(Fault::NoSpace));
        let err = store.write(put(b"2")).unwrap_err();
        assert!(err.to_string().contains("No space left on device"), "{err}");
        switch.fail_writes(Some(Fault::Stall));
        assert!(matches!(store.write(put(b"2")), Err(ColdError::Stalled)));
        assert_eq!(store.get(b"k").unwrap(), Some(b"1".to_vec()));
        switch.fail_reads(Some(Fault::Io));
        assert!(store.get(b"k").is_err());
        assert_eq!((switch.refused_writes(), switch.refused_reads()), (2, 1));
        switch.fail_reads(None);
        switch.fail_writes(None);
        store.write(put(b"3")).unwrap();
        assert_eq!(store.get(b"k").unwrap(), Some(b"3".to_vec()));
    }
}
