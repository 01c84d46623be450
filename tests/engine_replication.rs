//! The engine's side of replication (engine/replication.rs, DESIGN.md §9) without sockets: a
//! replica engine built from a primary's snapshot, taken while the primary keeps writing, plus
//! the primary's WAL records after the snapshot's LSN, must equal the primary over both tiers
//! (values, deadlines, key counts), with the same log numbering; a record that does not
//! follow the replica's log is refused and changes nothing.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hypercache::config::{ByteSize, EngineConfig, SyncPolicy};
use hypercache::engine::cold::SharedClock;
use hypercache::engine::mutation::MutationBatch;
use hypercache::engine::wal::{decode_streamed_record, Lsn, WalTail};
use hypercache::engine::{
    scan_to_end, Access, Durability, Engine, ExpireCondition, KeyTtl, SetOptions,
};
use rand::{Rng, SeedableRng};

const NOW: u64 = 1_800_000_000_000;
const BLOCK: Access = Access::MayBlock;
const DATABASES: u16 = 3;

/// An engine with the WAL on and a 16 KB hot tier, so most keys live in the cold tier.
fn open(dir: &Path) -> Engine {
    let config = EngineConfig {
        dir: dir.to_path_buf(),
        maxmemory: ByteSize(64 << 20),
        databases: DATABASES,
        hot_shards: 4,
        hot_max_bytes: Some(ByteSize(16 << 10)),
        filter_initial_capacity: 1024,
        ..EngineConfig::default()
    };
    let durability = Durability {
        wal: true,
        sync: SyncPolicy::No,
        wal_segment_bytes: 64 << 10,
        checkpoint_interval: Duration::ZERO,
        checkpoint_wal_bytes: 0,
        retain_checkpoints: 0,
        clean_start: false,
    };
    let clock = Arc::new(SharedClock::default());
    clock.set_manual_ms(NOW);
    Engine::open_durable_with_clock(config, durability, clock).unwrap()
}

/// Seeded SET / DEL / EXPIREAT on the primary.
fn write(engine: &Engine, rng: &mut rand::rngs::StdRng, count: usize) {
    for step in 0..count {
        let db = rng.random_range(0..DATABASES);
        let key = format!("user:{}", rng.random_range(0..400));
        match rng.random_range(0..1000) {
            0..=549 => {
                let value = Bytes::from(format!("{step}:{}", "x".repeat(rng.random_range(1..300))));
                engine
                    .set(BLOCK, db, key.as_bytes(), value, SetOptions::default())
                    .unwrap();
            }
            550..=749 => {
                engine.delete(BLOCK, db, key.as_bytes()).unwrap();
            }
            _ => {
                let at = NOW + rng.random_range(1_000..10_000_000);
                engine
                    .expire_at(BLOCK, db, key.as_bytes(), at, ExpireCondition::Always)
                    .unwrap();
            }
        }
    }
}

/// Every key of every database with its value and deadline, read through the engine.
fn contents(engine: &Engine) -> Vec<(u16, Vec<u8>, Option<Bytes>, KeyTtl)> {
    let mut out = Vec::new();
    for db in 0..DATABASES {
        let mut keys = scan_to_end(|cursor| engine.scan(BLOCK, db, cursor, None, 100)).unwrap();
        keys.sort();
        for key in keys {
            let value = engine.get(BLOCK, db, &key).unwrap();
            let ttl = engine.ttl(BLOCK, db, &key).unwrap();
            out.push((db, key.to_vec(), value, ttl));
        }
        assert_eq!(
            engine.dbsize(db).unwrap(),
            out.iter().filter(|entry| entry.0 == db).count() as u64,
            "DBSIZE of db {db}"
        );
    }
    out
}

/// Applies the primary's records after `after` to the replica, as the link does.
fn follow(primary: &Engine, replica: &Engine, after: Lsn) {
    let wal = primary.wal().unwrap();
    wal.sync().unwrap();
    let mut tail = WalTail::new(wal.dir(), after);
    let mut bytes = Vec::new();
    tail.read(wal.written_lsn(), usize::MAX, &mut bytes)
        .unwrap();
    let mut rest = &bytes[..];
    while let Some(record) = decode_streamed_record(rest).unwrap() {
        replica
            .apply_replicated(record.lsn, record.payload)
            .unwrap();
        rest = &rest[record.len..];
    }
    assert_eq!(replica.wal().unwrap().last_lsn(), wal.last_lsn());
}

