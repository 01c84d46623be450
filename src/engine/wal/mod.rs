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
//! - lose a record silently: a failed write is retried until the disk takes it (meanwhile
//!   [`Wal::failure`] reports it, and syncs and waits for records not yet durable fail at
//!   once); a failed fsync is sticky, and every later append, sync and wait for a record not
//!   yet durable returns it;
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
//! with an empty payload (a hole) in place of every lost LSN instead. Readers skip holes, and
//! [`Wal::append`] refuses empty payloads so a hole is never mistaken for a mutation.
//!
//! Reading. [`records_after`] is the one validated reader: open, [`replay`] and a replication
//! stream all go through it, so they agree on what a valid log is. It only reads, so it may run
//! while a `Wal` appends (it then stops at the record being written).
//!
//! Startup order: [`Wal::open`] (validates, truncates a torn tail), then [`replay`] on the same
//! directory with the checkpoint LSN, then start serving and appending.
//!
//! Files: `format` (record and segment-name layout), `segment` (listing and walking
//! segments), `writer` (the writer thread), `replay` (reading back), `repair` (offline check,
//! repair and salvage), `error`.

mod error;
mod format;
mod repair;
mod replay;
mod segment;
mod tail;
mod writer;

#[cfg(test)]
mod tests;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

pub use error::{CorruptionKind, RecordDamage, WalError};
pub use repair::{check, repair, CheckReport};
pub use replay::{records_after, replay, Record, RecordRef, RecordsAfter, ReplayStats, TornTail};
pub use tail::{decode_streamed_record, StreamedRecord, TailError, WalTail};

use error::{corrupt, io_at};
use format::{push_record, segment_name};
use segment::{create_segment, list_segments, sync_dir, truncate_file};
use writer::{ActiveSegment, SegmentMeta, Shared, State};

/// Log sequence number: 1 for the first record ever written, +1 per record.
pub type Lsn = u64;

/// Unwritten bytes (buffered plus being written) above which `append` blocks: the bound on the
/// WAL's memory whatever the disk's speed.
pub const MAX_UNWRITTEN_BYTES: usize = 64 << 20;

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

