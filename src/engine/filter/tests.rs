//! The filter's promises, pinned: no false negatives across growth and removal, the
//! false-positive rate at its load, bypass at the memory cap, and round trips of the saved form.

use super::persist::{CHECKSUM_LEN, HEADER_LEN};
use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;

fn config(initial_capacity: usize, fingerprint_bits: u32, max_bytes: usize) -> FilterConfig {
    FilterConfig {
        initial_capacity,
        fingerprint_bits,
        max_bytes,
    }
}

fn random_hashes(seed: u64, n: usize) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random()).collect()
}

#[test]
fn no_false_negatives_across_growth() {
    let mut f = CuckooFilter::new(config(1024, 12, usize::MAX));
    let keys = random_hashes(1, 200_000);
    let mut grew = 0;
    for &k in &keys {
        match f.insert(k) {
            InsertOutcome::Inserted => {}
            InsertOutcome::Grew => grew += 1,
            InsertOutcome::Bypassed => panic!("bypassed without a memory cap"),
        }
    }
    assert!(grew > 0, "test must force growth");
    assert_eq!(f.len(), keys.len());
    let missing = keys.iter().filter(|&&k| !f.may_contain(k)).count();
    assert_eq!(missing, 0, "false negatives after {grew} growths");
    println!(
        "200k keys: {grew} growths, load {:.3}, {:.2} bytes/key",
        f.load_factor(),
        f.memory_bytes() as f64 / f.len() as f64
    );
}

#[test]
fn remove_deletes_only_what_it_should() {
    let mut empty = CuckooFilter::new(config(1024, 12, usize::MAX));
    assert!(!empty.remove(42));
    assert!(!empty.remove(0));

    let mut f = CuckooFilter::new(config(4096, 12, usize::MAX));
    let keys = random_hashes(2, 20_000);
    for &k in &keys {
        f.insert(k);
    }
    let (gone, kept) = keys.split_at(keys.len() / 2);
    for &k in gone {
        assert!(f.remove(k), "inserted key not found for removal");
    }
    assert_eq!(f.len(), kept.len());
    assert!(
        kept.iter().all(|&k| f.may_contain(k)),
        "kept key reads absent"
    );
    let still_present = gone.iter().filter(|&&k| f.may_contain(k)).count();
    let rate = still_present as f64 / gone.len() as f64;
    println!("removed keys still reported present: {rate:.4}");
    assert!(rate < 0.02, "removed keys mostly still present: {rate}");
}

/// Many fingerprint collisions (8 bits) spread over many tables: removing
/// one key must never make another, still-inserted key read absent.
#[test]
fn remove_with_colliding_fingerprints_stays_sound() {
    let mut f = CuckooFilter::new(config(64, 8, usize::MAX));
    let mut rng = StdRng::seed_from_u64(3);
    let mut live: Vec<u64> = Vec::new();
    for round in 0..20_000 {
        if round % 3 == 2 && !live.is_empty() {
            let victim = live.swap_remove(rng.random_range(0..live.len()));
            assert!(f.remove(victim));
        } else {
            let k: u64 = rng.random();
            f.insert(k);
            live.push(k);
        }
    }
    assert!(f.table_count() >= 4, "test must span several tables");
    assert_eq!(f.len(), live.len());
    let missing = live.iter().filter(|&&k| !f.may_contain(k)).count();
    assert_eq!(missing, 0);
}

fn fpr_at_growth_point(bits: u32) -> f64 {
    let mut f = CuckooFilter::new(config(1 << 15, bits, usize::MAX));
    let first_capacity = f.capacity();
    let mut rng = StdRng::seed_from_u64(u64::from(bits));
    let mut inserted = HashSet::new();
    loop {
        let k: u64 = rng.random();
        inserted.insert(k);
        if f.insert(k) == InsertOutcome::Grew {
            break;
        }
    }
    let load = (f.len() - 1) as f64 / first_capacity as f64;
    let bytes_per_key = (first_capacity * slot_bytes(bits)) as f64 / (f.len() - 1) as f64;
    assert!(load >= 0.9, "growth started early, at load {load}");
    let mut probes = 0u32;
    let mut positives = 0u32;
    while probes < 1_000_000 {
        let k: u64 = rng.random();
        if inserted.contains(&k) {
            continue;
        }
        probes += 1;
        positives += u32::from(f.may_contain(k));
    }
    let fpr = f64::from(positives) / f64::from(probes);
    println!(
        "{bits}-bit fingerprints: growth at load {load:.4}, {bytes_per_key:.3} bytes/key, FPR {:.4}%",
        fpr * 100.0
    );
    fpr
}

