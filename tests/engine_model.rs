//! Property test: random operation sequences against the engine (RocksDB cold tier, a hot
//! tier so small that most entries live cold) and against a plain model, a HashMap with
//! expiry holding strings and sets (issue 17: the same key may change type, and every
//! string operation on a set answers WRONGTYPE). Every reply must agree.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use hypercache::config::{ByteSize, EngineConfig};
use hypercache::engine::cold::SharedClock;
use hypercache::engine::types::{ElementOp, Value, ValueType};
use hypercache::engine::{
    Access, Engine, EngineError, ExpireCondition, KeyTtl, RenameOutcome, SetCondition, SetExpiry,
    SetOptions,
};
use proptest::prelude::*;

const START_MS: u64 = 1_800_000_000_000;
const DATABASES: u16 = 3;
const KEYS: usize = 12;
const OPS_PER_CASE: usize = 700;
/// 16 cases x 700 operations: over 10,000 operations per run.
const CASES: u32 = 16;

#[derive(Debug, Clone)]
enum Op {
    Set {
        db: u16,
        key: usize,
        value: u8,
        condition: u8,
        expiry: Option<i64>,
        keep_ttl: bool,
        get: bool,
    },
    Get {
        db: u16,
        key: usize,
    },
    Delete {
        db: u16,
        key: usize,
    },
    Exists {
        db: u16,
        key: usize,
    },
    Expire {
        db: u16,
        key: usize,
        relative_ms: i64,
        condition: u8,
    },
    Persist {
        db: u16,
        key: usize,
    },
    Ttl {
        db: u16,
        key: usize,
    },
    IncrBy {
        db: u16,
        key: usize,
        by: i64,
    },
    Append {
        db: u16,
        key: usize,
        value: u8,
    },
    Rename {
        db: u16,
        from: usize,
        to: usize,
        nx: bool,
    },
    Advance {
        ms: u64,
    },
    DbSize {
        db: u16,
    },
    Scan {
        db: u16,
        count: usize,
    },
    FlushDb {
        db: u16,
    },
    SAdd {
        db: u16,
        key: usize,
        member: u8,
    },
    SRem {
        db: u16,
        key: usize,
        member: u8,
    },
    SMembers {
        db: u16,
        key: usize,
    },
    ActiveExpire,
    Compact,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let db = 0..DATABASES;
    let key = 0..KEYS;
    prop_oneof![
        10 => (db.clone(), key.clone(), any::<u8>(), 0u8..3, prop::option::of(-50i64..4000), any::<bool>(), any::<bool>())
            .prop_map(|(db, key, value, condition, expiry, keep_ttl, get)| Op::Set { db, key, value, condition, expiry, keep_ttl, get }),
        10 => (db.clone(), key.clone()).prop_map(|(db, key)| Op::Get { db, key }),
        3 => (db.clone(), key.clone()).prop_map(|(db, key)| Op::Delete { db, key }),
        2 => (db.clone(), key.clone()).prop_map(|(db, key)| Op::Exists { db, key }),
        4 => (db.clone(), key.clone(), -100i64..4000, 0u8..6)
            .prop_map(|(db, key, relative_ms, condition)| Op::Expire { db, key, relative_ms, condition }),
        1 => (db.clone(), key.clone()).prop_map(|(db, key)| Op::Persist { db, key }),
        2 => (db.clone(), key.clone()).prop_map(|(db, key)| Op::Ttl { db, key }),
        3 => (db.clone(), key.clone(), -5i64..5).prop_map(|(db, key, by)| Op::IncrBy { db, key, by }),
        2 => (db.clone(), key.clone(), any::<u8>()).prop_map(|(db, key, value)| Op::Append { db, key, value }),
        2 => (db.clone(), key.clone(), key.clone(), any::<bool>()).prop_map(|(db, from, to, nx)| Op::Rename { db, from, to, nx }),
        3 => (0u64..1500).prop_map(|ms| Op::Advance { ms }),
        2 => db.clone().prop_map(|db| Op::DbSize { db }),
        1 => (db.clone(), 1usize..8).prop_map(|(db, count)| Op::Scan { db, count }),
        // Few members, so removals empty sets and delete their keys.
        4 => (db.clone(), key.clone(), 0u8..4).prop_map(|(db, key, member)| Op::SAdd { db, key, member }),
        2 => (db.clone(), key.clone(), 0u8..4).prop_map(|(db, key, member)| Op::SRem { db, key, member }),
        2 => (db.clone(), key.clone()).prop_map(|(db, key)| Op::SMembers { db, key }),
        1 => Just(Op::ActiveExpire),
        1 => Just(Op::Compact),
        // Rare: wipes a whole database.
        1 => (0..DATABASES * 8).prop_map(|db| if db < DATABASES { Op::FlushDb { db } } else { Op::DbSize { db: db % DATABASES } }),
    ]
}

