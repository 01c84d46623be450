//! The configuration under Redis's parameter names, for CONFIG GET and CONFIG SET: one
//! [`Param`] per name, saying how its value is shown and parsed. Values are shown as Redis
//! shows them (sizes as plain byte counts, booleans as yes/no, unset as "") and every shown
//! value parses back to the same configuration. HyperCache's own settings use
//! `hypercache-*` names. This module only reads and writes `Config` values; deciding what a
//! change does to the running server is CONFIG SET's job.

use std::path::PathBuf;

use super::{ByteSize, ColdBackend, Config, EvictionPolicy, LoggingConfig, SyncPolicy};

/// Whether CONFIG SET can change a parameter. Whatever cannot change may still be "set"
/// to the value it has, so everything CONFIG GET shows can be set back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutability {
    /// The running server picks a change up at once.
    Live,
    /// Redis changes it at run time, HyperCache cannot: a value that does not parse gets
    /// Redis's error for it, another valid value "can't set immutable config".
    Fixed,
    /// Fixed at startup in Redis too: any other value is refused as immutable, before the
    /// values are even looked at.
    Immutable,
}

/// One CONFIG parameter.
pub struct Param {
    /// Lower case, as CONFIG GET lists it.
    pub name: &'static str,
    pub mutability: Mutability,
    pub get: fn(&Config) -> String,
    /// Parses `value` into `config`. The error is Redis's text for the reason, as it follows
    /// "CONFIG SET failed (possibly related to argument '...') - ".
    pub set: fn(&mut Config, &str) -> Result<(), String>,
}

/// Looks a parameter up by name, case-insensitively (as Redis does).
pub fn lookup(name: &[u8]) -> Option<&'static Param> {
    all().find(|param| param.name.as_bytes().eq_ignore_ascii_case(name))
}

/// Every parameter, in the order CONFIG GET lists them: the general ones, then `tls-*`.
pub fn all() -> impl Iterator<Item = &'static Param> {
    PARAMS
        .iter()
        .chain(super::network::PARAMS)
        .chain(super::tls::PARAMS)
        .chain(super::security::PARAMS)
        .chain(super::replication::PARAMS)
}

/// Redis's limits for `int` and `long long` parameters.
const INT_MAX: i64 = i32::MAX as i64;
const LONG_MAX: i64 = i64::MAX;
/// Redis will not let the bulk or query buffer limits go below 1mb.
const MIN_BUFFER_LIMIT: i64 = 1 << 20;

