//! Primary/replica replication over the engine WAL (DESIGN.md §9, issue 16). This module owns
//! the node's role, its replication ids, the replicas connected to it, the link to its own
//! primary, and the wire between them; the engine's side (replica mode, applying records,
//! the snapshot, keeping WAL segments) is `engine/replication.rs`.
//!
//! - The replication offset is the WAL's LSN on every node: a replica's log holds its primary's
//!   records under the same numbers, so a replica can feed its own replicas (chaining) and a
//!   promoted replica numbers on where its primary stopped.
//! - Ids as Redis's PSYNC2 (`ids.rs`): a promoted replica keeps its old primary's id as its
//!   second id, valid up to the offset it had, so the other replicas resume partially.
//! - A replica asks `PSYNC <id> <offset>` (`link.rs`). The primary answers `+CONTINUE` and
//!   streams the records after the offset when its log still holds them, or `+FULLRESYNC <id>
//!   <lsn>`, a snapshot of every key at or after that LSN, and the records after it
//!   (`feed.rs`). The wire format is in `wire.rs`.
//! - WAIT counts replicas whose acknowledged offset covers the WAL position when WAIT ran.
//!
//! The commands (REPLICAOF, ROLE, WAIT, PSYNC, REPLCONF) are in `command.rs`.

pub(crate) mod command;
mod feed;
mod ids;
mod link;
pub mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

pub use feed::serve_replica;
pub use ids::ReplIds;

use crate::commands::{ClientHandle, Shared};
use crate::config::ReplicationConfig;
use crate::engine::wal::Lsn;
use crate::protocol::Reply;

/// What a command leaves for its connection to finish (the connection owns the socket).
#[derive(Debug, Clone)]
pub enum Deferred {
    /// PSYNC / SYNC: the connection becomes a replica's feed.
    Feed(PsyncRequest),
    /// WAIT: answer once `replicas` acknowledged `offset`, or after `timeout` (None: no limit).
    Wait {
        replicas: usize,
        offset: Lsn,
        timeout: Option<Duration>,
    },
}

/// A replica's request: the id of the history it has and the last offset it holds (`None`:
/// it has nothing, `PSYNC ? -1`).
#[derive(Debug, Clone)]
pub struct PsyncRequest {
    pub replid: String,
    pub offset: Option<Lsn>,
}

/// This node's primary, while it is a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Primary {
    pub host: String,
    pub port: u16,
}

/// The state of the link to the primary, for INFO and ROLE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    /// A full sync is loading the primary's snapshot.
    Syncing,
    Connected,
}

impl LinkState {
    /// ROLE's words.
    pub fn role_name(self) -> &'static str {
        match self {
            LinkState::Connecting => "connect",
            LinkState::Syncing => "sync",
            LinkState::Connected => "connected",
        }
    }
}

/// One replica fed by this node.
#[derive(Debug)]
pub struct ReplicaInfo {
    pub addr: SocketAddr,
    /// The port it serves clients on (REPLCONF listening-port).
    pub listening_port: u16,
    /// Still loading its snapshot (`wait_bgsave` / `send_bulk` in Redis's words) or online.
    pub online: AtomicBool,
    /// The offset it last acknowledged.
    pub acked: AtomicU64,
    /// When it last acknowledged.
    pub acked_at: Mutex<Instant>,
    /// The next LSN its feed reads: the WAL keeps every record from the smallest of these.
    pub reading_from: AtomicU64,
}

/// Counters for INFO stats.
#[derive(Debug, Default)]
pub struct ReplicationStats {
    pub sync_full: AtomicU64,
    pub sync_partial_ok: AtomicU64,
    pub sync_partial_err: AtomicU64,
}

/// The node's replication state (one per server, in [`Shared`]).
pub struct Replication {
    ids: Mutex<ReplIds>,
    ids_file: std::path::PathBuf,
    /// `Some` while this node is a replica.
    primary: Mutex<Option<Primary>>,
    link: Mutex<LinkState>,
    /// When the link last received anything.
    link_io: Mutex<Instant>,
    /// Bumped by every REPLICAOF: a link thread whose generation is stale stops, and feeds
    /// started before a full sync of this node stop (their log was replaced).
    generation: AtomicU64,
    pub(crate) feed_epoch: AtomicU64,
    /// Held by the link while it applies anything: a promotion (or a new REPLICAOF) takes it
    /// after bumping the generation, so no record is half applied when the engine leaves
    /// replica mode (its writes would then be logged as the engine's own).
    applying: Mutex<()>,
    replicas: Mutex<BTreeMap<u64, Arc<ReplicaInfo>>>,
    next_replica: AtomicU64,
    /// Notified whenever a replica acknowledges (WAIT waits on it).
    acks: watch::Sender<u64>,
    pub stats: ReplicationStats,
    /// The server this belongs to, for the link threads REPLICAOF starts.
    shared: OnceLock<Weak<Shared>>,
    /// The live settings the per-command checks read (CONFIG SET changes them).
    read_only: AtomicBool,
    serve_stale: AtomicBool,
    min_replicas: AtomicU32,
    min_replicas_max_lag: AtomicU64,
}

