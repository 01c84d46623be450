//! Hashes and sets at the engine level (issue 17): element changes applied in place and
//! logged one by one must replay exactly after a crash (I5), with no field or member of a
//! deleted, expired or replaced collection coming back (I2), while a tiny hot tier keeps
//! demoting collections to the cold tier between changes, so replay runs over a cold tier
//! that is ahead of the records it applies. Hash fields get deadlines of their own, some
//! already past, and keys get deadlines too. A model (maps with expiries) says what every
//! key must hold.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hypercache::config::{ByteSize, EngineConfig, SyncPolicy};
use hypercache::engine::cold::SharedClock;
use hypercache::engine::types::{ElementOp, Value, ValueType};
use hypercache::engine::{
    Access, CheckpointReason, Durability, Engine, EngineError, ExpireCondition,
};
use rand::{Rng, SeedableRng};

const START_MS: u64 = 1_800_000_000_000;
const BLOCK: Access = Access::MayBlock;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Held {
    /// field -> (value, deadline; 0 = never).
    Hash(BTreeMap<Vec<u8>, (Vec<u8>, u64)>),
    Set(BTreeSet<Vec<u8>>),
}

/// key -> (value, expire_at; 0 = never).
type Model = BTreeMap<String, (Held, u64)>;

fn open(dir: &Path, now_ms: u64) -> (Engine, Arc<SharedClock>) {
    let config = EngineConfig {
        dir: dir.to_path_buf(),
        maxmemory: ByteSize(64 << 20),
        databases: 1,
        hot_shards: 4,
        // A few KB: most collections are demoted between two changes to them.
        hot_max_bytes: Some(ByteSize(8 << 10)),
        filter_initial_capacity: 1024,
        ..EngineConfig::default()
    };
    let durability = Durability {
        wal: true,
        sync: SyncPolicy::Always,
        wal_segment_bytes: 64 << 10,
        checkpoint_interval: Duration::ZERO,
        checkpoint_wal_bytes: 0,
        retain_checkpoints: 0,
        clean_start: false,
    };
    let clock = Arc::new(SharedClock::default());
    clock.set_manual_ms(now_ms);
    let engine = Engine::open_durable_with_clock(config, durability, Arc::clone(&clock)).unwrap();
    (engine, clock)
}

fn held_of(value: &Value) -> Held {
    match value {
        Value::Hash(hash) => Held::Hash(
            hash.iter()
                .map(|(field, value)| {
                    let at = hash.deadline(field).unwrap_or(0);
                    (field.to_vec(), (value.to_vec(), at))
                })
                .collect(),
        ),
        Value::Set(set) => Held::Set(set.iter().map(|member| member.to_vec()).collect()),
        Value::String(_) => panic!("no strings in this test"),
    }
}

fn alive(at: u64, now: u64) -> bool {
    at == 0 || at > now
}

/// What a reader sees: nothing for an expired key, only the live fields of a hash, and
/// nothing for a hash whose fields have all expired.
fn live(model: &Model, key: &str, now: u64) -> Option<Held> {
    let (held, at) = model.get(key)?;
    if !alive(*at, now) {
        return None;
    }
    match held {
        Held::Set(set) => Some(Held::Set(set.clone())),
        Held::Hash(hash) => {
            let fields: BTreeMap<_, _> = hash
                .iter()
                .filter(|(_, (_, at))| alive(*at, now))
                .map(|(field, entry)| (field.clone(), entry.clone()))
                .collect();
            (!fields.is_empty()).then_some(Held::Hash(fields))
        }
    }
}

/// What the engine does before a change: drops an expired key, and a hash's expired
/// fields (the key too when none is left).
fn settle(model: &mut Model, key: &str, now: u64) {
    match live(model, key, now) {
        None => {
            model.remove(key);
        }
        Some(held) => model.get_mut(key).unwrap().0 = held,
    }
}

fn assert_matches(engine: &Engine, model: &Model, now: u64, context: &str) {
    for i in 0..KEYS {
        let key = format!("c:{i}");
        let got = engine
            .read_value(BLOCK, 0, key.as_bytes(), |value| value.map(held_of))
            .unwrap();
        assert_eq!(got, live(model, &key, now), "{key} {context}");
    }
}

const KEYS: usize = 40;

