//! Typed configuration. Every field documents its default where it is declared; the shipped
//! configs/hypercache.yaml shows each key with its default. Unknown keys are errors.
//!
//! Layers, lowest first: defaults < YAML file < `HYPERCACHE_<SECTION>__<KEY>` environment
//! variables < command-line flags (see `load`).

mod eviction;
mod layers;
mod memory;
mod network;
pub mod params;
mod replication;
mod security;
mod size;
mod tls;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use layers::{load, ConfigError, Overrides};

/// Applies a new log level to the running logger (CONFIG SET loglevel). The binary installs
/// the hook when it sets up logging; without one (tests, library use) this does nothing.
pub fn apply_log_level(level: &str) {
    if let (Some(hook), Some(directive)) =
        (LOG_LEVEL_HOOK.get(), LoggingConfig::tracing_level(level))
    {
        hook(directive);
    }
}

type LogLevelHook = Box<dyn Fn(&str) + Send + Sync>;
static LOG_LEVEL_HOOK: std::sync::OnceLock<LogLevelHook> = std::sync::OnceLock::new();

/// Installs the function that switches the logger to a tracing level directive.
pub fn set_log_level_hook(hook: LogLevelHook) {
    let _ = LOG_LEVEL_HOOK.set(hook);
}

pub use eviction::EvictionPolicy;
pub use memory::{MemorySplit, MIN_MAXMEMORY};
pub use network::Cidr;
pub use replication::{parse_primary, ReplicationConfig};
pub use size::ByteSize;
pub use tls::{TlsAuthClients, TlsConfig};

/// The most databases a server may have: the cold tier keeps its own records under the
/// next database number (`engine::cold::META_DB`, `u16::MAX`).
pub const MAX_DATABASES: u16 = u16::MAX - 1;

/// Which cold-tier implementation backs the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColdBackend {
    /// RocksDB under `<dir>/cold` (default).
    Rocksdb,
    /// In memory, lost on exit: for tests and experiments only.
    Memory,
}

/// The storage engine's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Data directory. Default `./hypercache-data`.
    pub dir: PathBuf,
    /// Number of databases (SELECT 0..databases-1). Default 16.
    pub databases: u16,
    /// Memory bound for the whole process. Default 1gb.
    pub maxmemory: ByteSize,
    /// How `maxmemory` is carved up.
    pub memory_split: MemorySplit,
    /// Disk budget of the cold tier: RocksDB's files and WAL plus the engine WAL, with
    /// slack for compaction (docs/operations.md). Default: half of what the file system
    /// under `dir` has free at start (plus what the cold tier already holds there).
    pub maxdisk: Option<ByteSize>,
    /// Which keys leave the cache when RAM and the disk budget are both full (Redis's
    /// names). Default allkeys-lru: HyperCache is a cache, and an unbounded stream of
    /// distinct keys must never stop it accepting writes; Redis's own default,
    /// noeviction, suits a store.
    pub maxmemory_policy: EvictionPolicy,
    /// Keys sampled per eviction, as Redis's `maxmemory-samples` (the cold tier reads at
    /// most 64 a round, whatever is asked). Default 5.
    pub maxmemory_samples: u32,
    /// How slowly the LFU counter saturates (Redis's `lfu-log-factor`). Default 10.
    pub lfu_log_factor: u32,
    /// Minutes per step by which an unused key's LFU counter decays (Redis's
    /// `lfu-decay-time`); 0 = never. Default 1.
    pub lfu_decay_time: u32,
    /// Hot-tier shards (a power of two); more shards, less lock contention. Default 64.
    pub hot_shards: usize,
    /// Caps the hot tier below its share of `maxmemory` (leaving the rest unused), e.g. to
    /// force most data into the cold tier. Default: no cap.
    pub hot_max_bytes: Option<ByteSize>,
    /// Values at least this long are kept zstd-compressed when that saves 25%. 0 = never.
    /// Default 1024.
    pub compress_min_bytes: usize,
    /// Keep the cuckoo filter that answers "absent" for keys the cold tier does not hold.
    /// false = every hot-tier miss asks RocksDB (for measuring what the filter saves; the
    /// filter's memory share goes to the hot tier). Default true.
    pub filter: bool,
    /// Cuckoo filter fingerprint size in bits, 8..=32. Up to 16 a slot takes 2 bytes, so
    /// fewer bits only add false positives: 16 gives about 0.012% per table at full load,
    /// 12 about 0.2% (measured 0.28% of absent GETs reaching RocksDB at 2M keys). 17..=32
    /// take 4 bytes a slot (twice the filter memory): 32 bits leaves about 2 in a billion
    /// absent lookups reaching RocksDB. Default 16.
    pub filter_fingerprint_bits: u32,
    /// Keys the filter's first table is sized for; it grows by doubling. Default 1048576.
    pub filter_initial_capacity: usize,
    /// Cold-tier implementation. Default rocksdb.
    pub cold_backend: ColdBackend,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            dir: PathBuf::from("./hypercache-data"),
            databases: 16,
            maxmemory: ByteSize(1 << 30),
            memory_split: MemorySplit::default(),
            maxdisk: None,
            maxmemory_policy: EvictionPolicy::AllkeysLru,
            maxmemory_samples: 5,
            lfu_log_factor: 10,
            lfu_decay_time: 1,
            hot_shards: 64,
            hot_max_bytes: None,
            compress_min_bytes: 1024,
            filter: true,
            filter_fingerprint_bits: 16,
            filter_initial_capacity: 1 << 20,
            cold_backend: ColdBackend::Rocksdb,
        }
    }
}

