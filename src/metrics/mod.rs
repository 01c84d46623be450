//! Server counters and the slow log: what INFO (the `info` command module) and SLOWLOG
//! read. Recording never locks a shared map or allocates for a command that is not logged.
//! This module knows nothing of commands or connections: the command names it counts are
//! handed to it, and a slow-log entry names its client with what the caller passes.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use foldhash::fast::RandomState;
use parking_lot::Mutex;

use crate::engine::stats::Counter;

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Per-command counters (INFO commandstats).
#[derive(Default)]
pub struct CommandStat {
    pub calls: Counter,
    pub usec: Counter,
    pub failed_calls: Counter,
}

/// A command's counters and its subcommands'.
#[derive(Default)]
struct CommandStats {
    own: CommandStat,
    subcommands: HashMap<&'static str, CommandStat, RandomState>,
}

/// One counter set per command and subcommand, built from the command table when a server
/// starts, so recording a call never takes a lock or allocates.
type CommandStatsTable = HashMap<&'static str, CommandStats, RandomState>;

pub struct ServerStats {
    pub total_connections_received: Counter,
    pub rejected_connections: Counter,
    /// Commands that waited because their client was over its command rate.
    pub rate_limited_commands: Counter,
    /// Clients closed by `maxmemory-clients` (INFO `evicted_clients`, Redis's name).
    pub evicted_clients: Counter,
    pub total_commands_processed: Counter,
    pub total_net_input_bytes: Counter,
    pub total_net_output_bytes: Counter,
    pub total_error_replies: Counter,
    pub keyspace_hits: Counter,
    pub keyspace_misses: Counter,
    commands: CommandStatsTable,
}

impl ServerStats {
    /// Counters for `commands`: each command's name with its subcommands' names.
    pub fn new<Subcommands: Iterator<Item = &'static str>>(
        commands: impl Iterator<Item = (&'static str, Subcommands)>,
    ) -> Self {
        let commands = commands
            .map(|(name, subcommands)| {
                let stats = CommandStats {
                    own: CommandStat::default(),
                    subcommands: subcommands
                        .map(|sub| (sub, CommandStat::default()))
                        .collect(),
                };
                (name, stats)
            })
            .collect();
        ServerStats {
            total_connections_received: Counter::default(),
            rejected_connections: Counter::default(),
            rate_limited_commands: Counter::default(),
            evicted_clients: Counter::default(),
            total_commands_processed: Counter::default(),
            total_net_input_bytes: Counter::default(),
            total_net_output_bytes: Counter::default(),
            total_error_replies: Counter::default(),
            keyspace_hits: Counter::default(),
            keyspace_misses: Counter::default(),
            commands,
        }
    }

    /// Every counter set with its INFO name ("get", "config|get").
    fn each_command_stat(&self) -> impl Iterator<Item = (String, &CommandStat)> {
        self.commands.iter().flat_map(|(name, stats)| {
            std::iter::once((name.to_string(), &stats.own)).chain(
                stats
                    .subcommands
                    .iter()
                    .map(move |(sub, stat)| (format!("{name}|{sub}"), stat)),
            )
        })
    }

    pub fn connection_received(&self) {
        self.total_connections_received.add(1);
    }

    pub fn connection_rejected(&self) {
        self.rejected_connections.add(1);
    }

    pub fn command_received(&self) {
        self.total_commands_processed.add(1);
    }

    pub fn net_input(&self, bytes: usize) {
        self.total_net_input_bytes.add(bytes as i64);
    }

    pub fn net_output(&self, bytes: usize) {
        self.total_net_output_bytes.add(bytes as i64);
    }

    pub fn error_reply(&self) {
        self.total_error_replies.add(1);
    }

    /// A read found (`true`) or missed a key (INFO keyspace_hits / keyspace_misses).
    pub fn keyspace_lookup(&self, hit: bool) {
        if hit {
            self.keyspace_hits.add(1);
        } else {
            self.keyspace_misses.add(1);
        }
    }

    pub fn record_command(
        &self,
        name: &str,
        subcommand: Option<&str>,
        elapsed: Duration,
        failed: bool,
    ) {
        let stats = self.commands.get(name);
        let stat = match subcommand {
            Some(sub) => stats.and_then(|stats| stats.subcommands.get(sub)),
            None => stats.map(|stats| &stats.own),
        };
        if let Some(stat) = stat {
            stat.calls.add(1);
            stat.usec.add(elapsed.as_micros() as i64);
            if failed {
                stat.failed_calls.add(1);
            }
        }
    }

