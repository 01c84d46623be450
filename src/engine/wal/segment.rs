//! Segment files: listing them, reading them record by record ([`Walker`]), and the checks
//! every reader applies (LSN order, names). Shared by open, replay, check and repair.
//!
//! It must never trust what it reads: lengths are bounded by the file, damage is reported as
//! an event (never a panic), and a reader never looks past the length a segment had when it
//! was listed, so a record being appended meanwhile is not seen half-written.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::error::{io_at, CorruptionKind, RecordDamage, WalError};
use super::format::{parse_header, parse_lsn_digits, record_crc, Header, HEADER_LEN};
use super::Lsn;

/// Read size while searching for the next valid record after damage.
const RESYNC_WINDOW: usize = 64 << 10;

pub(super) fn create_segment(path: &Path) -> io::Result<File> {
    // create_new: a segment of that name existing already would mean two writers or a bug;
    // never append to or clobber it.
    OpenOptions::new().append(true).create_new(true).open(path)
}

/// Makes a directory's entries (created, renamed, removed segments) durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

pub(super) fn truncate_file(path: &Path, len: u64) -> Result<(), WalError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_at(path))?;
    file.set_len(len).map_err(io_at(path))?;
    file.sync_all().map_err(io_at(path))
}

#[derive(Debug, Clone)]
pub(super) struct SegmentFile {
    pub(super) path: PathBuf,
    /// The first LSN its name claims.
    pub(super) name_lsn: Lsn,
    /// Length when listed: a reader never looks past it, so a concurrent append is not seen
    /// half-written.
    pub(super) len: u64,
}

pub(super) struct Listing {
    /// In LSN order.
    pub(super) segments: Vec<SegmentFile>,
    /// `wal-*.log` entries whose name or type is wrong.
    pub(super) bad_names: Vec<(PathBuf, CorruptionKind)>,
}

impl Listing {
    /// The segments holding records (empty files only carry a name), in LSN order.
    pub(super) fn live(&self) -> Vec<SegmentFile> {
        self.segments
            .iter()
            .filter(|s| s.len > 0)
            .cloned()
            .collect()
    }
}

pub(super) fn list_segments(dir: &Path) -> Result<Listing, WalError> {
    let mut segments = Vec::new();
    let mut bad_names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        let file_name = entry.file_name();
        // Anything not named like a segment (repair's `.tmp` and `.bad` files included) is
        // not ours to judge.
        let Some(middle) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix("wal-")?.strip_suffix(".log"))
        else {
            continue;
        };
        let path = entry.path();
        let Some(name_lsn) = parse_lsn_digits(middle) else {
            bad_names.push((path, CorruptionKind::BadSegmentName));
            continue;
        };
        let meta = fs::metadata(&path).map_err(io_at(&path))?;
        if !meta.is_file() {
            bad_names.push((path, CorruptionKind::NotARegularFile));
            continue;
        }
        segments.push(SegmentFile {
            path,
            name_lsn,
            len: meta.len(),
        });
    }
    segments.sort_by_key(|s| s.name_lsn);
    bad_names.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Listing {
        segments,
        bad_names,
    })
}

enum Step {
    End,
    Record { offset: u64, lsn: Lsn },
    Damage { offset: u64, damage: RecordDamage },
}

/// Reads one segment record by record, up to its listed length.
struct SegmentReader {
    path: PathBuf,
    len: u64,
    file: BufReader<File>,
    pos: u64,
}

impl SegmentReader {
    fn open(seg: &SegmentFile) -> Result<Self, WalError> {
        let file = File::open(&seg.path).map_err(io_at(&seg.path))?;
        Ok(SegmentReader {
            path: seg.path.clone(),
            len: seg.len,
            file: BufReader::with_capacity(256 << 10, file),
            pos: 0,
        })
    }

