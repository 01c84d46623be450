//! One named test per engine invariant of DESIGN.md §3 (I1-I4; I6 lives in
//! memory_budget.rs because it measures the whole process).

use std::sync::Arc;

use bytes::Bytes;
use hypercache::config::{ByteSize, ColdBackend, EngineConfig};
use hypercache::engine::cold::{
    ColdOp, ColdRead, ColdStore, Fault, FaultyCold, RocksCold, RocksSizing, SharedClock, Space,
};
use hypercache::engine::entry::encode_cold_value;
use hypercache::engine::keys;
use hypercache::engine::types::string::StoredValue;
use hypercache::engine::types::Value;
use hypercache::engine::{
    Access, Engine, EngineError, ExpireCondition, KeyTtl, SetExpiry, SetOptions,
};

const NOW: u64 = 1_800_000_000_000;
const BLOCK: Access = Access::MayBlock;

struct TestEngine {
    engine: Engine,
    clock: Arc<SharedClock>,
    _dir: tempfile::TempDir,
}

fn config(dir: &std::path::Path, hot_max_bytes: u64) -> EngineConfig {
    EngineConfig {
        dir: dir.to_path_buf(),
        maxmemory: ByteSize(64 << 20),
        hot_shards: 4,
        hot_max_bytes: Some(ByteSize(hot_max_bytes)),
        filter_initial_capacity: 1024,
        compress_min_bytes: 0,
        ..EngineConfig::default()
    }
}

/// A RocksDB-backed engine whose hot tier holds only a handful of entries.
fn tiny_hot_engine() -> TestEngine {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SharedClock::default());
    clock.set_manual_ms(NOW);
    let engine = Engine::open_with_clock(config(dir.path(), 4 * 1024), clock.clone()).unwrap();
    TestEngine {
        engine,
        clock,
        _dir: dir,
    }
}

fn set(engine: &Engine, db: u16, key: &str, value: &str) {
    engine
        .set(
            BLOCK,
            db,
            key.as_bytes(),
            Bytes::from(value.to_string()),
            SetOptions::default(),
        )
        .unwrap();
}

fn get(engine: &Engine, db: u16, key: &str) -> Option<String> {
    engine
        .get(BLOCK, db, key.as_bytes())
        .unwrap()
        .map(|value| String::from_utf8(value.to_vec()).unwrap())
}

/// Pushes every other entry out of the hot tier by writing filler keys in database 15.
fn churn(engine: &Engine) {
    for i in 0..200 {
        set(engine, 15, &format!("filler:{i}"), "x");
    }
}

fn scan_all(engine: &Engine, db: u16) -> Vec<String> {
    let mut cursor = 0;
    let mut keys = Vec::new();
    loop {
        let page = engine.scan(BLOCK, db, cursor, None, 7).unwrap();
        keys.extend(
            page.keys
                .iter()
                .map(|k| String::from_utf8(k.to_vec()).unwrap()),
        );
        if page.cursor == 0 {
            return keys;
        }
        cursor = page.cursor;
    }
}

#[test]
fn i1_visibility_hot_entry_wins_then_cold_then_absent() {
    let t = tiny_hot_engine();
    let e = &t.engine;
    for i in 0..100 {
        set(e, 0, &format!("key:{i}"), &format!("v1-{i}"));
    }
    churn(e);
    let report = e.tier_report();
    assert!(
        report.stats.demotions >= 100,
        "most keys went cold: {report:?}"
    );

    // Cold values are visible; a newer hot value hides the stale cold copy.
    assert_eq!(get(e, 0, "key:7").as_deref(), Some("v1-7"));
    set(e, 0, "key:7", "v2");
    assert_eq!(get(e, 0, "key:7").as_deref(), Some("v2"));
    churn(e);
    assert_eq!(get(e, 0, "key:7").as_deref(), Some("v2"));
    assert_eq!(get(e, 0, "key:missing"), None);

    // DBSIZE, EXISTS and SCAN see the same single view across both tiers.
    assert_eq!(e.dbsize(0).unwrap(), 100);
    let mut scanned = scan_all(e, 0);
    scanned.sort();
    let mut expected: Vec<String> = (0..100).map(|i| format!("key:{i}")).collect();
    expected.sort();
    assert_eq!(scanned, expected, "every key exactly once");
    assert!(e.exists(BLOCK, 0, b"key:99").unwrap());
    assert_eq!(e.keys(BLOCK, 0, b"key:1?").unwrap().len(), 10);
}