/// The general parameters, in the order CONFIG GET lists them.
const PARAMS: &[Param] = &[
    Param {
        name: "bind",
        mutability: Mutability::Fixed,
        get: |c| c.server.bind.clone(),
        set: |c, v| {
            c.server.bind = v.trim().to_string();
            Ok(())
        },
    },
    Param {
        name: "port",
        mutability: Mutability::Fixed,
        get: |c| c.server.port.to_string(),
        set: |c, v| {
            c.server.port = in_range(v, 0, 65535)? as u16;
            Ok(())
        },
    },
    Param {
        name: "timeout",
        mutability: Mutability::Live,
        get: |c| c.server.timeout.to_string(),
        set: |c, v| {
            c.server.timeout = in_range(v, 0, INT_MAX)? as u64;
            Ok(())
        },
    },
    Param {
        name: "shutdown-timeout",
        mutability: Mutability::Live,
        get: |c| c.server.shutdown_timeout.to_string(),
        set: |c, v| {
            c.server.shutdown_timeout = in_range(v, 0, INT_MAX)? as u64;
            Ok(())
        },
    },
    Param {
        name: "maxclients",
        mutability: Mutability::Live,
        get: |c| c.server.maxclients.to_string(),
        set: |c, v| {
            c.server.maxclients = in_range(v, 1, i64::from(u32::MAX))? as usize;
            Ok(())
        },
    },
    Param {
        name: "databases",
        mutability: Mutability::Immutable,
        get: |c| c.storage.databases.to_string(),
        set: |c, v| {
            c.storage.databases = in_range(v, 1, i64::from(u16::MAX))? as u16;
            Ok(())
        },
    },
    Param {
        name: "dir",
        mutability: Mutability::Fixed,
        get: |c| c.storage.dir.display().to_string(),
        set: |c, v| {
            c.storage.dir = PathBuf::from(v);
            Ok(())
        },
    },
    Param {
        name: "maxmemory",
        mutability: Mutability::Fixed,
        get: |c| c.storage.maxmemory.0.to_string(),
        set: |c, v| {
            c.storage.maxmemory = memory_in_range(v, 0, LONG_MAX)?;
            Ok(())
        },
    },
    // RAM pressure moves keys to the cold tier; the policy decides which keys leave the
    // whole cache once `maxdisk` is reached too (DESIGN section 8).
    Param {
        name: "maxmemory-policy",
        mutability: Mutability::Live,
        get: |c| c.storage.maxmemory_policy.name().into(),
        set: |c, v| {
            c.storage.maxmemory_policy = EvictionPolicy::parse(v).ok_or_else(|| {
                let names: Vec<&str> = EvictionPolicy::ALL.iter().map(|p| p.name()).collect();
                one_of(&names)
            })?;
            Ok(())
        },
    },
    Param {
        name: "maxmemory-samples",
        mutability: Mutability::Live,
        get: |c| c.storage.maxmemory_samples.to_string(),
        set: |c, v| {
            c.storage.maxmemory_samples = in_range(v, 1, INT_MAX)? as u32;
            Ok(())
        },
    },
    Param {
        name: "lfu-log-factor",
        mutability: Mutability::Live,
        get: |c| c.storage.lfu_log_factor.to_string(),
        set: |c, v| {
            c.storage.lfu_log_factor = in_range(v, 0, INT_MAX)? as u32;
            Ok(())
        },
    },
    Param {
        name: "lfu-decay-time",
        mutability: Mutability::Live,
        get: |c| c.storage.lfu_decay_time.to_string(),
        set: |c, v| {
            c.storage.lfu_decay_time = in_range(v, 0, INT_MAX)? as u32;
            Ok(())
        },
    },
    // HyperCache's own: the cold tier's disk budget (0 shows the default is in use; INFO
    // shows the bytes it came to).
    Param {
        name: "maxdisk",
        mutability: Mutability::Live,
        get: |c| c.storage.maxdisk.map_or(0, |size| size.0).to_string(),
        set: |c, v| {
            let size = memory_in_range(v, 0, LONG_MAX)?;
            c.storage.maxdisk = (size.0 != 0).then_some(size);
            Ok(())
        },
    },
    // There are no RDB snapshots; SAVE and shutdown checkpoint the cold tier instead.
    Param {
        name: "save",
        mutability: Mutability::Fixed,
        get: |_| String::new(),
        set: |_, v| {
            // Redis's syntax: pairs of <seconds> <changes>.
            let numbers: Option<Vec<i64>> = v.split_whitespace().map(parse_integer).collect();
            match numbers {
                Some(numbers)
                    if numbers.len().is_multiple_of(2) && numbers.iter().all(|n| *n >= 0) =>
                {
                    fixed(v.trim(), "")
                }
                _ => Err("Invalid save parameters".into()),
            }
        },
    },
    Param {
        name: "appendonly",
        mutability: Mutability::Fixed,
        get: |c| yes_no(c.persistence.wal),
        set: |c, v| {
            c.persistence.wal = parse_yes_no(v)?;
            Ok(())
        },
    },
    Param {
        name: "appendfsync",
        mutability: Mutability::Fixed,
        get: |c| c.persistence.sync.as_str().into(),
        set: |c, v| {
            c.persistence.sync =
                SyncPolicy::parse(v).ok_or_else(|| one_of(&["always", "everysec", "no"]))?;
            Ok(())
        },
    },
    Param {
        name: "hypercache-checkpoint-interval-secs",
        mutability: Mutability::Immutable,
        get: |c| c.persistence.checkpoint_interval_secs.to_string(),
        set: |c, v| {
            c.persistence.checkpoint_interval_secs = in_range(v, 0, LONG_MAX)? as u64;
            Ok(())
        },
    },
    Param {
        name: "hypercache-checkpoint-wal-bytes",
        mutability: Mutability::Immutable,
        get: |c| c.persistence.checkpoint_wal_bytes.0.to_string(),
        set: |c, v| {
            c.persistence.checkpoint_wal_bytes = memory_in_range(v, 0, LONG_MAX)?;
            Ok(())
        },
    },
    Param {
        name: "hypercache-retain-checkpoints",
        mutability: Mutability::Immutable,
        get: |c| c.persistence.retain_checkpoints.to_string(),
        set: |c, v| {
            c.persistence.retain_checkpoints = in_range(v, 0, INT_MAX)? as u32;
            Ok(())
        },
    },
    Param {
        name: "hypercache-wal-segment-bytes",
        mutability: Mutability::Immutable,
        get: |c| c.persistence.wal_segment_bytes.0.to_string(),
        set: |c, v| {
            c.persistence.wal_segment_bytes = memory_in_range(v, 1 << 20, LONG_MAX)?;
            Ok(())
        },
    },
    Param {
        name: "protected-mode",
        mutability: Mutability::Live,
        get: |c| yes_no(c.security.protected_mode),
        set: |c, v| {
            c.security.protected_mode = parse_yes_no(v)?;
            Ok(())
        },
    },
    Param {
        name: "requirepass",
        mutability: Mutability::Live,
        get: |c| c.security.requirepass.clone().unwrap_or_default(),
        set: |c, v| {
            c.security.requirepass = (!v.is_empty()).then(|| v.to_string());
            Ok(())
        },
    },
    Param {
        name: "loglevel",
        mutability: Mutability::Live,
        get: |c| c.logging.level.clone(),
        set: |c, v| {
            const LEVELS: &[&str] = &["debug", "verbose", "notice", "warning"];
            let level = v.to_ascii_lowercase();
            if !LEVELS.contains(&level.as_str()) || LoggingConfig::tracing_level(&level).is_none() {
                return Err(one_of(LEVELS));
            }
            c.logging.level = level;
            Ok(())
        },
    },
    Param {
        name: "logfile",
        mutability: Mutability::Immutable,
        get: |c| optional_path_shown(&c.logging.file),
        set: |c, v| {
            c.logging.file = parse_optional_path(v);
            Ok(())
        },
    },
    // The active expirer runs ten times a second; it is not tunable.
    Param {
        name: "hz",
        mutability: Mutability::Fixed,
        get: |_| "10".into(),
        set: |_, v| {
            // Redis takes any int and clamps it to 1..=500.
            let hz = in_range(v, 0, INT_MAX)?.clamp(1, 500);
            fixed(&hz.to_string(), "10")
        },
    },
    Param {
        name: "proto-max-bulk-len",
        mutability: Mutability::Live,
        get: |c| c.limits.proto_max_bulk_len.0.to_string(),
        set: |c, v| {
            c.limits.proto_max_bulk_len = memory_in_range(v, MIN_BUFFER_LIMIT, LONG_MAX)?;
            Ok(())
        },
    },
    Param {
        name: "client-query-buffer-limit",
        mutability: Mutability::Live,
        get: |c| c.limits.client_query_buffer_limit.0.to_string(),
        set: |c, v| {
            c.limits.client_query_buffer_limit = memory_in_range(v, MIN_BUFFER_LIMIT, LONG_MAX)?;
            Ok(())
        },
    },
    Param {
        name: "client-output-buffer-limit",
        mutability: Mutability::Live,
        get: |c| {
            let limits = &c.limits;
            format!(
                "normal {} {} {} slave 0 0 0 pubsub 0 0 0",
                limits.client_output_buffer_hard_limit.0,
                limits.client_output_buffer_soft_limit.0,
                limits.client_output_buffer_soft_seconds
            )
        },
        set: set_output_buffer_limits,
    },
    Param {
        name: "slowlog-log-slower-than",
        mutability: Mutability::Live,
        get: |c| c.slowlog.log_slower_than.to_string(),
        set: |c, v| {
            c.slowlog.log_slower_than = in_range(v, -1, LONG_MAX)?;
            Ok(())
        },
    },
    Param {
        name: "slowlog-max-len",
        mutability: Mutability::Live,
        get: |c| c.slowlog.max_len.to_string(),
        set: |c, v| {
            c.slowlog.max_len = usize::try_from(in_range(v, 0, LONG_MAX)?).unwrap_or(usize::MAX);
            Ok(())
        },
    },
    Param {
        name: "hypercache-threads",
        mutability: Mutability::Immutable,
        get: |c| c.server.threads.to_string(),
        set: |c, v| {
            c.server.threads = in_range(v, 0, INT_MAX)? as usize;
            Ok(())
        },
    },
    Param {
        name: "hypercache-blocking-threads",
        mutability: Mutability::Immutable,
        get: |c| c.server.blocking_threads.to_string(),
        set: |c, v| {
            c.server.blocking_threads = in_range(v, 1, 4096)? as usize;
            Ok(())
        },
    },
    Param {
        name: "hypercache-cold-readers",
        mutability: Mutability::Immutable,
        get: |c| c.server.cold_readers.to_string(),
        set: |c, v| {
            c.server.cold_readers = in_range(v, 0, 64)? as usize;
            Ok(())
        },
    },
    Param {
        name: "hypercache-hot-shards",
        mutability: Mutability::Immutable,
        get: |c| c.storage.hot_shards.to_string(),
        set: |c, v| {
            c.storage.hot_shards = in_range(v, 1, INT_MAX)? as usize;
            Ok(())
        },
    },
    Param {
        name: "hypercache-hot-max-bytes",
        mutability: Mutability::Immutable,
        // 0 = no cap, as Redis shows an unset maxmemory.
        get: |c| c.storage.hot_max_bytes.map_or(0, |size| size.0).to_string(),
        set: |c, v| {
            let size = memory_in_range(v, 0, LONG_MAX)?;
            c.storage.hot_max_bytes = (size.0 > 0).then_some(size);
            Ok(())
        },
    },
    Param {
        name: "hypercache-compress-min-bytes",
        mutability: Mutability::Immutable,
        get: |c| c.storage.compress_min_bytes.to_string(),
        set: |c, v| {
            c.storage.compress_min_bytes = memory_in_range(v, 0, LONG_MAX)?.0 as usize;
            Ok(())
        },
    },
    Param {
        name: "hypercache-filter",
        mutability: Mutability::Immutable,
        get: |c| yes_no(c.storage.filter),
        set: |c, v| {
            c.storage.filter = parse_yes_no(v)?;
            Ok(())
        },
    },
    Param {
        name: "hypercache-filter-fingerprint-bits",
        mutability: Mutability::Immutable,
        get: |c| c.storage.filter_fingerprint_bits.to_string(),
        set: |c, v| {
            c.storage.filter_fingerprint_bits = in_range(v, 8, 32)? as u32;
            Ok(())
        },
    },
    Param {
        name: "hypercache-filter-initial-capacity",
        mutability: Mutability::Immutable,
        get: |c| c.storage.filter_initial_capacity.to_string(),
        set: |c, v| {
            c.storage.filter_initial_capacity = in_range(v, 1, LONG_MAX)? as usize;
            Ok(())
        },
    },
    Param {
        name: "hypercache-cold-backend",
        mutability: Mutability::Immutable,
        get: |c| match c.storage.cold_backend {
            ColdBackend::Rocksdb => "rocksdb".into(),
            ColdBackend::Memory => "memory".into(),
        },
        set: |c, v| {
            c.storage.cold_backend = match v.to_ascii_lowercase().as_str() {
                "rocksdb" => ColdBackend::Rocksdb,
                "memory" => ColdBackend::Memory,
                _ => return Err(one_of(&["rocksdb", "memory"])),
            };
            Ok(())
        },
    },
    Param {
        name: "hypercache-memory-hot-percent",
        mutability: Mutability::Immutable,
        get: |c| c.storage.memory_split.hot_percent.to_string(),
        set: |c, v| {
            c.storage.memory_split.hot_percent = percent(v)?;
            Ok(())
        },
    },
    Param {
        name: "hypercache-memory-cold-cache-percent",
        mutability: Mutability::Immutable,
        get: |c| c.storage.memory_split.cold_cache_percent.to_string(),
        set: |c, v| {
            c.storage.memory_split.cold_cache_percent = percent(v)?;
            Ok(())
        },
    },
    Param {
        name: "hypercache-memory-memtable-percent",
        mutability: Mutability::Immutable,
        get: |c| {
            c.storage
                .memory_split
                .memtable_percent_of_cold_cache
                .to_string()
        },
        set: |c, v| {
            c.storage.memory_split.memtable_percent_of_cold_cache = percent(v)?;
            Ok(())
        },
    },
    Param {
        name: "hypercache-memory-filter-percent",
        mutability: Mutability::Immutable,
        get: |c| c.storage.memory_split.filter_percent.to_string(),
        set: |c, v| {
            c.storage.memory_split.filter_percent = percent(v)?;
            Ok(())
        },
    },
    Param {
        name: "hypercache-memory-clients-percent",
        mutability: Mutability::Immutable,
        get: |c| c.storage.memory_split.clients_percent.to_string(),
        set: |c, v| {
            c.storage.memory_split.clients_percent = percent(v)?;
            Ok(())
        },
    },
    Param {
        name: "hypercache-log-format",
        mutability: Mutability::Immutable,
        get: |c| c.logging.format.clone(),
        set: |c, v| {
            let format = v.to_ascii_lowercase();
            if !matches!(format.as_str(), "text" | "json") {
                return Err(one_of(&["text", "json"]));
            }
            c.logging.format = format;
            Ok(())
        },
    },
];

