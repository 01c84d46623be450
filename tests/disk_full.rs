//! I8 and I6 with the real binary on a full disk, and the disk budget (`maxdisk`) under each
//! eviction policy: the data directory is a small tmpfs each test mounts (CI runs as root;
//! without the rights to mount it prints why and skips).
//! Writing far more than the file system holds, every command answers within a deadline
//! (PING, GET of a hot key, GET of a cold key; SET answers OK or -OOM), the peak RSS stays
//! within maxmemory plus the documented fixed overhead, and once the file system grows
//! (remount), writes succeed again by themselves. Alone in its file so it is alone in its
//! process (it mounts and unmounts).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{peak_rss_bytes, resp, BinaryServer};
use hypercache::engine::budget::FIXED_OVERHEAD_BYTES;

const MAXMEMORY: u64 = 32 << 20;
const DISK_MB: u64 = 48;
const VALUE_LEN: usize = 1024;
/// Every reply must arrive within this; a longer wait is a hang (no timing is asserted).
const REPLY_DEADLINE: Duration = Duration::from_secs(10);
/// The tests of this file run one at a time: each drives a server flat out, and the
/// budget's lag behind the disk is what they measure.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
const OOM: &str = "-OOM command not allowed when used memory > 'maxmemory'.";
const DISK_BUDGET_OOM: &str =
    "-OOM command not allowed when used memory > 'maxmemory' and used disk > 'maxdisk'.";

/// A tmpfs mounted on a directory of our own, unmounted (lazily) when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size_mb: u64) -> Result<Tmpfs, String> {
        // SAFETY: geteuid has no preconditions and touches no memory.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not running as root".into());
        }
        let dir = tempfile::tempdir().map_err(|err| err.to_string())?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .map_err(|err| format!("cannot run mount: {err}"))?;
        if !status.success() {
            return Err(format!("mount -t tmpfs failed ({status})"));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn resize(&self, size_mb: u64) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size_mb}m")])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(status.success(), "remount failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// Values that do not compress, so the bytes really reach the disk.
fn value_for(index: u64) -> Vec<u8> {
    let mut state = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..VALUE_LEN / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect()
}

fn key(index: u64) -> String {
    format!("key:{index}")
}

struct Client {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(REPLY_DEADLINE)).unwrap();
        Client {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    /// One reply line (a bulk reply's body follows on the next line).
    fn line(&mut self, what: &str) -> String {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(n) if n > 0 => line.trim_end().to_string(),
            other => panic!("no answer to {what} within {REPLY_DEADLINE:?}: {other:?}"),
        }
    }

    /// SETs `from..to` in one pipeline: the indexes acknowledged, and the number refused
    /// with -OOM (any other answer fails the test).
    fn set_range(&mut self, from: u64, to: u64) -> (Vec<u64>, usize) {
        self.set_range_with(from, to, &[])
    }

    /// `set_range` with more SET arguments (`EX 3600`).
    fn set_range_with(&mut self, from: u64, to: u64, extra: &[&[u8]]) -> (Vec<u64>, usize) {
        let mut request = Vec::new();
        for i in from..to {
            let value = value_for(i);
            let mut args: Vec<&[u8]> = vec![b"SET", key(i).leak().as_bytes(), &value];
            args.extend_from_slice(extra);
            request.extend(resp(&args));
        }
        self.writer.write_all(&request).unwrap();
        let (mut acknowledged, mut refused) = (Vec::new(), 0);
        for i in from..to {
            match self.line("SET").as_str() {
                "+OK" => acknowledged.push(i),
                OOM | DISK_BUDGET_OOM => refused += 1,
                other => panic!("SET {} answered {other:?}", key(i)),
            }
        }
        (acknowledged, refused)
    }

    /// GET: Some(value) or None, within the deadline.
    fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        self.writer
            .write_all(&resp(&[b"GET", key.as_bytes()]))
            .unwrap();
        let header = self.line("GET");
        if header == "$-1" {
            return None;
        }
        assert!(header.starts_with('$'), "GET {key} answered {header:?}");
        let mut body = vec![0u8; header[1..].parse::<usize>().unwrap() + 2];
        std::io::Read::read_exact(&mut self.reader, &mut body).unwrap();
        body.truncate(body.len() - 2);
        Some(body)
    }

    fn simple(&mut self, args: &[&[u8]]) -> String {
        self.writer.write_all(&resp(args)).unwrap();
        let line = self.line("command");
        if let Some(len) = line.strip_prefix('$') {
            let mut body = vec![0u8; len.parse::<usize>().unwrap() + 2];
            std::io::Read::read_exact(&mut self.reader, &mut body).unwrap();
            return String::from_utf8_lossy(&body).into_owned();
        }
        line
    }
}

