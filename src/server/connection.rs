//! One client connection. The `Connection` owns the read buffer and the write buffer
//! (CONVENTIONS 4): it runs every complete command in the read buffer, appends each reply
//! to the write buffer, and writes the whole batch with one syscall before reading again.
//! Commands that need disk I/O run on a blocking thread; the task waits for them, so
//! replies always leave in request order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::ColdReads;
use crate::commands::dispatch::{self, Plan};
use crate::commands::replication::{serve_replica, wait_for_replicas, Deferred, PsyncRequest};
use crate::commands::{error_reply, CommandError, ErrorCode};
use crate::commands::{ClientState, ReplyMode, Shared};
use crate::config::SyncPolicy;
use crate::protocol::{parse_command, write_reply, ParserLimits, ProtocolVersion, Reply};

const READ_CHUNK: usize = 16 * 1024;
/// Pending replies past which a connection sends them before it runs its next command
/// (issue 19, backpressure): a client that pipelines many large GETs and never reads holds
/// at most this plus one reply, not the whole pipeline's replies.
const OUTPUT_BACKPRESSURE_BYTES: usize = 64 * 1024;
/// A buffer left larger than this by a big request or reply goes back to `READ_CHUNK` once
/// empty, so one large value does not keep its memory for the connection's lifetime.
const SHRINK_BUFFER_ABOVE: usize = 256 * 1024;
/// How long a killed client's last replies may take to send.
const KILLED_FLUSH_LIMIT: Duration = Duration::from_secs(1);
/// While a reply waits for the WAL's fsync (`sync: always`), how often the wait checks whether
/// the WAL's writes are failing (then the client is closed rather than kept waiting).
const DURABILITY_FAILURE_CHECK: Duration = Duration::from_millis(100);

/// A client's byte stream: plain TCP, or TLS over it.
pub(super) trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> ClientStream for S {}

pub(super) async fn serve<S: ClientStream>(
    shared: Arc<Shared>,
    cold_reads: Arc<ColdReads>,
    mut stream: S,
    addr: SocketAddr,
    local_addr: SocketAddr,
) {
    let (maxclients, per_ip) = {
        let config = shared.config.read();
        (config.server.maxclients, config.security.maxclients_per_ip)
    };
    let registered = shared
        .clients
        .register(addr, local_addr, maxclients, per_ip);
    let handle = match registered {
        Ok(handle) => handle,
        Err(refused) => {
            shared.stats.connection_rejected();
            shared.audit.connection_refused(addr, refused.message());
            let mut refusal = BytesMut::new();
            let reply = error_reply(ErrorCode::Err, refused.message());
            write_reply(&mut refusal, &reply, ProtocolVersion::Resp2);
            let _ = stream.write_all(&refusal).await;
            return;
        }
    };
    let id = handle.id;
    let user = shared.acl.default_user();
    let authenticated = user.needs_no_password();
    let mut connection = Connection {
        client: Some(Box::new(ClientState::new(handle, user, authenticated))),
        shared: Arc::clone(&shared),
        cold_reads,
        stream,
        read_buf: BytesMut::with_capacity(READ_CHUNK),
        write_buf: BytesMut::with_capacity(READ_CHUNK),
        over_soft_limit_since: None,
        output_limits: OutputLimits::default(),
        rate: CommandRate::new(),
        client_memory_limit: 0,
        feed: None,
    };
    connection.run().await;
    if let Some(client) = connection.client.take() {
        dispatch::forget_client(&shared, &client);
    }
    shared.clients.unregister(id);
}

struct Connection<S> {
    shared: Arc<Shared>,
    cold_reads: Arc<ColdReads>,
    stream: S,
    read_buf: BytesMut,
    write_buf: BytesMut,
    /// None only while a command runs on a blocking thread.
    client: Option<Box<ClientState>>,
    /// When pending output first went over the soft limit (and has stayed over since).
    over_soft_limit_since: Option<Instant>,
    /// The output limits, read from the live config once per batch of commands.
    output_limits: OutputLimits,
    /// `security.max_commands_per_second` for this client.
    rate: CommandRate,
    /// `maxmemory-clients` in bytes (0 = none), read from the live config once per batch.
    client_memory_limit: usize,
    /// A replica's PSYNC: once the replies before it are out, the connection becomes its feed.
    feed: Option<PsyncRequest>,
}

/// A token bucket of one second's commands: a client may run `rate` commands in a burst,
/// then one every 1/`rate` s.
struct CommandRate {
    tokens: f64,
    refilled: Instant,
}

