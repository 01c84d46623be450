//! The cold tier's write health: since when cold writes have been failing, the last error,
//! how many failed, and whether writes are refused because the hot tier is full of entries
//! the disk will not take ([`OomRefusal`]). `ColdTier` records the outcome of every cold
//! write here; the demoter, `check_room` and the dispatcher read it.
//!
//! It must never make anyone wait: it only counts and remembers (atomics and one short
//! lock), so a full or failing disk is a state the server reports (I8, DESIGN section 8),
//! not a hang. A refusal clears itself: the next cold write that succeeds, or the demoter
//! finding every shard within its limit again, ends it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::cold::ColdError;

/// How long RocksDB may keep refusing writes as stalled (`no_slowdown`) before the cold
/// tier counts as failing: a routine stall (a flush or an L0 compaction catching up) lasts
/// far less; a stall that outlives this is a flush or compaction that cannot finish.
const STALL_GRACE: Duration = Duration::from_secs(1);

/// The longest wait between two attempts of the demoter to write to a failing cold tier.
pub(super) const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(1);

/// How long a write that finds its shard full keeps retrying (outside the shard lock)
/// before it is refused: a client hears `-OOM` within about a second, never waits forever.
pub(super) const ROOM_WAIT: Duration = Duration::from_secs(1);

/// Why writes are refused before they run (Redis's `-OOM`, for commands flagged DENYOOM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OomRefusal {
    /// The hot tier is at its limit and the cold tier refuses the writes (a full, failing
    /// or read-only disk) that would make room: dirty entries cannot be dropped.
    ColdWritesFailing,
    /// The cold tier is at its disk budget (`maxdisk`) and the eviction policy lets no key
    /// go (noeviction, or a volatile policy with no key with a TTL on disk).
    DiskBudget,
}

impl OomRefusal {
    /// The text after `-OOM` (Redis's, so clients recognise it).
    pub fn message(self) -> &'static str {
        match self {
            OomRefusal::ColdWritesFailing => "command not allowed when used memory > 'maxmemory'.",
            OomRefusal::DiskBudget => {
                "command not allowed when used memory > 'maxmemory' and used disk > 'maxdisk'."
            }
        }
    }
}

/// What INFO `# Tiers` shows of the cold tier's health.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskHealthReport {
    /// Cold writes are failing now (full, failing or read-only disk, or a stall that
    /// outlived its grace).
    pub failing: bool,
    /// Cold writes that failed since start (stalls not counted).
    pub write_errors: u64,
    /// The last failure's text, while failing.
    pub last_error: Option<String>,
    /// Writes are refused with `-OOM`.
    pub refusing_writes: bool,
}

#[derive(Debug, Default)]
pub(super) struct DiskHealth {
    /// Set while the last cold write failed (or stalled past `STALL_GRACE`).
    failing: AtomicBool,
    /// When the current run of failures began, and the last error's text.
    failure: Mutex<Option<(Instant, String)>>,
    /// When the current run of stalls began.
    stalled_since: Mutex<Option<Instant>>,
    write_errors: AtomicU64,
    refusing: AtomicBool,
    /// The current failure is a stall (RocksDB behind), not an error: the disk works.
    failing_by_stall: AtomicBool,
}

impl DiskHealth {
    /// Records what one cold write (or sync, or compaction) returned.
    pub(super) fn record<T>(&self, result: &Result<T, ColdError>) {
        match result {
            Ok(_) => self.record_success(),
            Err(ColdError::Stalled) => self.record_stall(),
            Err(err) => {
                self.write_errors.fetch_add(1, Ordering::Relaxed);
                self.failing_by_stall.store(false, Ordering::Release);
                self.note_failing(err.to_string());
            }
        }
    }

    fn record_success(&self) {
        *self.stalled_since.lock() = None;
        if self.failing.swap(false, Ordering::AcqRel) {
            let since = self.failure.lock().take();
            tracing::info!(
                failing_for_secs = since.map_or(0.0, |(at, _)| at.elapsed().as_secs_f64()),
                "cold tier writes succeed again; demotion resumes"
            );
        }
        self.refusing.store(false, Ordering::Release);
    }

    fn record_stall(&self) {
        let since = *self.stalled_since.lock().get_or_insert_with(Instant::now);
        if since.elapsed() >= STALL_GRACE {
            if !self.is_failing() {
                self.failing_by_stall.store(true, Ordering::Release);
            }
            self.note_failing(format!(
                "{} for {:.1} s",
                ColdError::Stalled,
                since.elapsed().as_secs_f64()
            ));
        }
    }

