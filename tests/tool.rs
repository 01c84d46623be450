//! `hypercache-tool` on directories written by the real server: check and recover a WAL
//! damaged at the tail and in the middle; export into Debian's redis-server with
//! `redis-cli --pipe`; import and serve; compact drops expired keys and keeps the rest;
//! checkpoint create / list / restore; a live server's directory is refused.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::{build_workspace_binary, free_port, BinaryServer};
use redis::Commands;

const WAL: [&str; 4] = ["--appendonly", "yes", "--appendfsync", "always"];

/// The tool's binary, built once for this test run in the same profile.
fn tool_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| build_workspace_binary("hypercache-tool"))
}

fn tool(args: &[&str], dir: &Path) -> Output {
    let output = Command::new(tool_binary())
        .args(args)
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    output
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{}", text(output)))
}

/// A directory the real server wrote with the WAL on, then was killed (so the WAL holds
/// records after the last checkpoint).
fn crashed_wal_dir(keys: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &WAL);
    let mut con = server.client();
    for i in 0..keys {
        let _: () = con.set(format!("k{i}"), format!("value-{i}")).unwrap();
    }
    drop(con);
    server.kill9();
    dir
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| std::fs::metadata(path).unwrap().len() > 0)
        .collect();
    found.sort();
    found
}

