//! Durability and backups: `sync` succeeds, and `create_checkpoint` writes a copy of the
//! store as it was, which reopens with what was written before it (both spaces) and nothing
//! written after. A store with nothing on disk to copy must say so with
//! `ColdError::CheckpointUnsupported`, never pretend.

use std::path::Path;
use std::sync::Arc;

use super::{delete, put, Subject};
use crate::engine::cold::{ColdError, ColdOp, ColdStore, SharedClock, Space};

pub fn run_all<S: ColdStore>(open: impl Fn(&Path, Arc<SharedClock>) -> S) {
    a_checkpoint_reopens_with_what_was_written_before_it(&open);
}

fn a_checkpoint_reopens_with_what_was_written_before_it<S: ColdStore>(
    open: &impl Fn(&Path, Arc<SharedClock>) -> S,
) {
    let subject = Subject::open(open);
    let store = &subject.store;
    store
        .write(vec![
            put(b"k1", b"v1"),
            put(b"k2", b"v2"),
            ColdOp::Put {
                space: Space::Expiry,
                key: b"e1".to_vec(),
                value: Vec::new(),
            },
        ])
        .unwrap();
    store.sync().unwrap();
    let path = subject.dir.path().join("checkpoint");
    match store.create_checkpoint(&path) {
        Err(ColdError::CheckpointUnsupported { .. }) => return,
        result => result.expect("create_checkpoint"),
    }
    store
        .write(vec![put(b"k1", b"after"), delete(b"k2"), put(b"k3", b"v3")])
        .unwrap();
    let copy = open(&path, subject.clock.clone());
    assert_eq!(copy.get(b"k1").unwrap(), Some(b"v1".to_vec()));
    assert_eq!(
        copy.multi_get(&[b"k2", b"k3"]).unwrap(),
        vec![Some(b"v2".to_vec()), None]
    );
    assert_eq!(
        copy.range(Space::Expiry, b"", &[0xFF], 10).unwrap(),
        vec![(b"e1".to_vec(), Vec::new())]
    );
    assert_eq!(store.get(b"k1").unwrap(), Some(b"after".to_vec()));
    assert_eq!(store.get(b"k2").unwrap(), None);
}
