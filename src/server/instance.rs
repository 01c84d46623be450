//! One server instance's lifecycle, shared by the binary and the in-process tests: take the
//! data directory, open the engine, bind, serve until shutdown, save, release.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;

use super::{run, Shared, ShutdownRequest};
use crate::config::Config;
use crate::engine::{BackgroundTasks, Engine};

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
        let dir_lock = prepare_data_dir(&config)?;
        let started = std::time::Instant::now();
        let engine_config = config.storage.clone();
        let engine = tokio::task::spawn_blocking(move || Engine::open(engine_config))
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

/// Takes the directory lock and, after an unclean stop without the WAL, discards the cold
/// tier: it may hold values older than writes that were acknowledged but only in memory,
/// and such stale values must never come back (I2).
fn prepare_data_dir(config: &Config) -> Result<std::fs::File, String> {
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
    if marker.exists() && !config.persistence.wal {
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
    Ok(lock)
}

/// Writes every dirty hot entry to the cold tier (so the next start is warm) and clears
/// the running marker. With NOSAVE the marker stays, so the next start discards the cold
/// tier rather than serve values older than the writes that were lost.
fn shut_down_engine(engine: &Engine, dir: &Path, save: bool) -> Result<(), String> {
    if !save {
        tracing::warn!("shutting down without saving: the next start begins empty");
        return Ok(());
    }
    let started = std::time::Instant::now();
    let written = engine
        .flush_dirty_to_cold()
        .map_err(|err| format!("saving on shutdown failed: {err}"))?;
    std::fs::remove_file(dir.join(RUNNING_MARKER))
        .map_err(|err| format!("cannot remove the running marker: {err}"))?;
    tracing::info!(
        entries = written,
        seconds = started.elapsed().as_secs_f64(),
        "saved; ready to exit"
    );
    Ok(())
}
