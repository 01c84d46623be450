//! Hostile clients against the real binary (issue 14, fuzzing): random and mutated frames
//! built from a corpus of real requests, every command the server lists called with random
//! arguments, thousands of connections opened and dropped, slow-loris clients that trickle a
//! request a byte at a time, and megabytes of garbage. Throughout, a monitor connection
//! PINGs every 50 ms; the server must answer every PING (the 10 s read timeout is a hang
//! detector; the worst latency is printed, not asserted), never log a panic, and keep its
//! RSS within maxmemory plus the documented overhead.
//!
//! Every loop is bounded in count; `HC_SOAK_SCALE` (default 2: 10,000 connections, 128 MB
//! of garbage) multiplies the counts (with 16 the garbage reaches 1 GB) for a longer run
//! than CI's. The random seed is printed
//! and `HC_SOAK_SEED` replays it: a failure found this way becomes a regression test.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{peak_rss_bytes, resp, BinaryServer};
use hypercache::engine::budget::FIXED_OVERHEAD_BYTES;

const MAXMEMORY: u64 = 64 << 20;

/// A small xorshift generator: reproducible from the printed seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn scale() -> usize {
    std::env::var("HC_SOAK_SCALE")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(2)
}

/// Requests real clients send: the corpus the mutations start from.
fn corpus() -> Vec<Vec<u8>> {
    let requests: &[&[&[u8]]] = &[
        &[b"PING"],
        &[b"SET", b"key:1", b"value"],
        &[b"SET", b"key:2", b"v", b"EX", b"100", b"NX"],
        &[b"GET", b"key:1"],
        &[b"MSET", b"a", b"1", b"b", b"2"],
        &[b"MGET", b"a", b"b", b"c"],
        &[b"INCRBY", b"counter", b"5"],
        &[b"EXPIRE", b"key:1", b"200", b"GT"],
        &[b"SCAN", b"0", b"MATCH", b"key:*", b"COUNT", b"100"],
        &[b"KEYS", b"a*b?[c-d]\\*"],
        &[b"HELLO", b"3"],
        &[b"CLIENT", b"SETNAME", b"soak"],
        &[b"MULTI"],
        &[b"EXEC"],
        &[b"SELECT", b"1"],
        &[b"DEL", b"a", b"b"],
        &[b"APPEND", b"key:3", b"tail"],
        &[b"GETRANGE", b"key:3", b"-5", b"9999999999"],
        &[b"SETRANGE", b"key:4", b"100", b"x"],
        &[b"OBJECT", b"FREQ", b"key:1"],
    ];
    let mut corpus: Vec<Vec<u8>> = requests.iter().map(|args| resp(args)).collect();
    corpus.push(b"PING\r\n".to_vec());
    corpus.push(b"SET inline value\r\n".to_vec());
    corpus
}

/// A corpus request changed the way a fuzzer would: bytes flipped, cut short, a length
/// made huge or negative, two requests spliced, or pure noise.
fn mutate(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut frame = corpus[rng.below(corpus.len())].clone();
    match rng.below(6) {
        0 => {
            for _ in 0..=rng.below(4) {
                let at = rng.below(frame.len());
                frame[at] ^= 1 << rng.below(8);
            }
        }
        1 => frame.truncate(rng.below(frame.len())),
        2 => {
            let numbers: &[&[u8]] = &[
                b"-1",
                b"0",
                b"99999999999999999999",
                b"2147483648",
                b"-9223372036854775808",
                b"abc",
                b"",
            ];
            let replacement = numbers[rng.below(numbers.len())];
            if let Some(at) = frame.iter().position(|&b| b == b'$' || b == b'*') {
                let end = frame[at..]
                    .iter()
                    .position(|&b| b == b'\r')
                    .map_or(frame.len(), |i| at + i);
                frame.splice(at + 1..end, replacement.iter().copied());
            }
        }
        3 => {
            let other = &corpus[rng.below(corpus.len())];
            let cut = rng.below(frame.len());
            frame.truncate(cut);
            frame.extend_from_slice(&other[rng.below(other.len())..]);
        }
        4 => {
            let len = 1 + rng.below(256);
            frame = rng.bytes(len);
        }
        _ => {}
    }
    frame
}