#[test]
fn false_positive_rate_12_bits() {
    assert!(fpr_at_growth_point(12) <= 0.01);
}

#[test]
fn false_positive_rate_16_bits() {
    assert!(fpr_at_growth_point(16) <= 0.001);
}

/// 4-byte slots: about 8 in 4 billion probes match, so a million probes find none
/// (16 bits would find ~100).
#[test]
fn false_positive_rate_32_bits() {
    assert!(fpr_at_growth_point(32) < 1e-5);
}

/// The wide slots keep every property the narrow ones have: no false negatives
/// across growth and removal, and a byte-exact round trip.
#[test]
fn wide_fingerprints_grow_remove_and_round_trip() {
    let mut f = CuckooFilter::new(config(256, 32, usize::MAX));
    let keys = random_hashes(9, 5000);
    for &k in &keys {
        f.insert(k);
    }
    for &k in &keys[..1000] {
        assert!(f.remove(k));
    }
    assert!(f.table_count() >= 2, "test must cover several tables");
    assert_eq!(f.memory_bytes(), f.capacity() * 4);
    assert!(keys[1000..].iter().all(|&k| f.may_contain(k)));
    let g = CuckooFilter::from_bytes(&f.to_bytes()).expect("decodes");
    assert_eq!((g.len(), g.capacity()), (f.len(), f.capacity()));
    for &k in keys.iter().chain(&random_hashes(10, 20_000)) {
        assert_eq!(f.may_contain(k), g.may_contain(k));
    }
    assert_eq!(f.to_bytes(), g.to_bytes());
}

#[test]
fn duplicates_are_counted() {
    let mut f = CuckooFilter::new(config(1024, 12, usize::MAX));
    let k = 0xDEAD_BEEF_1234_5678;
    for _ in 0..3 {
        f.insert(k);
    }
    assert_eq!(f.len(), 3);
    for _ in 0..3 {
        assert!(f.may_contain(k));
        assert!(f.remove(k));
    }
    assert!(!f.may_contain(k));
    assert!(!f.remove(k));

    // More copies than two buckets hold: each overflow must grow, not drop.
    let mut outcomes = Vec::new();
    for _ in 0..20 {
        outcomes.push(f.insert(k));
    }
    assert!(outcomes.contains(&InsertOutcome::Grew));
    for _ in 0..20 {
        assert!(f.may_contain(k));
        assert!(f.remove(k));
    }
    assert!(!f.may_contain(k));
    assert!(f.is_empty());
}

#[test]
fn memory_cap_switches_to_bypass() {
    // 16 slots = 32 bytes, then 64, then 128 would pass the 100-byte cap.
    let mut f = CuckooFilter::new(config(16, 12, 100));
    let keys = random_hashes(4, 1000);
    let mut inserted = Vec::new();
    let mut saw_bypass = false;
    for &k in &keys {
        inserted.push(k);
        if f.insert(k) == InsertOutcome::Bypassed {
            saw_bypass = true;
            break;
        }
        assert!(f.memory_bytes() <= 100);
    }
    assert!(saw_bypass, "never bypassed");
    assert!(f.is_bypassed());
    assert_eq!(f.insert(keys[999]), InsertOutcome::Bypassed);
    assert!(inserted.iter().all(|&k| f.may_contain(k)));
    assert!(random_hashes(5, 1000).iter().all(|&k| f.may_contain(k)));
    assert!(!f.remove(inserted[0]));
    assert!(f.may_contain(inserted[0]));
}

#[test]
fn first_table_over_cap_starts_bypassed() {
    let f = CuckooFilter::new(config(1024, 12, 16));
    assert!(f.is_bypassed());
    assert!(f.may_contain(1));
}

fn grown_filter() -> (CuckooFilter, Vec<u64>) {
    let mut f = CuckooFilter::new(config(256, 12, usize::MAX));
    let keys = random_hashes(6, 1500);
    for &k in &keys {
        f.insert(k);
    }
    for &k in &keys[..300] {
        f.remove(k);
    }
    assert!(f.table_count() >= 2, "test must cover several tables");
    (f, keys)
}

