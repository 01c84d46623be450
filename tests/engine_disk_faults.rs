//! I8 with I6 on a failing disk: every engine path that writes the cold tier (demotion,
//! background and inline; the checkpoint's flush; the cold delete of DEL and of expiry;
//! compaction) runs against a cold store whose writes fail (ENOSPC, EIO, read-only, a
//! stall that never ends). Each must answer (every test runs under a watchdog that fails it
//! if it has not finished in 30 s: a hang detector, not a timing assertion), keep the hot
//! tier within its limit plus one entry per shard, keep DBSIZE exact, lose nothing
//! acknowledged, and resume by itself once the fault clears.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hypercache::config::{ByteSize, EngineConfig, EvictionPolicy};
use hypercache::engine::cold::{Fault, FaultSwitch, FaultyCold, MemCold, SharedClock};
use hypercache::engine::{Access, Engine, EngineError, OomRefusal, SetExpiry, SetOptions};

const BLOCK: Access = Access::MayBlock;
const SHARDS: usize = 4;
const HOT_BYTES: u64 = 64 << 10;
const VALUE_LEN: usize = 1024;
/// Key + value + the hot tier's per-entry overhead, rounded up.
const ENTRY_BYTES: usize = VALUE_LEN + 64 + 200;
const NOW: u64 = 1_800_000_000_000;

/// Runs `test` on its own thread and fails if it has not finished within 30 s.
fn within_deadline(test: impl FnOnce() + Send + 'static) {
    let (done, finished) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        test();
        let _ = done.send(());
    });
    match finished.recv_timeout(Duration::from_secs(30)) {
        Ok(()) => worker.join().unwrap(),
        // The worker panicked: its panic is the failure.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(worker.join().unwrap_err())
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("hung: the engine did not answer within 30 s on a failing disk")
        }
    }
}

struct Faulty {
    engine: Arc<Engine>,
    switch: Arc<FaultSwitch>,
    clock: Arc<SharedClock>,
    _dir: tempfile::TempDir,
}

fn faulty_engine() -> Faulty {
    faulty_engine_with(EngineConfig::default().maxmemory_policy)
}

fn faulty_engine_with(policy: EvictionPolicy) -> Faulty {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SharedClock::default());
    clock.set_manual_ms(NOW);
    let (store, switch) = FaultyCold::new(MemCold::new(clock.clone()));
    let config = EngineConfig {
        dir: dir.path().to_path_buf(),
        maxmemory: ByteSize(16 << 20),
        hot_shards: SHARDS,
        hot_max_bytes: Some(ByteSize(HOT_BYTES)),
        compress_min_bytes: 0,
        maxmemory_policy: policy,
        ..EngineConfig::default()
    };
    let engine = Engine::with_cold_store(config, Box::new(store), clock.clone()).unwrap();
    Faulty {
        engine: Arc::new(engine),
        switch,
        clock,
        _dir: dir,
    }
}

fn value(i: usize) -> Bytes {
    let mut bytes = format!("value-{i}-").into_bytes();
    bytes.resize(VALUE_LEN, b'x');
    Bytes::from(bytes)
}

fn key(i: usize) -> Vec<u8> {
    format!("key:{i}").into_bytes()
}

fn set(engine: &Engine, i: usize) -> Result<(), EngineError> {
    engine
        .set(BLOCK, 0, &key(i), value(i), SetOptions::default())
        .map(|_| ())
}

/// I6: the hot tier within its limit plus one entry per shard.
fn assert_hot_within_limit(engine: &Engine) {
    let report = engine.tier_report();
    assert!(
        report.hot_used_bytes <= report.hot_limit_bytes + SHARDS * ENTRY_BYTES,
        "hot tier {} bytes over its limit {} (+ one entry per shard)",
        report.hot_used_bytes,
        report.hot_limit_bytes
    );
}

/// Writes keys `from..to`, returning those acknowledged; every other answer must be the
/// OOM refusal. Checks I6 after each write.
fn write_range(engine: &Engine, from: usize, to: usize) -> Vec<usize> {
    let mut acknowledged = Vec::new();
    for i in from..to {
        match set(engine, i) {
            Ok(()) => acknowledged.push(i),
            Err(EngineError::OutOfMemory(OomRefusal::ColdWritesFailing)) => {}
            Err(other) => panic!("SET key:{i} failed with {other}, not OOM"),
        }
        assert_hot_within_limit(engine);
    }
    acknowledged
}

fn assert_all_readable(engine: &Engine, keys: &[usize]) {
    for &i in keys {
        assert_eq!(
            engine.get(BLOCK, 0, &key(i)).unwrap(),
            Some(value(i)),
            "key:{i} lost"
        );
    }
}

