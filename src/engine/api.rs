//! The engine's public vocabulary: how a call may block ([`Access`]), its errors, and the
//! options and outcomes of its operations. Plain data: nothing here touches a tier.

use std::path::PathBuf;

use bytes::Bytes;

use super::cold::ColdError;
use super::disk_health::{DiskHealthReport, OomRefusal};
use super::entry::{CorruptValue, ExpireAt};
use super::mutation::DecodeError;
use super::stats::StatsSnapshot;
use super::types::ValueType;
use super::wal::{self, Lsn};

/// Whether a call may block its thread on disk I/O or a contended lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Fail with `WouldBlock` instead of blocking; nothing has changed when it does.
    HotOnly,
    /// On an async worker, for work that cannot be retried once under way (a script):
    /// leave the worker, then block (`inline.rs`).
    Inline,
    /// Blocking is fine (a blocking-pool thread, a background task, a test).
    MayBlock,
}

#[derive(Debug)]
#[non_exhaustive]
pub enum EngineError {
    /// The call needs disk I/O or a contended lock and was made with `Access::HotOnly`.
    WouldBlock,
    /// RENAME of a key that does not exist.
    NoSuchKey,
    /// A database index outside `0..databases`.
    DbIndexOutOfRange,
    /// The key holds a value of another type than the operation works on.
    WrongType,
    Cold(ColdError),
    Corrupt(CorruptValue),
    /// The configuration cannot be used (the config layer's own message).
    Config(String),
    /// A directory the engine needs could not be created.
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A transaction touched a key whose shard it did not lock (a bug in the caller's key
    /// list, reported instead of deadlocking or panicking).
    NotLocked,
    /// The write-ahead log failed (or refuses to open); it names the file.
    Wal(wal::WalError),
    /// The engine's use of the log went wrong (see [`LogError`]).
    Log(LogError),
    /// A request waited `busy-reply-threshold` for shards another command held (Redis's
    /// `-BUSY`); nothing was done.
    Busy {
        waited_ms: u64,
    },
    /// A write found its hot shard full and no room could be made in time (the cold tier
    /// refuses the demotions that would make it): nothing was changed (Redis's `-OOM`).
    OutOfMemory(OomRefusal),
}

/// The engine's side of the write-ahead log: what it refuses to do, and records it cannot
/// apply. (Failures of the log itself are `wal::WalError`.)
#[derive(Debug)]
#[non_exhaustive]
pub enum LogError {
    /// A change was never logged (an append failed): it must not reach the cold tier (I5).
    ChangeNeverLogged,
    /// FLUSHDB / FLUSHALL could not be logged, so nothing was flushed.
    FlushNotLogged,
    /// A record's payload is not a batch of mutations.
    Undecodable(DecodeError),
    /// A logged value is the compaction filter's expired marker, never a logged value.
    MarkerValue,
    /// A logged key belongs to no configured database.
    KeyOutsideDatabases,
    /// The WAL ends before the last checkpoint: segments are missing.
    MissingSegments {
        wal_dir: PathBuf,
        wal_last_lsn: Lsn,
        checkpoint_lsn: Lsn,
        data_dir: PathBuf,
    },
    /// A WAL older than the last checkpoint could not be moved out of the way.
    MoveAside {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A replicated record does not follow the replica's log (`expected` is the LSN it needs
    /// next), or replication needs a WAL this node does not have.
    ReplicaOutOfStep {
        expected: Lsn,
        got: Lsn,
    },
    ReplicationNeedsWal,
    /// A full sync asked of an engine that is not in replica mode.
    NotAReplica,
}

impl std::fmt::Display for LogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogError::ChangeNeverLogged => write!(
                f,
                "a change was never logged (the WAL failed); refusing to write it to the cold tier"
            ),
            LogError::FlushNotLogged => {
                write!(f, "the flush could not be logged; nothing was flushed")
            }
            LogError::Undecodable(err) => write!(f, "{err}"),
            LogError::MarkerValue => write!(f, "a logged value is a marker"),
            LogError::KeyOutsideDatabases => {
                write!(f, "a logged key is outside the configured databases")
            }
            LogError::MissingSegments {
                wal_dir,
                wal_last_lsn,
                checkpoint_lsn,
                data_dir,
            } => write!(
                f,
                "the WAL in {} ends at LSN {wal_last_lsn} but the last checkpoint is at LSN \
                 {checkpoint_lsn}: WAL segments are missing. Run `hypercache-tool check --dir {}`",
                wal_dir.display(),
                data_dir.display()
            ),
            LogError::MoveAside { path, source } => {
                write!(f, "cannot move {} aside: {source}", path.display())
            }
            LogError::ReplicaOutOfStep { expected, got } => write!(
                f,
                "replicated record {got} does not follow this replica's log (it needs {expected})"
            ),
            LogError::NotAReplica => write!(f, "only a replica loads a primary's snapshot"),
            LogError::ReplicationNeedsWal => write!(
                f,
                "replication needs the WAL (persistence.wal: true, or --appendonly yes)"
            ),
        }
    }
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::WouldBlock => write!(f, "operation would block"),
            EngineError::Busy { waited_ms } => write!(
                f,
                "HyperCache is busy: another command has held these keys for longer than busy-reply-threshold ({waited_ms} ms). Try again later."
            ),
            EngineError::NoSuchKey => write!(f, "no such key"),
            EngineError::DbIndexOutOfRange => write!(f, "DB index is out of range"),
            EngineError::WrongType => {
                write!(f, "Operation against a key holding the wrong kind of value")
            }
            EngineError::Cold(err) => write!(f, "{err}"),
            EngineError::Corrupt(err) => write!(f, "{err}"),
            EngineError::Config(err) => write!(f, "invalid configuration: {err}"),
            EngineError::CreateDir { path, source } => {
                write!(
                    f,
                    "invalid configuration: cannot create {}: {source}",
                    path.display()
                )
            }
            EngineError::NotLocked => {
                write!(f, "internal error: key outside the transaction's shards")
            }
            EngineError::Wal(err) => write!(f, "{err}"),
            EngineError::Log(err) => write!(f, "{err}"),
            EngineError::OutOfMemory(refusal) => write!(f, "{}", refusal.message()),
        }
    }
}

