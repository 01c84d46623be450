//! `hypercache-loadgen`: loads, exercises and verifies a RESP or memcached server, checking
//! every value it reads byte for byte. This file owns the command line and the exit status
//! only; see README.md for the JSON report's fields.

mod cache;
mod keys;
mod protocol;
mod report;
mod run;
mod sim;

use std::io::{self, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory as _, Parser, Subcommand};

use cache::{VersionBook, MAX_CACHE_KEYS};
use keys::{DistributionKind, KeyChooser, KeySpace, KEY_DIGITS, MAX_KEYS, VERSIONED_HEADER};
use protocol::Protocol;
use report::{IntervalReport, Report, Setup, SimReport};
use run::{Event, Mix, OpKind, Plan, Workload};
use sim::{Lru, SimPlan, MAX_SIM_KEYS};

#[derive(Debug, Parser)]
#[command(name = "hypercache-loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write every key 0..N exactly once.
    Load(SweepArgs),
    /// Random reads and writes for a fixed time, verifying every value read.
    Run(RunArgs),
    /// Read every key 0..N once; exit 0 only if all are present and correct.
    Verify(VerifyArgs),
    /// Cache-aside traffic for a fixed time: a GET that misses is followed by a SET of the
    /// key (a fill); values are versioned and every one read back is checked against the
    /// writes that could have produced it. Start from an empty server.
    Cache(RunArgs),
    /// The `cache` workload's operation sequence through an exact LRU of a byte capacity,
    /// single-threaded: the hit ratio a perfect LRU cache of that size reaches.
    SimulateLru(SimArgs),
}

/// The keys and values, shared by the traffic commands and the simulation.
#[derive(Debug, Args)]
struct DataArgs {
    /// Number of keys: key i is the prefix followed by i as 12 digits.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=MAX_KEYS))]
    keys: u64,
    /// Bytes per value; a value is derived from its key's index alone (`cache`: and its
    /// version).
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// Absent keys are named `<prefix>absent:<12 digits>`.
    #[arg(long, default_value = "key:", value_parser = parse_key_prefix)]
    key_prefix: String,
}

/// What each operation of `run`, `cache` and `simulate-lru` does.
#[derive(Debug, Args)]
struct MixArgs {
    /// Fraction of operations that are reads; the rest are writes.
    #[arg(long, default_value_t = 0.9, value_parser = parse_fraction)]
    read_ratio: f64,
    /// How keys are picked; Zipf ranks are scattered over the key space by a fixed
    /// permutation, the Gaussian is centred on the middle key.
    #[arg(long, value_enum, default_value_t = DistributionKind::Uniform)]
    distribution: DistributionKind,
    /// Zipf exponent; rank 0 is the most popular key.
    #[arg(long, default_value_t = 0.99, value_parser = parse_non_negative)]
    zipf_s: f64,
    /// Standard deviation as a fraction of --keys, centred on the middle key.
    #[arg(long, default_value_t = 0.1, value_parser = parse_non_negative)]
    gaussian_stddev: f64,
    /// Seed of the per-connection random streams, for reproducible key sequences.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl MixArgs {
    fn chooser(&self, keys: u64) -> KeyChooser {
        KeyChooser::new(self.distribution, keys, self.zipf_s, self.gaussian_stddev)
    }
}

#[derive(Debug, Args)]
struct Common {
    /// Server address (use a loopback address for tests on a shared machine).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 6379)]
    port: u16,
    /// `resp` (Redis and compatibles) or `memcache` (memcached text protocol).
    #[arg(long, value_enum, default_value_t = Protocol::Resp)]
    protocol: Protocol,
    #[command(flatten)]
    data: DataArgs,
    /// TCP connections, each one task.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    connections: u64,
    /// Tokio worker threads; 1 leaves the other core to the server under test.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    threads: u64,
    /// Print the report as one JSON object on stdout (progress goes to stderr).
    #[arg(long)]
    json: bool,
    /// Seconds to keep retrying to connect, so a script can start the tool right after the
    /// server.
    #[arg(long, default_value_t = 5.0, value_parser = parse_seconds)]
    connect_timeout: f64,
}

#[derive(Debug, Args)]
struct SweepArgs {
    #[command(flatten)]
    common: Common,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pipeline: u64,
    /// Seconds without a request sent (a server that stopped answering) before giving up.
    #[arg(long, default_value_t = 30.0, value_parser = parse_positive_seconds)]
    stall_timeout: f64,
}

impl SweepArgs {
    fn plan(&self, kind: OpKind) -> Plan {
        Plan {
            stall_timeout: Some(Duration::from_secs_f64(self.stall_timeout)),
            ..self.common.plan(self.pipeline, Workload::Sweep(kind), None)
        }
    }
}

