//! The background writer thread: the only code that touches the active segment.
//!
//! It owns the state appenders and the writer share ([`Shared`], [`State`]), rolling segments,
//! fsyncs per the [`SyncPolicy`] with group commit (under `Always` one fsync covers every
//! record that arrived while the previous one ran), publishing the durable LSN, and the two
//! kinds of failure. It must never report an LSN durable before an fsync covered it (and the
//! directory entry of its segment).
//!
//! A failed write (ENOSPC, EIO on write, a segment that cannot be created) is *retried*: the
//! writer cuts the segment back to its last whole record, keeps the records it could not
//! write, and tries again every [`RETRY_INTERVAL`] until the disk takes them, as Redis
//! retries its AOF buffer. Meanwhile the failure is reported (`Wal::failure`), so the server
//! answers writes with MISCONF and durability waits fail at once instead of waiting for the
//! disk. A failed fsync is *sticky*: after one, Linux may have dropped the dirty pages, so a
//! later fsync that succeeds proves nothing; the error is kept, and every later append, sync
//! and wait for a record not yet durable returns it until restart.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

use super::error::WalError;
use super::format::{parse_header, segment_name, HEADER_LEN};
use super::segment::{create_segment, sync_dir};
use super::{Lsn, SyncPolicy};

/// The writer keeps its spare buffer between rounds to avoid reallocating, but not a burst's
/// worth of it: memory is one budget (I6).
const RETAINED_BUFFER_BYTES: usize = 1 << 20;
const EVERYSEC_INTERVAL: Duration = Duration::from_secs(1);
/// Under everysec / no, how long the writer lets records gather before one write (the most a
/// kill -9 can add to what everysec may lose), and the size that ends the wait early.
const COALESCE_WAIT: Duration = Duration::from_millis(2);
const COALESCE_MAX_BYTES: usize = 1 << 20;
/// How often a writer whose writes fail tries again.
pub(super) const RETRY_INTERVAL: Duration = Duration::from_millis(250);

/// A writer failure, kept so every later caller gets it (`io::Error` is not `Clone`).
#[derive(Debug, Clone)]
pub(super) struct StickyError {
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

    pub(super) fn to_error(&self) -> WalError {
        WalError::Io {
            path: self.path.clone(),
            source: io::Error::new(self.kind, self.message.clone()),
        }
    }
}

/// How a write round failed.
enum WriteError {
    /// Nothing torn is left behind: the same records can be written again later.
    Retry(StickyError),
    /// An fsync failed (or a torn write could not be cut back): never trust the log again.
    Fatal(StickyError),
}

/// A round that failed after `written` leading bytes of its batch reached the OS.
struct BatchFailure {
    written: usize,
    error: WriteError,
}

/// A segment as the writer and `remove_segments_before` know it.
#[derive(Debug)]
pub(super) struct SegmentMeta {
    pub(super) first_lsn: Lsn,
    pub(super) path: PathBuf,
    /// Final for every segment but the last (active) one.
    pub(super) bytes: u64,
}

pub(super) struct Shared {
    pub(super) dir: PathBuf,
    pub(super) policy: SyncPolicy,
    pub(super) state: Mutex<State>,
    /// The writer sleeps here; appends, sync requests and close wake it.
    pub(super) work: Condvar,
    /// Notified after every write round and on stop: backpressured appends and durability
    /// waiters sleep here.
    pub(super) progress: Condvar,
    pub(super) last_lsn: AtomicU64,
    /// Highest LSN handed to the OS (readable by a [`WalTail`](super::WalTail)). Stored under
    /// `state`'s lock, before `progress` is notified.
    pub(super) written_lsn: AtomicU64,
    /// Stored under `state`'s lock so a waiter cannot miss an update between check and wait.
    pub(super) durable_lsn: AtomicU64,
    pub(super) durable_rx: watch::Receiver<Lsn>,
    pub(super) segments: Mutex<Vec<SegmentMeta>>,
    pub(super) disk_bytes: AtomicU64,
    pub(super) fsyncs: AtomicU64,
    pub(super) write_rounds: AtomicU64,
    /// `error` or `write_failure` is set (stored under `state`'s lock): lets `Wal::failure`
    /// skip the lock on every write command.
    pub(super) failing: AtomicBool,
}