#[test]
fn serialization_round_trip_preserves_answers() {
    let (mut f, keys) = grown_filter();
    let bytes = f.to_bytes();
    let mut g = CuckooFilter::from_bytes(&bytes).expect("decodes");
    assert_eq!(g.len(), f.len());
    assert_eq!(g.capacity(), f.capacity());
    assert_eq!(g.memory_bytes(), f.memory_bytes());
    assert!(!g.is_bypassed());
    let probes = random_hashes(7, 50_000);
    for &k in keys.iter().chain(&probes) {
        assert_eq!(f.may_contain(k), g.may_contain(k));
    }
    // Same rng state: both continue identically.
    for &k in &random_hashes(8, 3000) {
        assert_eq!(f.insert(k), g.insert(k));
    }
    assert_eq!(f.to_bytes(), g.to_bytes());

    let mut b = CuckooFilter::new(config(16, 12, 40));
    while b.insert(b.len() as u64 * 0x9E37_79B9) != InsertOutcome::Bypassed {}
    let b2 = CuckooFilter::from_bytes(&b.to_bytes()).expect("decodes bypassed");
    assert!(b2.is_bypassed());
    assert!(b2.may_contain(12345));
}

#[test]
fn corrupt_or_truncated_input_is_rejected() {
    let (f, _) = grown_filter();
    let bytes = f.to_bytes();
    let positions = (0..HEADER_LEN + 16).chain((HEADER_LEN + 16..bytes.len()).step_by(97));
    for pos in positions.chain([bytes.len() - 1]) {
        let mut bad = bytes.clone();
        bad[pos] ^= 0x10;
        assert!(
            CuckooFilter::from_bytes(&bad).is_err(),
            "flip at {pos} accepted"
        );
    }
    let cuts = (0..HEADER_LEN + 16).chain((HEADER_LEN + 16..bytes.len()).step_by(101));
    for cut in cuts.chain([bytes.len() - 1]) {
        assert!(
            CuckooFilter::from_bytes(&bytes[..cut]).is_err(),
            "cut at {cut} accepted"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        CuckooFilter::from_bytes(&longer).unwrap_err(),
        FilterDecodeError::Truncated
    );
    let mut wrong_version = bytes.clone();
    wrong_version[4] = 99;
    assert_eq!(
        CuckooFilter::from_bytes(&wrong_version).unwrap_err(),
        FilterDecodeError::UnsupportedVersion(99)
    );
    let mut flipped_slot = bytes;
    let last_slot = flipped_slot.len() - CHECKSUM_LEN - 1;
    flipped_slot[last_slot] ^= 1;
    let err = CuckooFilter::from_bytes(&flipped_slot).unwrap_err();
    assert_eq!(err, FilterDecodeError::ChecksumMismatch);
    assert!(!err.to_string().is_empty());
}

#[test]
fn clear_resets_everything() {
    let (mut f, keys) = grown_filter();
    let initial = CuckooFilter::new(config(256, 12, usize::MAX));
    f.clear();
    assert!(f.is_empty());
    assert_eq!(f.capacity(), initial.capacity());
    assert_eq!(f.to_bytes(), initial.to_bytes());
    assert!(keys.iter().all(|&k| !f.may_contain(k)));

    let mut b = CuckooFilter::new(config(16, 12, 100));
    while b.insert(b.len() as u64 * 0x9E37_79B9) != InsertOutcome::Bypassed {}
    b.clear();
    assert!(!b.is_bypassed());
    assert!(!b.may_contain(0));
    assert_eq!(b.insert(7), InsertOutcome::Inserted);
}

#[test]
fn fingerprint_is_never_zero_and_fits_its_bits() {
    let f = CuckooFilter::new(config(16, 9, usize::MAX));
    assert_eq!(f.fingerprint(0), 1);
    assert_eq!(f.fingerprint(0x0000_0200_FFFF_FFFF), 1);
    assert_eq!(f.fingerprint(u64::MAX), 0x1FF);
    let clamped = CuckooFilter::new(config(16, 40, usize::MAX));
    assert_eq!(clamped.fingerprint(u64::MAX), u32::MAX);
    let wide = CuckooFilter::new(config(16, 24, usize::MAX));
    assert_eq!(wide.fingerprint(u64::MAX), 0xFF_FFFF);
    assert_eq!(wide.fingerprint(0x0100_0000_0000_0000), 1);
}
