//! I6 for hashes and sets: ten times `maxmemory` of collections keeps both the engine's
//! accounted memory and the process's peak RSS within `maxmemory` plus the documented
//! fixed overhead, so the per-element charge (`types/elements.rs`) does not undercount.
//! Alone in its file so it is alone in its process (peak RSS is per process).

mod common;

use bytes::Bytes;
use hypercache::config::{ByteSize, EngineConfig};
use hypercache::engine::budget::FIXED_OVERHEAD_BYTES;
use hypercache::engine::types::{ElementOp, Value, ValueType};
use hypercache::engine::{Access, Engine, EngineError};

const MAXMEMORY: u64 = 64 << 20;
const ELEMENTS: usize = 64;
const ELEMENT_LEN: usize = 56;

/// Key `i`: a hash of `ELEMENTS` fields when `i` is even, a set of `ELEMENTS` members when
/// odd, each element `ELEMENT_LEN` incompressible bytes.
fn ops_for(i: u64) -> (ValueType, Vec<ElementOp>) {
    let is_hash = i.is_multiple_of(2);
    let ops = (0..ELEMENTS as u64)
        .map(|j| {
            let element = common::incompressible_bytes(i * 1000 + j, ELEMENT_LEN / 2);
            let value = match is_hash {
                true => common::incompressible_bytes(i * 1000 + j + 500, ELEMENT_LEN / 2),
                false => Bytes::new(),
            };
            ElementOp::Put { element, value }
        })
        .collect();
    let value_type = match is_hash {
        true => ValueType::Hash,
        false => ValueType::Set,
    };
    (value_type, ops)
}

#[test]
fn i6_ten_times_maxmemory_of_collections_stays_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        dir: dir.path().to_path_buf(),
        maxmemory: ByteSize(MAXMEMORY),
        ..EngineConfig::default()
    };
    let engine = Engine::open(config).unwrap();
    let per_key = (ELEMENTS * ELEMENT_LEN) as u64;
    let keys = 10 * MAXMEMORY / per_key;
    let mut peak_accounted = 0;
    for i in 0..keys {
        let (value_type, ops) = ops_for(i);
        let key = format!("c:{i}");
        engine
            .update_elements(Access::MayBlock, 0, key.as_bytes(), value_type, |_| {
                Ok::<_, EngineError>((ops, ()))
            })
            .unwrap();
        if i % 2000 == 0 {
            peak_accounted = peak_accounted.max(engine.tier_report().accounted_bytes());
        }
    }
    // Read a spread back: promotions count too, and every element must be there.
    for i in (0..keys).step_by(53) {
        let (_, ops) = ops_for(i);
        let key = format!("c:{i}");
        let all_there = engine
            .read_value(Access::MayBlock, 0, key.as_bytes(), |value| match value {
                Some(Value::Hash(hash)) => ops.iter().all(|op| match op {
                    ElementOp::Put { element, value } => hash.get(element) == Some(&value[..]),
                    _ => false,
                }),
                Some(Value::Set(set)) => ops.iter().all(|op| match op {
                    ElementOp::Put { element, .. } => set.contains(element),
                    _ => false,
                }),
                _ => false,
            })
            .unwrap();
        assert!(all_there, "{key}");
    }
    let report = engine.tier_report();
    peak_accounted = peak_accounted.max(report.accounted_bytes());
    let peak_rss = common::peak_rss_bytes(std::process::id());
    println!(
        "keys={keys} peak_accounted={peak_accounted} peak_rss={peak_rss} hot={} hot_keys={} cold_mem={}",
        report.hot_used_bytes, report.hot_keys, report.cold_memory_bytes
    );
    assert_eq!(engine.dbsize(0).unwrap(), keys);
    assert!(
        peak_accounted <= MAXMEMORY as usize,
        "accounted memory {peak_accounted} over maxmemory {MAXMEMORY}"
    );
    assert!(
        peak_rss <= MAXMEMORY + FIXED_OVERHEAD_BYTES,
        "peak RSS {peak_rss} over maxmemory {MAXMEMORY} + fixed overhead {FIXED_OVERHEAD_BYTES}"
    );
}
