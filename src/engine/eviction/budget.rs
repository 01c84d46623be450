//! The disk budget: `maxdisk` (or its default, half of what the file system had free at
//! start), and how much of it the cold tier uses.
//!
//! Two figures: the bytes of the files under `<dir>/cold` (RocksDB's tables and its log) and
//! `<dir>/wal` (the engine WAL), as `du` counts them, and a logical estimate of the live
//! data, the cold key count times the average entry size, plus the engine WAL. Deleting a
//! key frees its file bytes only when RocksDB compacts the file holding it, so the file
//! bytes lag every eviction by seconds to minutes; eviction therefore works on the logical
//! estimate, which drops at once, and keeps it to a share of the budget that leaves the rest
//! for RocksDB's space amplification (obsolete versions and tombstones awaiting
//! compaction). The file bytes are the hard guard: above the budget, demotion pauses until
//! compaction and eviction bring them back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use parking_lot::Mutex;

use crate::config::EngineConfig;

/// The default budget: this share of the file system's free space at start (plus what the
/// cold tier already holds), so the cache never fills a disk it shares.
const DEFAULT_SHARE_OF_FREE: f64 = 0.5;
/// Bytes RocksDB spends per entry beyond key and value (internal key trailer, block index
/// and bloom filter), added to the average entry size.
const PER_ENTRY_OVERHEAD: u64 = 24;

/// What INFO shows of the disk budget.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DiskReport {
    /// The budget in bytes.
    pub maxdisk: u64,
    /// Whether `maxdisk` is the default (no budget configured).
    pub maxdisk_is_default: bool,
    /// Live bytes of the cold tier as estimated (key count times average entry size, plus
    /// the engine WAL): what eviction works on.
    pub cold_used_bytes: u64,
    /// Bytes of its files on disk as last measured (RocksDB and the engine WAL).
    pub cold_file_bytes: u64,
}

impl DiskReport {
    /// How much of the budget the live estimate uses.
    pub fn fill_ratio(&self) -> f64 {
        self.cold_used_bytes as f64 / self.maxdisk.max(1) as f64
    }
}

/// The directories whose files count against the budget.
struct CountedDirs {
    /// RocksDB's tables and its own log.
    cold: PathBuf,
    /// The engine WAL.
    wal: PathBuf,
}

impl CountedDirs {
    fn bytes(&self) -> u64 {
        dir_bytes(&self.cold) + dir_bytes(&self.wal)
    }
}

pub(super) struct DiskBudget {
    /// `maxdisk` as configured; 0 = the default.
    configured: AtomicU64,
    default_bytes: OnceLock<u64>,
    data_dir: PathBuf,
    /// Directories whose files count (none for the in-memory cold tier).
    counted_dirs: Option<CountedDirs>,
    /// Average bytes of an entry written to the cold tier (key, value, overhead).
    average_entry_bytes: AtomicU64,
    /// The latest deadline written to the cold tier (volatile sampling's upper bound).
    latest_deadline: AtomicU64,
    figures: Mutex<DiskReport>,
}

impl DiskBudget {
    pub(super) fn new(config: &EngineConfig) -> Self {
        let counted_dirs = match config.cold_backend {
            crate::config::ColdBackend::Rocksdb => Some(CountedDirs {
                cold: config.dir.join("cold"),
                wal: config.dir.join("wal"),
            }),
            crate::config::ColdBackend::Memory => None,
        };
        DiskBudget {
            configured: AtomicU64::new(0),
            default_bytes: OnceLock::new(),
            data_dir: config.dir.clone(),
            counted_dirs,
            average_entry_bytes: AtomicU64::new(0),
            latest_deadline: AtomicU64::new(0),
            figures: Mutex::new(DiskReport::default()),
        }
    }

    pub(super) fn set_configured(&self, maxdisk: Option<u64>) {
        self.configured
            .store(maxdisk.unwrap_or(0), Ordering::Relaxed);
    }

    /// The budget in bytes, and whether it is the default.
    pub(super) fn maxdisk(&self) -> (u64, bool) {
        match self.configured.load(Ordering::Relaxed) {
            0 => (
                *self
                    .default_bytes
                    .get_or_init(|| default_maxdisk(&self.data_dir, self.held_bytes())),
                true,
            ),
            bytes => (bytes, false),
        }
    }

    /// Notes an entry of `bytes` (key and encoded value) written to the cold tier.
    pub(super) fn note_written(&self, bytes: usize, expire_at: u64) {
        let bytes = bytes as u64 + PER_ENTRY_OVERHEAD;
        let average = self.average_entry_bytes.load(Ordering::Relaxed);
        // An exponential average over about the last 1000 entries.
        let next = if average == 0 {
            bytes
        } else {
            (average * 999 + bytes) / 1000
        };
        self.average_entry_bytes
            .store(next.max(1), Ordering::Relaxed);
        self.latest_deadline.fetch_max(expire_at, Ordering::Relaxed);
    }

    pub(super) fn latest_deadline(&self) -> u64 {
        self.latest_deadline.load(Ordering::Relaxed)
    }

    pub(super) fn average_entry_bytes(&self) -> u64 {
        self.average_entry_bytes.load(Ordering::Relaxed)
    }

    /// Bytes the counted directories hold now.
    fn held_bytes(&self) -> u64 {
        self.counted_dirs.as_ref().map_or(0, CountedDirs::bytes)
    }