impl std::error::Error for EngineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EngineError::Cold(err) => Some(err),
            EngineError::Corrupt(err) => Some(err),
            EngineError::CreateDir { source, .. } => Some(source),
            EngineError::Wal(err) => Some(err),
            _ => None,
        }
    }
}

impl From<ColdError> for EngineError {
    fn from(err: ColdError) -> Self {
        EngineError::Cold(err)
    }
}

impl From<wal::WalError> for EngineError {
    fn from(err: wal::WalError) -> Self {
        EngineError::Wal(err)
    }
}

impl From<LogError> for EngineError {
    fn from(err: LogError) -> Self {
        EngineError::Log(err)
    }
}

impl From<CorruptValue> for EngineError {
    fn from(err: CorruptValue) -> Self {
        EngineError::Corrupt(err)
    }
}

pub type EngineResult<T> = Result<T, EngineError>;

/// SET's NX / XX.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetCondition {
    Always,
    /// NX: only if the key does not exist.
    IfAbsent,
    /// XX: only if the key exists.
    IfPresent,
}

/// What SET does to the key's time to live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetExpiry {
    /// Plain SET: the key no longer expires.
    Clear,
    /// KEEPTTL.
    Keep,
    /// EX/PX/EXAT/PXAT, already converted to an absolute time.
    At(ExpireAt),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetOptions {
    pub condition: SetCondition,
    pub expiry: SetExpiry,
    /// SET ... GET: return the previous value.
    pub return_previous: bool,
}

impl Default for SetOptions {
    fn default() -> Self {
        SetOptions {
            condition: SetCondition::Always,
            expiry: SetExpiry::Clear,
            return_previous: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetOutcome {
    /// False when NX/XX stopped the write.
    pub written: bool,
    /// The previous value, when `return_previous` was asked for.
    pub previous: Option<Bytes>,
}

/// EXPIRE's NX / XX / GT / LT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpireCondition {
    Always,
    /// Only if the key has no expiry.
    Nx,
    /// Only if the key has an expiry.
    Xx,
    /// Only if the new expiry is later (no expiry counts as infinite).
    Gt,
    /// Only if the new expiry is earlier (no expiry counts as infinite).
    Lt,
    /// XX and LT together: only if the key has an expiry and the new one is earlier. (XX
    /// with GT is plain GT: a key without an expiry never passes GT.)
    XxLt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyTtl {
    Missing,
    Persistent,
    ExpiresAt(ExpireAt),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenameOutcome {
    Renamed,
    /// RENAMENX found the destination taken.
    TargetExists,
}

/// One SCAN step: the next cursor (0 = done) and the keys found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanPage {
    pub cursor: u64,
    pub keys: Vec<Bytes>,
}

/// Point-in-time figures for INFO `# Tiers` / `# Memory` and metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct TierReport {
    pub stats: StatsSnapshot,
    pub hot_used_bytes: usize,
    pub hot_limit_bytes: usize,
    pub hot_keys: usize,
    pub cold_disk_bytes: u64,
    /// RocksDB's estimate of the keys it holds (includes copies of promoted keys).
    pub cold_keys_estimate: u64,
    pub cold_memory_bytes: usize,
    pub filter_used_bytes: usize,
    pub filter_load_factor: f64,
    pub filter_fingerprints: usize,
    pub filter_bypassed: bool,
    pub keys_per_db: Vec<u64>,
    /// The disk budget and how much of it the cold tier uses.
    pub disk: super::eviction::DiskReport,
    /// Writes that need room are refused: the budget is reached and the policy evicts
    /// nothing.
    pub disk_budget_refusing: bool,
    /// Whether cold writes fail now, how many failed, whether writes are refused.
    pub disk_health: DiskHealthReport,
}

impl TierReport {
    /// Memory the engine accounts for: hot tier + RocksDB cache/memtables + filter.
    pub fn accounted_bytes(&self) -> usize {
        self.hot_used_bytes + self.cold_memory_bytes + self.filter_used_bytes
    }
}

/// What OBJECT / MEMORY USAGE / STRLEN need to know about a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    pub value_type: ValueType,
    /// STRLEN for a string; the number of fields or members for a collection.
    pub len: usize,
    pub compressed: bool,
    pub memory_bytes: usize,
    pub idle_seconds: u32,
    /// The access frequency counter, decayed to now (OBJECT FREQ).
    pub lfu_counter: u8,
}