fn info_field(client: &mut Client, field: &str) -> String {
    info_section_field(client, "tiers", field)
}

/// One field of one INFO section.
fn info_section_field(client: &mut Client, section: &str, field: &str) -> String {
    let info = client.simple(&[b"INFO", section.as_bytes()]);
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("INFO {section} has no {field}"))
        .to_string()
}

#[test]
fn i8_a_full_disk_refuses_writes_keeps_serving_and_resumes_when_it_grows() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let tmpfs = match Tmpfs::mount(DISK_MB) {
        Ok(tmpfs) => tmpfs,
        Err(reason) => {
            println!("skipped: cannot mount a tmpfs ({reason})");
            return;
        }
    };
    let dir: PathBuf = tmpfs.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    // A budget far above the disk's size: the disk fills before eviction would start.
    let server = BinaryServer::start(
        &dir,
        &[
            "--maxmemory",
            "32mb",
            "--maxdisk",
            "1gb",
            "--maxmemory-policy",
            "noeviction",
        ],
    );
    let mut client = Client::connect(server.port);

    // Write four times the file system's size, or until writes have been refused for a
    // while, checking every few batches that everything still answers.
    let batch = 200;
    let limit = 4 * (DISK_MB << 20) / VALUE_LEN as u64;
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    let mut next = 0;
    while next < limit && refused < 20 * batch as usize {
        let (ok, oom) = client.set_range(next, next + batch);
        acknowledged.extend(ok);
        refused += oom;
        next += batch;
        if next % (10 * batch) == 0 {
            assert_eq!(client.simple(&[b"PING"]), "+PONG");
            let hot = *acknowledged.last().unwrap();
            assert_eq!(client.get(&key(hot)), Some(value_for(hot)), "hot key");
            // The first key was demoted long ago: a cold read.
            assert_eq!(client.get(&key(0)), Some(value_for(0)), "cold key");
        }
    }
    assert!(refused > 0, "the disk never filled after {next} SETs");
    assert_eq!(info_field(&mut client, "disk_full"), "1");
    assert!(
        info_field(&mut client, "cold_write_errors")
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert_eq!(
        client.simple(&[b"DBSIZE"]),
        format!(":{}", acknowledged.len())
    );
    for &i in acknowledged.iter().step_by(997) {
        assert_eq!(client.get(&key(i)), Some(value_for(i)), "{}", key(i));
    }
    let peak = peak_rss_bytes(server.child.id());
    println!(
        "SETs={next} acknowledged={} refused={refused} peak_rss={peak}",
        acknowledged.len()
    );
    assert!(
        peak <= MAXMEMORY + FIXED_OVERHEAD_BYTES,
        "peak RSS {peak} over maxmemory {MAXMEMORY} + overhead {FIXED_OVERHEAD_BYTES}"
    );

    // More room: writes succeed again without a restart.
    tmpfs.resize(4 * DISK_MB);
    let mut resumed = false;
    for _ in 0..300 {
        let (ok, _) = client.set_range(next, next + 1);
        next += 1;
        if !ok.is_empty() {
            acknowledged.extend(ok);
            resumed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(resumed, "writes still refused 30 s after the disk grew");
    let (ok, oom) = client.set_range(next, next + 2 * batch);
    assert_eq!(oom, 0, "writes refused after the disk grew");
    acknowledged.extend(ok);
    assert_eq!(info_field(&mut client, "disk_full"), "0");
    assert_eq!(
        client.simple(&[b"DBSIZE"]),
        format!(":{}", acknowledged.len())
    );
    assert_eq!(client.get(&key(0)), Some(value_for(0)));
    drop(client);
    server.terminate();
}

/// Bytes the files under `dir` occupy, as `du` counts them (a file RocksDB deletes while
/// it is listed counts as gone).
fn du_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        total += if meta.is_dir() {
            du_bytes(&entry.path())
        } else {
            meta.blocks() * 512
        };
    }
    total
}

fn evicted_keys(client: &mut Client) -> u64 {
    let info = client.simple(&[b"INFO", b"stats"]);
    info.lines()
        .find_map(|line| line.strip_prefix("evicted_keys:"))
        .expect("INFO stats has evicted_keys")
        .trim()
        .parse()
        .unwrap()
}

