//! What every connection shares, as the commands see it: the engine, the live
//! configuration, the client registry, the counters and slow log, and the shutdown request.
//! The server builds one per instance; tools that run commands without a network (import)
//! build their own. Nothing here does I/O.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;
use tokio::sync::watch;

use super::acl::Acl;
use super::clients::ClientRegistry;
use super::table;
use crate::config::Config;
use crate::engine::Engine;
use crate::metrics::{unix_seconds, ServerStats, SlowLog};

/// What SHUTDOWN asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownRequest {
    Running,
    /// Stop; `save` = flush the hot tier's dirty entries to the cold tier first.
    Stop {
        save: bool,
    },
}

/// State shared by every connection.
pub struct Shared {
    pub engine: Arc<Engine>,
    /// The live configuration (CONFIG SET changes it).
    pub config: RwLock<Config>,
    /// The file CONFIG REWRITE writes; None when started without --config.
    pub config_file: Option<PathBuf>,
    pub clients: ClientRegistry,
    pub stats: ServerStats,
    pub slowlog: SlowLog,
    pub started: Instant,
    pub run_id: String,
    /// The port actually bound (port 0 picks one).
    pub port: u16,
    /// Unix seconds of the last successful SAVE (LASTSAVE).
    pub last_save: Arc<AtomicU64>,
    /// A BGSAVE thread is running.
    pub bgsave_in_progress: Arc<AtomicBool>,
    /// What new TLS connections are accepted with (None: no TLS port). CONFIG SET of a
    /// `tls-*` parameter replaces it; connections already open keep theirs.
    pub tls: RwLock<Option<Arc<rustls::ServerConfig>>>,
    /// Security events (docs/security.md); writes nothing until opened at start.
    pub audit: crate::audit::AuditLog,
    /// The ACL users and the denial log.
    pub acl: Acl,
    /// Lua scripts: the cache of bodies, the FUNCTION libraries, the VMs, the running script.
    pub scripts: super::scripting::Scripts,
    /// Role, ids, replicas and the link to the primary (`crate::replication`).
    pub replication: crate::commands::replication::Replication,
    shutdown: watch::Sender<ShutdownRequest>,
}

impl Shared {
    pub fn new(
        engine: Arc<Engine>,
        config: Config,
        config_file: Option<PathBuf>,
        port: u16,
        acl: Acl,
    ) -> Arc<Self> {
        let (shutdown, _) = watch::channel(ShutdownRequest::Running);
        let run_id: String = (0..40)
            .map(|_| char::from_digit(rand::random_range(0..16), 16).unwrap_or('0'))
            .collect();
        let slowlog = SlowLog::new(config.slowlog.max_len, config.slowlog.log_slower_than);
        let scripts = super::scripting::Scripts::default();
        scripts.functions.load_saved(&engine);
        let replication = crate::commands::replication::Replication::open(
            &engine.config().dir,
            engine.persistence_report().startup.loaded_saved_state,
            engine.wal().map_or(0, |wal| wal.last_lsn()),
        );
        let shared = Arc::new(Shared {
            engine,
            config: RwLock::new(config),
            config_file,
            clients: ClientRegistry::default(),
            stats: ServerStats::new(
                table::all().map(|spec| (spec.name, spec.subcommands.iter().map(|sub| sub.name))),
            ),
            slowlog,
            started: Instant::now(),
            run_id,
            port,
            last_save: Arc::new(AtomicU64::new(unix_seconds())),
            bgsave_in_progress: Arc::new(AtomicBool::new(false)),
            tls: RwLock::new(None),
            audit: crate::audit::AuditLog::default(),
            acl,
            scripts,
            replication,
            shutdown,
        });
        shared.replication.attach(&shared);
        shared
    }

    /// Asks the server to stop (SHUTDOWN, SIGTERM, SIGINT).
    pub fn request_shutdown(&self, save: bool) {
        self.shutdown.send_replace(ShutdownRequest::Stop { save });
    }

    pub fn shutdown_requested(&self) -> ShutdownRequest {
        *self.shutdown.borrow()
    }

    pub(crate) fn shutdown_receiver(&self) -> watch::Receiver<ShutdownRequest> {
        self.shutdown.subscribe()
    }

    pub fn note_saved(&self) {
        self.last_save.store(unix_seconds(), Ordering::Relaxed);
    }
}
