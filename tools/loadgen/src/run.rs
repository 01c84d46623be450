//! The connection loop and the statistics it keeps.
//!
//! Each connection is one task: it writes a batch of `pipeline` requests with one write, reads
//! the replies in order, checks each against the value its key must hold, and records it in its
//! own `Stats`. Tasks merge into the shared `Aggregate` only when an epoch ends, so the hot loop
//! takes no lock. This module never prints: it hands `Event`s to the caller.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Buf as _, BytesMut};
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::ReadHalf;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::cache::{SetTicket, VersionBook};
use crate::keys::{KeyChooser, KeySpace, MAX_KEYS};
use crate::protocol::{Protocol, Reply};

/// Latencies are recorded in microseconds, 1 µs to 60 s, 3 significant figures.
const LATENCY_MAX_US: u64 = 60_000_000;
const LATENCY_SIGFIG: u8 = 3;
/// Error and wrong-value messages kept for the report; the counters count them all.
pub const MAX_SAMPLES: usize = 5;
/// How much the read buffer grows by before each read.
const READ_CHUNK: usize = 64 * 1024;
/// Epoch length when no `--interval` is asked for: tasks still flush this often, so a stuck
/// connection loses at most this much of its history.
const DEFAULT_EPOCH: Duration = Duration::from_secs(1);
/// After the run's deadline, connections get this long to deliver outstanding replies.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_RETRY: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Read,
    Write,
    /// The SET after a miss (`cache` workload).
    Fill,
}

/// What the connections do.
#[derive(Debug)]
pub enum Workload {
    /// Every key once, in index order, handed out in pipeline-sized chunks to whichever
    /// connection is free (`load` writes, `verify` reads).
    Sweep(OpKind),
    /// Random reads and writes for a fixed time (`run`).
    Mixed(Mix),
}

#[derive(Debug)]
pub struct Mix {
    pub read_ratio: f64,
    /// Fraction of reads that ask for a key nothing ever writes.
    pub absent_ratio: f64,
    pub chooser: KeyChooser,
    pub seed: u64,
    pub warmup: Duration,
    pub duration: Duration,
    /// Cap on requests sent after the warmup, over all connections.
    pub max_requests: Option<u64>,
    /// Requests in flight per connection during the warmup (`Plan::pipeline` after it), so
    /// a warmup that must fill a large cache takes less time.
    pub warmup_pipeline: usize,
    /// Cache-aside (`cache`): versioned values, judged against this book, and every miss
    /// followed by a fill. `None` for `run`.
    pub cache: Option<VersionBook>,
}

#[derive(Debug)]
pub struct Plan {
    /// `host:port`
    pub address: String,
    pub protocol: Protocol,
    pub keys: KeySpace,
    pub connections: usize,
    pub pipeline: usize,
    pub connect_timeout: Duration,
    /// A sweep gives up when no request has been sent for this long.
    pub stall_timeout: Option<Duration>,
    pub workload: Workload,
    /// Length of one entry of the interval series, if the caller wants the series.
    pub interval: Option<Duration>,
}

/// What the caller is told while the run goes on.
pub enum Event<'a> {
    /// Once a second during a sweep.
    Progress { keys_sent: u64, elapsed: Duration },
    /// One entry of the interval series, once it is complete.
    Interval(&'a IntervalStats),
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Reads of present and absent keys.
    pub reads: u64,
    pub writes: u64,
    /// SETs that fill a key after a miss (`cache` workload).
    pub fills: u64,
    /// Present-key reads that returned the right value.
    pub hits: u64,
    /// Present-key reads that returned nil.
    pub misses: u64,
    pub absent_reads: u64,
    pub absent_hits: u64,
    pub wrong_values: u64,
    pub errors: u64,
}

impl Counters {
    fn add(&mut self, other: &Counters) {
        self.reads += other.reads;
        self.writes += other.writes;
        self.fills += other.fills;
        self.hits += other.hits;
        self.misses += other.misses;
        self.absent_reads += other.absent_reads;
        self.absent_hits += other.absent_hits;
        self.wrong_values += other.wrong_values;
        self.errors += other.errors;
    }

