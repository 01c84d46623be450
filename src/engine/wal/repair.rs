//! Offline integrity checks and repair of a WAL directory (`hypercache-tool check` and
//! `recover`): [`check`], [`repair`] and salvage.
//!
//! It must never run against a log a [`Wal`](super::Wal) has open (the tool holds the data
//! directory's lock), never drop a byte without reporting the file, offset and reason, and
//! never renumber records: the checkpoint LSN stored in the cold tier refers to these numbers,
//! so salvage fills every lost LSN with a hole instead. A refusal changes nothing.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::error::{corrupt, io_at, CorruptionKind, WalError};
use super::format::{hole_record, segment_name, HEADER_LEN};
use super::segment::{
    list_segments, order_problem, sync_dir, truncate_file, Event, Order, SegmentFile, Sequence,
    Walker,
};
use super::Lsn;

/// Salvage fills a gap with one 16-byte hole per lost LSN. A gap wider than this is not a few
/// lost records but a broken log, and filling it would write gigabytes.
const MAX_HOLES: u64 = 1 << 20;

#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Segment files, empty ones included.
    pub segments: u64,
    /// Valid records (holes included).
    pub records: u64,
    /// Total size of the segment files.
    pub bytes: u64,
    pub first_lsn: Option<Lsn>,
    pub last_lsn: Option<Lsn>,
    /// A torn last record: open truncates it at this offset.
    pub torn_tail: Option<(PathBuf, u64)>,
    /// Everything else; any entry makes open refuse.
    pub problems: Vec<(PathBuf, u64, String)>,
}

/// Verifies every record (CRC, LSN order, segment names) and reports all damage instead of
/// stopping at the first. Only I/O errors (a missing directory included) fail it.
pub fn check(dir: &Path) -> Result<CheckReport, WalError> {
    let listing = list_segments(dir)?;
    let mut report = CheckReport {
        segments: listing.segments.len() as u64,
        bytes: listing.segments.iter().map(|s| s.len).sum(),
        ..CheckReport::default()
    };
    let mut walker = Walker::new(listing.live());
    report.problems.extend(
        listing
            .bad_names
            .into_iter()
            .map(|(path, kind)| (path, 0, kind.to_string())),
    );
    let mut seq = Sequence::default();
    // The latest damage: the LSNs it cost are added to its entry, not reported again as a gap.
    let mut last_damage: Option<usize> = None;
    while let Some(event) = walker.next_event()? {
        match event {
            Event::Record {
                seg, offset, lsn, ..
            } => {
                if let Some(kind) = seg.name_problem(offset, lsn) {
                    report
                        .problems
                        .push((seg.path.clone(), offset, kind.to_string()));
                }
                let after_damage = last_damage.and_then(|i| report.problems.get_mut(i));
                match (seq.classify(lsn), after_damage) {
                    (Order::Gap { first, last }, Some(damage)) => {
                        damage.2.push_str(&format!("; LSNs {first}..={last} lost"));
                    }
                    (order, _) => {
                        if let Some(kind) = order_problem(order, lsn) {
                            report
                                .problems
                                .push((seg.path.clone(), offset, kind.to_string()));
                        }
                    }
                }
                last_damage = None;
                seq.accept(lsn);
                report.records += 1;
                report.first_lsn.get_or_insert(lsn);
                report.last_lsn = Some(lsn);
            }
            Event::Damage {
                seg,
                offset,
                tail: true,
                ..
            } => {
                report.torn_tail = Some((seg.path.clone(), offset));
            }
            Event::Damage {
                seg,
                offset,
                damage,
                resumes_at,
                ..
            } => {
                last_damage = Some(report.problems.len());
                let kind = seg.damaged(offset, damage, resumes_at);
                report
                    .problems
                    .push((seg.path.clone(), offset, kind.to_string()));
            }
        }
    }
    Ok(report)
}

