//! The `hypercache` server binary: parse flags, load the layered configuration, open the
//! engine, serve RESP until SHUTDOWN / SIGTERM / SIGINT, then shut down cleanly.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use hypercache::config::{
    self, ByteSize, Config, ConfigError, EvictionPolicy, Overrides, SyncPolicy,
};
use hypercache::server::{Instance, Shared};

/// jemalloc, as Redis uses: many small allocations from several threads, and an RSS that
/// stays close to what is allocated (I6) instead of growing per-thread arenas.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read when it starts (`_RJEM_MALLOC_CONF` in the environment still
/// overrides them). One arena per CPU instead of four: each arena keeps its own partly used
/// pages, and with four per CPU the process held 15-20 MB more than it allocated. A smaller
/// thread cache (objects up to 4 KB) for the same reason. Freed pages go back to the system
/// at once (a background thread purges): kept for the default 10 s, the churn of values
/// through the hot tier held 15-20 MB of dirty pages. Peak RSS of a Zipf run at maxmemory
/// 64mb: 118 MB with jemalloc's defaults, 99 MB with these, same throughput
/// (docs/performance.md).
#[export_name = "_rjem_malloc_conf"]
static JEMALLOC_CONF: &u8 = &b"percpu_arena:percpu,background_thread:true,dirty_decay_ms:0,\
muzzy_decay_ms:0,tcache_max:4096\0"[0];

/// Redis-compatible cache server: hot keys in RAM, the rest on disk.
#[derive(Parser, Debug)]
#[command(name = "hypercache", version)]
struct Cli {
    /// YAML configuration file (see configs/hypercache.yaml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate a configuration file, explain every error, and exit.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long)]
    bind: Option<String>,
    /// TCP port (0 = any free port).
    #[arg(long)]
    port: Option<u16>,
    /// Data directory.
    #[arg(long, value_name = "PATH")]
    dir: Option<PathBuf>,
    /// Memory bound for the whole process, e.g. 64mb, 1gb or bytes.
    #[arg(long, value_parser = parse_size)]
    maxmemory: Option<ByteSize>,
    /// Disk budget of the cold tier, e.g. 10gb (0 = the default: half the free space).
    #[arg(long, value_parser = parse_size)]
    maxdisk: Option<ByteSize>,
    /// Which keys leave the cache when RAM and disk are full: allkeys-lru, allkeys-lfu,
    /// allkeys-random, volatile-lru, volatile-lfu, volatile-random, volatile-ttl, noeviction.
    #[arg(long, value_parser = parse_policy)]
    maxmemory_policy: Option<EvictionPolicy>,
    /// Number of databases.
    #[arg(long)]
    databases: Option<u16>,
    /// Engine write-ahead log: yes | no.
    #[arg(long, value_parser = parse_yes_no)]
    appendonly: Option<bool>,
    /// WAL fsync policy: always | everysec | no.
    #[arg(long, value_parser = parse_sync)]
    appendfsync: Option<SyncPolicy>,
    /// Password clients must AUTH with.
    #[arg(long)]
    requirepass: Option<String>,
    /// yes | no: while no password is set, serve loopback clients only.
    #[arg(long, value_parser = parse_yes_no)]
    protected_mode: Option<bool>,
    /// debug | verbose | notice | warning.
    #[arg(long)]
    loglevel: Option<String>,
    /// Replicate the primary at HOST PORT (needs --appendonly yes here and there).
    #[arg(long, num_args = 1..=2, value_names = ["HOST", "PORT"])]
    replicaof: Option<Vec<String>>,
}

fn parse_size(text: &str) -> Result<ByteSize, String> {
    ByteSize::parse(text)
}

fn parse_policy(text: &str) -> Result<EvictionPolicy, String> {
    EvictionPolicy::parse(text).ok_or_else(|| format!("'{text}' is not a maxmemory-policy"))
}

fn parse_yes_no(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(format!("'{text}' is not yes or no")),
    }
}

fn parse_sync(text: &str) -> Result<SyncPolicy, String> {
    SyncPolicy::parse(text).ok_or_else(|| format!("'{text}' is not always, everysec or no"))
}

