//! INFO: one function per section (CONVENTIONS 10), built from the server's and the
//! engine's counters. `default` / `all` / `everything` select groups as in Redis.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::commands::Shared;
use crate::metrics::unix_seconds;

pub const HYPERCACHE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The Redis version clients are told; they gate features on it.
pub const REDIS_COMPAT_VERSION: &str = "7.0.15";

type Section = fn(&Shared, &mut String);

const SECTIONS: &[(&str, Section, bool)] = &[
    // (name, builder, in the default selection)
    ("server", server, true),
    ("clients", clients, true),
    ("memory", memory, true),
    ("persistence", persistence, true),
    ("stats", stats, true),
    ("replication", replication, true),
    ("cpu", cpu, true),
    ("tiers", tiers, true),
    ("commandstats", commandstats, false),
    ("keyspace", keyspace, true),
];

/// The INFO text for the requested section names (empty = default).
pub fn render(shared: &Shared, requested: &[String]) -> String {
    let requested: Vec<String> = requested.iter().map(|s| s.to_ascii_lowercase()).collect();
    let wants = |name: &str, default: bool| {
        if requested.is_empty() {
            return default;
        }
        requested
            .iter()
            .any(|r| r == name || r == "all" || r == "everything" || (r == "default" && default))
    };
    let mut out = String::new();
    for (name, build, default) in SECTIONS {
        if wants(name, *default) {
            if !out.is_empty() {
                out.push_str("\r\n");
            }
            let mut title = name.to_string();
            title[..1].make_ascii_uppercase();
            let _ = write!(out, "# {title}\r\n");
            build(shared, &mut out);
        }
    }
    out
}

fn line(out: &mut String, key: &str, value: impl std::fmt::Display) {
    let _ = write!(out, "{key}:{value}\r\n");
}

/// 1.50M style, as Redis's `*_human` fields.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: &[(u64, &str)] = &[
        (1 << 40, "T"),
        (1 << 30, "G"),
        (1 << 20, "M"),
        (1 << 10, "K"),
    ];
    for (size, unit) in UNITS {
        if bytes >= *size {
            return format!("{:.2}{unit}", bytes as f64 / *size as f64);
        }
    }
    format!("{bytes}B")
}

fn server(shared: &Shared, out: &mut String) {
    let uptime = shared.started.elapsed().as_secs();
    line(out, "redis_version", REDIS_COMPAT_VERSION);
    line(out, "hypercache_version", HYPERCACHE_VERSION);
    line(out, "redis_mode", "standalone");
    line(out, "os", std::env::consts::OS);
    line(out, "arch_bits", usize::BITS);
    line(out, "process_id", std::process::id());
    line(out, "run_id", &shared.run_id);
    line(out, "tcp_port", shared.port);
    line(out, "server_time_usec", unix_seconds() * 1_000_000);
    line(out, "uptime_in_seconds", uptime);
    line(out, "uptime_in_days", uptime / 86_400);
    line(
        out,
        "executable",
        std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    );
    line(
        out,
        "config_file",
        shared
            .config_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    );
}

fn clients(shared: &Shared, out: &mut String) {
    line(out, "connected_clients", shared.clients.connected());
    line(out, "maxclients", shared.config.read().server.maxclients);
    line(out, "blocked_clients", 0);
    line(out, "client_buffer_bytes", shared.clients.buffer_bytes());
}