/// What a key holds in the model.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Held {
    Str(Vec<u8>),
    Set(BTreeSet<u8>),
}

/// The reference: what Redis would hold.
#[derive(Default)]
struct Model {
    now: u64,
    keys: HashMap<(u16, usize), (Held, u64)>,
}

impl Model {
    fn live(&mut self, db: u16, key: usize) -> Option<&mut (Held, u64)> {
        let now = self.now;
        if let Some((_, at)) = self.keys.get(&(db, key)) {
            if *at != 0 && *at <= now {
                self.keys.remove(&(db, key));
            }
        }
        self.keys.get_mut(&(db, key))
    }

    fn live_keys(&mut self, db: u16) -> BTreeSet<usize> {
        let now = self.now;
        self.keys.retain(|_, (_, at)| *at == 0 || *at > now);
        self.keys
            .keys()
            .filter(|(d, _)| *d == db)
            .map(|(_, k)| *k)
            .collect()
    }
}

fn key_name(key: usize) -> Vec<u8> {
    format!("key:{key}").into_bytes()
}

#[derive(Debug, PartialEq)]
enum Reply {
    Value(Option<Vec<u8>>),
    Members(Option<BTreeSet<u8>>),
    Bool(bool),
    Int(i64),
    Ttl(KeyTtl),
    Error(String),
    Keys(BTreeSet<usize>),
}

#[derive(Debug)]
enum IncrError {
    NotInteger,
    WrongType,
    Engine(String),
}

impl From<EngineError> for IncrError {
    fn from(err: EngineError) -> Self {
        match err {
            EngineError::WrongType => IncrError::WrongType,
            err => IncrError::Engine(err.to_string()),
        }
    }
}

const WRONGTYPE: &str = "wrongtype";

/// An engine answer, with WRONGTYPE as the model's error reply and any other error a bug.
fn answer<T>(result: Result<T, EngineError>, reply: impl FnOnce(T) -> Reply) -> Reply {
    match result {
        Ok(value) => reply(value),
        Err(EngineError::WrongType) => Reply::Error(WRONGTYPE.into()),
        Err(err) => panic!("engine error: {err}"),
    }
}

fn set_change(engine: &Engine, db: u16, key: usize, op: ElementOp) -> Reply {
    let result =
        engine.update_elements(Access::MayBlock, db, &key_name(key), ValueType::Set, |_| {
            Ok::<_, EngineError>((vec![op], ()))
        });
    answer(result, |((), counts)| {
        Reply::Int((counts.added + counts.removed) as i64)
    })
}

