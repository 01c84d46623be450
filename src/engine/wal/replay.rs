//! Reading the log back in order: [`records_after`] (the one validated reader, which open,
//! replay and a replication stream share) and [`replay`] built on it.
//!
//! It only reads, so it may run while a [`Wal`](super::Wal) appends: a reader sees the
//! segments as they were when it listed them, and an incomplete last record (one being
//! written) ends it cleanly. It must never hand out a record it has not fully validated (CRC,
//! LSN order, segment name) nor skip damage silently: anything but a torn tail is an error.

use std::error::Error;
use std::io;
use std::path::{Path, PathBuf};

use super::error::{corrupt, RecordDamage, WalError};
use super::segment::{list_segments, Event, SegmentFile, Sequence, Walker};
use super::Lsn;

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub lsn: Lsn,
    pub payload: Vec<u8>,
}

/// A record as [`RecordsAfter::next_ref`] lends it, with where it lies in the log.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub lsn: Lsn,
    pub payload: &'a [u8],
    /// The segment file holding it.
    pub path: &'a Path,
    /// Its byte offset within `path`.
    pub offset: u64,
}

/// The damaged last record a reader stopped at: an interrupted write, or one in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub path: PathBuf,
    pub offset: u64,
    pub damage: RecordDamage,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Records passed to `apply` (holes and records at or before `after` are not).
    pub records: u64,
    /// Payload bytes passed to `apply`.
    pub bytes: u64,
    pub first_lsn: Option<Lsn>,
    pub last_lsn: Option<Lsn>,
}

/// The records with an LSN above `after`, in order, holes skipped: see [`RecordsAfter`].
/// Segments holding only records `<= after` are not read, so the cost follows the log since
/// `after`. A missing directory is an empty log; a badly named segment is `Corrupt`.
pub fn records_after(dir: &Path, after: Lsn) -> Result<RecordsAfter, WalError> {
    let listing = match list_segments(dir) {
        Ok(listing) => listing,
        Err(WalError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(RecordsAfter::over(Vec::new(), after));
        }
        Err(err) => return Err(err),
    };
    if let Some((path, kind)) = listing.bad_names.first() {
        return Err(corrupt(path, 0, kind.clone()));
    }
    let live = listing.live();
    // Segment i holds only LSNs below its successor's first one.
    let skip = live
        .windows(2)
        .take_while(|pair| pair[1].name_lsn <= after.saturating_add(1))
        .count();
    Ok(RecordsAfter::over(live[skip..].to_vec(), after))
}

/// Reads validated records after an LSN. Ends (`None`) at the end of the log or at a torn
/// tail ([`RecordsAfter::torn_tail`] says which); yields `Err` once, then ends, for any
/// other damage (a bad CRC or a truncated record with valid records after it, an LSN out of
/// order or missing, a segment whose name does not match its first record).
///
/// As an `Iterator` it yields owned [`Record`]s; [`RecordsAfter::next_ref`] lends each
/// record instead, without copying it. To follow a growing log, read to the end, then start
/// again from [`RecordsAfter::last_lsn`].
pub struct RecordsAfter {
    walker: Walker,
    after: Lsn,
    seq: Sequence,
    torn_tail: Option<TornTail>,
    finished: bool,
}

impl RecordsAfter {
    /// Reads `live` (non-empty segments in LSN order) whole, handing out records `> after`.
    pub(super) fn over(live: Vec<SegmentFile>, after: Lsn) -> Self {
        RecordsAfter {
            walker: Walker::new(live),
            after,
            seq: Sequence::default(),
            torn_tail: None,
            finished: false,
        }
    }

    /// The next record, lent until the next call.
    pub fn next_ref(&mut self) -> Result<Option<RecordRef<'_>>, WalError> {
        if self.finished {
            return Ok(None);
        }
        match self.advance() {
            Ok(Some((lsn, offset))) => {
                let (seg, payload) = self.walker.last_record();
                Ok(Some(RecordRef {
                    lsn,
                    payload,
                    path: &seg.path,
                    offset,
                }))
            }
            other => {
                self.finished = true;
                other.map(|_| None)
            }
        }
    }

    /// The highest LSN read and validated so far, holes and records `<= after` included:
    /// after the end, where a follower resumes. `None` if no record was read.
    pub fn last_lsn(&self) -> Option<Lsn> {
        self.seq.next.map(|next| next - 1)
    }

    /// The torn last record reading stopped at, if it did.
    pub fn torn_tail(&self) -> Option<&TornTail> {
        self.torn_tail.as_ref()
    }

    /// Reads on to the next record to hand out and returns its LSN and offset (its segment
    /// and payload stay in the walker).
    fn advance(&mut self) -> Result<Option<(Lsn, u64)>, WalError> {
        loop {
            let Some(event) = self.walker.next_event()? else {
                return Ok(None);
            };
            match event {
                Event::Record {
                    seg,
                    offset,
                    lsn,
                    payload,
                } => {
                    if let Some(kind) = seg
                        .name_problem(offset, lsn)
                        .or_else(|| self.seq.problem(lsn))
                    {
                        return Err(corrupt(&seg.path, offset, kind));
                    }
                    self.seq.accept(lsn);
                    if lsn > self.after && !payload.is_empty() {
                        return Ok(Some((lsn, offset)));
                    }
                }
                Event::Damage {
                    seg,
                    offset,
                    damage,
                    tail: true,
                    ..
                } => {
                    self.torn_tail = Some(TornTail {
                        path: seg.path.clone(),
                        offset,
                        damage,
                    });
                    return Ok(None);
                }
                Event::Damage {
                    seg,
                    offset,
                    damage,
                    resumes_at,
                    ..
                } => {
                    return Err(corrupt(
                        &seg.path,
                        offset,
                        seg.damaged(offset, damage, resumes_at),
                    ))
                }
            }
        }
    }
}

impl Iterator for RecordsAfter {
    type Item = Result<Record, WalError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_ref()
            .map(|record| {
                record.map(|r| Record {
                    lsn: r.lsn,
                    payload: r.payload.to_vec(),
                })
            })
            .transpose()
    }
}

/// Calls `apply(lsn, payload)` for every record with `lsn > after`, in order, skipping holes:
/// [`records_after`] read to its end. Read-only: run it after [`Wal::open`](super::Wal::open)
/// (which truncates a torn tail) and before appending. An incomplete last record (one being
/// written) ends the replay; any other damage is `Corrupt`. A record `apply` rejects stops
/// the replay with [`WalError::Apply`], which names its file and offset and keeps `apply`'s
/// error (any error type converts, `String` included).
pub fn replay(
    dir: &Path,
    after: Lsn,
    mut apply: impl FnMut(Lsn, &[u8]) -> Result<(), Box<dyn Error + Send + Sync>>,
) -> Result<ReplayStats, WalError> {
    let mut records = records_after(dir, after)?;
    let mut stats = ReplayStats::default();
    while let Some(record) = records.next_ref()? {
        let lsn = record.lsn;
        apply(lsn, record.payload).map_err(|source| WalError::Apply {
            lsn,
            path: record.path.to_path_buf(),
            offset: record.offset,
            source,
        })?;
        stats.records += 1;
        stats.bytes += record.payload.len() as u64;
        stats.first_lsn.get_or_insert(lsn);
        stats.last_lsn = Some(lsn);
    }
    if let Some(tail) = records.torn_tail() {
        tracing::debug!(
            path = %tail.path.display(),
            offset = tail.offset,
            reason = %tail.damage,
            "replay stopped at an incomplete last record"
        );
    }
    Ok(stats)
}