#[test]
fn a_replica_from_a_snapshot_taken_under_writes_plus_the_log_equals_its_primary() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let primary = open(dirs.0.path());
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    write(&primary, &mut rng, 3_000);

    let replica = open(dirs.1.path());
    // It had data of its own: a full sync replaces it.
    replica
        .set(
            BLOCK,
            0,
            b"stale",
            Bytes::from_static(b"old"),
            SetOptions::default(),
        )
        .unwrap();
    replica.set_replica_mode(true).unwrap();
    let at = primary.wal().unwrap().last_lsn();
    replica.begin_full_sync(at).unwrap();
    // The primary goes on writing while its snapshot is read, page by page.
    for db in 0..DATABASES {
        let mut cursor = 0;
        loop {
            let mut batch = MutationBatch::default();
            cursor = primary.snapshot_page(db, cursor, 50, &mut batch).unwrap();
            if !batch.is_empty() {
                replica.load_snapshot_batch(batch.as_bytes()).unwrap();
            }
            write(&primary, &mut rng, 20);
            if cursor == 0 {
                break;
            }
        }
        if db == 0 {
            // A flush after the snapshot's LSN, of a database not read yet.
            primary.flushdb(BLOCK, 2).unwrap();
            write(&primary, &mut rng, 200);
        }
    }
    replica.finish_full_sync().unwrap();
    follow(&primary, &replica, at);
    let expected = contents(&primary);
    assert!(
        expected.len() > 300,
        "the primary holds {} keys",
        expected.len()
    );
    assert_eq!(contents(&replica), expected);

    // Streaming goes on from there; a promotion keeps the numbering.
    let before = primary.wal().unwrap().last_lsn();
    write(&primary, &mut rng, 500);
    follow(&primary, &replica, before);
    assert_eq!(contents(&replica), contents(&primary));
    replica.set_replica_mode(false).unwrap();
    let next = primary.wal().unwrap().last_lsn() + 1;
    replica
        .set(
            BLOCK,
            0,
            b"after-promotion",
            Bytes::from_static(b"1"),
            SetOptions::default(),
        )
        .unwrap();
    assert_eq!(replica.wal().unwrap().last_lsn(), next);
}

#[test]
fn a_record_that_does_not_follow_the_replicas_log_is_refused() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let primary = open(dirs.0.path());
    primary
        .set(
            BLOCK,
            0,
            b"a",
            Bytes::from_static(b"1"),
            SetOptions::default(),
        )
        .unwrap();
    primary
        .set(
            BLOCK,
            0,
            b"b",
            Bytes::from_static(b"2"),
            SetOptions::default(),
        )
        .unwrap();
    let wal = primary.wal().unwrap();
    wal.sync().unwrap();
    let mut bytes = Vec::new();
    WalTail::new(wal.dir(), 0)
        .read(wal.written_lsn(), usize::MAX, &mut bytes)
        .unwrap();
    let first = decode_streamed_record(&bytes).unwrap().unwrap();
    let second = decode_streamed_record(&bytes[first.len..])
        .unwrap()
        .unwrap();

    let replica = open(dirs.1.path());
    // Not a replica yet: it logs its own writes, and a full sync is refused.
    assert!(replica.begin_full_sync(0).is_err());
    replica.set_replica_mode(true).unwrap();
    // A gap, a repeat and an empty payload are refused, changing nothing.
    assert!(replica
        .apply_replicated(second.lsn, second.payload)
        .is_err());
    replica.apply_replicated(first.lsn, first.payload).unwrap();
    assert!(replica.apply_replicated(first.lsn, first.payload).is_err());
    assert!(replica.apply_replicated(second.lsn, b"").is_err());
    assert_eq!(replica.get(BLOCK, 0, b"b").unwrap(), None);
    replica
        .apply_replicated(second.lsn, second.payload)
        .unwrap();
    assert_eq!(
        replica.get(BLOCK, 0, b"b").unwrap(),
        Some(Bytes::from_static(b"2"))
    );
}
