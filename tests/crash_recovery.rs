//! Crash recovery of the real binary with the write-ahead log on: writers run, the server gets
//! SIGKILL at a seeded random moment, restarts on the same directory, and every key must be
//! what the fsync policy promises.
//!
//! Model. Each of [`WRITERS`] threads owns a disjoint key space (`w{i}:k{j}`, [`KEYS`] keys,
//! every fifth one a counter) and sends a seeded random mix of SET, INCR, DEL, EXPIRE (1000 s,
//! so nothing expires during a run), RENAME and MSET, one at a time, checking every reply
//! against its own model of its keys. It logs each acknowledged op with the instant its reply
//! arrived, and the op in flight when the connection died (sent, no reply: it may or may not
//! have been applied). One WAL orders all writes and a writer sends its next op only after the
//! previous reply, so what survives a crash of one writer's ops is a prefix of its log,
//! possibly followed by the in-flight op, applied whole (both keys of a RENAME or an MSET, or
//! neither). After the restart a writer's whole key space (each key's value, and whether it has
//! a TTL) must equal its state after some prefix `p` of its acknowledged ops, or after all of
//! them plus the in-flight one, where
//! - `appendfsync always`: `p` is every acknowledged op;
//! - `appendfsync everysec`: `p` includes at least every op acknowledged more than
//!   [`EVERYSEC_WINDOW`] (2 s) before the kill. An ack's instant is taken after its reply was
//!   read, so scheduling delays only make this bound looser, never stricter.
//!
//! Hence nothing deleted or overwritten comes back and no acknowledged write goes missing
//! beyond what the policy allows. After every restart DBSIZE must count exactly the live keys.
//! The recovered state is the next cycle's baseline, so damage compounds across cycles instead
//! of being reset; after the last cycle a clean SIGTERM and restart must keep that state
//! exactly.
//!
//! Scenarios: `always`; `everysec`; `always` with the hot tier capped at 256kb (values padded
//! to 2 KiB so most of them live in RocksDB); `always` with a checkpoint every second and a
//! BGSAVE just before most kills, so kills land while checkpoints run.
//!
//! Each scenario runs `HYPERCACHE_CRASH_CYCLES` cycles (default 4, to keep CI fast);
//! `HYPERCACHE_CRASH_SEED` sets the seed every failure message names. `HYPERCACHE_BIN` picks
//! the binary (default: the one cargo built for this test). The long run, at least 20 cycles
//! per scenario against a release build:
//!
//! ```text
//! cargo build --release
//! HYPERCACHE_BIN=$CARGO_TARGET_DIR/release/hypercache HYPERCACHE_CRASH_CYCLES=20 \
//!     cargo test --release --test crash_recovery
//! ```
//!
//! A failing scenario keeps its directory (data and the server's stderr) and names it.

mod common;

use std::ops::Range;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::BinaryServer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Concurrent writer connections, each with its own key space.
const WRITERS: usize = 4;
/// Keys per writer: `w{i}:k0` .. `w{i}:k199`.
const KEYS: usize = 200;
/// Keys whose index is a multiple of this are counters (INCR); the rest hold strings.
const COUNTER_EVERY: usize = 5;
/// EXPIRE's TTL: far beyond any run, so no key expires while the test watches.
const TTL_SECS: u64 = 1000;
/// Under `everysec`, what was acknowledged longer ago than this before the kill must survive.
const EVERYSEC_WINDOW: Duration = Duration::from_secs(2);
/// Read/write/connect timeout of every connection, so a dead server never hangs a thread.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// A writer stops after this even if its connection never dies (the kill comes far sooner).
const WRITER_TIME_LIMIT: Duration = Duration::from_secs(60);
const DEFAULT_CYCLES: usize = 4;
const DEFAULT_SEED: u64 = 20_240_917;

struct Scenario {
    name: &'static str,
    appendfsync: &'static str,
    env: &'static [(&'static str, &'static str)],
    /// Bytes of padding after each string value's identity.
    value_pad: usize,
    /// The kill comes this many milliseconds after the writers start.
    kill_after_ms: Range<u64>,
    /// Send BGSAVE shortly before most kills.
    bgsave_before_kill: bool,
    /// `None`: no acknowledged write may be lost. `Some(w)`: those acknowledged within `w`
    /// before the kill may be (a tail of each writer's log).
    loss_window: Option<Duration>,
}

