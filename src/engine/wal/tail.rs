//! Following the log as it grows, for replication (DESIGN.md §9): [`WalTail`] hands out the
//! records after an LSN exactly as the log holds them (header, CRC and payload), so a primary
//! can stream them to a replica and the replica can check every one before it applies it.
//!
//! It reads only records the writer has already handed to the OS (the caller passes
//! [`Wal::written_lsn`](super::Wal::written_lsn) as the bound), so it never meets a record
//! half-written, and it keeps its file open between calls, so following the log costs one
//! sequential read of each record, not a walk from the start of its segment per call. A
//! segment a checkpoint deletes while it is open stays readable through the open file; one
//! deleted before the tail reaches it is reported as [`TailError::Gone`], and the replica then
//! needs a full sync.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use super::error::{corrupt, io_at, CorruptionKind, WalError};
use super::format::{record_crc, Header, HEADER_LEN};
use super::segment::list_segments;
use super::Lsn;

/// Why a tail cannot go on.
#[derive(Debug)]
pub enum TailError {
    /// The record wanted next is no longer in the log (a checkpoint removed its segment).
    Gone { wanted: Lsn },
    /// Reading failed, or the log is damaged.
    Wal(WalError),
}

impl std::fmt::Display for TailError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TailError::Gone { wanted } => {
                write!(f, "WAL record {wanted} is no longer retained")
            }
            TailError::Wal(err) => err.fmt(f),
        }
    }
}

impl From<WalError> for TailError {
    fn from(err: WalError) -> Self {
        TailError::Wal(err)
    }
}

/// A reader positioned at an LSN of a live log.
pub struct WalTail {
    dir: PathBuf,
    next: Lsn,
    open: Option<OpenSegment>,
    payload: Vec<u8>,
}

struct OpenSegment {
    path: PathBuf,
    reader: BufReader<File>,
    offset: u64,
}

impl WalTail {
    /// A tail whose first record will be `after + 1`.
    pub fn new(dir: &Path, after: Lsn) -> Self {
        WalTail {
            dir: dir.to_path_buf(),
            next: after + 1,
            open: None,
            payload: Vec::new(),
        }
    }

    /// The LSN of the next record `read` hands out.
    pub fn next_lsn(&self) -> Lsn {
        self.next
    }

    /// Appends to `out`, as encoded in the log, the records from the next one up to `upto`
    /// (at most the log's written LSN), stopping once `out` holds `max_bytes` or more.
    /// Returns how many it appended.
    pub fn read(
        &mut self,
        upto: Lsn,
        max_bytes: usize,
        out: &mut Vec<u8>,
    ) -> Result<u64, TailError> {
        let mut appended = 0;
        // Set when a segment ended before the record wanted: the next open must find a later
        // one, or the log lost the record (a second end in a row is damage, not a race).
        let mut ended_at: Option<PathBuf> = None;
        while self.next <= upto && out.len() < max_bytes {
            if self.open.is_none() {
                let path = self.open_segment()?;
                if ended_at.as_ref() == Some(&path) {
                    return Err(damaged(&path, 0, format!("LSN {} is missing", self.next)));
                }
            }
            let segment = self.open.as_mut().expect("opened above");
            let mut raw = [0u8; HEADER_LEN];
            if !read_whole(&mut segment.reader, &mut raw).map_err(io_at(&segment.path))? {
                // The record wanted is in a later segment.
                ended_at = self.open.take().map(|segment| segment.path);
                continue;
            }
            let header = Header::decode(&raw);
            self.payload.clear();
            self.payload.resize(header.len as usize, 0);
            if !read_whole(&mut segment.reader, &mut self.payload).map_err(io_at(&segment.path))? {
                let problem = format!("record {} ends before its {} bytes", header.lsn, header.len);
                return Err(damaged(&segment.path, segment.offset, problem));
            }
            let at = segment.offset;
            segment.offset += (HEADER_LEN + self.payload.len()) as u64;
            if record_crc(header.lsn, &self.payload) != header.crc {
                let problem = format!("record {} fails its CRC", header.lsn);
                return Err(damaged(&segment.path, at, problem));
            }
            if header.lsn < self.next {
                continue;
            }
            if header.lsn > self.next {
                let kind = CorruptionKind::OutOfOrder {
                    found: header.lsn,
                    expected: self.next,
                };
                return Err(corrupt(&segment.path, at, kind).into());
            }
            out.extend_from_slice(&raw);
            out.extend_from_slice(&self.payload);
            self.next += 1;
            appended += 1;
            ended_at = None;
        }
        Ok(appended)
    }

    /// Opens the segment holding `next` (the last one whose name is at or before it) and
    /// returns its path.
    fn open_segment(&mut self) -> Result<PathBuf, TailError> {
        let listing = list_segments(&self.dir)?;
        let Some(segment) = listing
            .segments
            .iter()
            .rfind(|segment| segment.name_lsn <= self.next)
        else {
            return Err(TailError::Gone { wanted: self.next });
        };
        let file = File::open(&segment.path).map_err(io_at(&segment.path))?;
        self.open = Some(OpenSegment {
            path: segment.path.clone(),
            reader: BufReader::with_capacity(256 << 10, file),
            offset: 0,
        });
        Ok(segment.path.clone())
    }
}

fn damaged(path: &Path, offset: u64, problem: String) -> TailError {
    corrupt(path, offset, CorruptionKind::NeedsSalvage { problem }).into()
}