impl Replication {
    /// Loads (or creates) the ids kept in `<dir>/replication.ids`. `clean_start` says the last
    /// run shut down cleanly: otherwise its log may have lost records replicas hold, and a new
    /// id is taken (keeping the old one as the second id, valid up to `last_lsn`).
    pub fn open(dir: &Path, clean_start: bool, last_lsn: Lsn) -> Replication {
        let ids_file = dir.join("replication.ids");
        let ids = ReplIds::load_or_create(&ids_file, clean_start, last_lsn);
        let (acks, _) = watch::channel(0);
        Replication {
            ids: Mutex::new(ids),
            ids_file,
            primary: Mutex::new(None),
            link: Mutex::new(LinkState::Connecting),
            link_io: Mutex::new(Instant::now()),
            generation: AtomicU64::new(0),
            feed_epoch: AtomicU64::new(0),
            applying: Mutex::new(()),
            replicas: Mutex::new(BTreeMap::new()),
            next_replica: AtomicU64::new(1),
            acks,
            stats: ReplicationStats::default(),
            shared: OnceLock::new(),
            read_only: AtomicBool::new(true),
            serve_stale: AtomicBool::new(true),
            min_replicas: AtomicU32::new(0),
            min_replicas_max_lag: AtomicU64::new(10),
        }
    }

    /// Ties this to its server (called once, by `Shared::new`).
    pub fn attach(&self, shared: &Arc<Shared>) {
        let _ = self.shared.set(Arc::downgrade(shared));
        let config = shared.config.read().replication.clone();
        self.apply_config(&config);
        shared
            .engine
            .set_replication_backlog(config.repl_backlog_size.0);
    }

    /// Takes the live settings (at start and after CONFIG SET).
    pub fn apply_config(&self, config: &ReplicationConfig) {
        self.read_only
            .store(config.replica_read_only, Ordering::Relaxed);
        self.serve_stale
            .store(config.replica_serve_stale_data, Ordering::Relaxed);
        self.min_replicas
            .store(config.min_replicas_to_write, Ordering::Relaxed);
        self.min_replicas_max_lag
            .store(config.min_replicas_max_lag, Ordering::Relaxed);
    }

    pub fn read_only(&self) -> bool {
        self.read_only.load(Ordering::Relaxed)
    }

    pub fn serve_stale_data(&self) -> bool {
        self.serve_stale.load(Ordering::Relaxed)
    }

    /// min-replicas-to-write: enough replicas acknowledged within min-replicas-max-lag.
    pub fn enough_good_replicas(&self) -> bool {
        let needed = self.min_replicas.load(Ordering::Relaxed);
        if needed == 0 {
            return true;
        }
        let lag = Duration::from_secs(self.min_replicas_max_lag.load(Ordering::Relaxed));
        self.good_replicas(lag) >= needed as usize
    }

    fn shared(&self) -> Option<Arc<Shared>> {
        self.shared.get().and_then(Weak::upgrade)
    }

    pub fn ids(&self) -> ReplIds {
        self.ids.lock().clone()
    }

    fn set_ids(&self, ids: ReplIds) {
        if let Err(err) = ids.save(&self.ids_file) {
            tracing::warn!(%err, "cannot save the replication ids");
        }
        *self.ids.lock() = ids;
    }

    pub fn primary(&self) -> Option<Primary> {
        self.primary.lock().clone()
    }

    pub fn link_state(&self) -> LinkState {
        *self.link.lock()
    }

    fn set_link(&self, state: LinkState) {
        *self.link.lock() = state;
    }

    fn note_link_io(&self) {
        *self.link_io.lock() = Instant::now();
    }

    pub fn link_idle(&self) -> Duration {
        self.link_io.lock().elapsed()
    }

    /// The replicas fed by this node, in connection order.
    pub fn replicas(&self) -> Vec<Arc<ReplicaInfo>> {
        self.replicas.lock().values().cloned().collect()
    }

    fn add_replica(&self, info: ReplicaInfo) -> (u64, Arc<ReplicaInfo>) {
        let id = self.next_replica.fetch_add(1, Ordering::Relaxed);
        let info = Arc::new(info);
        self.replicas.lock().insert(id, Arc::clone(&info));
        (id, info)
    }

    fn remove_replica(&self, id: u64, shared: &Shared) {
        self.replicas.lock().remove(&id);
        self.refresh_pin(shared);
        self.acks.send_modify(|n| *n += 1);
    }

    /// Keeps the WAL from the oldest record any feed still has to read.
    fn refresh_pin(&self, shared: &Shared) {
        // Stored under the lock: two callers must not publish their minimums out of order.
        let replicas = self.replicas.lock();
        let oldest = replicas
            .values()
            .map(|replica| replica.reading_from.load(Ordering::Acquire))
            .min();
        shared.engine.pin_wal_from(oldest);
    }

