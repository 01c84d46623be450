//! CONFIG parameters of the defences that are not about the network: the ACL's `aclfile`
//! (set at start) and `acllog-max-len`, `busy-reply-threshold` (alias `lua-time-limit`,
//! live), the bound on how long a request waits for keys another command holds, and
//! `maxmemory-clients`, the bound on all clients' buffers. The users
//! live in `commands::acl` and the wait in the engine; this module only shows and parses.

use super::params::{in_range, optional_path_shown, parse_optional_path, Mutability, Param};
use super::ClientMemoryLimit;

pub const PARAMS: &[Param] = &[
    Param {
        name: "aclfile",
        mutability: Mutability::Immutable,
        get: |c| optional_path_shown(&c.security.aclfile),
        set: |c, v| {
            c.security.aclfile = parse_optional_path(v);
            Ok(())
        },
    },
    Param {
        name: "acllog-max-len",
        mutability: Mutability::Live,
        get: |c| c.security.acllog_max_len.to_string(),
        set: |c, v| {
            c.security.acllog_max_len = in_range(v, 0, i64::from(i32::MAX))? as usize;
            Ok(())
        },
    },
    busy_reply_threshold("busy-reply-threshold"),
    // Redis's older name for the same setting.
    busy_reply_threshold("lua-time-limit"),
    Param {
        name: "maxmemory-clients",
        mutability: Mutability::Live,
        get: |c| match &c.limits.maxmemory_clients {
            Some(limit) => limit.clone(),
            None => format!("{}%", c.storage.memory_split.clients_percent),
        },
        set: |c, v| {
            ClientMemoryLimit::parse(v)?;
            // The share's own value leaves the default in place (it follows the split).
            let share = format!("{}%", c.storage.memory_split.clients_percent);
            if !(c.limits.maxmemory_clients.is_none() && v.trim() == share) {
                c.limits.maxmemory_clients = Some(v.to_string());
            }
            Ok(())
        },
    },
];

const fn busy_reply_threshold(name: &'static str) -> Param {
    Param {
        name,
        mutability: Mutability::Live,
        get: |c| c.limits.busy_reply_threshold_ms.to_string(),
        set: |c, v| {
            c.limits.busy_reply_threshold_ms = in_range(v, 0, i64::MAX)? as u64;
            Ok(())
        },
    }
}