/// Counters for INFO and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// fsync calls (segments and directory) made by the writer since open.
    pub fsyncs: u64,
    /// Write rounds: each takes everything buffered at that moment.
    pub write_rounds: u64,
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
        if let Some((path, kind)) = listing.bad_names.first() {
            return Err(corrupt(path, 0, kind.clone()));
        }
        // Validate every record; only a torn tail may be left, to truncate below.
        let mut records = RecordsAfter::over(listing.live(), 0);
        while records.next_ref()?.is_some() {}
        let last_record = records.last_lsn();
        let torn = records.torn_tail().cloned();
        let mut segments = listing.segments;

        let mut dir_changed = false;
        if let Some(TornTail {
            path,
            offset,
            damage,
        }) = torn
        {
            if let Some(seg) = segments.iter_mut().find(|s| s.path == path) {
                tracing::warn!(
                    path = %path.display(),
                    offset,
                    dropped_bytes = seg.len - offset,
                    reason = %damage,
                    "the WAL ends in a torn record (an interrupted write); truncating it"
                );
                truncate_file(&path, offset)?;
                seg.len = offset;
            }
        }
        // An empty segment holds no records; only its name says something, and only when no
        // record is left at all: where LSNs continue.
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
                write_failure: None,
                restart: None,
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
            last_lsn: AtomicU64::new(last_lsn),
            written_lsn: AtomicU64::new(last_lsn),
            durable_lsn: AtomicU64::new(last_lsn),
            durable_rx,
            segments: Mutex::new(metas),
            disk_bytes: AtomicU64::new(disk_bytes),
            fsyncs: AtomicU64::new(0),
            write_rounds: AtomicU64::new(0),
            failing: AtomicBool::new(false),
        });
        let active = ActiveSegment {
            file,
            path,
            len: file_len,
        };
        let handle = writer::spawn(&shared, options.segment_bytes, active, last_lsn, durable_tx)
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
    /// until the writer catches up; while writes fail, a full buffer fails the append with the
    /// write failure instead. Fails with the writer's sticky error, with `Closed` after
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
            if let Some(failure) = &st.write_failure {
                // The disk is not taking writes: waiting could take forever.
                return Err(failure.to_error());
            }
            shared.progress.wait(&mut st);
        }
        let lsn = st.next_lsn;
        st.next_lsn += 1;
        // The CRC covers lsn ++ payload, and the LSN is only known under the lock.
        let was_empty = st.buf.is_empty();
        push_record(&mut st.buf, lsn, payload_len, payload);
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

    /// Highest LSN handed to the OS: what a [`WalTail`] may read.
    pub fn written_lsn(&self) -> Lsn {
        self.shared.written_lsn.load(Ordering::Acquire)
    }

    /// Waits up to `timeout` for records after `after` to be written; returns the written LSN
    /// (still `after` or less if none came, or the writer stopped).
    pub fn wait_written(&self, after: Lsn, timeout: std::time::Duration) -> Lsn {
        let shared = &*self.shared;
        let deadline = std::time::Instant::now() + timeout;
        let mut st = shared.state.lock();
        loop {
            let written = shared.written_lsn.load(Ordering::Acquire);
            if written > after || st.stopped || st.error.is_some() {
                return written;
            }
            if shared.progress.wait_until(&mut st, deadline).timed_out() {
                return shared.written_lsn.load(Ordering::Acquire);
            }
        }
    }

    /// The first LSN the log still holds (records before it were removed by checkpoints);
    /// `last_lsn() + 1` when it holds none.
    pub fn oldest_lsn(&self) -> Lsn {
        let segments = self.shared.segments.lock();
        segments
            .first()
            .map_or_else(|| self.last_lsn() + 1, |segment| segment.first_lsn)
    }

    /// The directory the log lives in (for a [`WalTail`]).
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Empties the log and makes it go on after `last`: a replica's full sync, whose data now
    /// comes from the primary's snapshot at `last`. The caller must be the only appender.
    pub fn restart_at(&self, last: Lsn) -> Result<(), WalError> {
        let shared = &*self.shared;
        let mut st = shared.state.lock();
        // Everything appended so far is written first (it belongs to the data being replaced,
        // but the writer must not be holding it when the segments go).
        while !st.buf.is_empty() || st.in_flight > 0 {
            st.check_appendable()?;
            if let Some(failure) = &st.write_failure {
                // The disk is not taking writes: waiting could take forever.
                return Err(failure.to_error());
            }
            shared.work.notify_one();
            shared.progress.wait(&mut st);
        }
        st.check_appendable()?;
        st.restart = Some(last);
        shared.work.notify_one();
        while st.restart.is_some() && !st.stopped {
            shared.progress.wait(&mut st);
        }
        st.check_appendable()
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
            if let Some(err) = st.error.as_ref().or(st.write_failure.as_ref()) {
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
            if let Some(err) = st.error.as_ref().or(st.write_failure.as_ref()) {
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
        self.remove_segments_keeping(lsn, 0)
    }

    /// As [`Wal::remove_segments_before`], but keeps the newest segments that together hold at
    /// least `keep_bytes` (a replication backlog: records replicas may still ask for).
    pub fn remove_segments_keeping(&self, lsn: Lsn, keep_bytes: u64) -> Result<u64, WalError> {
        let shared = &*self.shared;
        let mut segments = shared.segments.lock();
        // Segment i holds only LSNs below its successor's first one.
        let mut removable = segments
            .windows(2)
            .take_while(|pair| pair[1].first_lsn <= lsn)
            .count();
        let total: u64 = segments.iter().map(|segment| segment.bytes).sum();
        let mut removed_bytes: u64 = segments.iter().take(removable).map(|s| s.bytes).sum();
        while removable > 0 && total - removed_bytes < keep_bytes {
            removable -= 1;
            removed_bytes -= segments[removable].bytes;
        }
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

    /// Why the log cannot take records now, if it cannot: a fatal error (until restart), or
    /// a write failure the writer is retrying (None again once a retry succeeds).
    pub fn failure(&self) -> Option<WalError> {
        // Every write command asks: no lock unless something failed.
        if !self.shared.failing.load(Ordering::Acquire) {
            return None;
        }
        let st = self.shared.state.lock();
        st.error
            .as_ref()
            .or(st.write_failure.as_ref())
            .map(|err| err.to_error())
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
