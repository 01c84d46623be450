//! `hypercache-tool`: inspect and repair a HyperCache data directory without the server.
//! A thin CLI over `hypercache::ops` (the library does the work; this file parses arguments,
//! shows progress and prints reports). Exit status 0 on success, 1 with a one-line reason on
//! stderr on failure, 2 for bad arguments; `check` also exits 1 when it finds problems.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hypercache::config::{self, Config, Overrides};
use hypercache::ops;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

#[derive(Parser)]
#[command(name = "hypercache-tool", version, about)]
struct Cli {
    /// The server's YAML configuration (databases, memory budget, WAL settings); without it
    /// the defaults apply. The WAL is used whenever the directory has one.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Common {
    /// The data directory (the server's --dir).
    #[arg(long, value_name = "PATH")]
    dir: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Verify WAL records, the checkpoint record, every cold value and the saved filter.
    Check {
        #[command(flatten)]
        common: Common,
        /// Check a directory a running server holds (read-only).
        #[arg(long)]
        force: bool,
    },
    /// Truncate a torn WAL tail; --salvage drops damaged records; --to-checkpoint restores one.
    Recover {
        #[command(flatten)]
        common: Common,
        /// Also drop damaged WAL records (each one is reported).
        #[arg(long)]
        salvage: bool,
        /// Restore this retained checkpoint (see `checkpoint list`).
        #[arg(long, value_name = "ID")]
        to_checkpoint: Option<String>,
    },
    /// Offline compaction of the cold tier, dropping expired keys.
    Compact {
        #[command(flatten)]
        common: Common,
    },
    /// Create, list or restore retained checkpoints.
    Checkpoint {
        #[command(subcommand)]
        action: CheckpointAction,
    },
    /// Write the live data set as RESP commands (`redis-cli --pipe` loads it).
    Export {
        #[command(flatten)]
        common: Common,
        /// Only this database.
        #[arg(long, value_name = "N")]
        db: Option<u16>,
        /// Only keys matching this glob pattern.
        #[arg(long = "match", value_name = "PATTERN")]
        pattern: Option<String>,
        /// Write here instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Load a RESP command stream (an export or a Redis AOF) into the directory.
    Import {
        #[command(flatten)]
        common: Common,
        /// Read from here instead of stdin.
        #[arg(long, value_name = "FILE")]
        input: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CheckpointAction {
    /// Run a checkpoint and keep a copy under <dir>/checkpoints/.
    Create {
        #[command(flatten)]
        common: Common,
    },
    /// List retained checkpoints.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Make a retained checkpoint the directory's data (the current data is moved aside).
    Restore {
        #[command(flatten)]
        common: Common,
        /// The checkpoint's id (its directory name).
        id: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Warnings from the engine (a torn tail truncated, ...) go to stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HYPERCACHE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("hypercache-tool: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the command; `Ok(false)` means it ran but found problems.
fn run(cli: Cli) -> Result<bool, String> {
    let config = load_config(cli.config.as_deref())?;
    match cli.command {
        Command::Check { common, force } => {
            let bar = progress_bar("checking cold keys");
            let report = ops::check(&common.dir, force, &|done| bar.set_position(done));
            bar.finish_and_clear();
            let report = report?;
            let sound = report.problems.is_empty();
            print_report(&report, common.json, || {
                let keys: u64 = report.cold_keys.values().sum();
                let mut text = format!(
                    "dir {}{}\nWAL: {} segments, {} records, {} bytes, LSN {}..{}\ncheckpoint: LSN {}\ncold tier: {keys} live keys ({}), {} expired, {} value bytes, {} bytes on disk\nfilter: {}\n",
                    report.dir.display(),
                    if report.live_server { " (live server, read-only)" } else { "" },
                    report.wal.segments,
                    report.wal.records,
                    report.wal.bytes,
                    show(report.wal.first_lsn),
                    show(report.wal.last_lsn),
                    show(report.checkpoint_lsn),
                    report
                        .cold_keys
                        .iter()
                        .map(|(db, n)| format!("db{db}={n}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                    report.cold_expired_keys,
                    report.cold_value_bytes,
                    report.cold_disk_bytes,
                    match report.filter_checked_keys {
                        Some(n) => format!("saved filter checked against {n} cold keys"),
                        None => "none saved (rebuilt at start)".into(),
                    },
                );
                if sound {
                    text.push_str("no problems found\n");
                } else {
                    text.push_str(&format!("{} problem(s):\n", report.problems.len()));
                    for problem in &report.problems {
                        text.push_str(&format!("  {problem}\n"));
                    }
                }
                text
            });
            Ok(sound)
        }
        Command::Recover {
            common,
            salvage,
            to_checkpoint,
        } => {
            let report = match to_checkpoint {
                Some(id) => ops::checkpoint_restore(&common.dir, &id)?,
                None => ops::recover(&common.dir, salvage)?,
            };
            print_report(&report, common.json, || recover_text(&report));
            Ok(true)
        }
        Command::Compact { common } => {
            let bar = progress_bar("expired keys removed");
            let report = ops::compact(&common.dir, &config, &|done| bar.set_position(done));
            bar.finish_and_clear();
            let report = report?;
            print_report(&report, common.json, || {
                format!(
                    "cold tier: {} bytes before, {} bytes after; {} expired keys removed; {} keys kept\n",
                    report.bytes_before, report.bytes_after, report.expired_keys_removed, report.keys
                )
            });
            Ok(true)
        }
        Command::Checkpoint { action } => match action {
            CheckpointAction::Create { common } => {
                let entry = ops::checkpoint_create(&common.dir, &config)?;
                print_report(&entry, common.json, || checkpoint_line(&entry));
                Ok(true)
            }
            CheckpointAction::List { common } => {
                let entries = ops::checkpoint_list(&common.dir)?;
                print_report(&entries, common.json, || {
                    if entries.is_empty() {
                        return "no retained checkpoints\n".into();
                    }
                    entries.iter().map(checkpoint_line).collect()
                });
                Ok(true)
            }
            CheckpointAction::Restore { common, id } => {
                let report = ops::checkpoint_restore(&common.dir, &id)?;
                print_report(&report, common.json, || recover_text(&report));
                Ok(true)
            }
        },
        Command::Export {
            common,
            db,
            pattern,
            out,
        } => {
            let filter = ops::ExportFilter {
                db,
                pattern: pattern.map(String::into_bytes),
            };
            let bar = progress_bar("keys exported");
            let report = match &out {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .map_err(|err| format!("cannot create {}: {err}", path.display()))?;
                    let mut writer = std::io::BufWriter::new(file);
                    ops::export(&common.dir, &config, &filter, &mut writer, &|done| {
                        bar.set_position(done)
                    })
                }
                None => {
                    let mut writer = std::io::BufWriter::new(std::io::stdout().lock());
                    ops::export(&common.dir, &config, &filter, &mut writer, &|done| {
                        bar.set_position(done)
                    })
                }
            };
            bar.finish_and_clear();
            let report = report?;
            // The data may be on stdout: the report always goes to stderr.
            let text = match common.json {
                true => serde_json::to_string(&report).expect("reports serialize"),
                false => format!(
                    "exported {} keys and {} FUNCTION libraries ({} bytes)",
                    report.keys, report.libraries, report.bytes
                ),
            };
            eprintln!("{text}");
            Ok(true)
        }
        Command::Import { common, input } => {
            let bar = progress_bar("commands imported");
            let report = match &input {
                Some(path) => {
                    let file = std::fs::File::open(path)
                        .map_err(|err| format!("cannot open {}: {err}", path.display()))?;
                    let mut reader = std::io::BufReader::new(file);
                    ops::import(&common.dir, &config, &mut reader, &|done| {
                        bar.set_position(done)
                    })
                }
                None => ops::import(
                    &common.dir,
                    &config,
                    &mut std::io::stdin().lock(),
                    &|done| bar.set_position(done),
                ),
            };
            bar.finish_and_clear();
            let report = report?;
            print_report(&report, common.json, || {
                let mut text = format!(
                    "{} commands, {} errors; {} keys in the directory\n",
                    report.commands, report.errors, report.keys
                );
                for error in &report.first_errors {
                    text.push_str(&format!("  {error}\n"));
                }
                text
            });
            Ok(report.errors == 0)
        }
    }
}

fn load_config(file: Option<&std::path::Path>) -> Result<Config, String> {
    let env = std::env::vars()
        .filter(|(name, _)| name.starts_with("HYPERCACHE_") && name != "HYPERCACHE_LOG");
    config::load(file, env, &Overrides::default()).map_err(|err| err.to_string())
}

/// A spinner with a count on a terminal; nothing when stderr is not one (scripts, CI).
fn progress_bar(what: &'static str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    if std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {pos} {msg} ({elapsed})")
                .expect("a valid template"),
        );
        bar.set_message(what);
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}

fn print_report<T: Serialize>(report: &T, json: bool, text: impl FnOnce() -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).expect("reports serialize")
        );
    } else {
        print!("{}", text());
    }
}

fn show(value: Option<u64>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

fn checkpoint_line(entry: &ops::CheckpointEntry) -> String {
    format!(
        "{}  LSN {}  {} bytes  {}\n",
        entry.id,
        show(entry.lsn),
        entry.disk_bytes,
        entry.path.display()
    )
}

fn recover_text(report: &ops::RecoverReport) -> String {
    let mut text = String::new();
    if let Some(path) = &report.restored {
        text.push_str(&format!("restored checkpoint {}\n", path.display()));
    }
    for path in &report.moved_aside {
        text.push_str(&format!("moved aside (kept): {}\n", path.display()));
    }
    if report.dropped.is_empty() && report.restored.is_none() {
        text.push_str("the WAL is intact; nothing dropped\n");
    }
    for dropped in &report.dropped {
        text.push_str(&format!("dropped: {dropped}\n"));
    }
    text
}
