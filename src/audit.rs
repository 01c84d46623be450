//! The audit log (issue 14): security events as JSON lines appended to the file
//! `security.audit_log` names. It owns the file and the line format; callers say what
//! happened. Events: a failed AUTH, CONFIG SET, SHUTDOWN, FLUSHALL and FLUSHDB, and a
//! refused connection (protected mode, the address lists, the connection caps).
//!
//! It must never write a secret (a password given to AUTH, or the value of `requirepass`
//! in CONFIG SET), never fail or delay the command it records beyond one short write, and
//! never stop the server: a write that fails is reported once in the server log and the
//! log goes on trying.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use serde_json::{json, Value};

/// CONFIG parameters whose values are secrets: recorded as "(redacted)".
const SECRET_PARAMETERS: &[&str] = &["requirepass", "masterauth"];

#[derive(Default)]
pub struct AuditLog {
    file: Mutex<Option<File>>,
    /// A write failed and the server log said so (reset by the next one that works).
    failing: AtomicBool,
}

impl AuditLog {
    /// Starts appending to `path` (created if missing).
    pub fn open(&self, path: &Path) -> Result<(), String> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|err| format!("security.audit_log {}: {err}", path.display()))?;
        *self.file.lock() = Some(file);
        Ok(())
    }

    /// A connection refused before it became a client (so no client id).
    pub fn connection_refused(&self, addr: SocketAddr, reason: &str) {
        self.record(
            "connection_refused",
            None,
            json!({ "addr": addr.to_string(), "reason": reason }),
        );
    }

    /// Appends one event: its name, the client (id and address) when there is one, and
    /// what else describes it.
    pub fn record(&self, event: &str, client: Option<(u64, SocketAddr)>, mut detail: Value) {
        let mut file = self.file.lock();
        let Some(file) = file.as_mut() else {
            return;
        };
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as u64);
        if let Value::Object(fields) = &mut detail {
            fields.insert("ts_ms".into(), json!(unix_ms));
            fields.insert("event".into(), json!(event));
            if let Some((id, addr)) = client {
                fields.insert("client_id".into(), json!(id));
                fields.insert("addr".into(), json!(addr.to_string()));
            }
        }
        let mut line = detail.to_string();
        line.push('\n');
        match file.write_all(line.as_bytes()) {
            Ok(()) => self.failing.store(false, Ordering::Relaxed),
            Err(err) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(%err, "cannot write the audit log; events are lost until it works again");
                }
            }
        }
    }
}

/// CONFIG SET's parameters and values for the audit log, secrets redacted.
pub fn config_set_detail(pairs: &[(&[u8], &[u8])]) -> Value {
    let parameters: serde_json::Map<String, Value> = pairs
        .iter()
        .map(|(name, value)| {
            let name = String::from_utf8_lossy(name).to_ascii_lowercase();
            let shown = if SECRET_PARAMETERS.contains(&name.as_str()) {
                "(redacted)".to_string()
            } else {
                String::from_utf8_lossy(value).into_owned()
            };
            (name, Value::String(shown))
        })
        .collect();
    json!({ "parameters": parameters })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_json_lines_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::default();
        log.record("ignored", None, json!({}));
        log.open(&path).unwrap();
        let client = Some((7, "10.0.0.9:5555".parse().unwrap()));
        log.record("auth_failed", client, json!({ "user": "default" }));
        log.record(
            "config_set",
            client,
            config_set_detail(&[(b"requirepass", b"hunter2"), (b"maxmemory", b"1gb")]),
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(
            lines.len(),
            2,
            "nothing is recorded before the file is open"
        );
        assert_eq!(lines[0]["event"], "auth_failed");
        assert_eq!(lines[0]["addr"], "10.0.0.9:5555");
        assert_eq!(lines[0]["client_id"], 7);
        assert_eq!(lines[1]["parameters"]["requirepass"], "(redacted)");
        assert_eq!(lines[1]["parameters"]["maxmemory"], "1gb");
    }
}
