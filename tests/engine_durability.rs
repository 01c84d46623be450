//! I5 at the engine level: WAL replay after a crash, checkpoints, the saved filter and key
//! counts of a clean shutdown, torn tails and mid-log damage. (The crash harness in
//! crash_recovery.rs kills the real binary; this file drives the engine API directly, with a
//! model of what every key must hold.)

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hypercache::config::{ByteSize, EngineConfig, MemorySplit, SyncPolicy};
use hypercache::engine::cold::SharedClock;
use hypercache::engine::{
    Access, CheckpointReason, Durability, Engine, ExpireCondition, SetOptions,
};
use rand::{Rng, SeedableRng};

const NOW: u64 = 1_800_000_000_000;
const BLOCK: Access = Access::MayBlock;
const DATABASES: u16 = 4;

fn config(dir: &Path, hot_max_bytes: u64) -> EngineConfig {
    EngineConfig {
        dir: dir.to_path_buf(),
        maxmemory: ByteSize(64 << 20),
        databases: DATABASES,
        hot_shards: 4,
        hot_max_bytes: Some(ByteSize(hot_max_bytes)),
        filter_initial_capacity: 1024,
        compress_min_bytes: 64,
        ..EngineConfig::default()
    }
}

fn durability(clean_start: bool) -> Durability {
    Durability {
        wal: true,
        sync: SyncPolicy::Always,
        // Small segments, so checkpoints have whole segments to delete.
        wal_segment_bytes: 64 << 10,
        checkpoint_interval: Duration::ZERO,
        checkpoint_wal_bytes: 0,
        retain_checkpoints: 0,
        clean_start,
    }
}

fn open(dir: &Path, hot_max_bytes: u64, clean_start: bool) -> Engine {
    open_with(config(dir, hot_max_bytes), clean_start)
}

fn open_with(config: EngineConfig, clean_start: bool) -> Engine {
    let clock = Arc::new(SharedClock::default());
    clock.set_manual_ms(NOW);
    Engine::open_durable_with_clock(config, durability(clean_start), clock).unwrap()
}

/// What SHUTDOWN does to the engine: the shutdown checkpoint (which saves the filter and
/// key counts), then the WAL closed.
fn shut_down_cleanly(engine: Engine) {
    engine.checkpoint(CheckpointReason::Shutdown).unwrap();
    engine.close_wal().unwrap();
}

/// What every key must hold: (db, key) -> (value, expire_at).
type Model = BTreeMap<(u16, String), (String, u64)>;

/// Random SET / SET PX / INCR-like update / DEL / EXPIREAT / PERSIST / RENAME / FLUSHDB
/// against the engine and the model alike.
fn random_ops(engine: &Engine, model: &mut Model, rng: &mut rand::rngs::StdRng, count: usize) {
    for step in 0..count {
        let db = rng.random_range(0..DATABASES);
        let key = format!("key:{}", rng.random_range(0..300));
        match rng.random_range(0..100) {
            0..=39 => {
                // Values long enough that some compress, so both encodings replay.
                let value = format!("{step}-{}", "v".repeat(rng.random_range(1..200)));
                engine
                    .set(
                        BLOCK,
                        db,
                        key.as_bytes(),
                        Bytes::from(value.clone()),
                        SetOptions::default(),
                    )
                    .unwrap();
                model.insert((db, key), (value, 0));
            }
            40..=54 => {
                let next = engine
                    .update(BLOCK, db, key.as_bytes(), |current| {
                        let n = current.map_or(0, |v| v.len()) + 1;
                        let value = format!("len{n}");
                        Ok::<_, hypercache::engine::EngineError>((
                            Some(Bytes::from(value.clone())),
                            value,
                        ))
                    })
                    .unwrap();
                let expire_at = model.get(&(db, key.clone())).map_or(0, |(_, at)| *at);
                model.insert((db, key), (next, expire_at));
            }
            55..=69 => {
                let existed = engine.delete(BLOCK, db, key.as_bytes()).unwrap();
                assert_eq!(existed, model.remove(&(db, key)).is_some());
            }
            70..=79 => {
                let at = NOW + rng.random_range(1..1_000_000);
                let applied = engine
                    .expire_at(BLOCK, db, key.as_bytes(), at, ExpireCondition::Always)
                    .unwrap();
                if let Some(entry) = model.get_mut(&(db, key)) {
                    assert!(applied);
                    entry.1 = at;
                }
            }
            80..=84 => {
                let removed = engine.persist(BLOCK, db, key.as_bytes()).unwrap();
                if let Some(entry) = model.get_mut(&(db, key)) {
                    assert_eq!(removed, entry.1 != 0);
                    entry.1 = 0;
                }
            }
            85..=97 => {
                let destination = format!("key:{}", rng.random_range(0..300));
                let result =
                    engine.rename(BLOCK, db, key.as_bytes(), destination.as_bytes(), false);
                match model.remove(&(db, key.clone())) {
                    Some(entry) => {
                        result.unwrap();
                        model.insert((db, destination), entry);
                    }
                    None => assert!(result.is_err()),
                }
            }
            _ => {
                engine.flushdb(BLOCK, db).unwrap();
                model.retain(|(key_db, _), _| *key_db != db);
            }
        }
    }
}

