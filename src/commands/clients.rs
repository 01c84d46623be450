//! The client registry: what CLIENT LIST / KILL / INFO and INFO `# Clients` see of every
//! connection. A connection task owns its [`ClientState`]; the shared [`ClientHandle`] holds
//! what other clients may read or act on.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::acl::User;
use crate::engine::watch::WatchFlag;
use crate::protocol::ProtocolVersion;

/// How far a client's buffers may move before the shared total follows (see
/// [`ClientHandle::set_buffers`]).
pub const ACCOUNTING_GRAIN: usize = 16 * 1024;

/// What other connections may see or change about one client.
pub struct ClientHandle {
    pub id: u64,
    pub addr: SocketAddr,
    pub local_addr: SocketAddr,
    pub created: Instant,
    pub name: Mutex<Option<String>>,
    pub lib_name: Mutex<Option<String>>,
    pub lib_ver: Mutex<Option<String>>,
    pub db: AtomicU16,
    /// 2 or 3.
    pub resp: AtomicU8,
    /// The last command: (container or command name, subcommand name).
    last_command: Mutex<(&'static str, Option<&'static str>)>,
    /// Milliseconds after `created` of the last command (CLIENT LIST idle=).
    last_active_ms: AtomicU64,
    /// -1 outside MULTI, else the number of queued commands.
    pub multi_len: AtomicU64,
    pub in_multi: AtomicBool,
    /// Unparsed request bytes held (CLIENT LIST qbuf); set through [`Self::set_buffers`].
    query_buffer_bytes: AtomicUsize,
    /// Reply bytes not yet sent (CLIENT LIST omem).
    output_buffer_bytes: AtomicUsize,
    /// The registry's total of every client's buffers, kept up to date by `set_buffers`.
    all_clients_bytes: Arc<AtomicUsize>,
    /// What this client last added to `all_clients_bytes`.
    published_bytes: AtomicUsize,
    /// CLIENT NO-EVICT on: never closed by `maxmemory-clients`.
    pub no_evict: AtomicBool,
    /// The ACL user the client is authenticated as (CLIENT LIST user=, CLIENT KILL USER).
    pub user: Mutex<String>,
    killed: AtomicBool,
    kill_notify: Notify,
}

impl ClientHandle {
    /// Notes what this client's buffers hold now, for CLIENT LIST, INFO and the
    /// `maxmemory-clients` total. Called by the connection's own task only.
    ///
    /// The shared total moves only when this client's figure has moved by more than
    /// [`ACCOUNTING_GRAIN`] since it last did: every connection updates its buffers a few
    /// times per batch, and a shared counter written that often by every core would cost
    /// the hot path more than the bound is worth. The total is right to within the grain
    /// per client. True when this client just added to the total (it grew by a grain).
    pub fn set_buffers(&self, query: usize, output: usize) -> bool {
        self.query_buffer_bytes.store(query, Ordering::Relaxed);
        self.output_buffer_bytes.store(output, Ordering::Relaxed);
        let now = query + output;
        let published = self.published_bytes.load(Ordering::Relaxed);
        let grew = now > published + ACCOUNTING_GRAIN;
        if grew {
            self.all_clients_bytes
                .fetch_add(now - published, Ordering::Relaxed);
        } else if now + ACCOUNTING_GRAIN < published || (now == 0 && published > 0) {
            self.all_clients_bytes
                .fetch_sub(published - now, Ordering::Relaxed);
        } else {
            return false;
        }
        self.published_bytes.store(now, Ordering::Relaxed);
        grew
    }

    /// Query plus output buffer bytes (CLIENT LIST tot-mem).
    pub fn buffer_bytes(&self) -> usize {
        self.query_buffer_bytes.load(Ordering::Relaxed)
            + self.output_buffer_bytes.load(Ordering::Relaxed)
    }

