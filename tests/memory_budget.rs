//! I6, one memory budget: fill the engine with ten times `maxmemory` of data and check that
//! both the engine's accounted memory and the process's peak RSS stay within `maxmemory`
//! plus the documented fixed overhead. Alone in its file so it is alone in its process.

mod common;

use bytes::Bytes;
use hypercache::config::{ByteSize, EngineConfig};
use hypercache::engine::budget::FIXED_OVERHEAD_BYTES;
use hypercache::engine::{Access, Engine, SetOptions};

const MAXMEMORY: u64 = 64 << 20;
const VALUE_LEN: usize = 4096;

/// Values that neither zstd nor lz4 can shrink, so the bytes really are there.
fn value_for(index: u64) -> Bytes {
    common::incompressible_bytes(index, VALUE_LEN)
}

#[test]
fn i6_ten_times_maxmemory_of_data_stays_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        dir: dir.path().to_path_buf(),
        maxmemory: ByteSize(MAXMEMORY),
        ..EngineConfig::default()
    };
    let engine = Engine::open(config).unwrap();
    let keys = 10 * MAXMEMORY / VALUE_LEN as u64;
    let mut peak_accounted = 0;
    for i in 0..keys {
        let key = format!("key:{i}");
        engine
            .set(
                Access::MayBlock,
                0,
                key.as_bytes(),
                value_for(i),
                SetOptions::default(),
            )
            .unwrap();
        if i % 5000 == 0 {
            peak_accounted = peak_accounted.max(engine.tier_report().accounted_bytes());
        }
    }
    // Read a spread of keys back: promotions and block-cache fills count too.
    for i in (0..keys).step_by(97) {
        let value = engine
            .get(Access::MayBlock, 0, format!("key:{i}").as_bytes())
            .unwrap();
        assert_eq!(value, Some(value_for(i)), "key:{i}");
    }
    let report = engine.tier_report();
    peak_accounted = peak_accounted.max(report.accounted_bytes());
    let peak_rss = common::peak_rss_bytes(std::process::id());
    println!(
        "keys={keys} peak_accounted={peak_accounted} peak_rss={peak_rss} hot={} cold_mem={} filter={} disk={}",
        report.hot_used_bytes, report.cold_memory_bytes, report.filter_used_bytes, report.cold_disk_bytes
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