/// Offline repair (`hypercache-tool recover`). Without `salvage` it truncates a torn tail and
/// refuses (`Corrupt`, changing nothing) if there is any other damage. With `salvage` it also
/// drops damaged stretches, out-of-order records and badly named files (moved aside as
/// `.bad`), fills every lost LSN with a hole so numbering stays continuous, and rewrites the
/// affected segments (via a fsynced temporary file and a rename). Returns every drop with
/// file, offset and reason; the log then opens.
pub fn repair(dir: &Path, salvage: bool) -> Result<Vec<(PathBuf, u64, String)>, WalError> {
    if salvage {
        let dropped = salvage_dir(dir)?;
        if let Some((path, offset, problem)) = check(dir)?.problems.into_iter().next() {
            return Err(corrupt(
                &path,
                offset,
                CorruptionKind::StillDamaged { problem },
            ));
        }
        return Ok(dropped);
    }
    let report = check(dir)?;
    if let Some((path, offset, problem)) = report.problems.into_iter().next() {
        return Err(corrupt(
            &path,
            offset,
            CorruptionKind::NeedsSalvage { problem },
        ));
    }
    let mut dropped = Vec::new();
    if let Some((path, offset)) = report.torn_tail {
        let len = fs::metadata(&path).map_err(io_at(&path))?.len();
        truncate_file(&path, offset)?;
        let reason = format!(
            "torn tail: {} bytes of an incomplete or CRC-failing last record truncated",
            len.saturating_sub(offset)
        );
        tracing::warn!(path = %path.display(), offset, reason = %reason, "WAL repaired");
        dropped.push((path, offset, reason));
    }
    Ok(dropped)
}

/// What salvage keeps of one segment.
struct Plan {
    seg: SegmentFile,
    pieces: Vec<Piece>,
    /// First LSN of the kept content: the rewritten segment's name.
    first_lsn: Option<Lsn>,
    changed: bool,
}

enum Piece {
    /// Bytes `start..end` of the original file (whole records).
    Copy {
        start: u64,
        end: u64,
    },
    Holes {
        first: Lsn,
        last: Lsn,
    },
}

impl Plan {
    fn keep(&mut self, start: u64, end: u64, lsn: Lsn) {
        self.first_lsn.get_or_insert(lsn);
        if let Some(Piece::Copy { end: run_end, .. }) = self.pieces.last_mut() {
            if *run_end == start {
                *run_end = end;
                return;
            }
        }
        self.pieces.push(Piece::Copy { start, end });
    }
}

fn salvage_dir(dir: &Path) -> Result<Vec<(PathBuf, u64, String)>, WalError> {
    let listing = list_segments(dir)?;
    let mut walker = Walker::new(listing.live());
    let mut dropped: Vec<(PathBuf, u64, String)> = Vec::new();
    let mut plans: Vec<Plan> = Vec::new();
    let mut seq = Sequence::default();
    let mut last_damage: Option<usize> = None;

    // Plan everything first, so a refusal (below) changes nothing.
    while let Some(event) = walker.next_event()? {
        let seg = match &event {
            Event::Record { seg, .. } | Event::Damage { seg, .. } => *seg,
        };
        if plans.last().is_none_or(|p| p.seg.path != seg.path) {
            plans.push(Plan {
                seg: seg.clone(),
                pieces: Vec::new(),
                first_lsn: None,
                changed: false,
            });
        }
        let Some(plan) = plans.last_mut() else {
            continue;
        };
        match event {
            Event::Record {
                seg,
                offset,
                lsn,
                payload,
            } => {
                if let Some(kind) = seg.name_problem(offset, lsn) {
                    tracing::warn!(
                        path = %seg.path.display(),
                        reason = %kind,
                        "salvage renames the segment"
                    );
                    plan.changed = true;
                }
                match seq.classify(lsn) {
                    Order::Expected => {}
                    Order::Gap { first, last } => {
                        if last - first >= MAX_HOLES {
                            let kind = CorruptionKind::GapTooWide { first, last };
                            return Err(corrupt(&seg.path, offset, kind));
                        }
                        let note = format!(
                            "LSNs {first}..={last} lost; empty hole records keep the numbering"
                        );
                        match last_damage.and_then(|i| dropped.get_mut(i)) {
                            Some(damage) => {
                                damage.2.push_str("; ");
                                damage.2.push_str(&note);
                            }
                            None => dropped.push((
                                seg.path.clone(),
                                offset,
                                format!("missing records before LSN {lsn}: {note}"),
                            )),
                        }
                        plan.first_lsn.get_or_insert(first);
                        plan.pieces.push(Piece::Holes { first, last });
                        plan.changed = true;
                    }
                    Order::Behind { expected } => {
                        let reason = format!(
                            "LSN {lsn} is out of order (expected {expected}); record dropped"
                        );
                        dropped.push((seg.path.clone(), offset, reason));
                        plan.changed = true;
                        last_damage = None;
                        continue;
                    }
                }
                last_damage = None;
                seq.accept(lsn);
                plan.keep(offset, offset + (HEADER_LEN + payload.len()) as u64, lsn);
            }
            Event::Damage {
                seg,
                offset,
                damage,
                resumes_at,
                tail,
            } => {
                plan.changed = true;
                if tail {
                    let reason =
                        format!("torn tail: {damage}; {} bytes truncated", seg.len - offset);
                    dropped.push((seg.path.clone(), offset, reason));
                } else {
                    last_damage = Some(dropped.len());
                    let kind = seg.damaged(offset, damage, resumes_at);
                    dropped.push((seg.path.clone(), offset, format!("{kind}; dropped")));
                }
            }
        }
    }

    // A rewritten segment is renamed after its first kept LSN. Replacing an empty segment of
    // that name is harmless; any other file of that name (say, a segment whose duplicate
    // records are being dropped) must not be clobbered: refuse, and let an operator look.
    for plan in plans.iter().filter(|p| p.changed) {
        let Some(first) = plan.first_lsn else {
            continue;
        };
        let target = dir.join(segment_name(first));
        let empty_segment = listing
            .segments
            .iter()
            .any(|s| s.path == target && s.len == 0);
        if target != plan.seg.path && target.exists() && !empty_segment {
            let kind = CorruptionKind::RenameTargetExists { target };
            return Err(corrupt(&plan.seg.path, 0, kind));
        }
    }

    for (path, kind) in listing.bad_names {
        let mut aside = path.clone().into_os_string();
        aside.push(".bad");
        let aside = PathBuf::from(aside);
        fs::rename(&path, &aside).map_err(io_at(&path))?;
        dropped.push((
            path,
            0,
            format!(
                "{kind}; moved aside to {} and not replayed",
                aside.display()
            ),
        ));
    }

    let last_plan = plans.len().saturating_sub(1);
    for (index, plan) in plans.iter().enumerate().filter(|(_, p)| p.changed) {
        execute_plan(dir, plan, index == last_plan, seq.next)?;
    }
    sync_dir(dir).map_err(io_at(dir))?;
    for (path, offset, reason) in &dropped {
        tracing::warn!(
            path = %path.display(),
            offset,
            reason = %reason,
            "WAL salvage dropped data"
        );
    }
    Ok(dropped)
}

