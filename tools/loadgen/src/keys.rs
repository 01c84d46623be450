//! Key names, values and the distributions that pick keys.
//!
//! A key's value is a pure function of its index, so `load`, `run` and `verify` (and any other
//! reader) can check every value without shared state. Nothing here may allocate per key on
//! the hot path: names and values are written into the caller's buffers.

use std::fmt;

use rand::Rng;
use rand_distr::{Distribution as _, Normal, Zipf};

/// Key indices are written as this many zero-padded digits, so every key has the same length.
pub const KEY_DIGITS: usize = 12;
/// One past the largest index that fits in `KEY_DIGITS` digits.
pub const MAX_KEYS: u64 = 1_000_000_000_000;

/// Mixed into the value seed so that key 0 does not start from the all-zero splitmix state.
const VALUE_SEED: u64 = 0x6a09_e667_f3bc_c909;

/// The names and values of the `count` keys a run works on.
#[derive(Debug)]
pub struct KeySpace {
    prefix: Vec<u8>,
    /// `<prefix>absent:` can never equal `<prefix><12 digits>`, whatever the prefix, because
    /// the byte after the prefix is a letter rather than a digit.
    absent_prefix: Vec<u8>,
    count: u64,
    value_size: usize,
}

/// How a value read back differs from the value its key must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueMismatch {
    Length { expected: usize, got: usize },
    Byte { offset: usize },
}

impl fmt::Display for ValueMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Length { expected, got } => write!(f, "{got} bytes, expected {expected}"),
            Self::Byte { offset } => write!(f, "wrong byte at offset {offset}"),
        }
    }
}

impl KeySpace {
    pub fn new(prefix: &str, count: u64, value_size: usize) -> Self {
        assert!(
            count <= MAX_KEYS,
            "key indices must fit in {KEY_DIGITS} digits"
        );
        let mut absent_prefix = prefix.as_bytes().to_vec();
        absent_prefix.extend_from_slice(b"absent:");
        Self {
            prefix: prefix.as_bytes().to_vec(),
            absent_prefix,
            count,
            value_size,
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn value_size(&self) -> usize {
        self.value_size
    }

    /// Replaces `out` with the name of key `index`.
    pub fn write_key(&self, out: &mut Vec<u8>, index: u64) {
        out.clear();
        out.extend_from_slice(&self.prefix);
        push_digits(out, index);
    }

    /// Replaces `out` with the name of an absent key: one that nothing ever writes.
    pub fn write_absent_key(&self, out: &mut Vec<u8>, index: u64) {
        out.clear();
        out.extend_from_slice(&self.absent_prefix);
        push_digits(out, index);
    }

    /// For messages only; the hot path uses `write_key`.
    pub fn key_name(&self, index: u64) -> String {
        let mut name = Vec::new();
        self.write_key(&mut name, index);
        String::from_utf8_lossy(&name).into_owned()
    }

    /// Appends the value of key `index` to `out`.
    pub fn push_value(&self, out: &mut Vec<u8>, index: u64) {
        out.reserve(self.value_size);
        let mut stream = ValueStream::new(index);
        let mut left = self.value_size;
        while left > 0 {
            let word = stream.next_word().to_le_bytes();
            let take = left.min(word.len());
            out.extend_from_slice(&word[..take]);
            left -= take;
        }
    }

    /// Checks `data` byte for byte against the value of key `index`, without building it.
    pub fn check_value(&self, index: u64, data: &[u8]) -> Result<(), ValueMismatch> {
        if data.len() != self.value_size {
            return Err(ValueMismatch::Length {
                expected: self.value_size,
                got: data.len(),
            });
        }
        let mut stream = ValueStream::new(index);
        for (chunk_index, chunk) in data.chunks(8).enumerate() {
            let word = stream.next_word().to_le_bytes();
            if chunk != &word[..chunk.len()] {
                let within = chunk.iter().zip(word).position(|(a, b)| *a != b);
                return Err(ValueMismatch::Byte {
                    offset: chunk_index * 8 + within.unwrap_or(0),
                });
            }
        }
        Ok(())
    }
}

/// Bytes at the start of a versioned value (`cache` workload): key index, version and a
/// checksum of both, each a little-endian u64.
pub const VERSIONED_HEADER: usize = 24;

/// How a versioned value read back is not one that was ever written for its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionedMismatch {
    Length {
        expected: usize,
        got: usize,
    },
    /// The header's checksum does not match its index and version: a corrupt header.
    Header,
    /// A well-formed value of another key.
    WrongKey {
        found: u64,
    },
    /// The body differs from the one its (key, version) determines.
    Byte {
        offset: usize,
        version: u64,
    },
}

impl fmt::Display for VersionedMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Length { expected, got } => write!(f, "{got} bytes, expected {expected}"),
            Self::Header => write!(f, "corrupt header (checksum mismatch)"),
            Self::WrongKey { found } => write!(f, "holds the value of key index {found}"),
            Self::Byte { offset, version } => {
                write!(f, "version {version}: wrong byte at offset {offset}")
            }
        }
    }
}

