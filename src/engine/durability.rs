//! Durability (DESIGN.md §4, I5): the engine's side of the write-ahead log, checkpoints, and
//! recovery at startup.
//!
//! - Every engine transaction's mutations go to the WAL as one record while its shards are
//!   held ([`Engine::append_to_wal`], called when a `Txn` ends).
//! - A checkpoint notes the WAL position L, writes every dirty hot entry to the cold tier,
//!   makes the WAL durable up to L, writes the meta record "checkpoint at L" and syncs the
//!   cold tier, then deletes WAL segments wholly at or before L and optionally keeps a RocksDB
//!   checkpoint directory. Serving continues throughout: one shard is held at a time.
//! - Recovery opens the cold tier, reads the checkpoint LSN, loads the filter and key counts
//!   that the last clean shutdown saved (or rebuilds them from the cold tier after a crash),
//!   then replays the WAL records after L through the engine's own write path.
//!
//! Why the filter and counts are only trusted after a clean stop: after a crash the cold tier
//! also holds demotions made after the last checkpoint, which a saved filter does not cover
//! (I4). A clean shutdown's final checkpoint leaves nothing after it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::cold::{self, ColdOp, ColdRead, SharedClock, Space};
use super::entry::{decode_cold_value, is_expired, ColdValue};
use super::filter::CuckooFilter;
use super::hot::{ColdCopy, HotEntry};
use super::keys::{self, META_DB};
use super::mutation::{self, Mutation, MutationBatch};
use super::resolve::Removal;
use super::txn::{Guards, Txn};
use super::wal::{self, Lsn, Wal, WalOptions};
use super::{seconds, Access, Engine, EngineError, EngineResult, LogError};
use crate::config::{EngineConfig, SyncPolicy};

/// Durability settings (the configuration's `persistence` section, plus what the server knows
/// about the previous run).
#[derive(Clone, Debug)]
pub struct Durability {
    /// Engine WAL on (`appendonly yes`).
    pub wal: bool,
    pub sync: SyncPolicy,
    pub wal_segment_bytes: u64,
    /// Time between periodic checkpoints; zero turns them off.
    pub checkpoint_interval: Duration,
    /// WAL size that starts a checkpoint early; zero turns that off.
    pub checkpoint_wal_bytes: u64,
    /// RocksDB checkpoint directories kept under `<dir>/checkpoints/` (0 = none).
    pub retain_checkpoints: usize,
    /// The previous process shut down cleanly, so the filter and key counts its last
    /// checkpoint saved describe the cold tier exactly.
    pub clean_start: bool,
}

impl Default for Durability {
    fn default() -> Self {
        Durability {
            wal: false,
            sync: SyncPolicy::Everysec,
            wal_segment_bytes: 64 << 20,
            checkpoint_interval: Duration::from_secs(300),
            checkpoint_wal_bytes: 256 << 20,
            retain_checkpoints: 0,
            clean_start: false,
        }
    }
}

/// The last completed checkpoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CheckpointInfo {
    /// Every WAL record up to here is in the cold tier.
    pub lsn: Lsn,
    /// Unix milliseconds when it completed (0 = none since this directory was created).
    pub unix_ms: u64,
    /// Dirty hot entries it wrote.
    pub entries_written: usize,
    pub seconds: f64,
    /// Where its RocksDB copy was kept, if `retain_checkpoints` asked for one.
    pub retained: Option<PathBuf>,
}

/// What startup did, for the log and INFO persistence.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StartupReport {
    /// The filter and key counts were loaded as saved by a clean shutdown (else rebuilt by
    /// reading the cold tier).
    pub loaded_saved_state: bool,
    pub checkpoint_lsn: Lsn,
    pub replayed_records: u64,
    pub replay_seconds: f64,
    pub seconds: f64,
}

/// Figures for INFO `# Persistence`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PersistenceReport {
    pub wal_enabled: bool,
    pub sync: Option<SyncPolicy>,
    pub wal_last_lsn: Lsn,
    pub wal_durable_lsn: Lsn,
    pub wal_disk_bytes: u64,
    pub wal_fsyncs: u64,
    pub wal_failure: Option<String>,
    pub checkpoint_in_progress: bool,
    pub checkpoints_completed: u64,
    pub last_checkpoint: CheckpointInfo,
    pub startup: StartupReport,
}

