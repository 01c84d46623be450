//! The WAL's errors: [`WalError`] and the kinds of damage it names ([`CorruptionKind`],
//! [`RecordDamage`]).
//!
//! It owns the texts operators read (startup refusals, `hypercache-tool check` and `recover`
//! output, which tests and runbooks quote): every `Display` here must keep them word for word.
//! It must never lose structure on the way up: a caller's own error (a record `replay` could
//! not apply) is kept as the source, not flattened into a string.

use std::error::Error;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::format::HEADER_LEN;
use super::Lsn;

#[derive(Debug)]
#[non_exhaustive]
pub enum WalError {
    /// An I/O error, or (kind `InvalidInput`) an append this log cannot encode.
    Io {
        path: PathBuf,
        source: io::Error,
    },
    /// Damage the log will not repair on its own; `offset` is a byte offset within `path`.
    Corrupt {
        path: PathBuf,
        offset: u64,
        kind: CorruptionKind,
    },
    /// [`replay`](super::replay)'s `apply` refused the record at `offset` in `path`; `source` is
    /// the caller's error, as it returned it.
    Apply {
        lsn: Lsn,
        path: PathBuf,
        offset: u64,
        source: Box<dyn Error + Send + Sync>,
    },
    Closed,
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalError::Io { path, source } => {
                write!(f, "WAL I/O error on {}: {source}", path.display())
            }
            WalError::Corrupt { path, offset, kind } => write_damaged(f, path, *offset, kind),
            WalError::Apply {
                lsn,
                path,
                offset,
                source,
            } => write_damaged(
                f,
                path,
                *offset,
                format_args!("LSN {lsn} could not be applied: {source}"),
            ),
            WalError::Closed => f.write_str("the WAL is closed"),
        }
    }
}

/// The one text of a refusal to go on over a damaged log: where, why, and which tool to run.
fn write_damaged(
    f: &mut fmt::Formatter<'_>,
    path: &Path,
    offset: u64,
    reason: impl fmt::Display,
) -> fmt::Result {
    // Segments live in `<data_dir>/wal/`: name the directory the tool wants.
    let data_dir = path
        .parent()
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    write!(
        f,
        "WAL damaged in {} at byte offset {offset}: {reason}. Refusing to continue over a \
         damaged log; run `hypercache-tool recover --dir {}`",
        path.display(),
        data_dir.display()
    )
}

impl Error for WalError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            WalError::Io { source, .. } => Some(source),
            WalError::Apply { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// Why the log refuses to go on (or repair refuses to act) at a given file and offset.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptionKind {
    /// A `wal-*.log` entry whose name is not `wal-<first LSN, 20 digits, >= 1>.log`.
    BadSegmentName,
    /// A `wal-*.log` entry that is a directory, a socket, ...
    NotARegularFile,
    /// A damaged stretch with valid records after it: not a torn tail. `skipped` bytes lie
    /// between the damage and `resumes_at` (the next valid record in the same segment), or
    /// between the damage and the segment's end when nothing valid follows in it.
    Damaged {
        damage: RecordDamage,
        resumes_at: Option<u64>,
        skipped: u64,
    },
    /// A segment's first record does not carry the LSN its name claims.
    NameMismatch { name_lsn: Lsn, found: Lsn },
    /// LSNs `first..=last` are missing before LSN `found`.
    LsnGap { first: Lsn, last: Lsn, found: Lsn },
    /// LSN `found` repeats or precedes an earlier one.
    OutOfOrder { found: Lsn, expected: Lsn },
    /// Repair without salvage met damage other than a torn tail; `problem` is the check's
    /// report line for it.
    NeedsSalvage { problem: String },
    /// Salvage ran, yet the check still reports `problem`.
    StillDamaged { problem: String },
    /// Salvage would have to write more holes than it allows (`MAX_HOLES`) for `first..=last`.
    GapTooWide { first: Lsn, last: Lsn },
    /// Salvage would rename the segment onto `target`, a file it must not clobber.
    RenameTargetExists { target: PathBuf },
}

impl fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptionKind::BadSegmentName => {
                f.write_str("the name is not wal-<first LSN as 20 digits, >= 1>.log")
            }
            CorruptionKind::NotARegularFile => {
                f.write_str("named like a segment but not a regular file")
            }
            CorruptionKind::Damaged {
                damage,
                resumes_at: Some(at),
                skipped,
            } => write!(
                f,
                "{damage}; valid records resume at offset {at} ({skipped} bytes skipped)"
            ),
            CorruptionKind::Damaged {
                damage,
                resumes_at: None,
                skipped,
            } => write!(
                f,
                "{damage}; nothing valid follows in this segment ({skipped} bytes), but later \
                 segments exist"
            ),
            CorruptionKind::NameMismatch { name_lsn, found } => write!(
                f,
                "the segment's name says its first LSN is {name_lsn}, but its first record has \
                 LSN {found}"
            ),
            CorruptionKind::LsnGap { first, last, found } => {
                write!(
                    f,
                    "LSN gap: LSNs {first}..={last} are missing before LSN {found}"
                )
            }
            CorruptionKind::OutOfOrder { found, expected } => {
                write!(f, "LSN {found} is out of order (expected {expected})")
            }
            CorruptionKind::NeedsSalvage { problem } => write!(
                f,
                "{problem}. This is not a torn tail: repairing it drops acknowledged records, \
                 which only salvage does"
            ),
            CorruptionKind::StillDamaged { problem } => {
                write!(f, "still damaged after salvage: {problem}")
            }
            CorruptionKind::GapTooWide { first, last } => write!(
                f,
                "LSNs {first}..={last} are missing: too wide a gap to fill with holes; salvage \
                 changed nothing"
            ),
            CorruptionKind::RenameTargetExists { target } => write!(
                f,
                "salvage would rename this segment to {}, which exists",
                target.display()
            ),
        }
    }
}

/// What is wrong with the bytes at one offset: a record that cannot be read whole and valid.
/// At the log's very end this is a torn tail; anywhere else, [`CorruptionKind::Damaged`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordDamage {
    /// Fewer than a header's bytes are left in the segment.
    IncompleteHeader {
        available: u64,
    },
    /// The header claims more payload bytes than the segment holds after it.
    IncompletePayload {
        claimed: u32,
        available: u64,
    },
    CrcMismatch {
        stored: u32,
        computed: u32,
    },
    /// The file shrank while it was being read.
    Shrunk,
}

impl RecordDamage {
    /// The segment ended (as listed) before the record did.
    pub(super) fn is_short(self) -> bool {
        matches!(
            self,
            RecordDamage::IncompleteHeader { .. } | RecordDamage::IncompletePayload { .. }
        )
    }
}

impl fmt::Display for RecordDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordDamage::IncompleteHeader { available } => write!(
                f,
                "incomplete record header: {available} of {HEADER_LEN} bytes"
            ),
            RecordDamage::IncompletePayload { claimed, available } => write!(
                f,
                "record claims {claimed} payload bytes but only {available} remain"
            ),
            RecordDamage::CrcMismatch { stored, computed } => write!(
                f,
                "CRC mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            RecordDamage::Shrunk => f.write_str("the file is shorter than when it was listed"),
        }
    }
}

pub(super) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn corrupt(path: &Path, offset: u64, kind: CorruptionKind) -> WalError {
    WalError::Corrupt {
        path: path.to_path_buf(),
        offset,
        kind,
    }
}