    /// The next record (its payload left in `payload`), or damage at the current position.
    /// After damage the position is unchanged; call `resync` to go on.
    fn next(&mut self, payload: &mut Vec<u8>) -> Result<Step, WalError> {
        let offset = self.pos;
        let remaining = self.len.saturating_sub(offset);
        if remaining == 0 {
            return Ok(Step::End);
        }
        if remaining < HEADER_LEN as u64 {
            let damage = RecordDamage::IncompleteHeader {
                available: remaining,
            };
            return Ok(Step::Damage { offset, damage });
        }
        let mut raw = [0u8; HEADER_LEN];
        if let Some(damage) = self.read_exact(&mut raw, offset)? {
            return Ok(damage);
        }
        let header = Header::decode(&raw);
        let body = remaining - HEADER_LEN as u64;
        if u64::from(header.len) > body {
            let damage = RecordDamage::IncompletePayload {
                claimed: header.len,
                available: body,
            };
            return Ok(Step::Damage { offset, damage });
        }
        payload.clear();
        // Bounded by the file's length (checked above), whatever the header says.
        payload.resize(header.len as usize, 0);
        if let Some(damage) = self.read_exact(payload, offset)? {
            return Ok(damage);
        }
        let crc = record_crc(header.lsn, payload);
        if crc != header.crc {
            let damage = RecordDamage::CrcMismatch {
                stored: header.crc,
                computed: crc,
            };
            return Ok(Step::Damage { offset, damage });
        }
        self.pos += HEADER_LEN as u64 + u64::from(header.len);
        Ok(Step::Record {
            offset,
            lsn: header.lsn,
        })
    }

    /// Lets the reader see the segment up to `len` (it grew since it was listed) and rewinds to
    /// the record it could not read whole.
    fn extend_to(&mut self, len: u64) -> Result<(), WalError> {
        self.len = len;
        self.file
            .seek(SeekFrom::Start(self.pos))
            .map_err(io_at(&self.path))?;
        Ok(())
    }

    /// Reads exactly `buf.len()` bytes; a file shorter than listed is damage, not an I/O error.
    fn read_exact(&mut self, buf: &mut [u8], offset: u64) -> Result<Option<Step>, WalError> {
        match self.file.read_exact(buf) {
            Ok(()) => Ok(None),
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Ok(Some(Step::Damage {
                offset,
                damage: RecordDamage::Shrunk,
            })),
            Err(err) => Err(WalError::Io {
                path: self.path.clone(),
                source: err,
            }),
        }
    }

    /// Finds the first offset after `damaged_at` where a whole record with a valid CRC and a
    /// plausible LSN starts (at least `min_lsn`, and no further ahead than the bytes in this
    /// file could number), and positions the reader there. The LSN filter keeps zero-filled
    /// or garbage tails from passing for records, and makes the scan cheap: the CRC is only
    /// computed for the rare candidate.
    fn resync(&mut self, damaged_at: u64, min_lsn: Lsn) -> Result<Option<u64>, WalError> {
        let len = self.len;
        let max_lsn = min_lsn.saturating_add(len / HEADER_LEN as u64 + 1);
        let mut window = vec![0u8; RESYNC_WINDOW + HEADER_LEN - 1];
        let mut base = damaged_at + 1;
        while base + HEADER_LEN as u64 <= len {
            let n = (window.len() as u64).min(len - base) as usize;
            let Some(chunk) = self.read_at(base, &mut window[..n])? else {
                return Ok(None);
            };
            let starts = chunk.len().saturating_sub(HEADER_LEN - 1);
            for i in 0..starts {
                let Some(header) = chunk.get(i..).and_then(parse_header) else {
                    continue;
                };
                if header.lsn < min_lsn || header.lsn > max_lsn {
                    continue;
                }
                let at = base + i as u64;
                if at + (HEADER_LEN as u64) + u64::from(header.len) > len {
                    continue;
                }
                if self.crc_matches(at, &header)? {
                    self.file
                        .seek(SeekFrom::Start(at))
                        .map_err(io_at(&self.path))?;
                    self.pos = at;
                    return Ok(Some(at));
                }
            }
            if starts == 0 {
                break;
            }
            base += starts as u64;
        }
        Ok(None)
    }