fn run_engine(engine: &Engine, clock: &SharedClock, op: &Op, now: u64) -> Reply {
    let a = Access::MayBlock;
    match op {
        Op::Set {
            db,
            key,
            value,
            condition,
            expiry,
            keep_ttl,
            get,
        } => {
            let options = SetOptions {
                condition: [
                    SetCondition::Always,
                    SetCondition::IfAbsent,
                    SetCondition::IfPresent,
                ][*condition as usize],
                expiry: match (expiry, keep_ttl) {
                    (Some(rel), _) => SetExpiry::At((now as i64 + rel) as u64),
                    (None, true) => SetExpiry::Keep,
                    (None, false) => SetExpiry::Clear,
                },
                return_previous: *get,
            };
            let outcome = engine.set(a, *db, &key_name(*key), Bytes::from(vec![*value]), options);
            answer(outcome, |outcome| match get {
                true => Reply::Value(outcome.previous.map(|v| v.to_vec())),
                false => Reply::Bool(outcome.written),
            })
        }
        Op::Get { db, key } => answer(engine.get(a, *db, &key_name(*key)), |value| {
            Reply::Value(value.map(|v| v.to_vec()))
        }),
        Op::Delete { db, key } => Reply::Bool(engine.delete(a, *db, &key_name(*key)).unwrap()),
        Op::Exists { db, key } => Reply::Bool(engine.exists(a, *db, &key_name(*key)).unwrap()),
        Op::Expire {
            db,
            key,
            relative_ms,
            condition,
        } => {
            let condition = [
                ExpireCondition::Always,
                ExpireCondition::Nx,
                ExpireCondition::Xx,
                ExpireCondition::Gt,
                ExpireCondition::Lt,
                ExpireCondition::XxLt,
            ][*condition as usize];
            let at = (now as i64 + relative_ms) as u64;
            Reply::Bool(
                engine
                    .expire_at(a, *db, &key_name(*key), at, condition)
                    .unwrap(),
            )
        }
        Op::Persist { db, key } => Reply::Bool(engine.persist(a, *db, &key_name(*key)).unwrap()),
        Op::Ttl { db, key } => Reply::Ttl(engine.ttl(a, *db, &key_name(*key)).unwrap()),
        Op::IncrBy { db, key, by } => {
            let result = engine.update(a, *db, &key_name(*key), |current| {
                let current = match current {
                    None => 0,
                    Some(bytes) => std::str::from_utf8(&bytes)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                        .ok_or(IncrError::NotInteger)?,
                };
                let next = current.checked_add(*by).ok_or(IncrError::NotInteger)?;
                Ok::<_, IncrError>((Some(Bytes::from(next.to_string())), next))
            });
            match result {
                Ok(n) => Reply::Int(n),
                Err(IncrError::NotInteger) => Reply::Error("not an integer".into()),
                Err(IncrError::WrongType) => Reply::Error(WRONGTYPE.into()),
                Err(IncrError::Engine(err)) => panic!("engine error: {err}"),
            }
        }
        Op::Append { db, key, value } => {
            let len = engine.update(a, *db, &key_name(*key), |current| {
                let mut bytes = current.map(|b| b.to_vec()).unwrap_or_default();
                bytes.push(*value);
                let len = bytes.len() as i64;
                Ok::<_, EngineError>((Some(Bytes::from(bytes)), len))
            });
            answer(len, Reply::Int)
        }
        Op::Rename { db, from, to, nx } => {
            match engine.rename(a, *db, &key_name(*from), &key_name(*to), *nx) {
                Ok(RenameOutcome::Renamed) => Reply::Bool(true),
                Ok(RenameOutcome::TargetExists) => Reply::Bool(false),
                Err(EngineError::NoSuchKey) => Reply::Error("no such key".into()),
                Err(err) => panic!("engine error: {err}"),
            }
        }
        Op::Advance { .. } => {
            clock.set_manual_ms(now);
            Reply::Bool(true)
        }
        Op::DbSize { db } => Reply::Int(engine.dbsize(*db).unwrap() as i64),
        Op::Scan { db, count } => {
            let mut cursor = 0;
            let mut keys = BTreeSet::new();
            loop {
                let page = engine.scan(a, *db, cursor, None, *count).unwrap();
                for key in page.keys {
                    let name = std::str::from_utf8(&key).unwrap();
                    let index: usize = name.trim_start_matches("key:").parse().unwrap();
                    assert!(
                        keys.insert(index),
                        "SCAN returned {name} twice with a stable keyspace"
                    );
                }
                if page.cursor == 0 {
                    return Reply::Keys(keys);
                }
                cursor = page.cursor;
            }
        }
        Op::FlushDb { db } => {
            engine.flushdb(a, *db).unwrap();
            Reply::Bool(true)
        }
        Op::SAdd { db, key, member } => set_change(
            engine,
            *db,
            *key,
            ElementOp::Put {
                element: Bytes::from(vec![*member]),
                value: Bytes::new(),
            },
        ),
        Op::SRem { db, key, member } => set_change(
            engine,
            *db,
            *key,
            ElementOp::Del {
                element: Bytes::from(vec![*member]),
            },
        ),
        Op::SMembers { db, key } => {
            let members = engine
                .read_value(a, *db, &key_name(*key), |value| {
                    value
                        .map(|value| match value {
                            Value::Set(set) => Ok(set.iter().map(|member| member[0]).collect()),
                            _ => Err(EngineError::WrongType),
                        })
                        .transpose()
                })
                .unwrap();
            answer(members, Reply::Members)
        }
        Op::ActiveExpire => {
            engine.run_active_expiry_cycle().unwrap();
            Reply::Bool(true)
        }
        Op::Compact => {
            engine.compact_cold_tier().unwrap();
            Reply::Bool(true)
        }
    }
}

