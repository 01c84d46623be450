//! A data directory's lifecycle, shared by the server and `hypercache-tool`: the lock that
//! keeps two processes out, the running marker that tells a clean stop from a crash, opening
//! the engine with the recovery that calls for, and the final checkpoint.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::engine::{CheckpointInfo, CheckpointReason, Durability, Engine};

/// Present while a process uses the directory; left behind by a crash.
pub const RUNNING_MARKER: &str = "hypercache.running";
/// Locked (flock) by the process that uses the directory.
pub const LOCK_FILE: &str = "hypercache.lock";

/// A data directory this process holds the lock of (released when dropped).
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates the directory if needed and takes its lock; fails if another process holds it.
    pub fn lock(path: &Path) -> Result<DataDir, String> {
        std::fs::create_dir_all(path)
            .map_err(|err| format!("cannot create {}: {err}", path.display()))?;
        let lock_path = path.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|err| format!("cannot open {}: {err}", lock_path.display()))?;
        lock.try_lock()
            .map_err(|_| format!("{} is in use by another hypercache process", path.display()))?;
        Ok(DataDir {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    /// Whether a live process holds `path`'s lock (without taking it).
    pub fn is_in_use(path: &Path) -> bool {
        let Ok(lock) = std::fs::OpenOptions::new()
            .write(true)
            .open(path.join(LOCK_FILE))
        else {
            return false;
        };
        match lock.try_lock() {
            Ok(()) => {
                let _ = lock.unlock();
                false
            }
            Err(_) => true,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the previous process stopped cleanly (it removed the running marker).
    pub fn stopped_cleanly(&self) -> bool {
        !self.path.join(RUNNING_MARKER).exists()
    }

    /// Opens the engine on this directory (`config.storage.dir` is ignored in favour of it),
    /// with the recovery the previous stop calls for. After an unclean stop without the WAL
    /// the cold tier is discarded first: it may hold values older than writes that were
    /// acknowledged but only in memory, and such stale values must never come back (I2).
    /// With the WAL, recovery replays the log over it instead.
    pub fn open_engine(&self, config: &Config) -> Result<Engine, String> {
        let clean_start = self.stopped_cleanly();
        if !clean_start && !config.persistence.wal {
            let cold = self.path.join("cold");
            tracing::warn!(
                dir = %self.path.display(),
                "previous run did not shut down cleanly and the WAL is off: discarding the cold tier, which may hold stale values"
            );
            if cold.exists() {
                std::fs::remove_dir_all(&cold)
                    .map_err(|err| format!("cannot discard {}: {err}", cold.display()))?;
            }
            // A WAL left from an earlier run with it on predates what is being discarded;
            // replayed later (WAL on again, no checkpoint left) it would bring old values back.
            let wal = self.path.join("wal");
            if wal.exists() {
                let aside = self.path.join(format!(
                    "wal.stale-{}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis())
                ));
                std::fs::rename(&wal, &aside)
                    .map_err(|err| format!("cannot move {} aside: {err}", wal.display()))?;
            }
        }
        let marker = self.path.join(RUNNING_MARKER);
        std::fs::write(&marker, std::process::id().to_string())
            .map_err(|err| format!("cannot write {}: {err}", marker.display()))?;
        let mut engine_config = config.storage.clone();
        engine_config.dir = self.path.clone();
        Engine::open_durable(engine_config, durability_settings(config, clean_start))
            .map_err(|err| format!("cannot open the data directory: {err}"))
    }

    /// Runs the final checkpoint (every dirty hot entry, the filter and key counts into the
    /// cold tier, so the next start is warm and quick), closes the WAL and clears the running
    /// marker. With `save` false and no WAL the marker stays, so the next start discards the
    /// cold tier rather than serve values older than the writes that were lost; with the WAL,
    /// skipping the checkpoint only means the next start replays the log.
    pub fn close_engine(
        &self,
        engine: &Engine,
        save: bool,
    ) -> Result<Option<CheckpointInfo>, String> {
        if !save {
            engine
                .close_wal()
                .map_err(|err| format!("closing the WAL failed: {err}"))?;
            return Ok(None);
        }
        let checkpoint = engine
            .checkpoint(CheckpointReason::Shutdown)
            .map_err(|err| format!("saving on shutdown failed: {err}"))?;
        engine
            .close_wal()
            .map_err(|err| format!("closing the WAL failed: {err}"))?;
        std::fs::remove_file(self.path.join(RUNNING_MARKER))
            .map_err(|err| format!("cannot remove the running marker: {err}"))?;
        Ok(Some(checkpoint))
    }
}

/// The engine's durability settings from the configuration's `persistence` section.
pub fn durability_settings(config: &Config, clean_start: bool) -> Durability {
    let persistence = &config.persistence;
    Durability {
        wal: persistence.wal,
        sync: persistence.sync,
        wal_segment_bytes: persistence.wal_segment_bytes.0,
        checkpoint_interval: std::time::Duration::from_secs(persistence.checkpoint_interval_secs),
        checkpoint_wal_bytes: persistence.checkpoint_wal_bytes.0,
        retain_checkpoints: persistence.retain_checkpoints as usize,
        clean_start,
    }
}