#[test]
fn check_and_recover_a_torn_tail_and_mid_log_damage() {
    let dir = crashed_wal_dir(300);
    let out = tool(&["check", "--json"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let report = json(&out);
    assert!(
        report["wal"]["records"].as_u64().unwrap() >= 300,
        "{report}"
    );

    // A torn tail: reported, then truncated by recover, then the directory is sound.
    let last = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    bytes.extend_from_slice(&[77, 0, 0, 0, 9, 9]);
    std::fs::write(&last, &bytes).unwrap();
    let out = tool(&["check"], dir.path());
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("torn record"), "{}", text(&out));
    let out = tool(&["recover"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let out = tool(&["check"], dir.path());
    assert!(out.status.success(), "{}", text(&out));

    // Damage in the middle: check names it, recover refuses without --salvage, salvage drops
    // exactly the damaged record(s) and the server starts with everything else.
    let first = segments(dir.path()).remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&first, &bytes).unwrap();
    let out = tool(&["check", "--json"], dir.path());
    assert!(!out.status.success());
    let problems = json(&out)["problems"].to_string();
    assert!(problems.contains("--salvage"), "{problems}");
    let out = tool(&["recover"], dir.path());
    assert!(!out.status.success());
    assert!(text(&out).contains("--salvage"), "{}", text(&out));
    let out = tool(&["recover", "--salvage", "--json"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let dropped = json(&out)["dropped"].as_array().unwrap().len();
    assert!((1..=3).contains(&dropped), "{}", text(&out));

    let server = BinaryServer::start(dir.path(), &WAL);
    let mut con = server.client();
    let size: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert!((297..300).contains(&size), "{size}");
}

#[test]
fn check_refuses_a_live_server_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &WAL);
    let mut con = server.client();
    let _: () = con.set("a", "1").unwrap();
    let _: () = redis::cmd("SAVE").query(&mut con).unwrap();
    let out = tool(&["check"], dir.path());
    assert!(!out.status.success());
    assert!(text(&out).contains("--force"), "{}", text(&out));
    let out = tool(&["check", "--force", "--json"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json(&out)["live_server"], true);
    let out = tool(&["export"], dir.path());
    assert!(!out.status.success(), "{}", text(&out));
}

/// Debian's redis-server on a free port in its own directory.
struct Redis {
    port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (tools/setup.sh installs it)");
        let redis = Redis {
            port,
            child,
            _dir: dir,
        };
        for _ in 0..200 {
            if redis.client().is_ok() {
                return redis;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server did not start");
    }

    fn client(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?.get_connection()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn export_loads_into_redis_and_import_serves_the_same_data() {
    let dir = tempfile::tempdir().unwrap();
    // A tiny hot tier, so most keys are exported from the cold tier.
    let server = BinaryServer::start_with_env(
        dir.path(),
        &[],
        &[("HYPERCACHE_STORAGE__HOT_MAX_BYTES", "128kb")],
        None,
    );
    let mut con = server.client();
    for i in 0..2000 {
        let _: () = con
            .set(format!("k{i}"), format!("v{i}-{}", "x".repeat(i % 50)))
            .unwrap();
    }
    let _: () = con.set_ex("ttl-key", "soon", 5000).unwrap();
    // A hash longer than one HSET line of the export, expiring; a set in another database.
    let fields: Vec<(String, String)> = (0..2500)
        .map(|i| (format!("f{i}"), format!("{i}")))
        .collect();
    let _: () = con.hset_multiple("big-hash", &fields).unwrap();
    let _: () = con.expire("big-hash", 5000).unwrap();
    let _: () = redis::cmd("SELECT").arg(3).query(&mut con).unwrap();
    let _: () = con.set("in-db3", "three").unwrap();
    let _: () = con.sadd("tags", &["a", "b", "c"]).unwrap();
    let _: () = con.set("binary", b"\x00\r\n\xff".to_vec()).unwrap();
    // A FUNCTION library travels with the export, ahead of the keys.
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(LIBRARY)
        .query(&mut con)
        .unwrap();
    drop(con);
    assert!(server.terminate().success());

    let export = dir.path().join("export.resp");
    let out = tool(
        &["export", "--out", export.to_str().unwrap(), "--json"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));

    // Into Debian's redis-server with redis-cli --pipe.
    let redis = Redis::start();
    let piped = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "redis-cli -p {} --pipe < {}",
            redis.port,
            export.display()
        ))
        .output()
        .unwrap();
    assert!(piped.status.success(), "{}", text(&piped));
    assert!(
        String::from_utf8_lossy(&piped.stdout).contains("errors: 0"),
        "{}",
        text(&piped)
    );
    let mut r = redis.client().unwrap();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut r).unwrap(), 2002);
    check_collections(&mut r);
    assert_eq!(
        r.get::<_, String>("k1234").unwrap(),
        format!("v1234-{}", "x".repeat(34))
    );
    let ttl: i64 = r.ttl("ttl-key").unwrap();
    assert!(ttl > 4900 && ttl <= 5000, "{ttl}");
    assert_eq!(greet(&mut r), "hello export");
    let _: () = redis::cmd("SELECT").arg(3).query(&mut r).unwrap();
    assert_eq!(r.get::<_, Vec<u8>>("binary").unwrap(), b"\x00\r\n\xff");

    // Into a fresh HyperCache directory offline, then served.
    let fresh = import_into_fresh_dir(&export);
    let server = BinaryServer::start(fresh.path(), &[]);
    let mut con = server.client();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut con).unwrap(), 2002);
    check_collections(&mut con);
    assert_eq!(con.get::<_, String>("k7").unwrap(), "v7-xxxxxxx");
    let ttl: i64 = con.ttl("ttl-key").unwrap();
    assert!(ttl > 4900 && ttl <= 5000, "{ttl}");
    assert_eq!(greet(&mut con), "hello export");
    let _: () = redis::cmd("SELECT").arg(3).query(&mut con).unwrap();
    assert_eq!(con.get::<_, String>("in-db3").unwrap(), "three");
}

/// `hypercache-tool import` of `export` into a new directory, which it returns; every
/// command of the stream must succeed.
fn import_into_fresh_dir(export: &Path) -> tempfile::TempDir {
    let fresh = tempfile::tempdir().unwrap();
    let out = Command::new(tool_binary())
        .args([
            "import",
            "--json",
            "--input",
            export.to_str().unwrap(),
            "--dir",
        ])
        .arg(fresh.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json(&out)["errors"], 0);
    fresh
}

