//! `hypercache-loadgen`: loads, exercises and verifies a RESP or memcached server, checking
//! every value it reads byte for byte. This file owns the command line and the exit status
//! only; see README.md for the JSON report's fields.

mod keys;
mod protocol;
mod report;
mod run;

use std::io::{self, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use keys::{DistributionKind, KeyChooser, KeySpace, MAX_KEYS};
use protocol::Protocol;
use report::{IntervalReport, Report, Setup};
use run::{Event, Mix, OpKind, Plan, Workload};

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
    /// Number of keys: key i is the prefix followed by i as 12 digits.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=MAX_KEYS))]
    keys: u64,
    /// Bytes per value; a value is derived from its key's index alone.
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// Absent keys are named `<prefix>absent:<12 digits>`.
    #[arg(long, default_value = "key:", value_parser = parse_key_prefix)]
    key_prefix: String,
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
    /// Fraction of reads that ask for keys nothing ever writes.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    absent_ratio: f64,
    /// Seed of the per-connection random streams, for reproducible key sequences.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds of traffic before measuring (failures are still counted).
    #[arg(long, default_value_t = 0.0, value_parser = parse_seconds)]
    warmup: f64,
    /// Print one line per interval of this many seconds (and add the series to the JSON).
    #[arg(long, value_parser = parse_positive_seconds)]
    interval: Option<f64>,
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

impl Common {
    fn plan(&self, pipeline: u64, workload: Workload, interval: Option<Duration>) -> Plan {
        Plan {
            address: format!("{}:{}", self.host, self.port),
            protocol: self.protocol,
            keys: KeySpace::new(&self.key_prefix, self.keys, self.value_size),
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
            keys: self.keys,
            value_size: self.value_size,
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
        Command::Run(args) => {
            let common = &args.common;
            let mix = Mix {
                read_ratio: args.read_ratio,
                absent_ratio: args.absent_ratio,
                chooser: KeyChooser::new(
                    args.distribution,
                    common.keys,
                    args.zipf_s,
                    args.gaussian_stddev,
                ),
                seed: args.seed,
                warmup: Duration::from_secs_f64(args.warmup),
                duration: Duration::from_secs_f64(args.duration),
                max_requests: args.requests,
            };
            let interval = args.interval.map(Duration::from_secs_f64);
            (
                common,
                common.plan(args.pipeline, Workload::Mixed(mix), interval),
                common.setup("run", args.pipeline, interval.is_some()),
            )
        }
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
    let key_count = common.keys;
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
