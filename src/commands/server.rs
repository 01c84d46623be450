//! Server commands: INFO, CONFIG, FLUSHDB / FLUSHALL, SAVE / BGSAVE / LASTSAVE, TIME,
//! SHUTDOWN, SLOWLOG, MEMORY USAGE, a DEBUG subset and COMMAND, with Redis 7's replies and
//! error texts. COMMAND answers from the command table; CONFIG maps Redis's parameter names
//! onto the typed configuration through `config::params`. Handlers that block (flushes,
//! DEBUG SLEEP, writing the config file) first hand themselves to a blocking thread, and no
//! client input makes any of them panic.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::args::{self, is};
use super::table::{
    self, CommandSpec, Handler, ADMIN, ALL_SHARDS, FAST, LOADING, NOSCRIPT, NO_KEYS, NO_MULTI,
    READONLY, STALE, WRITE,
};
use super::{help_reply, CommandError, CommandResult, Ctx};
use crate::config::params::{self, Mutability, Param};
use crate::config::Config;
use crate::engine::glob::glob_match;
use crate::engine::{Access, CheckpointReason};
use crate::metrics::info;
use crate::protocol::Reply;
use crate::server::ReplyMode;

const GROUP: &str = "server";

/// A keyless command of this family.
const fn command(
    name: &'static str,
    arity: i32,
    flags: u32,
    since: &'static str,
    summary: &'static str,
    handler: Handler,
) -> CommandSpec {
    CommandSpec::new(name, arity, flags, NO_KEYS, GROUP, since, summary, handler)
}

/// What Redis gives every CONFIG subcommand but HELP.
const CONFIG_FLAGS: u32 = ADMIN | NOSCRIPT | LOADING | STALE;
const HELP_SUMMARY: &str = "Returns helpful text about the different subcommands.";

pub const COMMANDS: &[CommandSpec] = &[
    command(
        "info",
        -1,
        LOADING | STALE,
        "1.0.0",
        "Returns information and statistics about the server.",
        info,
    ),
    CommandSpec {
        subcommands: &[
            command(
                "get",
                -3,
                CONFIG_FLAGS,
                "2.0.0",
                "Returns the effective values of configuration parameters.",
                config_get,
            ),
            command(
                "set",
                -4,
                CONFIG_FLAGS,
                "2.0.0",
                "Sets configuration parameters in-flight.",
                config_set,
            ),
            command(
                "resetstat",
                2,
                CONFIG_FLAGS,
                "2.0.0",
                "Resets the server's statistics.",
                config_resetstat,
            ),
            command(
                "rewrite",
                2,
                CONFIG_FLAGS,
                "2.8.0",
                "Persists the effective configuration to file.",
                config_rewrite,
            ),
            command(
                "help",
                2,
                LOADING | STALE,
                "5.0.0",
                HELP_SUMMARY,
                config_help,
            ),
        ],
        ..command(
            "config",
            -2,
            0,
            "2.0.0",
            "A container for server configuration commands.",
            config_help,
        )
    },
    command(
        "flushdb",
        -1,
        WRITE | ALL_SHARDS,
        "1.0.0",
        "Removes all keys from the current database.",
        flushdb,
    ),
    command(
        "flushall",
        -1,
        WRITE | ALL_SHARDS,
        "1.0.0",
        "Removes all keys from all databases.",
        flushall,
    ),
    command(
        "save",
        1,
        ADMIN | NOSCRIPT | NO_MULTI,
        "1.0.0",
        "Synchronously saves the database(s) to disk.",
        save,
    ),
    command(
        "bgsave",
        -1,
        ADMIN | NOSCRIPT,
        "1.0.0",
        "Asynchronously saves the database(s) to disk.",
        bgsave,
    ),
    command(
        "lastsave",
        1,
        LOADING | STALE | FAST,
        "1.0.0",
        "Returns the Unix timestamp of the last successful save to disk.",
        lastsave,
    ),
    command(
        "time",
        1,
        LOADING | STALE | FAST,
        "2.6.0",
        "Returns the server time.",
        time,
    ),
    command(
        "shutdown",
        -1,
        ADMIN | NOSCRIPT | LOADING | STALE | NO_MULTI,
        "1.0.0",
        "Synchronously saves the database(s) to disk and shuts down the Redis server.",
        shutdown,
    ),
    CommandSpec {
        subcommands: &[
            command(
                "get",
                -2,
                ADMIN | LOADING | STALE,
                "2.2.12",
                "Returns the slow log's entries.",
                slowlog_get,
            ),
            command(
                "len",
                2,
                ADMIN | LOADING | STALE,
                "2.2.12",
                "Returns the number of entries in the slow log.",
                slowlog_len,
            ),
            command(
                "reset",
                2,
                ADMIN | LOADING | STALE,
                "2.2.12",
                "Clears all entries from the slow log.",
                slowlog_reset,
            ),
            command(
                "help",
                2,
                LOADING | STALE,
                "6.2.0",
                HELP_SUMMARY,
                slowlog_help,
            ),
        ],
        ..command(
            "slowlog",
            -2,
            0,
            "2.2.12",
            "A container for slow log commands.",
            slowlog_help,
        )
    },
    CommandSpec {
        subcommands: &[
            CommandSpec {
                first_key: 2,
                last_key: 2,
                step: 1,
                ..command(
                    "usage",
                    -3,
                    READONLY,
                    "4.0.0",
                    "Estimates the memory usage of a key.",
                    memory_usage,
                )
            },
            command(
                "help",
                2,
                LOADING | STALE,
                "4.0.0",
                HELP_SUMMARY,
                memory_help,
            ),
        ],
        ..command(
            "memory",
            -2,
            0,
            "4.0.0",
            "A container for memory diagnostics commands.",
            memory_help,
        )
    },
    // Not a container, as in Redis: DEBUG parses its own subcommands and reports them with
    // its own error text.
    command(
        "debug",
        -2,
        ADMIN | NOSCRIPT | LOADING | STALE,
        "1.0.0",
        "A container for debugging commands.",
        debug,
    ),
    CommandSpec {
        subcommands: &[
            command(
                "count",
                2,
                LOADING | STALE,
                "2.8.13",
                "Returns a count of commands.",
                command_count,
            ),
            command(
                "info",
                -2,
                LOADING | STALE,
                "2.8.13",
                "Returns information about one, multiple or all commands.",
                command_info,
            ),
            command(
                "docs",
                -2,
                LOADING | STALE,
                "7.0.0",
                "Returns documentary information about one, multiple or all commands.",
                command_docs,
            ),
            command(
                "list",
                -2,
                LOADING | STALE,
                "7.0.0",
                "Returns a list of command names.",
                command_list,
            ),
            command(
                "getkeys",
                -4,
                LOADING | STALE,
                "2.8.13",
                "Extracts the key names from an arbitrary command.",
                command_getkeys,
            ),
            command(
                "help",
                2,
                LOADING | STALE,
                "5.0.0",
                HELP_SUMMARY,
                command_help,
            ),
        ],
        ..command(
            "command",
            -1,
            LOADING | STALE,
            "2.8.13",
            "Returns detailed information about all commands.",
            command_all,
        )
    },
];

