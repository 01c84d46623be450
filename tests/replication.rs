//! Replication between real `hypercache` processes on 127.0.0.1 (issue 16, DESIGN.md §9):
//! a full sync under writes with most keys in the cold tier, a replica killed mid-stream that
//! resumes partially, a failover where every write WAIT acknowledged survives and the old
//! primary rejoins, and a link that a proxy in the test cuts and delays.
//!
//! Every node runs with the WAL on (replication needs it) and its own directory and port.
//! Every loop is bounded in count and time; a node that dies prints its stderr (BinaryServer).

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::BinaryServer;

/// A small hot tier, so most of the keys live in RocksDB on both nodes.
const SMALL_HOT_TIER: (&str, &str) = ("HYPERCACHE_STORAGE__HOT_MAX_BYTES", "1mb");

fn start_node(dir: &std::path::Path, replicaof: Option<u16>) -> BinaryServer {
    let mut args = vec!["--appendonly".to_string(), "yes".to_string()];
    if let Some(port) = replicaof {
        args.extend(["--replicaof".into(), "127.0.0.1".into(), port.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    BinaryServer::start_with_env(dir, &args, &[SMALL_HOT_TIER], None)
}

fn info_field(conn: &mut redis::Connection, section: &str, field: &str) -> Option<String> {
    let info: String = redis::cmd("INFO").arg(section).query(conn).ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .map(str::to_string)
}

fn offset(conn: &mut redis::Connection) -> u64 {
    info_field(conn, "replication", "master_repl_offset")
        .and_then(|text| text.parse().ok())
        .unwrap_or(0)
}

/// Waits (at most `limit`) until the replica's link is up and its offset equals the primary's.
fn wait_caught_up(primary: &BinaryServer, replica: &BinaryServer, limit: Duration) {
    let deadline = Instant::now() + limit;
    let (mut p, mut r) = (primary.client(), replica.client());
    loop {
        let link = info_field(&mut r, "replication", "master_link_status");
        let (po, ro) = (offset(&mut p), offset(&mut r));
        if link.as_deref() == Some("up") && po == ro {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replica not caught up within {limit:?}: link {link:?}, primary offset {po}, replica offset {ro}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every key of db 0 with its value and absolute expiry (PEXPIRETIME), over both tiers.
fn contents(conn: &mut redis::Connection) -> BTreeMap<Vec<u8>, (Option<Vec<u8>>, i64)> {
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut cursor: u64 = 0;
    for _ in 0..1_000_000 {
        let (next, page): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query(conn)
            .unwrap();
        keys.extend(page);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let mut out = BTreeMap::new();
    for chunk in keys.chunks(500) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("GET").arg(key).cmd("PEXPIRETIME").arg(key);
        }
        let replies: Vec<redis::Value> = pipe.query(conn).unwrap();
        for (key, pair) in chunk.iter().zip(replies.chunks(2)) {
            let value = match &pair[0] {
                redis::Value::BulkString(bytes) => Some(bytes.clone()),
                _ => None,
            };
            let expiry = match pair[1] {
                redis::Value::Int(at) => at,
                _ => -3,
            };
            out.insert(key.clone(), (value, expiry));
        }
    }
    out
}

fn assert_same_contents(primary: &BinaryServer, replica: &BinaryServer) -> usize {
    let expected = contents(&mut primary.client());
    let got = contents(&mut replica.client());
    assert_eq!(expected.len(), got.len(), "key counts differ");
    let differing: Vec<_> = expected
        .iter()
        .filter(|(key, value)| got.get(*key) != Some(value))
        .map(|(key, _)| String::from_utf8_lossy(key).into_owned())
        .take(5)
        .collect();
    assert!(differing.is_empty(), "keys differ, e.g. {differing:?}");
    let dbsize = |server: &BinaryServer| -> u64 {
        redis::cmd("DBSIZE").query(&mut server.client()).unwrap()
    };
    assert_eq!(dbsize(primary), dbsize(replica));
    expected.len()
}

/// Writes `count` keys `{prefix}{i}` (every other one with a one-hour TTL), pipelined.
fn write_keys(conn: &mut redis::Connection, prefix: &str, range: std::ops::Range<u64>) {
    let keys: Vec<u64> = range.collect();
    for chunk in keys.chunks(1000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            let key = format!("{prefix}{i}");
            let value = format!("value-{i}-{}", "x".repeat(64));
            if i % 2 == 0 {
                pipe.cmd("SET")
                    .arg(&key)
                    .arg(value)
                    .arg("EX")
                    .arg(3600)
                    .ignore();
            } else {
                pipe.cmd("SET").arg(&key).arg(value).ignore();
            }
        }
        pipe.query::<()>(conn).unwrap();
    }
}

fn stat(conn: &mut redis::Connection, field: &str) -> u64 {
    info_field(conn, "stats", field)
        .and_then(|text| text.parse().ok())
        .unwrap_or(0)
}

#[test]
fn full_sync_under_writes_leaves_both_nodes_identical() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let primary = start_node(dirs.0.path(), None);
    write_keys(&mut primary.client(), "k", 0..50_000);
    let port = primary.port;
    // The other half is written while the replica loads its snapshot.
    let writer = std::thread::spawn(move || {
        let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        write_keys(&mut conn, "k", 50_000..100_000);
        redis::cmd("DEL")
            .arg("k7")
            .arg("k8")
            .query::<i64>(&mut conn)
            .unwrap();
    });
    let replica = start_node(dirs.1.path(), Some(primary.port));
    writer.join().unwrap();
    wait_caught_up(&primary, &replica, Duration::from_secs(120));
    assert_eq!(assert_same_contents(&primary, &replica), 99_998);

    let mut r = replica.client();
    let refused = redis::cmd("SET")
        .arg("k1")
        .arg("x")
        .query::<()>(&mut r)
        .unwrap_err();
    assert_eq!(refused.code(), Some("READONLY"));
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut r).unwrap();
    assert_eq!(role[0], redis::Value::BulkString(b"slave".to_vec()));
    let mut p = primary.client();
    assert_eq!(
        info_field(&mut p, "replication", "connected_slaves").as_deref(),
        Some("1")
    );
    assert_eq!(stat(&mut p, "sync_full"), 1);
    // WAIT counts the replica once it acknowledged the last write.
    redis::cmd("SET")
        .arg("after")
        .arg("1")
        .query::<()>(&mut p)
        .unwrap();
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut p).unwrap();
    assert_eq!(acked, 1);
    let value: Option<String> = redis::cmd("GET").arg("after").query(&mut r).unwrap();
    assert_eq!(value.as_deref(), Some("1"));
}

/// A writer that SETs `{prefix}{i}` until told to stop or `limit` writes, one at a time.
fn background_writer(
    port: u16,
    prefix: &'static str,
    limit: u64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        let mut written = 0;
        while written < limit && !stop.load(Ordering::Relaxed) {
            let i = written;
            if redis::cmd("SET")
                .arg(format!("{prefix}{i}"))
                .arg(i)
                .query::<()>(&mut conn)
                .is_err()
            {
                break;
            }
            written += 1;
        }
        written
    })
}