    pub fn ops(&self) -> u64 {
        self.reads + self.writes + self.fills
    }

    /// Over present-key reads; `None` when there were none.
    pub fn hit_ratio(&self) -> Option<f64> {
        let asked = self.hits + self.misses;
        (asked > 0).then(|| self.hits as f64 / asked as f64)
    }

    /// Anything that makes the exit status non-zero.
    pub fn failures(&self) -> u64 {
        self.wrong_values + self.absent_hits + self.errors
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, LATENCY_SIGFIG).expect("valid bounds")
}

fn add_histogram(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    into.add(from).expect("histograms share their bounds");
}

/// Everything measured over the whole run.
#[derive(Debug, Clone)]
pub struct Stats {
    pub counters: Counters,
    pub read_latency: Histogram<u64>,
    pub write_latency: Histogram<u64>,
    pub error_samples: Vec<String>,
    pub wrong_value_samples: Vec<String>,
}

impl Stats {
    fn new() -> Self {
        Self {
            counters: Counters::default(),
            read_latency: new_histogram(),
            write_latency: new_histogram(),
            error_samples: Vec::new(),
            wrong_value_samples: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.counters == Counters::default()
    }

    fn merge(&mut self, other: &Stats) {
        self.counters.add(&other.counters);
        add_histogram(&mut self.read_latency, &other.read_latency);
        add_histogram(&mut self.write_latency, &other.write_latency);
        for (into, from) in [
            (&mut self.error_samples, &other.error_samples),
            (&mut self.wrong_value_samples, &other.wrong_value_samples),
        ] {
            let room = MAX_SAMPLES.saturating_sub(into.len());
            into.extend(from.iter().take(room).cloned());
        }
    }

    fn reset(&mut self) {
        self.counters = Counters::default();
        self.read_latency.reset();
        self.write_latency.reset();
        self.error_samples.clear();
        self.wrong_value_samples.clear();
    }

    pub fn all_latency(&self) -> Histogram<u64> {
        let mut all = self.read_latency.clone();
        add_histogram(&mut all, &self.write_latency);
        all
    }

    fn add_error(&mut self, message: impl FnOnce() -> String) {
        self.counters.errors += 1;
        if self.error_samples.len() < MAX_SAMPLES {
            self.error_samples.push(message());
        }
    }
}

/// One entry of the interval series: reads and writes share one histogram to keep the
/// series small.
#[derive(Debug, Clone)]
pub struct IntervalStats {
    /// Since the end of the warmup.
    pub end: Duration,
    /// Shorter than the interval for the last one when the duration is not a multiple.
    pub length: Duration,
    pub counters: Counters,
    pub latency: Histogram<u64>,
}

pub struct Outcome {
    pub stats: Stats,
    pub intervals: Vec<IntervalStats>,
    /// The measured window: from the end of the warmup until the last connection finished.
    pub elapsed: Duration,
}

struct Aggregate {
    stats: Stats,
    intervals: Vec<IntervalStats>,
    /// When the last connection stopped sending and receiving: the end of the measured
    /// window, which leaves out the final merges into this aggregate.
    finished: Option<Instant>,
}

struct Shared {
    stop: AtomicBool,
    /// Next key index a sweep hands out.
    next_key: AtomicU64,
    /// Requests sent after the warmup, for `Mix::max_requests`.
    measured_requests: AtomicU64,
    measure_start: Instant,
    epoch: Duration,
    /// The measured duration of a timed run; replies after it (the drain) are counted in its
    /// last epoch.
    window: Option<Duration>,
    aggregate: Mutex<Aggregate>,
}

impl Shared {
    fn aggregate(&self) -> MutexGuard<'_, Aggregate> {
        // A task that panicked mid-merge leaves counters that are still worth reporting.
        self.aggregate
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn epoch_of(&self, arrival: Instant) -> usize {
        let since = arrival.saturating_duration_since(self.measure_start);
        let epoch = (since.as_nanos() / self.epoch.as_nanos()) as usize;
        self.epoch_count()
            .map_or(epoch, |count| epoch.min(count - 1))
    }

