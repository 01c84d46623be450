//! The engine's write-ahead log (DESIGN.md §4, invariant I5).
//!
//! It owns one directory (the caller passes `<data_dir>/wal`) holding segment files named
//! `wal-<first LSN, 20 digits>.log`. A segment is a run of records
//! `[payload_len: u32 LE][crc32c(lsn ++ payload): u32 LE][lsn: u64 LE][payload]`; LSNs start at 1
//! and rise by exactly one per record across segments. Payloads are opaque: the engine encodes
//! its mutations, this module never looks inside them.
//!
//! Threads. [`Wal::append`] only copies the record into an in-memory buffer under a short lock,
//! because its caller holds engine shard locks. One background writer thread per [`Wal`] owns
//! the active segment file: it takes the whole buffer, writes it (rolling segments), fsyncs
//! according to the [`SyncPolicy`] and publishes the durable LSN (a condvar for blocking
//! callers, a `tokio::sync::watch` for async ones). Under `Always` one fsync covers every record
//! that arrived while the previous fsync ran: group commit.
//!
//! What it must never do:
//! - report a record as durable before an fsync covered it (and the directory entry of its
//!   segment);
//! - lose a record silently: an I/O error on the writer is sticky, and every later append, sync
//!   and wait for a record not yet durable returns it;
//! - repair damage it cannot prove is a torn tail. At open only an incomplete or CRC-failing
//!   last record with nothing valid after it is truncated; anything else stops startup with
//!   [`WalError::Corrupt`], naming the file, the byte offset and `hypercache-tool recover`. The
//!   offline [`repair`] reports every byte range and LSN it drops;
//! - let memory grow without bound: once [`MAX_UNWRITTEN_BYTES`] wait to be written, `append`
//!   blocks until the writer catches up;
//! - panic on anything it reads from disk.
//!
//! Holes: salvage ([`repair`] with `salvage`) cannot renumber the records after a lost one,
//! because the checkpoint LSN stored in the cold tier refers to these numbers. It writes a record
//! with an empty payload (a hole) in place of every lost LSN instead. [`replay`] skips holes, and
//! [`Wal::append`] refuses empty payloads so a hole is never mistaken for a mutation.
//!
//! Startup order: [`Wal::open`] (validates, truncates a torn tail), then [`replay`] on the same
//! directory with the checkpoint LSN, then start serving and appending. `replay` only reads, so
//! it may also run while a `Wal` appends (it then stops at the record being written).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

/// Log sequence number: 1 for the first record ever written, +1 per record.
pub type Lsn = u64;

/// Bytes before each payload: length, CRC, LSN.
const HEADER_LEN: usize = 16;
/// Unwritten bytes (buffered plus being written) above which `append` blocks: the bound on the
/// WAL's memory whatever the disk's speed.
pub const MAX_UNWRITTEN_BYTES: usize = 64 << 20;
/// The writer keeps its spare buffer between rounds to avoid reallocating, but not a burst's
/// worth of it: memory is one budget (I6).
const RETAINED_BUFFER_BYTES: usize = 1 << 20;
const EVERYSEC_INTERVAL: Duration = Duration::from_secs(1);
/// Under everysec / no, how long the writer lets records gather before one write (the most a
/// kill -9 can add to what everysec may lose), and the size that ends the wait early.
const COALESCE_WAIT: Duration = Duration::from_millis(2);
const COALESCE_MAX_BYTES: usize = 1 << 20;
/// Salvage fills a gap with one 16-byte hole per lost LSN. A gap wider than this is not a few
/// lost records but a broken log, and filling it would write gigabytes.
const MAX_HOLES: u64 = 1 << 20;
/// Read size while searching for the next valid record after damage.
const RESYNC_WINDOW: usize = 64 << 10;

/// When the writer fsyncs: the configuration's `persistence.sync`. `Always` fsyncs as soon
/// as anything is unsynced (one fsync covers every record buffered meanwhile); `Everysec`
/// writes within milliseconds of an append and fsyncs once per second; `No` writes promptly
/// and fsyncs only on [`Wal::sync`] / [`Wal::close`] (or when someone calls
/// [`Wal::wait_durable`]).
pub use crate::config::SyncPolicy;

#[derive(Debug, Clone)]
pub struct WalOptions {
    /// A new segment starts when the current one would exceed this. A record larger than this
    /// gets a segment of its own.
    pub segment_bytes: u64,
    pub sync: SyncPolicy,
    /// The LSN a log with no records starts at (the engine passes its checkpoint LSN + 1, so
    /// a log emptied by checkpoints, or deleted, never reuses numbers a checkpoint covers).
    pub first_lsn: Lsn,
}

impl Default for WalOptions {
    fn default() -> Self {
        // Redis's default appendfsync is everysec.
        WalOptions {
            segment_bytes: 64 << 20,
            sync: SyncPolicy::Everysec,
            first_lsn: 1,
        }
    }
}

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
        reason: String,
    },
    Closed,
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalError::Io { path, source } => {
                write!(f, "WAL I/O error on {}: {source}", path.display())
            }
            WalError::Corrupt {
                path,
                offset,
                reason,
            } => {
                // Segments live in `<data_dir>/wal/`: name the directory the tool wants.
                let data_dir = path
                    .parent()
                    .and_then(Path::parent)
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                write!(
                    f,
                    "WAL damaged in {} at byte offset {offset}: {reason}. Refusing to continue \
                     over a damaged log; run `hypercache-tool recover --dir {}`",
                    path.display(),
                    data_dir.display()
                )
            }
            WalError::Closed => f.write_str("the WAL is closed"),
        }
    }
}

impl std::error::Error for WalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WalError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, offset: u64, reason: String) -> WalError {
    WalError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    }
}

/// A writer failure, kept so every later caller gets it (`io::Error` is not `Clone`).
#[derive(Debug, Clone)]
struct StickyError {
    path: PathBuf,
    kind: io::ErrorKind,
    message: String,
}

impl StickyError {
    fn new(path: &Path, err: &io::Error) -> Self {
        StickyError {
            path: path.to_path_buf(),
            kind: err.kind(),
            message: err.to_string(),
        }
    }

    fn to_error(&self) -> WalError {
        WalError::Io {
            path: self.path.clone(),
            source: io::Error::new(self.kind, self.message.clone()),
        }
    }
}

/// Counters for INFO and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// fsync calls (segments and directory) made by the writer since open.
    pub fsyncs: u64,
    /// Write rounds: each takes everything buffered at that moment.
    pub write_rounds: u64,
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

#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Segment files, empty ones included.
    pub segments: u64,
    /// Valid records (holes included).
    pub records: u64,
    /// Total size of the segment files.
    pub bytes: u64,
    pub first_lsn: Option<Lsn>,
    pub last_lsn: Option<Lsn>,
    /// A torn last record: open truncates it at this offset.
    pub torn_tail: Option<(PathBuf, u64)>,
    /// Everything else; any entry makes open refuse.
    pub problems: Vec<(PathBuf, u64, String)>,
}

/// A segment as the writer and `remove_segments_before` know it.
#[derive(Debug)]
struct SegmentMeta {
    first_lsn: Lsn,
    path: PathBuf,
    /// Final for every segment but the last (active) one.
    bytes: u64,
}

struct Shared {
    dir: PathBuf,
    policy: SyncPolicy,
    state: Mutex<State>,
    /// The writer sleeps here; appends, sync requests and close wake it.
    work: Condvar,
    /// Notified after every write round and on stop: backpressured appends and durability
    /// waiters sleep here.
    progress: Condvar,
    last_lsn: AtomicU64,
    /// Stored under `state`'s lock so a waiter cannot miss an update between check and wait.
    durable_lsn: AtomicU64,
    durable_rx: watch::Receiver<Lsn>,
    segments: Mutex<Vec<SegmentMeta>>,
    disk_bytes: AtomicU64,
    fsyncs: AtomicU64,
    write_rounds: AtomicU64,
}

struct State {
    /// Encoded records not yet taken by the writer.
    buf: Vec<u8>,
    next_lsn: Lsn,
    /// Bytes the writer took and has not written yet (counted for backpressure).
    in_flight: usize,
    /// An fsync up to here was asked for (sync, wait_durable).
    sync_target: Lsn,
    closing: bool,
    /// The writer thread has ended.
    stopped: bool,
    error: Option<StickyError>,
}

impl State {
    fn check_appendable(&self) -> Result<(), WalError> {
        if let Some(err) = &self.error {
            return Err(err.to_error());
        }
        if self.closing || self.stopped {
            return Err(WalError::Closed);
        }
        Ok(())
    }
}