impl EngineConfig {
    /// Checks what serde cannot; each message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.databases == 0 || self.databases > MAX_DATABASES {
            return Err(format!(
                "databases: must be 1..={MAX_DATABASES}, got {}",
                self.databases
            ));
        }
        if !self.hot_shards.is_power_of_two() || self.hot_shards > 16384 {
            return Err(format!(
                "hot_shards: must be a power of two up to 16384, got {}",
                self.hot_shards
            ));
        }
        if !(8..=32).contains(&self.filter_fingerprint_bits) {
            return Err(format!(
                "filter_fingerprint_bits: must be 8..=32, got {}",
                self.filter_fingerprint_bits
            ));
        }
        if self.maxmemory_samples == 0 || self.maxmemory_samples > i32::MAX as u32 {
            return Err(format!(
                "maxmemory_samples: must be 1..=2147483647, got {}",
                self.maxmemory_samples
            ));
        }
        if self.filter_initial_capacity == 0 {
            return Err("filter_initial_capacity: must be > 0".into());
        }
        self.memory_split
            .check(self.maxmemory.0)
            .map_err(|err| format!("maxmemory/memory_split: {err}"))
    }
}

/// Network and client settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on. Default 127.0.0.1 (never all interfaces unless asked).
    pub bind: String,
    /// TCP port; 0 picks a free one. Default 6379.
    pub port: u16,
    /// Most clients connected at once; more are refused with an error. Default 10000.
    pub maxclients: usize,
    /// Close a client idle this many seconds; 0 = never. Default 0.
    pub timeout: u64,
    /// Seconds a shutdown waits for commands still running (a long KEYS, a DEBUG SLEEP)
    /// before it saves and exits without them (Redis's name). Default 10.
    pub shutdown_timeout: u64,
    /// Async worker threads; 0 = one per core. Default 0.
    pub threads: usize,
    /// Threads for commands that may wait on the disk (cold reads, inline demotion). Each
    /// keeps its own allocator cache and stack, so a few are kept, not one per client
    /// (which cost 40 MB of RSS under 50 writers at maxmemory 64mb). Default 8.
    pub blocking_threads: usize,
    /// Threads that read GETs' cold values for many clients at once, one RocksDB multi_get
    /// per batch; 0 = every cold GET goes to a blocking thread on its own. Default 2.
    pub cold_readers: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "127.0.0.1".into(),
            port: 6379,
            maxclients: 10000,
            timeout: 0,
            shutdown_timeout: 10,
            threads: 0,
            blocking_threads: 8,
            cold_readers: 2,
        }
    }
}

/// Per-client limits, with Redis's names and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest bulk string a client may send. Default 512mb.
    pub proto_max_bulk_len: ByteSize,
    /// Largest unparsed input a client may have buffered. Default 1gb.
    pub client_query_buffer_limit: ByteSize,
    /// Output buffer hard limit for normal clients; 0 = none. Default 0.
    pub client_output_buffer_hard_limit: ByteSize,
    /// Output buffer soft limit; 0 = none. Default 0.
    pub client_output_buffer_soft_limit: ByteSize,
    /// Seconds a client may stay over the soft limit. Default 0.
    pub client_output_buffer_soft_seconds: u64,
    /// Most milliseconds a request waits for keys another command holds (a long EXEC, a
    /// FLUSHALL, a huge MGET off the disk) before it is answered `-BUSY`, so no request
    /// waits without end (Redis's `busy-reply-threshold`, alias `lua-time-limit`); 0 = no
    /// limit. Default 5000.
    pub busy_reply_threshold_ms: u64,
    /// Most bytes all clients' query and reply buffers may hold together before the client
    /// holding the most is closed (Redis 7's `maxmemory-clients`): bytes (`64mb`), a
    /// percentage of maxmemory (`10%`), or 0 for no limit. Default unset: the clients share
    /// of the memory split (`storage.memory_split.clients_percent`).
    pub maxmemory_clients: Option<String>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            proto_max_bulk_len: ByteSize(512 << 20),
            client_query_buffer_limit: ByteSize(1 << 30),
            client_output_buffer_hard_limit: ByteSize(0),
            client_output_buffer_soft_limit: ByteSize(0),
            client_output_buffer_soft_seconds: 0,
            busy_reply_threshold_ms: 5000,
            maxmemory_clients: None,
        }
    }
}