    fn epoch_count(&self) -> Option<usize> {
        self.window
            .map(|window| (window.as_nanos().div_ceil(self.epoch.as_nanos()) as usize).max(1))
    }

    /// The interval entry for `epoch`, and those before it if they do not exist yet.
    fn interval<'a>(&self, aggregate: &'a mut Aggregate, epoch: usize) -> &'a mut IntervalStats {
        while aggregate.intervals.len() <= epoch {
            let start = self.epoch * aggregate.intervals.len() as u32;
            let end = self.window.map_or(start + self.epoch, |window| {
                (start + self.epoch).min(window.max(start))
            });
            aggregate.intervals.push(IntervalStats {
                end,
                length: end - start,
                counters: Counters::default(),
                latency: new_histogram(),
            });
        }
        &mut aggregate.intervals[epoch]
    }
}

#[derive(Debug, Clone, Copy)]
struct PendingOp {
    kind: OpKind,
    index: u64,
    absent: bool,
    /// `cache` workload: a SET's version and floor, or the floor a GET is held to.
    ticket: SetTicket,
}

const NO_TICKET: SetTicket = SetTicket {
    version: 0,
    floor_on_ack: 0,
};

impl PendingOp {
    fn new(kind: OpKind, index: u64) -> Self {
        Self {
            kind,
            index,
            absent: false,
            ticket: NO_TICKET,
        }
    }

    /// Issues the op against the version book, if the workload keeps one.
    fn issued(mut self, book: Option<&VersionBook>) -> Self {
        if let Some(book) = book {
            self.ticket = match self.kind {
                OpKind::Read => SetTicket {
                    version: 0,
                    floor_on_ack: book.floor(self.index),
                },
                OpKind::Write => book.begin_set(self.index, true),
                OpKind::Fill => book.begin_set(self.index, false),
            };
        }
        self
    }
}

impl Plan {
    fn cache(&self) -> Option<&VersionBook> {
        match &self.workload {
            Workload::Mixed(mix) => mix.cache.as_ref(),
            Workload::Sweep(_) => None,
        }
    }

    /// The next batch: in a mixed workload, the fills owed by this connection's misses
    /// first, then new operations.
    fn fill_batch(
        &self,
        shared: &Shared,
        rng: &mut SmallRng,
        now: Instant,
        fills: &mut VecDeque<u64>,
        batch: &mut Vec<PendingOp>,
    ) {
        let pipeline = self.pipeline as u64;
        match &self.workload {
            Workload::Sweep(kind) => {
                let first = shared.next_key.fetch_add(pipeline, Ordering::Relaxed);
                let end = (first.saturating_add(pipeline)).min(self.keys.count());
                batch.extend((first..end).map(|index| PendingOp::new(*kind, index)));
            }
            Workload::Mixed(mix) => {
                let mut size = if now < shared.measure_start {
                    mix.warmup_pipeline as u64
                } else {
                    pipeline
                };
                if let Some(max) = mix.max_requests {
                    if now >= shared.measure_start {
                        let sent = shared.measured_requests.fetch_add(size, Ordering::Relaxed);
                        size = size.min(max.saturating_sub(sent));
                    }
                }
                let book = mix.cache.as_ref();
                let owed = fills.len().min(size as usize);
                batch.extend(
                    fills
                        .drain(..owed)
                        .map(|index| PendingOp::new(OpKind::Fill, index).issued(book)),
                );
                batch.extend((owed as u64..size).map(|_| {
                    // `random::<f64>()` is in [0, 1): a ratio of 1 always and 0 never passes.
                    if rng.random::<f64>() < mix.read_ratio {
                        if rng.random::<f64>() < mix.absent_ratio {
                            PendingOp {
                                absent: true,
                                ..PendingOp::new(OpKind::Read, rng.random_range(0..MAX_KEYS))
                            }
                        } else {
                            PendingOp::new(OpKind::Read, mix.chooser.choose(rng)).issued(book)
                        }
                    } else {
                        PendingOp::new(OpKind::Write, mix.chooser.choose(rng)).issued(book)
                    }
                }));
            }
        }
    }