// ----- shared helpers --------------------------------------------------------------------

/// Redis's `addReplySubcommandSyntaxError`, for commands that check their own arguments.
fn subcommand_syntax_error(command: &str, subcommand: &Bytes) -> CommandError {
    let name: String = args::text(subcommand).chars().take(128).collect();
    CommandError::err(format!(
        "unknown subcommand or wrong number of arguments for '{name}'. Try {command} HELP."
    ))
}

/// Blocking work must not run on the async workers: the dispatcher retries it on a
/// blocking thread.
fn off_async_workers(ctx: &Ctx<'_, '_>) -> Result<(), CommandError> {
    if ctx.store.access() == Access::HotOnly {
        Err(CommandError::WouldBlock)
    } else {
        Ok(())
    }
}

// ----- INFO, flushing, saving, time, shutdown --------------------------------------------

fn info(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let sections: Vec<String> = args[1..].iter().map(args::text).collect();
    let text = info::render(ctx.shared, &sections);
    // RESP2 clients get the text as a bulk string.
    Ok(Reply::Verbatim {
        format: *b"txt",
        text: Bytes::from(text),
    })
}

/// FLUSHDB / FLUSHALL take ASYNC or SYNC; both flush synchronously here, since dropping
/// the hot entries and a cold-tier range delete are quick either way.
fn check_flush_mode(args: &[Bytes]) -> Result<(), CommandError> {
    match args {
        [_] => Ok(()),
        [_, mode] if is(mode, "async") || is(mode, "sync") => Ok(()),
        _ => Err(CommandError::syntax()),
    }
}

fn flushdb(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    check_flush_mode(args)?;
    let db = ctx.db();
    ctx.store.flushdb(db)?;
    Ok(Reply::ok())
}

fn flushall(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    check_flush_mode(args)?;
    ctx.store.flushall()?;
    Ok(Reply::ok())
}

/// SAVE: a checkpoint (DESIGN §4): every dirty hot entry written to the cold tier, the
/// checkpoint record synced, WAL segments it covers deleted. There is no RDB file: the cold
/// tier is the snapshot.
fn save(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    if ctx.store.access() == Access::HotOnly {
        return Err(CommandError::WouldBlock);
    }
    ctx.engine()
        .checkpoint(CheckpointReason::Requested)
        .map_err(|err| CommandError::err(format!("saving failed: {err}")))?;
    ctx.shared.note_saved();
    Ok(Reply::ok())
}

fn bgsave(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    match args {
        [_] => {}
        [_, option] if is(option, "schedule") => {}
        _ => return Err(CommandError::syntax()),
    }
    if ctx
        .shared
        .bgsave_in_progress
        .swap(true, std::sync::atomic::Ordering::SeqCst)
    {
        return Err(CommandError::err("Background save already in progress"));
    }
    let engine = std::sync::Arc::clone(&ctx.shared.engine);
    let last_save = std::sync::Arc::clone(&ctx.shared.last_save);
    let in_progress = std::sync::Arc::clone(&ctx.shared.bgsave_in_progress);
    let spawned = std::thread::Builder::new()
        .name("hc-bgsave".into())
        .spawn(move || {
            match engine.checkpoint(CheckpointReason::Requested) {
                Ok(checkpoint) => {
                    last_save.store(
                        crate::server::unix_seconds(),
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    tracing::info!(
                        entries = checkpoint.entries_written,
                        lsn = checkpoint.lsn,
                        "background save done"
                    );
                }
                Err(err) => tracing::warn!(%err, "background save failed"),
            }
            in_progress.store(false, std::sync::atomic::Ordering::SeqCst);
        });
    if spawned.is_err() {
        ctx.shared
            .bgsave_in_progress
            .store(false, std::sync::atomic::Ordering::SeqCst);
        return Err(CommandError::err("cannot start the background save thread"));
    }
    Ok(Reply::Simple("Background saving started".into()))
}

/// The last successful save: SAVE, BGSAVE or a periodic checkpoint (else the start time).
fn lastsave(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    let checkpoint_seconds = ctx.engine().persistence_report().last_checkpoint.unix_ms / 1000;
    let seconds = ctx
        .shared
        .last_save
        .load(std::sync::atomic::Ordering::Relaxed)
        .max(checkpoint_seconds);
    Ok(Reply::Integer(i64::try_from(seconds).unwrap_or(i64::MAX)))
}

fn time(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    let micros = server_time_micros(ctx.engine().now_ms(), system_time_micros());
    Ok(Reply::Array(vec![
        Reply::bulk((micros / 1_000_000).to_string()),
        Reply::bulk((micros % 1_000_000).to_string()),
    ]))
}

fn system_time_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
        })
}