/// Every key holds exactly the model's value and expiry, and DBSIZE is exact.
fn assert_matches(engine: &Engine, model: &Model, context: &str) {
    for db in 0..DATABASES {
        let expected = model.keys().filter(|(key_db, _)| *key_db == db).count() as u64;
        assert_eq!(
            engine.dbsize(db).unwrap(),
            expected,
            "{context}: dbsize of {db}"
        );
    }
    for key in 0..300 {
        for db in 0..DATABASES {
            let key = format!("key:{key}");
            let got = engine.get(BLOCK, db, key.as_bytes()).unwrap();
            let want = model.get(&(db, key.clone()));
            assert_eq!(
                got.map(|v| String::from_utf8(v.to_vec()).unwrap()),
                want.map(|(v, _)| v.clone()),
                "{context}: value of {db}/{key}"
            );
            if let Some((_, at)) = want {
                let ttl = engine.ttl(BLOCK, db, key.as_bytes()).unwrap();
                let expected = match at {
                    0 => hypercache::engine::KeyTtl::Persistent,
                    at => hypercache::engine::KeyTtl::ExpiresAt(*at),
                };
                assert_eq!(ttl, expected, "{context}: ttl of {db}/{key}");
            }
        }
    }
    let (seen, missing) = engine.check_filter_covers_cold().unwrap();
    assert_eq!(
        missing, 0,
        "{context}: filter misses {missing} of {seen} cold keys"
    );
}

#[test]
fn i5_a_crash_loses_nothing_acknowledged_across_checkpoints_and_a_tiny_hot_tier() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut model = Model::new();
    for round in 0..4 {
        // A hot tier of a few KB: most keys are demoted to the cold tier between writes.
        let engine = open(dir.path(), 8 << 10, false);
        assert_matches(&engine, &model, &format!("after crash {round}"));
        random_ops(&engine, &mut model, &mut rng, 1500);
        if round % 2 == 0 {
            // Replay must start after this checkpoint and still see what follows it.
            engine.checkpoint(CheckpointReason::Requested).unwrap();
            random_ops(&engine, &mut model, &mut rng, 500);
        }
        assert_matches(&engine, &model, &format!("before crash {round}"));
        // No shutdown checkpoint: dropping the engine is a crash after the WAL's writes
        // reached the OS (what kill -9 leaves behind).
        drop(engine);
    }
    let engine = open(dir.path(), 8 << 10, false);
    assert_matches(&engine, &model, "final");
    let report = engine.persistence_report();
    assert!(!report.startup.loaded_saved_state);
    assert!(report.startup.replayed_records > 0);
}

