//! The primary's side of a replica link: a connection that sent PSYNC becomes a feed.
//!
//! A producer thread reads what the replica needs (the snapshot through the engine, then the
//! WAL through a [`WalTail`]) and hands frames to the connection's task over a small bounded
//! channel, so a slow replica slows only its own producer and the log, not memory: the
//! records wait in the WAL, which stays pinned from the oldest record any feed still has to
//! read (a slow transfer never loops into another full sync). The task writes the frames and
//! reads the replica's `REPLCONF ACK`s.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::wire::{self, push_frame};
use super::{PsyncRequest, ReplicaInfo};
use crate::commands::Shared;
use crate::engine::mutation::MutationBatch;
use crate::engine::wal::{Lsn, Wal, WalTail};
use crate::protocol::{parse_command, ParserLimits};

/// Frames in flight between a producer and its connection.
const FRAMES_IN_FLIGHT: usize = 8;
/// Snapshot keys read per SCAN page, and the batch size that ends a snapshot frame.
const SNAPSHOT_PAGE_KEYS: usize = 256;
const SNAPSHOT_FRAME_BYTES: usize = 256 << 10;
/// The most record bytes one frame carries.
const RECORDS_FRAME_BYTES: usize = 1 << 20;
/// How long a producer waits for new records before it sends a heartbeat.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// Serves a replica on `stream` until the link ends. `input` holds what the replica sent after
/// its PSYNC.
pub async fn serve_replica<S>(
    shared: Arc<Shared>,
    stream: S,
    input: BytesMut,
    addr: SocketAddr,
    listening_port: u16,
    request: PsyncRequest,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let Some(wal) = shared.engine.wal().cloned() else {
        let refusal = "-ERR replication needs the WAL on the primary (persistence.wal: true, or --appendonly yes)\r\n";
        let _ = writer.write_all(refusal.as_bytes()).await;
        return;
    };
    let replication = &shared.replication;
    let ids = replication.ids();
    if shared.engine.is_replica()
        && (replication.link_state() != super::LinkState::Connected || !ids.synced)
    {
        // A replica without its primary, or half way through a full sync, holds no
        // history it can vouch for (Redis's answer).
        let refusal = "-NOMASTERLINK Can't SYNC while not connected with my master\r\n";
        let _ = writer.write_all(refusal.as_bytes()).await;
        return;
    }
    let last = wal.last_lsn();
    let resumable = request.offset.filter(|&offset| {
        ids.shares_history(&request.replid, offset, last) && offset + 1 >= wal.oldest_lsn()
    });
    // Registered (and the log pinned) before the snapshot's LSN is taken, so no checkpoint
    // can remove the records after it.
    let (id, info) = replication.add_replica(ReplicaInfo {
        addr,
        listening_port,
        online: AtomicBool::new(resumable.is_some()),
        acked: AtomicU64::new(resumable.unwrap_or(0)),
        acked_at: Mutex::new(Instant::now()),
        reading_from: AtomicU64::new(resumable.map_or(last + 1, |offset| offset + 1)),
    });
    replication.refresh_pin(&shared);
    let (header, start) = match resumable {
        Some(offset) => {
            replication
                .stats
                .sync_partial_ok
                .fetch_add(1, Ordering::Relaxed);
            (
                format!("+CONTINUE {}\r\n", ids.replid),
                Start::After(offset),
            )
        }
        None => {
            if request.offset.is_some() {
                replication
                    .stats
                    .sync_partial_err
                    .fetch_add(1, Ordering::Relaxed);
            }
            replication.stats.sync_full.fetch_add(1, Ordering::Relaxed);
            let at = wal.last_lsn();
            (
                format!("+FULLRESYNC {} {at}\r\n", ids.replid),
                Start::Snapshot(at),
            )
        }
    };
    tracing::info!(%addr, header = header.trim_end(), "replica attached");
    if writer.write_all(header.as_bytes()).await.is_ok() {
        let (frames, mut to_send) = mpsc::channel(FRAMES_IN_FLIGHT);
        let producer = Producer {
            shared: Arc::clone(&shared),
            wal,
            info: Arc::clone(&info),
            frames,
            epoch: replication.feed_epoch.load(Ordering::Acquire),
        };
        let spawned = std::thread::Builder::new()
            .name("replica-feed".into())
            .spawn(move || producer.run(start));
        if spawned.is_ok() {
            pump(
                &shared,
                &mut reader,
                &mut writer,
                input,
                &info,
                &mut to_send,
            )
            .await;
        }
    }
    replication.remove_replica(id, &shared);
    tracing::info!(%addr, "replica detached");
}

