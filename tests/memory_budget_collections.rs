//! I6 for hashes and sets: ten times `maxmemory` of collections keeps both the engine's
//! accounted memory and the process's peak RSS within `maxmemory` plus the documented
//! fixed overhead, so the per-element charge (`types/elements.rs`) does not undercount.
//! Alone in its file so it is alone in its process (peak RSS is per process).

use bytes::Bytes;
use hypercache::config::{ByteSize, EngineConfig};
use hypercache::engine::budget::FIXED_OVERHEAD_BYTES;
use hypercache::engine::types::{ElementOp, Value, ValueType};
use hypercache::engine::{Access, Engine, EngineError};

const MAXMEMORY: u64 = 64 << 20;
const ELEMENTS: usize = 64;
const ELEMENT_LEN: usize = 56;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .unwrap_or_else(|| panic!("{field} missing from /proc/self/status"))
}

/// Bytes no compressor can shrink, so they really are there.
fn noise(seed: u64, len: usize) -> Bytes {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let bytes: Vec<u8> = (0..len.div_ceil(8))
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .take(len)
        .collect();
    Bytes::from(bytes)
}

/// Key `i`: a hash of `ELEMENTS` fields when `i` is even, a set of `ELEMENTS` members when
/// odd, each element `ELEMENT_LEN` bytes of noise.
fn ops_for(i: u64) -> (ValueType, Vec<ElementOp>) {
    let is_hash = i.is_multiple_of(2);
    let ops = (0..ELEMENTS as u64)
        .map(|j| {
            let element = noise(i * 1000 + j, ELEMENT_LEN / 2);
            let value = match is_hash {
                true => noise(i * 1000 + j + 500, ELEMENT_LEN / 2),
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
    let peak_rss = status_kib("VmHWM:") * 1024;
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