#[test]
fn clean_shutdown_saves_the_filter_and_counts_and_restart_replays_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut model = Model::new();
    let engine = open(dir.path(), 16 << 10, false);
    random_ops(&engine, &mut model, &mut rng, 3000);
    let info = engine.checkpoint(CheckpointReason::Shutdown).unwrap();
    assert!(info.lsn > 0);
    engine.close_wal().unwrap();
    drop(engine);

    let engine = open(dir.path(), 16 << 10, true);
    let report = engine.persistence_report();
    assert!(report.startup.loaded_saved_state, "{report:?}");
    assert_eq!(report.startup.replayed_records, 0);
    assert_eq!(report.startup.checkpoint_lsn, info.lsn);
    assert_matches(&engine, &model, "after clean restart");
    random_ops(&engine, &mut model, &mut rng, 500);
    drop(engine);

    // The saved state was consumed at load: a crash afterwards must rebuild, not trust it.
    let engine = open(dir.path(), 16 << 10, true);
    assert!(!engine.persistence_report().startup.loaded_saved_state);
    assert_matches(&engine, &model, "after crash following a clean restart");
}

/// A clean restart with other `filter_fingerprint_bits` cannot use the saved filter (its
/// fingerprints are the old width): it rebuilds one of the new width covering every key.
#[test]
fn changed_fingerprint_bits_rebuild_the_saved_filter() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut model = Model::new();
    let engine = open(dir.path(), 16 << 10, false);
    random_ops(&engine, &mut model, &mut rng, 2000);
    let narrow_bytes = engine.tier_report().filter_used_bytes;
    shut_down_cleanly(engine);

    let wide = EngineConfig {
        filter_fingerprint_bits: 32,
        ..config(dir.path(), 16 << 10)
    };
    let engine = open_with(wide, true);
    assert!(!engine.persistence_report().startup.loaded_saved_state);
    assert_eq!(engine.tier_report().filter_used_bytes, 2 * narrow_bytes);
    assert_matches(&engine, &model, "after a restart with 32-bit fingerprints");
}

/// A clean restart whose filter share is smaller than the saved filter (a lower maxmemory or
/// filter_percent) must not load it over budget (I6): it rebuilds one within the share that
/// still covers every key (I4). A share the saved filter fits in loads it.
#[test]
fn a_saved_filter_larger_than_the_new_share_is_rebuilt_within_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let mut model = Model::new();
    // A first table of 2^15 buckets: 256 KB of 16-bit slots, inside 64 MB's 10% share.
    let roomy = EngineConfig {
        filter_initial_capacity: 1 << 17,
        ..config(dir.path(), 16 << 10)
    };
    let engine = open_with(roomy.clone(), true);
    random_ops(&engine, &mut model, &mut rng, 2000);
    let saved_bytes = engine.tier_report().filter_used_bytes;
    shut_down_cleanly(engine);

    // 1% of 16 MB: 167 KB, less than the saved tables.
    let tight = EngineConfig {
        maxmemory: ByteSize(16 << 20),
        memory_split: MemorySplit {
            filter_percent: 1,
            ..MemorySplit::default()
        },
        ..roomy.clone()
    };
    let engine = open_with(tight, true);
    let share = engine.budget().filter_max_bytes;
    assert!(saved_bytes > share, "{saved_bytes} saved, {share} share");
    assert!(!engine.persistence_report().startup.loaded_saved_state);
    let used = engine.tier_report().filter_used_bytes;
    assert!(0 < used && used <= share, "{used} used, {share} share");
    assert_eq!(engine.check_filter_covers_cold().unwrap().1, 0);
    assert_matches(
        &engine,
        &model,
        "after a restart with a smaller filter share",
    );
    shut_down_cleanly(engine);

    // Back to the roomy share: the small saved filter fits and is loaded as it is.
    let engine = open_with(roomy, true);
    assert!(engine.persistence_report().startup.loaded_saved_state);
    assert_eq!(engine.tier_report().filter_used_bytes, used);
    assert_matches(
        &engine,
        &model,
        "after a restart with the larger share again",
    );
}