    pub fn kill(&self) {
        self.killed.store(true, Ordering::Relaxed);
        self.kill_notify.notify_one();
    }

    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }

    /// Resolves once CLIENT KILL (or shutdown) targeted this client.
    pub async fn killed(&self) {
        if self.is_killed() {
            return;
        }
        self.kill_notify.notified().await;
    }

    /// Notes the command being run (cheap: no allocation, it runs for every command).
    pub fn touch(&self, command: &'static str, subcommand: Option<&'static str>, at: Instant) {
        *self.last_command.lock() = (command, subcommand);
        let age = at.saturating_duration_since(self.created).as_millis() as u64;
        self.last_active_ms.store(age, Ordering::Relaxed);
    }

    /// One line of CLIENT LIST / CLIENT INFO, in Redis's field order.
    pub fn info_line(&self) -> String {
        let now = Instant::now();
        let age_ms = now.duration_since(self.created).as_millis() as u64;
        let idle = age_ms.saturating_sub(self.last_active_ms.load(Ordering::Relaxed)) / 1000;
        let command = match *self.last_command.lock() {
            (name, Some(sub)) => format!("{name}|{sub}"),
            (name, None) => name.to_string(),
        };
        let multi = if self.in_multi.load(Ordering::Relaxed) {
            self.multi_len.load(Ordering::Relaxed) as i64
        } else {
            -1
        };
        let mut flags = String::new();
        if self.in_multi.load(Ordering::Relaxed) {
            flags.push('x');
        }
        if self.no_evict.load(Ordering::Relaxed) {
            flags.push('e');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        format!(
            "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags={} db={} sub=0 psub=0 ssub=0 multi={} qbuf={} qbuf-free=0 argv-mem=0 multi-mem=0 rbs=16384 rbp=0 obl=0 oll=0 omem={} tot-mem={} events=r cmd={} user={} redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.local_addr,
            self.name.lock().as_deref().unwrap_or(""),
            now.duration_since(self.created).as_secs(),
            idle,
            flags,
            self.db.load(Ordering::Relaxed),
            multi,
            self.query_buffer_bytes.load(Ordering::Relaxed),
            self.output_buffer_bytes.load(Ordering::Relaxed),
            self.query_buffer_bytes.load(Ordering::Relaxed) + self.output_buffer_bytes.load(Ordering::Relaxed),
            command,
            self.user.lock(),
            self.resp.load(Ordering::Relaxed),
            self.lib_name.lock().as_deref().unwrap_or(""),
            self.lib_ver.lock().as_deref().unwrap_or(""),
        )
    }
}

/// Why a connection was not registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterRefusal {
    /// `maxclients` are connected.
    MaxClients,
    /// `security.maxclients_per_ip` are connected from this address.
    MaxClientsPerAddress,
}

impl RegisterRefusal {
    /// The error text (Redis's for maxclients).
    pub fn message(self) -> &'static str {
        match self {
            RegisterRefusal::MaxClients => "max number of clients reached",
            RegisterRefusal::MaxClientsPerAddress => {
                "max number of clients from this address reached"
            }
        }
    }
}

/// Every connected client, by id.
#[derive(Default)]
pub struct ClientRegistry {
    next_id: AtomicU64,
    clients: Mutex<BTreeMap<u64, Arc<ClientHandle>>>,
    /// Every client's query and output buffer bytes (each handle adds its changes).
    all_clients_bytes: Arc<AtomicUsize>,
}

impl ClientRegistry {
    /// Adds a client, unless `maxclients` are connected, or `per_ip` (when not 0) from its
    /// address already are; counted under the registry's lock, so a burst of connections
    /// cannot pass either limit.
    pub fn register(
        &self,
        addr: SocketAddr,
        local_addr: SocketAddr,
        maxclients: usize,
        per_ip: usize,
    ) -> Result<Arc<ClientHandle>, RegisterRefusal> {
        let mut clients = self.clients.lock();
        if clients.len() >= maxclients {
            return Err(RegisterRefusal::MaxClients);
        }
        if per_ip > 0
            && clients
                .values()
                .filter(|client| client.addr.ip() == addr.ip())
                .count()
                >= per_ip
        {
            return Err(RegisterRefusal::MaxClientsPerAddress);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        let handle = Arc::new(ClientHandle {
            id,
            addr,
            local_addr,
            created: now,
            name: Mutex::new(None),
            lib_name: Mutex::new(None),
            lib_ver: Mutex::new(None),
            db: AtomicU16::new(0),
            resp: AtomicU8::new(2),
            last_command: Mutex::new(("NULL", None)),
            last_active_ms: AtomicU64::new(0),
            multi_len: AtomicU64::new(0),
            in_multi: AtomicBool::new(false),
            query_buffer_bytes: AtomicUsize::new(0),
            output_buffer_bytes: AtomicUsize::new(0),
            all_clients_bytes: Arc::clone(&self.all_clients_bytes),
            published_bytes: AtomicUsize::new(0),
            no_evict: AtomicBool::new(false),
            user: Mutex::new("default".into()),
            killed: AtomicBool::new(false),
            kill_notify: Notify::new(),
        });
        clients.insert(id, Arc::clone(&handle));
        Ok(handle)
    }

    pub fn unregister(&self, id: u64) {
        if let Some(gone) = self.clients.lock().remove(&id) {
            let _ = gone.set_buffers(0, 0);
        }
    }

    /// `maxmemory-clients`: while all clients' buffers hold more than `limit`, closes the
    /// client holding the most (CLIENT NO-EVICT ones never), as Redis 7 does. Clients
    /// already closing count as freed. How many were closed.
    pub fn evict_over(&self, limit: usize) -> usize {
        let clients = self.clients.lock();
        let mut total = self.buffer_bytes();
        let mut candidates: Vec<(usize, &Arc<ClientHandle>)> = Vec::new();
        for client in clients.values() {
            // What each client adds to the total; one that adds nothing frees nothing.
            let counted = client.published_bytes.load(Ordering::Relaxed);
            if client.is_killed() {
                total = total.saturating_sub(counted);
            } else if counted > 0 && !client.no_evict.load(Ordering::Relaxed) {
                candidates.push((counted, client));
            }
        }
        candidates.sort_by_key(|(counted, _)| std::cmp::Reverse(*counted));
        let mut evicted = 0;
        for (counted, client) in candidates {
            if total <= limit {
                break;
            }
            tracing::warn!(
                client = client.id,
                addr = %client.addr,
                bytes = client.buffer_bytes(),
                "evicting the client using the most memory (maxmemory-clients)"
            );
            total = total.saturating_sub(counted);
            client.kill();
            evicted += 1;
        }
        evicted
    }

    pub fn all(&self) -> Vec<Arc<ClientHandle>> {
        self.clients.lock().values().cloned().collect()
    }

    pub fn get(&self, id: u64) -> Option<Arc<ClientHandle>> {
        self.clients.lock().get(&id).cloned()
    }

    pub fn connected(&self) -> usize {
        self.clients.lock().len()
    }

    /// Total query and output buffer bytes held by all clients (INFO memory).
    pub fn buffer_bytes(&self) -> usize {
        self.all_clients_bytes.load(Ordering::Relaxed)
    }
}

/// CLIENT REPLY mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyMode {
    On,
    Off,
    /// Just set by CLIENT REPLY SKIP: no reply to it, nor to the next command.
    Skip,
    /// No reply to this command, then back to `On`.
    SkipNext,
}

