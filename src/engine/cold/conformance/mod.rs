//! The cold-store conformance suite: what every [`ColdStore`] must do, whatever it is built
//! on, one file per capability (as TiKV's `engine_traits_tests`). Each store's own unit tests
//! run it; with the `cold-conformance` feature any crate can run it against its own store.
//!
//! Every capability has one entry, `run_all(open)`, which panics (fails the calling test) on
//! the first broken promise. `open(dir, clock)` opens the store kept in `dir`, creating an
//! empty one if `dir` does not exist yet; its compaction filter must read `clock`. The suite
//! owns the directories and removes them; a store without files ignores `dir`.
//!
//! The suite checks the traits' contract and nothing else: it must never depend on one
//! store's extras, nor on what the engine puts in keys and values beyond what the contract
//! names (the expiry that compaction reads).

pub mod batch;
pub mod checkpoint;
pub mod compaction;
pub mod range;
pub mod read_write;

/// One `#[test]` per capability for a store, given its `open(dir, clock)` function:
/// `crate::cold_store_conformance_tests!(open);` inside a test module.
#[macro_export]
macro_rules! cold_store_conformance_tests {
    ($open:expr) => {
        #[test]
        fn reads_and_writes_as_the_conformance_suite_says() {
            $crate::engine::cold::conformance::read_write::run_all($open);
        }

        #[test]
        fn ranges_as_the_conformance_suite_says() {
            $crate::engine::cold::conformance::range::run_all($open);
        }

        #[test]
        fn batches_as_the_conformance_suite_says() {
            $crate::engine::cold::conformance::batch::run_all($open);
        }

        #[test]
        fn compacts_as_the_conformance_suite_says() {
            $crate::engine::cold::conformance::compaction::run_all($open);
        }

        #[test]
        fn checkpoints_as_the_conformance_suite_says() {
            $crate::engine::cold::conformance::checkpoint::run_all($open);
        }
    };
}

use std::path::Path;
use std::sync::Arc;

use super::{ColdOp, ColdStore, SharedClock, Space};

/// A store under test, in a directory of its own, with the clock it was opened with.
/// Fields drop in order: the store closes before its directory goes.
struct Subject<S> {
    store: S,
    clock: Arc<SharedClock>,
    dir: tempfile::TempDir,
}

impl<S: ColdStore> Subject<S> {
    fn open(open: &impl Fn(&Path, Arc<SharedClock>) -> S) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory for the store");
        let clock = Arc::new(SharedClock::default());
        let store = open(&dir.path().join("store"), clock.clone());
        Subject { store, clock, dir }
    }
}

fn put(key: &[u8], value: &[u8]) -> ColdOp {
    ColdOp::Put {
        space: Space::Data,
        key: key.to_vec(),
        value: value.to_vec(),
    }
}

fn delete(key: &[u8]) -> ColdOp {
    ColdOp::Delete {
        space: Space::Data,
        key: key.to_vec(),
    }
}
