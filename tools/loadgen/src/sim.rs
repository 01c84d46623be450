//! `simulate-lru`: the `cache` workload's operation sequence run through an exact LRU cache
//! of a byte capacity, single-threaded, to give the hit ratio a perfect LRU of that size
//! would reach.
//!
//! The sequence model is the `cache` workload's: `streams` operation streams (one per
//! connection), stream `i` drawing from a `SmallRng` seeded exactly as connection `i` of a
//! live run (`seed ^ i * 0x9e3779b97f4a7c15`), taken in turn (round-robin, as connections
//! with one request in flight each advance about equally). Each operation is a read with
//! probability `read_ratio`, else a write, of a key drawn from the distribution, with the
//! same two uniform draws per operation as the live run. A read of a cached key is a hit
//! and makes it most recent; a read of an uncached key is a miss, and that stream's next turn
//! is the fill (a SET, drawing nothing), as a connection's next request is. A write or fill
//! stores the key as most recent and evicts least recent entries until the total charge
//! fits the capacity again.
//!
//! Each entry is charged `key length + value size + entry_overhead` bytes (every key has the
//! same length, `prefix + 12 digits`, and every value the same size).

use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};

use crate::keys::KeyChooser;

const NIL: u32 = u32::MAX;
/// Keys are indexed by `u32`, `NIL` excluded.
pub const MAX_SIM_KEYS: u64 = NIL as u64;

/// An exact LRU over the dense key indices `0..keys`: an intrusive doubly linked list in
/// two arrays, so every operation is O(1) with no allocation.
pub struct Lru {
    prev: Vec<u32>,
    next: Vec<u32>,
    present: Vec<bool>,
    /// Most recent.
    head: u32,
    /// Least recent: the next victim.
    tail: u32,
    capacity: u64,
    charge: u64,
    used: u64,
    len: u64,
    pub evictions: u64,
}