/// Sends `bytes` and drains whatever comes back for a moment, without waiting for replies
/// (a mutated request may rightly get none: it can be incomplete, or a blocking command).
fn send_and_drain(port: u16, bytes: &[u8]) {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        panic!("the server stopped accepting connections");
    };
    stream
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let mut sink = [0u8; 16 * 1024];
    while let Ok(n) = stream.read(&mut sink) {
        if n == 0 {
            break;
        }
    }
}

/// The argument values the command fuzzer draws from.
fn random_argument(rng: &mut Rng) -> Vec<u8> {
    let words: &[&[u8]] = &[
        b"0",
        b"1",
        b"-1",
        b"100",
        b"-100",
        b"4294967296",
        b"9223372036854775807",
        b"-9223372036854775808",
        b"1e3",
        b"inf",
        b"-inf",
        b"nan",
        b"3.14",
        b"NX",
        b"XX",
        b"GT",
        b"LT",
        b"EX",
        b"PX",
        b"KEEPTTL",
        b"GET",
        b"MATCH",
        b"COUNT",
        b"TYPE",
        b"*",
        b"key:1",
        b"a",
        b"counter",
        b"",
        b"WITHSCORES",
        b"LIMIT",
        b"ASYNC",
    ];
    match rng.below(4) {
        0 => {
            let len = rng.below(40);
            rng.bytes(len)
        }
        _ => words[rng.below(words.len())].to_vec(),
    }
}

/// Commands whose effects would end the test itself rather than test the server: stopping
/// it, changing its settings or password, killing or pausing the monitor, sleeping.
fn excluded(name: &str) -> bool {
    matches!(
        name,
        "shutdown"
            | "config"
            | "client"
            | "debug"
            | "monitor"
            | "acl"
            | "failover"
            | "replicaof"
            | "slaveof"
            | "sync"
            | "psync"
            | "quit"
            | "reset"
    )
}

/// The names of every command the server lists (COMMAND LIST).
fn command_names(port: u16) -> Vec<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(&resp(&[b"COMMAND", b"LIST"])).unwrap();
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    // Read until the array is whole: as many bulk strings as its header says.
    loop {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "COMMAND LIST: connection closed");
        reply.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&reply).into_owned();
        let mut lines = text.split("\r\n");
        let count: usize = lines.next().unwrap_or("*0")[1..].parse().unwrap_or(0);
        let names: Vec<String> = lines
            .filter(|line| !line.starts_with('$') && !line.is_empty())
            .map(str::to_lowercase)
            .collect();
        if names.len() >= count && text.ends_with("\r\n") {
            return names;
        }
    }
}

