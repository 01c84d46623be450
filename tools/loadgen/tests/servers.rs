//! Drives Debian's `redis-server` and `memcached` with the built binary: load, verify, run,
//! then a value overwritten behind the tool's back must make `verify` fail. Each test skips
//! (with a message) when its server is not installed.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

const KEYS: &str = "2000";

/// Kills the server however the test ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn installed(program: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        println!("skipped: {program} is not installed");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn loadgen(protocol: &str, port: u16, args: &[&str]) -> Output {
    let port = port.to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_hypercache-loadgen"))
        .args(args)
        .args([
            "--port",
            &port,
            "--protocol",
            protocol,
            "--keys",
            KEYS,
            "--value-size",
            "300",
            "--connections",
            "8",
            "--connect-timeout",
            "10",
            "--json",
        ])
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

fn report(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn assert_succeeds(output: &Output) -> Value {
    let report = report(output);
    assert!(output.status.success(), "{:?}: {report}", output.status);
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["wrong_values"], 0, "{report}");
    report
}

/// load, verify, run, then `corrupt` (which overwrites key 42 with a wrong value of the same
/// length) and a `verify` that must fail naming that key.
fn exercise(protocol: &str, port: u16, corrupt: impl FnOnce()) {
    let load = assert_succeeds(&loadgen(protocol, port, &["load"]));
    assert_eq!(load["writes"], 2000);
    assert_eq!(load["reads"], 0);
    assert_eq!(load["latency_us"]["write"]["count"], 2000);

    let verify = assert_succeeds(&loadgen(protocol, port, &["verify"]));
    assert_eq!(verify["hits"], 2000);
    assert_eq!(verify["misses"], 0);

    let run = assert_succeeds(&loadgen(
        protocol,
        port,
        &[
            "run",
            "--duration",
            "2",
            "--interval",
            "1",
            "--distribution",
            "zipf",
            "--absent-ratio",
            "0.1",
        ],
    ));
    assert!(run["ops"].as_u64().unwrap() > 0, "{run}");
    assert!(run["reads"].as_u64().unwrap() > 0, "{run}");
    assert!(run["writes"].as_u64().unwrap() > 0, "{run}");
    assert!(run["absent_reads"].as_u64().unwrap() > 0, "{run}");
    assert_eq!(run["absent_hits"], 0, "{run}");
    assert_eq!(run["hit_ratio"], 1.0, "{run}");
    assert_eq!(run["intervals"].as_array().unwrap().len(), 2, "{run}");
    let interval_ops: u64 = run["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["ops"].as_u64().unwrap())
        .sum();
    assert_eq!(interval_ops, run["ops"].as_u64().unwrap(), "{run}");

    corrupt();
    let output = loadgen(protocol, port, &["verify"]);
    let verify = report(&output);
    assert_eq!(output.status.code(), Some(1), "{verify}");
    assert_eq!(verify["wrong_values"], 1, "{verify}");
    assert_eq!(verify["hits"], 1999, "{verify}");
    let sample = verify["wrong_value_samples"][0].as_str().unwrap();
    assert!(sample.starts_with("key:000000000042:"), "{sample}");
}

/// Sends `request` on a fresh connection and checks the whole reply.
fn raw_exchange(port: u16, request: &[u8], expected_reply: &[u8]) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(request).unwrap();
    let mut reply = vec![0; expected_reply.len()];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&reply),
        String::from_utf8_lossy(expected_reply)
    );
}

#[test]
fn redis_server() {
    if !installed("redis-server") {
        return;
    }
    let port = free_port();
    let _server = Server(
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    exercise("resp", port, || {
        let mut request = b"*3\r\n$3\r\nSET\r\n$16\r\nkey:000000000042\r\n$300\r\n".to_vec();
        request.extend_from_slice(&[b'x'; 300]);
        request.extend_from_slice(b"\r\n");
        raw_exchange(port, &request, b"+OK\r\n");
    });
}

#[test]
fn memcached() {
    if !installed("memcached") {
        return;
    }
    // memcached refuses to run as root unless told which user to be; elsewhere -u is ignored.
    let user = Command::new("id").arg("-un").output().unwrap().stdout;
    let user = String::from_utf8(user).unwrap();
    let port = free_port();
    let _server = Server(
        Command::new("memcached")
            .args(["-p", &port.to_string(), "-U", "0", "-l", "127.0.0.1"])
            .args(["-m", "64", "-u", user.trim()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    exercise("memcache", port, || {
        let mut request = b"set key:000000000042 0 0 300\r\n".to_vec();
        request.extend_from_slice(&[b'x'; 300]);
        request.extend_from_slice(b"\r\n");
        raw_exchange(port, &request, b"STORED\r\n");
    });
}

/// A server that accepts connections and reads requests but never answers: `load` and
/// `verify` must give up after `--stall-timeout` with an error, not wait forever.
#[test]
fn a_server_that_stops_answering_ends_a_sweep_with_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            // Reads whatever arrives, so the load generator's writes never block.
            std::thread::spawn(move || while stream.read(&mut [0; 4096]).is_ok_and(|n| n > 0) {});
        }
    });
    for sweep in ["load", "verify"] {
        let output = loadgen("resp", port, &[sweep, "--stall-timeout", "1"]);
        let report = report(&output);
        assert_eq!(output.status.code(), Some(1), "{report}");
        assert!(report["errors"].as_u64().unwrap() > 0, "{report}");
        let sample = report["error_samples"][0].as_str().unwrap();
        assert!(sample.contains("stopped answering"), "{sample}");
    }
}