impl CommandRate {
    fn new() -> Self {
        CommandRate {
            tokens: f64::MAX,
            refilled: Instant::now(),
        }
    }

    /// Takes a token for the next command; None if there was one (or no limit), else how
    /// long to wait for it.
    fn wait_before_next(&mut self, rate: u64) -> Option<Duration> {
        if rate == 0 {
            return None;
        }
        let rate = rate as f64;
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * rate;
        self.tokens = (self.tokens.min(rate) + earned).min(rate);
        self.refilled = now;
        self.tokens -= 1.0;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / rate))
    }
}

#[derive(Clone, Copy, Default)]
struct OutputLimits {
    hard: usize,
    soft: usize,
    soft_seconds: u64,
}

/// Why the connection ends.
enum Close {
    Now,
}

impl<S: ClientStream> Connection<S> {
    fn client(&self) -> &ClientState {
        self.client
            .as_ref()
            .expect("client state is home between commands")
    }

    async fn run(&mut self) {
        let _ = self.serve_until_closed().await;
        let _ = self.flush().await;
        if let Some(request) = self.feed.take() {
            let client = self.client();
            let (addr, port) = (client.handle.addr, client.replica_port);
            let input = std::mem::take(&mut self.read_buf);
            let shared = Arc::clone(&self.shared);
            serve_replica(shared, &mut self.stream, input, addr, port, request).await;
        }
    }

    async fn serve_until_closed(&mut self) -> Result<(), Close> {
        let mut shutdown = self.shared.shutdown_receiver();
        loop {
            self.run_buffered_commands().await?;
            self.flush().await?;
            if self.client().close_after_reply || self.feed.is_some() {
                return Err(Close::Now);
            }
            let (query_limit, timeout) = {
                let config = self.shared.config.read();
                (
                    config.limits.client_query_buffer_limit.0 as usize,
                    config.server.timeout,
                )
            };
            if self.read_buf.len() >= query_limit {
                tracing::warn!(
                    client = self.client().handle.id,
                    bytes = self.read_buf.len(),
                    "closing client that reached max query buffer length"
                );
                return Err(Close::Now);
            }
            if self.read_buf.is_empty() && self.read_buf.capacity() > SHRINK_BUFFER_ABOVE {
                self.read_buf = BytesMut::with_capacity(READ_CHUNK);
            }
            self.read_buf.reserve(READ_CHUNK);
            let handle = Arc::clone(&self.client().handle);
            let idle = async {
                if timeout == 0 {
                    std::future::pending::<()>().await
                } else {
                    tokio::time::sleep(Duration::from_secs(timeout)).await
                }
            };
            tokio::select! {
                read = self.stream.read_buf(&mut self.read_buf) => match read {
                    Ok(0) | Err(_) => return Err(Close::Now),
                    Ok(n) => {
                        self.shared.stats.net_input(n);
                        self.note_buffers();
                    }
                },
                _ = handle.killed() => return Err(Close::Now),
                _ = idle => return Err(Close::Now),
                _ = shutdown.changed() => return Err(Close::Now),
            }
        }
    }

    /// Runs every complete command in the read buffer, appending replies.
    async fn run_buffered_commands(&mut self) -> Result<(), Close> {
        // The live settings, read once per batch of commands.
        let (mut limits, rate) = {
            let config = self.shared.config.read();
            self.output_limits = OutputLimits {
                hard: config.limits.client_output_buffer_hard_limit.0 as usize,
                soft: config.limits.client_output_buffer_soft_limit.0 as usize,
                soft_seconds: config.limits.client_output_buffer_soft_seconds,
            };
            self.client_memory_limit = config.client_memory_limit();
            let limits = ParserLimits {
                max_bulk_len: config.limits.proto_max_bulk_len.0 as usize,
                client_memory_limit: self.client_memory_limit,
                ..ParserLimits::default()
            };
            (limits, config.security.max_commands_per_second)
        };
        loop {
            if self.client().handle.is_killed() {
                return Err(Close::Now);
            }
            // Per command: an AUTH earlier in the same pipeline lifts the limits for the rest.
            limits.unauthenticated = !self.client().authenticated;
            if self.write_buf.len() >= OUTPUT_BACKPRESSURE_BYTES {
                // Replies go out as they are made; a client that does not read them stops
                // its own pipeline here (and, reading nothing more, its sender).
                self.flush().await?;
            }
            match parse_command(&mut self.read_buf, &limits) {
                Ok(Some(args)) => {
                    if let Some(wait) = self.rate.wait_before_next(rate) {
                        // Over its rate: the replies so far go out, then this client waits
                        // (and, as it reads nothing meanwhile, its sender slows down too).
                        self.shared.stats.rate_limited_commands.add(1);
                        self.flush().await?;
                        tokio::time::sleep(wait).await;
                    }
                    self.execute(args).await;
                    if self.client().close_after_reply || self.feed.is_some() {
                        return Ok(());
                    }
                    self.check_output_limit()?;
                }
                Ok(None) => {
                    self.note_buffers();
                    return Ok(());
                }
                Err(err) => {
                    // Protocol errors end this connection only, after telling the client why.
                    let reply = error_reply(ErrorCode::Err, &err.to_string());
                    let protocol = self.client().protocol;
                    write_reply(&mut self.write_buf, &reply, protocol);
                    return Err(Close::Now);
                }
            }
        }
    }