#[test]
fn appendfsync_always_keeps_every_acknowledged_write() {
    run(&Scenario {
        name: "always",
        appendfsync: "always",
        env: &[],
        value_pad: 0,
        kill_after_ms: 200..1500,
        bgsave_before_kill: false,
        loss_window: None,
    });
}

#[test]
fn appendfsync_everysec_loses_at_most_the_last_two_seconds() {
    // Kills later than 2 s make the window bind: the oldest acks must then survive.
    run(&Scenario {
        name: "everysec",
        appendfsync: "everysec",
        env: &[],
        value_pad: 0,
        kill_after_ms: 300..4000,
        bgsave_before_kill: false,
        loss_window: Some(EVERYSEC_WINDOW),
    });
}

#[test]
fn appendfsync_always_with_most_data_in_the_cold_tier() {
    // 4 writers x 160 string keys x 2 KiB is about 1.3 MB, five times the hot tier.
    run(&Scenario {
        name: "always, hot tier 256kb",
        appendfsync: "always",
        env: &[("HYPERCACHE_STORAGE__HOT_MAX_BYTES", "256kb")],
        value_pad: 2048,
        kill_after_ms: 200..1500,
        bgsave_before_kill: false,
        loss_window: None,
    });
}

#[test]
fn appendfsync_everysec_with_most_data_in_the_cold_tier() {
    // Demotions and cold deletes happen within the second an fsync may be pending: they must
    // still wait for the WAL, or a crash would keep a later write and lose an earlier one.
    run(&Scenario {
        name: "everysec, hot tier 256kb",
        appendfsync: "everysec",
        env: &[("HYPERCACHE_STORAGE__HOT_MAX_BYTES", "256kb")],
        value_pad: 2048,
        kill_after_ms: 300..3000,
        bgsave_before_kill: false,
        loss_window: Some(EVERYSEC_WINDOW),
    });
}

#[test]
fn appendfsync_always_with_kills_during_checkpoints() {
    run(&Scenario {
        name: "always, checkpoint every second + BGSAVE",
        appendfsync: "always",
        env: &[("HYPERCACHE_PERSISTENCE__CHECKPOINT_INTERVAL_SECS", "1")],
        value_pad: 64,
        kill_after_ms: 200..2500,
        bgsave_before_kill: true,
        loss_window: None,
    });
}

// ---------------------------------------------------------------------------------------------
// The model.

#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    /// The string `render(writer, seq, pad)`.
    Str { writer: usize, seq: u64 },
    /// A counter.
    Int(i64),
    /// Anything else the server returned (shortened for messages).
    Other(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    value: Value,
    ttl: bool,
}

/// One writer's keys, by index; `None` = absent.
type State = Vec<Option<Entry>>;

fn key(writer: usize, j: usize) -> String {
    format!("w{writer}:k{j}")
}

/// Writer `writer`'s string value number `seq`: unique, self-describing, and padded with a
/// pattern that depends on `seq`, so a value's bytes mixed up with another's do not parse.
fn render(writer: usize, seq: u64, pad: usize) -> String {
    let mut text = format!("w{writer}-{seq}");
    if pad > 0 {
        text.push(':');
        text.extend((0..pad).map(|i| char::from(b'a' + ((seq as usize + i) % 26) as u8)));
    }
    text
}

fn parse_value(bytes: &[u8], pad: usize) -> Value {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(n) = text.parse::<i64>() {
        return Value::Int(n);
    }
    if let Some((writer, rest)) = text.strip_prefix('w').and_then(|t| t.split_once('-')) {
        let seq = rest.split(':').next().unwrap_or_default();
        if let (Ok(writer), Ok(seq)) = (writer.parse(), seq.parse()) {
            if render(writer, seq, pad).as_bytes() == bytes {
                return Value::Str { writer, seq };
            }
        }
    }
    let shown: String = text.chars().take(48).collect();
    Value::Other(format!("{shown:?} ({} bytes)", bytes.len()))
}