    fn encode(&self, op: &PendingOp, key: &mut Vec<u8>, request: &mut Vec<u8>) {
        if op.absent {
            self.keys.write_absent_key(key, op.index);
        } else {
            self.keys.write_key(key, op.index);
        }
        let cache = self.cache().is_some();
        match op.kind {
            OpKind::Read => self.protocol.push_get(request, key),
            OpKind::Write | OpKind::Fill => {
                self.protocol
                    .push_set(request, key, self.keys.value_size(), |out| {
                        if cache {
                            let version = u64::from(op.ticket.version);
                            self.keys.push_versioned_value(out, op.index, version)
                        } else {
                            self.keys.push_value(out, op.index)
                        }
                    })
            }
        }
    }
}

/// A connection's own statistics for the current epoch.
struct Recorder {
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    stats: Stats,
    epoch: usize,
    /// Keys this connection missed and still has to fill (`cache` workload).
    fills: VecDeque<u64>,
}

impl Recorder {
    fn new(plan: Arc<Plan>, shared: Arc<Shared>) -> Self {
        Self {
            plan,
            shared,
            stats: Stats::new(),
            epoch: 0,
            fills: VecDeque::new(),
        }
    }

    /// Called once per read that brought replies, before recording them.
    fn enter_epoch_of(&mut self, arrival: Instant) {
        let epoch = self.shared.epoch_of(arrival);
        if epoch != self.epoch {
            self.flush();
            self.epoch = epoch;
        }
    }

    fn flush(&mut self) {
        if self.stats.is_empty() {
            return;
        }
        let mut aggregate = self.shared.aggregate();
        aggregate.stats.merge(&self.stats);
        let interval = self.shared.interval(&mut aggregate, self.epoch);
        interval.counters.add(&self.stats.counters);
        add_histogram(&mut interval.latency, &self.stats.read_latency);
        add_histogram(&mut interval.latency, &self.stats.write_latency);
        drop(aggregate);
        self.stats.reset();
    }

    /// Judges one reply. During the warmup only failures are counted: a wrong value is a
    /// bug whenever it happens.
    fn record(&mut self, op: &PendingOp, reply: Reply<'_>, latency_us: u64, measuring: bool) {
        let keys = &self.plan.keys;
        let stats = &mut self.stats;
        let measured = u64::from(measuring);
        if let Some(book) = self.plan.cache() {
            let exchange = (op, reply, latency_us, measuring);
            return record_cache(&self.plan, book, stats, &mut self.fills, exchange);
        }
        match op.kind {
            OpKind::Read => {
                if measuring {
                    stats.read_latency.saturating_record(latency_us);
                }
                stats.counters.reads += measured;
                match (op.absent, reply) {
                    (false, Reply::Value(data)) => match keys.check_value(op.index, data) {
                        Ok(()) => stats.counters.hits += measured,
                        Err(mismatch) => {
                            stats.counters.wrong_values += 1;
                            if stats.wrong_value_samples.len() < MAX_SAMPLES {
                                stats
                                    .wrong_value_samples
                                    .push(format!("{}: {mismatch}", keys.key_name(op.index)));
                            }
                        }
                    },
                    (false, Reply::Nil) => stats.counters.misses += measured,
                    (true, Reply::Nil) => stats.counters.absent_reads += measured,
                    (true, Reply::Value(_)) => {
                        stats.counters.absent_reads += measured;
                        stats.counters.absent_hits += 1;
                        // Counted as an absent hit, not also as an error; the sample
                        // says which key.
                        if stats.error_samples.len() < MAX_SAMPLES {
                            let mut name = Vec::new();
                            keys.write_absent_key(&mut name, op.index);
                            stats.error_samples.push(format!(
                                "GET of absent key {} returned a value",
                                String::from_utf8_lossy(&name)
                            ));
                        }
                    }
                    (_, other) => stats.add_error(|| format!("GET: {}", describe(&other))),
                }
            }
            OpKind::Write | OpKind::Fill => {
                if measuring {
                    stats.write_latency.saturating_record(latency_us);
                }
                stats.counters.writes += measured;
                if !is_stored(self.plan.protocol, &reply) {
                    stats.add_error(|| format!("SET: {}", describe(&reply)));
                }
            }
        }
    }
}