fn header_checksum(index: u64, version: u64, len: usize) -> u64 {
    let mut stream = ValueStream {
        state: index ^ VALUE_SEED ^ (len as u64).rotate_left(32),
    };
    stream.state ^= stream.next_word() ^ version;
    stream.next_word()
}

fn versioned_stream(index: u64, version: u64) -> ValueStream {
    let mut stream = ValueStream::new(index);
    stream.state ^= stream
        .next_word()
        .wrapping_add(version.wrapping_mul(0xd6e8_feb8_6659_fd93));
    stream
}

impl KeySpace {
    /// Appends version `version` of key `index`'s value: a header (index, version, checksum)
    /// and a body that is a pure function of (index, version), so any reader can tell which
    /// write a value comes from and that no byte of it changed. `value_size` must be at least
    /// `VERSIONED_HEADER`.
    pub fn push_versioned_value(&self, out: &mut Vec<u8>, index: u64, version: u64) {
        assert!(self.value_size >= VERSIONED_HEADER);
        out.reserve(self.value_size);
        out.extend_from_slice(&index.to_le_bytes());
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&header_checksum(index, version, self.value_size).to_le_bytes());
        let mut stream = versioned_stream(index, version);
        let mut left = self.value_size - VERSIONED_HEADER;
        while left > 0 {
            let word = stream.next_word().to_le_bytes();
            let take = left.min(word.len());
            out.extend_from_slice(&word[..take]);
            left -= take;
        }
    }

    /// Checks `data` as a versioned value of key `index`; returns its version.
    pub fn check_versioned_value(&self, index: u64, data: &[u8]) -> Result<u64, VersionedMismatch> {
        if data.len() != self.value_size || data.len() < VERSIONED_HEADER {
            return Err(VersionedMismatch::Length {
                expected: self.value_size,
                got: data.len(),
            });
        }
        let word = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"));
        let (found, version, checksum) = (word(0), word(8), word(16));
        if checksum != header_checksum(found, version, data.len()) {
            return Err(VersionedMismatch::Header);
        }
        if found != index {
            return Err(VersionedMismatch::WrongKey { found });
        }
        let mut stream = versioned_stream(index, version);
        let body = &data[VERSIONED_HEADER..];
        for (chunk_index, chunk) in body.chunks(8).enumerate() {
            let word = stream.next_word().to_le_bytes();
            if chunk != &word[..chunk.len()] {
                let within = chunk.iter().zip(word).position(|(a, b)| *a != b);
                return Err(VersionedMismatch::Byte {
                    offset: VERSIONED_HEADER + chunk_index * 8 + within.unwrap_or(0),
                    version,
                });
            }
        }
        Ok(version)
    }
}

fn push_digits(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [b'0'; KEY_DIGITS];
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&digits);
}

/// splitmix64: cheap, and its output is incompressible, so a server that compresses values
/// gains nothing in a benchmark.
struct ValueStream {
    state: u64,
}

impl ValueStream {
    fn new(index: u64) -> Self {
        Self {
            state: index ^ VALUE_SEED,
        }
    }