#[test]
fn i1_scan_returns_keys_present_throughout_while_tiers_churn() {
    let t = tiny_hot_engine();
    let e = &t.engine;
    for i in 0..300 {
        set(e, 1, &format!("stable:{i}"), "v");
    }
    let mut seen = std::collections::HashSet::new();
    let mut cursor = 0;
    let mut step = 0;
    loop {
        let page = e.scan(BLOCK, 1, cursor, None, 5).unwrap();
        seen.extend(page.keys.iter().cloned());
        // Between steps: promote some keys, demote others, add and delete transient ones.
        get(e, 1, &format!("stable:{}", step * 7 % 300));
        set(e, 1, &format!("transient:{step}"), "t");
        e.delete(
            BLOCK,
            1,
            format!("transient:{}", step.max(1) - 1).as_bytes(),
        )
        .unwrap();
        churn(e);
        step += 1;
        if page.cursor == 0 {
            break;
        }
        cursor = page.cursor;
    }
    for i in 0..300 {
        assert!(
            seen.contains(format!("stable:{i}").as_bytes()),
            "stable:{i} missed"
        );
    }
}

/// Puts `key` in both tiers: written, demoted, then read back (promoted, cold copy kept).
fn key_in_both_tiers(e: &Engine, key: &str, value: &str) {
    set(e, 0, key, value);
    churn(e);
    assert_eq!(get(e, 0, key).as_deref(), Some(value));
}

#[test]
fn i2_no_resurrection_after_any_removal_eviction_or_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SharedClock::default());
    clock.set_manual_ms(NOW);
    {
        let e = Engine::open_with_clock(config(dir.path(), 4 * 1024), clock.clone()).unwrap();
        for key in [
            "del",
            "ttl-lazy",
            "ttl-active",
            "rename-src",
            "past-set",
            "past-expire",
        ] {
            key_in_both_tiers(&e, key, "stale");
        }
        assert!(e.delete(BLOCK, 0, b"del").unwrap());
        e.expire_at(BLOCK, 0, b"ttl-lazy", NOW + 1000, ExpireCondition::Always)
            .unwrap();
        e.expire_at(BLOCK, 0, b"ttl-active", NOW + 1000, ExpireCondition::Always)
            .unwrap();
        e.rename(BLOCK, 0, b"rename-src", b"rename-dst", false)
            .unwrap();
        let past = SetOptions {
            expiry: SetExpiry::At(NOW - 1),
            ..SetOptions::default()
        };
        e.set(BLOCK, 0, b"past-set", Bytes::from_static(b"new"), past)
            .unwrap();
        e.expire_at(BLOCK, 0, b"past-expire", NOW - 5, ExpireCondition::Always)
            .unwrap();
        set(&e, 3, "flushed", "stale");
        churn(&e);
        e.flushdb(BLOCK, 3).unwrap();

        clock.set_manual_ms(NOW + 2000);
        assert!(e.run_active_expiry_cycle().unwrap() >= 1);
        assert_eq!(get(&e, 0, "ttl-lazy"), None);
        churn(&e);
        for key in [
            "del",
            "ttl-lazy",
            "ttl-active",
            "rename-src",
            "past-set",
            "past-expire",
        ] {
            assert_eq!(get(&e, 0, key), None, "{key} came back after eviction");
        }
        assert_eq!(get(&e, 3, "flushed"), None);
        assert_eq!(get(&e, 0, "rename-dst").as_deref(), Some("stale"));
        assert_eq!(e.dbsize(0).unwrap(), 1);
        assert_eq!(e.dbsize(3).unwrap(), 0);
    }
    // Restart: only what the cold tier holds comes back, and none of it is stale.
    let e = Engine::open_with_clock(config(dir.path(), 4 * 1024), clock).unwrap();
    for key in [
        "del",
        "ttl-lazy",
        "ttl-active",
        "rename-src",
        "past-set",
        "past-expire",
    ] {
        assert_eq!(get(&e, 0, key), None, "{key} came back after restart");
    }
    assert_eq!(get(&e, 3, "flushed"), None);
    assert_eq!(e.dbsize(3).unwrap(), 0);
}

#[test]
fn i2_flushall_leaves_nothing_in_either_tier_or_the_filter() {
    let t = tiny_hot_engine();
    let e = &t.engine;
    for i in 0..50 {
        set(e, i % 3, &format!("k{i}"), "v");
    }
    churn(e);
    e.flushall(BLOCK).unwrap();
    assert_eq!(e.tier_report().filter_fingerprints, 0);
    for db in 0..16 {
        assert_eq!(e.dbsize(db).unwrap(), 0);
        assert!(scan_all(e, db).is_empty());
    }
}

