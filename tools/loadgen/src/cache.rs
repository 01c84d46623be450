//! The version bookkeeping of the `cache` workload (cache-aside), which tells a stale value
//! from a legitimately old one even with many connections writing the same key.
//!
//! Every SET writes a versioned value (see `KeySpace::push_versioned_value`). A write takes
//! the key's next version; a fill (the SET after a miss) writes the key's latest version, as
//! an application copies the database's current value into the cache. A GET may return nil
//! (the cache evicted the key) or any version that some SET wrote, except one that the
//! real-time order of requests rules out:
//!
//! - a version above the latest one issued for the key (nothing wrote it);
//! - a version below the key's *floor* as it stood when the GET was sent. When a SET
//!   carrying version `w` is acknowledged, the floor rises to the smallest version that was
//!   still in flight (sent, not acknowledged) when that SET was issued, or `w` if none was.
//!   Every SET carrying a lower version was acknowledged before this SET was even issued, so
//!   the server must have applied it earlier, and no linearizable cache can return it once
//!   this SET is acknowledged: the key holds this SET's value, a later one, or nothing.
//!
//! Versions are issued in the order SETs are issued (writes take `latest + 1`, fills
//! `latest`), so a SET issued later never carries a lower version than one issued earlier.
//! Requests are issued before they are sent and acknowledgements recorded after they arrive,
//! so every judgement errs towards accepting a value, never towards a false alarm.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Most keys the `cache` workload tracks (two 4-byte counters each).
pub const MAX_CACHE_KEYS: u64 = 1 << 30;
/// Independent locks over the in-flight sets, by key index.
const SHARDS: usize = 64;

/// Versions of SETs sent and not yet acknowledged, per key that has any.
type InFlight = HashMap<u64, Vec<u32>>;

pub struct VersionBook {
    latest: Box<[AtomicU32]>,
    floor: Box<[AtomicU32]>,
    in_flight: Box<[Mutex<InFlight>]>,
}

impl fmt::Debug for VersionBook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VersionBook({} keys)", self.latest.len())
    }
}

/// What an issued SET must hand back when its reply arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetTicket {
    pub version: u32,
    /// The key's floor once this SET is acknowledged.
    pub floor_on_ack: u32,
}

/// Why a version read back cannot be the key's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staleness {
    /// Above every version issued for the key.
    Future { version: u64, latest: u32 },
    /// Below a version whose SET was acknowledged before the GET was sent.
    Stale { version: u64, floor: u32 },
}

impl fmt::Display for Staleness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Future { version, latest } => write!(
                f,
                "version {version} was never written (latest issued {latest}): another run's value? flush the server first"
            ),
            Self::Stale { version, floor } => write!(
                f,
                "stale: version {version}, but version {floor} or later was acknowledged before this GET was sent"
            ),
        }
    }
}

