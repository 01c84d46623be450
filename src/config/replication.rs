//! The `replication` section: whose replica this node is, how it authenticates to its
//! primary, and the primary's limits on its replicas (Redis's names in CONFIG).

use serde::{Deserialize, Serialize};

use super::params::{in_range, memory_in_range, parse_yes_no, yes_no, Mutability, Param};
use super::ByteSize;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationConfig {
    /// `"host port"` of the primary this node replicates (`--replicaof HOST PORT`); unset
    /// (the default), it is a primary. Needs `persistence.wal: true` on both nodes.
    pub replicaof: Option<String>,
    /// Password (and user) this replica AUTHs with at its primary.
    pub masterauth: Option<String>,
    pub masteruser: Option<String>,
    /// WAL bytes kept past checkpoints so replicas can resume partially after a disconnect
    /// (the backlog is the log itself). Default 64mb.
    pub repl_backlog_size: ByteSize,
    /// Replicas refuse clients' writes with -READONLY. Default true.
    pub replica_read_only: bool,
    /// While a replica has no link to its primary it still answers reads (stale data);
    /// false answers -MASTERDOWN instead. Default true.
    pub replica_serve_stale_data: bool,
    /// A primary refuses writes unless this many replicas acknowledged within
    /// `min_replicas_max_lag` seconds. Default 0 (off).
    pub min_replicas_to_write: u32,
    pub min_replicas_max_lag: u64,
    /// Seconds without a byte from the other side after which a link is dropped and
    /// reconnected. Default 60.
    pub repl_timeout: u64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            replicaof: None,
            masterauth: None,
            masteruser: None,
            repl_backlog_size: ByteSize(64 << 20),
            replica_read_only: true,
            replica_serve_stale_data: true,
            min_replicas_to_write: 0,
            min_replicas_max_lag: 10,
            repl_timeout: 60,
        }
    }
}

/// Parses `"host port"` (or `host:port`) into its parts.
pub fn parse_primary(text: &str) -> Result<(String, u16), String> {
    let mut parts = text.split_whitespace();
    let (host, port) = match (parts.next(), parts.next(), parts.next()) {
        (Some(host), Some(port), None) => (host, port),
        _ => return Err(format!("'{text}' is not 'host port'")),
    };
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|&port| port != 0)
        .ok_or_else(|| format!("'{port}' is not a port"))?;
    Ok((host.to_string(), port))
}

const LONG_MAX: i64 = i64::MAX;
const INT_MAX: i64 = i32::MAX as i64;

/// The replication parameters, as CONFIG GET lists them. `replicaof` changes through the
/// REPLICAOF command, as in Redis.
pub(super) const PARAMS: &[Param] = &[
    Param {
        name: "replicaof",
        mutability: Mutability::Immutable,
        get: |c| c.replication.replicaof.clone().unwrap_or_default(),
        set: |c, v| {
            c.replication.replicaof = (!v.trim().is_empty()).then(|| v.trim().to_string());
            Ok(())
        },
    },
    Param {
        name: "masterauth",
        mutability: Mutability::Live,
        get: |c| c.replication.masterauth.clone().unwrap_or_default(),
        set: |c, v| {
            c.replication.masterauth = (!v.is_empty()).then(|| v.to_string());
            Ok(())
        },
    },
    Param {
        name: "masteruser",
        mutability: Mutability::Live,
        get: |c| c.replication.masteruser.clone().unwrap_or_default(),
        set: |c, v| {
            c.replication.masteruser = (!v.is_empty()).then(|| v.to_string());
            Ok(())
        },
    },
    Param {
        name: "repl-backlog-size",
        mutability: Mutability::Live,
        get: |c| c.replication.repl_backlog_size.0.to_string(),
        set: |c, v| {
            c.replication.repl_backlog_size = memory_in_range(v, 1, LONG_MAX)?;
            Ok(())
        },
    },
    Param {
        name: "replica-read-only",
        mutability: Mutability::Live,
        get: |c| yes_no(c.replication.replica_read_only),
        set: |c, v| {
            c.replication.replica_read_only = parse_yes_no(v)?;
            Ok(())
        },
    },
    Param {
        name: "replica-serve-stale-data",
        mutability: Mutability::Live,
        get: |c| yes_no(c.replication.replica_serve_stale_data),
        set: |c, v| {
            c.replication.replica_serve_stale_data = parse_yes_no(v)?;
            Ok(())
        },
    },
    Param {
        name: "min-replicas-to-write",
        mutability: Mutability::Live,
        get: |c| c.replication.min_replicas_to_write.to_string(),
        set: |c, v| {
            c.replication.min_replicas_to_write = in_range(v, 0, INT_MAX)? as u32;
            Ok(())
        },
    },
    Param {
        name: "min-replicas-max-lag",
        mutability: Mutability::Live,
        get: |c| c.replication.min_replicas_max_lag.to_string(),
        set: |c, v| {
            c.replication.min_replicas_max_lag = in_range(v, 0, INT_MAX)? as u64;
            Ok(())
        },
    },
    Param {
        name: "repl-timeout",
        mutability: Mutability::Live,
        get: |c| c.replication.repl_timeout.to_string(),
        set: |c, v| {
            c.replication.repl_timeout = in_range(v, 1, INT_MAX)? as u64;
            Ok(())
        },
    },
];

/// Every field away from its default (the CONFIG round-trip test in `params.rs`).
#[cfg(test)]
pub(super) fn everything_changed() -> ReplicationConfig {
    ReplicationConfig {
        replicaof: Some("10.0.0.1 6380".into()),
        masterauth: Some("primary-secret".into()),
        masteruser: Some("replicator".into()),
        repl_backlog_size: ByteSize(3 << 20),
        replica_read_only: false,
        replica_serve_stale_data: false,
        min_replicas_to_write: 2,
        min_replicas_max_lag: 7,
        repl_timeout: 33,
    }
}