const MAXDISK_MB: u64 = 24;
/// The documented slack (docs/operations.md): a quarter of the budget while compaction
/// catches up, plus 16 MB for RocksDB's LOG and MANIFEST and the compaction output in
/// flight.
const SLACK_BYTES: u64 = (MAXDISK_MB << 20) / 4 + (16 << 20);

/// Section 8: writing four times `maxdisk` under each policy, the data directory stays
/// within the budget plus the slack, every command answers, RSS stays within maxmemory
/// plus the fixed overhead; the allkeys policies take every write, volatile-ttl (every key
/// with a TTL) evicts, noeviction refuses with the disk budget's -OOM and keeps serving
/// reads and DEL.
#[test]
fn the_disk_budget_holds_under_each_policy() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let tmpfs = match Tmpfs::mount(4 * MAXDISK_MB) {
        Ok(tmpfs) => tmpfs,
        Err(reason) => {
            println!("skipped: cannot mount a tmpfs ({reason})");
            return;
        }
    };
    let policies = std::env::var("HC_TEST_POLICIES")
        .unwrap_or_else(|_| "allkeys-lru allkeys-lfu volatile-ttl noeviction".into());
    for policy in policies.split_whitespace() {
        let dir: PathBuf = tmpfs.path().join(policy);
        std::fs::create_dir_all(&dir).unwrap();
        let maxdisk = format!("{MAXDISK_MB}mb");
        let log = dir.join("server.log");
        let server = BinaryServer::start_with_env(
            &dir,
            &[
                "--maxmemory",
                "32mb",
                "--maxdisk",
                &maxdisk,
                "--maxmemory-policy",
                policy,
            ],
            &[],
            Some(&log),
        );
        let mut client = Client::connect(server.port);
        let extra: &[&[u8]] = if policy == "volatile-ttl" {
            &[b"EX", b"3600"]
        } else {
            &[]
        };
        let batch = 200;
        let total = 4 * (MAXDISK_MB << 20) / VALUE_LEN as u64;
        let (mut acknowledged, mut refused, mut max_du) = (0usize, 0usize, 0u64);
        let mut next = 0;
        while next < total {
            let (ok, oom) = client.set_range_with(next, next + batch, extra);
            acknowledged += ok.len();
            refused += oom;
            next += batch;
            max_du = max_du.max(du_bytes(&dir));
            if next % (20 * batch) == 0 {
                assert_eq!(client.simple(&[b"PING"]), "+PONG", "{policy}");
            }
            if policy == "noeviction" && refused > 10 * batch as usize {
                break;
            }
        }
        let peak = peak_rss_bytes(server.child.id());
        // DBSIZE against the eviction count, read when no eviction ran in between (the
        // evictor may still be finishing its round).
        let mut evicted = evicted_keys(&mut client);
        let mut dbsize = client.simple(&[b"DBSIZE"]);
        for _ in 0..100 {
            let again = evicted_keys(&mut client);
            if again == evicted {
                break;
            }
            evicted = again;
            dbsize = client.simple(&[b"DBSIZE"]);
        }
        println!(
            "{policy}: SETs={next} acknowledged={acknowledged} refused={refused} \
             evicted={evicted} max_du={max_du} budget={} slack={SLACK_BYTES} peak_rss={peak}",
            MAXDISK_MB << 20
        );
        assert!(
            max_du <= (MAXDISK_MB << 20) + SLACK_BYTES,
            "{policy}: the data directory reached {max_du} bytes"
        );
        assert!(
            peak <= MAXMEMORY + FIXED_OVERHEAD_BYTES,
            "{policy}: peak RSS {peak} over maxmemory + overhead"
        );
        assert_eq!(
            dbsize,
            format!(":{}", acknowledged as u64 - evicted),
            "{policy}: DBSIZE is exact"
        );
        if policy == "noeviction" {
            assert!(refused > 0, "noeviction never refused");
            assert_eq!(evicted, 0);
            assert_eq!(
                client.get(&key(0)),
                Some(value_for(0)),
                "reads keep working"
            );
            assert_eq!(client.simple(&[b"DEL", b"key:0"]), ":1");
        } else if policy.starts_with("allkeys") {
            assert_eq!(
                refused,
                0,
                "{policy}: writes refused; server log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            assert!(evicted > 0, "{policy}: nothing evicted");
            let last = next - 1;
            assert_eq!(client.get(&key(last)), Some(value_for(last)), "{policy}");
        } else {
            // volatile-ttl may refuse a write while the evictor catches up (it answers
            // -OOM at once, never waits); it must evict, and only keys with a TTL exist.
            assert!(
                evicted > 0,
                "{policy}: nothing evicted; server log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        drop(client);
        server.terminate();
        // The next policy gets the whole file system.
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Fills the file system at `dir` with one file (larger writes first, then 4 KiB ones) until
/// it takes no more; returns its path.
fn fill_file_system(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    for chunk in [1 << 20, 4 << 10] {
        let bytes = vec![0xA5u8; chunk];
        while file.write_all(&bytes).is_ok() {}
    }
    path
}

fn info_persistence(client: &mut Client, field: &str) -> String {
    info_section_field(client, "persistence", field)
}

/// I8 for the WAL: when the engine WAL cannot be written (a full file system), writes answer
/// Redis's -MISCONF at once while reads keep answering; when space returns, writes are
/// accepted again without a restart, and after a kill -9 every acknowledged write is back.
#[test]
fn a_full_disk_under_the_wal_answers_misconf_and_recovers_when_space_returns() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let tmpfs = match Tmpfs::mount(16) {
        Ok(tmpfs) => tmpfs,
        Err(reason) => {
            println!("skipped: cannot mount a tmpfs ({reason})");
            return;
        }
    };
    let dir: PathBuf = tmpfs.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let log = tmpfs.path().join("server.log");
    let args = ["--maxmemory", "32mb", "--appendonly", "yes"];
    let server = BinaryServer::start_with_env(&dir, &args, &[], Some(&log));
    let mut client = Client::connect(server.port);
    let (mut acknowledged, refused) = client.set_range(0, 100);
    assert_eq!(refused, 0);

    let filler = fill_file_system(tmpfs.path());
    // SETs already under way when the disk filled are acknowledged (as Redis acknowledges
    // what is in its AOF buffer); within a bounded number the WAL's failure refuses them.
    let mut next = 100;
    let mut misconf = None;
    while next < 20_000 && misconf.is_none() {
        client
            .writer
            .write_all(&resp(&[b"SET", key(next).as_bytes(), &value_for(next)]))
            .unwrap();
        match client.line("SET").as_str() {
            "+OK" => acknowledged.push(next),
            refusal if refusal.starts_with("-MISCONF Errors writing to the AOF file:") => {
                misconf = Some(refusal.to_string())
            }
            other => panic!("SET {} answered {other:?}", key(next)),
        }
        next += 1;
    }
    let misconf = misconf.expect("writes still accepted with the disk full");
    println!("refused with {misconf:?} after {} SETs", next - 100);
    assert_eq!(
        info_persistence(&mut client, "aof_last_write_status"),
        "err"
    );
    // Reads, and commands that write nothing, keep answering.
    assert_eq!(client.simple(&[b"PING"]), "+PONG");
    assert_eq!(client.get(&key(0)), Some(value_for(0)));
    assert_eq!(
        client.simple(&[b"SET", b"refused", b"x"]),
        misconf,
        "every write is refused"
    );

    // Space returns: writes are accepted again by themselves.
    std::fs::remove_file(&filler).unwrap();
    let mut resumed = false;
    for _ in 0..300 {
        client
            .writer
            .write_all(&resp(&[b"SET", key(next).as_bytes(), &value_for(next)]))
            .unwrap();
        let reply = client.line("SET");
        if reply == "+OK" {
            acknowledged.push(next);
            resumed = true;
            next += 1;
            break;
        }
        assert!(reply.starts_with("-MISCONF"), "SET answered {reply:?}");
        next += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(resumed, "writes still refused 30 s after space returned");
    let (ok, refused) = client.set_range(next, next + 100);
    assert_eq!(refused, 0);
    acknowledged.extend(ok);
    assert_eq!(info_persistence(&mut client, "aof_last_write_status"), "ok");

    // Every acknowledged record on disk (the writer hands records to the OS within
    // milliseconds; wait for the fsync so the check does not depend on that), then kill -9:
    // the restart replays the WAL.
    let mut lag = String::new();
    for _ in 0..300 {
        lag = info_persistence(&mut client, "wal_fsync_lag_records");
        if lag == "0" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(lag, "0", "the WAL never caught up");
    drop(client);
    server.kill9();
    let server = BinaryServer::start_with_env(&dir, &args, &[], Some(&log));
    let mut client = Client::connect(server.port);
    assert_eq!(
        client.simple(&[b"DBSIZE"]),
        format!(":{}", acknowledged.len()),
        "server log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    for &i in &acknowledged {
        assert_eq!(client.get(&key(i)), Some(value_for(i)), "{}", key(i));
    }
    drop(client);
    server.terminate();
}