/// Resident set size from /proc (Linux), 0 elsewhere.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|text| text.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn memory(shared: &Shared, out: &mut String) {
    let report = shared.engine.tier_report();
    let budget = shared.engine.budget();
    let used = report.accounted_bytes() as u64 + shared.clients.buffer_bytes() as u64;
    let rss = rss_bytes();
    line(out, "used_memory", used);
    line(out, "used_memory_human", human_bytes(used));
    line(out, "used_memory_rss", rss);
    line(out, "used_memory_rss_human", human_bytes(rss));
    // Redis's name for what normal clients' query and reply buffers hold.
    line(out, "mem_clients_normal", shared.clients.buffer_bytes());
    line(out, "maxmemory", budget.maxmemory);
    line(out, "maxmemory_human", human_bytes(budget.maxmemory as u64));
    // RAM pressure moves keys to disk; the policy applies once `maxdisk` is reached too.
    line(
        out,
        "maxmemory_policy",
        shared.engine.eviction_policy().name(),
    );
    line(out, "budget_hot_bytes", budget.hot_bytes);
    line(out, "budget_cold_cache_bytes", budget.block_cache_bytes);
    line(out, "budget_memtable_bytes", budget.memtable_bytes);
    line(out, "budget_filter_bytes", budget.filter_max_bytes);
    line(out, "budget_clients_bytes", budget.client_bytes);
    line(
        out,
        "fixed_overhead_bytes",
        crate::engine::budget::FIXED_OVERHEAD_BYTES,
    );
    line(out, "used_memory_hot", report.hot_used_bytes);
    line(out, "used_memory_cold_cache", report.cold_memory_bytes);
    line(out, "used_memory_filter", report.filter_used_bytes);
    allocator(out);
}

/// Redis's allocator_* fields, from jemalloc's own statistics: what the Rust side of the
/// process has allocated, the pages holding it, and what is resident. RocksDB's C++ heap
/// (glibc malloc) is not in them; RSS minus allocator_resident estimates it.
fn allocator(out: &mut String) {
    use tikv_jemalloc_ctl::{epoch, stats};
    // The statistics are cached by jemalloc until the epoch advances.
    if epoch::advance().is_err() {
        return;
    }
    let (Ok(allocated), Ok(active), Ok(resident), Ok(metadata)) = (
        stats::allocated::read(),
        stats::active::read(),
        stats::resident::read(),
        stats::metadata::read(),
    ) else {
        return;
    };
    line(out, "allocator_allocated", allocated);
    line(out, "allocator_active", active);
    line(out, "allocator_resident", resident);
    line(out, "allocator_metadata", metadata);
}

/// Redis's persistence fields where they have a meaning here (the cold tier is the snapshot,
/// a checkpoint is a save), then the WAL and checkpoint figures.
fn persistence(shared: &Shared, out: &mut String) {
    let report = shared.engine.persistence_report();
    let config = shared.config.read();
    let checkpoint = &report.last_checkpoint;
    // Serving starts only after recovery, so nothing is ever loading while INFO can answer.
    line(out, "loading", 0);
    line(out, "async_loading", 0);
    line(
        out,
        "rdb_bgsave_in_progress",
        u8::from(shared.bgsave_in_progress.load(Ordering::Relaxed)),
    );
    line(
        out,
        "rdb_last_save_time",
        shared
            .last_save
            .load(Ordering::Relaxed)
            .max(checkpoint.unix_ms / 1000),
    );
    let status = if report.wal_failure.is_some() {
        "err"
    } else {
        "ok"
    };
    line(out, "rdb_last_bgsave_status", "ok");
    line(out, "aof_enabled", u8::from(config.persistence.wal));
    line(out, "aof_rewrite_in_progress", 0);
    line(out, "aof_last_write_status", status);
    line(out, "wal_enabled", u8::from(report.wal_enabled));
    line(out, "wal_sync", config.persistence.sync.as_str());
    line(out, "wal_last_lsn", report.wal_last_lsn);
    line(out, "wal_durable_lsn", report.wal_durable_lsn);
    line(
        out,
        "wal_fsync_lag_records",
        report.wal_last_lsn.saturating_sub(report.wal_durable_lsn),
    );
    line(out, "wal_bytes", report.wal_disk_bytes);
    line(out, "wal_fsyncs", report.wal_fsyncs);
    line(
        out,
        "checkpoint_in_progress",
        u8::from(report.checkpoint_in_progress),
    );
    line(out, "checkpoints_completed", report.checkpoints_completed);
    line(out, "last_checkpoint_time", checkpoint.unix_ms / 1000);
    line(out, "last_checkpoint_lsn", checkpoint.lsn);
    line(
        out,
        "last_checkpoint_seconds",
        format!("{:.3}", checkpoint.seconds),
    );
    line(out, "last_checkpoint_entries", checkpoint.entries_written);
    let startup = &report.startup;
    line(
        out,
        "startup_state",
        if startup.loaded_saved_state {
            "loaded"
        } else {
            "rebuilt"
        },
    );
    line(out, "startup_replayed_records", startup.replayed_records);
    line(
        out,
        "startup_replay_seconds",
        format!("{:.3}", startup.replay_seconds),
    );
    line(out, "startup_seconds", format!("{:.3}", startup.seconds));
}