impl Lru {
    pub fn new(keys: u64, capacity_bytes: u64, charge: u64) -> Self {
        assert!(keys <= MAX_SIM_KEYS, "at most {MAX_SIM_KEYS} keys");
        assert!(charge > 0);
        let keys = keys as usize;
        Self {
            prev: vec![NIL; keys],
            next: vec![NIL; keys],
            present: vec![false; keys],
            head: NIL,
            tail: NIL,
            capacity: capacity_bytes,
            charge,
            used: 0,
            len: 0,
            evictions: 0,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn used_bytes(&self) -> u64 {
        self.used
    }

    fn unlink(&mut self, key: u32) {
        let (prev, next) = (self.prev[key as usize], self.next[key as usize]);
        match prev {
            NIL => self.head = next,
            p => self.next[p as usize] = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.prev[n as usize] = prev,
        }
    }

    fn push_front(&mut self, key: u32) {
        self.prev[key as usize] = NIL;
        self.next[key as usize] = self.head;
        match self.head {
            NIL => self.tail = key,
            h => self.prev[h as usize] = key,
        }
        self.head = key;
    }

    /// A read: true (and the key becomes most recent) if cached.
    pub fn get(&mut self, key: u64) -> bool {
        let key = key as u32;
        if !self.present[key as usize] {
            return false;
        }
        if self.head != key {
            self.unlink(key);
            self.push_front(key);
        }
        true
    }

    /// A write: the key becomes most recent; least recent entries leave until it fits. An
    /// entry larger than the whole capacity is not stored (nor is anything evicted for it).
    pub fn set(&mut self, key: u64) {
        let key = key as u32;
        if self.present[key as usize] {
            self.get(u64::from(key));
            return;
        }
        if self.charge > self.capacity {
            return;
        }
        while self.used + self.charge > self.capacity {
            let victim = self.tail;
            self.unlink(victim);
            self.present[victim as usize] = false;
            self.used -= self.charge;
            self.len -= 1;
            self.evictions += 1;
        }
        self.present[key as usize] = true;
        self.push_front(key);
        self.used += self.charge;
        self.len += 1;
    }

    /// Least recent last; for tests.
    #[cfg(test)]
    fn order(&self) -> Vec<u64> {
        let mut keys = Vec::new();
        let mut at = self.head;
        while at != NIL {
            keys.push(u64::from(at));
            at = self.next[at as usize];
        }
        keys
    }
}

/// What the simulation replays.
#[derive(Debug)]
pub struct SimPlan {
    pub chooser: KeyChooser,
    pub read_ratio: f64,
    pub seed: u64,
    /// Operation streams, as connections of a live run.
    pub streams: u64,
    /// Operations (reads and writes; fills come on top) before counting starts.
    pub warmup_ops: u64,
    /// Operations counted.
    pub ops: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SimCounts {
    pub reads: u64,
    pub writes: u64,
    pub fills: u64,
    pub hits: u64,
    pub misses: u64,
}

impl SimCounts {
    pub fn hit_ratio(&self) -> Option<f64> {
        let reads = self.hits + self.misses;
        (reads > 0).then(|| self.hits as f64 / reads as f64)
    }
}

/// One operation of the sequence model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimOp {
    Read(u64),
    Write(u64),
    Fill(u64),
}

/// The `cache` workload's operation sequence; the caller reports misses with `missed`.
pub struct OpStream<'a> {
    plan: &'a SimPlan,
    rngs: Vec<SmallRng>,
    /// Per stream, the key its last read missed, filled at its next turn.
    owed: Vec<Option<u64>>,
    turn: usize,
}

impl<'a> OpStream<'a> {
    pub fn new(plan: &'a SimPlan) -> Self {
        assert!(plan.streams > 0);
        let rngs = (0..plan.streams)
            .map(|id| SmallRng::seed_from_u64(plan.seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .collect();
        Self {
            plan,
            rngs,
            owed: vec![None; plan.streams as usize],
            turn: 0,
        }
    }

    /// The next operation: the turn's stream's owed fill, else a new draw.
    fn next_op(&mut self) -> SimOp {
        let stream = self.turn;
        self.turn = (self.turn + 1) % self.rngs.len();
        if let Some(key) = self.owed[stream].take() {
            return SimOp::Fill(key);
        }
        let rng = &mut self.rngs[stream];
        // As the live run: one uniform draw for read or write, and for a read one more
        // (the absent-key draw, always false here), then the key.
        if rng.random::<f64>() < self.plan.read_ratio {
            let _absent = rng.random::<f64>();
            SimOp::Read(self.plan.chooser.choose(rng))
        } else {
            SimOp::Write(self.plan.chooser.choose(rng))
        }
    }

    /// Tells the stream that produced the last `Read(key)` that it missed.
    fn missed(&mut self, key: u64) {
        let stream = (self.turn + self.rngs.len() - 1) % self.rngs.len();
        self.owed[stream] = Some(key);
    }
}

/// Runs `plan` through `lru`. Fills are counted whenever they happen after the warmup.
pub fn simulate(plan: &SimPlan, lru: &mut Lru) -> SimCounts {
    let mut stream = OpStream::new(plan);
    let mut counts = SimCounts::default();
    let mut drawn = 0u64;
    let total = plan.warmup_ops.saturating_add(plan.ops);
    while drawn < total {
        let op = stream.next_op();
        let measured = u64::from(drawn >= plan.warmup_ops);
        match op {
            SimOp::Read(key) => {
                drawn += 1;
                counts.reads += measured;
                if lru.get(key) {
                    counts.hits += measured;
                } else {
                    counts.misses += measured;
                    stream.missed(key);
                }
            }
            SimOp::Write(key) => {
                drawn += 1;
                counts.writes += measured;
                lru.set(key);
            }
            SimOp::Fill(key) => {
                counts.fills += measured;
                lru.set(key);
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use std::collections::{HashSet, VecDeque};

    use super::*;
    use crate::keys::DistributionKind;

    #[test]
    fn a_hand_computed_sequence() {
        // Charge 10 bytes, capacity 35: three entries, never a fourth.
        let mut lru = Lru::new(10, 35, 10);
        assert!(!lru.get(1));
        lru.set(1);
        lru.set(2);
        lru.set(3);
        assert_eq!(lru.order(), [3, 2, 1]);
        assert_eq!((lru.len(), lru.used_bytes()), (3, 30));
        assert!(lru.get(1)); // 1 becomes most recent: [1, 3, 2]
        lru.set(4); // evicts 2, the least recent
        assert_eq!(lru.order(), [4, 1, 3]);
        assert_eq!(lru.evictions, 1);
        assert!(!lru.get(2));
        lru.set(3); // an overwrite only refreshes
        assert_eq!(lru.order(), [3, 4, 1]);
        assert_eq!(lru.evictions, 1);
        lru.set(5); // evicts 1
        lru.set(6); // evicts 4
        assert_eq!(lru.order(), [6, 5, 3]);
        assert_eq!(lru.evictions, 3);
        assert!(lru.get(3) && !lru.get(1) && !lru.get(4));
        assert_eq!(lru.used_bytes(), 30);
    }

    #[test]
    fn capacity_is_in_bytes_and_an_oversized_entry_is_not_stored() {
        let mut lru = Lru::new(4, 29, 10); // two entries
        lru.set(0);
        lru.set(1);
        lru.set(2);
        assert_eq!(lru.order(), [2, 1]);
        let mut tiny = Lru::new(4, 9, 10);
        tiny.set(0);
        assert_eq!((tiny.len(), tiny.evictions), (0, 0));
        assert!(!tiny.get(0));
        let mut exact = Lru::new(4, 10, 10);
        exact.set(3);
        assert!(exact.get(3));
    }

    /// The obvious LRU: a deque, most recent at the front.
    struct SlowLru {
        entries: VecDeque<u64>,
        max: usize,
    }

    impl SlowLru {
        fn touch(&mut self, key: u64) -> bool {
            let found = self.entries.iter().position(|&k| k == key);
            if let Some(at) = found {
                self.entries.remove(at);
                self.entries.push_front(key);
            }
            found.is_some()
        }

        fn set(&mut self, key: u64) {
            if !self.touch(key) && self.max > 0 {
                if self.entries.len() == self.max {
                    self.entries.pop_back();
                }
                self.entries.push_front(key);
            }
        }
    }

    #[test]
    fn agrees_with_a_naive_lru_on_random_traces() {
        let mut rng = SmallRng::seed_from_u64(7);
        for round in 0..200 {
            let keys = rng.random_range(1..40u64);
            let charge = rng.random_range(1..100u64);
            let capacity = rng.random_range(0..charge * 30);
            let mut lru = Lru::new(keys, capacity, charge);
            let mut slow = SlowLru {
                entries: VecDeque::new(),
                max: (capacity / charge) as usize,
            };
            for _ in 0..500 {
                let key = rng.random_range(0..keys);
                if rng.random::<bool>() {
                    assert_eq!(lru.get(key), slow.touch(key), "round {round}");
                } else {
                    lru.set(key);
                    slow.set(key);
                }
                assert_eq!(
                    lru.order(),
                    Vec::from(slow.entries.clone()),
                    "round {round}"
                );
            }
        }
    }

    fn plan(kind: DistributionKind, keys: u64, streams: u64, ops: u64) -> SimPlan {
        SimPlan {
            chooser: KeyChooser::new(kind, keys, 0.99, 0.1),
            read_ratio: 0.9,
            seed: 3,
            streams,
            warmup_ops: 0,
            ops,
        }
    }

    #[test]
    fn a_cache_holding_everything_misses_only_first_reads() {
        let keys = 1000;
        let plan = plan(DistributionKind::Uniform, keys, 1, 20_000);
        let mut lru = Lru::new(keys, keys * 50, 50);
        let counts = simulate(&plan, &mut lru);
        assert_eq!(lru.evictions, 0);
        // With one stream a miss is filled by the very next operation, so the misses are
        // exactly the keys whose first operation is a read.
        let mut ops = OpStream::new(&plan);
        let (mut seen, mut cold) = (HashSet::new(), 0u64);
        let mut drawn = 0;
        while drawn < plan.ops {
            match ops.next_op() {
                SimOp::Read(key) => {
                    drawn += 1;
                    if seen.insert(key) {
                        cold += 1;
                        ops.missed(key);
                    }
                }
                SimOp::Write(key) => {
                    drawn += 1;
                    seen.insert(key);
                }
                SimOp::Fill(_) => {}
            }
        }
        assert_eq!(counts.misses, cold);
        assert_eq!(counts.fills, cold);
        assert_eq!(counts.reads + counts.writes, 20_000);
        assert_eq!(counts.hits + counts.misses, counts.reads);
        assert!(counts.reads > 17_000 && counts.reads < 19_000, "{counts:?}");
        let expected = 1.0 - cold as f64 / counts.reads as f64;
        assert_eq!(counts.hit_ratio(), Some(expected));
        // With a warmup that touched every key, nothing misses at all.
        let warm = SimPlan {
            warmup_ops: 50_000,
            ..plan
        };
        let counts = simulate(&warm, &mut Lru::new(keys, keys * 50, 50));
        assert_eq!((counts.misses, counts.hit_ratio()), (0, Some(1.0)));
    }

    #[test]
    fn misses_are_filled_by_the_same_stream_at_its_next_turn() {
        let plan = plan(DistributionKind::Zipf, 100, 3, 60);
        let mut ops = OpStream::new(&plan);
        ops.next_op(); // stream 0
        ops.next_op(); // stream 1
        ops.missed(42); // stream 1 missed key 42
        assert!(!matches!(ops.next_op(), SimOp::Fill(_)), "stream 2");
        assert!(!matches!(ops.next_op(), SimOp::Fill(_)), "stream 0");
        assert_eq!(ops.next_op(), SimOp::Fill(42), "stream 1's next turn");
        assert!(!matches!(ops.next_op(), SimOp::Fill(_)), "stream 2");
        assert!(!matches!(ops.next_op(), SimOp::Fill(_)), "stream 0");
        assert!(
            !matches!(ops.next_op(), SimOp::Fill(_)),
            "stream 1: filled once"
        );
    }

    #[test]
    fn zipf_hit_ratio_grows_with_capacity_and_is_reproducible() {
        let keys = 10_000;
        let plan = SimPlan {
            warmup_ops: 100_000,
            ..plan(DistributionKind::Zipf, keys, 8, 200_000)
        };
        let ratio = |entries: u64| {
            simulate(&plan, &mut Lru::new(keys, entries * 100, 100))
                .hit_ratio()
                .unwrap()
        };
        let (small, medium, large) = (ratio(100), ratio(1000), ratio(5000));
        assert!(small < medium && medium < large, "{small} {medium} {large}");
        assert!(small > 0.2 && large < 1.0, "{small} {large}");
        assert_eq!(ratio(1000), medium);
    }
}