/// Why a checkpoint runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointReason {
    /// Periodic (time or WAL size).
    Periodic,
    /// SAVE / BGSAVE.
    Requested,
    /// The last thing before a clean exit: also saves the filter and key counts.
    Shutdown,
}

/// The engine's durability state.
pub(super) struct State {
    settings: Durability,
    /// Held for a whole checkpoint: one at a time.
    running: Mutex<()>,
    in_progress: AtomicBool,
    last: Mutex<CheckpointInfo>,
    completed: Mutex<u64>,
    startup: Mutex<StartupReport>,
    /// The first WAL failure; writes are refused while it is set (Redis's MISCONF).
    failure: Mutex<Option<String>>,
    failed: AtomicBool,
}

impl State {
    pub(super) fn new(settings: Durability) -> Self {
        State {
            settings,
            running: Mutex::new(()),
            in_progress: AtomicBool::new(false),
            last: Mutex::new(CheckpointInfo::default()),
            completed: Mutex::new(0),
            startup: Mutex::new(StartupReport::default()),
            failure: Mutex::new(None),
            failed: AtomicBool::new(false),
        }
    }
}

/// Meta record: the last checkpoint. `[version][wal on][lsn u64][unix ms u64]`, little-endian.
const CHECKPOINT_META: &[u8] = b"checkpoint";
/// Meta record written by a clean shutdown's checkpoint: `[version][lsn u64][databases u16]
/// [key count u64 per database][filter bytes]`.
const SAVED_STATE_META: &[u8] = b"saved-state";
const META_VERSION: u8 = 1;

/// The meta record of the last checkpoint, as stored in the cold tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointRecord {
    /// The WAL was on when it was taken.
    pub wal_on: bool,
    pub lsn: Lsn,
    pub unix_ms: u64,
}

/// Reads the checkpoint meta record of a cold tier (None: no checkpoint yet).
pub fn read_checkpoint_record(cold: &dyn ColdRead) -> EngineResult<Option<CheckpointRecord>> {
    let Some(raw) = cold.get(&meta_key(CHECKPOINT_META))? else {
        return Ok(None);
    };
    decode_checkpoint(&raw)
        .map(Some)
        .ok_or(EngineError::Cold(cold::ColdError::DamagedCheckpointRecord))
}

/// The filter and per-database key counts a clean shutdown saved, with the LSN of the
/// checkpoint they belong to (None: none saved, or unreadable).
pub fn read_saved_state(
    cold: &dyn ColdRead,
) -> EngineResult<Option<(Lsn, Vec<u64>, CuckooFilter)>> {
    let Some(raw) = cold.get(&meta_key(SAVED_STATE_META))? else {
        return Ok(None);
    };
    Ok(decode_saved_state(&raw))
}

fn decode_saved_state(raw: &[u8]) -> Option<(Lsn, Vec<u64>, CuckooFilter)> {
    if raw.len() < 11 || raw[0] != META_VERSION {
        return None;
    }
    let lsn = u64::from_le_bytes(raw[1..9].try_into().ok()?);
    let databases = usize::from(u16::from_le_bytes(raw[9..11].try_into().ok()?));
    let counts_end = 11 + 8 * databases;
    let counts = raw
        .get(11..counts_end)?
        .chunks_exact(8)
        .map(|chunk| u64::from_le_bytes(chunk.try_into().expect("8 bytes")))
        .collect();
    let filter = CuckooFilter::from_bytes(&raw[counts_end..]).ok()?;
    Some((lsn, counts, filter))
}

fn meta_key(name: &[u8]) -> Vec<u8> {
    keys::encode_key(META_DB, name)
}

fn encode_checkpoint(record: &CheckpointRecord) -> Vec<u8> {
    let mut out = vec![META_VERSION, u8::from(record.wal_on)];
    out.extend_from_slice(&record.lsn.to_le_bytes());
    out.extend_from_slice(&record.unix_ms.to_le_bytes());
    out
}

fn decode_checkpoint(bytes: &[u8]) -> Option<CheckpointRecord> {
    if bytes.len() != 18 || bytes[0] != META_VERSION {
        return None;
    }
    Some(CheckpointRecord {
        wal_on: bytes[1] != 0,
        lsn: u64::from_le_bytes(bytes[2..10].try_into().ok()?),
        unix_ms: u64::from_le_bytes(bytes[10..18].try_into().ok()?),
    })
}