    async fn execute(&mut self, args: Vec<Bytes>) {
        // WAIT's deferred answer belongs to WAIT itself, not to an EXEC that ran one.
        let is_wait = args[0].len() == 4 && args[0].eq_ignore_ascii_case(b"wait");
        let mut client = self.client.take().expect("client state is home");
        let reply = match dispatch::plan(&self.shared, &mut client, &args) {
            Plan::Reply(reply) => reply,
            Plan::Run(job) => {
                let mut result = job.run_without_blocking(&self.shared, &mut client, &args);
                if let (Err(CommandError::WouldBlock), Some(command)) =
                    (&result, job.batchable_get(&args))
                {
                    // A GET that must read the cold tier: batched with other clients'.
                    let batched = self.cold_reads.get(client.db, args[1].clone());
                    if let Some(answer) = batched.await {
                        result = dispatch::run_batched_get(
                            &self.shared,
                            &mut client,
                            command,
                            &args,
                            answer,
                        );
                    }
                }
                match result {
                    Err(CommandError::WouldBlock) => {
                        let (back, reply) = self
                            .on_blocking_thread(client, args, move |shared, client, args| {
                                job.run(shared, client, args)
                            })
                            .await;
                        client = back;
                        reply
                    }
                    result => result.unwrap_or_else(CommandError::into_reply),
                }
            }
        };
        let reply = match client.deferred.take() {
            Some(Deferred::Feed(request)) => {
                // The feed writes its own first line (+FULLRESYNC / +CONTINUE).
                self.feed = Some(request);
                self.client = Some(client);
                return;
            }
            Some(Deferred::Wait {
                replicas,
                offset,
                timeout,
            }) if is_wait => {
                // Replies before WAIT go out first; the wait holds no thread.
                self.flush().await.ok();
                wait_for_replicas(&self.shared, replicas, offset, timeout, &client.handle).await
            }
            _ => reply,
        };
        match client.reply_mode {
            ReplyMode::On => write_reply(&mut self.write_buf, &reply, client.protocol),
            ReplyMode::Skip => client.reply_mode = ReplyMode::SkipNext,
            ReplyMode::SkipNext => client.reply_mode = ReplyMode::On,
            ReplyMode::Off => {}
        }
        self.client = Some(client);
    }

    /// Runs `work` where it may block, handing the client state there and back.
    async fn on_blocking_thread(
        &self,
        mut client: Box<ClientState>,
        args: Vec<Bytes>,
        work: impl FnOnce(&Shared, &mut ClientState, &[Bytes]) -> Reply + Send + 'static,
    ) -> (Box<ClientState>, Reply) {
        let shared = Arc::clone(&self.shared);
        let handle = Arc::clone(&client.handle);
        let shared_for_panic = Arc::clone(&self.shared);
        let outcome = tokio::task::spawn_blocking(move || {
            let reply = work(&shared, &mut client, &args);
            (client, reply)
        })
        .await;
        match outcome {
            Ok(done) => done,
            Err(err) => {
                // A panicking command must not take the server down; this client is closed.
                tracing::error!(%err, client = handle.id, "command panicked");
                let user = shared_for_panic.acl.default_user();
                let mut client = Box::new(ClientState::new(handle, user, false));
                client.close_after_reply = true;
                (
                    client,
                    error_reply(ErrorCode::Err, "internal error while running the command"),
                )
            }
        }
    }