#[test]
fn a_replica_killed_mid_stream_resumes_with_a_partial_resync() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let primary = start_node(dirs.0.path(), None);
    write_keys(&mut primary.client(), "base", 0..5_000);
    let replica = start_node(dirs.1.path(), Some(primary.port));
    wait_caught_up(&primary, &replica, Duration::from_secs(60));

    let stop = Arc::new(AtomicBool::new(false));
    let writer = background_writer(primary.port, "live", 200_000, Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(500));
    replica.kill9();
    std::thread::sleep(Duration::from_millis(300));
    let replica = start_node(dirs.1.path(), Some(primary.port));
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(written > 0);
    wait_caught_up(&primary, &replica, Duration::from_secs(60));
    assert_same_contents(&primary, &replica);
    let mut p = primary.client();
    assert_eq!(
        stat(&mut p, "sync_full"),
        1,
        "the restart needed a full sync"
    );
    assert!(stat(&mut p, "sync_partial_ok") >= 1);
}

#[test]
fn failover_keeps_every_write_wait_acknowledged_and_the_old_primary_rejoins() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let primary = start_node(dirs.0.path(), None);
    let replica = start_node(dirs.1.path(), Some(primary.port));
    wait_caught_up(&primary, &replica, Duration::from_secs(60));

    // Each write is followed by WAIT 1 100; the ones WAIT confirmed must survive.
    let port = primary.port;
    let acknowledged = Arc::new(AtomicU64::new(0));
    let acked = Arc::clone(&acknowledged);
    let writer = std::thread::spawn(move || {
        let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        let mut confirmed = Vec::new();
        for i in 0..100_000u64 {
            let written = redis::cmd("SET")
                .arg(format!("w{i}"))
                .arg(i)
                .query::<()>(&mut conn);
            let waited = redis::cmd("WAIT").arg(1).arg(100).query::<i64>(&mut conn);
            match (written, waited) {
                (Ok(()), Ok(n)) if n >= 1 => {
                    confirmed.push(i);
                    acked.store(confirmed.len() as u64, Ordering::Relaxed);
                }
                (Ok(()), Ok(_)) => {}
                _ => break,
            }
        }
        confirmed
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while acknowledged.load(Ordering::Relaxed) < 2_000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let old_primary_dir = primary.dir.clone();
    primary.kill9();
    let confirmed = writer.join().unwrap();
    assert!(
        confirmed.len() >= 100,
        "too few writes confirmed: {}",
        confirmed.len()
    );

    let mut promoted = replica.client();
    redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query::<()>(&mut promoted)
        .unwrap();
    let mut pipe = redis::pipe();
    for i in &confirmed {
        pipe.cmd("GET").arg(format!("w{i}"));
    }
    let values: Vec<Option<u64>> = pipe.query(&mut promoted).unwrap();
    let lost: Vec<u64> = confirmed
        .iter()
        .zip(&values)
        .filter(|(i, value)| value.as_ref() != Some(i))
        .map(|(i, _)| *i)
        .take(5)
        .collect();
    assert!(
        lost.is_empty(),
        "writes WAIT confirmed are missing after failover, e.g. {lost:?}"
    );
    // Writers move to the new primary.
    redis::cmd("SET")
        .arg("after-failover")
        .arg("1")
        .query::<()>(&mut promoted)
        .unwrap();
    let promoted_at = offset(&mut promoted);

    // The old primary comes back and follows the new one.
    let old = start_node(&old_primary_dir, None);
    let old_offset = offset(&mut old.client());
    redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(replica.port)
        .query::<()>(&mut old.client())
        .unwrap();
    wait_caught_up(&replica, &old, Duration::from_secs(60));
    assert_same_contents(&replica, &old);
    let full = stat(&mut promoted, "sync_full");
    let partial = stat(&mut promoted, "sync_partial_ok");
    // Its log is a prefix of the new primary's unless it had written records the replica
    // never received (a write that was in flight when it died): only then a full sync.
    let replica_had = promoted_at - 1;
    if old_offset <= replica_had {
        assert_eq!(
            (full, partial),
            (0, 1),
            "old offset {old_offset}, promoted at {replica_had}"
        );
    } else {
        assert_eq!(
            (full, partial),
            (1, 0),
            "old offset {old_offset}, promoted at {replica_had}"
        );
    }
}

/// A TCP proxy that forwards both ways, delaying each chunk and cutting every connection
/// after `cut_after`.
fn flaky_proxy(target: u16, cut_after: Duration, stop: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok((client, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let _ = client.set_nonblocking(false);
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            let until = Instant::now() + cut_after;
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server.try_clone().unwrap(), client.try_clone().unwrap()),
            ] {
                std::thread::spawn(move || {
                    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
                    let mut buf = [0u8; 4096];
                    while Instant::now() < until {
                        match from.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                std::thread::sleep(Duration::from_millis(2));
                                if to.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(err) if err.kind() == std::io::ErrorKind::TimedOut => {}
                            Err(_) => break,
                        }
                    }
                    let _ = from.shutdown(std::net::Shutdown::Both);
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    port
}

#[test]
fn a_cut_and_delayed_link_never_applies_a_record_twice_or_out_of_order() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let primary = start_node(dirs.0.path(), None);
    let stop = Arc::new(AtomicBool::new(false));
    let proxy = flaky_proxy(primary.port, Duration::from_millis(700), Arc::clone(&stop));
    let replica = start_node(dirs.1.path(), Some(proxy));
    // Counters and appends: a record applied twice or out of order changes the result.
    let mut p = primary.client();
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut rounds = 0;
    while Instant::now() < deadline && rounds < 20_000 {
        let mut pipe = redis::pipe();
        for i in 0..20 {
            pipe.cmd("INCR").arg(format!("counter{}", i % 7)).ignore();
            pipe.cmd("APPEND")
                .arg(format!("log{}", i % 3))
                .arg(format!("{rounds}.{i};"))
                .ignore();
        }
        pipe.query::<()>(&mut p).unwrap();
        rounds += 1;
    }
    // Let the link reconnect with the proxy still cutting it, then stop the cuts.
    stop.store(true, Ordering::Relaxed);
    redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(primary.port)
        .query::<()>(&mut replica.client())
        .unwrap();
    wait_caught_up(&primary, &replica, Duration::from_secs(60));
    assert_same_contents(&primary, &replica);
    let reconnects = stat(&mut p, "sync_partial_ok") + stat(&mut p, "sync_full");
    assert!(
        reconnects >= 3,
        "the proxy should have cut the link several times ({reconnects})"
    );
}
