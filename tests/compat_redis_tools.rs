//! Clients nobody here wrote: Debian's redis-cli (including --pipe) and redis-benchmark
//! against the built binary. tools/setup.sh installs redis-tools; without it these tests
//! fail with a message saying so (they are part of the suite, not optional).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::BinaryServer;

fn tool(name: &str) -> Command {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{name} is not installed: run tools/setup.sh (installs redis-tools)"
    );
    Command::new(name)
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = tool("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn redis_cli_commands_and_pipe_mode() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &["--maxmemory", "32mb"]);
    let port = server.port;
    assert_eq!(cli(port, &["PING"]), "PONG\n");
    assert_eq!(cli(port, &["SET", "greeting", "hello world"]), "OK\n");
    assert_eq!(cli(port, &["GET", "greeting"]), "hello world\n");
    assert_eq!(cli(port, &["--raw", "INCRBY", "n", "5"]), "5\n");
    assert_eq!(cli(port, &["-n", "2", "SET", "x", "in-db-2"]), "OK\n");
    assert_eq!(cli(port, &["-n", "2", "DBSIZE"]), "1\n");
    assert!(cli(port, &["INFO", "server"]).contains("redis_version:"));
    assert!(cli(port, &["-3", "HELLO", "3"]).contains("proto"));

    // redis-cli --pipe: 20,000 commands in the mass-insertion protocol.
    let mut input = Vec::new();
    for i in 0..20_000 {
        let key = format!("pipe:{i}");
        let value = format!("value-{i}");
        input.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
                key.len(),
                value.len()
            )
            .as_bytes(),
        );
    }
    let mut child = tool("redis-cli")
        .args(["-p", &port.to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("errors: 0, replies: 20000"), "{report}");
    assert_eq!(cli(port, &["GET", "pipe:19999"]), "value-19999\n");
    assert_eq!(cli(port, &["DBSIZE"]), "20002\n");
}

#[test]
fn redis_benchmark_runs_clean() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &["--maxmemory", "64mb"]);
    let out = tool("redis-benchmark")
        .args(["-p", &server.port.to_string()])
        .args([
            "-t",
            "set,get,incr,mset,ping",
            "-n",
            "2000",
            "-c",
            "10",
            "-P",
            "4",
            "-q",
        ])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for test in [
        "SET",
        "GET",
        "INCR",
        "MSET (10 keys)",
        "PING_INLINE",
        "PING_MBULK",
    ] {
        assert!(
            report
                .split(['\r', '\n'])
                .any(|line| line.trim().starts_with(&format!("{test}:"))
                    && line.contains("requests per second")),
            "{test} missing from: {report}"
        );
    }
    assert!(!report.contains("ERR"), "{report}");
}