/// Fills `buf`; false if the file ended first (nothing is consumed past its end).
fn read_whole(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(true)
}

/// A record read back from bytes a [`WalTail`] produced.
pub struct StreamedRecord<'a> {
    pub lsn: Lsn,
    pub payload: &'a [u8],
    /// Bytes it took, header included.
    pub len: usize,
}

/// The first record of bytes a `WalTail` produced, checked (whole, CRC). `Ok(None)`: `bytes`
/// does not hold a whole record yet.
pub fn decode_streamed_record(bytes: &[u8]) -> Result<Option<StreamedRecord<'_>>, String> {
    let Some(header) = super::format::parse_header(bytes) else {
        return Ok(None);
    };
    let end = HEADER_LEN + header.len as usize;
    let Some(payload) = bytes.get(HEADER_LEN..end) else {
        return Ok(None);
    };
    if record_crc(header.lsn, payload) != header.crc {
        return Err(format!("record {} fails its CRC", header.lsn));
    }
    Ok(Some(StreamedRecord {
        lsn: header.lsn,
        payload,
        len: end,
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::wal::{records_after, SyncPolicy, Wal, WalOptions};

    fn small_segments() -> WalOptions {
        WalOptions {
            segment_bytes: 256,
            sync: SyncPolicy::No,
            first_lsn: 1,
        }
    }

    fn payload(lsn: Lsn) -> Vec<u8> {
        format!("record-{lsn:05}").into_bytes()
    }

    /// Reads everything written after the tail's position and checks each record.
    fn drain(tail: &mut WalTail, wal: &Wal) -> Vec<Lsn> {
        let mut bytes = Vec::new();
        tail.read(wal.written_lsn(), usize::MAX, &mut bytes)
            .unwrap();
        let mut lsns = Vec::new();
        let mut rest = &bytes[..];
        while let Some(record) = decode_streamed_record(rest).unwrap() {
            assert_eq!(record.payload, payload(record.lsn));
            lsns.push(record.lsn);
            rest = &rest[record.len..];
        }
        assert!(rest.is_empty());
        lsns
    }

    fn append_until_written(wal: &Wal, lsns: std::ops::RangeInclusive<Lsn>) {
        let last = *lsns.end();
        for lsn in lsns {
            assert_eq!(wal.append(&payload(lsn)).unwrap(), lsn);
        }
        while wal.written_lsn() < last {
            wal.wait_written(last - 1, Duration::from_millis(100));
        }
    }

    #[test]
    fn a_tail_follows_a_growing_log_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), small_segments()).unwrap();
        append_until_written(&wal, 1..=40);
        let mut tail = WalTail::new(dir.path(), 0);
        assert_eq!(drain(&mut tail, &wal), (1..=40).collect::<Vec<_>>());
        // Nothing new: nothing read, and the position stays.
        assert!(drain(&mut tail, &wal).is_empty());
        append_until_written(&wal, 41..=75);
        assert_eq!(drain(&mut tail, &wal), (41..=75).collect::<Vec<_>>());
        // A tail may start anywhere, and stops at the bytes asked for (whole records).
        let mut middle = WalTail::new(dir.path(), 30);
        let mut bytes = Vec::new();
        assert_eq!(middle.read(75, 1, &mut bytes).unwrap(), 1);
        assert_eq!(decode_streamed_record(&bytes).unwrap().unwrap().lsn, 31);
        assert_eq!(middle.next_lsn(), 32);
        wal.close().unwrap();
    }

    #[test]
    fn a_tail_whose_records_were_removed_reports_them_gone() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), small_segments()).unwrap();
        append_until_written(&wal, 1..=40);
        wal.remove_segments_before(30).unwrap();
        let oldest = wal.oldest_lsn();
        assert!(oldest > 1 && oldest <= 30, "oldest {oldest}");
        let mut gone = WalTail::new(dir.path(), 0);
        assert!(matches!(
            gone.read(40, usize::MAX, &mut Vec::new()),
            Err(TailError::Gone { wanted: 1 })
        ));
        let mut kept = WalTail::new(dir.path(), oldest - 1);
        assert_eq!(drain(&mut kept, &wal), (oldest..=40).collect::<Vec<_>>());
        // A backlog keeps segments a checkpoint could otherwise remove.
        wal.remove_segments_keeping(41, u64::MAX).unwrap();
        assert_eq!(wal.oldest_lsn(), oldest);
        wal.close().unwrap();
    }

    #[test]
    fn restart_at_empties_the_log_and_numbers_on_from_there() {
        for restart in [3, 500] {
            let dir = tempfile::tempdir().unwrap();
            let wal = Wal::open(dir.path(), small_segments()).unwrap();
            append_until_written(&wal, 1..=20);
            wal.restart_at(restart).unwrap();
            assert_eq!(
                (wal.last_lsn(), wal.written_lsn(), wal.oldest_lsn()),
                (restart, restart, restart + 1)
            );
            assert_eq!(wal.append(b"next").unwrap(), restart + 1);
            wal.close().unwrap();
            let records: Vec<_> = records_after(dir.path(), 0)
                .unwrap()
                .map(|record| record.unwrap().lsn)
                .collect();
            assert_eq!(records, vec![restart + 1]);
            let reopened = Wal::open(dir.path(), small_segments()).unwrap();
            assert_eq!(reopened.last_lsn(), restart + 1);
            reopened.close().unwrap();
        }
    }
}
