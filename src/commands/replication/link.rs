//! The replica's side: one thread per REPLICAOF that connects to the primary, authenticates,
//! asks `PSYNC`, loads a snapshot when told `+FULLRESYNC`, then applies the primary's records
//! in order and acknowledges its offset after each batch and every second. On any error the
//! link is dropped and made again (a partial resync from the replica's last LSN), backing off
//! up to a second; a REPLICAOF that changes the primary, or a promotion, ends the thread.
//!
//! Blocking sockets with a short read timeout: every wait is bounded, so the thread notices a
//! new REPLICAOF, a shutdown or a silent primary within a second.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ids::ReplIds;
use super::wire::{self, parse_frame};
use super::{LinkState, Primary};
use crate::commands::{Shared, ShutdownRequest};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TICK: Duration = Duration::from_millis(100);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const ACK_INTERVAL: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

pub(super) fn start(shared: Arc<Shared>, primary: Primary, generation: u64) {
    let spawned = std::thread::Builder::new()
        .name("replica-link".into())
        .spawn(move || run(&shared, &primary, generation));
    if let Err(err) = spawned {
        tracing::error!(%err, "cannot start the replica link thread");
    }
}

fn current(shared: &Shared, generation: u64) -> bool {
    shared.replication.is_current(generation)
        && matches!(shared.shutdown_requested(), ShutdownRequest::Running)
}

fn run(shared: &Shared, primary: &Primary, generation: u64) {
    let mut backoff = Duration::from_millis(50);
    while current(shared, generation) {
        let result = session(shared, primary, generation);
        if !current(shared, generation) {
            break;
        }
        shared.replication.set_link(LinkState::Connecting);
        match result {
            Ok(()) => backoff = Duration::from_millis(50),
            Err(err) => {
                tracing::warn!(host = %primary.host, port = primary.port, %err, "replication link down; reconnecting");
                let until = Instant::now() + backoff;
                while Instant::now() < until && current(shared, generation) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// A connection to the primary, with what was read and not yet used.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn command(&mut self, args: &[&[u8]]) -> Result<(), String> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        self.stream
            .write_all(&out)
            .map_err(|err| format!("writing to the primary: {err}"))
    }

    /// Reads more into `buf`; false if the read timed out.
    fn fill(&mut self) -> Result<bool, String> {
        let mut chunk = [0u8; 64 << 10];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err("the primary closed the link".into()),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(err) => Err(format!("reading from the primary: {err}")),
        }
    }

    /// One reply line (without `\r\n`), within the handshake timeout.
    fn line(&mut self) -> Result<String, String> {
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        loop {
            if let Some(end) = self.buf.windows(2).position(|pair| pair == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return Ok(line);
            }
            if Instant::now() >= deadline {
                return Err("the primary did not answer the handshake".into());
            }
            self.fill()?;
        }
    }

    fn expect_ok(&mut self, what: &str) -> Result<(), String> {
        let line = self.line()?;
        if line.starts_with('+') {
            Ok(())
        } else {
            Err(format!("{what}: {line}"))
        }
    }

    /// The next whole frame, or None if none arrived within a read tick.
    fn frame(&mut self) -> Result<Option<(u8, Vec<u8>)>, String> {
        loop {
            if let Some(frame) = parse_frame(&self.buf)? {
                let (kind, body, used) = (frame.kind, frame.body.to_vec(), frame.len);
                self.buf.drain(..used);
                return Ok(Some((kind, body)));
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    fn ack(&mut self, offset: u64) -> Result<(), String> {
        self.command(&[b"REPLCONF", b"ACK", offset.to_string().as_bytes()])
    }
}

fn connect(shared: &Shared, primary: &Primary) -> Result<Conn, String> {
    let addr = (primary.host.as_str(), primary.port)
        .to_socket_addrs()
        .map_err(|err| format!("cannot resolve {}: {err}", primary.host))?
        .next()
        .ok_or_else(|| format!("no address for {}", primary.host))?;
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .map_err(|err| format!("cannot connect to {addr}: {err}"))?;
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(READ_TICK))
        .and_then(|()| stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT)))
        .map_err(|err| err.to_string())?;
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
    };
    let (user, password) = {
        let config = shared.config.read();
        (
            config.replication.masteruser.clone(),
            config.replication.masterauth.clone(),
        )
    };
    if let Some(password) = password {
        match &user {
            Some(user) => conn.command(&[b"AUTH", user.as_bytes(), password.as_bytes()])?,
            None => conn.command(&[b"AUTH", password.as_bytes()])?,
        }
        conn.expect_ok("AUTH at the primary failed")?;
    }
    conn.command(&[
        b"REPLCONF",
        b"listening-port",
        shared.port.to_string().as_bytes(),
    ])?;
    conn.expect_ok("the primary refused REPLCONF")?;
    Ok(conn)
}