    fn next_word(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Which keys a run's operations pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DistributionKind {
    Uniform,
    Zipf,
    Gaussian,
}

/// Draws key indices in `0..count` from one distribution.
#[derive(Debug, Clone)]
pub enum KeyChooser {
    Uniform {
        count: u64,
    },
    Zipf {
        zipf: Zipf<f64>,
        scatter: Scatter,
    },
    /// Not scattered: a Gaussian models a hot *range* of the key space.
    Gaussian {
        normal: Normal<f64>,
        count: u64,
    },
}

impl KeyChooser {
    /// `zipf_s` and `gaussian_stddev` must be finite and >= 0 (the CLI checks this).
    pub fn new(kind: DistributionKind, count: u64, zipf_s: f64, gaussian_stddev: f64) -> Self {
        assert!(count > 0, "a key space needs at least one key");
        match kind {
            DistributionKind::Uniform => Self::Uniform { count },
            DistributionKind::Zipf => Self::Zipf {
                zipf: Zipf::new(count as f64, zipf_s).expect("zipf parameters checked by the CLI"),
                scatter: Scatter::new(count),
            },
            DistributionKind::Gaussian => Self::Gaussian {
                normal: Normal::new(count as f64 / 2.0, gaussian_stddev * count as f64)
                    .expect("gaussian parameters checked by the CLI"),
                count,
            },
        }
    }

    pub fn choose(&self, rng: &mut impl Rng) -> u64 {
        match self {
            Self::Uniform { count } => rng.random_range(0..*count),
            Self::Zipf { zipf, scatter } => scatter.index_of_rank(zipf_rank(zipf, rng)),
            Self::Gaussian { normal, count } => {
                let x = normal.sample(rng).floor();
                // `as` saturates: negative and NaN become 0, huge values u64::MAX.
                (x as u64).min(count - 1)
            }
        }
    }
}

/// Rank 0 is the most popular. rand_distr samples ranks as floats in `[1, n]`.
fn zipf_rank(zipf: &Zipf<f64>, rng: &mut impl Rng) -> u64 {
    (zipf.sample(rng) as u64).saturating_sub(1)
}

/// A fixed bijection of `0..count` that spreads popularity ranks over the whole key space, so
/// that the hot keys of a Zipf run are not all neighbours (which would favour a server that
/// shards or pages by key order).
#[derive(Debug, Clone, Copy)]
pub struct Scatter {
    count: u64,
    multiplier: u64,
    offset: u64,
}

impl Scatter {
    pub fn new(count: u64) -> Self {
        assert!(count > 0);
        // Near count / golden ratio, so consecutive ranks land far apart; `index = rank * m +
        // offset (mod count)` is a bijection exactly when m is coprime with count.
        let mut multiplier = ((count as f64 * 0.618_033_988_75) as u64).max(1);
        while gcd(multiplier, count) != 1 {
            multiplier += 1;
        }
        Self {
            count,
            multiplier,
            offset: count / 3,
        }
    }