impl Shared {
    /// Makes `err` the sticky error every later append, sync and wait returns, and wakes
    /// the waiters to see it. Called with `state` locked.
    fn stop_with(&self, st: &mut State, err: StickyError) {
        st.error = Some(err);
        self.failing.store(true, Ordering::Release);
        self.progress.notify_all();
    }
}

pub(super) struct State {
    /// Encoded records not yet taken by the writer.
    pub(super) buf: Vec<u8>,
    pub(super) next_lsn: Lsn,
    /// Bytes the writer took and has not written yet (counted for backpressure).
    pub(super) in_flight: usize,
    /// An fsync up to here was asked for (sync, wait_durable).
    pub(super) sync_target: Lsn,
    pub(super) closing: bool,
    /// The writer thread has ended.
    pub(super) stopped: bool,
    /// A failed fsync (or the writer thread ending): fatal until restart.
    pub(super) error: Option<StickyError>,
    /// Writes are failing and being retried; records are still taken (up to the backpressure
    /// bound, then `append` fails with this instead of waiting for the disk).
    pub(super) write_failure: Option<StickyError>,
    /// `Wal::restart_at` asks the writer to empty the log and go on after this LSN.
    pub(super) restart: Option<Lsn>,
}

impl State {
    pub(super) fn check_appendable(&self) -> Result<(), WalError> {
        if let Some(err) = &self.error {
            return Err(err.to_error());
        }
        if self.closing || self.stopped {
            return Err(WalError::Closed);
        }
        Ok(())
    }
}

/// The segment the writer appends to when it starts: the last one, or a new one.
pub(super) struct ActiveSegment {
    pub(super) file: File,
    pub(super) path: PathBuf,
    pub(super) len: u64,
}