/// An integer as Redis's `string2ll` reads it: optional '-', digits, no '+', no spaces, no
/// leading zeros.
fn parse_integer(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && text != "-0";
    canonical.then(|| text.parse().ok()).flatten()
}

pub(super) fn in_range(text: &str, min: i64, max: i64) -> Result<i64, String> {
    let value = parse_integer(text)
        .ok_or_else(|| "argument couldn't be parsed into an integer".to_string())?;
    check_range(value, min, max)
}

fn check_range(value: i64, min: i64, max: i64) -> Result<i64, String> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "argument must be between {min} and {max} inclusive"
        ))
    }
}

/// A size such as `1048576`, `64mb` or `1gb` (Redis's `memtoll`).
fn parse_memory(text: &str) -> Option<ByteSize> {
    if text.trim() != text {
        return None;
    }
    ByteSize::parse(text).ok()
}

pub(super) fn memory_in_range(text: &str, min: i64, max: i64) -> Result<ByteSize, String> {
    let size = parse_memory(text).ok_or_else(|| "argument must be a memory value".to_string())?;
    let value = i64::try_from(size.0).map_err(|_| "argument must be a memory value")?;
    check_range(value, min, max).map(|_| size)
}

fn percent(text: &str) -> Result<u8, String> {
    Ok(in_range(text, 0, 100)? as u8)
}