/// One random change, to the engine and the model alike.
fn random_op(engine: &Engine, model: &mut Model, rng: &mut rand::rngs::StdRng, now: u64) {
    let key = format!("c:{}", rng.random_range(0..KEYS));
    settle(model, &key, now);
    let current = live(model, &key, now);
    let element = Bytes::from(format!("e{}", rng.random_range(0..12)));
    match rng.random_range(0..100) {
        0..=59 => {
            // Add a field or member; an absent key becomes a hash or a set at random.
            let is_hash = match &current {
                Some(Held::Hash(_)) => true,
                Some(Held::Set(_)) => false,
                None => rng.random_bool(0.5),
            };
            let value = Bytes::from(format!("v{}", rng.random_range(0..1000)).repeat(20));
            let (value_type, op) = match is_hash {
                true => (
                    ValueType::Hash,
                    ElementOp::Put {
                        element: element.clone(),
                        value: value.clone(),
                    },
                ),
                false => (
                    ValueType::Set,
                    ElementOp::Put {
                        element: element.clone(),
                        value: Bytes::new(),
                    },
                ),
            };
            update(engine, &key, value_type, op);
            let entry = model.entry(key.clone()).or_insert((
                match is_hash {
                    true => Held::Hash(BTreeMap::new()),
                    false => Held::Set(BTreeSet::new()),
                },
                0,
            ));
            if current.is_none() {
                *entry = (
                    match is_hash {
                        true => Held::Hash(BTreeMap::new()),
                        false => Held::Set(BTreeSet::new()),
                    },
                    0,
                );
            }
            match &mut entry.0 {
                Held::Hash(hash) => {
                    // Setting a field again drops its deadline.
                    hash.insert(element.to_vec(), (value.to_vec(), 0));
                }
                Held::Set(set) => {
                    set.insert(element.to_vec());
                }
            }
        }
        60..=69 => {
            // A field's deadline: past (it is gone at once), soon, or none.
            let Some(Held::Hash(hash)) = current else {
                return;
            };
            let at = match rng.random_range(0..4) {
                0 => now - rng.random_range(0..50),
                1 => 0,
                _ => now + rng.random_range(1..400),
            };
            update(
                engine,
                &key,
                ValueType::Hash,
                ElementOp::Expire {
                    element: element.clone(),
                    at,
                },
            );
            if hash.contains_key(&element[..]) {
                let Held::Hash(held) = &mut model.get_mut(&key).unwrap().0 else {
                    unreachable!()
                };
                held.get_mut(&element[..]).unwrap().1 = at;
                settle(model, &key, now);
            }
        }
        70..=79 => {
            // Remove one; the last one removed deletes the key.
            let Some(held) = current else { return };
            let value_type = match held {
                Held::Hash(_) => ValueType::Hash,
                Held::Set(_) => ValueType::Set,
            };
            update(
                engine,
                &key,
                value_type,
                ElementOp::Del {
                    element: element.clone(),
                },
            );
            let entry = model.get_mut(&key).unwrap();
            let empty = match &mut entry.0 {
                Held::Hash(hash) => {
                    hash.remove(&element[..]);
                    hash.is_empty()
                }
                Held::Set(set) => {
                    set.remove(&element[..]);
                    set.is_empty()
                }
            };
            if empty {
                model.remove(&key);
            }
        }
        80..=89 => {
            engine.delete(BLOCK, 0, key.as_bytes()).unwrap();
            model.remove(&key);
        }
        _ => {
            // A deadline soon, so keys expire and come back as new collections.
            if current.is_none() {
                return;
            }
            let at = now + rng.random_range(1..400);
            assert!(engine
                .expire_at(BLOCK, 0, key.as_bytes(), at, ExpireCondition::Always)
                .unwrap());
            model.get_mut(&key).unwrap().1 = at;
        }
    }
}

fn update(engine: &Engine, key: &str, value_type: ValueType, op: ElementOp) {
    engine
        .update_elements(BLOCK, 0, key.as_bytes(), value_type, |_| {
            Ok::<_, EngineError>((vec![op], ()))
        })
        .unwrap();
}

#[test]
fn i5_element_changes_replay_exactly_over_a_cold_tier_ahead_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let mut model = Model::new();
    let mut now = START_MS;
    for round in 0..6 {
        let (engine, clock) = open(dir.path(), now);
        assert_matches(&engine, &model, now, &format!("after crash {round}"));
        for step in 0..1500 {
            random_op(&engine, &mut model, &mut rng, now);
            if step % 10 == 0 {
                now += rng.random_range(1..60);
                clock.set_manual_ms(now);
            }
            if round % 2 == 1 && step == 700 {
                // Replay must start after this checkpoint and still see what follows.
                engine.checkpoint(CheckpointReason::Requested).unwrap();
            }
        }
        // Demote what is left hot, so the cold tier holds the newest state of most keys
        // when the records are replayed over it.
        engine.flush_dirty_to_cold().unwrap();
        assert_matches(&engine, &model, now, &format!("before crash {round}"));
        // No shutdown checkpoint: dropping the engine is kill -9 after the WAL's writes.
        drop(engine);
    }
    let (engine, _clock) = open(dir.path(), now);
    assert_matches(&engine, &model, now, "final");
    assert!(engine.persistence_report().startup.replayed_records > 0);
}