    /// Notes what this client's buffers hold and, when its growth takes all clients past
    /// `maxmemory-clients`, closes the clients holding the most (this one, if it is the
    /// largest). Only growth looks: clients that are not growing cost nothing here.
    fn note_buffers(&self) {
        let Some(client) = &self.client else {
            return;
        };
        let grew = client
            .handle
            .set_buffers(self.read_buf.len(), self.write_buf.len());
        let limit = self.client_memory_limit;
        if grew && limit > 0 && self.shared.clients.buffer_bytes() > limit {
            let evicted = self.shared.clients.evict_over(limit);
            self.shared.stats.evicted_clients.add(evicted as i64);
        }
    }

    /// Redis's client-output-buffer-limit for normal clients: over the hard limit closes
    /// at once; over the soft limit for longer than soft_seconds closes too.
    fn check_output_limit(&mut self) -> Result<(), Close> {
        let pending = self.write_buf.len();
        let OutputLimits {
            hard,
            soft,
            soft_seconds,
        } = self.output_limits;
        if hard > 0 && pending > hard {
            tracing::warn!(
                client = self.client().handle.id,
                bytes = pending,
                "closing client over the output buffer hard limit"
            );
            return Err(Close::Now);
        }
        if soft > 0 && pending > soft {
            let since = *self.over_soft_limit_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(soft_seconds) {
                tracing::warn!(
                    client = self.client().handle.id,
                    bytes = pending,
                    "closing client over the output buffer soft limit"
                );
                return Err(Close::Now);
            }
        } else {
            self.over_soft_limit_since = None;
        }
        Ok(())
    }

    /// With `sync: always`, replies leave only once the WAL is fsynced past every record
    /// appended so far, which covers every write this batch made (I5): one fsync acknowledges
    /// every client waiting behind it (group commit). Reads wait too, so no client ever sees
    /// a value a crash could take back. If the WAL failed, the connection closes instead of
    /// acknowledging writes that are not durable.
    async fn wait_until_durable(&self) -> Result<(), Close> {
        let engine = &self.shared.engine;
        let Some(wal) = engine.wal() else {
            return Ok(());
        };
        if engine.sync_policy() != Some(SyncPolicy::Always) {
            return Ok(());
        }
        let target = wal.last_lsn();
        if wal.durable_lsn() >= target {
            return Ok(());
        }
        let mut durable = wal.subscribe_durable();
        loop {
            // While the WAL's writes fail (a full disk) it retries for as long as it takes;
            // a client is not kept waiting that long, it is closed unacknowledged, as when the
            // log has stopped. Its writes are applied and reach the log once the disk recovers.
            let waited = tokio::time::timeout(
                DURABILITY_FAILURE_CHECK,
                durable.wait_for(|lsn| *lsn >= target),
            )
            .await;
            match waited {
                Ok(Ok(_)) => return Ok(()),
                Err(_still_waiting) if wal.failure().is_none() => continue,
                // The writer stopped, or its writes are failing.
                Ok(Err(_)) | Err(_) => {}
            }
            tracing::error!(
                client = self.client().handle.id,
                "the WAL failed before these writes were durable; closing the client unacknowledged"
            );
            return Err(Close::Now);
        }
    }

    async fn flush(&mut self) -> Result<(), Close> {
        if self.write_buf.is_empty() {
            return Ok(());
        }
        self.wait_until_durable().await?;
        let written = self.write_buf.len();
        self.note_buffers();
        // A client that never reads must not hold its task past CLIENT KILL or eviction.
        let result = match &self.client {
            // Already killed (CLIENT KILL ... SKIPME no, eviction): what is pending still
            // goes out, as Redis replies before it closes, but only briefly.
            Some(client) if client.handle.is_killed() => {
                tokio::time::timeout(KILLED_FLUSH_LIMIT, self.stream.write_all(&self.write_buf))
                    .await
                    .map_err(|_| Close::Now)
                    .and_then(|written| written.map_err(|_| Close::Now))
            }
            Some(client) => {
                let handle = Arc::clone(&client.handle);
                tokio::select! {
                    written = self.stream.write_all(&self.write_buf) => written.map_err(|_| Close::Now),
                    _ = handle.killed() => Err(Close::Now),
                }
            }
            None => self
                .stream
                .write_all(&self.write_buf)
                .await
                .map_err(|_| Close::Now),
        };
        self.write_buf.clear();
        if self.write_buf.capacity() > SHRINK_BUFFER_ABOVE {
            self.write_buf = BytesMut::with_capacity(READ_CHUNK);
        }
        self.note_buffers();
        self.shared.stats.net_output(written);
        result
    }
}