    fn note_ack(&self, replica: &ReplicaInfo, offset: Lsn) {
        replica.acked.fetch_max(offset, Ordering::AcqRel);
        *replica.acked_at.lock() = Instant::now();
        self.acks.send_modify(|n| *n += 1);
    }

    /// Replicas whose acknowledged offset is at least `offset`.
    pub fn acked_at_least(&self, offset: Lsn) -> usize {
        self.replicas
            .lock()
            .values()
            .filter(|replica| replica.acked.load(Ordering::Acquire) >= offset)
            .count()
    }

    /// Replicas that acknowledged within `max_lag` (min-replicas-to-write).
    pub fn good_replicas(&self, max_lag: Duration) -> usize {
        self.replicas
            .lock()
            .values()
            .filter(|replica| {
                replica.online.load(Ordering::Acquire)
                    && replica.acked_at.lock().elapsed() <= max_lag
            })
            .count()
    }

    /// A receiver that changes whenever a replica acknowledges or leaves.
    pub fn subscribe_acks(&self) -> watch::Receiver<u64> {
        self.acks.subscribe()
    }

    /// This node's replication offset: the last LSN of its log.
    pub fn offset(shared: &Shared) -> Lsn {
        shared.engine.wal().map_or(0, |wal| wal.last_lsn())
    }

    /// REPLICAOF host port: become (or stay) a replica of `primary`, starting a new link.
    pub fn replicate(&self, primary: Primary) -> Result<(), String> {
        let shared = self.shared().ok_or("the server is shutting down")?;
        let shared = &shared;
        let replication = &shared.replication;
        if replication.primary().as_ref() == Some(&primary) {
            return Ok(());
        }
        shared
            .engine
            .set_replica_mode(true)
            .map_err(|err| err.to_string())?;
        *replication.primary.lock() = Some(primary.clone());
        replication.set_link(LinkState::Connecting);
        let generation = replication.generation.fetch_add(1, Ordering::AcqRel) + 1;
        shared.config.write().replication.replicaof =
            Some(format!("{} {}", primary.host, primary.port));
        link::start(Arc::clone(shared), primary, generation);
        Ok(())
    }

    /// REPLICAOF NO ONE: become a primary, keeping the data and the log. The history so far
    /// stays resumable under the old id (PSYNC2).
    pub fn promote(shared: &Shared) -> Result<(), String> {
        let replication = &shared.replication;
        if replication.primary.lock().take().is_none() {
            return Ok(());
        }
        replication.generation.fetch_add(1, Ordering::AcqRel);
        // The link finishes what it is applying and applies nothing more.
        drop(replication.applying.lock());
        shared.config.write().replication.replicaof = None;
        shared
            .engine
            .set_replica_mode(false)
            .map_err(|err| err.to_string())?;
        let offset = Self::offset(shared);
        let ids = replication.ids().promoted(offset);
        replication.set_ids(ids);
        tracing::info!(offset, "promoted to primary (REPLICAOF NO ONE)");
        Ok(())
    }

    fn is_current(&self, generation: u64) -> bool {
        self.generation.load(Ordering::Acquire) == generation
    }

    /// Runs `apply` (engine work of the link of `generation`) unless a later REPLICAOF or a
    /// promotion superseded that link.
    fn apply_if_current<T>(
        &self,
        generation: u64,
        apply: impl FnOnce() -> Result<T, String>,
    ) -> Result<T, String> {
        let _applying = self.applying.lock();
        if !self.is_current(generation) {
            return Err("the link was replaced by REPLICAOF".into());
        }
        apply()
    }

    /// Starts the link configured at startup (`replicaof` in the config), if any.
    pub fn start(shared: &Arc<Shared>) -> Result<(), String> {
        let configured = shared.config.read().replication.replicaof.clone();
        let Some(text) = configured else {
            return Ok(());
        };
        let (host, port) = crate::config::parse_primary(&text)?;
        shared.replication.replicate(Primary { host, port })
    }
}

/// WAIT: how many replicas acknowledged `offset`, once `replicas` have or `timeout` passed
/// (None: no limit), or the client is killed.
pub async fn wait_for_replicas(
    shared: &Shared,
    replicas: usize,
    offset: Lsn,
    timeout: Option<Duration>,
    client: &ClientHandle,
) -> Reply {
    let replication = &shared.replication;
    let mut acks = replication.subscribe_acks();
    let deadline = timeout.map(|timeout| tokio::time::Instant::now() + timeout);
    loop {
        let count = replication.acked_at_least(offset);
        if count >= replicas {
            return Reply::Integer(count as i64);
        }
        let expiry = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = acks.changed() => {
                if changed.is_err() {
                    return Reply::Integer(count as i64);
                }
            }
            _ = expiry => return Reply::Integer(replication.acked_at_least(offset) as i64),
            _ = client.killed() => return Reply::Integer(count as i64),
        }
    }
}