fn is_stored(protocol: Protocol, reply: &Reply<'_>) -> bool {
    matches!(reply, Reply::Status(status) if *status == protocol.stored_status())
}

/// `Recorder::record` for the cache-aside workload: a value read back must be one some SET
/// wrote for that key and not one the request order rules out (see `cache`); a miss queues
/// a fill on this connection (during the warmup too: the warmup fills the cache).
fn record_cache(
    plan: &Plan,
    book: &VersionBook,
    stats: &mut Stats,
    fills: &mut VecDeque<u64>,
    (op, reply, latency_us, measuring): (&PendingOp, Reply<'_>, u64, bool),
) {
    let keys = &plan.keys;
    let measured = u64::from(measuring);
    match op.kind {
        OpKind::Read => {
            if measuring {
                stats.read_latency.saturating_record(latency_us);
            }
            stats.counters.reads += measured;
            match reply {
                Reply::Value(data) => {
                    let verdict = keys
                        .check_versioned_value(op.index, data)
                        .map_err(|mismatch| mismatch.to_string())
                        .and_then(|version| {
                            book.judge(op.index, version, op.ticket.floor_on_ack)
                                .map_err(|staleness| staleness.to_string())
                        });
                    match verdict {
                        Ok(()) => stats.counters.hits += measured,
                        Err(why) => {
                            stats.counters.wrong_values += 1;
                            if stats.wrong_value_samples.len() < MAX_SAMPLES {
                                stats
                                    .wrong_value_samples
                                    .push(format!("{}: {why}", keys.key_name(op.index)));
                            }
                        }
                    }
                }
                Reply::Nil => {
                    stats.counters.misses += measured;
                    fills.push_back(op.index);
                }
                other => stats.add_error(|| format!("GET: {}", describe(&other))),
            }
        }
        OpKind::Write | OpKind::Fill => {
            if measuring {
                stats.write_latency.saturating_record(latency_us);
                if op.kind == OpKind::Fill {
                    stats.counters.fills += 1;
                } else {
                    stats.counters.writes += 1;
                }
            }
            let stored = is_stored(plan.protocol, &reply);
            book.end_set(op.index, op.ticket, stored);
            if !stored {
                let what = if op.kind == OpKind::Fill {
                    "fill SET"
                } else {
                    "SET"
                };
                stats.add_error(|| format!("{what}: {}", describe(&reply)));
            }
        }
    }
}

/// For error messages only.
fn describe(reply: &Reply<'_>) -> String {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    match reply {
        Reply::Error(message) => text(message),
        Reply::Status(status) => format!("unexpected status {}", text(status)),
        Reply::Integer(n) => format!("unexpected integer {n}"),
        Reply::Value(data) => format!("unexpected {}-byte value", data.len()),
        Reply::Nil => "unexpected nil".into(),
        Reply::Aggregate(n) => format!("unexpected {n}-element aggregate"),
        Reply::Scalar(scalar) => format!("unexpected {}", text(scalar)),
    }
}

async fn connect(address: &str, timeout: Duration) -> Result<TcpStream, String> {
    let give_up = Instant::now() + timeout;
    loop {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                // Requests are written in whole batches; Nagle would only delay them.
                stream
                    .set_nodelay(true)
                    .map_err(|e| format!("{address}: {e}"))?;
                return Ok(stream);
            }
            Err(e) if Instant::now() >= give_up => {
                return Err(format!("cannot connect to {address}: {e}"));
            }
            Err(_) => tokio::time::sleep(CONNECT_RETRY).await,
        }
    }
}

async fn drive_connection(
    id: usize,
    stream: TcpStream,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
) -> Result<(), String> {
    let mut recorder = Recorder::new(plan, shared);
    let result = exchange_batches(id, stream, &mut recorder).await;
    let finished = Instant::now();
    recorder.flush();
    let mut aggregate = recorder.shared.aggregate();
    aggregate.finished = Some(
        aggregate
            .finished
            .map_or(finished, |last| last.max(finished)),
    );
    drop(aggregate);
    result.map_err(|e| format!("connection {id}: {e}"))
}

