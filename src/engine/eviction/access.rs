//! What an entry remembers of its use, for the eviction policies: the time of its last
//! access and a Redis-style logarithmic frequency counter, with Redis's rules for
//! incrementing and decaying the counter. Both tiers keep the same stamp: the hot entry
//! updates it in RAM on every hit, and the cold value carries it from the last time the
//! entry was written down.

use std::cell::Cell;

/// A new key's frequency counter, as Redis's LFU_INIT_VAL: a key just written is not
/// evicted before it had a chance to be read again.
pub const LFU_INIT_VAL: u8 = 5;

/// Bytes an access stamp takes in a cold value.
pub const ENCODED_LEN: usize = 5;

/// The eviction metadata of one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessStamp {
    /// Unix seconds of the last access (0 = unknown: written before stamps existed).
    pub last_access_s: u32,
    /// Logarithmic access counter (0..=255), as of `last_access_s`.
    pub lfu: u8,
}

/// The LFU knobs (Redis's `lfu-log-factor` and `lfu-decay-time`), read once per access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LfuParams {
    pub log_factor: u32,
    /// Minutes per decrement of an unused key's counter; 0 = never.
    pub decay_minutes: u32,
}

impl Default for LfuParams {
    fn default() -> Self {
        LfuParams {
            log_factor: 10,
            decay_minutes: 1,
        }
    }
}

impl AccessStamp {
    /// A key written for the first time at `now_s`.
    pub fn new(now_s: u32) -> Self {
        AccessStamp {
            last_access_s: now_s,
            lfu: LFU_INIT_VAL,
        }
    }

    /// A value from before stamps existed: as idle and as rarely used as can be, so the
    /// eviction policies take such values first.
    pub fn unknown() -> Self {
        AccessStamp {
            last_access_s: 0,
            lfu: 0,
        }
    }

    /// The stamp after an access at `now_s`: the counter decays for the time since the
    /// last access, then grows with probability 1 / ((counter - LFU_INIT_VAL) * factor + 1)
    /// (Redis's `LFULogIncr`), so it takes about a million hits to saturate at factor 10.
    pub fn touched(self, now_s: u32, lfu: LfuParams) -> Self {
        let counter = self.decayed_counter(now_s, lfu);
        AccessStamp {
            last_access_s: now_s.max(self.last_access_s),
            lfu: log_increment(counter, lfu.log_factor, random_unit()),
        }
    }

    /// The counter as of `now_s`: one less per `decay_minutes` elapsed since the last access
    /// (Redis's `LFUDecrAndReturn`). OBJECT FREQ answers this.
    pub fn decayed_counter(self, now_s: u32, lfu: LfuParams) -> u8 {
        if lfu.decay_minutes == 0 {
            return self.lfu;
        }
        let idle_minutes = self.idle_seconds(now_s) / 60;
        let periods = idle_minutes / lfu.decay_minutes;
        self.lfu.saturating_sub(periods.min(255) as u8)
    }

    /// Seconds since the last access (OBJECT IDLETIME).
    pub fn idle_seconds(self, now_s: u32) -> u32 {
        now_s.saturating_sub(self.last_access_s)
    }

    pub fn encode(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.last_access_s.to_be_bytes());
        out.push(self.lfu);
    }

    /// Reads what `encode` wrote; `None` when `bytes` is shorter.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let raw: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
        Some(AccessStamp {
            last_access_s: u32::from_be_bytes(raw),
            lfu: *bytes.get(4)?,
        })
    }
}

/// Redis's `LFULogIncr` with the random draw `unit` in [0, 1).
fn log_increment(counter: u8, log_factor: u32, unit: f64) -> u8 {
    if counter == u8::MAX {
        return counter;
    }
    let base = f64::from(counter.saturating_sub(LFU_INIT_VAL));
    let probability = 1.0 / (base * f64::from(log_factor) + 1.0);
    if unit < probability {
        counter + 1
    } else {
        counter
    }
}

thread_local! {
    /// xorshift64* state: a counter increment needs a coin flip on every hit, which must
    /// cost nanoseconds, not a cryptographic generator's setup.
    static RNG: Cell<u64> = Cell::new(rand::random::<u64>() | 1);
}

/// A uniform draw in [0, 1).
fn random_unit() -> f64 {
    RNG.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_grows_logarithmically_as_in_redis() {
        // Redis's table for lfu-log-factor 10: 100 hits -> ~10, 1000 -> ~18, 100k -> ~142,
        // 1M -> 255. Checked at its two ends with margins for the coin flips.
        let params = LfuParams::default();
        let hits = |n: u32| {
            let mut stamp = AccessStamp::new(1000);
            for _ in 0..n {
                stamp = stamp.touched(1000, params);
            }
            stamp.lfu
        };
        let after_100 = hits(100);
        assert!((7..=14).contains(&after_100), "{after_100}");
        let after_100k = hits(100_000);
        assert!((120..=165).contains(&after_100k), "{after_100k}");
        assert_eq!(log_increment(255, 10, 0.0), 255);
        assert_eq!(log_increment(LFU_INIT_VAL, 10, 0.99), LFU_INIT_VAL + 1);
        assert_eq!(log_increment(LFU_INIT_VAL + 1, 10, 0.5), LFU_INIT_VAL + 1);
    }

    #[test]
    fn an_unused_counter_decays_one_step_per_period() {
        let stamp = AccessStamp {
            last_access_s: 600,
            lfu: 20,
        };
        let every_two_minutes = LfuParams {
            log_factor: 10,
            decay_minutes: 2,
        };
        assert_eq!(stamp.decayed_counter(600 + 119, every_two_minutes), 20);
        assert_eq!(stamp.decayed_counter(600 + 10 * 60, every_two_minutes), 15);
        assert_eq!(stamp.decayed_counter(u32::MAX, every_two_minutes), 0);
        let never = LfuParams {
            decay_minutes: 0,
            ..every_two_minutes
        };
        assert_eq!(stamp.decayed_counter(u32::MAX, never), 20);
        assert_eq!(stamp.idle_seconds(500), 0);
        assert_eq!(stamp.idle_seconds(700), 100);
    }

    #[test]
    fn stamps_round_trip_through_their_encoding() {
        let stamp = AccessStamp {
            last_access_s: 0xDEAD_BEEF,
            lfu: 77,
        };
        let mut out = Vec::new();
        stamp.encode(&mut out);
        assert_eq!(out.len(), ENCODED_LEN);
        assert_eq!(AccessStamp::decode(&out), Some(stamp));
        assert_eq!(AccessStamp::decode(&out[..4]), None);
    }
}
