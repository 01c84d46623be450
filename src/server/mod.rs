//! The RESP server: `run(listener, shared)` is its only entry point, used by the binary and
//! the tests alike (CONVENTIONS 5). It accepts connections up to `maxclients`, gives each
//! its own task, batches their cold GETs (`cold_reads`), and on shutdown stops accepting,
//! lets every connection finish the commands it has read, and waits for all of them. It
//! owns sockets and tasks only: what commands see of the server (`Shared`) is the
//! commands' own.

mod cold_reads;
mod connection;
mod instance;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;

use cold_reads::ColdReads;
pub use instance::Instance;
// The state connections share is the commands' (they read and change it); re-exported so
// the server's users find it here.
pub use crate::commands::{
    ClientHandle, ClientRegistry, ClientState, ReplyMode, Shared, ShutdownRequest,
};

/// How inline engine work (a script started on an async worker) leaves its worker before it
/// blocks or runs long: `block_in_place` hands the worker, with its other connections, to a
/// new thread, and this thread runs on outside the runtime's workers until its task next
/// waits. The wait inside lasts until a task spawned now has run, which, with one worker,
/// is once the new thread has the worker (bounded: a busy runtime only delays the handover).
fn leave_async_worker() {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return;
    }
    tokio::task::block_in_place(|| {
        let (ran, handed_over) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            let _ = ran.send(());
        });
        let _ = handed_over.recv_timeout(Duration::from_millis(10));
    });
}

/// Serves `listener` until shutdown is requested, then waits for every connection task.
/// Returns what the shutdown asked for.
pub async fn run(
    listener: TcpListener,
    tls_listener: Option<TcpListener>,
    shared: Arc<Shared>,
) -> ShutdownRequest {
    crate::engine::set_leave_async_worker(leave_async_worker);
    let mut shutdown = shared.shutdown_receiver();
    let cold_readers = shared.config.read().server.cold_readers;
    let cold_reads = Arc::new(ColdReads::start(&shared.engine, cold_readers));
    let mut connections = JoinSet::new();
    loop {
        let (accepted, tls) = tokio::select! {
            accepted = listener.accept() => (accepted, false),
            accepted = accept_on(tls_listener.as_ref()) => (accepted, true),
            _ = shutdown.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
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
        if let Some(refusal) = admission_refusal(&shared, addr) {
            // Said in plain text on either port, as Redis does before any TLS handshake.
            connections.spawn(refuse(stream, addr, refusal));
            continue;
        }
        let (shared, cold_reads) = (Arc::clone(&shared), Arc::clone(&cold_reads));
        if tls {
            connections.spawn(serve_tls(shared, cold_reads, stream, addr));
        } else {
            let local = tcp_local_addr(&stream, addr);
            connections.spawn(connection::serve(shared, cold_reads, stream, addr, local));
        }
    }
    drop(listener);
    for client in shared.clients.all() {
        client.kill();
    }
    // Each connection ends after the command it is running; a command that runs on and
    // on (a long KEYS, DEBUG SLEEP) must not keep the server from saving and exiting.
    let wait = Duration::from_secs(shared.config.read().server.shutdown_timeout);
    let all_ended = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(wait, all_ended).await.is_err() {
        tracing::warn!(
            still_running = connections.len(),
            shutdown_timeout_secs = wait.as_secs(),
            "shutdown-timeout passed with commands still running: saving and exiting without them"
        );
        connections.abort_all();
    }
    cold_reads.stop();
    shared.shutdown_requested()
}

/// Redis's answer to a client protected mode refuses (its text, word for word, so the
/// operator reading it knows the remedies).
const PROTECTED_MODE_DENIED: &[u8] = b"-DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. If you want to connect from external computers to Redis you may adopt one of the following solutions: 1) Just disable protected mode sending the command 'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from the same host the server is running, however MAKE SURE Redis is not publicly accessible from internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just disable the protected mode by editing the Redis configuration file, and setting the protected mode option to 'no', and then restarting the server. 3) If you started the server manually just for testing, restart it with the '--protected-mode no' option. 4) Setup a an authentication password for the default user. NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside.\r\n";

/// The answer to a client from an address the lists (`security.allow`, `security.deny`)
/// keep out.
const ADDRESS_NOT_ALLOWED: &[u8] =
    b"-ERR connections from this address are not allowed (hypercache-allow / hypercache-deny)\r\n";

/// Why a client from `addr` may not connect at all, if it may not: the address lists
/// first, then protected mode.
fn admission_refusal(shared: &Shared, addr: std::net::SocketAddr) -> Option<&'static [u8]> {
    let config = shared.config.read();
    let (refusal, reason) = if !config.security.admits(addr.ip()) {
        shared.stats.connection_rejected();
        (ADDRESS_NOT_ALLOWED, "address list")
    } else if config
        .security
        .protected_mode_refuses(addr.ip(), !shared.acl.default_user().has_nopass())
    {
        (PROTECTED_MODE_DENIED, "protected mode")
    } else {
        return None;
    };
    shared.audit.connection_refused(addr, reason);
    Some(refusal)
}

/// Tells a client why it may not connect, then closes. The write is bounded in time: a
/// client that does not read cannot hold the task.
async fn refuse(
    mut stream: tokio::net::TcpStream,
    addr: std::net::SocketAddr,
    text: &'static [u8],
) {
    use tokio::io::AsyncWriteExt;
    tracing::debug!(%addr, "refused a connection: {}", String::from_utf8_lossy(&text[1..text.len() - 2]));
    let write = async {
        stream.write_all(text).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// How long a TLS client may take to finish its handshake before it is dropped (a client
/// that never does cannot hold a task).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts on `listener`, or never when there is none (the TLS port is off).
async fn accept_on(
    listener: Option<&TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// The local address of an accepted stream, with Nagle off: replies go out as soon as a
/// batch is done.
fn tcp_local_addr(
    stream: &tokio::net::TcpStream,
    peer: std::net::SocketAddr,
) -> std::net::SocketAddr {
    let _ = stream.set_nodelay(true);
    stream.local_addr().unwrap_or(peer)
}

/// Completes a TLS client's handshake with the acceptor current at its arrival, then
/// serves it like any client. A failed or slow handshake only drops that connection.
async fn serve_tls(
    shared: Arc<Shared>,
    cold_reads: Arc<ColdReads>,
    stream: tokio::net::TcpStream,
    addr: std::net::SocketAddr,
) {
    let local = tcp_local_addr(&stream, addr);
    let Some(config) = shared.tls.read().clone() else {
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls_stream)) => connection::serve(shared, cold_reads, tls_stream, addr, local).await,
        Ok(Err(err)) => tracing::debug!(%addr, %err, "TLS handshake failed"),
        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
    }
}
