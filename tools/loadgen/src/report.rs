//! Turns an `Outcome` into the final report, as a compact text table or one JSON object.
//!
//! The JSON field names are an interface for scripts (documented in the crate's README.md):
//! add fields, never rename or remove them.

use std::io;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::keys::DistributionKind;
use crate::protocol::Protocol;
use crate::run::{IntervalStats, Outcome};

/// What the report says about the run besides its measurements (its fields open the JSON
/// object).
#[derive(Debug, Serialize)]
pub struct Setup {
    pub command: &'static str,
    pub protocol: Protocol,
    pub address: String,
    pub connections: usize,
    pub pipeline: usize,
    pub keys: u64,
    pub value_size: usize,
    /// Whether `intervals` is filled; not a field of the report itself.
    #[serde(skip)]
    pub intervals_requested: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub setup: Setup,
    pub duration_secs: f64,
    pub ops: u64,
    pub ops_per_sec: f64,
    pub reads: u64,
    pub writes: u64,
    /// SETs after misses (`cache`); 0 otherwise.
    pub fills: u64,
    pub reads_per_sec: f64,
    pub writes_per_sec: f64,
    pub hits: u64,
    pub misses: u64,
    /// `hits / (hits + misses)`; null when no present key was read.
    pub hit_ratio: Option<f64>,
    pub absent_reads: u64,
    pub absent_hits: u64,
    pub wrong_values: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub wrong_value_samples: Vec<String>,
    pub latency_us: Latencies,
    pub intervals: Vec<IntervalReport>,
}

#[derive(Debug, Serialize)]
pub struct Latencies {
    pub read: LatencySummary,
    pub write: LatencySummary,
    pub all: LatencySummary,
}

