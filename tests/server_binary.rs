//! The built binary: flags, config validation, clean shutdown on SIGTERM with a warm
//! restart, and a kill -9 after which no stale value may come back (pure-cache mode).

mod common;

use std::process::Command;

use common::BinaryServer;
use redis::Commands;

fn hypercache() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hypercache"))
}

#[test]
fn check_config_accepts_the_shipped_file_and_explains_errors() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/hypercache.yaml");
    let out = hypercache()
        .args(["--check-config", shipped])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "server:\n  prot: 1\nstorage:\n  maxmemory: lots\n").unwrap();
    let out = hypercache()
        .arg("--check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.prot: unknown key"), "{stderr}");
}

#[test]
fn bad_flags_and_environment_fail_at_startup_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = hypercache()
        .arg("--dir")
        .arg(dir.path())
        .args(["--port", "0", "--maxmemory", "12zb"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown unit"));

    let out = hypercache()
        .arg("--dir")
        .arg(dir.path())
        .args(["--port", "0"])
        .env("HYPERCACHE_SERVER__MAXCLIENTS", "many")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("server.maxclients"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sigterm_saves_and_the_restart_is_warm() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &["--maxmemory", "32mb"]);
    let mut con = server.client();
    for i in 0..2000 {
        let _: () = con.set(format!("k{i}"), format!("v{i}")).unwrap();
    }
    let _: () = redis::cmd("EXPIRE")
        .arg("k1")
        .arg(1000)
        .query(&mut con)
        .unwrap();
    let _: () = con.del("k2").unwrap();
    let status = server.terminate();
    assert!(status.success(), "{status:?}");

    let server = BinaryServer::start(dir.path(), &["--maxmemory", "32mb"]);
    let mut con = server.client();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut con).unwrap(), 1999);
    assert_eq!(con.get::<_, String>("k1999").unwrap(), "v1999");
    assert_eq!(con.get::<_, Option<String>>("k2").unwrap(), None);
    let ttl: i64 = con.ttl("k1").unwrap();
    assert!(ttl > 990 && ttl <= 1000, "{ttl}");
}

#[test]
fn after_kill_9_without_the_wal_no_stale_value_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &["--maxmemory", "32mb"]);
    let mut con = server.client();
    let _: () = con.set("k", "old").unwrap();
    drop(con);
    let status = server.terminate();
    assert!(status.success());

    // "old" is now in the cold tier. Overwrite it in memory only, then crash.
    let mut server = BinaryServer::start(dir.path(), &["--maxmemory", "32mb"]);
    let mut con = server.client();
    assert_eq!(con.get::<_, String>("k").unwrap(), "old");
    let _: () = con.set("k", "new").unwrap();
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(server);

    let server = BinaryServer::start(dir.path(), &["--maxmemory", "32mb"]);
    let mut con = server.client();
    let value: Option<String> = con.get("k").unwrap();
    assert_ne!(
        value.as_deref(),
        Some("old"),
        "a stale value came back after a crash"
    );
}
