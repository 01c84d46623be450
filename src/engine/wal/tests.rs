//! The WAL's tests: the log's own API end to end (append, durability, open's checks, replay,
//! check and repair) and the `records_after` reader, against real files in temp dirs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::format::{hole_record, push_record, segment_name, HEADER_LEN};
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
fn expect_corrupt(result: Result<Wal, WalError>) -> (PathBuf, u64, CorruptionKind) {
    let Err(err) = result else {
        panic!("expected Corrupt, the log opened")
    };
    let text = err.to_string();
    let WalError::Corrupt { path, offset, kind } = err else {
        panic!("expected Corrupt, got {text}")
    };
    assert!(text.contains("hypercache-tool recover --dir"), "{text}");
    assert!(
        text.contains(&path.display().to_string()) && text.contains(&format!("offset {offset}")),
        "{text}"
    );
    (path, offset, kind)
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
    let wal = Arc::new(Wal::open(tmp.path(), opts(64 << 20, SyncPolicy::Always)).expect("open"));
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
        let wal = Wal::open(&dir, opts(1 << 20, SyncPolicy::No)).expect("open after a torn write");
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
    let (path, offset, kind) = expect_corrupt(Wal::open(tmp.path(), options.clone()));
    assert_eq!((path, offset), (files[2].clone(), 0));
    let reason = kind.to_string();
    assert!(reason.contains("3..=4"), "{reason}");
    assert_eq!(
        kind,
        CorruptionKind::LsnGap {
            first: 3,
            last: 4,
            found: 5
        }
    );
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
    let (path, offset, kind) = expect_corrupt(Wal::open(&misnamed, options.clone()));
    assert_eq!((path, offset), (misnamed.join(segment_name(4)), 0));
    let reason = kind.to_string();
    assert!(reason.contains("name"), "{reason}");
    assert_eq!(
        kind,
        CorruptionKind::NameMismatch {
            name_lsn: 4,
            found: 3
        }
    );

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
fn a_failed_write_is_retried_until_the_disk_takes_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let wal = Wal::open(&dir, opts(1, SyncPolicy::Always)).expect("open");
    let first = wal.append(b"fits in the first segment").expect("append");
    wal.wait_durable(first).expect("durable");
    assert!(wal.failure().is_none());
    // The next record needs a new segment, which cannot be created while the directory is
    // gone: a real failure of the file system call, as on a full disk.
    fs::remove_dir_all(&dir).expect("remove the directory");
    let second = wal.append(b"needs a new segment").expect("buffered");
    assert!(
        matches!(wal.wait_durable(second), Err(WalError::Io { .. })),
        "a wait for a record the disk refused fails at once"
    );
    assert!(matches!(wal.failure(), Some(WalError::Io { .. })));
    let third = wal
        .append(b"taken while writes fail")
        .expect("records are still taken while the writer retries");
    assert!(matches!(wal.sync(), Err(WalError::Io { .. })));
    assert!(
        wal.wait_durable(first).is_ok(),
        "what was durable stays durable"
    );

    // The disk recovers: the writer's next retry writes both records, in order.
    fs::create_dir_all(&dir).expect("recreate the directory");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while wal.failure().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "still failing 30 s after the directory came back"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    wal.wait_durable(third)
        .expect("durable once the disk takes writes");
    let fourth = wal.append(b"after recovery").expect("append");
    wal.close().expect("a clean close");
    assert_eq!(
        collect(&dir, 0),
        vec![
            (second, b"needs a new segment".to_vec()),
            (third, b"taken while writes fail".to_vec()),
            (fourth, b"after recovery".to_vec()),
        ]
    );
}

#[test]
fn a_write_failing_at_close_is_an_error_not_a_hang() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let wal = Wal::open(&dir, opts(1, SyncPolicy::Always)).expect("open");
    let first = wal.append(b"first").expect("append");
    wal.wait_durable(first).expect("durable");
    fs::remove_dir_all(&dir).expect("remove the directory");
    wal.append(b"never written").expect("buffered");
    assert!(matches!(wal.close(), Err(WalError::Io { .. })));
    assert!(wal.append(b"later").is_err());
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

// ---- records_after: the reader replay and replication share ------------------------------

fn read_all(dir: &Path, after: Lsn) -> Vec<Record> {
    records_after(dir, after)
        .expect("list")
        .collect::<Result<_, _>>()
        .expect("no damage")
}