/// Durability settings (the engine write-ahead log).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersistenceConfig {
    /// Write-ahead log on (`appendonly yes`). Default false: a pure cache.
    pub wal: bool,
    /// When the log is fsynced: always | everysec | no. Default everysec.
    pub sync: SyncPolicy,
    /// Seconds between periodic checkpoints (with the WAL on); 0 = none. Default 300.
    pub checkpoint_interval_secs: u64,
    /// WAL size that starts a checkpoint early; 0 = no size trigger. Default 256mb.
    pub checkpoint_wal_bytes: ByteSize,
    /// RocksDB checkpoint directories kept under `<dir>/checkpoints/` for backups; 0 = none.
    /// Default 0.
    pub retain_checkpoints: u32,
    /// Size at which the WAL starts a new segment file. Default 64mb.
    pub wal_segment_bytes: ByteSize,
}

impl Default for PersistenceConfig {
    fn default() -> Self {
        PersistenceConfig {
            wal: false,
            sync: SyncPolicy::Everysec,
            checkpoint_interval_secs: 300,
            checkpoint_wal_bytes: ByteSize(256 << 20),
            retain_checkpoints: 0,
            wal_segment_bytes: ByteSize(64 << 20),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncPolicy {
    Always,
    Everysec,
    No,
}

impl SyncPolicy {
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "always" => Some(SyncPolicy::Always),
            "everysec" => Some(SyncPolicy::Everysec),
            "no" => Some(SyncPolicy::No),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SyncPolicy::Always => "always",
            SyncPolicy::Everysec => "everysec",
            SyncPolicy::No => "no",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Password clients must AUTH with; unset = no password. Default unset.
    pub requirepass: Option<String>,
    /// Redis's protected mode: while no password is set, only loopback clients are served
    /// (others get Redis's `-DENIED` text and are closed), whatever `bind` says. Default on.
    pub protected_mode: bool,
    /// Only clients from these address blocks may connect (CIDR or one address); empty =
    /// any. Default empty.
    pub allow: Vec<String>,
    /// Clients from these address blocks may not connect. Default empty.
    pub deny: Vec<String>,
    /// Most connections from one client address at once; 0 = no limit. Default 0.
    pub maxclients_per_ip: usize,
    /// Most commands per second one client may run; past it its commands wait (its reads
    /// stop), they are not refused. 0 = no limit. Default 0.
    pub max_commands_per_second: u64,
    /// Security events (failed AUTH, CONFIG SET, SHUTDOWN, FLUSHALL/FLUSHDB, refused
    /// connections) appended here as JSON lines; unset = none. Default unset.
    pub audit_log: Option<PathBuf>,
    /// ACL users as ACL file lines (`user alice on >secret ~app:* +@read`); the `default`
    /// user is `requirepass`'s unless a line names it. Not with `aclfile`. Default none.
    pub users: Vec<String>,
    /// Redis's `aclfile`: users are read from it at start and by ACL LOAD, written by ACL
    /// SAVE. Not with `users`. Default unset.
    pub aclfile: Option<PathBuf>,
    /// Most entries ACL LOG keeps (Redis's `acllog-max-len`). Default 128.
    pub acllog_max_len: usize,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            requirepass: None,
            protected_mode: true,
            allow: Vec::new(),
            deny: Vec::new(),
            maxclients_per_ip: 0,
            max_commands_per_second: 0,
            audit_log: None,
            users: Vec::new(),
            aclfile: None,
            acllog_max_len: 128,
        }
    }
}

impl SecurityConfig {
    /// Whether a client connecting from `peer` is refused by protected mode.
    /// `default_needs_password`: the ACL's default user has a password (`requirepass`
    /// or ACL SETUSER default), which lifts protected mode as in Redis.
    pub fn protected_mode_refuses(
        &self,
        peer: std::net::IpAddr,
        default_needs_password: bool,
    ) -> bool {
        let loopback = match peer {
            std::net::IpAddr::V4(v4) => v4.is_loopback(),
            std::net::IpAddr::V6(v6) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        };
        self.protected_mode && !default_needs_password && !loopback
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// debug | verbose | notice | warning (Redis's levels). Default notice.
    pub level: String,
    /// text | json. Default text.
    pub format: String,
    /// Log file; unset = stderr. Default unset.
    pub file: Option<PathBuf>,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            level: "notice".into(),
            format: "text".into(),
            file: None,
        }
    }
}