/// Collections stored field by field keep their fields in the cold tier's members space; a
/// field must never be read, listed, counted or filtered as a key (I1), and no field may
/// outlive its database's flush (I2).
#[test]
fn i1_i2_member_records_are_never_keys_and_flushdb_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SharedClock::default());
    clock.set_manual_ms(NOW);
    let sizing = RocksSizing {
        block_cache_bytes: 8 << 20,
        memtable_bytes: 4 << 20,
        engine_filter: true,
        disk_budget_bytes: None,
    };
    let cold_path = dir.path().join("cold");
    let member = |db: u16, field: &[u8]| keys::member_key(&keys::encode_key(db, b"h"), 1, field);
    {
        let cold = RocksCold::open(&cold_path, &sizing, clock.clone()).unwrap();
        let mut ops: Vec<ColdOp> = [(0, b"f1"), (0, b"f2"), (1, b"f1")]
            .into_iter()
            .map(|(db, field)| ColdOp::Put {
                space: Space::Members,
                key: member(db, &field[..]),
                value: b"field value".to_vec(),
            })
            .collect();
        let string = Value::String(StoredValue::new(Bytes::from_static(b"v"), 0));
        ops.push(ColdOp::Put {
            space: Space::Data,
            key: keys::encode_key(0, b"s"),
            value: encode_cold_value(&string, 0),
        });
        cold.write(ops).unwrap();
    }
    let cold = RocksCold::open(&cold_path, &sizing, clock.clone()).unwrap();
    let e = Engine::with_cold_store(config(dir.path(), 4 * 1024), Box::new(cold), clock).unwrap();
    assert_eq!(
        e.dbsize(0).unwrap(),
        1,
        "the rebuilt count has the string only"
    );
    assert_eq!(e.dbsize(1).unwrap(), 0);
    assert_eq!(scan_all(&e, 0), vec!["s".to_string()]);
    assert!(scan_all(&e, 1).is_empty());
    assert_eq!(
        e.keys(BLOCK, 0, b"*").unwrap(),
        vec![Bytes::from_static(b"s")]
    );
    assert_eq!(e.check_filter_covers_cold().unwrap(), (1, 0));
    assert_eq!(e.tier_report().filter_fingerprints, 1);
    for db in [0, 1] {
        let field_key = keys::user_key(&member(db, b"f1")).to_vec();
        assert!(!e.exists(BLOCK, db, &field_key).unwrap());
    }
    e.compact_cold_tier().unwrap();
    e.flushdb(BLOCK, 0).unwrap();
    drop(e);

    let cold = RocksCold::open(&cold_path, &sizing, Arc::new(SharedClock::default())).unwrap();
    let members = cold.range(Space::Members, b"", &[0xFF], 100).unwrap();
    let left: Vec<Vec<u8>> = members.into_iter().map(|(key, _)| key).collect();
    assert_eq!(
        left,
        vec![member(1, b"f1")],
        "FLUSHDB 0 took db 0's fields only"
    );
}

#[test]
fn i3_entries_leave_the_hot_tier_only_once_the_cold_tier_has_them() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SharedClock::default());
    let sizing = RocksSizing {
        block_cache_bytes: 8 << 20,
        memtable_bytes: 4 << 20,
        engine_filter: true,
        disk_budget_bytes: None,
    };
    let (cold, switch) =
        FaultyCold::new(RocksCold::open(dir.path(), &sizing, clock.clone()).unwrap());
    switch.fail_writes(Some(Fault::Io));
    let e = Engine::with_cold_store(config(dir.path(), 4 * 1024), Box::new(cold), clock).unwrap();

    // Demotion fails: nothing acknowledged is lost, and rather than run over its limit
    // (I6) the hot tier refuses the writes it cannot place (-OOM, issue 13).
    let mut acknowledged = Vec::new();
    for i in 0..100 {
        let key = format!("k{i}");
        match e.set(
            BLOCK,
            0,
            key.as_bytes(),
            Bytes::from_static(b"value"),
            SetOptions::default(),
        ) {
            Ok(_) => acknowledged.push(key),
            Err(EngineError::OutOfMemory(_)) => {}
            Err(other) => panic!("SET {key}: {other}"),
        }
    }
    let report = e.tier_report();
    assert_eq!(report.stats.demotions, 0);
    assert!(
        acknowledged.len() < 100,
        "every write accepted: the hot tier grew"
    );
    assert_eq!(report.hot_keys, acknowledged.len());
    assert_eq!(e.dbsize(0).unwrap(), acknowledged.len() as u64);
    // Within the limit plus one entry per shard.
    assert!(report.hot_used_bytes <= report.hot_limit_bytes + 4 * 300);
    for key in &acknowledged {
        assert_eq!(get(&e, 0, key).as_deref(), Some("value"));
    }

    // Once the cold tier accepts writes the demoter catches up and every value survives.
    switch.fail_writes(None);
    e.demote_over_budget_shards().unwrap();
    let report = e.tier_report();
    assert!(report.hot_used_bytes <= report.hot_limit_bytes);
    assert!(report.stats.demotions >= 1);
    for key in &acknowledged {
        assert_eq!(get(&e, 0, key).as_deref(), Some("value"));
    }
    for i in 100..200 {
        set(&e, 0, &format!("k{i}"), "value");
    }
}

