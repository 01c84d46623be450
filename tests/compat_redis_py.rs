//! redis-py, a client nobody here wrote, against the built binary in RESP2 and RESP3.
//! tools/setup.sh installs it from PyPI when missing.

mod common;

use std::process::Command;

use common::BinaryServer;

#[test]
fn redis_py_works_unchanged() {
    let available = Command::new("python3")
        .args(["-c", "import redis"])
        .status()
        .map(|status| status.success())
        .unwrap_or(false);
    assert!(available, "redis-py is not installed: run tools/setup.sh");
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &["--maxmemory", "32mb"]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/compat/redis_py_check.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(server.port.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
