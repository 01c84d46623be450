//! Ranges: `range` is ordered, bounded and limited, each `Space` is separate, and
//! `DeleteRange` removes exactly `[from, to)`.

use std::path::Path;
use std::sync::Arc;

use super::{put, Subject};
use crate::engine::cold::{ColdOp, ColdStore, SharedClock, Space};

pub fn run_all<S: ColdStore>(open: impl Fn(&Path, Arc<SharedClock>) -> S) {
    range_is_ordered_bounded_and_limited_and_spaces_are_separate(&Subject::open(&open).store);
}

fn range_is_ordered_bounded_and_limited_and_spaces_are_separate(store: &dyn ColdStore) {
    let ops = (0u8..10).map(|i| put(&[b'a', i], &[i])).collect();
    store.write(ops).unwrap();
    store
        .write(vec![ColdOp::Put {
            space: Space::Expiry,
            key: vec![b'a', 3],
            value: Vec::new(),
        }])
        .unwrap();
    let got = store.range(Space::Data, &[b'a', 2], &[b'a', 8], 4).unwrap();
    let keys: Vec<u8> = got.iter().map(|(k, _)| k[1]).collect();
    assert_eq!(keys, vec![2, 3, 4, 5]);
    assert_eq!(
        store
            .range(Space::Data, &[b'a', 8], b"b", 100)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        store.range(Space::Expiry, b"", &[0xFF], 100).unwrap().len(),
        1
    );
    store
        .write(vec![ColdOp::Put {
            space: Space::Members,
            key: vec![b'a', 4, b'm'],
            value: b"member".to_vec(),
        }])
        .unwrap();
    assert_eq!(
        store.range(Space::Members, b"", &[0xFF], 100).unwrap(),
        vec![(vec![b'a', 4, b'm'], b"member".to_vec())]
    );
    assert_eq!(
        store.get(&[b'a', 4, b'm']).unwrap(),
        None,
        "get reads Data only"
    );
    assert_eq!(
        store
            .range(Space::Data, &[b'a', 4], &[b'a', 5], 100)
            .unwrap(),
        vec![(vec![b'a', 4], vec![4])],
        "a member is not in Data"
    );
    store
        .write(vec![ColdOp::DeleteRange {
            space: Space::Data,
            from: vec![b'a', 1],
            to: vec![b'a', 9],
        }])
        .unwrap();
    let left: Vec<u8> = store
        .range(Space::Data, b"", &[0xFF], 100)
        .unwrap()
        .iter()
        .map(|(k, _)| k[1])
        .collect();
    assert_eq!(left, vec![0, 9]);
    assert_eq!(
        store
            .range(Space::Members, b"", &[0xFF], 100)
            .unwrap()
            .len(),
        1,
        "a Data range delete leaves other spaces alone"
    );
    store
        .write(vec![ColdOp::DeleteRange {
            space: Space::Members,
            from: vec![b'a'],
            to: vec![b'b'],
        }])
        .unwrap();
    assert!(store
        .range(Space::Members, b"", &[0xFF], 100)
        .unwrap()
        .is_empty());
}
