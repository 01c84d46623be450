//! Hot-path benches for the engine: hot get/set, cold get, filter lookups, and absent-key
//! lookups with the filter against straight-to-RocksDB. Besides criterion's report, the run
//! ends with a ratio table measured in the same process (the targets in the engine issue):
//!   cargo bench --bench engine

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use hypercache::config::{ByteSize, EngineConfig};
use hypercache::engine::cold::{ColdRead, ColdStore, RocksCold, RocksSizing, SharedClock};
use hypercache::engine::filter::{hash_key, CuckooFilter, FilterConfig};
use hypercache::engine::keys::encode_key;
use hypercache::engine::{Access, Engine, SetOptions};
use parking_lot::Mutex;

const KEYS: u64 = 100_000;

fn key(i: u64) -> Vec<u8> {
    format!("key:{i:08}").into_bytes()
}

fn value() -> Bytes {
    Bytes::from(vec![b'v'; 100])
}

fn engine(dir: &std::path::Path, hot_max: Option<u64>) -> Engine {
    let config = EngineConfig {
        dir: dir.to_path_buf(),
        maxmemory: ByteSize(512 << 20),
        hot_max_bytes: hot_max.map(ByteSize),
        ..EngineConfig::default()
    };
    let engine = Engine::open(config).expect("open engine");
    for i in 0..KEYS {
        engine
            .set(Access::MayBlock, 0, &key(i), value(), SetOptions::default())
            .unwrap();
    }
    engine
}

/// A cheap deterministic key sequence so the benches do not measure an RNG.
struct Keys(u64);

/// Keys formatted up front, so the benches time lookups rather than `format!`.
struct KeyTable {
    present: Vec<Vec<u8>>,
    absent: Vec<Vec<u8>>,
    absent_encoded: Vec<Vec<u8>>,
}

impl KeyTable {
    fn new() -> Self {
        let absent: Vec<Vec<u8>> = (KEYS..2 * KEYS).map(key).collect();
        KeyTable {
            present: (0..KEYS).map(key).collect(),
            absent_encoded: absent.iter().map(|k| encode_key(0, k)).collect(),
            absent,
        }
    }
}

impl Keys {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (self.0 >> 33) % KEYS
    }
}

fn benches(c: &mut Criterion) {
    let hot_dir = tempfile::tempdir().unwrap();
    let hot = engine(hot_dir.path(), None);
    let reference: Mutex<HashMap<Vec<u8>, Bytes>> =
        Mutex::new((0..KEYS).map(|i| (key(i), value())).collect());
    let cold_dir = tempfile::tempdir().unwrap();
    let cold = engine(cold_dir.path(), Some(64 << 10));
    let raw_dir = tempfile::tempdir().unwrap();
    let raw_rocks = RocksCold::open(
        raw_dir.path(),
        &RocksSizing {
            block_cache_bytes: 64 << 20,
            memtable_bytes: 32 << 20,
            engine_filter: true,
            disk_budget_bytes: None,
        },
        Arc::new(SharedClock::default()),
    )
    .unwrap();
    let mut ops = Vec::new();
    for i in 0..KEYS {
        ops.push(hypercache::engine::cold::ColdOp::Put {
            space: hypercache::engine::cold::Space::Data,
            key: encode_key(0, &key(i)),
            value: value().to_vec(),
        });
    }
    raw_rocks.write(ops).unwrap();
    let mut filter = CuckooFilter::new(FilterConfig {
        initial_capacity: KEYS as usize,
        fingerprint_bits: 12,
        max_bytes: 64 << 20,
    });
    for i in 0..KEYS {
        filter.insert(hash_key(&encode_key(0, &key(i))));
    }

    let table = KeyTable::new();
    let value = value();
    let mut group = c.benchmark_group("engine");
    let mut keys = Keys(1);
    let mut next = move || keys.next() as usize;
    group.bench_function("hot_get", |b| {
        b.iter(|| hot.get(Access::HotOnly, 0, &table.present[next()]).unwrap())
    });
    group.bench_function("mutex_hashmap_get (reference)", |b| {
        b.iter(|| reference.lock().get(&table.present[next()]).cloned())
    });
    group.bench_function("hot_set", |b| {
        b.iter(|| {
            let options = SetOptions::default();
            hot.set(
                Access::HotOnly,
                0,
                &table.present[next()],
                value.clone(),
                options,
            )
            .unwrap()
        })
    });
    group.bench_function("cold_get", |b| {
        b.iter(|| {
            cold.get(Access::MayBlock, 0, &table.present[next()])
                .unwrap()
        })
    });
    group.bench_function("filter_may_contain", |b| {
        b.iter(|| filter.may_contain(hash_key(&table.absent_encoded[next()])))
    });
    group.bench_function("absent_get_with_filter", |b| {
        b.iter(|| {
            cold.get(Access::MayBlock, 0, &table.absent[next()])
                .unwrap()
        })
    });
    group.bench_function("absent_get_rocksdb_only", |b| {
        b.iter(|| raw_rocks.get(&table.absent_encoded[next()]).unwrap())
    });
    group.finish();

    // `cargo test --all-targets` runs benches once in test mode; ratios only under `cargo bench`.
    if std::env::args().any(|arg| arg == "--bench") {
        print_ratios(&hot, &reference, &cold, &raw_rocks, &table);
    }
}

/// Times `op` for about `budget`, returning nanoseconds per call.
fn ns_per_op(budget: Duration, mut op: impl FnMut(u64)) -> f64 {
    let mut keys = Keys(7);
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < budget {
        for _ in 0..1000 {
            op(keys.next());
        }
        calls += 1000;
    }
    start.elapsed().as_nanos() as f64 / calls as f64
}

fn print_ratios(
    hot: &Engine,
    reference: &Mutex<HashMap<Vec<u8>, Bytes>>,
    cold: &Engine,
    raw_rocks: &RocksCold,
    table: &KeyTable,
) {
    let budget = Duration::from_secs(2);
    let hot_get = ns_per_op(budget, |i| {
        black_box(
            hot.get(Access::HotOnly, 0, &table.present[i as usize])
                .unwrap(),
        );
    });
    let map_get = ns_per_op(budget, |i| {
        black_box(reference.lock().get(&table.present[i as usize]).cloned());
    });
    let with_filter = ns_per_op(budget, |i| {
        black_box(
            cold.get(Access::MayBlock, 0, &table.absent[i as usize])
                .unwrap(),
        );
    });
    let rocks_only = ns_per_op(budget, |i| {
        black_box(raw_rocks.get(&table.absent_encoded[i as usize]).unwrap());
    });
    println!();
    println!("ratios (same run)                          ns/op     ratio   target");
    println!(
        "hot get / Mutex<HashMap> get        {hot_get:>9.1} / {map_get:>6.1}  {:>6.2}x   <= 2x",
        hot_get / map_get
    );
    println!(
        "absent: RocksDB only / with filter  {rocks_only:>9.1} / {with_filter:>6.1}  {:>6.2}x   >= 10x",
        rocks_only / with_filter
    );
}

criterion_group! {
    name = engine_benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(engine_benches);