pub(super) fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.into()
}

pub(super) fn parse_yes_no(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err("argument must be 'yes' or 'no'".into()),
    }
}

/// An optional file as CONFIG shows it: its path, or "" when unset.
pub(super) fn optional_path_shown(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|path| path.display().to_string())
        .unwrap_or_default()
}

/// An optional file as CONFIG SET takes it: "" unsets it.
pub(super) fn parse_optional_path(text: &str) -> Option<PathBuf> {
    (!text.is_empty()).then(|| PathBuf::from(text))
}

pub(super) fn one_of(choices: &[&str]) -> String {
    format!(
        "argument(s) must be one of the following: {}",
        choices.join(", ")
    )
}

/// A parameter whose value HyperCache cannot change: only that value parses.
fn fixed(text: &str, only: &str) -> Result<(), String> {
    if text.eq_ignore_ascii_case(only) {
        Ok(())
    } else {
        Err("can't set immutable config".into())
    }
}

/// `client-output-buffer-limit`: groups of `<class> <hard> <soft> <soft seconds>`, with
/// Redis's error texts. Only the normal class exists here: there are no replicas and no
/// pub/sub, so their limits are shown as 0 (none) and can only be set to that.
fn set_output_buffer_limits(config: &mut Config, text: &str) -> Result<(), String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    if !words.len().is_multiple_of(4) {
        return Err("Wrong number of arguments in buffer limit configuration.".into());
    }
    let mut limits = config.limits.clone();
    for group in words.chunks(4) {
        let class = group[0].to_ascii_lowercase();
        if !matches!(class.as_str(), "normal" | "slave" | "replica" | "pubsub") {
            return Err("Invalid client class specified in buffer limit configuration.".into());
        }
        let (Some(hard), Some(soft), Some(seconds)) = (
            parse_memory(group[1]),
            parse_memory(group[2]),
            parse_integer(group[3]).and_then(|seconds| u64::try_from(seconds).ok()),
        ) else {
            return Err(
                "Error in hard, soft or soft_seconds setting in buffer limit configuration.".into(),
            );
        };
        if class == "normal" {
            limits.client_output_buffer_hard_limit = hard;
            limits.client_output_buffer_soft_limit = soft;
            limits.client_output_buffer_soft_seconds = seconds;
        } else if hard.0 != 0 || soft.0 != 0 || seconds != 0 {
            return Err(format!(
                "HyperCache has no {class} clients; only the normal class can be limited."
            ));
        }
    }
    config.limits = limits;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EngineConfig, LimitsConfig, MemorySplit, PersistenceConfig};
    use crate::config::{LoggingConfig, SecurityConfig, ServerConfig, SlowlogConfig};

    fn param(name: &str) -> &'static Param {
        lookup(name.as_bytes()).unwrap()
    }

    /// Every field differs from its default. The literal names every field, so a new
    /// config field does not compile here until it is given a value (and a parameter).
    fn everything_changed() -> Config {
        Config {
            server: ServerConfig {
                bind: "0.0.0.0".into(),
                port: 7000,
                maxclients: 50,
                timeout: 30,
                shutdown_timeout: 3,
                threads: 4,
                blocking_threads: 3,
                cold_readers: 5,
            },
            storage: EngineConfig {
                dir: PathBuf::from("/var/lib/hc"),
                databases: 4,
                maxmemory: ByteSize(64 << 20),
                memory_split: MemorySplit {
                    hot_percent: 50,
                    cold_cache_percent: 30,
                    memtable_percent_of_cold_cache: 40,
                    filter_percent: 5,
                    clients_percent: 15,
                },
                maxdisk: Some(ByteSize(3 << 30)),
                maxmemory_policy: EvictionPolicy::VolatileLfu,
                maxmemory_samples: 7,
                lfu_log_factor: 20,
                lfu_decay_time: 3,
                hot_shards: 8,
                hot_max_bytes: Some(ByteSize(1 << 20)),
                compress_min_bytes: 0,
                filter: false,
                filter_fingerprint_bits: 12,
                filter_initial_capacity: 1000,
                cold_backend: ColdBackend::Memory,
            },
            persistence: PersistenceConfig {
                wal: true,
                sync: SyncPolicy::Always,
                checkpoint_interval_secs: 60,
                checkpoint_wal_bytes: ByteSize(32 << 20),
                retain_checkpoints: 3,
                wal_segment_bytes: ByteSize(8 << 20),
            },
            replication: crate::config::replication::everything_changed(),
            limits: LimitsConfig {
                proto_max_bulk_len: ByteSize(2 << 20),
                client_query_buffer_limit: ByteSize(3 << 20),
                client_output_buffer_hard_limit: ByteSize(4 << 20),
                client_output_buffer_soft_limit: ByteSize(1 << 20),
                client_output_buffer_soft_seconds: 10,
                busy_reply_threshold_ms: 250,
                maxmemory_clients: Some("5%".into()),
            },
            security: SecurityConfig {
                requirepass: Some("secret".into()),
                protected_mode: false,
                allow: vec!["10.0.0.0/8".into(), "::1".into()],
                deny: vec!["10.9.0.0/16".into()],
                maxclients_per_ip: 8,
                max_commands_per_second: 1000,
                audit_log: Some(PathBuf::from("/var/log/hc-audit.jsonl")),
                users: Vec::new(),
                aclfile: Some(PathBuf::from("/etc/hc/users.acl")),
                acllog_max_len: 64,
            },
            tls: crate::config::TlsConfig {
                port: 6380,
                cert_file: Some(PathBuf::from("/etc/hc/cert.pem")),
                key_file: Some(PathBuf::from("/etc/hc/key.pem")),
                ca_cert_file: Some(PathBuf::from("/etc/hc/ca.pem")),
                auth_clients: crate::config::TlsAuthClients::Optional,
                protocols: "TLSv1.3".into(),
                ciphersuites: "TLS_CHACHA20_POLY1305_SHA256".into(),
                ciphers: "ECDHE-RSA-AES256-GCM-SHA384".into(),
            },
            logging: LoggingConfig {
                level: "warning".into(),
                format: "json".into(),
                file: Some(PathBuf::from("/tmp/hc.log")),
            },
            slowlog: SlowlogConfig {
                log_slower_than: -1,
                max_len: 5,
            },
        }
    }

    #[test]
    fn names_are_unique_and_lower_case() {
        let every: Vec<&Param> = all().collect();
        for (index, param) in every.iter().enumerate() {
            assert_eq!(param.name, param.name.to_ascii_lowercase());
            assert!(
                every[..index].iter().all(|other| other.name != param.name),
                "{} listed twice",
                param.name
            );
        }
        assert_eq!(lookup(b"MaxMemory").unwrap().name, "maxmemory");
        assert!(lookup(b"nosuch").is_none());
    }

    #[test]
    fn every_shown_value_parses_back_unchanged() {
        for config in [Config::default(), everything_changed()] {
            for param in all() {
                let shown = (param.get)(&config);
                let mut reparsed = config.clone();
                (param.set)(&mut reparsed, &shown)
                    .unwrap_or_else(|err| panic!("{} {shown:?}: {err}", param.name));
                assert_eq!(reparsed, config, "{} {shown:?}", param.name);
            }
        }
    }

    #[test]
    fn every_config_field_has_a_parameter() {
        let changed = everything_changed();
        let mut rebuilt = Config::default();
        for param in all() {
            let value = (param.get)(&changed);
            if value != (param.get)(&Config::default()) {
                (param.set)(&mut rebuilt, &value).unwrap();
            }
        }
        assert_eq!(rebuilt, changed);
    }

    #[test]
    fn values_are_shown_as_redis_shows_them() {
        let config = Config::default();
        let show = |name: &str| (param(name).get)(&config);
        assert_eq!(show("maxmemory"), "1073741824");
        assert_eq!(show("proto-max-bulk-len"), "536870912");
        assert_eq!(show("appendonly"), "no");
        assert_eq!(show("requirepass"), "");
        assert_eq!(show("save"), "");
        assert_eq!(
            show("client-output-buffer-limit"),
            "normal 0 0 0 slave 0 0 0 pubsub 0 0 0"
        );
    }

    #[test]
    fn parse_errors_use_redis_texts() {
        let mut config = Config::default();
        let mut set = |name: &str, value: &str| (param(name).set)(&mut config, value);
        assert_eq!(
            set("timeout", "abc").unwrap_err(),
            "argument couldn't be parsed into an integer"
        );
        assert_eq!(
            set("timeout", "-1").unwrap_err(),
            "argument must be between 0 and 2147483647 inclusive"
        );
        assert_eq!(
            set("timeout", "+1").unwrap_err(),
            "argument couldn't be parsed into an integer"
        );
        assert_eq!(
            set("maxmemory", "-1").unwrap_err(),
            "argument must be a memory value"
        );
        assert_eq!(
            set("proto-max-bulk-len", "10").unwrap_err(),
            "argument must be between 1048576 and 9223372036854775807 inclusive"
        );
        assert_eq!(
            set("slowlog-log-slower-than", "-5").unwrap_err(),
            "argument must be between -1 and 9223372036854775807 inclusive"
        );
        assert_eq!(
            set("appendonly", "maybe").unwrap_err(),
            "argument must be 'yes' or 'no'"
        );
        assert_eq!(
            set("loglevel", "loud").unwrap_err(),
            "argument(s) must be one of the following: debug, verbose, notice, warning"
        );
        assert_eq!(
            set("maxmemory-policy", "lru").unwrap_err(),
            "argument(s) must be one of the following: volatile-lru, volatile-lfu, \
             volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction"
        );
        set("maxmemory-policy", "VOLATILE-TTL").unwrap();
        set("maxdisk", "1gb").unwrap();
        set("proto-max-bulk-len", "2mb").unwrap();
        set("loglevel", "DEBUG").unwrap();
        set("requirepass", "").unwrap();
        assert_eq!(config.limits.proto_max_bulk_len, ByteSize(2 << 20));
        assert_eq!(config.logging.level, "debug");
        assert_eq!(config.security.requirepass, None);
        assert_eq!(config.storage.maxmemory_policy, EvictionPolicy::VolatileTtl);
        assert_eq!(config.storage.maxdisk, Some(ByteSize(1 << 30)));
    }

    #[test]
    fn output_buffer_limits_parse_like_redis() {
        let mut config = Config::default();
        let mut set = |value: &str| set_output_buffer_limits(&mut config, value);
        assert_eq!(
            set("normal 1 2").unwrap_err(),
            "Wrong number of arguments in buffer limit configuration."
        );
        assert_eq!(
            set("foo 1 2 3").unwrap_err(),
            "Invalid client class specified in buffer limit configuration."
        );
        assert_eq!(
            set("normal x 2 3").unwrap_err(),
            "Error in hard, soft or soft_seconds setting in buffer limit configuration."
        );
        assert_eq!(
            set("normal -1 2 3").unwrap_err(),
            "Error in hard, soft or soft_seconds setting in buffer limit configuration."
        );
        assert!(set("pubsub 32mb 8mb 60").is_err());
        // A failed group leaves the earlier groups unapplied too.
        assert!(set("normal 1mb 1mb 1 pubsub 1 1 1").is_err());
        set("").unwrap();
        set("NORMAL 1mb 2kb 3 replica 0 0 0").unwrap();
        assert_eq!(
            config.limits.client_output_buffer_hard_limit,
            ByteSize(1 << 20)
        );
        assert_eq!(
            config.limits.client_output_buffer_soft_limit,
            ByteSize(2048)
        );
        assert_eq!(config.limits.client_output_buffer_soft_seconds, 3);
        assert_eq!(
            (param("client-output-buffer-limit").get)(&config),
            "normal 1048576 2048 3 slave 0 0 0 pubsub 0 0 0"
        );
    }
}
