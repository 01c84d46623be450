//! The RESP server: `run(listener, shared, shutdown)` is its only entry point, used by the
//! binary and the tests alike (CONVENTIONS 5). It accepts connections up to `maxclients`,
//! gives each its own task, and on shutdown stops accepting, lets every connection finish
//! the commands it has read, and waits for all of them.

mod clients;
mod cold_reads;
mod connection;
mod instance;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::engine::Engine;
use crate::metrics::{ServerStats, SlowLog};

pub use clients::{ClientHandle, ClientRegistry, ClientState, ReplyMode};
pub use cold_reads::Answer as ColdGetAnswer;
use cold_reads::ColdReads;
pub use instance::Instance;

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
    /// Batches the cold reads of GETs across clients (`server.cold_readers` threads).
    pub cold_reads: ColdReads,
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
    shutdown: watch::Sender<ShutdownRequest>,
}

impl Shared {
    pub fn new(
        engine: Arc<Engine>,
        config: Config,
        config_file: Option<PathBuf>,
        port: u16,
    ) -> Arc<Self> {
        let (shutdown, _) = watch::channel(ShutdownRequest::Running);
        let run_id: String = (0..40)
            .map(|_| char::from_digit(rand::random_range(0..16), 16).unwrap_or('0'))
            .collect();
        let slowlog = SlowLog::new(config.slowlog.max_len, config.slowlog.log_slower_than);
        Arc::new(Shared {
            cold_reads: ColdReads::start(&engine, config.server.cold_readers),
            engine,
            config: RwLock::new(config),
            config_file,
            clients: ClientRegistry::default(),
            stats: ServerStats::default(),
            slowlog,
            started: Instant::now(),
            run_id,
            port,
            last_save: Arc::new(AtomicU64::new(unix_seconds())),
            bgsave_in_progress: Arc::new(AtomicBool::new(false)),
            shutdown,
        })
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

pub fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Serves `listener` until shutdown is requested, then waits for every connection task.
/// Returns what the shutdown asked for.
pub async fn run(listener: TcpListener, shared: Arc<Shared>) -> ShutdownRequest {
    let mut shutdown = shared.shutdown_receiver();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, addr) = match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(%err, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                shared.stats.connection_received();
                let shared = Arc::clone(&shared);
                connections.spawn(connection::serve(shared, stream, addr));
            }
            _ = shutdown.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    for client in shared.clients.all() {
        client.kill();
    }
    while connections.join_next().await.is_some() {}
    shared.shutdown_requested()
}