async fn exchange_batches(
    id: usize,
    mut stream: TcpStream,
    recorder: &mut Recorder,
) -> io::Result<()> {
    let plan = Arc::clone(&recorder.plan);
    let shared = Arc::clone(&recorder.shared);
    let seed = match &plan.workload {
        Workload::Mixed(mix) => mix.seed,
        Workload::Sweep(_) => 0,
    };
    let mut rng = SmallRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let (mut reader, mut writer) = stream.split();
    let mut batch = Vec::with_capacity(plan.pipeline);
    let mut key = Vec::with_capacity(64);
    // Grows to the largest batch once and keeps that capacity.
    let mut request = Vec::new();
    let mut replies = BytesMut::with_capacity(READ_CHUNK);
    while !shared.stop.load(Ordering::Relaxed) {
        batch.clear();
        plan.fill_batch(
            &shared,
            &mut rng,
            Instant::now(),
            &mut recorder.fills,
            &mut batch,
        );
        if batch.is_empty() {
            break;
        }
        request.clear();
        for op in &batch {
            plan.encode(op, &mut key, &mut request);
        }
        let sent = Instant::now();
        // Written and read concurrently: a batch of large values could otherwise fill both
        // socket buffers and deadlock with the server.
        tokio::try_join!(
            writer.write_all(&request),
            read_replies(&mut reader, &mut replies, &batch, sent, recorder),
        )?;
    }
    Ok(())
}

async fn read_replies(
    reader: &mut ReadHalf<'_>,
    replies: &mut BytesMut,
    batch: &[PendingOp],
    sent: Instant,
    recorder: &mut Recorder,
) -> io::Result<()> {
    let protocol = recorder.plan.protocol;
    let measure_start = recorder.shared.measure_start;
    let mut answered = 0;
    let mut arrival = sent;
    loop {
        let mut consumed = 0;
        while answered < batch.len() {
            let parsed = protocol
                .parse_reply(&replies[consumed..])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let Some((reply, len)) = parsed else { break };
            consumed += len;
            let latency_us = arrival.saturating_duration_since(sent).as_micros() as u64;
            recorder.record(
                &batch[answered],
                reply,
                latency_us,
                arrival >= measure_start,
            );
            answered += 1;
        }
        replies.advance(consumed);
        if answered == batch.len() {
            return Ok(());
        }
        replies.reserve(READ_CHUNK);
        if reader.read_buf(replies).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "server closed the connection with {} replies outstanding",
                    batch.len() - answered
                ),
            ));
        }
        arrival = Instant::now();
        recorder.enter_epoch_of(arrival);
    }
}

/// Stops the connections still waiting for replies; returns the error to report.
async fn abort_stuck(
    tasks: &mut JoinSet<Result<(), String>>,
    shared: &Shared,
    why: String,
) -> String {
    let stuck = tasks.len();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    shared.aggregate().finished = Some(Instant::now());
    format!("{stuck} connections stopped: {why}")
}