/// All zero when `count` is 0.
#[derive(Debug, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean: f64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl LatencySummary {
    fn of(histogram: &Histogram<u64>) -> Self {
        Self {
            count: histogram.len(),
            mean: histogram.mean(),
            p50: histogram.value_at_quantile(0.5),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct IntervalReport {
    /// Seconds since the end of the warmup at which this interval ends.
    pub end_secs: f64,
    pub ops: u64,
    pub ops_per_sec: f64,
    pub hit_ratio: Option<f64>,
    pub p99_us: u64,
}

fn per_sec(count: u64, over: Duration) -> f64 {
    let secs = over.as_secs_f64();
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

/// A hit ratio for the text report: four decimals, or "-" when nothing was read.
fn ratio_text(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".to_string(), |ratio| format!("{ratio:.4}"))
}

impl IntervalReport {
    pub fn new(interval: &IntervalStats) -> Self {
        let ops = interval.counters.ops();
        Self {
            end_secs: interval.end.as_secs_f64(),
            ops,
            ops_per_sec: per_sec(ops, interval.length),
            hit_ratio: interval.counters.hit_ratio(),
            p99_us: interval.latency.value_at_quantile(0.99),
        }
    }

    pub fn text_line(&self) -> String {
        let hit_ratio = ratio_text(self.hit_ratio);
        format!(
            "{:8.2}s {:>10.0} ops/s  hit ratio {hit_ratio:>6}  p99 {} us",
            self.end_secs, self.ops_per_sec, self.p99_us
        )
    }
}

impl Report {
    pub fn new(setup: Setup, outcome: &Outcome) -> Self {
        let stats = &outcome.stats;
        let counters = &stats.counters;
        let elapsed = outcome.elapsed;
        let intervals = if setup.intervals_requested {
            outcome.intervals.iter().map(IntervalReport::new).collect()
        } else {
            Vec::new()
        };
        Self {
            setup,
            duration_secs: elapsed.as_secs_f64(),
            ops: counters.ops(),
            ops_per_sec: per_sec(counters.ops(), elapsed),
            reads: counters.reads,
            writes: counters.writes,
            fills: counters.fills,
            reads_per_sec: per_sec(counters.reads, elapsed),
            writes_per_sec: per_sec(counters.writes, elapsed),
            hits: counters.hits,
            misses: counters.misses,
            hit_ratio: counters.hit_ratio(),
            absent_reads: counters.absent_reads,
            absent_hits: counters.absent_hits,
            wrong_values: counters.wrong_values,
            errors: counters.errors,
            error_samples: stats.error_samples.clone(),
            wrong_value_samples: stats.wrong_value_samples.clone(),
            latency_us: Latencies {
                read: LatencySummary::of(&stats.read_latency),
                write: LatencySummary::of(&stats.write_latency),
                all: LatencySummary::of(&stats.all_latency()),
            },
            intervals,
        }
    }

    pub fn write_json(&self, out: &mut impl io::Write) -> io::Result<()> {
        serde_json::to_writer(&mut *out, self)?;
        writeln!(out)
    }

    pub fn write_text(&self, out: &mut impl io::Write) -> io::Result<()> {
        let setup = &self.setup;
        writeln!(
            out,
            "{} {} {}: {} connections x pipeline {}, {} keys of {} bytes, {:.2} s",
            setup.command,
            setup.protocol.name(),
            setup.address,
            setup.connections,
            setup.pipeline,
            setup.keys,
            setup.value_size,
            self.duration_secs
        )?;
        if setup.command == "verify" {
            writeln!(
                out,
                "  found correct {}   missing {}   wrong {}",
                self.hits, self.misses, self.wrong_values
            )?;
        }
        writeln!(
            out,
            "  ops {:>12} {:>12.0}/s   reads {} ({:.0}/s)   writes {} ({:.0}/s)",
            self.ops,
            self.ops_per_sec,
            self.reads,
            self.reads_per_sec,
            self.writes,
            self.writes_per_sec
        )?;
        if self.fills > 0 {
            writeln!(out, "  fills (SETs after misses) {}", self.fills)?;
        }
        if self.reads > 0 {
            let hit_ratio = ratio_text(self.hit_ratio);
            writeln!(
                out,
                "  hits {}   misses {}   hit ratio {hit_ratio}   absent reads {}   absent hits {}",
                self.hits, self.misses, self.absent_reads, self.absent_hits
            )?;
        }
        writeln!(
            out,
            "  latency (us) {:>9} {:>9} {:>9} {:>9} {:>9}",
            "p50", "p99", "p99.9", "max", "mean"
        )?;
        for (name, summary) in [
            ("read", &self.latency_us.read),
            ("write", &self.latency_us.write),
            ("all", &self.latency_us.all),
        ] {
            if summary.count > 0 {
                writeln!(
                    out,
                    "    {name:<10} {:>9} {:>9} {:>9} {:>9} {:>9.1}",
                    summary.p50, summary.p99, summary.p999, summary.max, summary.mean
                )?;
            }
        }
        writeln!(
            out,
            "  errors {}   wrong values {}",
            self.errors, self.wrong_values
        )?;
        for sample in &self.error_samples {
            writeln!(out, "    error: {sample}")?;
        }
        for sample in &self.wrong_value_samples {
            writeln!(out, "    wrong value: {sample}")?;
        }
        Ok(())
    }
}

/// `simulate-lru`'s report. Its counters mean what `Report`'s do (`ops` = reads + writes +
/// fills, counted after the warmup); `evictions`, `entries` and `used_bytes` cover the whole
/// simulation.
#[derive(Debug, Serialize)]
pub struct SimReport {
    pub command: &'static str,
    pub keys: u64,
    pub value_size: usize,
    pub key_bytes: u64,
    pub entry_overhead: u64,
    /// `key_bytes + value_size + entry_overhead`: what one entry costs.
    pub entry_charge: u64,
    pub capacity_bytes: u64,
    pub capacity_entries: u64,
    pub distribution: DistributionKind,
    pub zipf_s: f64,
    pub read_ratio: f64,
    pub seed: u64,
    pub connections: u64,
    pub warmup_ops: u64,
    pub ops: u64,
    pub reads: u64,
    pub writes: u64,
    pub fills: u64,
    pub hits: u64,
    pub misses: u64,
    pub hit_ratio: Option<f64>,
    pub evictions: u64,
    pub entries: u64,
    pub used_bytes: u64,
    pub elapsed_secs: f64,
}

impl SimReport {
    pub fn write_json(&self, out: &mut impl io::Write) -> io::Result<()> {
        serde_json::to_writer(&mut *out, self)?;
        writeln!(out)
    }

    pub fn write_text(&self, out: &mut impl io::Write) -> io::Result<()> {
        writeln!(
            out,
            "simulate-lru: exact LRU of {} bytes = {} entries of {} bytes (key {} + value {} + overhead {})",
            self.capacity_bytes,
            self.capacity_entries,
            self.entry_charge,
            self.key_bytes,
            self.value_size,
            self.entry_overhead
        )?;
        writeln!(
            out,
            "  {} keys, {:?} (s {}), read ratio {}, seed {}, {} streams; {} warmup ops, {:.2} s",
            self.keys,
            self.distribution,
            self.zipf_s,
            self.read_ratio,
            self.seed,
            self.connections,
            self.warmup_ops,
            self.elapsed_secs
        )?;
        writeln!(
            out,
            "  ops {}   reads {}   writes {}   fills {}",
            self.ops, self.reads, self.writes, self.fills
        )?;
        writeln!(
            out,
            "  hits {}   misses {}   hit ratio {}",
            self.hits,
            self.misses,
            ratio_text(self.hit_ratio)
        )?;
        writeln!(
            out,
            "  evictions {}   entries {}   used bytes {}",
            self.evictions, self.entries, self.used_bytes
        )
    }
}