/// TIME follows the engine's clock, so a test that freezes that clock sees TIME agree with
/// TTLs; while the engine runs on the system clock, the system clock adds the microseconds.
fn server_time_micros(engine_ms: u64, system_micros: u64) -> u64 {
    let engine_micros = engine_ms.saturating_mul(1000);
    // The two clocks are read a moment apart; allow for that.
    if engine_micros.abs_diff(system_micros) < 2_000 {
        system_micros
    } else {
        engine_micros
    }
}

/// SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]. Without NOSAVE the server checkpoints
/// before it exits, so the restart is warm. NOW and FORCE change nothing here: there are no
/// replicas to wait for, and shutting down never gives up on a failed save.
fn shutdown(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let (mut nosave, mut save, mut other, mut abort) = (false, false, false, false);
    for arg in &args[1..] {
        if is(arg, "nosave") {
            nosave = true;
        } else if is(arg, "save") {
            save = true;
        } else if is(arg, "now") || is(arg, "force") {
            other = true;
        } else if is(arg, "abort") {
            abort = true;
        } else {
            return Err(CommandError::syntax());
        }
    }
    if (abort && (nosave || save || other)) || (nosave && save) {
        return Err(CommandError::syntax());
    }
    if abort {
        // Shutting down is immediate, so there is never one to abort.
        return Err(CommandError::err("No shutdown in progress."));
    }
    ctx.shared.request_shutdown(!nosave);
    // Redis closes the connection without replying when the shutdown goes ahead.
    ctx.client.close_after_reply = true;
    if ctx.client.reply_mode == ReplyMode::On {
        ctx.client.reply_mode = ReplyMode::Skip;
    }
    Ok(Reply::ok())
}

// ----- CONFIG ----------------------------------------------------------------------------

const CONFIG_HELP: &[&str] = &[
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "REWRITE",
    "    Rewrite the configuration file.",
];

fn config_help(_ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    Ok(help_reply("CONFIG", CONFIG_HELP))
}

/// The configuration as CONFIG shows it: the port is the one actually bound, which differs
/// from the configured one when that was 0.
fn shown_config(config: &Config, bound_port: u16) -> Config {
    let mut shown = config.clone();
    shown.server.port = bound_port;
    shown
}

/// CONFIG GET pattern [pattern ...]: a pattern without glob characters names a parameter
/// (and is echoed as given, as Redis does); the others are matched case-insensitively.
/// Each parameter is listed once.
fn config_get(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let shown = shown_config(&ctx.shared.config.read(), ctx.shared.port);
    let mut found: Vec<(Bytes, &'static Param)> = Vec::new();
    let mut add = |name: Bytes, param: &'static Param| {
        if !found.iter().any(|(_, seen)| std::ptr::eq(*seen, param)) {
            found.push((name, param));
        }
    };
    for pattern in &args[2..] {
        if !pattern
            .iter()
            .any(|byte| matches!(byte, b'*' | b'?' | b'['))
        {
            if let Some(param) = params::lookup(pattern) {
                add(pattern.clone(), param);
            }
            continue;
        }
        let pattern = pattern.to_ascii_lowercase();
        for param in params::PARAMS {
            if glob_match(&pattern, param.name.as_bytes()) {
                add(Bytes::from_static(param.name.as_bytes()), param);
            }
        }
    }
    Ok(Reply::Map(
        found
            .into_iter()
            .map(|(name, param)| (Reply::Bulk(name), Reply::bulk((param.get)(&shown))))
            .collect(),
    ))
}

fn config_set(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    if !args.len().is_multiple_of(2) {
        return Err(CommandError::syntax());
    }
    let pairs: Vec<(&[u8], &[u8])> = args[2..]
        .chunks_exact(2)
        .map(|pair| (&pair[0][..], &pair[1][..]))
        .collect();
    // Held throughout, so concurrent CONFIG SETs cannot lose each other's changes.
    let mut config = ctx.shared.config.write();
    let updated = apply_config_set(&config, ctx.shared.port, &pairs)?;
    // Everything else reads the live configuration when it needs it.
    if updated.slowlog.max_len != config.slowlog.max_len {
        ctx.shared.slowlog.set_max_len(updated.slowlog.max_len);
    }
    ctx.shared
        .slowlog
        .set_threshold_us(updated.slowlog.log_slower_than);
    if updated.logging.level != config.logging.level {
        crate::config::apply_log_level(&updated.logging.level);
    }
    *config = updated;
    Ok(Reply::ok())
}

fn config_set_failed(name: &str, reason: &str) -> CommandError {
    CommandError::err(format!(
        "CONFIG SET failed (possibly related to argument '{name}') - {reason}"
    ))
}