fn records(lsns: std::ops::RangeInclusive<Lsn>) -> Vec<Record> {
    lsns.map(|lsn| Record {
        lsn,
        payload: payload(lsn),
    })
    .collect()
}

#[test]
fn records_after_crosses_segments_and_resumes_from_its_last_lsn() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    // Segments: [1,2] [3,4] [5,6] [7,8] [9].
    let options = opts(2 * record_len(1), SyncPolicy::No);
    write_log(dir, 9, options.clone());
    for after in [0, 1, 3, 4, 8, 9, 20] {
        assert_eq!(
            read_all(dir, after),
            records(after + 1..=9),
            "after {after}"
        );
    }
    let mut reader = records_after(dir, 3).expect("list");
    let first = reader.next_ref().expect("read").expect("a record");
    assert_eq!(
        (first.lsn, first.payload, first.path, first.offset),
        (
            4,
            payload(4).as_slice(),
            dir.join(segment_name(3)).as_path(),
            record_len(3)
        )
    );
    assert_eq!(reader.by_ref().count(), 5);
    assert_eq!((reader.last_lsn(), reader.torn_tail()), (Some(9), None));
    assert!(reader.next().is_none(), "it stays ended");

    // A follower starts again from the last LSN it read and gets only what is new.
    let wal = Wal::open(dir, options).expect("reopen");
    for i in 10..=12 {
        assert_eq!(wal.append(&payload(i)).expect("append"), i);
    }
    wal.close().expect("close");
    assert_eq!(read_all(dir, 9), records(10..=12));

    // Segments wholly at or before `after` are not read, not even to check them.
    let first_segment = dir.join(segment_name(1));
    let len = fs::metadata(&first_segment).expect("meta").len() as usize;
    fs::write(&first_segment, vec![0xa5; len]).expect("overwrite");
    assert_eq!(read_all(dir, 2), records(3..=12));
    assert!(matches!(
        records_after(dir, 0).expect("list").next(),
        Some(Err(WalError::Corrupt { offset: 0, .. }))
    ));
}

#[test]
fn records_after_skips_holes_but_counts_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut bytes = Vec::new();
    push_record(&mut bytes, 1, 1, b"a");
    bytes.extend_from_slice(&hole_record(2));
    bytes.extend_from_slice(&hole_record(3));
    push_record(&mut bytes, 4, 1, b"d");
    bytes.extend_from_slice(&hole_record(5));
    fs::write(tmp.path().join(segment_name(1)), &bytes).expect("write");

    let mut reader = records_after(tmp.path(), 0).expect("list");
    let lsns: Vec<Lsn> = reader.by_ref().map(|r| r.expect("record").lsn).collect();
    assert_eq!(lsns, vec![1, 4]);
    assert_eq!(reader.last_lsn(), Some(5), "a hole is the last record read");
    let mut reader = records_after(tmp.path(), 1).expect("list");
    assert_eq!(
        reader.next().map(|r| r.expect("record")),
        Some(Record {
            lsn: 4,
            payload: b"d".to_vec()
        })
    );
    assert!(reader.next().is_none());
    let stats = replay(tmp.path(), 0, |_, _| Ok(())).expect("replay");
    assert_eq!((stats.records, stats.bytes), (2, 2));
}

#[test]
fn a_torn_tail_ends_records_after_without_an_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_log(tmp.path(), 3, opts(1 << 20, SyncPolicy::No));
    let [segment] = segment_files(tmp.path()).try_into().expect("one segment");
    let last_start = record_len(1) + record_len(2);
    let bytes = fs::read(&segment).expect("read");
    // The header and two payload bytes of record 3 reached the file.
    fs::write(&segment, &bytes[..(last_start as usize + HEADER_LEN + 2)]).expect("cut");

    let mut reader = records_after(tmp.path(), 0).expect("list");
    let read: Vec<Record> = reader.by_ref().collect::<Result<_, _>>().expect("no error");
    assert_eq!(read, records(1..=2));
    assert_eq!(
        reader.torn_tail(),
        Some(&TornTail {
            path: segment.clone(),
            offset: last_start,
            damage: RecordDamage::IncompletePayload {
                claimed: payload(3).len() as u32,
                available: 2
            },
        })
    );
    assert_eq!(reader.last_lsn(), Some(2));
}