#[test]
fn i4_filter_covers_every_cold_key_and_short_circuits_misses() {
    let t = tiny_hot_engine();
    let e = &t.engine;
    for i in 0..5000 {
        set(e, (i % 4) as u16, &format!("user:{i}"), "v");
    }
    // Remove and rewrite some so fingerprints are deleted and re-inserted.
    for i in (0..5000).step_by(3) {
        e.delete(BLOCK, (i % 4) as u16, format!("user:{i}").as_bytes())
            .unwrap();
    }
    for i in (0..5000).step_by(6) {
        set(e, (i % 4) as u16, &format!("user:{i}"), "again");
    }
    churn(e);
    let (cold_keys, missing) = e.check_filter_covers_cold().unwrap();
    assert!(cold_keys > 3000, "most keys are cold: {cold_keys}");
    assert_eq!(missing, 0, "the filter would call a cold key absent");

    let before = e.tier_report().stats;
    for i in 0..20_000 {
        assert_eq!(get(e, 0, &format!("absent:{i}")), None);
    }
    let after = e.tier_report().stats;
    let false_positives = after.filter_false_positives - before.filter_false_positives;
    let short_circuits = after.filter_short_circuits - before.filter_short_circuits;
    assert!(
        false_positives * 100 <= 20_000,
        "false-positive rate over 1%: {false_positives} of 20000"
    );
    assert_eq!(short_circuits + false_positives, 20_000);
}

#[test]
fn expiry_is_lazy_active_and_exact_in_dbsize_for_both_tiers() {
    let t = tiny_hot_engine();
    let e = &t.engine;
    for i in 0..60 {
        set(e, 2, &format!("t{i}"), "v");
        e.expire_at(
            BLOCK,
            2,
            format!("t{i}").as_bytes(),
            NOW + 1000 + i,
            ExpireCondition::Always,
        )
        .unwrap();
    }
    set(e, 2, "forever", "v");
    churn(e);
    assert_eq!(e.dbsize(2).unwrap(), 61);
    assert_eq!(
        e.ttl(BLOCK, 2, b"t5").unwrap(),
        KeyTtl::ExpiresAt(NOW + 1005)
    );
    t.clock.set_manual_ms(NOW + 5000);
    // Active expiry reaches hot and cold keys alike, without anyone reading them.
    for _ in 0..10 {
        e.run_active_expiry_cycle().unwrap();
    }
    assert_eq!(e.dbsize(2).unwrap(), 1);
    assert_eq!(scan_all(e, 2), vec!["forever".to_string()]);
    assert_eq!(e.tier_report().stats.expired_keys, 60);
}

#[test]
fn compaction_filter_reclaims_expired_cold_values_and_counts_stay_exact() {
    let t = tiny_hot_engine();
    let e = &t.engine;
    for i in 0..40 {
        let options = SetOptions {
            expiry: SetExpiry::At(NOW + 100),
            ..SetOptions::default()
        };
        e.set(
            BLOCK,
            4,
            format!("c{i}").as_bytes(),
            Bytes::from_static(b"payload"),
            options,
        )
        .unwrap();
    }
    churn(e);
    t.clock.set_manual_ms(NOW + 1000);
    e.compact_cold_tier().unwrap();
    // Half are read (lazy path), the rest are left to the expirer.
    for i in 0..20 {
        assert_eq!(get(e, 4, &format!("c{i}")), None);
    }
    assert_eq!(e.dbsize(4).unwrap(), 20);
    for _ in 0..5 {
        e.run_active_expiry_cycle().unwrap();
    }
    assert_eq!(e.dbsize(4).unwrap(), 0);
}