/// Records replayed between two progress lines in the log.
const REPLAY_PROGRESS_EVERY: u64 = 100_000;

impl Engine {
    /// Opens the engine with durability: the cold tier, then the saved filter and counts (or
    /// a rebuild), then, with the WAL on, replay of the log after the last checkpoint. Returns
    /// once the engine is ready to serve, with the WAL attached.
    pub fn open_durable(config: EngineConfig, durability: Durability) -> EngineResult<Engine> {
        Self::open_durable_with_clock(config, durability, Arc::new(SharedClock::default()))
    }

    /// As [`Engine::open_durable`], reading time from `clock` (tests).
    pub fn open_durable_with_clock(
        config: EngineConfig,
        durability: Durability,
        clock: Arc<SharedClock>,
    ) -> EngineResult<Engine> {
        let started = Instant::now();
        let cold = Self::open_cold_tier(&config, &clock)?;
        let engine = Self::assemble(config, cold, clock, durability)?;
        let checkpoint = engine.read_checkpoint_record()?;
        let checkpoint_lsn = checkpoint.as_ref().map_or(0, |c| c.lsn);
        let loaded_saved_state = engine.load_saved_state(checkpoint.as_ref())?;
        if !loaded_saved_state {
            let scan = Instant::now();
            engine.rebuild_from_cold()?;
            tracing::info!(
                seconds = scan.elapsed().as_secs_f64(),
                "rebuilt the filter and key counts from the cold tier (no clean-shutdown state)"
            );
        }
        engine.recompute_shard_limit();
        if let Some(checkpoint) = &checkpoint {
            *engine.durability.last.lock() = CheckpointInfo {
                lsn: checkpoint.lsn,
                unix_ms: checkpoint.unix_ms,
                ..CheckpointInfo::default()
            };
        }
        let mut report = StartupReport {
            loaded_saved_state,
            checkpoint_lsn,
            ..StartupReport::default()
        };
        if engine.durability.settings.wal {
            let (wal, replayed, replay_seconds) = engine.recover_wal(checkpoint.as_ref())?;
            report.replayed_records = replayed;
            report.replay_seconds = replay_seconds;
            let _ = engine.wal.set(Arc::new(wal));
        }
        report.seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            seconds = report.seconds,
            checkpoint_lsn,
            replayed_records = report.replayed_records,
            loaded_saved_state,
            "recovery complete"
        );
        *engine.durability.startup.lock() = report;
        Ok(engine)
    }

    fn read_checkpoint_record(&self) -> EngineResult<Option<CheckpointRecord>> {
        // Reading the record fails only in the cold tier.
        read_checkpoint_record(&*self.cold).map_err(|err| match err {
            EngineError::Cold(cause) => EngineError::Cold(cold::ColdError::NeedsCheck {
                cause: Box::new(cause),
                dir: self.config.dir.clone(),
            }),
            other => other,
        })
    }

    /// Loads the filter and key counts a clean shutdown saved, if this start follows one and
    /// they belong to the last checkpoint. The saved copy is deleted once loaded: a crash
    /// later must not find it and trust it.
    fn load_saved_state(&self, checkpoint: Option<&CheckpointRecord>) -> EngineResult<bool> {
        let key = meta_key(SAVED_STATE_META);
        let Some(raw) = self.cold.get(&key)? else {
            return Ok(false);
        };
        self.cold.write(vec![ColdOp::Delete {
            space: Space::Data,
            key,
        }])?;
        if !self.durability.settings.clean_start {
            return Ok(false);
        }
        let usable =
            checkpoint.and_then(|checkpoint| self.decode_saved_state(&raw, checkpoint.lsn));
        let Some((counts, mut filter)) = usable else {
            tracing::warn!("the saved filter and key counts do not match the data; rebuilding");
            return Ok(false);
        };
        let (fresh_bypassed, fresh_room, fresh_bits) = {
            let fresh = self.filter.read();
            (
                fresh.is_bypassed(),
                fresh.max_bytes(),
                fresh.fingerprint_bits(),
            )
        };
        if !fresh_bypassed && filter.is_bypassed() && fresh_room > filter.max_bytes() {
            // Saved bypassed with less room than this start gives (`storage.filter: false`
            // then, or a smaller maxmemory): a filter that fits now must learn every cold
            // key. With the same room it would only outgrow it again: keep it bypassed
            // rather than scan every key (6 s at 20M keys).
            tracing::info!("the saved filter was bypassed; rebuilding it from the cold tier");
            return Ok(false);
        }
        if !fresh_bypassed && filter.fingerprint_bits() != fresh_bits {
            // `filter_fingerprint_bits` changed: the saved fingerprints cannot be widened or
            // narrowed without their keys.
            tracing::info!(
                saved = filter.fingerprint_bits(),
                configured = fresh_bits,
                "filter fingerprint bits changed; rebuilding the filter from the cold tier"
            );
            return Ok(false);
        }
        if !fresh_bypassed && filter.memory_bytes() > fresh_room {
            // Saved under a larger share than this start gives (a smaller maxmemory or
            // filter_percent): loaded, it would hold memory the hot tier is counting on
            // (I6). A rebuild sizes the filter to the share, bypassing if the keys need more.
            tracing::info!(
                saved_bytes = filter.memory_bytes(),
                share_bytes = fresh_room,
                "the saved filter is larger than its share; rebuilding it from the cold tier"
            );
            return Ok(false);
        }
        for (counter, count) in self.key_counts.iter().zip(counts) {
            counter.reset();
            counter.add(count as i64);
        }
        // With the filter off (`storage.filter: false`) the fresh, bypassed one stays.
        if !fresh_bypassed {
            // Later growth answers to this start's share, not the saved one.
            filter.set_max_bytes(fresh_room);
            self.filter.replace(filter);
        }
        Ok(true)
    }

    fn decode_saved_state(&self, raw: &[u8], lsn: Lsn) -> Option<(Vec<u64>, CuckooFilter)> {
        let (saved_lsn, counts, filter) = decode_saved_state(raw)?;
        (saved_lsn == lsn && counts.len() == usize::from(self.databases()))
            .then_some((counts, filter))
    }

    fn encode_saved_state(&self, lsn: Lsn) -> Vec<u8> {
        let filter = self.filter.read().to_bytes();
        let mut out = Vec::with_capacity(11 + 8 * self.key_counts.len() + filter.len());
        out.push(META_VERSION);
        out.extend_from_slice(&lsn.to_le_bytes());
        out.extend_from_slice(&self.databases().to_le_bytes());
        for counter in self.key_counts.iter() {
            out.extend_from_slice(&(counter.get().max(0) as u64).to_le_bytes());
        }
        out.extend_from_slice(&filter);
        out
    }

    fn wal_dir(&self) -> PathBuf {
        self.config.dir.join("wal")
    }

    /// Opens the WAL (truncating a torn tail, refusing other damage) and replays the records
    /// after the checkpoint. Returns the log, the records replayed and the seconds it took.
    fn recover_wal(&self, checkpoint: Option<&CheckpointRecord>) -> EngineResult<(Wal, u64, f64)> {
        let dir = self.wal_dir();
        let settings = &self.durability.settings;
        let checkpoint_lsn = checkpoint.map_or(0, |c| c.lsn);
        if checkpoint.is_some_and(|c| !c.wal_on) && dir.exists() {
            // The last checkpoint was taken with the WAL off: the cold tier is newer than
            // anything this log holds, and replaying it would bring old values back (I2).
            let aside = self.config.dir.join(format!("wal.stale-{}", self.now_ms()));
            tracing::warn!(
                from = %dir.display(),
                to = %aside.display(),
                "the WAL predates the last checkpoint (taken with the WAL off); moving it aside"
            );
            std::fs::rename(&dir, &aside).map_err(|source| LogError::MoveAside {
                path: dir.clone(),
                source,
            })?;
        }
        let wal = Wal::open(
            &dir,
            WalOptions {
                segment_bytes: settings.wal_segment_bytes,
                sync: settings.sync,
                first_lsn: checkpoint_lsn + 1,
            },
        )?;
        if wal.last_lsn() < checkpoint_lsn {
            return Err(LogError::MissingSegments {
                wal_dir: dir,
                wal_last_lsn: wal.last_lsn(),
                checkpoint_lsn,
                data_dir: self.config.dir.clone(),
            }
            .into());
        }
        let started = Instant::now();
        let mut last_progress = Instant::now();
        let stats = wal::replay(&dir, checkpoint_lsn, |lsn, payload| {
            // The WAL wraps the engine's error with the file, offset and LSN
            // (`WalError::Apply`), keeping it as the source.
            self.apply_record(lsn, payload)?;
            if lsn.is_multiple_of(REPLAY_PROGRESS_EVERY)
                || last_progress.elapsed() >= Duration::from_secs(5)
            {
                tracing::info!(
                    lsn,
                    last = wal.last_lsn(),
                    seconds = started.elapsed().as_secs_f64(),
                    "replaying the WAL"
                );
                last_progress = Instant::now();
            }
            Ok(())
        })?;
        Ok((wal, stats.records, started.elapsed().as_secs_f64()))
    }

    /// Applies one WAL record through the engine's write path: each key is resolved against
    /// both tiers first, so key counts, the filter and cold copies stay exact (I1, I2, I4).
    pub(super) fn apply_record(&self, lsn: Lsn, payload: &[u8]) -> EngineResult<()> {
        let mutations = mutation::decode(payload).map_err(LogError::Undecodable)?;
        let now = self.now_ms();
        let mut discard = MutationBatch::default();
        for mutation in mutations {
            match mutation {
                Mutation::Put { key, value } => {
                    self.check_encoded(key)?;
                    let (value, expire_at) = match decode_cold_value(value)? {
                        ColdValue::Live {
                            value, expire_at, ..
                        } => (value, expire_at),
                        ColdValue::ExpiredMarker => return Err(LogError::MarkerValue.into()),
                    };
                    let mut shard = self.hot.lock_encoded(key);
                    let exists = self
                        .resolve(Access::MayBlock, &mut shard, key, now)?
                        .found();
                    if is_expired(expire_at, now) {
                        // It expired while the server was down: the key is gone.
                        if exists {
                            self.remove_resolved(
                                Access::MayBlock,
                                &mut shard,
                                key,
                                Removal::Expired,
                            )?;
                        }
                        continue;
                    }
                    let cold = match exists {
                        true => shard.peek(key).expect("resolved").cold,
                        false => ColdCopy::Absent,
                    };
                    let entry = HotEntry::written(value, expire_at, cold, seconds(now));
                    self.store(&mut shard, &mut discard, key.to_vec(), entry, !exists);
                    self.settle(Access::MayBlock, &mut shard);
                }
                Mutation::Del { key } => {
                    self.check_encoded(key)?;
                    let mut shard = self.hot.lock_encoded(key);
                    if self
                        .resolve(Access::MayBlock, &mut shard, key, now)?
                        .found()
                    {
                        self.remove_resolved(Access::MayBlock, &mut shard, key, Removal::Deleted)?;
                    }
                }
                Mutation::Flush { from, to } => {
                    // Replay waits for shards as background work does (no request deadline).
                    let mut txn =
                        Txn::new(self, Access::MayBlock, Guards::Many(self.hot.lock_all()));
                    if from == 0 && to == self.databases() {
                        txn.flushall()?;
                    } else {
                        txn.flush_databases(from..to)?;
                    }
                }
                Mutation::Server { name, value } => {
                    self.replay_server_record(lsn, name, value)?;
                }
                Mutation::Element {
                    value_type,
                    key,
                    op,
                } => {
                    self.check_encoded(key)?;
                    self.replay_element(key, value_type, &op)?;
                }
            }
        }
        Ok(())
    }

    fn check_encoded(&self, key: &[u8]) -> EngineResult<()> {
        if key.len() < keys::KEY_PREFIX_LEN || keys::db_of(key) >= self.databases() {
            return Err(LogError::KeyOutsideDatabases.into());
        }
        Ok(())
    }

    /// Whether mutations are being logged (the WAL is on, recovery has finished, and this
    /// is not a replica, whose log holds only its primary's records: `replication.rs`).
    pub(super) fn logging(&self) -> bool {
        self.wal.get().is_some() && !self.replication.is_replica()
    }

    /// Appends a finished transaction's mutations as one WAL record. Called with the
    /// transaction's shards held. A failure is kept and refuses later writes.
    pub(super) fn append_to_wal(&self, log: &mut MutationBatch) -> Option<Lsn> {
        if log.is_empty() || self.durability.failed.load(Ordering::Acquire) {
            // After a failure nothing more is logged: writes are refused (MISCONF).
            log.clear();
            return None;
        }
        let appended = match self.wal.get()?.append(log.as_bytes()) {
            Ok(lsn) => Some(lsn),
            Err(err) => {
                self.note_wal_failure(&err.to_string());
                None
            }
        };
        log.clear();
        appended
    }

    fn note_wal_failure(&self, message: &str) {
        let mut failure = self.durability.failure.lock();
        if failure.is_none() {
            tracing::error!(error = %message, "the WAL refused a record; writes are refused until restart");
            *failure = Some(message.to_string());
            self.durability.failed.store(true, Ordering::Release);
        }
    }

    /// The WAL failure that makes writes unsafe, if any (the server answers MISCONF): a record
    /// the log refused (until restart), or writes the log is retrying (until the disk takes
    /// them again, as Redis lifts MISCONF once its AOF writes succeed).
    pub fn wal_failure(&self) -> Option<String> {
        if self.durability.failed.load(Ordering::Acquire) {
            return self.durability.failure.lock().clone();
        }
        self.wal.get()?.failure().map(|err| err.to_string())
    }

    /// The WAL, when on, for the server's durability waits under `sync: always`.
    pub fn wal(&self) -> Option<&Arc<Wal>> {
        self.wal.get()
    }

    pub fn sync_policy(&self) -> Option<SyncPolicy> {
        self.durability
            .settings
            .wal
            .then_some(self.durability.settings.sync)
    }

    /// Runs a checkpoint (DESIGN §4 steps 1-5). Serving continues meanwhile: dirty entries
    /// are written one shard at a time. A second caller waits for the first to finish and
    /// then runs its own (SAVE must cover writes acknowledged before it was called).
    pub fn checkpoint(&self, reason: CheckpointReason) -> EngineResult<CheckpointInfo> {
        let _one_at_a_time = self.durability.running.lock();
        self.durability.in_progress.store(true, Ordering::Release);
        let result = self.run_checkpoint(reason);
        self.durability.in_progress.store(false, Ordering::Release);
        if let Err(err) = &result {
            tracing::warn!(%err, ?reason, "checkpoint failed");
        }
        result
    }

    /// Runs `reset` (a replica's full sync emptying its data and log) with checkpoints held
    /// off, then a checkpoint at the log's new position.
    pub(super) fn reset_then_checkpoint(
        &self,
        reset: impl FnOnce() -> EngineResult<()>,
    ) -> EngineResult<()> {
        let _one_at_a_time = self.durability.running.lock();
        reset()?;
        self.run_checkpoint(CheckpointReason::Requested).map(|_| ())
    }

    fn run_checkpoint(&self, reason: CheckpointReason) -> EngineResult<CheckpointInfo> {
        let started = Instant::now();
        let wal = self.wal.get();
        // 1. The WAL position: every record up to here has its effect in the hot tier.
        let lsn = wal.map_or(0, |wal| wal.last_lsn());
        // 2. Every dirty entry into the cold tier, one shard at a time.
        let entries_written = self.flush_dirty_to_cold()?;
        // The log must reach L on disk before the cold tier says "checkpoint at L": a crash
        // right after must still find every record the checkpoint's LSN refers to.
        if let Some(wal) = wal {
            wal.sync()?;
        }
        // 3 + 4. The meta record, in the cold tier's own log, then that log synced.
        let unix_ms = self.now_ms();
        let mut ops = vec![ColdOp::Put {
            space: Space::Data,
            key: meta_key(CHECKPOINT_META),
            value: encode_checkpoint(&CheckpointRecord {
                wal_on: wal.is_some(),
                lsn,
                unix_ms,
            }),
        }];
        if reason == CheckpointReason::Shutdown {
            ops.push(ColdOp::Put {
                space: Space::Data,
                key: meta_key(SAVED_STATE_META),
                value: self.encode_saved_state(lsn),
            });
        }
        self.cold.write(ops)?;
        self.cold.sync()?;
        // 5. Old segments go, except those replicas still need (replication.rs); optionally
        // a RocksDB copy stays for backups.
        if let Some(wal) = wal {
            let (before, keep_bytes) = self.replication.removable_before(lsn);
            wal.remove_segments_keeping(before, keep_bytes)?;
        }
        let retained = self.retain_cold_checkpoint(unix_ms)?;
        let info = CheckpointInfo {
            lsn,
            unix_ms,
            entries_written,
            seconds: started.elapsed().as_secs_f64(),
            retained,
        };
        *self.durability.last.lock() = info.clone();
        *self.durability.completed.lock() += 1;
        tracing::info!(
            lsn,
            entries_written,
            seconds = info.seconds,
            ?reason,
            "checkpoint complete"
        );
        Ok(info)
    }

    /// Runs a checkpoint and keeps a RocksDB copy of it under `<dir>/checkpoints/`, whatever
    /// `retain_checkpoints` says (`hypercache-tool checkpoint create`). Returns its directory.
    pub fn checkpoint_with_copy(&self) -> EngineResult<PathBuf> {
        let info = self.checkpoint(CheckpointReason::Requested)?;
        if let Some(path) = info.retained {
            return Ok(path);
        }
        self.keep_cold_checkpoint(info.unix_ms, usize::MAX)
    }

    /// Keeps a RocksDB checkpoint under `<dir>/checkpoints/<unix ms>` and deletes the oldest
    /// beyond `retain_checkpoints`.
    fn retain_cold_checkpoint(&self, unix_ms: u64) -> EngineResult<Option<PathBuf>> {
        let retain = self.durability.settings.retain_checkpoints;
        if retain == 0 {
            return Ok(None);
        }
        self.keep_cold_checkpoint(unix_ms, retain).map(Some)
    }

    fn keep_cold_checkpoint(&self, unix_ms: u64, retain: usize) -> EngineResult<PathBuf> {
        let root = checkpoints_dir(&self.config.dir);
        std::fs::create_dir_all(&root).map_err(|source| EngineError::CreateDir {
            path: root.clone(),
            source,
        })?;
        let path = root.join(format!("{unix_ms:020}"));
        if path.exists() {
            return Ok(path);
        }
        self.cold.create_checkpoint(&path)?;
        let mut kept = list_checkpoints(&self.config.dir);
        while kept.len() > retain {
            let oldest = kept.remove(0);
            if let Err(err) = std::fs::remove_dir_all(&oldest) {
                tracing::warn!(path = %oldest.display(), %err, "cannot delete an old checkpoint");
            }
        }
        Ok(path)
    }

    /// Whether a periodic checkpoint is due: the interval passed with new WAL records, or
    /// the WAL outgrew its size trigger.
    pub(super) fn checkpoint_due(&self, last_run: Instant) -> bool {
        let Some(wal) = self.wal.get() else {
            return false;
        };
        let settings = &self.durability.settings;
        let new_records = wal.last_lsn() > self.durability.last.lock().lsn;
        let by_time = !settings.checkpoint_interval.is_zero()
            && last_run.elapsed() >= settings.checkpoint_interval;
        let by_size =
            settings.checkpoint_wal_bytes > 0 && wal.disk_bytes() >= settings.checkpoint_wal_bytes;
        new_records && (by_time || by_size)
    }

    /// Closes the WAL: the final write and fsync (clean shutdown, after the last checkpoint).
    pub fn close_wal(&self) -> EngineResult<()> {
        if let Some(wal) = self.wal.get() {
            wal.close()?;
        }
        Ok(())
    }

    pub fn persistence_report(&self) -> PersistenceReport {
        let wal = self.wal.get();
        PersistenceReport {
            wal_enabled: wal.is_some(),
            sync: self.sync_policy(),
            wal_last_lsn: wal.map_or(0, |wal| wal.last_lsn()),
            wal_durable_lsn: wal.map_or(0, |wal| wal.durable_lsn()),
            wal_disk_bytes: wal.map_or(0, |wal| wal.disk_bytes()),
            wal_fsyncs: wal.map_or(0, |wal| wal.stats().fsyncs),
            wal_failure: self.wal_failure(),
            checkpoint_in_progress: self.durability.in_progress.load(Ordering::Acquire),
            checkpoints_completed: *self.durability.completed.lock(),
            last_checkpoint: self.durability.last.lock().clone(),
            startup: self.durability.startup.lock().clone(),
        }
    }
}

/// `<dir>/checkpoints`: retained RocksDB checkpoints, one directory per checkpoint.
pub fn checkpoints_dir(dir: &Path) -> PathBuf {
    dir.join("checkpoints")
}

/// Retained checkpoint directories, oldest first (their names are zero-padded times).
pub fn list_checkpoints(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(checkpoints_dir(dir)) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .collect();
    found.sort();
    found
}