/// Starts the writer thread over `shared`, appending to `active`; everything up to `last_lsn`
/// is on disk and fsynced already. It sends on `durable_tx` and drops it when it stops.
pub(super) fn spawn(
    shared: &Arc<Shared>,
    segment_bytes: u64,
    active: ActiveSegment,
    last_lsn: Lsn,
    durable_tx: watch::Sender<Lsn>,
) -> io::Result<JoinHandle<()>> {
    let writer = Writer {
        shared: Arc::clone(shared),
        segment_bytes,
        file: active.file,
        path: active.path,
        file_len: active.len,
        unsynced: Vec::new(),
        dir_dirty: false,
        written: last_lsn,
        durable: last_lsn,
        durable_tx,
    };
    let guard = StopGuard(Arc::clone(shared));
    std::thread::Builder::new()
        .name("wal-writer".into())
        .spawn(move || {
            let _guard = guard;
            writer.run();
        })
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
            let err = StickyError {
                path: shared.dir.clone(),
                kind: io::ErrorKind::Other,
                message: "the WAL writer thread stopped unexpectedly".into(),
            };
            shared.stop_with(&mut st, err);
        } else {
            shared.progress.notify_all();
        }
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
        // Records taken from the buffer and not yet written: only non-empty across rounds
        // while writes fail.
        let mut batch = Vec::new();
        let mut last_sync = Instant::now();
        loop {
            let (batch_last, sync_target, closing) = {
                // Its own handle: `restart` below needs `self` while the lock is held.
                let shared_handle = Arc::clone(&self.shared);
                let shared = &*shared_handle;
                let mut st = shared.state.lock();
                loop {
                    if let Some(last) = st.restart.take() {
                        self.restart(&mut st, last);
                        continue;
                    }
                    if st.closing {
                        break;
                    }
                    if st.write_failure.is_some() {
                        // Try again after a pause, whatever appends arrive meanwhile; only
                        // close cuts it short.
                        let retry_at = Instant::now() + RETRY_INTERVAL;
                        while !st.closing && !shared.work.wait_until(&mut st, retry_at).timed_out()
                        {
                        }
                        break;
                    }
                    if !st.buf.is_empty() || st.sync_target > self.durable {
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
                if policy != SyncPolicy::Always
                    && st.write_failure.is_none()
                    && st.buf.len() < COALESCE_MAX_BYTES
                {
                    let deadline = Instant::now() + COALESCE_WAIT;
                    while !st.closing && st.sync_target <= self.durable {
                        if shared.work.wait_until(&mut st, deadline).timed_out() {
                            break;
                        }
                    }
                }
                if batch.is_empty() {
                    std::mem::swap(&mut st.buf, &mut batch);
                } else {
                    // Records kept from a failed round go first: LSN order on disk.
                    batch.extend_from_slice(&st.buf);
                    st.buf.clear();
                }
                st.in_flight = batch.len();
                (st.next_lsn - 1, st.sync_target, st.closing)
            };
            let had_records = !batch.is_empty();
            let result = match self.write_batch(&batch) {
                Err(failed) => {
                    // Whole records before the failure are on the OS; keep the rest.
                    batch.drain(..failed.written);
                    Err(failed.error)
                }
                Ok(()) => {
                    batch.clear();
                    self.written = batch_last;
                    let due = match policy {
                        SyncPolicy::Always => true,
                        SyncPolicy::Everysec => last_sync.elapsed() >= EVERYSEC_INTERVAL,
                        SyncPolicy::No => false,
                    };
                    let needs_sync = self.written > self.durable
                        && (due || closing || sync_target > self.durable);
                    if needs_sync {
                        last_sync = Instant::now();
                        self.sync_written(self.written).map_err(WriteError::Fatal)
                    } else {
                        Ok(())
                    }
                }
            };
            if had_records {
                self.shared.write_rounds.fetch_add(1, Ordering::Relaxed);
            }
            if batch.is_empty() {
                batch.shrink_to(RETAINED_BUFFER_BYTES);
            }

            let shared = &*self.shared;
            let mut st = shared.state.lock();
            st.in_flight = batch.len();
            match result {
                Err(WriteError::Fatal(err)) => {
                    tracing::error!(
                        path = %err.path.display(),
                        error = %err.message,
                        "WAL fsync failed; the log stops accepting records until restart"
                    );
                    shared.stop_with(&mut st, err);
                    return;
                }
                Err(WriteError::Retry(err)) => {
                    if closing {
                        tracing::error!(
                            path = %err.path.display(),
                            error = %err.message,
                            "WAL write failed while closing; records not written are lost"
                        );
                        shared.stop_with(&mut st, err);
                        return;
                    }
                    if st.write_failure.is_none() {
                        tracing::error!(
                            path = %err.path.display(),
                            error = %err.message,
                            "WAL write failed; writes are refused (MISCONF) and the write is retried"
                        );
                    }
                    st.write_failure = Some(err);
                    shared.failing.store(true, Ordering::Release);
                    shared.progress.notify_all();
                    continue;
                }
                Ok(()) => {
                    if let Some(err) = st.write_failure.take() {
                        shared.failing.store(false, Ordering::Release);
                        tracing::warn!(
                            path = %err.path.display(),
                            "WAL writes work again; writes are accepted"
                        );
                    }
                }
            }
            shared.durable_lsn.store(self.durable, Ordering::Release);
            shared.written_lsn.store(self.written, Ordering::Release);
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

    /// Empties the log for a replica's full sync: every segment goes, and the log goes on
    /// after `last` (the LSN of the primary's snapshot). Called with `state` locked and
    /// nothing buffered or in flight (`Wal::restart_at` waits for that).
    fn restart(&mut self, st: &mut State, last: Lsn) {
        let shared = Arc::clone(&self.shared);
        let path = shared.dir.join(segment_name(last + 1));
        // Every old segment goes first (the new one may have the active one's name).
        let result = (|| {
            let mut segments = shared.segments.lock();
            for segment in segments.iter() {
                match std::fs::remove_file(&segment.path) {
                    Ok(()) => {}
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => return Err(StickyError::new(&segment.path, &err)),
                }
            }
            self.unsynced.clear();
            let file = create_segment(&path).map_err(|err| StickyError::new(&path, &err))?;
            self.file = file;
            self.path = path.clone();
            *segments = vec![SegmentMeta {
                first_lsn: last + 1,
                path: path.clone(),
                bytes: 0,
            }];
            sync_dir(&shared.dir).map_err(|err| StickyError::new(&shared.dir, &err))
        })();
        if let Err(err) = result {
            tracing::error!(path = %err.path.display(), error = %err.message, "could not empty the WAL for a full sync");
            shared.stop_with(st, err);
            return;
        }
        self.file_len = 0;
        self.dir_dirty = false;
        self.written = last;
        self.durable = last;
        st.next_lsn = last + 1;
        st.sync_target = st.sync_target.min(last);
        shared.disk_bytes.store(0, Ordering::Release);
        shared.last_lsn.store(last, Ordering::Release);
        shared.written_lsn.store(last, Ordering::Release);
        shared.durable_lsn.store(last, Ordering::Release);
        self.durable_tx.send_replace(last);
        shared.progress.notify_all();
    }

    /// Writes whole records, rolling to a new segment before a record that would push the
    /// current one past `segment_bytes`. On failure, says how many leading bytes of `batch`
    /// (whole records) did reach the OS.
    fn write_batch(&mut self, batch: &[u8]) -> Result<(), BatchFailure> {
        let mut run_start = 0;
        let mut pos = 0;
        let failed_at = |written: usize| move |error| BatchFailure { written, error };
        // The batch is our own encoding, so its headers are well-formed; `parse_header` failing
        // would only mean a bug, and then the rest is written as one run rather than panicking.
        while let Some(header) = batch.get(pos..).and_then(parse_header) {
            let record_len = HEADER_LEN + header.len as usize;
            let segment_len = self.file_len + (pos - run_start) as u64;
            if segment_len > 0 && segment_len + record_len as u64 > self.segment_bytes {
                self.write_out(&batch[run_start..pos])
                    .map_err(failed_at(run_start))?;
                self.roll(header.lsn).map_err(failed_at(pos))?;
                run_start = pos;
            }
            pos += record_len;
        }
        self.write_out(&batch[run_start..])
            .map_err(failed_at(run_start))
    }

    /// Appends whole records to the active segment. If the write fails part way, the segment
    /// is cut back to its last whole record so the retry (or a restart) finds no torn record
    /// in the middle of the log; only if that cut fails too is the failure fatal.
    fn write_out(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        if bytes.is_empty() {
            return Ok(());
        }
        if let Err(err) = self.file.write_all(bytes) {
            let failure = StickyError::new(&self.path, &err);
            return match self.file.set_len(self.file_len) {
                Ok(()) => Err(WriteError::Retry(failure)),
                Err(cut) => Err(WriteError::Fatal(StickyError::new(&self.path, &cut))),
            };
        }
        self.file_len += bytes.len() as u64;
        self.shared
            .disk_bytes
            .fetch_add(bytes.len() as u64, Ordering::AcqRel);
        Ok(())
    }

    fn roll(&mut self, first_lsn: Lsn) -> Result<(), WriteError> {
        // Make the old segment whole on disk before the new one exists, so after a power cut
        // only the last segment can end in a torn record (which open may truncate).
        if self.shared.policy != SyncPolicy::No {
            self.sync_written(first_lsn - 1)
                .map_err(WriteError::Fatal)?;
        }
        let path = self.shared.dir.join(segment_name(first_lsn));
        // Nothing has changed yet if this fails: the round is retried.
        let file =
            create_segment(&path).map_err(|e| WriteError::Retry(StickyError::new(&path, &e)))?;
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