/// CONFIG SET's rules, apart from the running server: all the changes or none. Like Redis,
/// names are checked first (unknown, immutable, duplicate), then values in order.
fn apply_config_set(
    current: &Config,
    bound_port: u16,
    pairs: &[(&[u8], &[u8])],
) -> Result<Config, CommandError> {
    let shown = shown_config(current, bound_port);
    let mut chosen: Vec<(&'static Param, &[u8])> = Vec::with_capacity(pairs.len());
    for (name, value) in pairs {
        let given = String::from_utf8_lossy(name);
        let Some(param) = params::lookup(name) else {
            return Err(CommandError::err(format!(
                "Unknown option or number of arguments for CONFIG SET - '{given}'"
            )));
        };
        if param.mutability == Mutability::Immutable && parse_shown(param, &shown, value).is_err() {
            return Err(config_set_failed(&given, IMMUTABLE));
        }
        if chosen.iter().any(|(seen, _)| std::ptr::eq(*seen, param)) {
            return Err(config_set_failed(&given, "duplicate parameter"));
        }
        chosen.push((param, value));
    }
    let mut updated = current.clone();
    for (param, value) in chosen {
        let failed = |reason: &str| config_set_failed(param.name, reason);
        match param.mutability {
            Mutability::Immutable => {}
            Mutability::Fixed => {
                parse_shown(param, &shown, value).map_err(|reason| failed(&reason))?
            }
            Mutability::Live => {
                let value = std::str::from_utf8(value)
                    .map_err(|_| failed("argument must be valid UTF-8"))?;
                // The current value always goes back in, even one outside Redis's range
                // (the config file's limits are looser than CONFIG SET's).
                if value != (param.get)(&shown) {
                    (param.set)(&mut updated, value).map_err(|reason| failed(&reason))?;
                }
            }
        }
    }
    Ok(updated)
}

const IMMUTABLE: &str = "can't set immutable config";

/// Checks that `value` parses and denotes what `param` already is (`1gb` is 1073741824):
/// all a parameter the server cannot change will take.
fn parse_shown(param: &Param, shown: &Config, value: &[u8]) -> Result<(), String> {
    let value = std::str::from_utf8(value).map_err(|_| IMMUTABLE.to_string())?;
    let mut parsed = shown.clone();
    (param.set)(&mut parsed, value)?;
    if (param.get)(&parsed) == (param.get)(shown) {
        Ok(())
    } else {
        Err(IMMUTABLE.into())
    }
}

/// Redis resets the counters INFO shows; the slow log keeps its entries (SLOWLOG RESET).
fn config_resetstat(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    ctx.shared.stats.reset();
    ctx.engine().stats().reset();
    Ok(Reply::ok())
}

fn config_rewrite(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    let Some(path) = ctx.shared.config_file.as_deref() else {
        return Err(CommandError::err(
            "The server is running without a config file",
        ));
    };
    off_async_workers(ctx)?;
    let rewrite_failed =
        |err: &dyn std::fmt::Display| CommandError::err(format!("Rewriting config file: {err}"));
    let yaml =
        serde_yaml::to_string(&*ctx.shared.config.read()).map_err(|err| rewrite_failed(&err))?;
    let text =
        format!("# Written by CONFIG REWRITE from the running server's configuration.\n{yaml}");
    replace_file(path, text.as_bytes()).map_err(|err| rewrite_failed(&err))?;
    Ok(Reply::ok())
}

/// Writes a sibling file and renames it over `path`, so a crash leaves the old file or
/// the new one, never half of one.
fn replace_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".rewrite-tmp");
    let temporary = Path::new(&temporary);
    let mut file = std::fs::File::create(temporary)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(temporary, path)
}

// ----- SLOWLOG ---------------------------------------------------------------------------

const SLOWLOG_HELP: &[&str] = &[
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
];

fn slowlog_help(_ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    Ok(help_reply("SLOWLOG", SLOWLOG_HELP))
}

/// How many entries SLOWLOG GET returns: 10 by default, -1 = all.
fn slowlog_count(arg: Option<&Bytes>) -> Result<usize, CommandError> {
    let Some(arg) = arg else {
        return Ok(10);
    };
    match args::parse_i64(arg) {
        Some(-1) => Ok(usize::MAX),
        Some(count) if count >= 0 => Ok(usize::try_from(count).unwrap_or(usize::MAX)),
        _ => Err(CommandError::err(
            "count should be greater than or equal to -1",
        )),
    }
}

fn slowlog_get(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    if args.len() > 3 {
        return Err(subcommand_syntax_error("SLOWLOG", &args[1]));
    }
    let count = slowlog_count(args.get(2))?;
    let entries = ctx
        .shared
        .slowlog
        .latest(count)
        .into_iter()
        .map(|entry| {
            Reply::Array(vec![
                Reply::Integer(i64::try_from(entry.id).unwrap_or(i64::MAX)),
                Reply::Integer(i64::try_from(entry.unix_time).unwrap_or(i64::MAX)),
                Reply::Integer(i64::try_from(entry.micros).unwrap_or(i64::MAX)),
                Reply::Array(entry.args.into_iter().map(Reply::Bulk).collect()),
                Reply::bulk(entry.client_addr),
                Reply::bulk(entry.client_name),
            ])
        })
        .collect();
    Ok(Reply::Array(entries))
}

fn slowlog_len(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    Ok(Reply::Integer(
        i64::try_from(ctx.shared.slowlog.len()).unwrap_or(i64::MAX),
    ))
}

fn slowlog_reset(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    ctx.shared.slowlog.reset();
    Ok(Reply::ok())
}

// ----- MEMORY ----------------------------------------------------------------------------

const MEMORY_HELP: &[&str] = &[
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
];

fn memory_help(_ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    Ok(help_reply("MEMORY", MEMORY_HELP))
}