/// Connects every connection, runs the workload, and returns what was measured. `Err` only
/// when the server cannot be reached at all; everything after that is counted, not fatal.
pub async fn execute(plan: Plan, mut on_event: impl FnMut(Event<'_>)) -> Result<Outcome, String> {
    let mut streams = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        streams.push(connect(&plan.address, plan.connect_timeout).await?);
    }

    let start = Instant::now();
    let (measure_start, deadline) = match &plan.workload {
        Workload::Sweep(_) => (start, None),
        Workload::Mixed(mix) => (start + mix.warmup, Some(start + mix.warmup + mix.duration)),
    };
    let window = match &plan.workload {
        Workload::Sweep(_) => None,
        Workload::Mixed(mix) => Some(mix.duration),
    };
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        next_key: AtomicU64::new(0),
        measured_requests: AtomicU64::new(0),
        measure_start,
        epoch: plan.interval.unwrap_or(DEFAULT_EPOCH),
        window,
        aggregate: Mutex::new(Aggregate {
            stats: Stats::new(),
            intervals: Vec::new(),
            finished: None,
        }),
    });
    let plan = Arc::new(plan);
    let mut tasks = JoinSet::new();
    for (id, stream) in streams.into_iter().enumerate() {
        tasks.spawn(drive_connection(
            id,
            stream,
            Arc::clone(&plan),
            Arc::clone(&shared),
        ));
    }

    // Sweeps report progress each second; timed runs report each interval a little after it
    // ends, to give connections a chance to flush it.
    let (first_tick, tick_period) = match (&plan.workload, plan.interval) {
        (Workload::Sweep(_), _) => (start + DEFAULT_EPOCH, DEFAULT_EPOCH),
        (Workload::Mixed(_), Some(interval)) => {
            let grace = (interval / 4).min(Duration::from_millis(250));
            (measure_start + interval + grace, interval)
        }
        (Workload::Mixed(_), None) => {
            (start + Duration::from_secs(3600), Duration::from_secs(3600))
        }
    };
    let mut ticker = tokio::time::interval_at(first_tick.into(), tick_period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let full_intervals = match (&plan.workload, plan.interval) {
        (Workload::Mixed(mix), Some(interval)) => {
            (mix.duration.as_nanos() / interval.as_nanos()) as usize
        }
        _ => 0,
    };
    let mut intervals_reported = 0;
    let far_future = start + Duration::from_secs(100 * 365 * 24 * 3600);
    let stop_at = deadline.unwrap_or(far_future);
    let mut stopping = false;
    let mut connection_errors = Vec::new();
    // A sweep's progress is the next key handed out: (that key, when it last moved).
    let mut last_progress = (0, start);

    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(message))) => connection_errors.push(message),
                Some(Err(join_error)) => connection_errors.push(join_error.to_string()),
            },
            _ = ticker.tick() => match &plan.workload {
                Workload::Sweep(_) => {
                    let next_key = shared.next_key.load(Ordering::Relaxed);
                    on_event(Event::Progress {
                        keys_sent: next_key.min(plan.keys.count()),
                        elapsed: start.elapsed(),
                    });
                    let stalled_for = last_progress.1.elapsed();
                    if next_key != last_progress.0 {
                        last_progress = (next_key, Instant::now());
                    } else if let Some(limit) =
                        plan.stall_timeout.filter(|&limit| stalled_for >= limit)
                    {
                        let why = format!(
                            "no request sent for {:.1}s: the server stopped answering",
                            limit.as_secs_f64()
                        );
                        connection_errors.push(abort_stuck(&mut tasks, &shared, why).await);
                        break;
                    }
                }
                Workload::Mixed(_) => {
                    if intervals_reported < full_intervals {
                        let mut aggregate = shared.aggregate();
                        on_event(Event::Interval(shared.interval(&mut aggregate, intervals_reported)));
                        intervals_reported += 1;
                    }
                }
            },
            _ = tokio::time::sleep_until(stop_at.into()), if !stopping => {
                shared.stop.store(true, Ordering::Relaxed);
                stopping = true;
            }
            _ = tokio::time::sleep_until((stop_at + DRAIN_TIMEOUT).into()), if stopping => {
                connection_errors.push(abort_stuck(&mut tasks, &shared, format!(
                    "no reply {}s after the end of the run",
                    DRAIN_TIMEOUT.as_secs()
                )).await);
                break;
            }
        }
    }

    let mut aggregate = shared.aggregate();
    if plan.interval.is_some() {
        for index in intervals_reported..shared.epoch_count().unwrap_or(0) {
            on_event(Event::Interval(shared.interval(&mut aggregate, index)));
        }
    }
    for message in connection_errors {
        aggregate.stats.add_error(|| message);
    }
    Ok(Outcome {
        stats: aggregate.stats.clone(),
        intervals: aggregate.intervals.clone(),
        elapsed: aggregate.finished.map_or(Duration::ZERO, |end| {
            end.saturating_duration_since(measure_start)
        }),
    })
}