#[derive(Debug, Args)]
struct VerifyArgs {
    #[command(flatten)]
    sweep: SweepArgs,
    /// Exit 0 even if keys are missing (a server that evicts loses keys); wrong values and
    /// errors still fail.
    #[arg(long)]
    allow_missing: bool,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pipeline: u64,
    /// Seconds of measured traffic.
    #[arg(long, value_parser = parse_positive_seconds)]
    duration: f64,
    /// Stop after this many requests (counted after the warmup), if sooner.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    requests: Option<u64>,
    #[command(flatten)]
    mix: MixArgs,
    /// Fraction of reads that ask for keys nothing ever writes (`run` only).
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    absent_ratio: f64,
    /// Seconds of traffic before measuring (failures are still counted).
    #[arg(long, default_value_t = 0.0, value_parser = parse_seconds)]
    warmup: f64,
    /// Requests in flight per connection during the warmup [default: --pipeline]; a deeper
    /// pipeline fills a large cache sooner.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    warmup_pipeline: Option<u64>,
    /// Print one line per interval of this many seconds (and add the series to the JSON).
    #[arg(long, value_parser = parse_positive_seconds)]
    interval: Option<f64>,
}

#[derive(Debug, Args)]
struct SimArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    mix: MixArgs,
    /// Bytes the simulated cache holds, e.g. 320mb (Redis units: k = 1000, kb = 1024, ...).
    #[arg(long, value_parser = parse_size)]
    capacity_bytes: u64,
    /// Bytes charged per entry on top of its key and value.
    #[arg(long, default_value_t = 0)]
    entry_overhead: u64,
    /// Operation streams, one per connection of the live run being modelled (each seeded
    /// as that connection is), taken in turn.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    connections: u64,
    /// Operations (reads and writes; fills come on top) counted.
    #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    ops: u64,
    /// Operations before counting starts [default: 3 x --keys].
    #[arg(long)]
    warmup_ops: Option<u64>,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// A size in bytes with Redis's units (case-insensitive): `b`, `k` = 1000, `kb` = 1024,
/// `m`, `mb`, `g`, `gb`.
fn parse_size(text: &str) -> Result<u64, String> {
    let lower = text.to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 1048576, 64mb or 1gb"))?;
    let multiplier: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return Err(format!("unknown unit {unit:?} (b, k, kb, m, mb, g, gb)")),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

fn parse_float(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err("must be finite".into())
    }
}

fn parse_non_negative(text: &str) -> Result<f64, String> {
    let value = parse_float(text)?;
    if value >= 0.0 {
        Ok(value)
    } else {
        Err("must be >= 0".into())
    }
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    let value = parse_float(text)?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err("must be between 0 and 1".into())
    }
}

/// Also bounded above, so that `Duration::from_secs_f64` cannot panic.
fn parse_seconds(text: &str) -> Result<f64, String> {
    let value = parse_non_negative(text)?;
    if value <= 1e9 {
        Ok(value)
    } else {
        Err("too many seconds".into())
    }
}

fn parse_positive_seconds(text: &str) -> Result<f64, String> {
    let value = parse_seconds(text)?;
    if value >= 0.001 {
        Ok(value)
    } else {
        Err("must be at least 0.001".into())
    }
}

/// Memcached keys end at the first space or control character.
fn parse_key_prefix(text: &str) -> Result<String, String> {
    if text.bytes().any(|b| b <= b' ' || b == 0x7f) {
        Err("must not contain spaces or control characters".into())
    } else {
        Ok(text.to_string())
    }
}

impl RunArgs {
    fn mixed(&self, command: &'static str, cache: Option<VersionBook>) -> (&Common, Plan, Setup) {
        let common = &self.common;
        let mix = Mix {
            read_ratio: self.mix.read_ratio,
            absent_ratio: self.absent_ratio,
            chooser: self.mix.chooser(common.data.keys),
            seed: self.mix.seed,
            warmup: Duration::from_secs_f64(self.warmup),
            duration: Duration::from_secs_f64(self.duration),
            max_requests: self.requests,
            warmup_pipeline: self.warmup_pipeline.unwrap_or(self.pipeline) as usize,
            cache,
        };
        let interval = self.interval.map(Duration::from_secs_f64);
        (
            common,
            common.plan(self.pipeline, Workload::Mixed(mix), interval),
            common.setup(command, self.pipeline, interval.is_some()),
        )
    }
}

/// Exits as clap does for bad arguments (status 2).
fn usage_error(message: &str) -> ! {
    Cli::command()
        .error(clap::error::ErrorKind::ArgumentConflict, message)
        .exit()
}