fn stats(shared: &Shared, out: &mut String) {
    let stats = &shared.stats;
    let engine = shared.engine.stats().snapshot();
    let load = |counter: &crate::engine::stats::Counter| counter.get();
    line(
        out,
        "total_connections_received",
        load(&stats.total_connections_received),
    );
    line(
        out,
        "total_commands_processed",
        load(&stats.total_commands_processed),
    );
    line(
        out,
        "total_net_input_bytes",
        load(&stats.total_net_input_bytes),
    );
    line(
        out,
        "total_net_output_bytes",
        load(&stats.total_net_output_bytes),
    );
    line(
        out,
        "rejected_connections",
        load(&stats.rejected_connections),
    );
    line(
        out,
        "rate_limited_commands",
        load(&stats.rate_limited_commands),
    );
    line(out, "expired_keys", engine.expired_keys);
    line(out, "evicted_keys", engine.evicted_keys);
    line(out, "evicted_clients", load(&stats.evicted_clients));
    line(out, "keyspace_hits", load(&stats.keyspace_hits));
    line(out, "keyspace_misses", load(&stats.keyspace_misses));
    line(out, "total_error_replies", load(&stats.total_error_replies));
    let sync = &shared.replication.stats;
    line(out, "sync_full", sync.sync_full.load(Ordering::Relaxed));
    line(
        out,
        "sync_partial_ok",
        sync.sync_partial_ok.load(Ordering::Relaxed),
    );
    line(
        out,
        "sync_partial_err",
        sync.sync_partial_err.load(Ordering::Relaxed),
    );
}

fn replication(shared: &Shared, out: &mut String) {
    let replication = &shared.replication;
    let offset = crate::commands::replication::Replication::offset(shared);
    match replication.primary() {
        Some(primary) => {
            let link = replication.link_state();
            line(out, "role", "slave");
            line(out, "master_host", &primary.host);
            line(out, "master_port", primary.port);
            let up = link == crate::commands::replication::LinkState::Connected;
            line(out, "master_link_status", if up { "up" } else { "down" });
            line(
                out,
                "master_last_io_seconds_ago",
                if up {
                    replication.link_idle().as_secs() as i64
                } else {
                    -1
                },
            );
            let syncing = link == crate::commands::replication::LinkState::Syncing;
            line(out, "master_sync_in_progress", u8::from(syncing));
            line(out, "slave_read_repl_offset", offset);
            line(out, "slave_repl_offset", offset);
            line(out, "slave_priority", 100);
            line(out, "slave_read_only", u8::from(replication.read_only()));
            line(out, "replica_announced", 1);
        }
        None => line(out, "role", "master"),
    }
    let replicas = replication.replicas();
    line(out, "connected_slaves", replicas.len());
    for (index, replica) in replicas.iter().enumerate() {
        let online = replica.online.load(Ordering::Acquire);
        line(
            out,
            &format!("slave{index}"),
            format!(
                "ip={},port={},state={},offset={},lag={}",
                replica.addr.ip(),
                replica.listening_port,
                if online { "online" } else { "wait_bgsave" },
                replica.acked.load(Ordering::Acquire),
                replica.acked_at.lock().elapsed().as_secs()
            ),
        );
    }
    let ids = replication.ids();
    line(out, "master_failover_state", "no-failover");
    line(out, "master_replid", &ids.replid);
    line(out, "master_replid2", &ids.replid2);
    line(out, "master_repl_offset", offset);
    line(out, "second_repl_offset", ids.second_offset);
    let (active, first, bytes) = match shared.engine.wal() {
        Some(wal) => (1, wal.oldest_lsn(), wal.disk_bytes()),
        None => (0, 0, 0),
    };
    line(out, "repl_backlog_active", active);
    line(
        out,
        "repl_backlog_size",
        shared.config.read().replication.repl_backlog_size.0,
    );
    line(out, "repl_backlog_first_byte_offset", first);
    line(out, "repl_backlog_histlen", bytes);
}