#[test]
fn mid_log_damage_is_an_error_from_records_after() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data").join("wal");
    write_log(&dir, 5, opts(1 << 20, SyncPolicy::No));
    let [segment] = segment_files(&dir).try_into().expect("one segment");
    let mut bytes = fs::read(&segment).expect("read");
    let third = record_len(1) + record_len(2);
    bytes[(third + HEADER_LEN as u64 + 3) as usize] ^= 0x10;
    fs::write(&segment, &bytes).expect("write");

    let mut reader = records_after(&dir, 0).expect("list");
    assert_eq!(
        reader
            .by_ref()
            .take(2)
            .collect::<Result<Vec<_>, _>>()
            .expect("before the damage"),
        records(1..=2)
    );
    let err = match reader.next() {
        Some(Err(err)) => err,
        other => panic!("expected the damage, got {other:?}"),
    };
    let text = err.to_string();
    let WalError::Corrupt { path, offset, kind } = err else {
        panic!("expected Corrupt, got {text}")
    };
    assert_eq!((path, offset), (segment, third));
    assert!(
        matches!(
            kind,
            CorruptionKind::Damaged {
                damage: RecordDamage::CrcMismatch { .. },
                resumes_at: Some(at),
                skipped,
            } if at == third + record_len(3) && skipped == record_len(3)
        ),
        "{kind:?}"
    );
    assert!(text.contains("CRC mismatch") && text.contains("valid records resume at offset"));
    assert!(text.contains("hypercache-tool recover --dir"), "{text}");
    assert!(reader.next().is_none(), "nothing after an error");
}

#[test]
fn records_after_while_a_wal_appends_stops_at_the_last_complete_record() {
    const RECORDS: u64 = 2000;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    // Eight records per segment, so readers meet many rollovers.
    let wal = Arc::new(Wal::open(&dir, opts(8 * record_len(1), SyncPolicy::No)).expect("open"));
    // The highest LSN known to be in the OS (sync returned for it).
    let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let appender = {
        let wal = Arc::clone(&wal);
        let written = Arc::clone(&written);
        std::thread::spawn(move || {
            for i in 1..=RECORDS {
                assert_eq!(wal.append(&payload(i)).expect("append"), i);
                if i % 50 == 0 {
                    let synced = wal.sync().expect("sync");
                    written.store(synced, std::sync::atomic::Ordering::SeqCst);
                }
            }
        })
    };
    let mut seen = 0;
    let mut passes = 0;
    loop {
        let finished = appender.is_finished();
        let floor = written.load(std::sync::atomic::Ordering::SeqCst);
        let read = read_all(&dir, 0);
        let count = read.len() as u64;
        assert_eq!(read, records(1..=count), "pass {passes}");
        assert!(
            count >= floor.max(seen),
            "pass {passes}: {count} < {floor} or {seen}"
        );
        seen = count;
        passes += 1;
        if finished {
            break;
        }
    }
    appender.join().expect("appender");
    wal.close().expect("close");
    assert_eq!(read_all(&dir, 0), records(1..=RECORDS));
    println!("{passes} passes while appending");
}

#[test]
fn a_segment_listed_mid_write_is_read_to_its_length_once_the_next_one_exists() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Segments: [1,2] [3,4].
    write_log(tmp.path(), 4, opts(2 * record_len(1), SyncPolicy::No));
    let first = tmp.path().join(segment_name(1));
    let whole = fs::read(&first).expect("read");
    let mid_record_2 = (record_len(1) + 5) as usize;
    // What a listing sees while the writer is still writing record 2 and has rolled over by
    // the time the listing reaches the next segment.
    fs::write(&first, &whole[..mid_record_2]).expect("cut");
    let listing = super::segment::list_segments(tmp.path()).expect("list");
    let mut stale = RecordsAfter::over(listing.live(), 0);
    assert!(
        matches!(stale.next(), Some(Ok(Record { lsn: 1, .. }))),
        "record 1 is whole"
    );
    fs::write(&first, &whole).expect("the write completes");
    let read: Vec<Record> = stale.collect::<Result<_, _>>().expect("no damage");
    assert_eq!(read, records(2..=4));

    // A segment that stays short is damage, as before.
    fs::write(&first, &whole[..mid_record_2]).expect("cut");
    let listing = super::segment::list_segments(tmp.path()).expect("list");
    let errors = RecordsAfter::over(listing.live(), 0)
        .filter(Result::is_err)
        .count();
    assert_eq!(errors, 1);
}