/// The write-ahead log. `Send + Sync`; share it as `Arc<Wal>`. Dropping the last handle
/// closes it, which blocks for the final write and fsync: call [`Wal::close`] off the async
/// workers (e.g. in `spawn_blocking`) at shutdown.
pub struct Wal {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Wal {
    /// Opens `dir` (creating it if needed), validates every segment and truncates a torn tail
    /// (with a warning). Empty segment files are deleted. LSNs continue after the last valid
    /// record; with no records left, after what the newest empty segment's name says.
    pub fn open(dir: &Path, options: WalOptions) -> Result<Wal, WalError> {
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let listing = list_segments(dir)?;
        if let Some((path, reason)) = listing.bad_names.into_iter().next() {
            return Err(corrupt(&path, 0, reason));
        }
        let mut segments = listing.segments;
        let live: Vec<SegmentFile> = segments.iter().filter(|s| s.len > 0).cloned().collect();

        let mut seq = Sequence::default();
        let mut torn: Option<(PathBuf, u64, String)> = None;
        walk(&live, |event| match event {
            Event::Record {
                seg, offset, lsn, ..
            } => {
                if let Some(reason) = name_problem(seg, offset, lsn).or_else(|| seq.problem(lsn)) {
                    return Err(corrupt(&seg.path, offset, reason));
                }
                seq.accept(lsn);
                Ok(())
            }
            Event::Damage {
                seg,
                offset,
                reason,
                tail: true,
                ..
            } => {
                torn = Some((seg.path.clone(), offset, reason));
                Ok(())
            }
            Event::Damage {
                seg,
                offset,
                reason,
                resumes_at,
                ..
            } => Err(corrupt(
                &seg.path,
                offset,
                damage_reason(seg, offset, &reason, resumes_at),
            )),
        })?;

        let mut dir_changed = false;
        if let Some((path, offset, reason)) = torn {
            if let Some(seg) = segments.iter_mut().find(|s| s.path == path) {
                tracing::warn!(
                    path = %path.display(),
                    offset,
                    dropped_bytes = seg.len - offset,
                    reason = %reason,
                    "the WAL ends in a torn record (an interrupted write); truncating it"
                );
                truncate_file(&path, offset)?;
                seg.len = offset;
            }
        }
        // An empty segment holds no records; only its name says something, and only when no
        // record is left at all: where LSNs continue.
        let last_record = seq.next.map(|next| next - 1);
        let newest_empty = segments
            .iter()
            .filter(|s| s.len == 0)
            .map(|s| s.name_lsn)
            .max();
        let next_lsn = match last_record {
            Some(last) => last + 1,
            None => newest_empty.unwrap_or(1).max(options.first_lsn),
        };
        for seg in segments.iter().filter(|s| s.len == 0) {
            fs::remove_file(&seg.path).map_err(io_at(&seg.path))?;
            dir_changed = true;
        }
        segments.retain(|s| s.len > 0);

        let mut metas: Vec<SegmentMeta> = segments
            .iter()
            .map(|s| SegmentMeta {
                first_lsn: s.name_lsn,
                path: s.path.clone(),
                bytes: s.len,
            })
            .collect();
        let (file, path, file_len) = match metas.last() {
            Some(last) if last.bytes < options.segment_bytes => {
                let file = OpenOptions::new()
                    .append(true)
                    .open(&last.path)
                    .map_err(io_at(&last.path))?;
                (file, last.path.clone(), last.bytes)
            }
            _ => {
                let path = dir.join(segment_name(next_lsn));
                let file = create_segment(&path).map_err(io_at(&path))?;
                metas.push(SegmentMeta {
                    first_lsn: next_lsn,
                    path: path.clone(),
                    bytes: 0,
                });
                dir_changed = true;
                (file, path, 0)
            }
        };
        // After a crash of a process running `No` or `Everysec`, records may sit only in the
        // page cache. fsync them now: durable_lsn starts out true, and a power cut later cannot
        // tear a segment that is no longer the last one (which open would have to refuse).
        for meta in metas.iter().filter(|m| m.path != path) {
            File::open(&meta.path)
                .and_then(|f| f.sync_data())
                .map_err(io_at(&meta.path))?;
        }
        file.sync_data().map_err(io_at(&path))?;
        if dir_changed {
            sync_dir(dir).map_err(io_at(dir))?;
        }

        let last_lsn = next_lsn - 1;
        let disk_bytes = metas.iter().map(|m| m.bytes).sum();
        let segment_count = metas.len();
        let (durable_tx, durable_rx) = watch::channel(last_lsn);
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            policy: options.sync,
            state: Mutex::new(State {
                buf: Vec::new(),
                next_lsn,
                in_flight: 0,
                sync_target: 0,
                closing: false,
                stopped: false,
                error: None,
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
            last_lsn: AtomicU64::new(last_lsn),
            durable_lsn: AtomicU64::new(last_lsn),
            durable_rx,
            segments: Mutex::new(metas),
            disk_bytes: AtomicU64::new(disk_bytes),
            fsyncs: AtomicU64::new(0),
            write_rounds: AtomicU64::new(0),
        });
        let writer = Writer {
            shared: Arc::clone(&shared),
            segment_bytes: options.segment_bytes,
            file,
            path,
            file_len,
            unsynced: Vec::new(),
            dir_dirty: false,
            written: last_lsn,
            durable: last_lsn,
            durable_tx,
        };
        let guard = StopGuard(Arc::clone(&shared));
        let handle = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || {
                let _guard = guard;
                writer.run();
            })
            .map_err(io_at(dir))?;
        tracing::info!(dir = %dir.display(), last_lsn, segments = segment_count, "WAL opened");
        Ok(Wal {
            shared,
            writer: Mutex::new(Some(handle)),
        })
    }

    /// Appends one record to the in-memory buffer and returns its LSN. No I/O on the caller's
    /// thread; the record reaches the OS within milliseconds and is durable per the policy.
    ///
    /// Blocks only for backpressure: while [`MAX_UNWRITTEN_BYTES`] or more wait to be written,
    /// until the writer catches up. Fails with the writer's sticky error, with `Closed` after
    /// `close`, and with `Io` of kind `InvalidInput` for an empty payload (reserved for salvage
    /// holes) or one longer than `u32::MAX` bytes.
    pub fn append(&self, payload: &[u8]) -> Result<Lsn, WalError> {
        let shared = &*self.shared;
        let Ok(payload_len) = u32::try_from(payload.len()) else {
            return Err(invalid_append(
                &shared.dir,
                "payload longer than u32::MAX bytes",
            ));
        };
        if payload.is_empty() {
            return Err(invalid_append(
                &shared.dir,
                "empty payload (reserved for salvage holes)",
            ));
        }
        let mut st = shared.state.lock();
        loop {
            st.check_appendable()?;
            if st.buf.len() + st.in_flight < MAX_UNWRITTEN_BYTES {
                break;
            }
            shared.progress.wait(&mut st);
        }
        let lsn = st.next_lsn;
        st.next_lsn += 1;
        // The CRC covers lsn ++ payload, and the LSN is only known under the lock. Extending
        // the LSN's CRC over the payload here (hardware CRC32C: nanoseconds for a typical
        // record) is far cheaper than `crc32c_combine`, which profiled at 40% of a SET-heavy
        // load, all of it inside this lock.
        let crc = crc32c::crc32c_append(crc32c::crc32c(&lsn.to_le_bytes()), payload);
        let was_empty = st.buf.is_empty();
        st.buf.reserve(HEADER_LEN + payload.len());
        st.buf.extend_from_slice(&payload_len.to_le_bytes());
        st.buf.extend_from_slice(&crc.to_le_bytes());
        st.buf.extend_from_slice(&lsn.to_le_bytes());
        st.buf.extend_from_slice(payload);
        shared.last_lsn.store(lsn, Ordering::Release);
        drop(st);
        // A non-empty buffer means the writer was already told (or is busy and will look again).
        if was_empty {
            shared.work.notify_one();
        }
        Ok(lsn)
    }

    /// Highest LSN handed out so far.
    pub fn last_lsn(&self) -> Lsn {
        self.shared.last_lsn.load(Ordering::Acquire)
    }

    /// Highest LSN known to be fsynced.
    pub fn durable_lsn(&self) -> Lsn {
        self.shared.durable_lsn.load(Ordering::Acquire)
    }

    /// A watch of `durable_lsn`, for async callers: `rx.wait_for(|&d| d >= lsn).await`. Only
    /// `Always` advances it promptly by itself. The channel closes when the writer stops (close
    /// or I/O error); then call [`Wal::wait_durable`] to learn which.
    pub fn subscribe_durable(&self) -> watch::Receiver<Lsn> {
        self.shared.durable_rx.clone()
    }

    /// Blocks until `lsn` (an LSN returned by `append`) is durable. Under `Everysec` and `No`
    /// it asks the writer for an fsync rather than waiting for the timer or forever.
    /// Returns the sticky error, or `Closed` if the writer stopped first.
    pub fn wait_durable(&self, lsn: Lsn) -> Result<(), WalError> {
        let shared = &*self.shared;
        if shared.durable_lsn.load(Ordering::Acquire) >= lsn {
            return Ok(());
        }
        let mut st = shared.state.lock();
        if shared.policy != SyncPolicy::Always {
            // Never past what was handed out: the writer could not reach it and would spin.
            let target = lsn.min(st.next_lsn - 1);
            if target > st.sync_target {
                st.sync_target = target;
                shared.work.notify_one();
            }
        }
        loop {
            if shared.durable_lsn.load(Ordering::Acquire) >= lsn {
                return Ok(());
            }
            if let Some(err) = &st.error {
                return Err(err.to_error());
            }
            if st.stopped {
                return Err(WalError::Closed);
            }
            shared.progress.wait(&mut st);
        }
    }