fn cpu(_shared: &Shared, out: &mut String) {
    let (user, system) = cpu_seconds();
    line(out, "used_cpu_sys", format!("{system:.6}"));
    line(out, "used_cpu_user", format!("{user:.6}"));
}

fn cpu_seconds() -> (f64, f64) {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return (0.0, 0.0);
    }
    let seconds = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (seconds(usage.ru_utime), seconds(usage.ru_stime))
}

fn tiers(shared: &Shared, out: &mut String) {
    let report = shared.engine.tier_report();
    let s = report.stats;
    line(out, "hot_hits", s.hot_hits);
    line(out, "hot_misses", s.hot_misses);
    line(out, "cold_hits", s.cold_hits);
    line(out, "cold_misses", s.cold_misses);
    line(out, "cold_read_batches", s.cold_read_batches);
    line(out, "cold_batched_reads", s.cold_batched_reads);
    line(out, "cold_batch_rereads", s.cold_batch_rereads);
    line(out, "filter_short_circuits", s.filter_short_circuits);
    line(out, "filter_false_positives", s.filter_false_positives);
    let absent_lookups = s.filter_short_circuits + s.filter_false_positives;
    let fpr = if absent_lookups == 0 {
        0.0
    } else {
        s.filter_false_positives as f64 / absent_lookups as f64
    };
    line(out, "filter_fpr_estimate", format!("{fpr:.6}"));
    line(out, "promotions", s.promotions);
    line(out, "demotions", s.demotions);
    line(out, "evictions", s.evictions);
    line(out, "hot_used_bytes", report.hot_used_bytes);
    line(out, "hot_limit_bytes", report.hot_limit_bytes);
    line(out, "hot_keys", report.hot_keys);
    line(out, "cold_keys_estimate", report.cold_keys_estimate);
    line(out, "cold_disk_bytes", report.cold_disk_bytes);
    line(out, "cold_used_bytes", report.disk.cold_used_bytes);
    line(out, "cold_file_bytes", report.disk.cold_file_bytes);
    line(out, "maxdisk", report.disk.maxdisk);
    line(out, "maxdisk_human", human_bytes(report.disk.maxdisk));
    line(
        out,
        "maxdisk_is_default",
        u8::from(report.disk.maxdisk_is_default),
    );
    line(out, "cold_evictions", s.cold_evictions);
    line(out, "ram_evictions", s.ram_evictions);
    line(out, "stamp_refreshes", s.stamp_refreshes);
    line(
        out,
        "disk_budget_refusing",
        u8::from(report.disk_budget_refusing),
    );
    line(out, "cold_memory_bytes", report.cold_memory_bytes);
    line(out, "filter_used_bytes", report.filter_used_bytes);
    line(
        out,
        "filter_load_factor",
        format!("{:.4}", report.filter_load_factor),
    );
    line(out, "filter_fingerprints", report.filter_fingerprints);
    line(out, "filter_bypassed", u8::from(report.filter_bypassed));
    line(out, "filter_bypassed_inserts", s.filter_bypassed_inserts);
    line(out, "disk_full", u8::from(report.disk_health.failing));
    line(out, "cold_write_errors", report.disk_health.write_errors);
}

fn commandstats(shared: &Shared, out: &mut String) {
    for (name, calls, usec, failed) in shared.stats.command_stats() {
        let per_call = usec as f64 / calls as f64;
        let _ = write!(
            out,
            "cmdstat_{name}:calls={calls},usec={usec},usec_per_call={per_call:.2},rejected_calls=0,failed_calls={failed}\r\n"
        );
    }
}

fn keyspace(shared: &Shared, out: &mut String) {
    for (db, keys) in shared.engine.tier_report().keys_per_db.iter().enumerate() {
        if *keys > 0 {
            let _ = write!(out, "db{db}:keys={keys}\r\n");
        }
    }
}