#[test]
fn checkpoints_delete_covered_segments_and_lsns_keep_rising() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut model = Model::new();
    let engine = open(dir.path(), 1 << 20, false);
    random_ops(&engine, &mut model, &mut rng, 8000);
    let before = engine.persistence_report();
    assert!(before.wal_disk_bytes > 192 << 10, "{before:?}");
    let info = engine.checkpoint(CheckpointReason::Requested).unwrap();
    let after = engine.persistence_report();
    assert!(
        after.wal_disk_bytes < before.wal_disk_bytes / 2,
        "{after:?}"
    );
    assert_eq!(after.last_checkpoint.lsn, info.lsn);
    drop(engine);
    // Even with every segment gone, numbering continues after the checkpoint.
    std::fs::remove_dir_all(dir.path().join("wal")).unwrap();
    let engine = open(dir.path(), 1 << 20, false);
    assert_eq!(engine.persistence_report().wal_last_lsn, info.lsn);
    assert_matches(&engine, &model, "after losing the covered log");
    engine
        .set(
            BLOCK,
            0,
            b"after",
            Bytes::from_static(b"x"),
            SetOptions::default(),
        )
        .unwrap();
    assert_eq!(engine.persistence_report().wal_last_lsn, info.lsn + 1);
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    found.sort();
    found
}

#[test]
fn a_torn_tail_is_truncated_and_mid_log_damage_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut model = Model::new();
    let engine = open(dir.path(), 1 << 20, false);
    random_ops(&engine, &mut model, &mut rng, 400);
    drop(engine);

    // Half a record at the end: an interrupted write. Startup drops it and keeps the rest.
    let last = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    let intact = bytes.len();
    bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&last, &bytes).unwrap();
    let engine = open(dir.path(), 1 << 20, false);
    assert_matches(&engine, &model, "after a torn tail");
    drop(engine);
    assert_eq!(std::fs::metadata(&last).unwrap().len() as usize, intact);

    // A flipped bit in the middle of the log: refuse, naming the file and the fix.
    let first = segments(dir.path()).remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&first, &bytes).unwrap();
    let clock = Arc::new(SharedClock::default());
    let err = match Engine::open_durable_with_clock(
        config(dir.path(), 1 << 20),
        durability(false),
        clock,
    ) {
        Ok(_) => panic!("opened over a damaged WAL"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains("hypercache-tool recover"), "{err}");
    assert!(err.contains(&first.display().to_string()), "{err}");
}

#[test]
fn a_wal_older_than_a_checkpoint_taken_without_it_is_never_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), 1 << 20, false);
    engine
        .set(
            BLOCK,
            0,
            b"k",
            Bytes::from_static(b"old"),
            SetOptions::default(),
        )
        .unwrap();
    drop(engine);
    // The operator turns the WAL off for a while; the key changes and a checkpoint is taken.
    let clock = Arc::new(SharedClock::default());
    let engine = Engine::open_durable_with_clock(
        config(dir.path(), 1 << 20),
        Durability {
            wal: false,
            ..durability(false)
        },
        clock,
    )
    .unwrap();
    engine
        .set(
            BLOCK,
            0,
            b"k",
            Bytes::from_static(b"new"),
            SetOptions::default(),
        )
        .unwrap();
    engine.checkpoint(CheckpointReason::Shutdown).unwrap();
    drop(engine);
    let engine = open(dir.path(), 1 << 20, true);
    assert_eq!(
        engine.get(BLOCK, 0, b"k").unwrap(),
        Some(Bytes::from_static(b"new"))
    );
}

#[test]
fn retained_checkpoints_are_kept_up_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SharedClock::default());
    clock.set_manual_ms(NOW);
    let engine = Engine::open_durable_with_clock(
        config(dir.path(), 1 << 20),
        Durability {
            retain_checkpoints: 2,
            ..durability(false)
        },
        clock.clone(),
    )
    .unwrap();
    for round in 0..3u64 {
        clock.set_manual_ms(NOW + round * 1000);
        engine
            .set(
                BLOCK,
                0,
                b"k",
                Bytes::from(round.to_string()),
                SetOptions::default(),
            )
            .unwrap();
        let info = engine.checkpoint(CheckpointReason::Requested).unwrap();
        assert!(info.retained.unwrap().join("CURRENT").exists());
    }
    let kept = hypercache::engine::list_checkpoints(dir.path());
    assert_eq!(kept.len(), 2, "{kept:?}");
}