impl Cli {
    fn overrides(&self) -> Overrides {
        Overrides {
            bind: self.bind.clone(),
            port: self.port,
            dir: self.dir.clone(),
            maxmemory: self.maxmemory,
            maxdisk: self.maxdisk,
            maxmemory_policy: self.maxmemory_policy,
            databases: self.databases,
            appendonly: self.appendonly,
            appendfsync: self.appendfsync,
            requirepass: self.requirepass.clone(),
            protected_mode: self.protected_mode,
            loglevel: self.loglevel.clone(),
            replicaof: self.replicaof.as_ref().map(|parts| parts.join(" ")),
        }
    }
}

fn report_config_error(source: &str, err: &ConfigError) {
    eprintln!("hypercache: invalid configuration ({source}):");
    for problem in &err.0 {
        eprintln!("  {problem}");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(file) = &cli.check_config {
        return match config::load(Some(file), Vec::new(), &Overrides::default()) {
            Ok(_) => {
                println!("{}: configuration OK", file.display());
                ExitCode::SUCCESS
            }
            Err(err) => {
                report_config_error(&file.display().to_string(), &err);
                ExitCode::FAILURE
            }
        };
    }
    let config = match config::load(cli.config.as_deref(), std::env::vars(), &cli.overrides()) {
        Ok(config) => config,
        Err(err) => {
            let source = cli
                .config
                .as_ref()
                .map_or("defaults, environment and flags".to_string(), |p| {
                    p.display().to_string()
                });
            report_config_error(&source, &err);
            return ExitCode::FAILURE;
        }
    };
    if let Err(err) = init_logging(&config) {
        eprintln!("hypercache: cannot set up logging: {err}");
        return ExitCode::FAILURE;
    }
    limit_glibc_arenas();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if config.server.threads > 0 {
        runtime.worker_threads(config.server.threads);
    }
    runtime.max_blocking_threads(config.server.blocking_threads);
    let runtime = match runtime.enable_all().thread_name("hc-worker").build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("hypercache: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(serve(config, cli.config));
    // The data is saved by now. A command still running on a blocking thread past
    // shutdown-timeout (DEBUG SLEEP, a long KEYS) must not keep the process alive: dropping
    // the runtime would wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("hypercache: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) -> Result<(), String> {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{fmt, reload, EnvFilter, Layer};

    let directive = |level: &str| format!("hypercache={level},{level}");
    let level = config::LoggingConfig::tracing_level(&config.logging.level).unwrap_or("info");
    let initial = EnvFilter::try_from_env("HYPERCACHE_LOG")
        .unwrap_or_else(|_| EnvFilter::new(directive(level)));
    let (filter, reload_handle) = reload::Layer::new(initial);
    config::set_log_level_hook(Box::new(move |level| {
        let _ = reload_handle.reload(EnvFilter::new(directive(level)));
    }));
    let json = config.logging.format == "json";
    let output = match &config.logging.file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|err| format!("{}: {err}", path.display()))?;
            let writer = std::sync::Mutex::new(file);
            if json {
                fmt::layer().json().with_writer(writer).boxed()
            } else {
                fmt::layer().with_ansi(false).with_writer(writer).boxed()
            }
        }
        None if json => fmt::layer().json().with_writer(std::io::stderr).boxed(),
        None => fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .map_err(|err| err.to_string())
}

async fn serve(config: Config, config_file: Option<PathBuf>) -> Result<(), String> {
    let instance = Instance::open(config, config_file).await?;
    spawn_signal_handler(Arc::clone(instance.shared()));
    instance.serve().await
}

fn spawn_signal_handler(shared: Arc<Shared>) {
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(err) => {
                    tracing::warn!(%err, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
            _ = terminate => tracing::info!("SIGTERM received, shutting down"),
        }
        shared.request_shutdown(true);
    });
}

/// RocksDB's C++ heap uses glibc malloc, which gives each thread that allocates its own
/// arena (up to 8 per core), each keeping freed memory; two bound that RSS (I6). glibc also
/// raises its mmap threshold (up to 32 MB) each time a large block is freed, after which
/// RocksDB's memtable arenas and read buffers come from those heaps and stay resident
/// after free; a fixed 256 KB threshold keeps them mmapped, returned on free. Must run
/// before the runtime and RocksDB start their threads.
fn limit_glibc_arenas() {
    // SAFETY: mallopt only changes glibc tunables; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 20);
    }
}