    /// Writes out everything appended so far and fsyncs it (checkpoints, shutdown); returns
    /// the durable LSN. Fails with the sticky error even if nothing new needed syncing.
    pub fn sync(&self) -> Result<Lsn, WalError> {
        let shared = &*self.shared;
        let mut st = shared.state.lock();
        let target = st.next_lsn - 1;
        if target > st.sync_target {
            st.sync_target = target;
            shared.work.notify_one();
        }
        loop {
            if let Some(err) = &st.error {
                return Err(err.to_error());
            }
            let durable = shared.durable_lsn.load(Ordering::Acquire);
            if durable >= target {
                return Ok(durable);
            }
            if st.stopped {
                return Err(WalError::Closed);
            }
            shared.progress.wait(&mut st);
        }
    }

    /// Deletes the segments whose records are all `< lsn` (after a checkpoint at `lsn`), oldest
    /// first, so a crash midway leaves no gap. The active segment is never deleted: its name
    /// keeps LSNs continuing after a restart. Returns the bytes freed.
    pub fn remove_segments_before(&self, lsn: Lsn) -> Result<u64, WalError> {
        let shared = &*self.shared;
        let mut segments = shared.segments.lock();
        // Segment i holds only LSNs below its successor's first one.
        let removable = segments
            .windows(2)
            .take_while(|pair| pair[1].first_lsn <= lsn)
            .count();
        let mut freed = 0;
        let mut removed = 0;
        let mut result = Ok(());
        for seg in segments.iter().take(removable) {
            match fs::remove_file(&seg.path) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => {
                    result = Err(WalError::Io {
                        path: seg.path.clone(),
                        source: err,
                    });
                    break;
                }
            }
            freed += seg.bytes;
            removed += 1;
        }
        segments.drain(..removed);
        drop(segments);
        shared.disk_bytes.fetch_sub(freed, Ordering::AcqRel);
        result?;
        if removed > 0 {
            sync_dir(&shared.dir).map_err(io_at(&shared.dir))?;
            tracing::debug!(removed, freed, before = lsn, "removed WAL segments");
        }
        Ok(freed)
    }

    /// Total bytes of all segments on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.shared.disk_bytes.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> WalStats {
        WalStats {
            fsyncs: self.shared.fsyncs.load(Ordering::Relaxed),
            write_rounds: self.shared.write_rounds.load(Ordering::Relaxed),
        }
    }

    /// Writes and fsyncs everything appended, then stops the writer. Later appends fail with
    /// `Closed`. Returns the sticky error if the writer had failed. Idempotent.
    pub fn close(&self) -> Result<(), WalError> {
        let mut writer = self.writer.lock();
        if let Some(handle) = writer.take() {
            self.shared.state.lock().closing = true;
            self.shared.work.notify_one();
            if handle.join().is_err() {
                // The stop guard has recorded the failure as the sticky error.
                tracing::error!("the WAL writer thread panicked");
            }
        }
        match &self.shared.state.lock().error {
            Some(err) => Err(err.to_error()),
            None => Ok(()),
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if self.writer.get_mut().is_some() {
            if let Err(err) = self.close() {
                tracing::error!(error = %err, "closing the WAL on drop failed");
            }
        }
    }
}

fn invalid_append(dir: &Path, what: &str) -> WalError {
    WalError::Io {
        path: dir.to_path_buf(),
        source: io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot append to the WAL: {what}"),
        ),
    }
}

/// Marks the writer as stopped however its thread ends, so no caller waits forever.
struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        let shared = &*self.0;
        let mut st = shared.state.lock();
        st.stopped = true;
        if !st.closing && st.error.is_none() {
            // Only a panic gets here.
            st.error = Some(StickyError {
                path: shared.dir.clone(),
                kind: io::ErrorKind::Other,
                message: "the WAL writer thread stopped unexpectedly".into(),
            });
        }
        shared.progress.notify_all();
    }
}

/// The background writer: the only code that touches the active segment.
struct Writer {
    shared: Arc<Shared>,
    segment_bytes: u64,
    file: File,
    path: PathBuf,
    file_len: u64,
    /// Segments rolled away from with unsynced data (policy `No` only: the other policies
    /// fsync a segment before leaving it).
    unsynced: Vec<(PathBuf, File)>,
    /// A segment was created since the directory was last fsynced.
    dir_dirty: bool,
    /// Highest LSN written to the OS.
    written: Lsn,
    durable: Lsn,
    /// Owned here so the channel closes when the writer stops.
    durable_tx: watch::Sender<Lsn>,
}

impl Writer {
    fn run(mut self) {
        let policy = self.shared.policy;
        let mut batch = Vec::new();
        let mut last_sync = Instant::now();
        loop {
            let (batch_last, sync_target, closing) = {
                let shared = &*self.shared;
                let mut st = shared.state.lock();
                loop {
                    if !st.buf.is_empty() || st.sync_target > self.durable || st.closing {
                        break;
                    }
                    if policy == SyncPolicy::Everysec && self.written > self.durable {
                        let due = last_sync + EVERYSEC_INTERVAL;
                        if Instant::now() >= due {
                            break;
                        }
                        shared.work.wait_until(&mut st, due);
                    } else {
                        shared.work.wait(&mut st);
                    }
                }
                // Under everysec / no, a record need not reach the OS the instant it arrives:
                // waiting a moment lets one write() carry the records of many clients (as
                // Redis writes its AOF once per event-loop turn) instead of one syscall each.
                // A sync or close request cuts the wait short (they notify `work`).
                if policy != SyncPolicy::Always && st.buf.len() < COALESCE_MAX_BYTES {
                    let deadline = Instant::now() + COALESCE_WAIT;
                    while !st.closing && st.sync_target <= self.durable {
                        if shared.work.wait_until(&mut st, deadline).timed_out() {
                            break;
                        }
                    }
                }
                std::mem::swap(&mut st.buf, &mut batch);
                st.in_flight = batch.len();
                (st.next_lsn - 1, st.sync_target, st.closing)
            };
            let result = self.write_batch(&batch).and_then(|()| {
                self.written = batch_last;
                let due = match policy {
                    SyncPolicy::Always => true,
                    SyncPolicy::Everysec => last_sync.elapsed() >= EVERYSEC_INTERVAL,
                    SyncPolicy::No => false,
                };
                if self.written > self.durable && (due || closing || sync_target > self.durable) {
                    self.sync_written(self.written)?;
                    last_sync = Instant::now();
                }
                Ok(())
            });
            if !batch.is_empty() {
                self.shared.write_rounds.fetch_add(1, Ordering::Relaxed);
            }
            batch.clear();
            batch.shrink_to(RETAINED_BUFFER_BYTES);

            let shared = &*self.shared;
            let mut st = shared.state.lock();
            st.in_flight = 0;
            if let Err(err) = result {
                tracing::error!(
                    path = %err.path.display(),
                    error = %err.message,
                    "WAL write failed; the log stops accepting records"
                );
                st.error = Some(err);
                shared.progress.notify_all();
                return;
            }
            shared.durable_lsn.store(self.durable, Ordering::Release);
            shared.progress.notify_all();
            drop(st);
            let durable = self.durable;
            self.durable_tx.send_if_modified(|published| {
                let changed = *published != durable;
                *published = durable;
                changed
            });
            if closing {
                return;
            }
        }
    }

    /// Writes whole records, rolling to a new segment before a record that would push the
    /// current one past `segment_bytes`.
    fn write_batch(&mut self, batch: &[u8]) -> Result<(), StickyError> {
        let mut run_start = 0;
        let mut pos = 0;
        // The batch is our own encoding, so its headers are well-formed; `parse_header` failing
        // would only mean a bug, and then the rest is written as one run rather than panicking.
        while let Some(header) = batch.get(pos..).and_then(parse_header) {
            let record_len = HEADER_LEN + header.len as usize;
            let segment_len = self.file_len + (pos - run_start) as u64;
            if segment_len > 0 && segment_len + record_len as u64 > self.segment_bytes {
                self.write_out(&batch[run_start..pos])?;
                self.roll(header.lsn)?;
                run_start = pos;
            }
            pos += record_len;
        }
        self.write_out(&batch[run_start..])
    }