/// Hash field deadlines travel as HPEXPIREAT lines (which Redis 7.4 and Valkey 9 load;
/// Redis 7.0 has no field expiry) through export and import into a fresh HyperCache.
#[test]
fn export_and_import_keep_field_deadlines() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &[]);
    let mut con = server.client();
    let _: () = con
        .hset_multiple("session", &[("user", "ada"), ("token", "t0k")])
        .unwrap();
    let at = 4_000_000_000_000_u64;
    let set: Vec<i64> = redis::cmd("HPEXPIREAT")
        .arg("session")
        .arg(at)
        .arg("FIELDS")
        .arg(1)
        .arg("token")
        .query(&mut con)
        .unwrap();
    assert_eq!(set, [1]);
    drop(con);
    assert!(server.terminate().success());
    let export = dir.path().join("export.resp");
    let out = tool(&["export", "--out", export.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let fresh = import_into_fresh_dir(&export);
    let server = BinaryServer::start(fresh.path(), &[]);
    let mut con = server.client();
    let times: Vec<i64> = redis::cmd("HPEXPIRETIME")
        .arg("session")
        .arg("FIELDS")
        .arg(2)
        .arg("user")
        .arg("token")
        .query(&mut con)
        .unwrap();
    assert_eq!(times, [-1, at as i64]);
}

/// The hash and set written above, as a server that loaded the export holds them.
fn check_collections(con: &mut redis::Connection) {
    let hash: std::collections::HashMap<String, String> = con.hgetall("big-hash").unwrap();
    assert_eq!(hash.len(), 2500);
    assert_eq!(hash["f1999"], "1999");
    let ttl: i64 = con.ttl("big-hash").unwrap();
    assert!(ttl > 4900 && ttl <= 5000, "{ttl}");
    let _: () = redis::cmd("SELECT").arg(3).query(con).unwrap();
    let tags: std::collections::BTreeSet<String> = con.smembers("tags").unwrap();
    assert_eq!(tags.into_iter().collect::<Vec<_>>(), ["a", "b", "c"]);
    let _: () = redis::cmd("SELECT").arg(0).query(con).unwrap();
}

const LIBRARY: &str =
    "#!lua name=greetings\nredis.register_function('greet', function(keys, args) return 'hello ' .. args[1] end)";

fn greet(con: &mut redis::Connection) -> String {
    redis::cmd("FCALL")
        .arg("greet")
        .arg(0)
        .arg("export")
        .query(con)
        .unwrap()
}

#[test]
fn compact_drops_expired_keys_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &[]);
    let mut con = server.client();
    let _: () = redis::cmd("DEBUG")
        .arg("SET-ACTIVE-EXPIRE")
        .arg(0)
        .query(&mut con)
        .unwrap();
    // One absolute deadline, after the clean shutdown below: the keys are still live when the
    // server saves them, and expired when the tool runs.
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        + Duration::from_secs(4);
    for i in 0..500 {
        let _: () = redis::cmd("SET")
            .arg(format!("short{i}"))
            .arg("x".repeat(200))
            .arg("PXAT")
            .arg(deadline.as_millis() as u64)
            .query(&mut con)
            .unwrap();
        let _: () = con.set(format!("keep{i}"), "y".repeat(200)).unwrap();
    }
    drop(con);
    assert!(server.terminate().success());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    assert!(
        now < deadline,
        "the writes took longer than the deadline allows"
    );
    std::thread::sleep(deadline - now + Duration::from_millis(200));

    let out = tool(&["compact", "--json"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let report = json(&out);
    assert_eq!(report["expired_keys_removed"], 500, "{report}");
    assert_eq!(report["keys"], 500, "{report}");

    let server = BinaryServer::start(dir.path(), &[]);
    let mut con = server.client();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut con).unwrap(), 500);
    assert_eq!(con.get::<_, String>("keep42").unwrap(), "y".repeat(200));
    assert_eq!(con.get::<_, Option<String>>("short42").unwrap(), None);
}

#[test]
fn checkpoint_create_list_and_restore() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &WAL);
    let mut con = server.client();
    let _: () = con.set("state", "before").unwrap();
    drop(con);
    assert!(server.terminate().success());

    let out = tool(&["checkpoint", "create", "--json"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let id = json(&out)["id"].as_str().unwrap().to_string();
    let out = tool(&["checkpoint", "list", "--json"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json(&out)[0]["id"], id.as_str());

    let server = BinaryServer::start(dir.path(), &WAL);
    let mut con = server.client();
    let _: () = con.set("state", "after").unwrap();
    let _: () = con.set("newer", "1").unwrap();
    drop(con);
    server.kill9();

    let out = tool(&["checkpoint", "restore", &id], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("moved aside"), "{}", text(&out));
    let server = BinaryServer::start(dir.path(), &WAL);
    let mut con = server.client();
    assert_eq!(con.get::<_, String>("state").unwrap(), "before");
    assert_eq!(con.get::<_, Option<String>>("newer").unwrap(), None);
}