    /// (name, calls, usec, failed) for every command called at least once, sorted by name.
    pub fn command_stats(&self) -> Vec<(String, u64, u64, u64)> {
        let mut out: Vec<_> = self
            .each_command_stat()
            .filter_map(|(name, stat)| {
                let calls = stat.calls.get() as u64;
                (calls > 0).then(|| {
                    (
                        name,
                        calls,
                        stat.usec.get() as u64,
                        stat.failed_calls.get() as u64,
                    )
                })
            })
            .collect();
        out.sort();
        out
    }

    /// CONFIG RESETSTAT.
    pub fn reset(&self) {
        for counter in [
            &self.total_connections_received,
            &self.rejected_connections,
            &self.total_commands_processed,
            &self.total_net_input_bytes,
            &self.total_net_output_bytes,
            &self.total_error_replies,
            &self.keyspace_hits,
            &self.keyspace_misses,
        ] {
            counter.reset();
        }
        for (_, stat) in self.each_command_stat() {
            stat.calls.reset();
            stat.usec.reset();
            stat.failed_calls.reset();
        }
    }
}

/// One SLOWLOG GET entry.
#[derive(Clone, Debug)]
pub struct SlowEntry {
    pub id: u64,
    pub unix_time: u64,
    pub micros: u64,
    pub args: Vec<Bytes>,
    pub client_addr: String,
    pub client_name: String,
}

/// Redis keeps at most this many arguments per entry, and this many bytes per argument.
const SLOWLOG_MAX_ARGS: usize = 32;
const SLOWLOG_MAX_ARG_LEN: usize = 128;

pub struct SlowLog {
    next_id: AtomicU64,
    entries: Mutex<VecDeque<SlowEntry>>,
    max_len: AtomicU64,
    /// slowlog-log-slower-than in microseconds; negative = off. Read for every command.
    threshold_us: AtomicI64,
}

impl SlowLog {
    pub fn new(max_len: usize, threshold_us: i64) -> Self {
        SlowLog {
            next_id: AtomicU64::new(0),
            entries: Mutex::new(VecDeque::new()),
            max_len: AtomicU64::new(max_len as u64),
            threshold_us: AtomicI64::new(threshold_us),
        }
    }

    pub fn set_threshold_us(&self, threshold_us: i64) {
        self.threshold_us.store(threshold_us, Ordering::Relaxed);
    }

    /// Logs the command if it took long enough; `client` gives its client's address and
    /// name, asked only then.
    pub fn record(
        &self,
        args: &[Bytes],
        elapsed: Duration,
        client: impl FnOnce() -> (String, String),
    ) {
        let threshold = self.threshold_us.load(Ordering::Relaxed);
        let micros = elapsed.as_micros() as u64;
        if threshold < 0 || micros < threshold as u64 {
            return;
        }
        let mut kept: Vec<Bytes> = args
            .iter()
            .take(SLOWLOG_MAX_ARGS)
            .map(|arg| {
                if arg.len() > SLOWLOG_MAX_ARG_LEN {
                    let more = arg.len() - SLOWLOG_MAX_ARG_LEN;
                    let mut cut = arg[..SLOWLOG_MAX_ARG_LEN].to_vec();
                    cut.extend_from_slice(format!("... ({more} more bytes)").as_bytes());
                    Bytes::from(cut)
                } else {
                    arg.clone()
                }
            })
            .collect();
        if args.len() > SLOWLOG_MAX_ARGS {
            kept[SLOWLOG_MAX_ARGS - 1] = Bytes::from(format!(
                "... ({} more arguments)",
                args.len() - SLOWLOG_MAX_ARGS + 1
            ));
        }
        let (client_addr, client_name) = client();
        let entry = SlowEntry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            unix_time: unix_seconds(),
            micros,
            args: kept,
            client_addr,
            client_name,
        };
        let max_len = self.max_len.load(Ordering::Relaxed) as usize;
        let mut entries = self.entries.lock();
        entries.push_front(entry);
        entries.truncate(max_len);
    }

    /// Newest first, at most `count`.
    pub fn latest(&self, count: usize) -> Vec<SlowEntry> {
        self.entries.lock().iter().take(count).cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.lock().is_empty()
    }

    pub fn reset(&self) {
        self.entries.lock().clear();
    }

    pub fn set_max_len(&self, max_len: usize) {
        self.max_len.store(max_len as u64, Ordering::Relaxed);
        self.entries.lock().truncate(max_len);
    }
}
