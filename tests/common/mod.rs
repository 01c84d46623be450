//! Test servers: the real server in-process on port 0, or the built binary on a free port.
//! Each owns its temp directory; nothing depends on the working directory.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hypercache::config::{ByteSize, Config};
use hypercache::server::{Instance, Shared};

/// The server running inside the test process.
pub struct TestServer {
    pub port: u16,
    pub shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<(), String>>>,
    pub dir: tempfile::TempDir,
}

/// A small default configuration in a fresh directory.
pub fn test_config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.server.port = 0;
    config.server.threads = 2;
    config.storage.dir = dir.to_path_buf();
    config.storage.maxmemory = ByteSize(64 << 20);
    config
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with(|_| {})
    }

    pub fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        adjust(&mut config);
        let (sender, receiver) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let instance = Instance::open(config, None).await?;
                sender
                    .send((instance.port(), Arc::clone(instance.shared())))
                    .unwrap();
                instance.serve().await
            })
        });
        let (port, shared) = receiver.recv().expect("server started");
        TestServer {
            port,
            shared,
            thread: Some(thread),
            dir,
        }
    }

    pub fn client(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .unwrap()
            .get_connection()
            .unwrap()
    }

    pub fn raw(&self) -> RawClient {
        RawClient::connect(self.port)
    }

    /// Stops the server and waits for it (SHUTDOWN SAVE semantics).
    pub fn stop(mut self) -> tempfile::TempDir {
        self.shared.request_shutdown(true);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap().unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shared.request_shutdown(false);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A plain TCP client that speaks raw RESP bytes.
pub struct RawClient {
    pub stream: TcpStream,
}

impl RawClient {
    pub fn connect(port: u16) -> RawClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        RawClient { stream }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads until `expected` bytes arrived (or the peer closed), returning what came.
    pub fn read_exact_reply(&mut self, expected: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(10);
        while out.len() < expected && Instant::now() < deadline {
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
        out
    }

    /// Reads until the bytes received end with `suffix`.
    pub fn read_until(&mut self, suffix: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(10);
        while !out.ends_with(suffix) && Instant::now() < deadline {
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        assert!(
            out.ends_with(suffix),
            "never got {:?}: {:?}",
            String::from_utf8_lossy(suffix),
            String::from_utf8_lossy(&out)
        );
        out
    }

    /// One single-line reply (`:8\r\n`, `+OK\r\n`, `-ERR ...\r\n`), or None once the
    /// connection is closed or broken (a killed server).
    pub fn try_read_line(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        while !out.ends_with(b"\r\n") {
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        Some(out)
    }

    /// Sends `request` and expects exactly `reply`.
    pub fn roundtrip(&mut self, request: &[u8], reply: &[u8]) {
        self.send(request);
        let got = self.read_exact_reply(reply.len());
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(reply),
            "reply to {:?}",
            String::from_utf8_lossy(request)
        );
    }

    /// True once the server closed this connection.
    pub fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 1024];
        self.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// Encodes a command as a RESP multibulk.
pub fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The built `hypercache` binary, on a free port, in its own directory.
pub struct BinaryServer {
    pub child: Child,
    pub port: u16,
    /// The port that replaced `{free_port}` in the arguments and environment, if any (a
    /// second listener, such as the TLS port).
    pub extra_port: Option<u16>,
    pub dir: std::path::PathBuf,
    /// Where the child's stderr goes: the caller's file, or one of our own (kept for as long
    /// as the server, so a failure can quote it).
    stderr_path: std::path::PathBuf,
    _own_stderr: Option<tempfile::NamedTempFile>,
}

/// The peak resident memory of process `pid` (VmHWM), in bytes.
pub fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .expect("VmHWM in /proc/<pid>/status")
        * 1024
}

/// `len` bytes of xorshift noise from `seed`: neither zstd nor lz4 can shrink them, so a
/// memory test's bytes really are there.
pub fn incompressible_bytes(seed: u64, len: usize) -> bytes::Bytes {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let bytes: Vec<u8> = (0..len.div_ceil(8))
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .take(len)
        .collect();
    bytes::Bytes::from(bytes)
}

/// Runs a node script with ioredis on NODE_PATH (tools/setup.sh installs it into
/// `~/.cache/hypercache/npm`); returns its stdout and stderr.
pub fn run_node_with_ioredis(script: &str) -> (String, String) {
    let modules = std::path::Path::new(&std::env::var("HOME").unwrap())
        .join(".cache/hypercache/npm/node_modules");
    assert!(
        modules.join("ioredis").is_dir(),
        "ioredis is not installed: run tools/setup.sh"
    );
    let out = Command::new("node")
        .arg("-e")
        .arg(script)
        .env("NODE_PATH", &modules)
        .output()
        .expect("run node (tools/setup.sh installs it)");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The binary under test: `$HYPERCACHE_BIN` when set (say, a release build), else the one
/// cargo built for this test run.
pub fn binary_path() -> std::path::PathBuf {
    match std::env::var_os("HYPERCACHE_BIN") {
        Some(path) if !path.is_empty() => path.into(),
        _ => env!("CARGO_BIN_EXE_hypercache").into(),
    }
}

/// Builds another binary of this workspace (`hypercache-tool`, `hypercache-loadgen`) in the
/// profile of the running test and returns its path. Callers keep the path in a `OnceLock`
/// so each test binary builds it once.
pub fn build_workspace_binary(package: &str) -> std::path::PathBuf {
    // The same package set and targets as the test command (`cargo test --workspace
    // --all-targets`), so cargo resolves the same features and reuses that build: a plain
    // `cargo build -p` leaves out dev-dependencies, unifies features differently and so
    // compiles RocksDB a second time (~13 minutes on a cold CI target).
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "-q", "--workspace", "--all-targets"]);
    if !cfg!(debug_assertions) {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build");
    assert!(status.success(), "building {package} failed");
    // The test binary lives in <target>/<profile>/deps/.
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().join(package)
}

/// Fresh ports tried when the one picked was taken (by a parallel test) before the server
/// could bind it: a free port can only be picked, released and then passed on, so another
/// process may take it in between.
const PORT_ATTEMPTS: usize = 8;

/// The last lines of a log file, for a failure message.
fn log_tail(path: &Path, lines: usize) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Whether the server answering on `port` is process `pid`: after a port race, another
/// test's server may be the one that answers.
fn answers_as(port: u16, pid: u32) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
        .is_err()
    {
        return false;
    }
    let mut reader = std::io::BufReader::new(stream);
    let mut header = String::new();
    if std::io::BufRead::read_line(&mut reader, &mut header).is_err() {
        return false;
    }
    let Some(len) = header
        .strip_prefix('$')
        .and_then(|len| len.trim_end().parse::<usize>().ok())
    else {
        return false;
    };
    let mut body = vec![0u8; len];
    if reader.read_exact(&mut body).is_err() {
        return false;
    }
    String::from_utf8_lossy(&body)
        .lines()
        .any(|line| line == format!("process_id:{pid}"))
}

impl BinaryServer {
    pub fn start(dir: &Path, extra: &[&str]) -> BinaryServer {
        Self::start_with_env(dir, extra, &[], None)
    }

    /// Like [`BinaryServer::start`] with extra environment variables; the server's stderr
    /// is appended to `stderr_log` when given (else to a file of the server's own). Panics,
    /// quoting the end of that log, if the process exits before it answers; a port taken
    /// before the server bound it is retried on another port.
    ///
    /// The server refuses unknown `HYPERCACHE_*` variables, so none is inherited from the
    /// test's environment (test knobs like `HYPERCACHE_BIN` live there) except
    /// `HYPERCACHE_LOG`: the server sees exactly `env`.
    pub fn start_with_env(
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        stderr_log: Option<&Path>,
    ) -> BinaryServer {
        for _ in 0..PORT_ATTEMPTS {
            if let Some(server) = Self::try_start(dir, extra, env, stderr_log) {
                return server;
            }
        }
        panic!("hypercache found no free port in {PORT_ATTEMPTS} attempts");
    }

    /// One start on a fresh port; `None` if another process had taken the port.
    fn try_start(
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        stderr_log: Option<&Path>,
    ) -> Option<BinaryServer> {
        let port = free_port();
        // A second port the server must bind, fresh on every attempt like the first (a
        // port taken meanwhile makes the server exit with "Address already in use", and
        // the attempt is retried).
        let placeholder = "{free_port}";
        let uses_extra = extra.iter().any(|arg| arg.contains(placeholder))
            || env.iter().any(|(_, value)| value.contains(placeholder));
        let extra_port = uses_extra.then(free_port);
        let fill = |text: &str| match extra_port {
            Some(extra) => text.replace(placeholder, &extra.to_string()),
            None => text.to_string(),
        };
        let extra: Vec<String> = extra.iter().map(|arg| fill(arg)).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(name, value)| (name.to_string(), fill(value)))
            .collect();
        let (stderr_path, own_stderr) = match stderr_log {
            Some(path) => (path.to_path_buf(), None),
            None => {
                let file = tempfile::NamedTempFile::new().unwrap();
                (file.path().to_path_buf(), Some(file))
            }
        };
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_path)
            .unwrap();
        let log_start = stderr.metadata().map(|meta| meta.len()).unwrap_or(0);
        let mut command = Command::new(binary_path());
        for (name, _) in std::env::vars_os() {
            let text = name.to_string_lossy();
            if text.starts_with("HYPERCACHE_") && text != "HYPERCACHE_LOG" {
                command.env_remove(&name);
            }
        }
        let child = command
            .args(["--port", &port.to_string(), "--dir"])
            .arg(dir)
            .args(&extra)
            .envs(env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap();
        let mut server = BinaryServer {
            child,
            port,
            extra_port,
            dir: dir.to_path_buf(),
            stderr_path,
            _own_stderr: own_stderr,
        };
        server.wait_ready(log_start).then_some(server)
    }

    /// Waits until this child answers on its port: true once it does, false if it exited
    /// because the port was taken (its stderr from `log_start` on says so). Panics, quoting
    /// the child's stderr, on any other exit or after 30 s.
    fn wait_ready(&mut self, log_start: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        let pid = self.child.id();
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read(&self.stderr_path).unwrap_or_default();
                let this_run = String::from_utf8_lossy(&log[(log_start as usize).min(log.len())..]);
                if this_run.contains("Address already in use") {
                    return false;
                }
                panic!(
                    "hypercache binary exited before serving ({status}); stderr ends:\n{}",
                    log_tail(&self.stderr_path, 20)
                );
            }
            if answers_as(self.port, pid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "hypercache binary did not start on port {} within 30 s; stderr ends:\n{}",
            self.port,
            log_tail(&self.stderr_path, 20)
        );
    }

    pub fn client(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) with a pid we spawned; no memory is touched.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().unwrap()
    }

    /// Sends SIGKILL (no chance to flush or sync anything) and waits for the exit status.
    pub fn kill9(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) with a pid we spawned and have not yet waited for; no memory is
        // touched.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGKILL);
        }
        self.child.wait().unwrap()
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a redis-py (or other python3) script given inline and asserts what it prints, showing
/// its stderr when the output differs: the scripts exercise a client nobody here wrote.
pub fn assert_python_prints(script: &str, expected_stdout: &str) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run python3 (tools/setup.sh installs it)");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        expected_stdout,
        "python3 stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