    fn write_out(&mut self, bytes: &[u8]) -> Result<(), StickyError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(bytes)
            .map_err(|e| StickyError::new(&self.path, &e))?;
        self.file_len += bytes.len() as u64;
        self.shared
            .disk_bytes
            .fetch_add(bytes.len() as u64, Ordering::AcqRel);
        Ok(())
    }

    fn roll(&mut self, first_lsn: Lsn) -> Result<(), StickyError> {
        // Make the old segment whole on disk before the new one exists, so after a power cut
        // only the last segment can end in a torn record (which open may truncate).
        if self.shared.policy != SyncPolicy::No {
            self.sync_written(first_lsn - 1)?;
        }
        let path = self.shared.dir.join(segment_name(first_lsn));
        let file = create_segment(&path).map_err(|e| StickyError::new(&path, &e))?;
        let old_file = std::mem::replace(&mut self.file, file);
        let old_path = std::mem::replace(&mut self.path, path.clone());
        if self.shared.policy == SyncPolicy::No {
            self.unsynced.push((old_path, old_file));
        }
        self.dir_dirty = true;
        let mut segments = self.shared.segments.lock();
        if let Some(last) = segments.last_mut() {
            last.bytes = self.file_len;
        }
        segments.push(SegmentMeta {
            first_lsn,
            path,
            bytes: 0,
        });
        drop(segments);
        self.file_len = 0;
        Ok(())
    }

    /// Makes everything written so far durable (`upto` is the last LSN written): rolled
    /// segments still unsynced, the active one, and the directory entries of new segments.
    fn sync_written(&mut self, upto: Lsn) -> Result<(), StickyError> {
        for (path, file) in std::mem::take(&mut self.unsynced) {
            file.sync_data().map_err(|e| StickyError::new(&path, &e))?;
            self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        self.file
            .sync_data()
            .map_err(|e| StickyError::new(&self.path, &e))?;
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        if self.dir_dirty {
            sync_dir(&self.shared.dir).map_err(|e| StickyError::new(&self.shared.dir, &e))?;
            self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.dir_dirty = false;
        }
        self.durable = upto;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Reading segments: shared by open, replay, check and repair.

fn segment_name(first_lsn: Lsn) -> String {
    format!("wal-{first_lsn:020}.log")
}

fn create_segment(path: &Path) -> io::Result<File> {
    // create_new: a segment of that name existing already would mean two writers or a bug;
    // never append to or clobber it.
    OpenOptions::new().append(true).create_new(true).open(path)
}

/// Makes a directory's entries (created, renamed, removed segments) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn truncate_file(path: &Path, len: u64) -> Result<(), WalError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_at(path))?;
    file.set_len(len).map_err(io_at(path))?;
    file.sync_all().map_err(io_at(path))
}

struct Header {
    len: u32,
    crc: u32,
    lsn: Lsn,
}

/// Parses the first 16 bytes of `bytes`, if there are that many.
fn parse_header(bytes: &[u8]) -> Option<Header> {
    let header: &[u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
    let [l0, l1, l2, l3, c0, c1, c2, c3, s0, s1, s2, s3, s4, s5, s6, s7] = *header;
    Some(Header {
        len: u32::from_le_bytes([l0, l1, l2, l3]),
        crc: u32::from_le_bytes([c0, c1, c2, c3]),
        lsn: u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]),
    })
}

fn hole_record(lsn: Lsn) -> [u8; HEADER_LEN] {
    let mut record = [0u8; HEADER_LEN];
    record[4..8].copy_from_slice(&crc32c::crc32c(&lsn.to_le_bytes()).to_le_bytes());
    record[8..].copy_from_slice(&lsn.to_le_bytes());
    record
}

#[derive(Debug, Clone)]
struct SegmentFile {
    path: PathBuf,
    /// The first LSN its name claims.
    name_lsn: Lsn,
    /// Length when listed: a reader never looks past it, so a concurrent append is not seen
    /// half-written.
    len: u64,
}

struct Listing {
    /// In LSN order.
    segments: Vec<SegmentFile>,
    /// `wal-*.log` entries whose name or type is wrong.
    bad_names: Vec<(PathBuf, String)>,
}

fn list_segments(dir: &Path) -> Result<Listing, WalError> {
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
            bad_names.push((
                path,
                "the name is not wal-<first LSN as 20 digits, >= 1>.log".into(),
            ));
            continue;
        };
        let meta = fs::metadata(&path).map_err(io_at(&path))?;
        if !meta.is_file() {
            bad_names.push((path, "named like a segment but not a regular file".into()));
            continue;
        }
        segments.push(SegmentFile {
            path,
            name_lsn,
            len: meta.len(),
        });
    }
    segments.sort_by_key(|s| s.name_lsn);
    bad_names.sort();
    Ok(Listing {
        segments,
        bad_names,
    })
}

fn parse_lsn_digits(digits: &str) -> Option<Lsn> {
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&lsn| lsn > 0)
}

enum Step {
    End,
    Record { offset: u64, lsn: Lsn },
    Damage { offset: u64, reason: String },
}

/// Reads one segment record by record, up to its listed length.
struct SegmentReader<'a> {
    seg: &'a SegmentFile,
    file: BufReader<File>,
    pos: u64,
}

impl<'a> SegmentReader<'a> {
    fn open(seg: &'a SegmentFile) -> Result<Self, WalError> {
        let file = File::open(&seg.path).map_err(io_at(&seg.path))?;
        Ok(SegmentReader {
            seg,
            file: BufReader::with_capacity(256 << 10, file),
            pos: 0,
        })
    }

    /// The next record (its payload left in `payload`), or damage at the current position.
    /// After damage the position is unchanged; call `resync` to go on.
    fn next(&mut self, payload: &mut Vec<u8>) -> Result<Step, WalError> {
        let offset = self.pos;
        let remaining = self.seg.len.saturating_sub(offset);
        if remaining == 0 {
            return Ok(Step::End);
        }
        if remaining < HEADER_LEN as u64 {
            let reason = format!("incomplete record header: {remaining} of {HEADER_LEN} bytes");
            return Ok(Step::Damage { offset, reason });
        }
        let mut raw = [0u8; HEADER_LEN];
        if let Some(damage) = self.read_exact(&mut raw, offset)? {
            return Ok(damage);
        }
        let Some(header) = parse_header(&raw) else {
            return Ok(Step::Damage {
                offset,
                reason: "unreadable record header".into(),
            });
        };
        let body = remaining - HEADER_LEN as u64;
        if u64::from(header.len) > body {
            let reason = format!(
                "record claims {} payload bytes but only {body} remain",
                header.len
            );
            return Ok(Step::Damage { offset, reason });
        }
        payload.clear();
        // Bounded by the file's length (checked above), whatever the header says.
        payload.resize(header.len as usize, 0);
        if let Some(damage) = self.read_exact(payload, offset)? {
            return Ok(damage);
        }
        let crc = crc32c::crc32c_append(crc32c::crc32c(&header.lsn.to_le_bytes()), payload);
        if crc != header.crc {
            let reason = format!(
                "CRC mismatch (stored {:#010x}, computed {crc:#010x})",
                header.crc
            );
            return Ok(Step::Damage { offset, reason });
        }
        self.pos += HEADER_LEN as u64 + u64::from(header.len);
        Ok(Step::Record {
            offset,
            lsn: header.lsn,
        })
    }