/// A connection's own state; moves with the command onto a blocking thread when needed.
pub struct ClientState {
    pub handle: Arc<ClientHandle>,
    pub db: u16,
    pub protocol: ProtocolVersion,
    pub authenticated: bool,
    /// The ACL user commands are checked against: `default` until AUTH says otherwise.
    pub user: Arc<User>,
    /// The ACL generation `user` was read at; when the users change, the dispatcher reads
    /// the user again (and closes the client if it was deleted).
    pub acl_generation: u64,
    /// Commands queued since MULTI; `None` outside a transaction.
    pub multi: Option<Vec<Vec<Bytes>>>,
    /// A command failed to queue: EXEC must abort (EXECABORT).
    pub multi_failed: bool,
    pub watch_flag: WatchFlag,
    pub watched: Vec<(u16, Bytes)>,
    pub reply_mode: ReplyMode,
    /// QUIT / a protocol error: close after sending the pending replies.
    pub close_after_reply: bool,
    /// What the last command left for the connection to finish (WAIT, PSYNC).
    pub deferred: Option<crate::commands::replication::Deferred>,
    /// The port a replica announced with REPLCONF listening-port.
    pub replica_port: u16,
}

impl ClientState {
    pub fn new(handle: Arc<ClientHandle>, user: Arc<User>, authenticated: bool) -> Self {
        *handle.user.lock() = user.name.clone();
        ClientState {
            handle,
            db: 0,
            protocol: ProtocolVersion::Resp2,
            authenticated,
            user,
            // Never a real generation: the first command reads the user again.
            acl_generation: u64::MAX,
            multi: None,
            multi_failed: false,
            watch_flag: WatchFlag::default(),
            watched: Vec::new(),
            reply_mode: ReplyMode::On,
            close_after_reply: false,
            deferred: None,
            replica_port: 0,
        }
    }

    /// AUTH / HELLO AUTH succeeded as `user`.
    pub fn log_in(&mut self, user: Arc<User>) {
        *self.handle.user.lock() = user.name.clone();
        self.user = user;
        self.authenticated = true;
    }

    pub fn select(&mut self, db: u16) {
        self.db = db;
        self.handle.db.store(db, Ordering::Relaxed);
    }

    pub fn set_protocol(&mut self, protocol: ProtocolVersion) {
        self.protocol = protocol;
        let resp = match protocol {
            ProtocolVersion::Resp2 => 2,
            ProtocolVersion::Resp3 => 3,
        };
        self.handle.resp.store(resp, Ordering::Relaxed);
    }

    pub fn begin_multi(&mut self) {
        self.multi = Some(Vec::new());
        self.multi_failed = false;
        self.handle.in_multi.store(true, Ordering::Relaxed);
        self.handle.multi_len.store(0, Ordering::Relaxed);
    }

    pub fn queue(&mut self, args: Vec<Bytes>) {
        if let Some(queue) = &mut self.multi {
            queue.push(args);
            self.handle
                .multi_len
                .store(queue.len() as u64, Ordering::Relaxed);
        }
    }

    /// Leaves MULTI, returning the queue.
    pub fn end_multi(&mut self) -> Vec<Vec<Bytes>> {
        self.handle.in_multi.store(false, Ordering::Relaxed);
        self.multi_failed = false;
        self.multi.take().unwrap_or_default()
    }
}