/// MEMORY USAGE key [SAMPLES count]. Values are strings, so there is nothing to sample;
/// the option is checked as Redis checks it. A cold key is measured as the hot tier
/// would hold it.
fn memory_usage(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let mut options = args[3..].iter();
    while let Some(option) = options.next() {
        let Some(samples) = options.next().filter(|_| is(option, "samples")) else {
            return Err(CommandError::syntax());
        };
        if args::int(samples)? < 0 {
            return Err(CommandError::syntax());
        }
    }
    let db = ctx.db();
    Ok(match ctx.store.inspect(db, &args[2])? {
        Some(info) => Reply::Integer(i64::try_from(info.memory_bytes).unwrap_or(i64::MAX)),
        None => Reply::Nil,
    })
}

// ----- DEBUG -----------------------------------------------------------------------------

const DEBUG_HELP: &[&str] = &[
    "SET-ACTIVE-EXPIRE <0|1>",
    "    Setting it to 0 disables expiring keys in background when they are not",
    "    accessed (otherwise the Redis behavior). Setting it to 1 reenables back the",
    "    default.",
    "SLEEP <seconds>",
    "    Stop the server for <seconds>. Decimals allowed.",
];

fn debug(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let subcommand = &args[1];
    match args.len() {
        2 if is(subcommand, "help") => Ok(help_reply("DEBUG", DEBUG_HELP)),
        3 if is(subcommand, "sleep") => {
            off_async_workers(ctx)?;
            // Only this client waits; Redis would stop the whole server.
            std::thread::sleep(sleep_duration(&args[2]));
            Ok(Reply::ok())
        }
        3 if is(subcommand, "set-active-expire") => {
            ctx.engine().set_active_expiry(c_atoi(&args[2]) != 0);
            Ok(Reply::ok())
        }
        _ => Err(subcommand_syntax_error("DEBUG", subcommand)),
    }
}

/// DEBUG SLEEP reads its argument with C's `strtod`: the longest numeric prefix, 0 when
/// there is none. Negative and unrepresentable times do not sleep.
fn sleep_duration(arg: &[u8]) -> Duration {
    // A number's text is short; looking further would only cost time on junk input.
    let text = String::from_utf8_lossy(&arg[..arg.len().min(64)]);
    let text = text.trim_start();
    let seconds = (1..=text.len())
        .rev()
        .filter(|end| text.is_char_boundary(*end))
        .find_map(|end| text[..end].parse::<f64>().ok())
        .unwrap_or(0.0);
    Duration::try_from_secs_f64(seconds).unwrap_or(Duration::ZERO)
}

/// C's `atoi`: leading spaces, an optional sign, then digits; 0 when there are none.
fn c_atoi(arg: &[u8]) -> i64 {
    let mut bytes = arg
        .iter()
        .skip_while(|byte| byte.is_ascii_whitespace())
        .peekable();
    let negative = match bytes.peek() {
        Some(b'-') => {
            bytes.next();
            true
        }
        Some(b'+') => {
            bytes.next();
            false
        }
        _ => false,
    };
    let magnitude = bytes
        .take_while(|byte| byte.is_ascii_digit())
        .fold(0i64, |total, digit| {
            total
                .saturating_mul(10)
                .saturating_add(i64::from(digit - b'0'))
        });
    if negative {
        -magnitude
    } else {
        magnitude
    }
}

// ----- COMMAND ---------------------------------------------------------------------------

const COMMAND_HELP: &[&str] = &[
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full Redis command.",
];

fn command_help(_ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    Ok(help_reply("COMMAND", COMMAND_HELP))
}

/// Top-level commands by name, so replies do not depend on hash order.
fn sorted_commands() -> Vec<&'static CommandSpec> {
    let mut specs: Vec<_> = table::all().collect();
    specs.sort_by_key(|spec| spec.name);
    specs
}

/// A command by the name COMMAND INFO / DOCS accept: "get" or "config|get".
fn find_command(name: &[u8]) -> Option<(&'static CommandSpec, Option<&'static CommandSpec>)> {
    match name.iter().position(|byte| *byte == b'|') {
        None => table::lookup(name).map(|spec| (spec, None)),
        Some(bar) => {
            let parent = table::lookup(&name[..bar])?;
            let spec = parent.subcommand(&name[bar + 1..])?;
            Some((spec, Some(parent)))
        }
    }
}

/// ACL categories, derived from the flags and the group the way Redis assigns most of
/// them, in Redis's order (the table has no ACL data of its own).
fn acl_categories(spec: &CommandSpec) -> Vec<&'static str> {
    let mut categories = Vec::new();
    if spec.group == "generic" {
        categories.push("@keyspace");
    }
    if spec.has(READONLY) {
        categories.push("@read");
    }
    if spec.has(WRITE) {
        categories.push("@write");
    }
    let data_type = match spec.group {
        "set" => Some("@set"),
        "sorted-set" => Some("@sortedset"),
        "list" => Some("@list"),
        "hash" => Some("@hash"),
        "string" => Some("@string"),
        "bitmap" => Some("@bitmap"),
        "hyperloglog" => Some("@hyperloglog"),
        "geo" => Some("@geo"),
        "stream" => Some("@stream"),
        "pubsub" => Some("@pubsub"),
        _ => None,
    };
    categories.extend(data_type);
    if spec.has(ADMIN) {
        categories.push("@admin");
    }
    categories.push(if spec.has(FAST) { "@fast" } else { "@slow" });
    if spec.has(ADMIN) {
        categories.push("@dangerous");
    }
    let family = match spec.group {
        "connection" => Some("@connection"),
        "transactions" => Some("@transaction"),
        "scripting" => Some("@scripting"),
        _ => None,
    };
    categories.extend(family);
    categories
}