    /// Reads exactly `buf.len()` bytes; a file shorter than listed is damage, not an I/O error.
    fn read_exact(&mut self, buf: &mut [u8], offset: u64) -> Result<Option<Step>, WalError> {
        match self.file.read_exact(buf) {
            Ok(()) => Ok(None),
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Ok(Some(Step::Damage {
                offset,
                reason: "the file is shorter than when it was listed".into(),
            })),
            Err(err) => Err(WalError::Io {
                path: self.seg.path.clone(),
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
        let len = self.seg.len;
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
                        .map_err(io_at(&self.seg.path))?;
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
            .map_err(io_at(&self.seg.path))?;
        match file.read_exact(buf) {
            Ok(()) => Ok(Some(buf)),
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(err) => Err(WalError::Io {
                path: self.seg.path.clone(),
                source: err,
            }),
        }
    }

    fn crc_matches(&mut self, at: u64, header: &Header) -> Result<bool, WalError> {
        let mut crc = crc32c::crc32c(&header.lsn.to_le_bytes());
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

enum Event<'a> {
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
        reason: String,
        resumes_at: Option<u64>,
        tail: bool,
    },
}

/// Reads `segments` (non-empty ones, in LSN order) record by record and reports each record
/// and each damaged stretch. After damage it carries on from the next valid record, so check
/// and repair see everything; callers that refuse damage stop by returning an error.
fn walk(
    segments: &[SegmentFile],
    mut on_event: impl FnMut(Event<'_>) -> Result<(), WalError>,
) -> Result<(), WalError> {
    let mut payload = Vec::new();
    let mut last_good: Option<Lsn> = None;
    for (index, seg) in segments.iter().enumerate() {
        let is_last = index + 1 == segments.len();
        let mut reader = SegmentReader::open(seg)?;
        loop {
            match reader.next(&mut payload)? {
                Step::End => break,
                Step::Record { offset, lsn } => {
                    last_good = Some(lsn);
                    on_event(Event::Record {
                        seg,
                        offset,
                        lsn,
                        payload: &payload,
                    })?;
                }
                Step::Damage { offset, reason } => {
                    let min_lsn = last_good.map_or(seg.name_lsn, |lsn| lsn.saturating_add(1));
                    let resumes_at = reader.resync(offset, min_lsn)?;
                    let tail = is_last && resumes_at.is_none();
                    on_event(Event::Damage {
                        seg,
                        offset,
                        reason,
                        resumes_at,
                        tail,
                    })?;
                    if resumes_at.is_none() {
                        break;
                    }
                }
            }
        }
    }
    Ok(())
}

fn damage_reason(seg: &SegmentFile, offset: u64, reason: &str, resumes_at: Option<u64>) -> String {
    match resumes_at {
        Some(at) => format!(
            "{reason}; valid records resume at offset {at} ({} bytes skipped)",
            at - offset
        ),
        None => format!(
            "{reason}; nothing valid follows in this segment ({} bytes), but later segments exist",
            seg.len - offset
        ),
    }
}

/// A segment's name must match its first record (checked only at offset 0: after damage the
/// first valid record is not the first record).
fn name_problem(seg: &SegmentFile, offset: u64, lsn: Lsn) -> Option<String> {
    (offset == 0 && lsn != seg.name_lsn).then(|| {
        format!(
            "the segment's name says its first LSN is {}, but its first record has LSN {lsn}",
            seg.name_lsn
        )
    })
}

enum Order {
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

fn order_problem(order: &Order, lsn: Lsn) -> String {
    match order {
        Order::Expected => format!("LSN {lsn} is in order"),
        Order::Gap { first, last } => {
            format!("LSN gap: LSNs {first}..={last} are missing before LSN {lsn}")
        }
        Order::Behind { expected } => format!("LSN {lsn} is out of order (expected {expected})"),
    }
}

/// The LSN the next record must carry.
#[derive(Default)]
struct Sequence {
    next: Option<Lsn>,
}

impl Sequence {
    fn classify(&self, lsn: Lsn) -> Order {
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

    fn problem(&self, lsn: Lsn) -> Option<String> {
        match self.classify(lsn) {
            Order::Expected => None,
            order => Some(order_problem(&order, lsn)),
        }
    }

    fn accept(&mut self, lsn: Lsn) {
        self.next = Some(lsn.saturating_add(1));
    }
}

/// Calls `apply(lsn, payload)` for every record with `lsn > after`, in order, skipping holes.
/// Read-only: run it after [`Wal::open`] (which truncates a torn tail) and before appending.
/// Segments holding only records `<= after` are not read, so restart time follows the WAL
/// since the checkpoint. An incomplete last record (one being written) ends the replay; any
/// other damage is `Corrupt`, as is a record `apply` rejects (named by its file and offset).
/// A missing directory is an empty log.
pub fn replay(
    dir: &Path,
    after: Lsn,
    mut apply: impl FnMut(Lsn, &[u8]) -> Result<(), String>,
) -> Result<ReplayStats, WalError> {
    let listing = match list_segments(dir) {
        Ok(listing) => listing,
        Err(WalError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(ReplayStats::default());
        }
        Err(err) => return Err(err),
    };
    if let Some((path, reason)) = listing.bad_names.into_iter().next() {
        return Err(corrupt(&path, 0, reason));
    }
    let live: Vec<SegmentFile> = listing.segments.into_iter().filter(|s| s.len > 0).collect();
    let skip = live
        .windows(2)
        .take_while(|pair| pair[1].name_lsn <= after.saturating_add(1))
        .count();
    let mut seq = Sequence::default();
    let mut stats = ReplayStats::default();
    walk(&live[skip..], |event| match event {
        Event::Record {
            seg,
            offset,
            lsn,
            payload,
        } => {
            if let Some(reason) = name_problem(seg, offset, lsn).or_else(|| seq.problem(lsn)) {
                return Err(corrupt(&seg.path, offset, reason));
            }
            seq.accept(lsn);
            if lsn > after && !payload.is_empty() {
                apply(lsn, payload).map_err(|msg| {
                    corrupt(
                        &seg.path,
                        offset,
                        format!("LSN {lsn} could not be applied: {msg}"),
                    )
                })?;
                stats.records += 1;
                stats.bytes += payload.len() as u64;
                stats.first_lsn.get_or_insert(lsn);
                stats.last_lsn = Some(lsn);
            }
            Ok(())
        }
        Event::Damage {
            seg,
            offset,
            reason,
            tail: true,
            ..
        } => {
            tracing::debug!(
                path = %seg.path.display(),
                offset,
                reason = %reason,
                "replay stopped at an incomplete last record"
            );
            Ok(())
        }
        Event::Damage {
            seg,
            offset,
            reason,
            resumes_at,
            ..
        } => Err(corrupt(
            &seg.path,
            offset,
            damage_reason(seg, offset, &reason, resumes_at),
        )),
    })?;
    Ok(stats)
}

/// Verifies every record (CRC, LSN order, segment names) and reports all damage instead of
/// stopping at the first. Only I/O errors (a missing directory included) fail it.
pub fn check(dir: &Path) -> Result<CheckReport, WalError> {
    let listing = list_segments(dir)?;
    let mut report = CheckReport {
        segments: listing.segments.len() as u64,
        bytes: listing.segments.iter().map(|s| s.len).sum(),
        ..CheckReport::default()
    };
    report.problems.extend(
        listing
            .bad_names
            .into_iter()
            .map(|(path, reason)| (path, 0, reason)),
    );
    let live: Vec<SegmentFile> = listing.segments.into_iter().filter(|s| s.len > 0).collect();
    let mut seq = Sequence::default();
    // The latest damage: the LSNs it cost are added to its entry, not reported again as a gap.
    let mut last_damage: Option<usize> = None;
    walk(&live, |event| {
        match event {
            Event::Record {
                seg, offset, lsn, ..
            } => {
                if let Some(reason) = name_problem(seg, offset, lsn) {
                    report.problems.push((seg.path.clone(), offset, reason));
                }
                let after_damage = last_damage.and_then(|i| report.problems.get_mut(i));
                match (seq.classify(lsn), after_damage) {
                    (Order::Expected, _) => {}
                    (Order::Gap { first, last }, Some(damage)) => {
                        damage.2.push_str(&format!("; LSNs {first}..={last} lost"));
                    }
                    (order, _) => {
                        report
                            .problems
                            .push((seg.path.clone(), offset, order_problem(&order, lsn)))
                    }
                }
                last_damage = None;
                seq.accept(lsn);
                report.records += 1;
                report.first_lsn.get_or_insert(lsn);
                report.last_lsn = Some(lsn);
            }
            Event::Damage {
                seg,
                offset,
                tail: true,
                ..
            } => {
                report.torn_tail = Some((seg.path.clone(), offset));
            }
            Event::Damage {
                seg,
                offset,
                reason,
                resumes_at,
                ..
            } => {
                last_damage = Some(report.problems.len());
                report.problems.push((
                    seg.path.clone(),
                    offset,
                    damage_reason(seg, offset, &reason, resumes_at),
                ));
            }
        }
        Ok(())
    })?;
    Ok(report)
}

/// Offline repair (`hypercache-tool recover`). Without `salvage` it truncates a torn tail and
/// refuses (`Corrupt`, changing nothing) if there is any other damage. With `salvage` it also
/// drops damaged stretches, out-of-order records and badly named files (moved aside as
/// `.bad`), fills every lost LSN with a hole so numbering stays continuous, and rewrites the
/// affected segments (via a fsynced temporary file and a rename). Returns every drop with
/// file, offset and reason; the log then opens.
pub fn repair(dir: &Path, salvage: bool) -> Result<Vec<(PathBuf, u64, String)>, WalError> {
    if salvage {
        let dropped = salvage_dir(dir)?;
        if let Some((path, offset, reason)) = check(dir)?.problems.into_iter().next() {
            let reason = format!("still damaged after salvage: {reason}");
            return Err(corrupt(&path, offset, reason));
        }
        return Ok(dropped);
    }
    let report = check(dir)?;
    if let Some((path, offset, reason)) = report.problems.into_iter().next() {
        let reason = format!(
            "{reason}. This is not a torn tail: repairing it drops acknowledged records, which \
             only salvage does"
        );
        return Err(corrupt(&path, offset, reason));
    }
    let mut dropped = Vec::new();
    if let Some((path, offset)) = report.torn_tail {
        let len = fs::metadata(&path).map_err(io_at(&path))?.len();
        truncate_file(&path, offset)?;
        let reason = format!(
            "torn tail: {} bytes of an incomplete or CRC-failing last record truncated",
            len.saturating_sub(offset)
        );
        tracing::warn!(path = %path.display(), offset, reason = %reason, "WAL repaired");
        dropped.push((path, offset, reason));
    }
    Ok(dropped)
}

/// What salvage keeps of one segment.
struct Plan {
    seg: SegmentFile,
    pieces: Vec<Piece>,
    /// First LSN of the kept content: the rewritten segment's name.
    first_lsn: Option<Lsn>,
    changed: bool,
}

enum Piece {
    /// Bytes `start..end` of the original file (whole records).
    Copy {
        start: u64,
        end: u64,
    },
    Holes {
        first: Lsn,
        last: Lsn,
    },
}

impl Plan {
    fn keep(&mut self, start: u64, end: u64, lsn: Lsn) {
        self.first_lsn.get_or_insert(lsn);
        if let Some(Piece::Copy { end: run_end, .. }) = self.pieces.last_mut() {
            if *run_end == start {
                *run_end = end;
                return;
            }
        }
        self.pieces.push(Piece::Copy { start, end });
    }
}

fn salvage_dir(dir: &Path) -> Result<Vec<(PathBuf, u64, String)>, WalError> {
    let listing = list_segments(dir)?;
    let live: Vec<SegmentFile> = listing
        .segments
        .iter()
        .filter(|s| s.len > 0)
        .cloned()
        .collect();
    let mut dropped: Vec<(PathBuf, u64, String)> = Vec::new();
    let mut plans: Vec<Plan> = Vec::new();
    let mut seq = Sequence::default();
    let mut last_damage: Option<usize> = None;

    // Plan everything first, so a refusal (below) changes nothing.
    walk(&live, |event| {
        let seg = match &event {
            Event::Record { seg, .. } | Event::Damage { seg, .. } => *seg,
        };
        if plans.last().is_none_or(|p| p.seg.path != seg.path) {
            plans.push(Plan {
                seg: seg.clone(),
                pieces: Vec::new(),
                first_lsn: None,
                changed: false,
            });
        }
        let Some(plan) = plans.last_mut() else {
            return Ok(());
        };
        match event {
            Event::Record {
                seg,
                offset,
                lsn,
                payload,
            } => {
                if let Some(reason) = name_problem(seg, offset, lsn) {
                    tracing::warn!(
                        path = %seg.path.display(),
                        reason = %reason,
                        "salvage renames the segment"
                    );
                    plan.changed = true;
                }
                match seq.classify(lsn) {
                    Order::Expected => {}
                    Order::Gap { first, last } => {
                        if last - first >= MAX_HOLES {
                            let reason = format!(
                                "LSNs {first}..={last} are missing: too wide a gap to fill with \
                                 holes; salvage changed nothing"
                            );
                            return Err(corrupt(&seg.path, offset, reason));
                        }
                        let note = format!(
                            "LSNs {first}..={last} lost; empty hole records keep the numbering"
                        );
                        match last_damage.and_then(|i| dropped.get_mut(i)) {
                            Some(damage) => {
                                damage.2.push_str("; ");
                                damage.2.push_str(&note);
                            }
                            None => dropped.push((
                                seg.path.clone(),
                                offset,
                                format!("missing records before LSN {lsn}: {note}"),
                            )),
                        }
                        plan.first_lsn.get_or_insert(first);
                        plan.pieces.push(Piece::Holes { first, last });
                        plan.changed = true;
                    }
                    Order::Behind { expected } => {
                        let reason = format!(
                            "LSN {lsn} is out of order (expected {expected}); record dropped"
                        );
                        dropped.push((seg.path.clone(), offset, reason));
                        plan.changed = true;
                        last_damage = None;
                        return Ok(());
                    }
                }
                last_damage = None;
                seq.accept(lsn);
                plan.keep(offset, offset + (HEADER_LEN + payload.len()) as u64, lsn);
            }
            Event::Damage {
                seg,
                offset,
                reason,
                resumes_at,
                tail,
            } => {
                plan.changed = true;
                if tail {
                    let reason =
                        format!("torn tail: {reason}; {} bytes truncated", seg.len - offset);
                    dropped.push((seg.path.clone(), offset, reason));
                } else {
                    last_damage = Some(dropped.len());
                    dropped.push((
                        seg.path.clone(),
                        offset,
                        format!(
                            "{}; dropped",
                            damage_reason(seg, offset, &reason, resumes_at)
                        ),
                    ));
                }
            }
        }
        Ok(())
    })?;

    // A rewritten segment is renamed after its first kept LSN. Replacing an empty segment of
    // that name is harmless; any other file of that name (say, a segment whose duplicate
    // records are being dropped) must not be clobbered: refuse, and let an operator look.
    for plan in plans.iter().filter(|p| p.changed) {
        let Some(first) = plan.first_lsn else {
            continue;
        };
        let target = dir.join(segment_name(first));
        let empty_segment = listing
            .segments
            .iter()
            .any(|s| s.path == target && s.len == 0);
        if target != plan.seg.path && target.exists() && !empty_segment {
            let reason = format!(
                "salvage would rename this segment to {}, which exists",
                target.display()
            );
            return Err(corrupt(&plan.seg.path, 0, reason));
        }
    }

    for (path, reason) in listing.bad_names {
        let mut aside = path.clone().into_os_string();
        aside.push(".bad");
        let aside = PathBuf::from(aside);
        fs::rename(&path, &aside).map_err(io_at(&path))?;
        dropped.push((
            path,
            0,
            format!(
                "{reason}; moved aside to {} and not replayed",
                aside.display()
            ),
        ));
    }

    let last_plan = plans.len().saturating_sub(1);
    for (index, plan) in plans.iter().enumerate().filter(|(_, p)| p.changed) {
        execute_plan(dir, plan, index == last_plan, seq.next)?;
    }
    sync_dir(dir).map_err(io_at(dir))?;
    for (path, offset, reason) in &dropped {
        tracing::warn!(
            path = %path.display(),
            offset,
            reason = %reason,
            "WAL salvage dropped data"
        );
    }
    Ok(dropped)
}

/// Rewrites one segment as planned. `next_lsn` is where the log continues: an emptied last
/// segment leaves an empty file of that name so LSNs never restart below it.
fn execute_plan(
    dir: &Path,
    plan: &Plan,
    is_last: bool,
    next_lsn: Option<Lsn>,
) -> Result<(), WalError> {
    let original = &plan.seg.path;
    let Some(first_lsn) = plan.first_lsn else {
        fs::remove_file(original).map_err(io_at(original))?;
        if is_last {
            let keep = next_lsn.unwrap_or(plan.seg.name_lsn);
            let path = dir.join(segment_name(keep));
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .map_err(io_at(&path))?;
        }
        return Ok(());
    };
    // The common torn-tail-only case needs no copy.
    if let [Piece::Copy { start: 0, end }] = plan.pieces.as_slice() {
        if first_lsn == plan.seg.name_lsn {
            return truncate_file(original, *end);
        }
    }
    let target = dir.join(segment_name(first_lsn));
    let mut tmp = target.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut source = File::open(original).map_err(io_at(original))?;
    let out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_at(&tmp))?;
    let mut out = BufWriter::new(out);
    for piece in &plan.pieces {
        match *piece {
            Piece::Copy { start, end } => {
                source
                    .seek(SeekFrom::Start(start))
                    .map_err(io_at(original))?;
                let copied = io::copy(&mut (&mut source).take(end - start), &mut out)
                    .map_err(io_at(&tmp))?;
                if copied != end - start {
                    let err = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "segment shrank during salvage",
                    );
                    return Err(WalError::Io {
                        path: original.clone(),
                        source: err,
                    });
                }
            }
            Piece::Holes { first, last } => {
                for lsn in first..=last {
                    out.write_all(&hole_record(lsn)).map_err(io_at(&tmp))?;
                }
            }
        }
    }
    let out = out.into_inner().map_err(|e| WalError::Io {
        path: tmp.clone(),
        source: e.into_error(),
    })?;
    out.sync_all().map_err(io_at(&tmp))?;
    fs::rename(&tmp, &target).map_err(io_at(&target))?;
    sync_dir(dir).map_err(io_at(dir))?;
    if target != *original {
        fs::remove_file(original).map_err(io_at(original))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(segment_bytes: u64, sync: SyncPolicy) -> WalOptions {
        WalOptions {
            segment_bytes,
            sync,
            first_lsn: 1,
        }
    }

    fn payload(i: u64) -> Vec<u8> {
        format!("mutation-{i:04}").into_bytes()
    }

    fn collect(dir: &Path, after: Lsn) -> Vec<(Lsn, Vec<u8>)> {
        let mut out = Vec::new();
        replay(dir, after, |lsn, bytes| {
            out.push((lsn, bytes.to_vec()));
            Ok(())
        })
        .expect("replay");
        out
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        files.sort();
        files
    }

    /// Writes records 1..=n with `options` and closes the log.
    fn write_log(dir: &Path, n: u64, options: WalOptions) {
        let wal = Wal::open(dir, options).expect("open");
        for i in 1..=n {
            assert_eq!(wal.append(&payload(i)).expect("append"), i);
        }
        wal.close().expect("close");
    }

    /// The open must fail with `Corrupt`, whose message names the file, the offset and the tool.
    fn expect_corrupt(result: Result<Wal, WalError>) -> (PathBuf, u64, String) {
        let Err(err) = result else {
            panic!("expected Corrupt, the log opened")
        };
        let text = err.to_string();
        let WalError::Corrupt {
            path,
            offset,
            reason,
        } = err
        else {
            panic!("expected Corrupt, got {text}")
        };
        assert!(text.contains("hypercache-tool recover --dir"), "{text}");
        assert!(
            text.contains(&path.display().to_string())
                && text.contains(&format!("offset {offset}")),
            "{text}"
        );
        (path, offset, reason)
    }

    fn record_len(i: u64) -> u64 {
        (HEADER_LEN + payload(i).len()) as u64
    }

    #[test]
    fn wal_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Wal>();
    }

    #[test]
    fn round_trip_and_lsn_continuity_across_reopen() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("wal");
        let wal = Wal::open(&dir, opts(1 << 20, SyncPolicy::Everysec)).expect("open");
        assert_eq!(wal.last_lsn(), 0);
        for i in 1..=10 {
            assert_eq!(wal.append(&payload(i)).expect("append"), i);
        }
        assert_eq!(wal.last_lsn(), 10);
        assert_eq!(wal.sync().expect("sync"), 10);
        assert_eq!(wal.durable_lsn(), 10);
        wal.close().expect("close");
        assert!(matches!(wal.append(b"late"), Err(WalError::Closed)));

        let wal = Wal::open(&dir, opts(1 << 20, SyncPolicy::Everysec)).expect("reopen");
        assert_eq!((wal.last_lsn(), wal.durable_lsn()), (10, 10));
        let records = collect(&dir, 0);
        assert_eq!(
            records,
            (1..=10).map(|i| (i, payload(i))).collect::<Vec<_>>()
        );
        assert_eq!(wal.append(&payload(11)).expect("append"), 11);
        drop(wal); // Drop closes, with a final sync.
        let stats = replay(&dir, 7, |_, _| Ok(())).expect("replay");
        assert_eq!(
            stats,
            ReplayStats {
                records: 4,
                bytes: 4 * 13,
                first_lsn: Some(8),
                last_lsn: Some(11)
            }
        );
        assert_eq!(
            segment_files(&dir).len(),
            1,
            "a small log reuses its segment"
        );
    }

    #[test]
    fn lsns_continue_across_segment_rollover() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        // Two records per segment.
        let options = opts(2 * record_len(1), SyncPolicy::Always);
        write_log(dir, 9, options.clone());
        let files = segment_files(dir);
        assert_eq!(files.len(), 5);
        for (i, file) in files.iter().enumerate() {
            let name = file.file_name().and_then(|n| n.to_str()).expect("name");
            assert_eq!(name, segment_name(2 * i as u64 + 1));
        }
        let wal = Wal::open(dir, options).expect("reopen");
        assert_eq!(wal.last_lsn(), 9);
        for i in 10..=12 {
            assert_eq!(wal.append(&payload(i)).expect("append"), i);
        }
        wal.close().expect("close");
        assert_eq!(
            collect(dir, 0),
            (1..=12).map(|i| (i, payload(i))).collect::<Vec<_>>()
        );
        assert_eq!(collect(dir, 6).first().map(|r| r.0), Some(7));
        let report = check(dir).expect("check");
        assert_eq!(
            (report.records, report.first_lsn, report.last_lsn),
            (12, Some(1), Some(12))
        );
        assert!(
            report.problems.is_empty() && report.torn_tail.is_none(),
            "{report:?}"
        );
    }

    #[test]
    fn group_commit_shares_fsyncs_between_writers() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let wal =
            Arc::new(Wal::open(tmp.path(), opts(64 << 20, SyncPolicy::Always)).expect("open"));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        for _ in 0..8 {
            let wal = Arc::clone(&wal);
            let done_tx = done_tx.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    let lsn = wal.append(&payload(i)).expect("append");
                    wal.wait_durable(lsn).expect("durable");
                    assert!(wal.durable_lsn() >= lsn);
                }
                done_tx.send(()).expect("report");
            });
        }
        // Bounded, so a writer that never fsyncs fails the test instead of hanging it.
        for _ in 0..8 {
            done_rx
                .recv_timeout(Duration::from_secs(30))
                .expect("every writer's records became durable");
        }
        let stats = wal.stats();
        println!(
            "group commit: 1600 records, {} fsyncs, {} write rounds",
            stats.fsyncs, stats.write_rounds
        );
        assert_eq!(wal.durable_lsn(), 1600);
        assert!(stats.fsyncs > 0);
        assert!(
            stats.fsyncs * 3 <= 1600,
            "{} fsyncs for 1600 records",
            stats.fsyncs
        );
        wal.close().expect("close");
        assert_eq!(collect(tmp.path(), 0).len(), 1600);
    }

    #[test]
    fn torn_write_at_every_offset_of_the_last_record_is_truncated() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let source = tmp.path().join("source");
        write_log(&source, 3, opts(1 << 20, SyncPolicy::No));
        let [segment] = segment_files(&source).try_into().expect("one segment");
        let bytes = fs::read(&segment).expect("read");
        let last_start = record_len(1) + record_len(2);
        assert_eq!(bytes.len() as u64, last_start + record_len(3));
        for cut in last_start..bytes.len() as u64 {
            let dir = tmp.path().join(format!("cut-{cut}"));
            fs::create_dir(&dir).expect("mkdir");
            let copy = dir.join(segment.file_name().expect("name"));
            fs::write(&copy, &bytes[..cut as usize]).expect("write");
            let report = check(&dir).expect("check");
            assert!(report.problems.is_empty(), "cut {cut}: {report:?}");
            assert_eq!(report.torn_tail.is_some(), cut > last_start, "cut {cut}");
            let wal =
                Wal::open(&dir, opts(1 << 20, SyncPolicy::No)).expect("open after a torn write");
            assert_eq!(wal.last_lsn(), 2, "cut {cut}");
            assert_eq!(
                fs::metadata(&copy).expect("meta").len(),
                last_start,
                "cut {cut}"
            );
            assert_eq!(
                collect(&dir, 0),
                vec![(1, payload(1)), (2, payload(2))],
                "cut {cut}"
            );
            assert_eq!(wal.append(&payload(3)).expect("append"), 3);
            wal.close().expect("close");
            assert_eq!(collect(&dir, 2), vec![(3, payload(3))], "cut {cut}");
        }
    }

    #[test]
    fn crc_failing_or_zero_filled_last_record_is_a_torn_tail() {
        let tmp = tempfile::tempdir().expect("tempdir");
        write_log(tmp.path(), 3, opts(1 << 20, SyncPolicy::No));
        let [segment] = segment_files(tmp.path()).try_into().expect("one segment");
        let mut bytes = fs::read(&segment).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        bytes.extend_from_slice(&[0u8; 100]); // a filesystem's zero fill after a crash
        fs::write(&segment, &bytes).expect("write");
        let wal = Wal::open(tmp.path(), opts(1 << 20, SyncPolicy::No)).expect("open");
        assert_eq!(wal.last_lsn(), 2);
        drop(wal);
        assert_eq!(collect(tmp.path(), 0).len(), 2);
    }

    #[test]
    fn mid_segment_damage_refuses_open_and_salvage_drops_only_that_record() {
        // Flip a payload bit, then a length bit (salvage must resync past a bogus length).
        for flip_at in [HEADER_LEN as u64 + 3, 1] {
            let tmp = tempfile::tempdir().expect("tempdir");
            let dir = tmp.path().join("data").join("wal");
            write_log(&dir, 5, opts(1 << 20, SyncPolicy::No));
            let [segment] = segment_files(&dir).try_into().expect("one segment");
            let mut bytes = fs::read(&segment).expect("read");
            let third = record_len(1) + record_len(2);
            bytes[(third + flip_at) as usize] ^= 0x10;
            fs::write(&segment, &bytes).expect("write");

            let (path, offset, _) = expect_corrupt(Wal::open(&dir, opts(1 << 20, SyncPolicy::No)));
            assert_eq!((path.as_path(), offset), (segment.as_path(), third));
            let text = Wal::open(&dir, WalOptions::default())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                text.contains(&format!("--dir {}", tmp.path().join("data").display())),
                "{text}"
            );

            let report = check(&dir).expect("check");
            assert_eq!(report.problems.len(), 1, "{report:?}");
            assert_eq!(
                (&report.problems[0].0, report.problems[0].1),
                (&segment, third)
            );
            assert!(
                report.problems[0].2.contains("LSNs 3..=3 lost"),
                "{report:?}"
            );

            match repair(&dir, false) {
                Err(WalError::Corrupt { offset, .. }) => assert_eq!(offset, third),
                other => panic!("recover without salvage must refuse mid-log damage: {other:?}"),
            }
            assert_eq!(
                fs::read(&segment).expect("read"),
                bytes,
                "a refused repair changes nothing"
            );

            let dropped = repair(&dir, true).expect("salvage");
            assert_eq!(dropped.len(), 1, "{dropped:?}");
            assert_eq!((&dropped[0].0, dropped[0].1), (&segment, third));
            let wal = Wal::open(&dir, opts(1 << 20, SyncPolicy::No)).expect("open after salvage");
            assert_eq!(wal.last_lsn(), 5);
            assert_eq!(wal.append(&payload(6)).expect("append"), 6);
            wal.close().expect("close");
            let lsns: Vec<Lsn> = collect(&dir, 0).into_iter().map(|r| r.0).collect();
            assert_eq!(lsns, vec![1, 2, 4, 5, 6]);
            assert!(check(&dir).expect("check").problems.is_empty());
        }
    }

    #[test]
    fn damage_in_a_non_last_segment_is_refused_even_at_its_end() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let options = opts(2 * record_len(1), SyncPolicy::No);
        write_log(tmp.path(), 6, options.clone());
        let files = segment_files(tmp.path());
        let bytes = fs::read(&files[1]).expect("read");
        fs::write(&files[1], &bytes[..bytes.len() - 3]).expect("truncate");
        let (path, offset, _) = expect_corrupt(Wal::open(tmp.path(), options.clone()));
        assert_eq!((path, offset), (files[1].clone(), record_len(3)));
        assert!(replay(tmp.path(), 0, |_, _| Ok(())).is_err());

        let dropped = repair(tmp.path(), true).expect("salvage");
        assert_eq!(dropped.len(), 1, "{dropped:?}");
        assert!(dropped[0].2.contains("LSNs 4..=4 lost"), "{dropped:?}");
        drop(Wal::open(tmp.path(), options).expect("open after salvage"));
        let lsns: Vec<Lsn> = collect(tmp.path(), 0).into_iter().map(|r| r.0).collect();
        assert_eq!(lsns, vec![1, 2, 3, 5, 6]);
    }

    #[test]
    fn missing_directory_and_empty_segments() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("a").join("wal");
        assert_eq!(collect(&dir, 0), vec![]);
        drop(Wal::open(&dir, WalOptions::default()).expect("creates the directory"));
        assert!(dir.is_dir());

        // Empty segments anywhere are ignored and deleted.
        let options = opts(2 * record_len(1), SyncPolicy::No);
        write_log(&dir, 4, options.clone());
        fs::write(dir.join(segment_name(2)), b"").expect("empty");
        fs::write(dir.join(segment_name(5)), b"").expect("empty");
        fs::write(dir.join(segment_name(9)), b"").expect("empty");
        let wal = Wal::open(&dir, options.clone()).expect("open");
        assert_eq!(wal.last_lsn(), 4);
        assert_eq!(wal.append(&payload(5)).expect("append"), 5);
        drop(wal);
        assert_eq!(collect(&dir, 0).len(), 5);

        // With no records left, the newest empty segment's name says where LSNs continue.
        let only_empty = tmp.path().join("only-empty");
        fs::create_dir(&only_empty).expect("mkdir");
        fs::write(only_empty.join(segment_name(42)), b"").expect("empty");
        let wal = Wal::open(&only_empty, options).expect("open");
        assert_eq!(wal.last_lsn(), 41);
        assert_eq!(wal.append(b"x").expect("append"), 42);
    }

    #[test]
    fn lsn_gaps_and_misnamed_segments_are_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let options = opts(2 * record_len(1), SyncPolicy::No);
        write_log(tmp.path(), 6, options.clone());
        let files = segment_files(tmp.path());
        fs::remove_file(&files[1]).expect("remove the middle segment");
        let (path, offset, reason) = expect_corrupt(Wal::open(tmp.path(), options.clone()));
        assert_eq!((path, offset), (files[2].clone(), 0));
        assert!(reason.contains("3..=4"), "{reason}");
        // Salvage fills the gap with holes.
        let dropped = repair(tmp.path(), true).expect("salvage");
        assert_eq!(dropped.len(), 1, "{dropped:?}");
        let wal = Wal::open(tmp.path(), options.clone()).expect("open after salvage");
        assert_eq!(wal.append(b"x").expect("append"), 7);
        drop(wal);

        let misnamed = tmp.path().join("misnamed");
        write_log(&misnamed, 4, options.clone());
        let files = segment_files(&misnamed);
        fs::rename(&files[1], misnamed.join(segment_name(4))).expect("rename");
        let (path, offset, reason) = expect_corrupt(Wal::open(&misnamed, options.clone()));
        assert_eq!((path, offset), (misnamed.join(segment_name(4)), 0));
        assert!(reason.contains("name"), "{reason}");

        let bad_name = tmp.path().join("bad-name");
        write_log(&bad_name, 1, options.clone());
        fs::write(bad_name.join("wal-12.log"), b"?").expect("write");
        expect_corrupt(Wal::open(&bad_name, options));
    }

    #[test]
    fn remove_segments_before_deletes_only_whole_old_segments() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let options = opts(2 * record_len(1), SyncPolicy::Everysec);
        let wal = Wal::open(tmp.path(), options).expect("open");
        for i in 1..=9 {
            wal.append(&payload(i)).expect("append");
        }
        wal.sync().expect("sync");
        let on_disk = |dir: &Path| {
            segment_files(dir)
                .iter()
                .map(|f| fs::metadata(f).expect("meta").len())
                .sum::<u64>()
        };
        assert_eq!(wal.disk_bytes(), on_disk(tmp.path()));
        // Segments: [1,2] [3,4] [5,6] [7,8] [9]. Records < 6: only the first two are wholly below.
        let freed = wal.remove_segments_before(6).expect("remove");
        assert_eq!(freed, 4 * record_len(1));
        assert_eq!(segment_files(tmp.path()).len(), 3);
        assert_eq!(wal.disk_bytes(), on_disk(tmp.path()));
        assert_eq!(wal.remove_segments_before(6).expect("again"), 0);
        assert_eq!(collect(tmp.path(), 5).first().map(|r| r.0), Some(6));
        // Never the active segment, even when everything is checkpointed.
        wal.remove_segments_before(100)
            .expect("remove all but the active one");
        assert_eq!(
            segment_files(tmp.path()),
            vec![tmp.path().join(segment_name(9))]
        );
        drop(wal);
        let wal = Wal::open(tmp.path(), WalOptions::default()).expect("reopen");
        assert_eq!(wal.append(b"x").expect("append"), 10);
    }

    #[test]
    fn everysec_hands_records_to_the_os_promptly() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let wal = Wal::open(tmp.path(), opts(1 << 20, SyncPolicy::Everysec)).expect("open");
        let lsn = wal.append(b"set k v").expect("append");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(collect(tmp.path(), 0), vec![(lsn, b"set k v".to_vec())]);
        assert_eq!(
            wal.durable_lsn(),
            0,
            "no fsync yet: the timer has not fired"
        );
        // The periodic fsync follows within about a second, unasked.
        let deadline = Instant::now() + Duration::from_secs(3);
        while wal.durable_lsn() < lsn {
            assert!(Instant::now() < deadline, "no fsync within 3 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn policy_no_fsyncs_only_when_asked() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let wal = Wal::open(tmp.path(), opts(1 << 20, SyncPolicy::No)).expect("open");
        let lsn = wal.append(b"a").expect("append");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(collect(tmp.path(), 0).len(), 1, "written to the OS");
        assert_eq!((wal.durable_lsn(), wal.stats().fsyncs), (0, 0));
        assert_eq!(wal.sync().expect("sync"), lsn);
        assert_eq!(wal.durable_lsn(), lsn);
    }

    #[test]
    fn writer_io_error_is_sticky() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("wal");
        let wal = Wal::open(&dir, opts(1, SyncPolicy::Always)).expect("open");
        let first = wal.append(b"fits in the first segment").expect("append");
        wal.wait_durable(first).expect("durable");
        // The next record needs a new segment, which cannot be created any more.
        fs::remove_dir_all(&dir).expect("remove the directory");
        let second = wal.append(b"needs a new segment").expect("buffered");
        assert!(matches!(wal.wait_durable(second), Err(WalError::Io { .. })));
        assert!(matches!(wal.append(b"later"), Err(WalError::Io { .. })));
        assert!(matches!(wal.sync(), Err(WalError::Io { .. })));
        assert!(
            wal.wait_durable(first).is_ok(),
            "what was durable stays durable"
        );
        assert!(matches!(wal.close(), Err(WalError::Io { .. })));
    }

    #[test]
    fn invalid_appends_are_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let wal = Wal::open(tmp.path(), WalOptions::default()).expect("open");
        match wal.append(b"") {
            Err(WalError::Io { source, .. }) => {
                assert_eq!(source.kind(), io::ErrorKind::InvalidInput)
            }
            other => panic!("empty payloads are holes: {other:?}"),
        }
        assert_eq!(wal.append(b"x").expect("append"), 1);
    }

    #[tokio::test]
    async fn async_callers_await_durability_through_the_watch() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let wal = Arc::new(Wal::open(tmp.path(), opts(1 << 20, SyncPolicy::Always)).expect("open"));
        let mut rx = wal.subscribe_durable();
        let lsn = wal.append(b"set k v").expect("append");
        let durable = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|&d| d >= lsn))
            .await
            .expect("in time")
            .map(|d| *d)
            .expect("channel open");
        assert!(durable >= lsn);
        let closer = Arc::clone(&wal);
        tokio::task::spawn_blocking(move || closer.close())
            .await
            .expect("join")
            .expect("close");
        assert!(
            rx.wait_for(|&d| d > lsn).await.is_err(),
            "the channel closes with the writer"
        );
    }
}
