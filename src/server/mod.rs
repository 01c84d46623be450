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

/// Serves `listener` until shutdown is requested, then waits for every connection task.
/// Returns what the shutdown asked for.
pub async fn run(listener: TcpListener, shared: Arc<Shared>) -> ShutdownRequest {
    let mut shutdown = shared.shutdown_receiver();
    let cold_readers = shared.config.read().server.cold_readers;
    let cold_reads = Arc::new(ColdReads::start(&shared.engine, cold_readers));
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
                let (shared, cold_reads) = (Arc::clone(&shared), Arc::clone(&cold_reads));
                connections.spawn(connection::serve(shared, cold_reads, stream, addr));
            }
            _ = shutdown.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
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