#[test]
fn hostile_clients_never_crash_stall_or_bloat_the_server() {
    let seed = std::env::var("HC_SOAK_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("HC_SOAK_SEED={seed}");
    let scale = scale();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let server = BinaryServer::start_with_env(
        &dir.path().join("data"),
        &["--maxmemory", "64mb"],
        &[],
        Some(&log),
    );
    let port = server.port;

    // The monitor: a PING every 50 ms on its own connection, each answered.
    let done = Arc::new(AtomicBool::new(false));
    let worst_ping_us = Arc::new(AtomicU64::new(0));
    let monitor = {
        let (done, worst) = (Arc::clone(&done), Arc::clone(&worst_ping_us));
        std::thread::spawn(move || {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut pings = 0u64;
            while !done.load(Ordering::Relaxed) {
                let sent = Instant::now();
                stream.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
                let mut reply = [0u8; 7];
                stream
                    .read_exact(&mut reply)
                    .unwrap_or_else(|err| panic!("PING {pings} unanswered: {err}"));
                assert_eq!(&reply, b"+PONG\r\n");
                worst.fetch_max(sent.elapsed().as_micros() as u64, Ordering::Relaxed);
                pings += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            pings
        })
    };

    let mut rng = Rng(seed);
    let corpus = corpus();

    // 1. Mutated frames, one connection each, sometimes several pipelined.
    let frames = 2000 * scale;
    for _ in 0..frames {
        let mut bytes = Vec::new();
        for _ in 0..=rng.below(3) {
            bytes.extend(mutate(&mut rng, &corpus));
        }
        send_and_drain(port, &bytes);
    }

    // 2. Every listed command with random arguments, pipelined on a few connections.
    let names = command_names(port);
    assert!(names.len() > 50, "COMMAND LIST gave {} names", names.len());
    let calls = 3000 * scale;
    let mut batch = Vec::new();
    for call in 0..calls {
        let name = &names[rng.below(names.len())];
        if excluded(name) {
            continue;
        }
        let mut args: Vec<Vec<u8>> = vec![name.as_bytes().to_vec()];
        for _ in 0..rng.below(6) {
            args.push(random_argument(&mut rng));
        }
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        batch.extend(resp(&refs));
        if call % 50 == 49 {
            send_and_drain(port, &std::mem::take(&mut batch));
        }
    }

    // 3. Connections opened and dropped, some mid-request.
    for i in 0..5000 * scale {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("accept");
        if i % 3 == 0 {
            let _ = stream.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\nabc");
        }
    }

    // 4. Slow-loris clients: a large bulk announced, then a byte every few ms, while the
    //    rest goes on; they must not hold the server (they hold only themselves).
    let loris: Vec<_> = (0..50)
        .map(|i| {
            std::thread::spawn(move || {
                let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
                    return;
                };
                let header = format!("*2\r\n$3\r\nGET\r\n${}\r\n", 1 << 20);
                for byte in header.bytes().chain(std::iter::repeat_n(b'x', 200)) {
                    if stream.write_all(&[byte]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(2 + i % 5));
                }
            })
        })
        .collect();

    // 5. Garbage: 64 MB (x scale) of random bytes over connections of 1 MB each.
    let garbage_mb = 64 * scale;
    let chunk = rng.bytes(1 << 20);
    for _ in 0..garbage_mb {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
            panic!("the server stopped accepting connections");
        };
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // The server closes a connection at the first protocol error; the rest of the
        // megabyte then fails to send, which is the point.
        let _ = stream.write_all(&chunk);
    }
    for handle in loris {
        handle.join().unwrap();
    }

    done.store(true, Ordering::Relaxed);
    let pings = monitor
        .join()
        .expect("the monitor's PINGs were all answered");
    let peak_rss = peak_rss_bytes(server.child.id());
    println!(
        "frames={frames} calls={calls} connections={} garbage={garbage_mb} MB pings={pings} \
         worst_ping={} us peak_rss={peak_rss}",
        5000 * scale,
        worst_ping_us.load(Ordering::Relaxed)
    );
    // Still whole: a normal client gets normal answers.
    let mut con = server.client();
    let _: () = redis::cmd("SET")
        .arg("after")
        .arg("soak")
        .query(&mut con)
        .unwrap();
    let after: String = redis::cmd("GET").arg("after").query(&mut con).unwrap();
    assert_eq!(after, "soak");
    let server_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !server_log.contains("panicked"),
        "the server logged a panic (seed {seed}):\n{server_log}"
    );
    assert!(
        peak_rss <= MAXMEMORY + FIXED_OVERHEAD_BYTES,
        "peak RSS {peak_rss} over maxmemory {MAXMEMORY} + overhead {FIXED_OVERHEAD_BYTES}"
    );
    drop(con);
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}