/// Demotion (inline on every write, and by the background demoter) against each kind of
/// failing write; then the fault clears and everything resumes. Under noeviction, so that
/// a stall is refused too (under allkeys-* a stall evicts from RAM instead: below).
fn demotion_survives(fault: Fault) {
    let t = faulty_engine_with(EvictionPolicy::Noeviction);
    let engine = &t.engine;
    let _background = engine.start_background_tasks();
    // A healthy start: enough keys that the first ones live in the cold tier.
    let mut acknowledged = write_range(engine, 0, 200);
    assert_eq!(acknowledged.len(), 200);
    assert!(engine.tier_report().stats.demotions > 0);

    t.switch.fail_writes(Some(fault));
    // Four times the hot tier's size, written while no cold write succeeds.
    let failing = write_range(engine, 200, 200 + 4 * (HOT_BYTES as usize / VALUE_LEN));
    assert!(
        failing.len() < 4 * (HOT_BYTES as usize / VALUE_LEN),
        "every write was accepted while the disk failed: the hot tier must have grown"
    );
    acknowledged.extend(&failing);
    assert_eq!(engine.dbsize(0).unwrap(), acknowledged.len() as u64);
    assert!(engine.demote_over_budget_shards().is_err());
    assert_hot_within_limit(engine);
    let report = engine.tier_report();
    assert!(report.disk_health.failing, "{:?}", report.disk_health);
    assert!(engine.oom_refusal().is_some());
    if fault != Fault::Stall {
        assert!(report.disk_health.write_errors > 0);
    }
    // Hot hits and cold reads answer as before (reads still work).
    assert_all_readable(engine, &acknowledged[..20]);
    assert_all_readable(engine, &failing[failing.len() - 5..]);
    // A failing read is an error, not a wait; hot keys still answer.
    t.switch.fail_reads(Some(Fault::Io));
    let cold_key = (0..200)
        .find(|&i| {
            matches!(
                engine.get(Access::HotOnly, 0, &key(i)),
                Err(EngineError::WouldBlock)
            )
        })
        .expect("some early key lives only in the cold tier");
    assert!(engine.get(BLOCK, 0, &key(cold_key)).is_err());
    let last = *failing.last().unwrap();
    assert_eq!(engine.get(BLOCK, 0, &key(last)).unwrap(), Some(value(last)));
    t.switch.fail_reads(None);

    // The disk comes back: the demoter resumes by itself and the refusal clears.
    t.switch.fail_writes(None);
    let demotions_before = engine.tier_report().stats.demotions;
    for _ in 0..3000 {
        if engine.oom_refusal().is_none()
            && engine.tier_report().stats.demotions > demotions_before
            && !engine.tier_report().disk_health.failing
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(engine.oom_refusal(), None);
    assert!(!engine.tier_report().disk_health.failing);
    let after = write_range(engine, 10_000, 10_100);
    assert_eq!(
        after.len(),
        100,
        "writes are refused after the disk came back"
    );
    acknowledged.extend(&after);
    assert!(engine.tier_report().stats.demotions > demotions_before);
    assert_eq!(engine.dbsize(0).unwrap(), acknowledged.len() as u64);
    assert_all_readable(engine, &acknowledged);
    assert_filter_counts_each_cold_key_once(engine);
    let _ = t.clock;
}

/// I4 after failures: once every key is in the cold tier, the filter holds exactly one
/// fingerprint per key (a failed cold write must not leave the fingerprints it added: the
/// disk budget counts cold keys by them).
fn assert_filter_counts_each_cold_key_once(engine: &Engine) {
    engine.flush_dirty_to_cold().unwrap();
    assert_eq!(
        engine.tier_report().filter_fingerprints as u64,
        engine.dbsize(0).unwrap(),
        "fingerprints against keys, every key in the cold tier"
    );
}

#[test]
fn i8_demotion_on_a_full_disk_refuses_writes_and_resumes() {
    within_deadline(|| demotion_survives(Fault::NoSpace));
}

#[test]
fn i8_demotion_on_an_io_error_refuses_writes_and_resumes() {
    within_deadline(|| demotion_survives(Fault::Io));
}

#[test]
fn i8_demotion_on_a_read_only_disk_refuses_writes_and_resumes() {
    within_deadline(|| demotion_survives(Fault::ReadOnly));
}

#[test]
fn i8_demotion_through_an_endless_write_stall_refuses_writes_and_resumes() {
    within_deadline(|| demotion_survives(Fault::Stall));
}

/// A disk that works but has stalled writes past their grace (compaction behind) under
/// allkeys-lru: writes are not refused; the policy takes keys the cold tier never held
/// straight from RAM, the hot tier stays within its limit, DBSIZE stays exact, and every
/// key that was already on disk (or is still hot) reads back.
#[test]
fn an_endless_write_stall_under_allkeys_lru_evicts_from_ram_and_takes_every_write() {
    within_deadline(|| {
        let t = faulty_engine_with(EvictionPolicy::AllkeysLru);
        let engine = &t.engine;
        let _background = engine.start_background_tasks();
        let on_disk = write_range(engine, 0, 200);
        engine.flush_dirty_to_cold().unwrap();
        t.switch.fail_writes(Some(Fault::Stall));
        let count = 4 * (HOT_BYTES as usize / VALUE_LEN);
        let during = write_range(engine, 200, 200 + count);
        assert_eq!(during.len(), count, "a write was refused during a stall");
        let report = engine.tier_report();
        assert!(report.stats.ram_evictions > 0, "{:?}", report.stats);
        assert_eq!(
            engine.dbsize(0).unwrap(),
            (200 + count) as u64 - report.stats.ram_evictions,
            "DBSIZE counts every key written less every key evicted"
        );
        assert_all_readable(engine, &on_disk);
        let last = *during.last().unwrap();
        assert_eq!(engine.get(BLOCK, 0, &key(last)).unwrap(), Some(value(last)));
        t.switch.fail_writes(None);
        assert_filter_counts_each_cold_key_once(engine);
    });
}

#[test]
fn i8_checkpoint_flush_fails_without_hanging_and_keeps_dirty_entries() {
    within_deadline(|| {
        for fault in [Fault::NoSpace, Fault::Stall] {
            let t = faulty_engine();
            let engine = &t.engine;
            let keys = write_range(engine, 0, 20);
            t.switch.fail_writes(Some(fault));
            assert!(engine.flush_dirty_to_cold().is_err(), "{fault:?}");
            assert_eq!(engine.dbsize(0).unwrap(), 20);
            assert_all_readable(engine, &keys);
            t.switch.fail_writes(None);
            assert_eq!(engine.flush_dirty_to_cold().unwrap(), 20, "{fault:?}");
            assert_all_readable(engine, &keys);
            assert_filter_counts_each_cold_key_once(engine);
        }
    });
}

#[test]
fn i8_deleting_a_cold_key_on_a_failing_disk_fails_and_keeps_the_key() {
    within_deadline(|| {
        let t = faulty_engine();
        let engine = &t.engine;
        let keys = write_range(engine, 0, 10);
        engine.flush_dirty_to_cold().unwrap();
        t.switch.fail_writes(Some(Fault::NoSpace));
        // The key has a cold copy: without the WAL its delete is a cold write.
        assert!(engine.delete(BLOCK, 0, &key(3)).is_err());
        assert_eq!(engine.dbsize(0).unwrap(), 10);
        assert_all_readable(engine, &keys);
        t.switch.fail_writes(None);
        assert!(engine.delete(BLOCK, 0, &key(3)).unwrap());
        assert_eq!(engine.dbsize(0).unwrap(), 9);
        assert_eq!(engine.get(BLOCK, 0, &key(3)).unwrap(), None);
    });
}

#[test]
fn i8_expiring_a_cold_key_on_a_failing_disk_keeps_counts_exact() {
    within_deadline(|| {
        let t = faulty_engine();
        let engine = &t.engine;
        let deadline = NOW + 1000;
        let options = SetOptions {
            expiry: SetExpiry::At(deadline),
            ..SetOptions::default()
        };
        engine
            .set(BLOCK, 0, b"doomed", Bytes::from_static(b"v"), options)
            .unwrap();
        // Push it out of the hot tier into the cold tier.
        let fillers = write_range(engine, 0, 400);
        assert_eq!(fillers.len(), 400);
        assert_eq!(engine.dbsize(0).unwrap(), 401);
        t.clock.set_manual_ms(deadline + 1);
        t.switch.fail_writes(Some(Fault::NoSpace));
        // The expirer's cold delete fails: an error, not a wait; the key still counts
        // until it is reclaimed, and reads as absent meanwhile.
        assert!(engine.run_active_expiry_cycle().is_err());
        assert_eq!(engine.get(BLOCK, 0, b"doomed").unwrap(), None);
        assert_eq!(engine.dbsize(0).unwrap(), 401);
        t.switch.fail_writes(None);
        for _ in 0..100 {
            engine.run_active_expiry_cycle().unwrap();
            if engine.dbsize(0).unwrap() == 400 {
                break;
            }
        }
        assert_eq!(engine.dbsize(0).unwrap(), 400);
        assert_all_readable(engine, &fillers);
    });
}

#[test]
fn i8_compaction_on_a_failing_disk_fails_and_resumes() {
    within_deadline(|| {
        let t = faulty_engine();
        let engine = &t.engine;
        let keys = write_range(engine, 0, 200);
        t.switch.fail_writes(Some(Fault::Io));
        assert!(engine.compact_cold_tier().is_err());
        assert!(engine.tier_report().disk_health.failing);
        t.switch.fail_writes(None);
        engine.compact_cold_tier().unwrap();
        assert!(!engine.tier_report().disk_health.failing);
        assert_eq!(engine.dbsize(0).unwrap(), 200);
        assert_all_readable(engine, &keys);
    });
}