    pub fn index_of_rank(&self, rank: u64) -> u64 {
        let n = u128::from(self.count);
        ((u128::from(rank) * u128::from(self.multiplier) + u128::from(self.offset)) % n) as u64
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    #[test]
    fn keys_are_prefix_and_twelve_digits() {
        let keys = KeySpace::new("key:", 10_000, 16);
        let mut out = b"stale".to_vec();
        keys.write_key(&mut out, 1234);
        assert_eq!(out, b"key:000000001234");
        keys.write_key(&mut out, 0);
        assert_eq!(out, b"key:000000000000");
        keys.write_key(&mut out, MAX_KEYS - 1);
        assert_eq!(out, b"key:999999999999");
        keys.write_absent_key(&mut out, 7);
        assert_eq!(out, b"key:absent:000000000007");
        assert_eq!(keys.key_name(42), "key:000000000042");
    }

    #[test]
    fn values_are_deterministic_sized_and_distinct() {
        let keys = KeySpace::new("k", 100, 1021);
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        keys.push_value(&mut a, 5);
        keys.push_value(&mut b, 5);
        keys.push_value(&mut c, 6);
        assert_eq!(a.len(), 1021);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(keys.check_value(5, &a), Ok(()));
        assert_eq!(keys.check_value(6, &c), Ok(()));
        assert_eq!(
            keys.check_value(6, &a),
            Err(ValueMismatch::Byte { offset: 0 })
        );
        // Incompressible in the crude sense: no byte value dominates.
        let zeros = a.iter().filter(|&&x| x == 0).count();
        assert!(zeros < 30, "{zeros} zero bytes in 1021");
    }

    #[test]
    fn a_flipped_byte_or_wrong_length_is_detected() {
        let keys = KeySpace::new("k", 100, 1024);
        let mut value = Vec::new();
        keys.push_value(&mut value, 9);
        for offset in [0, 7, 8, 513, 1023] {
            let mut bad = value.clone();
            bad[offset] ^= 0x01;
            assert_eq!(
                keys.check_value(9, &bad),
                Err(ValueMismatch::Byte { offset })
            );
        }
        assert_eq!(
            keys.check_value(9, &value[..1023]),
            Err(ValueMismatch::Length {
                expected: 1024,
                got: 1023
            })
        );
        assert_eq!(keys.check_value(9, &value), Ok(()));
        let empty = KeySpace::new("k", 1, 0);
        assert_eq!(empty.check_value(0, b""), Ok(()));
    }

    #[test]
    fn versioned_values_carry_key_and_version_and_detect_any_change() {
        let keys = KeySpace::new("k", 100, 1000);
        let mut v3 = Vec::new();
        keys.push_versioned_value(&mut v3, 7, 3);
        assert_eq!(v3.len(), 1000);
        assert_eq!(keys.check_versioned_value(7, &v3), Ok(3));
        let mut v4 = Vec::new();
        keys.push_versioned_value(&mut v4, 7, 4);
        assert_eq!(keys.check_versioned_value(7, &v4), Ok(4));
        assert_ne!(v3[VERSIONED_HEADER..], v4[VERSIONED_HEADER..]);
        // Another key's value is recognised as such.
        let mut other = Vec::new();
        keys.push_versioned_value(&mut other, 8, 3);
        assert_eq!(
            keys.check_versioned_value(7, &other),
            Err(VersionedMismatch::WrongKey { found: 8 })
        );
        // Any flipped byte: in the header the checksum catches it, in the body the stream.
        for offset in [0, 8, 15, 16, 23] {
            let mut bad = v3.clone();
            bad[offset] ^= 0x40;
            assert_eq!(
                keys.check_versioned_value(7, &bad),
                Err(VersionedMismatch::Header),
                "offset {offset}"
            );
        }
        for offset in [24, 31, 500, 999] {
            let mut bad = v3.clone();
            bad[offset] ^= 0x01;
            assert_eq!(
                keys.check_versioned_value(7, &bad),
                Err(VersionedMismatch::Byte { offset, version: 3 })
            );
        }
        // A header of version 4 on the body of version 3 (a torn write) fails too.
        let mut torn = v4[..VERSIONED_HEADER].to_vec();
        torn.extend_from_slice(&v3[VERSIONED_HEADER..]);
        assert!(matches!(
            keys.check_versioned_value(7, &torn),
            Err(VersionedMismatch::Byte { version: 4, .. })
        ));
        assert_eq!(
            keys.check_versioned_value(7, &v3[..999]),
            Err(VersionedMismatch::Length {
                expected: 1000,
                got: 999
            })
        );
        // The unversioned value of the same key is not a versioned one.
        let mut plain = Vec::new();
        keys.push_value(&mut plain, 7);
        assert_eq!(
            keys.check_versioned_value(7, &plain),
            Err(VersionedMismatch::Header)
        );
        // The smallest size: a header alone.
        let tiny = KeySpace::new("k", 10, VERSIONED_HEADER);
        let mut value = Vec::new();
        tiny.push_versioned_value(&mut value, 2, 0);
        assert_eq!(tiny.check_versioned_value(2, &value), Ok(0));
    }

    fn harmonic(n: u64, s: f64) -> f64 {
        (1..=n).map(|k| (k as f64).powf(-s)).sum()
    }

    fn rank_counts(n: u64, s: f64, samples: usize) -> Vec<usize> {
        let zipf = Zipf::new(n as f64, s).unwrap();
        let mut rng = SmallRng::seed_from_u64(1);
        let mut counts = vec![0usize; n as usize];
        for _ in 0..samples {
            let rank = zipf_rank(&zipf, &mut rng);
            assert!(rank < n, "rank {rank} out of range");
            counts[rank as usize] += 1;
        }
        counts
    }

    #[test]
    fn zipf_rank_zero_has_the_expected_frequency() {
        let samples = 200_000;
        let counts = rank_counts(1000, 0.99, samples);
        let expected = 1.0 / harmonic(1000, 0.99);
        let observed = counts[0] as f64 / samples as f64;
        assert!(
            (observed - expected).abs() < expected * 0.05,
            "rank 0: observed {observed}, expected {expected}"
        );
        // And rank 1 about half as often as rank 0 (2^-0.99).
        let ratio = counts[1] as f64 / counts[0] as f64;
        assert!((ratio - 0.5035).abs() < 0.05, "rank1/rank0 = {ratio}");
    }

    #[test]
    fn zipf_with_zero_exponent_is_uniform() {
        let samples = 200_000;
        let counts = rank_counts(100, 0.0, samples);
        let expected = samples as f64 / 100.0;
        for (rank, &count) in counts.iter().enumerate() {
            assert!(
                (count as f64 - expected).abs() < expected * 0.15,
                "rank {rank}: {count}, expected about {expected}"
            );
        }
    }

    #[test]
    fn zipf_chooser_spreads_hot_keys_and_stays_in_range() {
        let chooser = KeyChooser::new(DistributionKind::Zipf, 1000, 0.99, 0.1);
        let mut rng = SmallRng::seed_from_u64(2);
        let mut counts = vec![0usize; 1000];
        for _ in 0..100_000 {
            counts[chooser.choose(&mut rng) as usize] += 1;
        }
        let hottest = (0..1000).max_by_key(|&i| counts[i]).unwrap() as u64;
        assert_eq!(hottest, Scatter::new(1000).index_of_rank(0));
        assert_ne!(hottest, 0, "rank 0 must not map to index 0");
    }

    #[test]
    fn scatter_is_a_bijection() {
        for count in [1u64, 2, 3, 7, 10, 64, 100, 360, 997, 1000, 1024] {
            let scatter = Scatter::new(count);
            let mut seen = vec![false; count as usize];
            for rank in 0..count {
                let index = scatter.index_of_rank(rank);
                assert!(index < count);
                assert!(!seen[index as usize], "count {count}: index {index} twice");
                seen[index as usize] = true;
            }
        }
    }

    #[test]
    fn gaussian_stays_in_range_and_centres_on_the_middle() {
        let mut rng = SmallRng::seed_from_u64(3);
        for (count, stddev) in [(1u64, 0.1), (10, 5.0), (1000, 0.1), (1000, 0.0)] {
            let chooser = KeyChooser::new(DistributionKind::Gaussian, count, 0.99, stddev);
            let mut sum = 0u64;
            for _ in 0..20_000 {
                let index = chooser.choose(&mut rng);
                assert!(index < count, "{index} >= {count}");
                sum += index;
            }
            let mean = sum as f64 / 20_000.0;
            if count == 1000 {
                assert!((mean - 500.0).abs() < 5.0, "mean {mean}");
            }
        }
    }

    #[test]
    fn uniform_covers_the_key_space() {
        let chooser = KeyChooser::new(DistributionKind::Uniform, 50, 0.99, 0.1);
        let mut rng = SmallRng::seed_from_u64(4);
        let mut seen = [false; 50];
        for _ in 0..5_000 {
            seen[chooser.choose(&mut rng) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
