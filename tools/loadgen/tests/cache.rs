//! The `cache` workload end to end: against Debian's `redis-server` with a small maxmemory
//! (misses, fills, no failures), against values it did not write (flagged), and against a
//! fake server that loses updates (stale values flagged). The `redis-server` test skips (with
//! a message) when it is not installed.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn loadgen(port: u16, args: &[&str]) -> (Output, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_hypercache-loadgen"))
        .arg("cache")
        .args(args)
        .args([
            "--port",
            &port.to_string(),
            "--connect-timeout",
            "10",
            "--json",
        ])
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    (output, report)
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn against_redis_with_evictions_and_against_values_it_did_not_write() {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok();
    if !found {
        println!("skipped: redis-server is not installed");
        return;
    }
    let port = free_port();
    let _server = Server(
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // 5,000 keys of 1 KB: about 5 MB against 2 MB, so Redis must evict.
    let common = [
        "--keys",
        "5000",
        "--distribution",
        "zipf",
        "--connections",
        "8",
        "--pipeline",
        "4",
    ];
    let (output, report) = loadgen(
        port,
        &[
            &common[..],
            &[
                "--duration",
                "2",
                "--warmup",
                "1",
                "--warmup-pipeline",
                "16",
            ],
        ]
        .concat(),
    );
    assert!(output.status.success(), "{report}");
    assert_eq!(report["command"], "cache");
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["wrong_values"], 0, "{report}");
    let n = |field: &str| report[field].as_u64().unwrap();
    assert!(
        n("misses") > 0 && n("hits") > 0 && n("writes") > 0,
        "{report}"
    );
    assert_eq!(n("hits") + n("misses"), n("reads"), "{report}");
    assert_eq!(n("ops"), n("reads") + n("writes") + n("fills"), "{report}");
    // Every miss is filled by its connection's next batch, except those in flight at the
    // start and end of the window.
    assert!(n("fills").abs_diff(n("misses")) <= 8 * 4 * 2, "{report}");
    let ratio = report["hit_ratio"].as_f64().unwrap();
    assert!(ratio > 0.0 && ratio < 1.0, "{report}");
    let evicted: u64 = redis_cli(port, &["info", "stats"])
        .lines()
        .find_map(|line| line.trim().strip_prefix("evicted_keys:"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(evicted > 0);

    // A second run over the first one's values: versions it never issued.
    let (output, report) = loadgen(port, &[&common[..], &["--duration", "1"]].concat());
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(report["wrong_values"].as_u64().unwrap() > 0, "{report}");
    let sample = report["wrong_value_samples"][0].as_str().unwrap();
    assert!(sample.contains("was never written"), "{sample}");

    // Key 1 holding key 0's value: caught whatever the version.
    redis_cli(port, &["flushall"]);
    let two_keys = ["--keys", "2", "--connections", "1", "--read-ratio", "1"];
    let (output, report) = loadgen(port, &[&two_keys[..], &["--duration", "0.5"]].concat());
    assert!(output.status.success(), "{report}");
    assert_eq!(
        redis_cli(
            port,
            &["copy", "key:000000000000", "key:000000000001", "replace"]
        ),
        "1"
    );
    let (output, report) = loadgen(port, &[&two_keys[..], &["--duration", "0.5"]].concat());
    assert_eq!(output.status.code(), Some(1), "{report}");
    let samples = report["wrong_value_samples"].to_string();
    assert!(
        samples.contains("key:000000000001: holds the value of key index 0"),
        "{samples}"
    );
}

/// Reads one RESP array of bulk strings; `None` at end of stream.
fn read_command(reader: &mut BufReader<TcpStream>) -> Option<Vec<Vec<u8>>> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let count: usize = line.trim().strip_prefix('*')?.parse().ok()?;
    let mut parts = Vec::with_capacity(count);
    for _ in 0..count {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let len: usize = line.trim().strip_prefix('$')?.parse().ok()?;
        let mut data = vec![0; len + 2];
        reader.read_exact(&mut data).ok()?;
        data.truncate(len);
        parts.push(data);
    }
    Some(parts)
}

/// A server that keeps the first value ever SET for a key and ignores later ones (a lost
/// update): once a newer SET is acknowledged, the old value it returns is stale.
#[test]
fn a_server_that_loses_updates_is_caught_returning_stale_values() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut store: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        // One connection at a time is all the test uses.
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut writer = stream.try_clone().unwrap();
            let mut reader = BufReader::new(stream);
            while let Some(command) = read_command(&mut reader) {
                let reply = match command[0].to_ascii_uppercase().as_slice() {
                    b"GET" => match store.get(&command[1]) {
                        Some(value) => {
                            let mut reply = format!("${}\r\n", value.len()).into_bytes();
                            reply.extend_from_slice(value);
                            reply.extend_from_slice(b"\r\n");
                            reply
                        }
                        None => b"$-1\r\n".to_vec(),
                    },
                    b"SET" => {
                        store
                            .entry(command[1].clone())
                            .or_insert_with(|| command[2].clone());
                        b"+OK\r\n".to_vec()
                    }
                    _ => b"-ERR unknown command\r\n".to_vec(),
                };
                if writer.write_all(&reply).is_err() {
                    break;
                }
            }
        }
    });
    let (output, report) = loadgen(
        port,
        &[
            "--keys",
            "3",
            "--connections",
            "1",
            "--read-ratio",
            "0.5",
            "--value-size",
            "100",
            "--duration",
            "0.5",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(report["wrong_values"].as_u64().unwrap() > 0, "{report}");
    let sample = report["wrong_value_samples"][0].as_str().unwrap();
    assert!(sample.contains("stale: version"), "{sample}");
}