fn simple_set(items: Vec<&'static str>) -> Reply {
    Reply::Set(
        items
            .into_iter()
            .map(|item| Reply::Simple(item.into()))
            .collect(),
    )
}

/// One COMMAND INFO entry, shaped as Redis 7's: name, arity, flags, first key, last key,
/// step, ACL categories, tips, key specifications, subcommands. The table has no tips or
/// key specifications, so those are empty (clients fall back on first/last/step).
fn info_entry(spec: &CommandSpec, parent: Option<&CommandSpec>) -> Reply {
    let subcommands = if spec.subcommands.is_empty() {
        Reply::Set(Vec::new())
    } else {
        Reply::Array(
            spec.subcommands
                .iter()
                .map(|sub| info_entry(sub, Some(spec)))
                .collect(),
        )
    };
    Reply::Array(vec![
        Reply::bulk(spec.full_name(parent)),
        Reply::Integer(i64::from(spec.arity)),
        simple_set(spec.flag_names()),
        Reply::Integer(i64::from(spec.first_key)),
        Reply::Integer(i64::from(spec.last_key)),
        Reply::Integer(i64::from(spec.step)),
        simple_set(acl_categories(spec)),
        Reply::Set(Vec::new()),
        Reply::Set(Vec::new()),
        subcommands,
    ])
}

/// One COMMAND DOCS entry: summary, since, group and, for containers, the subcommands'.
fn docs_entry(spec: &CommandSpec) -> Reply {
    let mut fields = vec![
        (Reply::bulk("summary"), Reply::bulk(spec.summary)),
        (Reply::bulk("since"), Reply::bulk(spec.since)),
        (Reply::bulk("group"), Reply::bulk(spec.group)),
    ];
    if !spec.subcommands.is_empty() {
        let subcommands = spec
            .subcommands
            .iter()
            .map(|sub| (Reply::bulk(sub.full_name(Some(spec))), docs_entry(sub)))
            .collect();
        fields.push((Reply::bulk("subcommands"), Reply::Map(subcommands)));
    }
    Reply::Map(fields)
}

fn command_all(_ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    Ok(Reply::Array(
        sorted_commands()
            .into_iter()
            .map(|spec| info_entry(spec, None))
            .collect(),
    ))
}

fn command_count(_ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    Ok(Reply::Integer(
        i64::try_from(table::count()).unwrap_or(i64::MAX),
    ))
}

/// COMMAND INFO [name ...]: all commands without names; nil for an unknown name.
fn command_info(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    if args.len() == 2 {
        return command_all(ctx, args);
    }
    Ok(Reply::Array(
        args[2..]
            .iter()
            .map(|name| match find_command(name) {
                Some((spec, parent)) => info_entry(spec, parent),
                None => Reply::Nil,
            })
            .collect(),
    ))
}

/// COMMAND DOCS [name ...]: all commands without names; unknown names are left out.
fn command_docs(_ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let docs = if args.len() == 2 {
        sorted_commands()
            .into_iter()
            .map(|spec| (Reply::bulk(spec.name), docs_entry(spec)))
            .collect()
    } else {
        args[2..]
            .iter()
            .filter_map(|name| {
                let (spec, parent) = find_command(name)?;
                Some((Reply::bulk(spec.full_name(parent)), docs_entry(spec)))
            })
            .collect()
    };
    Ok(Reply::Map(docs))
}

/// COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN pattern]: every command
/// and subcommand name.
fn command_list(_ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    enum Filter {
        All,
        Module,
        AclCategory(String),
        Pattern(Vec<u8>),
    }
    let filter = match &args[2..] {
        [] => Filter::All,
        [keyword, kind, value] if is(keyword, "filterby") => {
            if is(kind, "module") {
                Filter::Module
            } else if is(kind, "aclcat") {
                Filter::AclCategory(format!("@{}", args::text(value).to_ascii_lowercase()))
            } else if is(kind, "pattern") {
                Filter::Pattern(value.to_ascii_lowercase())
            } else {
                return Err(CommandError::syntax());
            }
        }
        _ => return Err(CommandError::syntax()),
    };
    let keep = |spec: &CommandSpec, name: &str| match &filter {
        Filter::All => true,
        // There are no modules.
        Filter::Module => false,
        Filter::AclCategory(category) => acl_categories(spec).contains(&category.as_str()),
        Filter::Pattern(pattern) => glob_match(pattern, name.as_bytes()),
    };
    let mut names = Vec::new();
    for spec in sorted_commands() {
        let commands = std::iter::once((spec, None))
            .chain(spec.subcommands.iter().map(|sub| (sub, Some(spec))));
        for (command, parent) in commands {
            let name = command.full_name(parent);
            if keep(command, &name) {
                names.push(Reply::bulk(name));
            }
        }
    }
    Ok(Reply::Array(names))
}