fn show(entry: &Option<Entry>) -> String {
    match entry {
        None => "absent".into(),
        Some(entry) => {
            let value = match &entry.value {
                Value::Str { writer, seq } => format!("\"w{writer}-{seq}\""),
                Value::Int(n) => n.to_string(),
                Value::Other(text) => format!("unexpected {text}"),
            };
            if entry.ttl {
                format!("{value} with TTL")
            } else {
                value
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Set(usize, u64),
    Incr(usize),
    Del(usize),
    Expire(usize),
    Rename(usize, usize),
    Mset([(usize, u64); 2]),
}

/// What the server must answer, given the writer's model before the op.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Ok,
    Int(i64),
    NoSuchKey,
}

impl Op {
    /// The keys it may change (distinct).
    fn keys(&self) -> Vec<usize> {
        match *self {
            Op::Set(j, _) | Op::Incr(j) | Op::Del(j) | Op::Expire(j) => vec![j],
            Op::Rename(from, to) => vec![from, to],
            Op::Mset([(a, _), (b, _)]) => vec![a, b],
        }
    }

    fn apply(&self, writer: usize, state: &mut State) {
        let string = |seq| {
            Some(Entry {
                value: Value::Str { writer, seq },
                ttl: false,
            })
        };
        match *self {
            Op::Set(j, seq) => state[j] = string(seq),
            Op::Incr(j) => match &mut state[j] {
                None => {
                    state[j] = Some(Entry {
                        value: Value::Int(1),
                        ttl: false,
                    })
                }
                Some(Entry {
                    value: Value::Int(n),
                    ..
                }) => *n += 1,
                Some(_) => {}
            },
            Op::Del(j) => state[j] = None,
            Op::Expire(j) => {
                if let Some(entry) = &mut state[j] {
                    entry.ttl = true;
                }
            }
            Op::Rename(from, to) => {
                if let Some(entry) = state[from].take() {
                    state[to] = Some(entry);
                }
            }
            Op::Mset(pairs) => {
                for (j, seq) in pairs {
                    state[j] = string(seq);
                }
            }
        }
    }

    fn expected_reply(&self, state: &State) -> Reply {
        let exists = |j: usize| i64::from(state[j].is_some());
        match *self {
            Op::Set(..) | Op::Mset(_) => Reply::Ok,
            Op::Incr(j) => match &state[j] {
                None => Reply::Int(1),
                Some(Entry {
                    value: Value::Int(n),
                    ..
                }) => Reply::Int(n + 1),
                Some(_) => unreachable!("counters only ever hold integers"),
            },
            Op::Del(j) | Op::Expire(j) => Reply::Int(exists(j)),
            Op::Rename(from, _) if state[from].is_some() => Reply::Ok,
            Op::Rename(..) => Reply::NoSuchKey,
        }
    }

    fn command(&self, writer: usize, pad: usize) -> redis::Cmd {
        let k = |j| key(writer, j);
        let mut cmd;
        match *self {
            Op::Set(j, seq) => {
                cmd = redis::cmd("SET");
                cmd.arg(k(j)).arg(render(writer, seq, pad));
            }
            Op::Incr(j) => {
                cmd = redis::cmd("INCR");
                cmd.arg(k(j));
            }
            Op::Del(j) => {
                cmd = redis::cmd("DEL");
                cmd.arg(k(j));
            }
            Op::Expire(j) => {
                cmd = redis::cmd("EXPIRE");
                cmd.arg(k(j)).arg(TTL_SECS);
            }
            Op::Rename(from, to) => {
                cmd = redis::cmd("RENAME");
                cmd.arg(k(from)).arg(k(to));
            }
            Op::Mset(pairs) => {
                cmd = redis::cmd("MSET");
                for (j, seq) in pairs {
                    cmd.arg(k(j)).arg(render(writer, seq, pad));
                }
            }
        }
        cmd
    }

    fn describe(&self, writer: usize) -> String {
        let k = |j| key(writer, j);
        match *self {
            Op::Set(j, seq) => format!("SET {} w{writer}-{seq}", k(j)),
            Op::Incr(j) => format!("INCR {}", k(j)),
            Op::Del(j) => format!("DEL {}", k(j)),
            Op::Expire(j) => format!("EXPIRE {} {TTL_SECS}", k(j)),
            Op::Rename(from, to) => format!("RENAME {} {}", k(from), k(to)),
            Op::Mset([(a, sa), (b, sb)]) => {
                format!("MSET {} w{writer}-{sa} {} w{writer}-{sb}", k(a), k(b))
            }
        }
    }
}

const STRING_KEYS: usize = KEYS - KEYS / COUNTER_EVERY;
const COUNTER_KEYS: usize = KEYS / COUNTER_EVERY;

/// The `i`th string key's index (skipping the counters).
fn string_key(i: usize) -> usize {
    (i / (COUNTER_EVERY - 1)) * COUNTER_EVERY + i % (COUNTER_EVERY - 1) + 1
}

fn counter_key(i: usize) -> usize {
    i * COUNTER_EVERY
}

/// Two distinct numbers below `n`.
fn two_distinct(rng: &mut StdRng, n: usize) -> (usize, usize) {
    let a = rng.random_range(0..n);
    let b = rng.random_range(0..n - 1);
    (a, if b >= a { b + 1 } else { b })
}

fn choose_op(rng: &mut StdRng, next_seq: &mut u64) -> Op {
    let mut seq = || {
        *next_seq += 1;
        *next_seq
    };
    match rng.random_range(0..100) {
        0..30 => Op::Set(string_key(rng.random_range(0..STRING_KEYS)), seq()),
        30..45 => Op::Incr(counter_key(rng.random_range(0..COUNTER_KEYS))),
        45..55 => Op::Del(rng.random_range(0..KEYS)),
        55..65 => Op::Expire(rng.random_range(0..KEYS)),
        65..82 => {
            if rng.random_bool(0.75) {
                let (a, b) = two_distinct(rng, STRING_KEYS);
                Op::Rename(string_key(a), string_key(b))
            } else {
                let (a, b) = two_distinct(rng, COUNTER_KEYS);
                Op::Rename(counter_key(a), counter_key(b))
            }
        }
        _ => {
            let (a, b) = two_distinct(rng, STRING_KEYS);
            Op::Mset([(string_key(a), seq()), (string_key(b), seq())])
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writers.

/// What one writer did in one cycle.
struct WriterRun {
    /// Acknowledged ops in order, each with the instant its reply had been read.
    acked: Vec<(Op, Instant)>,
    /// Sent when the connection died, no reply.
    in_flight: Option<Op>,
    /// When and why the connection died.
    ended: Option<(Instant, String)>,
    /// A reply that contradicted the model (a server bug; the writer stopped there).
    failure: Option<String>,
    /// The last string value number used, in flight included.
    next_seq: u64,
}

fn connect(port: u16) -> redis::RedisResult<redis::Connection> {
    let con = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?
        .get_connection_with_timeout(IO_TIMEOUT)?;
    con.set_read_timeout(Some(IO_TIMEOUT))?;
    con.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(con)
}

fn reply_of(result: &redis::RedisResult<redis::Value>) -> Option<Reply> {
    match result {
        Ok(redis::Value::Okay) => Some(Reply::Ok),
        Ok(redis::Value::SimpleString(text)) if text == "OK" => Some(Reply::Ok),
        Ok(redis::Value::Int(n)) => Some(Reply::Int(*n)),
        Err(err) if err.detail() == Some("no such key") => Some(Reply::NoSuchKey),
        _ => None,
    }
}

fn run_writer(
    writer: usize,
    port: u16,
    pad: usize,
    mut state: State,
    mut next_seq: u64,
    seed: u64,
    stop: &AtomicBool,
) -> WriterRun {
    let mut run = WriterRun {
        acked: Vec::new(),
        in_flight: None,
        ended: None,
        failure: None,
        next_seq,
    };
    let mut con = match connect(port) {
        Ok(con) => con,
        Err(err) => {
            run.ended = Some((Instant::now(), format!("connecting: {err}")));
            return run;
        }
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    while !stop.load(Ordering::SeqCst) && started.elapsed() < WRITER_TIME_LIMIT {
        let op = choose_op(&mut rng, &mut next_seq);
        run.next_seq = next_seq;
        let result = op.command(writer, pad).query::<redis::Value>(&mut con);
        let at = Instant::now();
        match result {
            Err(err) if err.is_io_error() => {
                run.in_flight = Some(op);
                run.ended = Some((at, err.to_string()));
                break;
            }
            result => {
                let expected = op.expected_reply(&state);
                if reply_of(&result).as_ref() != Some(&expected) {
                    run.failure = Some(format!(
                        "{} got {result:?}, but the writer's model expects {expected:?}",
                        op.describe(writer)
                    ));
                    break;
                }
                op.apply(writer, &mut state);
                run.acked.push((op, at));
            }
        }
    }
    run
}

// ---------------------------------------------------------------------------------------------
// Checking.

fn read_state(con: &mut redis::Connection, writer: usize, pad: usize) -> Result<State, String> {
    let mut pipe = redis::pipe();
    for j in 0..KEYS {
        pipe.cmd("GET").arg(key(writer, j));
        pipe.cmd("TTL").arg(key(writer, j));
    }
    let replies: Vec<redis::Value> = pipe
        .query(con)
        .map_err(|err| format!("reading w{writer}'s keys: {err}"))?;
    (0..KEYS)
        .map(|j| match (&replies[2 * j], &replies[2 * j + 1]) {
            (redis::Value::Nil, _) => Ok(None),
            (redis::Value::BulkString(bytes), redis::Value::Int(ttl)) => Ok(Some(Entry {
                value: parse_value(bytes, pad),
                ttl: *ttl >= 0,
            })),
            other => Err(format!("GET/TTL {} answered {other:?}", key(writer, j))),
        })
        .collect()
}

fn mismatches(a: &State, b: &State) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

/// Replays `baseline` + `ops[..prefix]` (+ `in_flight` when `prefix` is past the end).
fn state_after(
    writer: usize,
    baseline: &State,
    run: &WriterRun,
    prefix: usize,
) -> (State, &'static str) {
    let mut state = baseline.clone();
    for (op, _) in run.acked.iter().take(prefix) {
        op.apply(writer, &mut state);
    }
    if prefix > run.acked.len() {
        if let Some(op) = run.in_flight {
            op.apply(writer, &mut state);
        }
        return (state, " plus the in-flight op");
    }
    (state, "")
}

/// Ok when `recovered` is the state after some allowed prefix of `run` (see the module doc);
/// else a message naming the keys that differ from the closest allowed state.
fn check_writer(
    context: &str,
    writer: usize,
    baseline: &State,
    run: &WriterRun,
    recovered: &State,
    must_keep: usize,
) -> Result<(), String> {
    let ops = &run.acked;
    let mut model = baseline.clone();
    let mut differ = mismatches(&model, recovered);
    // (keys that differ, prefix); prefix ops.len() + 1 = all plus the in-flight op.
    let mut best = (usize::MAX, must_keep);
    if must_keep == 0 {
        best = (differ, 0);
    }
    for (done, (op, _)) in ops.iter().enumerate() {
        if best.0 == 0 {
            return Ok(());
        }
        let keys = op.keys();
        differ -= keys.iter().filter(|&&j| model[j] != recovered[j]).count();
        op.apply(writer, &mut model);
        differ += keys.iter().filter(|&&j| model[j] != recovered[j]).count();
        if done + 1 >= must_keep && differ < best.0 {
            best = (differ, done + 1);
        }
    }
    if best.0 == 0 {
        return Ok(());
    }
    if let Some(op) = run.in_flight {
        op.apply(writer, &mut model);
        let differ = mismatches(&model, recovered);
        if differ == 0 {
            return Ok(());
        }
        if differ < best.0 {
            best = (differ, ops.len() + 1);
        }
    }
    Err(explain(
        context, writer, baseline, run, recovered, must_keep, best.1,
    ))
}

fn explain(
    context: &str,
    writer: usize,
    baseline: &State,
    run: &WriterRun,
    recovered: &State,
    must_keep: usize,
    closest: usize,
) -> String {
    let ops = &run.acked;
    let (closest_state, plus) = state_after(writer, baseline, run, closest);
    let bad: Vec<usize> = (0..KEYS)
        .filter(|&j| closest_state[j] != recovered[j])
        .collect();
    // Every state each differing key has in some allowed candidate.
    let mut allowed: Vec<Vec<Option<Entry>>> = vec![Vec::new(); bad.len()];
    let note = |state: &State, allowed: &mut Vec<Vec<Option<Entry>>>| {
        for (slot, &j) in allowed.iter_mut().zip(&bad) {
            if !slot.contains(&state[j]) {
                slot.push(state[j].clone());
            }
        }
    };
    let (mut state, _) = state_after(writer, baseline, run, must_keep);
    note(&state, &mut allowed);
    for (op, _) in &ops[must_keep..] {
        op.apply(writer, &mut state);
        note(&state, &mut allowed);
    }
    if let Some(op) = run.in_flight {
        op.apply(writer, &mut state);
        note(&state, &mut allowed);
    }
    let in_flight = run
        .in_flight
        .map_or("none".to_string(), |op| op.describe(writer));
    let mut out = format!(
        "{context}: writer w{writer}'s keys after the restart match no state the policy allows.\n\
         {} ops acknowledged, the first {must_keep} of which must survive; in flight: {in_flight}.\n\
         Closest allowed state: after {} ops{plus}; {} keys differ from it:",
        ops.len(),
        closest.min(ops.len()),
        bad.len(),
    );
    for (&j, candidates) in bad.iter().zip(&allowed).take(10) {
        let candidates: Vec<String> = candidates.iter().map(show).collect();
        let history: Vec<String> = ops
            .iter()
            .enumerate()
            .filter(|(_, (op, _))| op.keys().contains(&j))
            .map(|(i, (op, _))| format!("#{} {}", i + 1, op.describe(writer)))
            .collect();
        out.push_str(&format!(
            "\n  key {}: recovered {}; expected {} (allowed: {}); baseline {}; last acked ops on it: [{}]",
            key(writer, j),
            show(&recovered[j]),
            show(&closest_state[j]),
            candidates.join(" | "),
            show(&baseline[j]),
            history[history.len().saturating_sub(5)..].join(", "),
        ));
    }
    out
}

fn dbsize_matches(
    context: &str,
    con: &mut redis::Connection,
    states: &[State],
) -> Result<(), String> {
    let live = states.iter().flatten().filter(|e| e.is_some()).count();
    let dbsize: i64 = redis::cmd("DBSIZE")
        .query(con)
        .map_err(|err| format!("{context}: DBSIZE: {err}"))?;
    if dbsize != live as i64 {
        return Err(format!(
            "{context}: DBSIZE is {dbsize} but {live} of the writers' keys exist"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Driving the cycles.

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

fn run(scenario: &Scenario) {
    let cycles = env_number("HYPERCACHE_CRASH_CYCLES", DEFAULT_CYCLES as u64) as usize;
    let seed = env_number("HYPERCACHE_CRASH_SEED", DEFAULT_SEED);
    let mut root = tempfile::tempdir().unwrap();
    if let Err(message) = run_cycles(scenario, cycles, seed, root.path()) {
        root.disable_cleanup(true);
        panic!(
            "{message}\n(rerun with HYPERCACHE_CRASH_SEED={seed}; data and server stderr kept in {})",
            root.path().display()
        );
    }
}

fn run_cycles(scenario: &Scenario, cycles: usize, seed: u64, root: &Path) -> Result<(), String> {
    let data = root.join("data");
    std::fs::create_dir(&data).unwrap();
    let log = root.join("server-stderr.log");
    let flags = [
        "--appendonly",
        "yes",
        "--appendfsync",
        scenario.appendfsync,
        "--maxmemory",
        "64mb",
    ];
    let start = || BinaryServer::start_with_env(&data, &flags, scenario.env, Some(&log));
    let name_hash = scenario
        .name
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    let mut rng = StdRng::seed_from_u64(seed ^ name_hash);
    let pad = scenario.value_pad;

    let mut server = start();
    let mut baseline: Vec<State> = vec![vec![None; KEYS]; WRITERS];
    let mut next_seq = [0u64; WRITERS];
    for cycle in 1..=cycles {
        let kill_after = Duration::from_millis(rng.random_range(scenario.kill_after_ms.clone()));
        let bgsave_lead = (scenario.bgsave_before_kill && rng.random_bool(0.75))
            .then(|| Duration::from_millis(rng.random_range(0..40)));
        let context = format!(
            "scenario '{}', cycle {cycle}/{cycles} (seed {seed}, killed {} ms after the writers \
             started{})",
            scenario.name,
            kill_after.as_millis(),
            bgsave_lead.map_or(String::new(), |lead| format!(
                ", BGSAVE {} ms before",
                lead.as_millis()
            )),
        );

        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<JoinHandle<WriterRun>> = (0..WRITERS)
            .map(|w| {
                let (port, state, seq, seed) =
                    (server.port, baseline[w].clone(), next_seq[w], rng.random());
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || run_writer(w, port, pad, state, seq, seed, &stop))
            })
            .collect();
        let began = Instant::now();
        if let Some(lead) = bgsave_lead {
            std::thread::sleep(kill_after.saturating_sub(lead));
            bgsave(server.port).map_err(|err| format!("{context}: {err}"))?;
        }
        std::thread::sleep((began + kill_after).saturating_duration_since(Instant::now()));
        let killed_at = Instant::now();
        let status = server.kill9();
        stop.store(true, Ordering::SeqCst);
        let runs: Vec<WriterRun> = writers
            .into_iter()
            .map(|writer| writer.join().expect("writer thread panicked"))
            .collect();
        if status.signal() != Some(libc::SIGKILL) {
            return Err(format!(
                "{context}: the server had exited before the kill: {status}"
            ));
        }
        for (w, run) in runs.iter().enumerate() {
            if let Some(failure) = &run.failure {
                return Err(format!("{context}: writer w{w}: {failure}"));
            }
            if let Some((at, why)) = &run.ended {
                if *at < killed_at {
                    return Err(format!(
                        "{context}: writer w{w} lost its connection before the kill: {why}"
                    ));
                }
            }
        }

        server = start();
        let mut con = connect(server.port).map_err(|err| format!("{context}: {err}"))?;
        let recovered: Vec<State> = (0..WRITERS)
            .map(|w| read_state(&mut con, w, pad))
            .collect::<Result<_, _>>()
            .map_err(|err| format!("{context}: {err}"))?;
        for (w, run) in runs.iter().enumerate() {
            let must_keep = match scenario.loss_window {
                None => run.acked.len(),
                Some(window) => run
                    .acked
                    .iter()
                    .take_while(|(_, at)| *at + window <= killed_at)
                    .count(),
            };
            check_writer(&context, w, &baseline[w], run, &recovered[w], must_keep)?;
        }
        dbsize_matches(&context, &mut con, &recovered)?;
        baseline = recovered;
        for (seq, run) in next_seq.iter_mut().zip(&runs) {
            *seq = run.next_seq;
        }
    }

    // A clean stop keeps everything.
    let context = format!(
        "scenario '{}', clean restart after {cycles} cycles (seed {seed})",
        scenario.name
    );
    let status = server.terminate();
    if !status.success() {
        return Err(format!("{context}: SIGTERM exit status {status}"));
    }
    let server = start();
    let mut con = connect(server.port).map_err(|err| format!("{context}: {err}"))?;
    for (w, expected) in baseline.iter().enumerate() {
        let recovered = read_state(&mut con, w, pad).map_err(|err| format!("{context}: {err}"))?;
        if let Some(j) = (0..KEYS).find(|&j| recovered[j] != expected[j]) {
            return Err(format!(
                "{context}: key {} is {} but was {} before the clean stop",
                key(w, j),
                show(&recovered[j]),
                show(&expected[j]),
            ));
        }
    }
    dbsize_matches(&context, &mut con, &baseline)?;
    drop(con);
    let status = server.terminate();
    if !status.success() {
        return Err(format!("{context}: SIGTERM exit status {status}"));
    }
    Ok(())
}

/// Starts a checkpoint; one already running is as good.
fn bgsave(port: u16) -> Result<(), String> {
    let mut con = connect(port).map_err(|err| format!("BGSAVE: {err}"))?;
    match redis::cmd("BGSAVE").query::<redis::Value>(&mut con) {
        Ok(_) => Ok(()),
        Err(err) if err.to_string().contains("in progress") => Ok(()),
        Err(err) => Err(format!("BGSAVE: {err}")),
    }
}