impl LoggingConfig {
    /// The tracing filter directive for a Redis log level.
    pub fn tracing_level(level: &str) -> Option<&'static str> {
        match level.to_ascii_lowercase().as_str() {
            "debug" => Some("debug"),
            "verbose" => Some("info"),
            "notice" => Some("info"),
            "warning" => Some("warn"),
            "nothing" => Some("off"),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlowlogConfig {
    /// Log commands slower than this many microseconds; negative = off. Default 10000.
    pub log_slower_than: i64,
    /// Entries kept. Default 128.
    pub max_len: usize,
}

impl Default for SlowlogConfig {
    fn default() -> Self {
        SlowlogConfig {
            log_slower_than: 10_000,
            max_len: 128,
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: EngineConfig,
    pub persistence: PersistenceConfig,
    pub replication: ReplicationConfig,
    pub limits: LimitsConfig,
    pub security: SecurityConfig,
    pub tls: TlsConfig,
    pub logging: LoggingConfig,
    pub slowlog: SlowlogConfig,
}

impl Config {
    /// Checks what serde cannot; each message starts with the key path.
    pub fn validate(&self) -> Result<(), String> {
        self.storage
            .validate()
            .map_err(|err| format!("storage.{err}"))?;
        if self.server.bind.parse::<std::net::IpAddr>().is_err() && self.server.bind != "localhost"
        {
            return Err(format!(
                "server.bind: '{}' is not an IP address",
                self.server.bind
            ));
        }
        if let Some(limit) = &self.limits.maxmemory_clients {
            ClientMemoryLimit::parse(limit)
                .map_err(|err| format!("limits.maxmemory_clients: {err}"))?;
        }
        if self.server.maxclients == 0 {
            return Err("server.maxclients: must be at least 1".into());
        }
        self.tls.validate().map_err(|err| format!("tls.{err}"))?;
        network::validate_list(&self.security.allow)
            .map_err(|err| format!("security.allow: {err}"))?;
        network::validate_list(&self.security.deny)
            .map_err(|err| format!("security.deny: {err}"))?;
        if self.server.blocking_threads == 0 {
            return Err("server.blocking_threads: must be at least 1".into());
        }
        if LoggingConfig::tracing_level(&self.logging.level).is_none() {
            return Err(format!(
                "logging.level: '{}' is not one of debug, verbose, notice, warning",
                self.logging.level
            ));
        }
        if !matches!(self.logging.format.as_str(), "text" | "json") {
            return Err(format!(
                "logging.format: '{}' is not one of text, json",
                self.logging.format
            ));
        }
        if self.limits.proto_max_bulk_len.0 < 1024 {
            return Err("limits.proto_max_bulk_len: must be at least 1kb".into());
        }
        if let Some(primary) = &self.replication.replicaof {
            parse_primary(primary).map_err(|err| format!("replication.replicaof: {err}"))?;
            if !self.persistence.wal {
                return Err("replication.replicaof: a replica needs the WAL (persistence.wal: true, or --appendonly yes)".into());
            }
        }
        if self.persistence.wal_segment_bytes.0 < 1 << 20 {
            return Err("persistence.wal_segment_bytes: must be at least 1mb".into());
        }
        Ok(())
    }
}

/// `maxmemory-clients` as written: bytes, or a percentage of maxmemory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMemoryLimit {
    Bytes(u64),
    Percent(u8),
}

impl ClientMemoryLimit {
    /// `64mb`, `67108864`, `10%`, or `0` (no limit), as Redis reads it.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(percent) = text.trim().strip_suffix('%') {
            return match percent.parse::<u8>() {
                Ok(percent) if (1..=100).contains(&percent) => Ok(Self::Percent(percent)),
                _ => Err(format!("'{text}': a percentage must be 1% to 100%")),
            };
        }
        ByteSize::parse(text).map(|size| Self::Bytes(size.0))
    }

    fn bytes(self, maxmemory: u64) -> u64 {
        match self {
            Self::Bytes(bytes) => bytes,
            Self::Percent(percent) => maxmemory / 100 * u64::from(percent),
        }
    }
}

impl Config {
    /// The bound on all clients' buffers in bytes (`maxmemory-clients`); 0 = none.
    pub fn client_memory_limit(&self) -> usize {
        let maxmemory = self.storage.maxmemory.0;
        let limit = match &self.limits.maxmemory_clients {
            None => ClientMemoryLimit::Percent(self.storage.memory_split.clients_percent),
            Some(text) => ClientMemoryLimit::parse(text).unwrap_or(ClientMemoryLimit::Bytes(0)),
        };
        limit.bytes(maxmemory) as usize
    }
}
