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