/// Writes the producer's frames and reads the replica's acknowledgements until either side
/// ends, the replica is silent for `repl_timeout`, or the server shuts down.
async fn pump<R, W>(
    shared: &Shared,
    reader: &mut R,
    writer: &mut W,
    mut input: BytesMut,
    info: &ReplicaInfo,
    to_send: &mut mpsc::Receiver<Vec<u8>>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let timeout = Duration::from_secs(shared.config.read().replication.repl_timeout.max(1));
    let limits = ParserLimits::default();
    let mut shutdown = shared.shutdown_receiver();
    let mut heard = Instant::now();
    loop {
        if !read_acks(shared, &mut input, &limits, info) {
            return;
        }
        if !info.online.load(Ordering::Acquire) {
            // A replica loading its snapshot sends nothing until it has loaded and saved it.
            heard = Instant::now();
        }
        let silence = timeout.saturating_sub(heard.elapsed());
        tokio::select! {
            frame = to_send.recv() => {
                let Some(frame) = frame else { return };
                match tokio::time::timeout(timeout, writer.write_all(&frame)).await {
                    Ok(Ok(())) => {}
                    _ => return,
                }
            }
            read = reader.read_buf(&mut input) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => heard = Instant::now(),
            },
            _ = tokio::time::sleep(silence) => {
                tracing::warn!(addr = %info.addr, "replica silent for repl-timeout; dropping it");
                return;
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Applies every complete `REPLCONF ACK <offset>` in `input`; false if the replica sent
/// something that is not a command.
fn read_acks(
    shared: &Shared,
    input: &mut BytesMut,
    limits: &ParserLimits,
    info: &ReplicaInfo,
) -> bool {
    loop {
        match parse_command(input, limits) {
            Ok(Some(args)) => {
                let is_ack = args.len() >= 3
                    && args[0].eq_ignore_ascii_case(b"replconf")
                    && args[1].eq_ignore_ascii_case(b"ack");
                if let Some(offset) = is_ack
                    .then(|| std::str::from_utf8(&args[2]).ok()?.parse::<Lsn>().ok())
                    .flatten()
                {
                    shared.replication.note_ack(info, offset);
                }
            }
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

enum Start {
    /// A full sync: the snapshot, then the records after this LSN.
    Snapshot(Lsn),
    /// A partial resync: the records after this LSN.
    After(Lsn),
}

struct Producer {
    shared: Arc<Shared>,
    wal: Arc<Wal>,
    info: Arc<ReplicaInfo>,
    frames: mpsc::Sender<Vec<u8>>,
    /// The node's feed epoch when the feed began: a full sync of this node (a replica that
    /// feeds replicas of its own) replaces its log, and feeds of the old one must end.
    epoch: u64,
}

impl Producer {
    fn run(self, start: Start) {
        let result = match start {
            Start::Snapshot(at) => self.send_snapshot().and_then(|()| self.follow(at)),
            Start::After(offset) => self.follow(offset),
        };
        if let Err(err) = result {
            tracing::warn!(addr = %self.info.addr, %err, "replica feed stopped");
        }
    }

    /// Whether the feed should go on.
    fn live(&self) -> bool {
        !self.frames.is_closed()
            && self.shared.replication.feed_epoch.load(Ordering::Acquire) == self.epoch
            && matches!(
                self.shared.shutdown_requested(),
                crate::commands::ShutdownRequest::Running
            )
    }

    fn send(&self, frame: Vec<u8>) -> Result<(), String> {
        self.frames
            .blocking_send(frame)
            .map_err(|_| "the replica's connection closed".to_string())
    }

    fn send_snapshot(&self) -> Result<(), String> {
        let engine = &self.shared.engine;
        let started = Instant::now();
        let mut batch = MutationBatch::default();
        let mut keys_sent = 0u64;
        for db in 0..engine.databases() {
            let mut cursor = 0;
            loop {
                if !self.live() {
                    return Err("the feed ended during the snapshot".into());
                }
                cursor = engine
                    .snapshot_page(db, cursor, SNAPSHOT_PAGE_KEYS, &mut batch)
                    .map_err(|err| format!("reading the snapshot: {err}"))?;
                if batch.as_bytes().len() >= SNAPSHOT_FRAME_BYTES {
                    keys_sent += self.send_batch(&mut batch)?;
                }
                if cursor == 0 {
                    break;
                }
            }
        }
        keys_sent += self.send_batch(&mut batch)?;
        let mut end = Vec::new();
        push_frame(&mut end, wire::SNAPSHOT_END, &[]);
        self.send(end)?;
        self.info.online.store(true, Ordering::Release);
        tracing::info!(
            addr = %self.info.addr,
            batches = keys_sent,
            seconds = started.elapsed().as_secs_f64(),
            "snapshot sent to replica"
        );
        Ok(())
    }

    /// Sends the batch as a snapshot frame (if it holds anything); returns 1 if it sent one.
    fn send_batch(&self, batch: &mut MutationBatch) -> Result<u64, String> {
        if batch.is_empty() {
            return Ok(0);
        }
        let mut frame = Vec::with_capacity(batch.as_bytes().len() + 5);
        push_frame(&mut frame, wire::SNAPSHOT, batch.as_bytes());
        batch.clear();
        self.send(frame)?;
        Ok(1)
    }

    /// Streams the records after `after` as the log grows.
    fn follow(&self, after: Lsn) -> Result<(), String> {
        let mut tail = WalTail::new(self.wal.dir(), after);
        let mut body = Vec::new();
        while self.live() {
            let written = self
                .wal
                .wait_written(tail.next_lsn() - 1, HEARTBEAT_INTERVAL);
            let mut frame = Vec::new();
            if written >= tail.next_lsn() {
                body.clear();
                tail.read(written, RECORDS_FRAME_BYTES, &mut body)
                    .map_err(|err| err.to_string())?;
                self.info
                    .reading_from
                    .store(tail.next_lsn(), Ordering::Release);
                self.shared.replication.refresh_pin(&self.shared);
                push_frame(&mut frame, wire::RECORDS, &body);
            } else {
                if self.wal.failure().is_some() {
                    // A stopped writer wakes no one: do not spin on it.
                    std::thread::sleep(HEARTBEAT_INTERVAL);
                }
                push_frame(&mut frame, wire::HEARTBEAT, &written.to_le_bytes());
            }
            self.send(frame)?;
        }
        Ok(())
    }
}