/// Rewrites one segment as planned. `next_lsn` is where the log continues: an emptied last
/// segment leaves an empty file of that name so LSNs never restart below it.
fn execute_plan(
    dir: &Path,
    plan: &Plan,
    is_last: bool,
    next_lsn: Option<Lsn>,
) -> Result<(), WalError> {
    let original = &plan.seg.path;
    let Some(first_lsn) = plan.first_lsn else {
        fs::remove_file(original).map_err(io_at(original))?;
        if is_last {
            let keep = next_lsn.unwrap_or(plan.seg.name_lsn);
            let path = dir.join(segment_name(keep));
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .map_err(io_at(&path))?;
        }
        return Ok(());
    };
    // The common torn-tail-only case needs no copy.
    if let [Piece::Copy { start: 0, end }] = plan.pieces.as_slice() {
        if first_lsn == plan.seg.name_lsn {
            return truncate_file(original, *end);
        }
    }
    let target = dir.join(segment_name(first_lsn));
    let mut tmp = target.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut source = File::open(original).map_err(io_at(original))?;
    let out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_at(&tmp))?;
    let mut out = BufWriter::new(out);
    for piece in &plan.pieces {
        match *piece {
            Piece::Copy { start, end } => {
                source
                    .seek(SeekFrom::Start(start))
                    .map_err(io_at(original))?;
                let copied = io::copy(&mut (&mut source).take(end - start), &mut out)
                    .map_err(io_at(&tmp))?;
                if copied != end - start {
                    let err = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "segment shrank during salvage",
                    );
                    return Err(WalError::Io {
                        path: original.clone(),
                        source: err,
                    });
                }
            }
            Piece::Holes { first, last } => {
                for lsn in first..=last {
                    out.write_all(&hole_record(lsn)).map_err(io_at(&tmp))?;
                }
            }
        }
    }
    let out = out.into_inner().map_err(|e| WalError::Io {
        path: tmp.clone(),
        source: e.into_error(),
    })?;
    out.sync_all().map_err(io_at(&tmp))?;
    fs::rename(&tmp, &target).map_err(io_at(&target))?;
    sync_dir(dir).map_err(io_at(dir))?;
    if target != *original {
        fs::remove_file(original).map_err(io_at(original))?;
    }
    Ok(())
}