    fn note_failing(&self, message: String) {
        let mut failure = self.failure.lock();
        match failure.as_mut() {
            Some((_, last)) => *last = message,
            None => {
                // Once per run of failures: the demoter and every writer would otherwise log
                // each attempt.
                tracing::error!(
                    error = %message,
                    "cold tier writes fail; serving from the hot tier, writes refused once it is full"
                );
                *failure = Some((Instant::now(), message));
            }
        }
        self.failing.store(true, Ordering::Release);
    }

    pub(super) fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }

    /// Whether the disk takes writes, if slowly: not failing, or failing only because
    /// RocksDB has stalled writes for longer than `STALL_GRACE` (compaction behind).
    pub(super) fn works(&self) -> bool {
        !self.is_failing() || self.failing_by_stall.load(Ordering::Acquire)
    }

    /// A write could not be placed: refuse writes at the dispatcher until room returns.
    pub(super) fn refuse_writes(&self) {
        self.refusing.store(true, Ordering::Release);
    }

    /// Every shard is within its limit again: writes may be placed.
    pub(super) fn stop_refusing(&self) {
        self.refusing.store(false, Ordering::Release);
    }

    pub(super) fn oom_refusal(&self) -> Option<OomRefusal> {
        self.refusing
            .load(Ordering::Acquire)
            .then_some(OomRefusal::ColdWritesFailing)
    }

    pub(super) fn report(&self) -> DiskHealthReport {
        DiskHealthReport {
            failing: self.is_failing(),
            write_errors: self.write_errors.load(Ordering::Relaxed),
            last_error: self.failure.lock().as_ref().map(|(_, text)| text.clone()),
            refusing_writes: self.refusing.load(Ordering::Acquire),
        }
    }
}

/// Exponential backoff between attempts that failed (the demoter's cold writes, a write
/// waiting for room): 1 ms doubling up to a ceiling.
#[derive(Debug)]
pub(super) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(super) fn new(max: Duration) -> Self {
        Backoff {
            next: Duration::from_millis(1),
            max,
        }
    }

    /// The wait before the next attempt; each call doubles the following one.
    pub(super) fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    pub(super) fn reset(&mut self) {
        self.next = Duration::from_millis(1);
    }
}

/// How long a checkpoint's flush keeps retrying a stalled cold write, its shard released
/// in between, before the checkpoint fails (and the next one tries again).
const FLUSH_STALL_WAIT: Duration = Duration::from_secs(10);

/// Retries of a stalled cold write by a caller that can release its shard and wait (the
/// checkpoint's flush): a routine stall passes, one that does not end fails the caller.
#[derive(Debug)]
pub(super) struct StallRetry {
    deadline: Instant,
    backoff: Backoff,
}

impl StallRetry {
    pub(super) fn new() -> Self {
        StallRetry {
            deadline: Instant::now() + FLUSH_STALL_WAIT,
            backoff: Backoff::new(Duration::from_millis(100)),
        }
    }

    /// After a failed write, with no lock held: waits before the next attempt if `err` is
    /// a stall and time is left, else returns `err`.
    pub(super) fn wait_or_fail(&mut self, err: ColdError) -> Result<(), ColdError> {
        let now = Instant::now();
        if !matches!(err, ColdError::Stalled) || now >= self.deadline {
            return Err(err);
        }
        std::thread::sleep(self.backoff.next_wait().min(self.deadline - now));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_and_clear_on_success() {
        let health = DiskHealth::default();
        health.record::<()>(&Err(ColdError::Storage("IO error: No space left".into())));
        health.record::<()>(&Err(ColdError::Storage("IO error: No space left".into())));
        health.refuse_writes();
        let report = health.report();
        assert!(report.failing && report.refusing_writes);
        assert_eq!(report.write_errors, 2);
        assert_eq!(
            report.last_error.as_deref(),
            Some("cold tier: IO error: No space left")
        );
        assert_eq!(health.oom_refusal(), Some(OomRefusal::ColdWritesFailing));
        health.record(&Ok(()));
        let report = health.report();
        assert!(!report.failing && !report.refusing_writes && report.last_error.is_none());
        assert_eq!(report.write_errors, 2);
        assert_eq!(health.oom_refusal(), None);
    }

    #[test]
    fn a_fresh_stall_is_not_a_failure() {
        let health = DiskHealth::default();
        health.record::<()>(&Err(ColdError::Stalled));
        assert!(!health.is_failing());
        assert_eq!(health.report().write_errors, 0);
    }

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let mut backoff = Backoff::new(Duration::from_millis(5));
        let waits: Vec<u128> = (0..5).map(|_| backoff.next_wait().as_millis()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        backoff.reset();
        assert_eq!(backoff.next_wait(), Duration::from_millis(1));
    }

    #[test]
    fn the_refusal_reads_as_redis_oom() {
        assert_eq!(
            OomRefusal::ColdWritesFailing.message(),
            "command not allowed when used memory > 'maxmemory'."
        );
    }
}
