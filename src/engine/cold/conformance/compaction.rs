//! Compaction: `compact` turns values expired by the store's clock into the expired marker
//! and leaves live values, values without expiry, and everything else as they are.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::{put, Subject};
use crate::engine::cold::{ColdStore, SharedClock};
use crate::engine::entry::{self, encode_cold_value};
use crate::engine::keys::encode_key;
use crate::engine::types::string::StoredValue;
use crate::engine::types::Value;

pub fn run_all<S: ColdStore>(open: impl Fn(&Path, Arc<SharedClock>) -> S) {
    let subject = Subject::open(&open);
    compaction_turns_expired_values_into_markers_and_keeps_the_rest(&subject.store, &subject.clock);
}

fn compaction_turns_expired_values_into_markers_and_keeps_the_rest(
    store: &dyn ColdStore,
    clock: &SharedClock,
) {
    clock.set_manual_ms(10_000);
    let live = encode_cold_value(
        &Value::String(StoredValue::Raw(Bytes::from_static(b"live"))),
        20_000,
    );
    let dead = encode_cold_value(
        &Value::String(StoredValue::Raw(Bytes::from_static(b"dead"))),
        5_000,
    );
    let forever = encode_cold_value(
        &Value::String(StoredValue::Raw(Bytes::from_static(b"f"))),
        0,
    );
    let k_live = encode_key(0, b"live");
    let k_dead = encode_key(0, b"dead");
    let k_forever = encode_key(0, b"forever");
    store
        .write(vec![
            put(&k_live, &live),
            put(&k_dead, &dead),
            put(&k_forever, &forever),
        ])
        .unwrap();
    store.compact().unwrap();
    assert_eq!(store.get(&k_live).unwrap(), Some(live));
    assert_eq!(store.get(&k_forever).unwrap(), Some(forever));
    assert_eq!(
        store.get(&k_dead).unwrap(),
        Some(entry::EXPIRED_MARKER.to_vec())
    );
}