/// One connection's life: handshake, sync, then records until an error or a new REPLICAOF.
fn session(shared: &Shared, primary: &Primary, generation: u64) -> Result<(), String> {
    let replication = &shared.replication;
    let engine = &shared.engine;
    let wal = engine.wal().cloned().ok_or("replication needs the WAL")?;
    let mut conn = connect(shared, primary)?;
    let ids = replication.ids();
    match ids.psync_request(wal.last_lsn()) {
        Some((replid, offset)) => {
            conn.command(&[b"PSYNC", replid.as_bytes(), offset.to_string().as_bytes()])?
        }
        None => conn.command(&[b"PSYNC", b"?", b"-1"])?,
    }
    let answer = conn.line()?;
    let words: Vec<&str> = answer.split_whitespace().collect();
    match words.as_slice() {
        ["+FULLRESYNC", replid, offset] => {
            let lsn = offset
                .parse()
                .map_err(|_| format!("bad FULLRESYNC offset in '{answer}'"))?;
            full_sync(shared, &mut conn, replid, lsn, generation)?;
        }
        ["+CONTINUE", rest @ ..] => {
            let last = wal.last_lsn();
            // Under the link's generation: a promotion meanwhile keeps its own ids.
            replication.apply_if_current(generation, || {
                if let Some(replid) = rest.first().filter(|id| **id != ids.replid) {
                    replication.set_ids(ids.switched(replid, last));
                } else if !ids.replica {
                    replication.set_ids(ReplIds {
                        replica: true,
                        ..ids.clone()
                    });
                }
                Ok(())
            })?;
            tracing::info!(offset = last, "partial resync with the primary accepted");
        }
        _ => return Err(format!("the primary refused PSYNC: {answer}")),
    }
    replication.set_link(LinkState::Connected);
    replication.note_link_io();
    conn.ack(wal.last_lsn())?;
    follow(shared, &mut conn, generation)
}

/// Replaces this node's data with the primary's snapshot at `lsn`.
fn full_sync(
    shared: &Shared,
    conn: &mut Conn,
    replid: &str,
    lsn: u64,
    generation: u64,
) -> Result<(), String> {
    let replication = &shared.replication;
    let engine = &shared.engine;
    let started = Instant::now();
    tracing::info!(lsn, "full sync from the primary: loading its snapshot");
    replication.set_link(LinkState::Syncing);
    // This node's own replicas followed the log being replaced.
    replication.feed_epoch.fetch_add(1, Ordering::AcqRel);
    replication.apply_if_current(generation, || {
        replication.set_ids(ReplIds::following(replid, false));
        engine
            .begin_full_sync(lsn)
            .map_err(|err| format!("cannot empty the data for a full sync: {err}"))
    })?;
    let mut batches = 0u64;
    let timeout = repl_timeout(shared);
    let mut heard = Instant::now();
    loop {
        if !current(shared, generation) {
            return Err("REPLICAOF changed during the full sync".into());
        }
        let Some((kind, body)) = conn.frame()? else {
            if heard.elapsed() > timeout {
                return Err("the primary went silent during the full sync".into());
            }
            continue;
        };
        heard = Instant::now();
        match kind {
            wire::SNAPSHOT => {
                replication.apply_if_current(generation, || {
                    engine
                        .load_snapshot_batch(&body)
                        .map_err(|err| format!("cannot load the snapshot: {err}"))
                })?;
                batches += 1;
            }
            wire::SNAPSHOT_END => break,
            wire::HEARTBEAT => {}
            other => return Err(format!("unexpected frame {other} during the snapshot")),
        }
    }
    replication.apply_if_current(generation, || {
        engine
            .finish_full_sync()
            .map_err(|err| format!("cannot save the snapshot: {err}"))?;
        replication.set_ids(ReplIds::following(replid, true));
        Ok(())
    })?;
    tracing::info!(
        lsn,
        batches,
        seconds = started.elapsed().as_secs_f64(),
        "full sync loaded"
    );
    Ok(())
}

fn repl_timeout(shared: &Shared) -> Duration {
    Duration::from_secs(shared.config.read().replication.repl_timeout.max(1))
}

/// Applies the primary's records as they come, acknowledging after each batch and every
/// second, until an error, a silent primary, or a new REPLICAOF.
fn follow(shared: &Shared, conn: &mut Conn, generation: u64) -> Result<(), String> {
    let replication = &shared.replication;
    let engine = &shared.engine;
    let wal = engine.wal().cloned().ok_or("replication needs the WAL")?;
    let timeout = repl_timeout(shared);
    let mut last_ack = Instant::now();
    while current(shared, generation) {
        if let Some((kind, body)) = conn.frame()? {
            replication.note_link_io();
            match kind {
                wire::RECORDS => {
                    replication.apply_if_current(generation, || {
                        for record in wire::records(&body) {
                            let (lsn, payload) = record?;
                            engine
                                .apply_replicated(lsn, payload)
                                .map_err(|err| format!("cannot apply record {lsn}: {err}"))?;
                        }
                        Ok(())
                    })?;
                    conn.ack(wal.last_lsn())?;
                    last_ack = Instant::now();
                }
                wire::HEARTBEAT => {}
                other => return Err(format!("unexpected frame {other} in the record stream")),
            }
        }
        if last_ack.elapsed() >= ACK_INTERVAL {
            conn.ack(wal.last_lsn())?;
            last_ack = Instant::now();
        }
        if replication.link_idle() > timeout {
            return Err("no data from the primary for repl-timeout".into());
        }
    }
    Ok(())
}