    /// Measures the files and recomputes the usage for `cold_keys` keys in the cold tier.
    pub(super) fn refresh(&self, cold_keys: u64) -> DiskReport {
        let (cold_bytes, wal_bytes) = self
            .counted_dirs
            .as_ref()
            .map_or((0, 0), |dirs| (dir_bytes(&dirs.cold), dir_bytes(&dirs.wal)));
        let file_bytes = cold_bytes + wal_bytes;
        let (maxdisk, maxdisk_is_default) = self.maxdisk();
        let mut estimate = cold_keys * self.average_entry_bytes() + wal_bytes;
        if file_bytes > 0 {
            // The live data cannot be larger than the files holding it (RocksDB's tables and
            // log hold every live entry, values uncompressed by RocksDB; no files at all
            // means a store that keeps none, the in-memory one of the engine tests). The average learns
            // from the entries written since start, so one large value written first (a
            // replayed 2 MB hash after a crash) once made 12,000 small keys look like 10 GB
            // and the evictor removed half of them against a 25 MB cold tier.
            estimate = estimate.min(file_bytes);
        }
        let report = DiskReport {
            maxdisk,
            maxdisk_is_default,
            cold_used_bytes: estimate,
            cold_file_bytes: file_bytes,
        };
        *self.figures.lock() = report;
        report
    }

    /// The figures of the last `refresh`.
    pub(super) fn report(&self) -> DiskReport {
        let mut report = *self.figures.lock();
        (report.maxdisk, report.maxdisk_is_default) = self.maxdisk();
        report
    }

    /// Bytes one evicted entry of `bytes` frees, as the estimate counts them.
    pub(super) fn freed_by(&self, bytes: usize) -> u64 {
        bytes as u64 + PER_ENTRY_OVERHEAD
    }
}

/// Bytes the files under `dir` occupy on disk, as `du` counts them (missing: 0).
fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|entry| entry.metadata().ok())
        .map(|meta| {
            if meta.is_dir() {
                0
            } else {
                meta.blocks() * 512
            }
        })
        .sum()
}

/// Half of the free space of the file system holding `data_dir`, plus `held`, what the
/// counted directories already hold (so a restart does not shrink the budget by its own
/// data).
fn default_maxdisk(data_dir: &Path, held: u64) -> u64 {
    let free = free_bytes(data_dir).unwrap_or(0);
    let budget = ((free + held) as f64 * DEFAULT_SHARE_OF_FREE) as u64;
    tracing::info!(
        maxdisk = budget,
        free_bytes = free,
        "no maxdisk configured: the cold tier may use half of the free disk space"
    );
    budget.max(64 << 20)
}

/// Free bytes for unprivileged users on the file system of `path` (or its nearest existing
/// ancestor).
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let existing = path.ancestors().find(|p| p.exists())?;
    let existing = if existing.as_os_str().is_empty() {
        Path::new(".")
    } else {
        existing
    };
    let c_path = std::ffi::CString::new(existing.as_os_str().as_bytes()).ok()?;
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a valid NUL-terminated string and `stats` a valid out-pointer.
    let result = unsafe { libc::statvfs(c_path.as_ptr(), &mut stats) };
    (result == 0).then(|| stats.f_bavail as u64 * stats.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_budget_is_a_share_of_free_space() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        assert!(free > 0);
        let budget = default_maxdisk(&dir.path().join("not-yet"), 0);
        assert!(budget <= free.max(128 << 20), "{budget} of {free}");
    }

    #[test]
    fn the_estimate_follows_keys_times_average_size() {
        let config = EngineConfig {
            cold_backend: crate::config::ColdBackend::Memory,
            maxdisk: Some(crate::config::ByteSize(100 << 20)),
            ..EngineConfig::default()
        };
        let budget = DiskBudget::new(&config);
        budget.set_configured(config.maxdisk.map(|size| size.0));
        for _ in 0..10 {
            budget.note_written(1000, 0);
        }
        let report = budget.refresh(10_000);
        assert_eq!(report.maxdisk, 100 << 20);
        assert_eq!(report.cold_used_bytes, 10_000 * (1000 + PER_ENTRY_OVERHEAD));
        assert!(report.fill_ratio() > 0.09 && report.fill_ratio() < 0.11);
    }

    #[test]
    fn one_large_entry_cannot_make_the_estimate_exceed_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let config = EngineConfig {
            dir: dir.path().to_path_buf(),
            maxdisk: Some(crate::config::ByteSize(1 << 30)),
            ..EngineConfig::default()
        };
        std::fs::create_dir_all(dir.path().join("cold")).unwrap();
        std::fs::write(
            dir.path().join("cold").join("000001.sst"),
            vec![7u8; 64 << 10],
        )
        .unwrap();
        let budget = DiskBudget::new(&config);
        budget.set_configured(config.maxdisk.map(|size| size.0));
        // The first entry written after a start is a 2 MB hash; 12,000 small keys are cold.
        budget.note_written(2 << 20, 0);
        let report = budget.refresh(12_000);
        assert!(report.cold_file_bytes >= 64 << 10);
        assert!(
            report.cold_used_bytes <= report.cold_file_bytes,
            "{} estimated over {} of files",
            report.cold_used_bytes,
            report.cold_file_bytes
        );
    }
}