fn run_model(model: &mut Model, op: &Op) -> Reply {
    let now = model.now;
    match op {
        Op::Set {
            db,
            key,
            value,
            condition,
            expiry,
            keep_ttl,
            get,
        } => {
            let current = model.live(*db, *key).cloned();
            let previous = match &current {
                None => None,
                Some((Held::Str(v), _)) => Some(v.clone()),
                // SET ... GET checks the old value's type before it writes anything.
                Some((Held::Set(_), _)) if *get => return Reply::Error(WRONGTYPE.into()),
                Some((Held::Set(_), _)) => None,
            };
            let allowed = match condition {
                0 => true,
                1 => current.is_none(),
                _ => current.is_some(),
            };
            if allowed {
                let at = match (expiry, keep_ttl) {
                    (Some(rel), _) => (now as i64 + rel) as u64,
                    (None, true) => current.as_ref().map_or(0, |(_, at)| *at),
                    (None, false) => 0,
                };
                if at != 0 && at <= now {
                    model.keys.remove(&(*db, *key));
                } else {
                    model
                        .keys
                        .insert((*db, *key), (Held::Str(vec![*value]), at));
                }
            }
            if *get {
                Reply::Value(previous)
            } else {
                Reply::Bool(allowed)
            }
        }
        Op::Get { db, key } => match model.live(*db, *key) {
            None => Reply::Value(None),
            Some((Held::Str(v), _)) => Reply::Value(Some(v.clone())),
            Some((Held::Set(_), _)) => Reply::Error(WRONGTYPE.into()),
        },
        Op::Delete { db, key } => {
            let existed = model.live(*db, *key).is_some();
            model.keys.remove(&(*db, *key));
            Reply::Bool(existed)
        }
        Op::Exists { db, key } => Reply::Bool(model.live(*db, *key).is_some()),
        Op::Expire {
            db,
            key,
            relative_ms,
            condition,
        } => {
            let at = (now as i64 + relative_ms) as u64;
            let Some((_, current)) = model.live(*db, *key) else {
                return Reply::Bool(false);
            };
            let current = *current;
            let allowed = match condition {
                0 => true,
                1 => current == 0,
                2 => current != 0,
                3 => current != 0 && at > current,
                4 => current == 0 || at < current,
                _ => current != 0 && at < current,
            };
            if !allowed {
                return Reply::Bool(false);
            }
            if at <= now {
                model.keys.remove(&(*db, *key));
            } else if let Some(entry) = model.live(*db, *key) {
                entry.1 = at;
            }
            Reply::Bool(true)
        }
        Op::Persist { db, key } => match model.live(*db, *key) {
            Some(entry) if entry.1 != 0 => {
                entry.1 = 0;
                Reply::Bool(true)
            }
            _ => Reply::Bool(false),
        },
        Op::Ttl { db, key } => Reply::Ttl(match model.live(*db, *key) {
            None => KeyTtl::Missing,
            Some((_, 0)) => KeyTtl::Persistent,
            Some((_, at)) => KeyTtl::ExpiresAt(*at),
        }),
        Op::IncrBy { db, key, by } => {
            let entry = model.live(*db, *key).cloned();
            let current = match &entry {
                None => Some(0),
                Some((Held::Set(_), _)) => return Reply::Error(WRONGTYPE.into()),
                Some((Held::Str(v), _)) => std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok()),
            };
            match current.and_then(|c| c.checked_add(*by)) {
                Some(next) => {
                    let at = entry.map_or(0, |(_, at)| at);
                    model
                        .keys
                        .insert((*db, *key), (Held::Str(next.to_string().into_bytes()), at));
                    Reply::Int(next)
                }
                None => Reply::Error("not an integer".into()),
            }
        }
        Op::Append { db, key, value } => {
            let (mut bytes, at) = match model.live(*db, *key).cloned() {
                None => (Vec::new(), 0),
                Some((Held::Str(bytes), at)) => (bytes, at),
                Some((Held::Set(_), _)) => return Reply::Error(WRONGTYPE.into()),
            };
            bytes.push(*value);
            let len = bytes.len() as i64;
            model.keys.insert((*db, *key), (Held::Str(bytes), at));
            Reply::Int(len)
        }
        Op::Rename { db, from, to, nx } => {
            let Some(moved) = model.live(*db, *from).cloned() else {
                return Reply::Error("no such key".into());
            };
            if from == to {
                return Reply::Bool(!nx);
            }
            if *nx && model.live(*db, *to).is_some() {
                return Reply::Bool(false);
            }
            model.keys.remove(&(*db, *from));
            model.keys.insert((*db, *to), moved);
            Reply::Bool(true)
        }
        Op::Advance { .. } => Reply::Bool(true),
        Op::DbSize { db } => Reply::Int(model.live_keys(*db).len() as i64),
        Op::Scan { db, .. } => Reply::Keys(model.live_keys(*db)),
        Op::FlushDb { db } => {
            model.keys.retain(|(d, _), _| d != db);
            Reply::Bool(true)
        }
        Op::SAdd { db, key, member } => match model.live(*db, *key) {
            Some((Held::Str(_), _)) => Reply::Error(WRONGTYPE.into()),
            Some((Held::Set(set), _)) => Reply::Int(i64::from(set.insert(*member))),
            None => {
                let members = BTreeSet::from([*member]);
                model.keys.insert((*db, *key), (Held::Set(members), 0));
                Reply::Int(1)
            }
        },
        Op::SRem { db, key, member } => {
            let (removed, emptied) = match model.live(*db, *key) {
                Some((Held::Str(_), _)) => return Reply::Error(WRONGTYPE.into()),
                Some((Held::Set(set), _)) => (set.remove(member), set.is_empty()),
                None => (false, false),
            };
            if emptied {
                // An empty set is no key, as in Redis.
                model.keys.remove(&(*db, *key));
            }
            Reply::Int(i64::from(removed))
        }
        Op::SMembers { db, key } => match model.live(*db, *key) {
            None => Reply::Members(None),
            Some((Held::Set(set), _)) => Reply::Members(Some(set.clone())),
            Some((Held::Str(_), _)) => Reply::Error(WRONGTYPE.into()),
        },
        Op::ActiveExpire | Op::Compact => Reply::Bool(true),
    }
}