    /// Fills `buf` from `offset`; `None` if the file ended early (it shrank since listing).
    fn read_at<'b>(
        &mut self,
        offset: u64,
        buf: &'b mut [u8],
    ) -> Result<Option<&'b [u8]>, WalError> {
        let file = self.file.get_mut();
        file.seek(SeekFrom::Start(offset))
            .map_err(io_at(&self.path))?;
        match file.read_exact(buf) {
            Ok(()) => Ok(Some(buf)),
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(err) => Err(WalError::Io {
                path: self.path.clone(),
                source: err,
            }),
        }
    }

    fn crc_matches(&mut self, at: u64, header: &Header) -> Result<bool, WalError> {
        let mut crc = record_crc(header.lsn, &[]);
        let mut chunk = [0u8; 8192];
        let mut offset = at + HEADER_LEN as u64;
        let mut left = u64::from(header.len);
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            let Some(bytes) = self.read_at(offset, &mut chunk[..n])? else {
                return Ok(false);
            };
            crc = crc32c::crc32c_append(crc, bytes);
            offset += n as u64;
            left -= n as u64;
        }
        Ok(crc == header.crc)
    }
}

pub(super) enum Event<'a> {
    Record {
        seg: &'a SegmentFile,
        offset: u64,
        lsn: Lsn,
        payload: &'a [u8],
    },
    /// `resumes_at`: the next valid record in the same segment. `tail`: nothing valid follows
    /// anywhere in the log, so this is a torn tail.
    Damage {
        seg: &'a SegmentFile,
        offset: u64,
        damage: RecordDamage,
        resumes_at: Option<u64>,
        tail: bool,
    },
}

/// What the walker read last, before it is lent out as an [`Event`].
enum Found {
    Record {
        offset: u64,
        lsn: Lsn,
    },
    Damage {
        offset: u64,
        damage: RecordDamage,
        resumes_at: Option<u64>,
        tail: bool,
    },
}

/// Reads segments (non-empty ones, in LSN order) record by record and reports each record
/// and each damaged stretch. After damage it carries on from the next valid record, so check
/// and repair see everything; readers that refuse damage simply stop asking.
pub(super) struct Walker {
    segments: Vec<SegmentFile>,
    /// The segment being read (`segments.len()` once done).
    index: usize,
    reader: Option<SegmentReader>,
    /// The segment of the last event.
    event_segment: usize,
    /// The payload of the last record event, reused from record to record.
    payload: Vec<u8>,
    last_good: Option<Lsn>,
}

impl Walker {
    pub(super) fn new(segments: Vec<SegmentFile>) -> Self {
        Walker {
            segments,
            index: 0,
            reader: None,
            event_segment: 0,
            payload: Vec::new(),
            last_good: None,
        }
    }