#[test]
fn memory_backend_passes_the_same_visibility_checks() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        cold_backend: ColdBackend::Memory,
        ..config(dir.path(), 4 * 1024)
    };
    let e = Engine::open(config).unwrap();
    for i in 0..100 {
        set(&e, 0, &format!("m{i}"), &format!("{i}"));
    }
    churn(&e);
    assert!(e.tier_report().stats.demotions > 50);
    for i in 0..100 {
        assert_eq!(get(&e, 0, &format!("m{i}")), Some(format!("{i}")));
    }
    assert_eq!(scan_all(&e, 0).len(), 100);
}

fn cold_batch_keys(keys: &[&str]) -> Vec<(u16, Bytes)> {
    keys.iter()
        .map(|key| (0, Bytes::copy_from_slice(key.as_bytes())))
        .collect()
}

fn answers_as_strings(
    answers: Vec<hypercache::engine::EngineResult<Option<Bytes>>>,
) -> Vec<Option<String>> {
    answers
        .into_iter()
        .map(|answer| {
            answer
                .unwrap()
                .map(|value| String::from_utf8(value.to_vec()).unwrap())
        })
        .collect()
}

/// A batch of cold GETs (many clients' reads in one multi_get) reads without the shard
/// locks. A write landing between its read and its answer must win: a key rewritten and
/// demoted is not answered with its old value (I1), a deleted key does not come back (I2).
#[test]
fn i1_i2_batched_cold_reads_never_answer_with_what_a_write_replaced() {
    let t = tiny_hot_engine();
    let e = &t.engine;
    let keys = ["stable", "rewritten", "deleted", "never-set"];
    for key in &keys[..3] {
        set(e, 0, key, "v1");
    }
    churn(e);

    // Nothing written meanwhile: the batch's own read answers, and promotes.
    let one = Some("v1".to_string());
    let mut answers = Vec::new();
    let batch = e.read_cold_batch(cold_batch_keys(&["stable"]));
    e.answer_cold_batch(batch, |_, answer| answers.push(answer));
    assert_eq!(answers_as_strings(answers), [Some("v1".to_string())]);
    let stats = e.stats().snapshot();
    assert_eq!((stats.cold_batch_rereads, stats.promotions), (0, 1));

    // Writes between the read and the answer: those keys are read again under their lock.
    churn(e);
    let batch = e.read_cold_batch(cold_batch_keys(&keys));
    set(e, 0, "rewritten", "v2");
    assert!(e.delete(BLOCK, 0, b"deleted").unwrap());
    churn(e);
    let mut answers = Vec::new();
    e.answer_cold_batch(batch, |index, answer| {
        assert_eq!(index, answers.len(), "answers come in key order");
        answers.push(answer);
    });
    assert_eq!(
        answers_as_strings(answers),
        [one, Some("v2".to_string()), None, None]
    );
    assert!(e.stats().snapshot().cold_batch_rereads >= 2);
    assert_eq!(get(e, 0, "rewritten").as_deref(), Some("v2"));
    assert_eq!(get(e, 0, "deleted"), None);
    assert_eq!(e.dbsize(0).unwrap(), 2);
}

/// A GET the async worker hands off is one GET in INFO tiers: the attempt refused with
/// `WouldBlock` counts nothing, and the batch that answers it counts one hot miss.
#[test]
fn a_handed_off_cold_get_counts_one_hot_miss() {
    let t = tiny_hot_engine();
    let e = &t.engine;
    set(e, 0, "cold", "v1");
    churn(e);
    let before = e.stats().snapshot();
    assert!(matches!(
        e.get(Access::HotOnly, 0, b"cold"),
        Err(EngineError::WouldBlock)
    ));
    assert_eq!(
        e.stats().snapshot(),
        before,
        "a refused attempt counts nothing"
    );
    let batch = e.read_cold_batch(cold_batch_keys(&["cold"]));
    e.answer_cold_batch(batch, |_, _| {});
    let after = e.stats().snapshot();
    assert_eq!(
        (
            after.hot_misses - before.hot_misses,
            after.cold_hits - before.cold_hits
        ),
        (1, 1)
    );
}