fn simulate_lru(args: &SimArgs) -> ExitCode {
    let data = &args.data;
    if data.keys > MAX_SIM_KEYS {
        usage_error(&format!("simulate-lru: at most {MAX_SIM_KEYS} keys"));
    }
    let key_bytes = (data.key_prefix.len() + KEY_DIGITS) as u64;
    let charge = key_bytes + data.value_size as u64 + args.entry_overhead;
    let plan = SimPlan {
        chooser: args.mix.chooser(data.keys),
        read_ratio: args.mix.read_ratio,
        seed: args.mix.seed,
        streams: args.connections,
        warmup_ops: args
            .warmup_ops
            .unwrap_or_else(|| data.keys.saturating_mul(3)),
        ops: args.ops,
    };
    let mut lru = Lru::new(data.keys, args.capacity_bytes, charge);
    let started = std::time::Instant::now();
    let counts = sim::simulate(&plan, &mut lru);
    let report = SimReport {
        command: "simulate-lru",
        keys: data.keys,
        value_size: data.value_size,
        key_bytes,
        entry_overhead: args.entry_overhead,
        entry_charge: charge,
        capacity_bytes: args.capacity_bytes,
        capacity_entries: args.capacity_bytes / charge,
        distribution: args.mix.distribution,
        zipf_s: args.mix.zipf_s,
        read_ratio: args.mix.read_ratio,
        seed: args.mix.seed,
        connections: args.connections,
        warmup_ops: plan.warmup_ops,
        ops: counts.reads + counts.writes + counts.fills,
        reads: counts.reads,
        writes: counts.writes,
        fills: counts.fills,
        hits: counts.hits,
        misses: counts.misses,
        hit_ratio: counts.hit_ratio(),
        evictions: lru.evictions,
        entries: lru.len(),
        used_bytes: lru.used_bytes(),
        elapsed_secs: started.elapsed().as_secs_f64(),
    };
    let mut stdout = io::stdout().lock();
    let written = if args.json {
        report.write_json(&mut stdout)
    } else {
        report.write_text(&mut stdout)
    };
    match written.and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hypercache-loadgen: writing the report: {e}");
            ExitCode::FAILURE
        }
    }
}

impl Common {
    fn plan(&self, pipeline: u64, workload: Workload, interval: Option<Duration>) -> Plan {
        Plan {
            address: format!("{}:{}", self.host, self.port),
            protocol: self.protocol,
            keys: KeySpace::new(&self.data.key_prefix, self.data.keys, self.data.value_size),
            connections: self.connections as usize,
            pipeline: pipeline as usize,
            connect_timeout: Duration::from_secs_f64(self.connect_timeout),
            stall_timeout: None,
            workload,
            interval,
        }
    }

    fn setup(&self, command: &'static str, pipeline: u64, intervals_requested: bool) -> Setup {
        Setup {
            command,
            protocol: self.protocol,
            address: format!("{}:{}", self.host, self.port),
            connections: self.connections as usize,
            pipeline: pipeline as usize,
            keys: self.data.keys,
            value_size: self.data.value_size,
            intervals_requested,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (common, plan, setup) = match &cli.command {
        Command::Load(args) => (
            &args.common,
            args.plan(OpKind::Write),
            args.common.setup("load", args.pipeline, false),
        ),
        Command::Verify(args) => {
            let sweep = &args.sweep;
            (
                &sweep.common,
                sweep.plan(OpKind::Read),
                sweep.common.setup("verify", sweep.pipeline, false),
            )
        }
        Command::Run(args) => args.mixed("run", None),
        Command::Cache(args) => {
            let data = &args.common.data;
            if args.absent_ratio > 0.0 {
                usage_error("cache: --absent-ratio is for `run` only");
            }
            if data.value_size < VERSIONED_HEADER {
                usage_error(&format!(
                    "cache: --value-size must be at least {VERSIONED_HEADER} (the version header)"
                ));
            }
            if data.keys > MAX_CACHE_KEYS {
                usage_error(&format!("cache: at most {MAX_CACHE_KEYS} keys"));
            }
            args.mixed("cache", Some(VersionBook::new(data.keys)))
        }
        Command::SimulateLru(args) => return simulate_lru(args),
    };

    let runtime = if common.threads == 1 {
        // One thread: no cross-thread wakeups, which matters when the client is the
        // bottleneck on a small machine.
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(common.threads as usize)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");

    let json = common.json;
    let key_count = common.data.keys;
    let command = setup.command;
    let outcome = runtime.block_on(run::execute(plan, |event| match event {
        Event::Progress { keys_sent, elapsed } => {
            eprintln!(
                "{command}: {keys_sent}/{key_count} keys sent ({:.1}%), {:.0} keys/s",
                keys_sent as f64 * 100.0 / key_count as f64,
                keys_sent as f64 / elapsed.as_secs_f64()
            );
        }
        Event::Interval(stats) => {
            let line = IntervalReport::new(stats).text_line();
            if json {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
    }));
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(message) => {
            eprintln!("hypercache-loadgen: {message}");
            return ExitCode::FAILURE;
        }
    };

    let report = Report::new(setup, &outcome);
    let mut stdout = io::stdout().lock();
    let written = if json {
        report.write_json(&mut stdout)
    } else {
        report.write_text(&mut stdout)
    };
    if let Err(e) = written.and_then(|()| stdout.flush()) {
        eprintln!("hypercache-loadgen: writing the report: {e}");
        return ExitCode::FAILURE;
    }

    let counters = &outcome.stats.counters;
    let missing_fails = match &cli.command {
        Command::Verify(args) => !args.allow_missing && counters.misses > 0,
        _ => false,
    };
    if counters.failures() > 0 || missing_fails {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