/// COMMAND GETKEYS command [arg ...]: the key arguments, by the table's key positions.
fn command_getkeys(_ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let inner = &args[2..];
    let invalid = || CommandError::err("Invalid command specified");
    let mut spec = table::lookup(&inner[0]).ok_or_else(invalid)?;
    if !spec.subcommands.is_empty() && inner.len() >= 2 {
        spec = spec.subcommand(&inner[1]).ok_or_else(invalid)?;
    }
    if !spec.arity_ok(inner.len()) {
        return Err(CommandError::err(
            "Invalid number of arguments specified for command",
        ));
    }
    let positions = spec.key_positions(inner.len());
    if positions.is_empty() {
        return Err(CommandError::err("The command has no key arguments"));
    }
    Ok(Reply::Array(
        positions
            .into_iter()
            .map(|position| Reply::Bulk(inner[position].clone()))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ByteSize;

    const PORT: u16 = 6379;

    fn set(current: &Config, pairs: &[(&str, &str)]) -> Result<Config, String> {
        let pairs: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(name, value)| (name.as_bytes(), value.as_bytes()))
            .collect();
        apply_config_set(current, PORT, &pairs).map_err(|err| match err {
            CommandError::Reply(text) => text,
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn every_config_get_value_is_accepted_by_config_set() {
        for bound_port in [PORT, 41234] {
            let config = Config {
                server: crate::config::ServerConfig {
                    port: 0,
                    ..Default::default()
                },
                ..Default::default()
            };
            let shown = shown_config(&config, bound_port);
            let names: Vec<String> = params::PARAMS
                .iter()
                .map(|param| param.name.to_uppercase())
                .collect();
            let values: Vec<String> = params::PARAMS
                .iter()
                .map(|param| (param.get)(&shown))
                .collect();
            // All at once, as a client restoring a CONFIG GET * would send them.
            let pairs: Vec<(&[u8], &[u8])> = names
                .iter()
                .zip(&values)
                .map(|(name, value)| (name.as_bytes(), value.as_bytes()))
                .collect();
            let updated = apply_config_set(&config, bound_port, &pairs)
                .unwrap_or_else(|err| panic!("{err:?}"));
            assert_eq!(updated, config);
        }
    }

    #[test]
    fn fixed_parameters_accept_only_their_value() {
        let config = Config::default();
        assert_eq!(set(&config, &[("maxmemory", "1gb")]), Ok(config.clone()));
        assert_eq!(set(&config, &[("port", "6379")]), Ok(config.clone()));
        assert_eq!(set(&config, &[("hz", "10")]), Ok(config.clone()));
        let failed = |name: &str, reason: &str| {
            format!("ERR CONFIG SET failed (possibly related to argument '{name}') - {reason}")
        };
        for (name, value) in [
            ("port", "1234"),
            ("maxmemory", "2gb"),
            ("save", "3600 1"),
            ("maxmemory-policy", "allkeys-lru"),
            ("hz", "100"),
            ("databases", "15"),
            ("hypercache-hot-shards", "abc"),
        ] {
            assert_eq!(
                set(&config, &[(name, value)]).unwrap_err(),
                failed(name, "can't set immutable config")
            );
        }
        // What Redis could change gets Redis's complaint about the value first.
        assert_eq!(
            set(&config, &[("MAXMEMORY", "abc")]).unwrap_err(),
            failed("maxmemory", "argument must be a memory value")
        );
        assert_eq!(
            set(&config, &[("save", "1 x")]).unwrap_err(),
            failed("save", "Invalid save parameters")
        );
        assert_eq!(
            set(&config, &[("maxmemory-policy", "lots")]).unwrap_err(),
            failed(
                "maxmemory-policy",
                "argument(s) must be one of the following: volatile-lru, volatile-lfu, \
                 volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, \
                 noeviction"
            )
        );
        // Redis checks immutability with the names, before any value.
        assert_eq!(
            set(&config, &[("timeout", "abc"), ("Databases", "15")]).unwrap_err(),
            failed("Databases", "can't set immutable config")
        );
    }

    #[test]
    fn config_set_errors_and_atomicity() {
        let config = Config::default();
        assert_eq!(
            set(&config, &[("foo", "bar")]).unwrap_err(),
            "ERR Unknown option or number of arguments for CONFIG SET - 'foo'"
        );
        // Names are all checked before any value.
        assert_eq!(
            set(&config, &[("timeout", "abc"), ("foo", "2")]).unwrap_err(),
            "ERR Unknown option or number of arguments for CONFIG SET - 'foo'"
        );
        assert_eq!(
            set(&config, &[("timeout", "1"), ("TIMEOUT", "2")]).unwrap_err(),
            "ERR CONFIG SET failed (possibly related to argument 'TIMEOUT') - duplicate parameter"
        );
        assert_eq!(
            set(&config, &[("timeout", "5"), ("MaxClients", "x")]).unwrap_err(),
            "ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument couldn't be parsed into an integer"
        );
        let updated = set(
            &config,
            &[
                ("timeout", "5"),
                ("maxclients", "20"),
                ("requirepass", "pw"),
                ("slowlog-max-len", "3"),
                ("proto-max-bulk-len", "2mb"),
                ("client-output-buffer-limit", "normal 1mb 512kb 10"),
            ],
        )
        .unwrap();
        assert_eq!(updated.server.timeout, 5);
        assert_eq!(updated.server.maxclients, 20);
        assert_eq!(updated.security.requirepass.as_deref(), Some("pw"));
        assert_eq!(updated.slowlog.max_len, 3);
        assert_eq!(updated.limits.proto_max_bulk_len, ByteSize(2 << 20));
        assert_eq!(
            updated.limits.client_output_buffer_soft_limit,
            ByteSize(512 << 10)
        );
    }

    #[test]
    fn a_current_value_outside_redis_range_is_accepted_back() {
        let mut config = Config::default();
        config.limits.proto_max_bulk_len = ByteSize(2048);
        assert_eq!(
            set(&config, &[("proto-max-bulk-len", "2048")]),
            Ok(config.clone())
        );
        assert!(set(&config, &[("proto-max-bulk-len", "4096")]).is_err());
    }

    fn command_spec(name: &str) -> &'static CommandSpec {
        table::lookup(name.as_bytes()).unwrap()
    }

    fn simple(items: &[&str]) -> Reply {
        Reply::Set(
            items
                .iter()
                .map(|item| Reply::Simple(item.to_string()))
                .collect(),
        )
    }

    #[test]
    fn command_info_entries_have_redis_7_shape() {
        let Reply::Array(entry) = info_entry(command_spec("config"), None) else {
            panic!()
        };
        assert_eq!(entry.len(), 10);
        assert_eq!(entry[0], Reply::bulk("config"));
        assert_eq!(entry[1], Reply::Integer(-2));
        assert_eq!(entry[2], simple(&[]));
        assert_eq!(
            entry[3..6],
            [Reply::Integer(0), Reply::Integer(0), Reply::Integer(0)]
        );
        assert_eq!(entry[6], simple(&["@slow"]));
        assert_eq!(entry[7], Reply::Set(vec![]));
        assert_eq!(entry[8], Reply::Set(vec![]));
        let Reply::Array(subcommands) = &entry[9] else {
            panic!("{:?}", entry[9])
        };
        assert_eq!(subcommands.len(), 5);
        let get = subcommands
            .iter()
            .find(
                |sub| matches!(sub, Reply::Array(fields) if fields[0] == Reply::bulk("config|get")),
            )
            .unwrap();
        let Reply::Array(get) = get else { panic!() };
        assert_eq!(get[1], Reply::Integer(-3));
        assert_eq!(get[2], simple(&["admin", "noscript", "loading", "stale"]));
        assert_eq!(get[6], simple(&["@admin", "@slow", "@dangerous"]));
        assert_eq!(get[9], Reply::Set(vec![]));

        let (usage, parent) = find_command(b"MEMORY|usage").unwrap();
        let Reply::Array(usage) = info_entry(usage, parent) else {
            panic!()
        };
        assert_eq!(usage[0], Reply::bulk("memory|usage"));
        assert_eq!(
            usage[3..6],
            [Reply::Integer(2), Reply::Integer(2), Reply::Integer(1)]
        );
        assert_eq!(usage[6], simple(&["@read", "@slow"]));
        assert!(find_command(b"config|nosuch").is_none());
        assert!(find_command(b"nosuch").is_none());
    }

    #[test]
    fn command_docs_entries_nest_subcommands() {
        let Reply::Map(fields) = docs_entry(command_spec("slowlog")) else {
            panic!()
        };
        let keys: Vec<&Reply> = fields.iter().map(|(key, _)| key).collect();
        assert_eq!(
            keys,
            [
                &Reply::bulk("summary"),
                &Reply::bulk("since"),
                &Reply::bulk("group"),
                &Reply::bulk("subcommands")
            ]
        );
        assert_eq!(fields[1].1, Reply::bulk("2.2.12"));
        assert_eq!(fields[2].1, Reply::bulk("server"));
        let Reply::Map(subcommands) = &fields[3].1 else {
            panic!()
        };
        assert_eq!(subcommands[0].0, Reply::bulk("slowlog|get"));
        let Reply::Map(get) = &subcommands[0].1 else {
            panic!()
        };
        assert_eq!(get.len(), 3, "a leaf has no subcommands field");
    }

    #[test]
    fn help_replies_follow_redis_layout() {
        let Reply::Array(lines) = help_reply("CONFIG", CONFIG_HELP) else {
            panic!()
        };
        assert_eq!(lines.len(), 11);
        assert_eq!(
            lines[0],
            Reply::Simple("CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:".into())
        );
        assert_eq!(lines[10], Reply::Simple("    Prints this help.".into()));
    }

    #[test]
    fn debug_arguments_parse_like_c() {
        assert_eq!(sleep_duration(b"0.25"), Duration::from_millis(250));
        assert_eq!(sleep_duration(b"1.5abc"), Duration::from_millis(1500));
        assert_eq!(sleep_duration(b"abc"), Duration::ZERO);
        assert_eq!(sleep_duration(b"-1"), Duration::ZERO);
        assert_eq!(sleep_duration(b"inf"), Duration::ZERO);
        assert_eq!(sleep_duration("\u{e9}1".as_bytes()), Duration::ZERO);
        assert_eq!(c_atoi(b"1"), 1);
        assert_eq!(c_atoi(b" -2x"), -2);
        assert_eq!(c_atoi(b"x"), 0);
        assert_eq!(c_atoi(b"99999999999999999999999"), i64::MAX);
    }

    #[test]
    fn slowlog_counts() {
        let count = |text: &'static str| slowlog_count(Some(&Bytes::from_static(text.as_bytes())));
        assert_eq!(slowlog_count(None).unwrap(), 10);
        assert_eq!(count("-1").unwrap(), usize::MAX);
        assert_eq!(count("0").unwrap(), 0);
        assert_eq!(count("3").unwrap(), 3);
        for bad in ["-2", "x", "1.5"] {
            assert!(
                matches!(count(bad), Err(CommandError::Reply(text)) if text == "ERR count should be greater than or equal to -1")
            );
        }
    }

    #[test]
    fn time_follows_a_frozen_engine_clock() {
        let now = 1_700_000_000_123_456;
        assert_eq!(server_time_micros(now / 1000, now), now);
        assert_eq!(server_time_micros(5_000, now), 5_000_000);
    }

    #[test]
    fn acl_categories_follow_flags_and_group() {
        assert_eq!(
            acl_categories(command_spec("flushall")),
            ["@write", "@slow"]
        );
        assert_eq!(acl_categories(command_spec("time")), ["@fast"]);
        assert_eq!(
            acl_categories(command_spec("debug")),
            ["@admin", "@slow", "@dangerous"]
        );
    }
}