/// DBSIZE in Redis counts keys whose time ran out until they are reclaimed; the model
/// reclaims eagerly, so the engine is given one active-expiry pass before DBSIZE is compared.
fn settle_expired(engine: &Engine) {
    for _ in 0..4 {
        engine.run_active_expiry_cycle().unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn engine_agrees_with_a_hashmap_model(ops in prop::collection::vec(op_strategy(), OPS_PER_CASE)) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(SharedClock::default());
        clock.set_manual_ms(START_MS);
        let config = EngineConfig {
            dir: dir.path().to_path_buf(),
            databases: DATABASES,
            maxmemory: ByteSize(32 << 20),
            hot_shards: 4,
            // About two entries per shard: most of the data lives in the cold tier.
            hot_max_bytes: Some(ByteSize(4 * 450)),
            filter_initial_capacity: 16,
            compress_min_bytes: 0,
            ..EngineConfig::default()
        };
        let engine = Engine::open_with_clock(config, clock.clone()).unwrap();
        let mut model = Model { now: START_MS, ..Model::default() };
        for (step, op) in ops.iter().enumerate() {
            if let Op::Advance { ms } = op {
                model.now += ms;
            }
            if let Op::DbSize { .. } = op {
                settle_expired(&engine);
            }
            let expected = run_model(&mut model, op);
            let actual = run_engine(&engine, &clock, op, model.now);
            prop_assert_eq!(actual, expected, "step {} {:?}", step, op);
        }
        let report = engine.tier_report();
        prop_assert!(report.stats.demotions > 0);
        let (_, missing) = engine.check_filter_covers_cold().unwrap();
        prop_assert_eq!(missing, 0);
    }
}
