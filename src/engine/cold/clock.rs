//! The engine's clock, shared with the compaction filter so tests can move time, and the
//! time a command runs at. As Redis fixes one time per command (and per script), the
//! dispatcher freezes this thread's time at the command's start (`freeze_at`): every expiry
//! check and access stamp inside the command then agrees, and reading it costs no system
//! call. The frozen time comes from the command's monotonic start plus an offset to the
//! system clock that is read again every `WALL_CLOCK_REFRESH`, so one clock reading serves
//! both the command's timing (INFO commandstats, the slow log) and its expiry checks.
//! Threads outside a command (the expirer, the demoter, the compaction filter) read the
//! system clock itself.

use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How old the offset between the monotonic and the system clock may get before it is read
/// again: a change of the system clock reaches frozen times within this.
const WALL_CLOCK_REFRESH: Duration = Duration::from_millis(100);

thread_local! {
    /// The frozen time of the command running on this thread (Unix ms), 0 when none.
    static COMMAND_TIME_MS: Cell<u64> = const { Cell::new(0) };
}

#[derive(Debug)]
pub struct SharedClock {
    /// 0 = use the system clock; otherwise a fixed time in Unix milliseconds.
    manual_ms: AtomicU64,
    /// Where the monotonic milliseconds below count from.
    origin: Instant,
    /// Unix ms minus monotonic ms, as of the last reading of the system clock.
    wall_offset_ms: AtomicI64,
    /// The monotonic ms of that reading.
    offset_read_at_ms: AtomicU64,
}

impl Default for SharedClock {
    fn default() -> Self {
        let clock = SharedClock {
            manual_ms: AtomicU64::new(0),
            origin: Instant::now(),
            wall_offset_ms: AtomicI64::new(0),
            offset_read_at_ms: AtomicU64::new(0),
        };
        clock.read_offset();
        clock
    }
}

fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl SharedClock {
    /// Now in Unix milliseconds: the fixed test time, else the running command's frozen time,
    /// else the system clock.
    pub fn now_ms(&self) -> u64 {
        match self.manual_ms.load(Ordering::Relaxed) {
            0 => match COMMAND_TIME_MS.get() {
                0 => system_ms(),
                frozen => frozen,
            },
            manual => manual,
        }
    }

    /// Freezes the clock at `ms` (tests only ever need this; 0 goes back to system time).
    pub fn set_manual_ms(&self, ms: u64) {
        self.manual_ms.store(ms, Ordering::Relaxed);
    }

    /// Until the guard drops, `now_ms` on this thread answers the Unix time of `started` (a
    /// command's start). Inside a frozen time (a script's commands) the outer time stays.
    pub fn freeze_at(&self, started: Instant) -> FrozenTime {
        let outer = COMMAND_TIME_MS.get();
        if outer == 0 {
            COMMAND_TIME_MS.set(self.wall_ms_at(started).max(1));
        }
        FrozenTime { outer }
    }

    /// The Unix ms of `at`: the monotonic time since `origin` plus the offset to the system
    /// clock, read again first if it is `WALL_CLOCK_REFRESH` old.
    fn wall_ms_at(&self, at: Instant) -> u64 {
        let mono_ms = at.saturating_duration_since(self.origin).as_millis() as u64;
        let read_at = self.offset_read_at_ms.load(Ordering::Relaxed);
        if mono_ms.saturating_sub(read_at) >= WALL_CLOCK_REFRESH.as_millis() as u64 {
            self.read_offset();
        }
        let offset = self.wall_offset_ms.load(Ordering::Relaxed);
        (mono_ms as i64).saturating_add(offset).max(0) as u64
    }

    fn read_offset(&self) {
        let mono_ms = self.origin.elapsed().as_millis() as u64;
        let offset = system_ms() as i64 - mono_ms as i64;
        self.wall_offset_ms.store(offset, Ordering::Relaxed);
        self.offset_read_at_ms.store(mono_ms, Ordering::Relaxed);
    }
}

/// A command's frozen time on this thread (`SharedClock::freeze_at`); dropping it restores
/// what was there before.
pub struct FrozenTime {
    outer: u64,
}

impl Drop for FrozenTime {
    fn drop(&mut self) {
        COMMAND_TIME_MS.set(self.outer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frozen_time_holds_until_dropped_and_nests_under_the_outer_one() {
        let clock = SharedClock::default();
        let start = Instant::now();
        let frozen = clock.freeze_at(start);
        let at_start = clock.now_ms();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(clock.now_ms(), at_start, "time moved inside a command");
        {
            // A script's command keeps the script's time.
            let _inner = clock.freeze_at(Instant::now());
            assert_eq!(clock.now_ms(), at_start);
        }
        assert_eq!(clock.now_ms(), at_start);
        drop(frozen);
        assert!(clock.now_ms() >= at_start + 10, "the system clock is back");
        // The frozen time is the system clock's (a second's slack for a descheduled thread).
        let system = system_ms();
        let _frozen = clock.freeze_at(Instant::now());
        assert!(clock.now_ms().abs_diff(system) < 1_000);
    }

    #[test]
    fn the_fixed_test_time_wins_over_a_frozen_one() {
        let clock = SharedClock::default();
        clock.set_manual_ms(1_000);
        let _frozen = clock.freeze_at(Instant::now());
        assert_eq!(clock.now_ms(), 1_000);
    }
}
