//! Batches: one `write` applies all its ops, in the order given.

use std::path::Path;
use std::sync::Arc;

use super::{delete, put, Subject};
use crate::engine::cold::{ColdStore, SharedClock};

pub fn run_all<S: ColdStore>(open: impl Fn(&Path, Arc<SharedClock>) -> S) {
    batches_apply_in_order(&Subject::open(&open).store);
}

fn batches_apply_in_order(store: &dyn ColdStore) {
    store
        .write(vec![
            put(b"k", b"first"),
            delete(b"k"),
            put(b"k", b"second"),
        ])
        .unwrap();
    assert_eq!(store.get(b"k").unwrap(), Some(b"second".to_vec()));
}