impl VersionBook {
    /// Every key starts at version 0 (the "database" value before any write), floor 0.
    pub fn new(keys: u64) -> Self {
        assert!(keys <= MAX_CACHE_KEYS, "at most {MAX_CACHE_KEYS} keys");
        let counters = |_| AtomicU32::new(0);
        Self {
            latest: (0..keys).map(counters).collect(),
            floor: (0..keys).map(counters).collect(),
            in_flight: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, index: u64) -> MutexGuard<'_, InFlight> {
        self.in_flight[(index % SHARDS as u64) as usize]
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Issues a SET of key `index`: a new version for a write, the latest for a fill.
    pub fn begin_set(&self, index: u64, new_version: bool) -> SetTicket {
        let mut in_flight = self.shard(index);
        let latest = &self.latest[index as usize];
        let version = if new_version {
            let next = latest
                .load(Ordering::Relaxed)
                .checked_add(1)
                .expect("over 4 billion writes of one key");
            latest.store(next, Ordering::Relaxed);
            next
        } else {
            latest.load(Ordering::Relaxed)
        };
        let pending = in_flight.entry(index).or_default();
        let floor_on_ack = pending.iter().copied().fold(version, u32::min);
        pending.push(version);
        SetTicket {
            version,
            floor_on_ack,
        }
    }

    /// The SET's reply arrived: `applied` if the server stored the value (an error reply
    /// means it did not, and it never will).
    pub fn end_set(&self, index: u64, ticket: SetTicket, applied: bool) {
        let mut in_flight = self.shard(index);
        if let Some(pending) = in_flight.get_mut(&index) {
            if let Some(at) = pending.iter().position(|&v| v == ticket.version) {
                pending.swap_remove(at);
            }
            if pending.is_empty() {
                in_flight.remove(&index);
            }
        }
        if applied {
            self.floor[index as usize].fetch_max(ticket.floor_on_ack, Ordering::Relaxed);
        }
    }

    /// The floor a GET sent now is held to.
    pub fn floor(&self, index: u64) -> u32 {
        self.floor[index as usize].load(Ordering::Relaxed)
    }

    /// Judges `version`, read by a GET that was issued when the key's floor was `floor`.
    pub fn judge(&self, index: u64, version: u64, floor: u32) -> Result<(), Staleness> {
        let latest = self.latest[index as usize].load(Ordering::Relaxed);
        if version > u64::from(latest) {
            Err(Staleness::Future { version, latest })
        } else if version < u64::from(floor) {
            Err(Staleness::Stale { version, floor })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_writer_at_a_time_makes_every_older_version_stale() {
        let book = VersionBook::new(4);
        assert_eq!(book.judge(1, 0, book.floor(1)), Ok(()));
        let w1 = book.begin_set(1, true);
        assert_eq!(
            w1,
            SetTicket {
                version: 1,
                floor_on_ack: 1
            }
        );
        // While in flight, the old and the new version are both fine.
        assert_eq!(book.judge(1, 0, book.floor(1)), Ok(()));
        assert_eq!(book.judge(1, 1, book.floor(1)), Ok(()));
        let floor_before_ack = book.floor(1);
        book.end_set(1, w1, true);
        assert_eq!(
            book.judge(1, 0, book.floor(1)),
            Err(Staleness::Stale {
                version: 0,
                floor: 1
            })
        );
        // A GET issued before the ack may still see the old version.
        assert_eq!(book.judge(1, 0, floor_before_ack), Ok(()));
        assert_eq!(
            book.judge(1, 2, book.floor(1)),
            Err(Staleness::Future {
                version: 2,
                latest: 1
            })
        );
        // Other keys are untouched.
        assert_eq!(book.floor(2), 0);
    }

    #[test]
    fn overlapping_sets_keep_the_older_version_valid() {
        let book = VersionBook::new(1);
        let w1 = book.begin_set(0, true);
        let w2 = book.begin_set(0, true);
        assert_eq!(w2.version, 2);
        assert_eq!(w2.floor_on_ack, 1, "w1 was in flight when w2 was issued");
        // w2 acknowledged first: the server may still apply w1 after it.
        book.end_set(0, w2, true);
        assert_eq!(book.judge(0, 1, book.floor(0)), Ok(()));
        assert_eq!(
            book.judge(0, 0, book.floor(0)),
            Err(Staleness::Stale {
                version: 0,
                floor: 1
            })
        );
        book.end_set(0, w1, true);
        assert_eq!(book.judge(0, 1, book.floor(0)), Ok(()));
        // A write issued with nothing in flight settles the key.
        let w3 = book.begin_set(0, true);
        assert_eq!(w3.floor_on_ack, 3);
        book.end_set(0, w3, true);
        assert!(book.judge(0, 2, book.floor(0)).is_err());
        assert_eq!(book.judge(0, 3, book.floor(0)), Ok(()));
    }

    #[test]
    fn fills_carry_the_latest_version_and_a_failed_set_raises_nothing() {
        let book = VersionBook::new(1);
        // A fill of version 0 in flight, then a write: the fill may land after the write.
        let fill = book.begin_set(0, false);
        assert_eq!(fill.version, 0);
        let w1 = book.begin_set(0, true);
        assert_eq!(w1.floor_on_ack, 0);
        book.end_set(0, w1, true);
        assert_eq!(book.judge(0, 0, book.floor(0)), Ok(()));
        book.end_set(0, fill, true);
        // Now a fill issued with nothing in flight carries version 1 and settles it.
        let fill = book.begin_set(0, false);
        assert_eq!(
            fill,
            SetTicket {
                version: 1,
                floor_on_ack: 1
            }
        );
        book.end_set(0, fill, true);
        assert!(book.judge(0, 0, book.floor(0)).is_err());
        // A write that got an error reply was never applied: the floor stays.
        let w2 = book.begin_set(0, true);
        book.end_set(0, w2, false);
        assert_eq!(book.floor(0), 1);
        assert_eq!(book.judge(0, 1, book.floor(0)), Ok(()));
    }
}
