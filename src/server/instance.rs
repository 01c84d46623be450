//! One server instance's lifecycle, shared by the binary and the in-process tests: take the
//! data directory, open the engine, bind, serve until shutdown, save, release.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;

use super::{run, Shared, ShutdownRequest};
use crate::config::Config;
use crate::engine::{BackgroundTasks, CheckpointReason, Durability, Engine};

/// Present while a server uses the directory; left behind by a crash.
const RUNNING_MARKER: &str = "hypercache.running";
const LOCK_FILE: &str = "hypercache.lock";

/// An opened, bound, not yet serving instance.
pub struct Instance {
    shared: Arc<Shared>,
    listener: TcpListener,
    background: BackgroundTasks,
    dir: PathBuf,
    /// Holds the directory lock until the instance is gone.
    _dir_lock: std::fs::File,
}

impl Instance {
    pub async fn open(config: Config, config_file: Option<PathBuf>) -> Result<Instance, String> {
        let (dir_lock, clean_start) = prepare_data_dir(&config)?;
        let started = std::time::Instant::now();
        let engine_config = config.storage.clone();
        let durability = durability_settings(&config, clean_start);
        let engine =
            tokio::task::spawn_blocking(move || Engine::open_durable(engine_config, durability))
                .await
                .map_err(|err| format!("engine startup panicked: {err}"))?
                .map_err(|err| format!("cannot open the data directory: {err}"))?;
        let engine = Arc::new(engine);
        let background = engine.start_background_tasks();
        tracing::info!(
            seconds = started.elapsed().as_secs_f64(),
            keys = engine.tier_report().keys_per_db.iter().sum::<u64>(),
            "engine opened"
        );
        let address = format!("{}:{}", config.server.bind, config.server.port);
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|err| format!("cannot listen on {address}: {err}"))?;
        let port = listener
            .local_addr()
            .map_err(|err| format!("cannot read the bound address: {err}"))?
            .port();
        let dir = config.storage.dir.clone();
        let shared = Shared::new(engine, config, config_file, port);
        Ok(Instance {
            shared,
            listener,
            background,
            dir,
            _dir_lock: dir_lock,
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// Serves until shutdown is requested, then saves (unless NOSAVE) and releases.
    pub async fn serve(self) -> Result<(), String> {
        let Instance {
            shared,
            listener,
            background,
            dir,
            _dir_lock,
        } = self;
        tracing::info!(port = shared.port, "Ready to accept connections tcp");
        let request = run(listener, Arc::clone(&shared)).await;
        drop(background);
        let save = matches!(request, ShutdownRequest::Stop { save: true });
        let engine = Arc::clone(&shared.engine);
        tokio::task::spawn_blocking(move || shut_down_engine(&engine, &dir, save))
            .await
            .map_err(|err| format!("shutdown panicked: {err}"))?
    }
}

/// The engine's durability settings from the configuration's `persistence` section.
fn durability_settings(config: &Config, clean_start: bool) -> Durability {
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

/// Takes the directory lock and tells whether the previous run stopped cleanly. After an
/// unclean stop without the WAL it discards the cold tier: it may hold values older than
/// writes that were acknowledged but only in memory, and such stale values must never come
/// back (I2). With the WAL, recovery replays the log over it instead.
fn prepare_data_dir(config: &Config) -> Result<(std::fs::File, bool), String> {
    let dir = &config.storage.dir;
    std::fs::create_dir_all(dir)
        .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|err| format!("cannot open {}: {err}", lock_path.display()))?;
    lock.try_lock()
        .map_err(|_| format!("{} is in use by another hypercache process", dir.display()))?;
    let marker = dir.join(RUNNING_MARKER);
    let clean_start = !marker.exists();
    if !clean_start && !config.persistence.wal {
        let cold = dir.join("cold");
        tracing::warn!(
            dir = %dir.display(),
            "previous run did not shut down cleanly and the WAL is off: discarding the cold tier, which may hold stale values"
        );
        if cold.exists() {
            std::fs::remove_dir_all(&cold)
                .map_err(|err| format!("cannot discard {}: {err}", cold.display()))?;
        }
    }
    std::fs::write(&marker, std::process::id().to_string())
        .map_err(|err| format!("cannot write {}: {err}", marker.display()))?;
    Ok((lock, clean_start))
}

/// Runs the final checkpoint (every dirty hot entry into the cold tier, with the filter and
/// key counts, so the next start is warm and quick), closes the WAL and clears the running
/// marker. With NOSAVE and no WAL the marker stays, so the next start discards the cold tier
/// rather than serve values older than the writes that were lost; with the WAL, NOSAVE only
/// skips the checkpoint (the log holds every write) and the next start replays it.
fn shut_down_engine(engine: &Engine, dir: &Path, save: bool) -> Result<(), String> {
    if !save {
        engine
            .close_wal()
            .map_err(|err| format!("closing the WAL failed: {err}"))?;
        match engine.wal() {
            Some(_) => {
                tracing::warn!("shutting down without a checkpoint: the next start replays the WAL")
            }
            None => tracing::warn!("shutting down without saving: the next start begins empty"),
        }
        return Ok(());
    }
    let started = std::time::Instant::now();
    let checkpoint = engine
        .checkpoint(CheckpointReason::Shutdown)
        .map_err(|err| format!("saving on shutdown failed: {err}"))?;
    engine
        .close_wal()
        .map_err(|err| format!("closing the WAL failed: {err}"))?;
    std::fs::remove_file(dir.join(RUNNING_MARKER))
        .map_err(|err| format!("cannot remove the running marker: {err}"))?;
    tracing::info!(
        entries = checkpoint.entries_written,
        lsn = checkpoint.lsn,
        seconds = started.elapsed().as_secs_f64(),
        "saved; ready to exit"
    );
    Ok(())
}
