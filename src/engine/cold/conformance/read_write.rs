//! Point reads and writes: `get`, `multi_get`, and single puts and deletes through `write`.

use std::path::Path;
use std::sync::Arc;

use super::{delete, put, Subject};
use crate::engine::cold::{ColdStore, SharedClock};

pub fn run_all<S: ColdStore>(open: impl Fn(&Path, Arc<SharedClock>) -> S) {
    get_put_delete_and_multi_get(&Subject::open(&open).store);
}

fn get_put_delete_and_multi_get(store: &dyn ColdStore) {
    assert_eq!(store.get(b"k1").unwrap(), None);
    store
        .write(vec![put(b"k1", b"v1"), put(b"k2", b"v2")])
        .unwrap();
    assert_eq!(store.get(b"k1").unwrap(), Some(b"v1".to_vec()));
    store.write(vec![delete(b"k1")]).unwrap();
    assert_eq!(
        store.multi_get(&[b"k1", b"k2", b"k3"]).unwrap(),
        vec![None, Some(b"v2".to_vec()), None]
    );
}