    /// The next record or damaged stretch; `None` at the end of the last segment.
    pub(super) fn next_event(&mut self) -> Result<Option<Event<'_>>, WalError> {
        let found = loop {
            let Some(seg) = self.segments.get(self.index) else {
                return Ok(None);
            };
            let reader = match &mut self.reader {
                Some(reader) => reader,
                None => self.reader.insert(SegmentReader::open(seg)?),
            };
            self.event_segment = self.index;
            match reader.next(&mut self.payload)? {
                Step::End => {
                    self.reader = None;
                    self.index += 1;
                }
                Step::Record { offset, lsn } => {
                    self.last_good = Some(lsn);
                    break Found::Record { offset, lsn };
                }
                Step::Damage { offset, damage } => {
                    let later_segments = self.index + 1 < self.segments.len();
                    if later_segments && damage.is_short() {
                        if let Some(len) = grown_len(seg) {
                            reader.extend_to(len)?;
                            self.segments[self.index].len = len;
                            continue;
                        }
                    }
                    let min_lsn = self
                        .last_good
                        .map_or(seg.name_lsn, |lsn| lsn.saturating_add(1));
                    let resumes_at = reader.resync(offset, min_lsn)?;
                    let tail = self.index + 1 == self.segments.len() && resumes_at.is_none();
                    if resumes_at.is_none() {
                        self.reader = None;
                        self.index += 1;
                    }
                    break Found::Damage {
                        offset,
                        damage,
                        resumes_at,
                        tail,
                    };
                }
            }
        };
        let seg = &self.segments[self.event_segment];
        Ok(Some(match found {
            Found::Record { offset, lsn } => Event::Record {
                seg,
                offset,
                lsn,
                payload: &self.payload,
            },
            Found::Damage {
                offset,
                damage,
                resumes_at,
                tail,
            } => Event::Damage {
                seg,
                offset,
                damage,
                resumes_at,
                tail,
            },
        }))
    }

    /// The segment and payload of the last record event, lent again (for readers that
    /// checked the event before handing the record on).
    pub(super) fn last_record(&self) -> (&SegmentFile, &[u8]) {
        (&self.segments[self.event_segment], &self.payload)
    }
}

/// The segment's length now, if it grew since it was listed. A listing made while the writer
/// appends can see a segment's length mid-write (it grows page by page) and then, a moment
/// later, the next segment the writer rolled to; the earlier segment is whole by then (the
/// writer finishes one before it creates the next), so reading it to its current length
/// tells an append in progress from damage. A log nobody writes never grows.
fn grown_len(seg: &SegmentFile) -> Option<u64> {
    fs::metadata(&seg.path)
        .ok()
        .map(|meta| meta.len())
        .filter(|&len| len > seg.len)
}

impl SegmentFile {
    /// What to report for damage at `offset` that is not a torn tail.
    pub(super) fn damaged(
        &self,
        offset: u64,
        damage: RecordDamage,
        resumes_at: Option<u64>,
    ) -> CorruptionKind {
        let skipped = resumes_at.unwrap_or(self.len) - offset;
        CorruptionKind::Damaged {
            damage,
            resumes_at,
            skipped,
        }
    }

    /// A segment's name must match its first record (checked only at offset 0: after damage
    /// the first valid record is not the first record).
    pub(super) fn name_problem(&self, offset: u64, lsn: Lsn) -> Option<CorruptionKind> {
        (offset == 0 && lsn != self.name_lsn).then_some(CorruptionKind::NameMismatch {
            name_lsn: self.name_lsn,
            found: lsn,
        })
    }
}

pub(super) enum Order {
    Expected,
    /// LSNs `first..=last` are missing before this record.
    Gap {
        first: Lsn,
        last: Lsn,
    },
    /// The record repeats or precedes an earlier LSN.
    Behind {
        expected: Lsn,
    },
}

/// The LSN the next record must carry.
#[derive(Default)]
pub(super) struct Sequence {
    pub(super) next: Option<Lsn>,
}

impl Sequence {
    pub(super) fn classify(&self, lsn: Lsn) -> Order {
        match self.next {
            None => Order::Expected,
            Some(next) if lsn == next => Order::Expected,
            Some(next) if lsn > next => Order::Gap {
                first: next,
                last: lsn - 1,
            },
            Some(next) => Order::Behind { expected: next },
        }
    }

    pub(super) fn problem(&self, lsn: Lsn) -> Option<CorruptionKind> {
        order_problem(self.classify(lsn), lsn)
    }

    pub(super) fn accept(&mut self, lsn: Lsn) {
        self.next = Some(lsn.saturating_add(1));
    }
}

pub(super) fn order_problem(order: Order, found: Lsn) -> Option<CorruptionKind> {
    match order {
        Order::Expected => None,
        Order::Gap { first, last } => Some(CorruptionKind::LsnGap { first, last, found }),
        Order::Behind { expected } => Some(CorruptionKind::OutOfOrder { found, expected }),
    }
}
