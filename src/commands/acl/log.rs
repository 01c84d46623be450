//! ACL LOG: the most recent denials (a command, a key, a failed login), newest first, with
//! repeats of the same denial within a minute folded into one entry's count, as Redis does.
//! Bounded by `acllog-max-len`.

use std::collections::VecDeque;

use parking_lot::Mutex;

use crate::protocol::Reply;

/// Why an entry was made (Redis's `reason` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenialReason {
    Command,
    Key,
    Auth,
}

impl DenialReason {
    fn name(self) -> &'static str {
        match self {
            DenialReason::Command => "command",
            DenialReason::Key => "key",
            DenialReason::Auth => "auth",
        }
    }
}

/// Where the denied command ran (Redis's `context`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenialContext {
    TopLevel,
    Multi,
    /// A script's redis.call.
    Lua,
}

impl DenialContext {
    fn name(self) -> &'static str {
        match self {
            DenialContext::TopLevel => "toplevel",
            DenialContext::Multi => "multi",
            DenialContext::Lua => "lua",
        }
    }
}

/// One denial, as recorded.
pub struct Denial {
    pub reason: DenialReason,
    pub context: DenialContext,
    /// The command ("config|set"), the key, or "AUTH".
    pub object: String,
    pub username: String,
    /// The client's CLIENT LIST line.
    pub client_info: String,
}

struct Entry {
    denial: Denial,
    count: u64,
    id: u64,
    created_ms: u64,
    updated_ms: u64,
}

/// Redis folds a denial into an earlier entry when they agree and the entry is this recent.
const GROUPING_WINDOW_MS: u64 = 60_000;

#[derive(Default)]
pub struct AclLog {
    entries: Mutex<VecDeque<Entry>>,
    next_id: Mutex<u64>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

impl AclLog {
    pub fn record(&self, denial: Denial, max_len: usize) {
        let now = now_ms();
        let mut entries = self.entries.lock();
        let similar = entries.iter().position(|entry| {
            let kept = &entry.denial;
            kept.reason == denial.reason
                && kept.context == denial.context
                && kept.object == denial.object
                && kept.username == denial.username
                && now.saturating_sub(entry.updated_ms) < GROUPING_WINDOW_MS
        });
        if let Some(position) = similar {
            let mut entry = entries.remove(position).expect("position is in range");
            entry.count += 1;
            entry.updated_ms = now;
            entry.denial.client_info = denial.client_info;
            entries.push_front(entry);
        } else {
            let id = {
                let mut next = self.next_id.lock();
                *next += 1;
                *next - 1
            };
            entries.push_front(Entry {
                denial,
                count: 1,
                id,
                created_ms: now,
                updated_ms: now,
            });
        }
        entries.truncate(max_len);
    }

    pub fn reset(&self) {
        self.entries.lock().clear();
    }

    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// ACL LOG [count]: the newest `count` entries, in Redis's field order.
    pub fn reply(&self, count: usize) -> Reply {
        let now = now_ms();
        let entries = self.entries.lock();
        let field = |name: &str| Reply::bulk(name.to_string());
        Reply::Array(
            entries
                .iter()
                .take(count)
                .map(|entry| {
                    let denial = &entry.denial;
                    Reply::Map(vec![
                        (field("count"), Reply::Integer(entry.count as i64)),
                        (field("reason"), field(denial.reason.name())),
                        (field("context"), field(denial.context.name())),
                        (field("object"), field(&denial.object)),
                        (field("username"), field(&denial.username)),
                        (
                            field("age-seconds"),
                            Reply::Double(now.saturating_sub(entry.created_ms) as f64 / 1000.0),
                        ),
                        (field("client-info"), field(&denial.client_info)),
                        (field("entry-id"), Reply::Integer(entry.id as i64)),
                        (
                            field("timestamp-created"),
                            Reply::Integer(entry.created_ms as i64),
                        ),
                        (
                            field("timestamp-last-updated"),
                            Reply::Integer(entry.updated_ms as i64),
                        ),
                    ])
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denial(object: &str) -> Denial {
        Denial {
            reason: DenialReason::Key,
            context: DenialContext::TopLevel,
            object: object.into(),
            username: "alice".into(),
            client_info: String::new(),
        }
    }

    #[test]
    fn repeats_fold_into_one_entry_and_the_log_is_bounded() {
        let log = AclLog::default();
        log.record(denial("a"), 3);
        log.record(denial("b"), 3);
        log.record(denial("a"), 3);
        assert_eq!(log.len(), 2);
        let Reply::Array(entries) = log.reply(10) else {
            panic!("an array")
        };
        let Reply::Map(newest) = &entries[0] else {
            panic!("a map")
        };
        assert_eq!(newest[0].1, Reply::Integer(2), "a counted twice");
        assert_eq!(newest[3].1, Reply::bulk("a".to_string()));
        for object in ["c", "d", "e"] {
            log.record(denial(object), 3);
        }
        assert_eq!(log.len(), 3);
        log.reset();
        assert!(log.is_empty());
    }
}
