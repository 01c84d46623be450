//! Server commands, with Redis 7's replies and error texts: INFO, FLUSHDB / FLUSHALL,
//! SAVE / BGSAVE / LASTSAVE, TIME, SHUTDOWN and MEMORY USAGE here; CONFIG in `config`,
//! SLOWLOG in `slowlog`, DEBUG in `debug`, COMMAND in `introspection`. Handlers that block
//! (flushes, DEBUG SLEEP, writing the config file) first hand themselves to a blocking
//! thread, and no client input makes any of them panic.

mod config;
mod debug;
pub(super) mod info;
mod introspection;
mod slowlog;

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::args::{self, is};
use super::table::{
    acl, key, CommandSpec, KeySpec, ADMIN, ALL_SHARDS, FAST, LOADING, NOSCRIPT, NO_KEYS, NO_MULTI,
    READONLY, STALE, WRITE,
};
use super::ReplyMode;
use super::{help_reply, CommandError, CommandResult, Ctx};
use crate::engine::CheckpointReason;
use crate::protocol::Reply;
use config::{config_get, config_help, config_resetstat, config_rewrite, config_set};
use debug::debug;
use introspection::{
    command_all, command_count, command_docs, command_getkeys, command_help, command_info,
    command_list,
};
use slowlog::{slowlog_get, slowlog_help, slowlog_len, slowlog_reset};

const GROUP: &str = "server";

/// What Redis gives every CONFIG subcommand but HELP.
const CONFIG_FLAGS: u32 = ADMIN | NOSCRIPT | LOADING | STALE;

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "info",
        -1,
        LOADING | STALE,
        acl::DANGEROUS,
        NO_KEYS,
        GROUP,
        "1.0.0",
        "Returns information and statistics about the server.",
        info,
    ),
    CommandSpec::new(
        "config",
        -2,
        0,
        acl::NONE,
        NO_KEYS,
        GROUP,
        "2.0.0",
        "A container for server configuration commands.",
        config_help,
    )
    .with_subcommands(&[
        CommandSpec::new(
            "get",
            -3,
            CONFIG_FLAGS,
            acl::NONE,
            NO_KEYS,
            GROUP,
            "2.0.0",
            "Returns the effective values of configuration parameters.",
            config_get,
        ),
        CommandSpec::new(
            "set",
            -4,
            CONFIG_FLAGS,
            acl::NONE,
            NO_KEYS,
            GROUP,
            "2.0.0",
            "Sets configuration parameters in-flight.",
            config_set,
        ),
        CommandSpec::new(
            "resetstat",
            2,
            CONFIG_FLAGS,
            acl::NONE,
            NO_KEYS,
            GROUP,
            "2.0.0",
            "Resets the server's statistics.",
            config_resetstat,
        ),
        CommandSpec::new(
            "rewrite",
            2,
            CONFIG_FLAGS,
            acl::NONE,
            NO_KEYS,
            GROUP,
            "2.8.0",
            "Persists the effective configuration to file.",
            config_rewrite,
        ),
        CommandSpec::new(
            "help",
            2,
            LOADING | STALE,
            acl::NONE,
            NO_KEYS,
            GROUP,
            "5.0.0",
            "Returns helpful text about the different subcommands.",
            config_help,
        ),
    ]),
    CommandSpec::new(
        "flushdb",
        -1,
        WRITE | ALL_SHARDS,
        acl::KEYSPACE | acl::DANGEROUS,
        NO_KEYS,
        GROUP,
        "1.0.0",
        "Removes all keys from the current database.",
        flushdb,
    ),
    CommandSpec::new(
        "flushall",
        -1,
        WRITE | ALL_SHARDS,
        acl::KEYSPACE | acl::DANGEROUS,
        NO_KEYS,
        GROUP,
        "1.0.0",
        "Removes all keys from all databases.",
        flushall,
    ),
    CommandSpec::new(
        "save",
        1,
        ADMIN | NOSCRIPT | NO_MULTI,
        acl::NONE,
        NO_KEYS,
        GROUP,
        "1.0.0",
        "Synchronously saves the database(s) to disk.",
        save,
    ),
    CommandSpec::new(
        "bgsave",
        -1,
        ADMIN | NOSCRIPT,
        acl::NONE,
        NO_KEYS,
        GROUP,
        "1.0.0",
        "Asynchronously saves the database(s) to disk.",
        bgsave,
    ),
    CommandSpec::new(
        "lastsave",
        1,
        LOADING | STALE | FAST,
        acl::ADMIN | acl::DANGEROUS,
        NO_KEYS,
        GROUP,
        "1.0.0",
        "Returns the Unix timestamp of the last successful save to disk.",
        lastsave,
    ),
    CommandSpec::new(
        "time",
        1,
        LOADING | STALE | FAST,
        acl::NONE,
        NO_KEYS,
        GROUP,
        "2.6.0",
        "Returns the server time.",
        time,
    ),
    CommandSpec::new(
        "shutdown",
        -1,
        ADMIN | NOSCRIPT | LOADING | STALE | NO_MULTI,
        acl::NONE,
        NO_KEYS,
        GROUP,
        "1.0.0",
        "Synchronously saves the database(s) to disk and shuts down the Redis server.",
        shutdown,
    ),
    CommandSpec::new(
        "slowlog",
        -2,
        0,
        acl::NONE,
        NO_KEYS,
        GROUP,
        "2.2.12",
        "A container for slow log commands.",
        slowlog_help,
    )
    .with_subcommands(&[
        CommandSpec::new(
            "get",
            -2,
            ADMIN | LOADING | STALE,
            acl::NONE,
            NO_KEYS,
            GROUP,
            "2.2.12",
            "Returns the slow log's entries.",
            slowlog_get,
        ),
        CommandSpec::new(
            "len",
            2,
            ADMIN | LOADING | STALE,
            acl::NONE,
            NO_KEYS,
            GROUP,
            "2.2.12",
            "Returns the number of entries in the slow log.",
            slowlog_len,
        ),
        CommandSpec::new(
            "reset",
            2,
            ADMIN | LOADING | STALE,
            acl::NONE,
            NO_KEYS,
            GROUP,
            "2.2.12",
            "Clears all entries from the slow log.",
            slowlog_reset,
        ),
        CommandSpec::new(
            "help",
            2,
            LOADING | STALE,
            acl::NONE,
            NO_KEYS,
            GROUP,
            "6.2.0",
            "Returns helpful text about the different subcommands.",
            slowlog_help,
        ),
    ]),
    CommandSpec::new(
        "memory",
        -2,
        0,
        acl::NONE,
        NO_KEYS,
        GROUP,
        "4.0.0",
        "A container for memory diagnostics commands.",
        memory_help,
    )
    .with_subcommands(&[
        CommandSpec::new(
            "usage",
            -3,
            READONLY,
            acl::NONE,
            &[KeySpec::at(key::RO, 2)],
            GROUP,
            "4.0.0",
            "Estimates the memory usage of a key.",
            memory_usage,
        ),
        CommandSpec::new(
            "help",
            2,
            LOADING | STALE,
            acl::NONE,
            NO_KEYS,
            GROUP,
            "4.0.0",
            "Returns helpful text about the different subcommands.",
            memory_help,
        ),
    ]),
    CommandSpec::new(
        "debug",
        -2,
        ADMIN | NOSCRIPT | LOADING | STALE,
        acl::NONE,
        NO_KEYS,
        GROUP,
        "1.0.0",
        "A container for debugging commands.",
        debug,
    ),
    CommandSpec::new(
        "command",
        -1,
        LOADING | STALE,
        acl::CONNECTION,
        NO_KEYS,
        GROUP,
        "2.8.13",
        "Returns detailed information about all commands.",
        command_all,
    )
    .with_subcommands(&[
        CommandSpec::new(
            "count",
            2,
            LOADING | STALE,
            acl::CONNECTION,
            NO_KEYS,
            GROUP,
            "2.8.13",
            "Returns a count of commands.",
            command_count,
        ),
        CommandSpec::new(
            "info",
            -2,
            LOADING | STALE,
            acl::CONNECTION,
            NO_KEYS,
            GROUP,
            "2.8.13",
            "Returns information about one, multiple or all commands.",
            command_info,
        ),
        CommandSpec::new(
            "docs",
            -2,
            LOADING | STALE,
            acl::CONNECTION,
            NO_KEYS,
            GROUP,
            "7.0.0",
            "Returns documentary information about one, multiple or all commands.",
            command_docs,
        ),
        CommandSpec::new(
            "list",
            -2,
            LOADING | STALE,
            acl::CONNECTION,
            NO_KEYS,
            GROUP,
            "7.0.0",
            "Returns a list of command names.",
            command_list,
        ),
        CommandSpec::new(
            "getkeys",
            -4,
            LOADING | STALE,
            acl::CONNECTION,
            NO_KEYS,
            GROUP,
            "2.8.13",
            "Extracts the key names from an arbitrary command.",
            command_getkeys,
        ),
        CommandSpec::new(
            "help",
            2,
            LOADING | STALE,
            acl::CONNECTION,
            NO_KEYS,
            GROUP,
            "5.0.0",
            "Returns helpful text about the different subcommands.",
            command_help,
        ),
    ]),
];

// ----- shared helpers --------------------------------------------------------------------

/// Redis's `addReplySubcommandSyntaxError`, for commands that check their own arguments.
fn subcommand_syntax_error(command: &str, subcommand: &Bytes) -> CommandError {
    let name: String = args::text(subcommand).chars().take(128).collect();
    CommandError::err(format!(
        "unknown subcommand or wrong number of arguments for '{name}'. Try {command} HELP."
    ))
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
    ctx.audit("flushdb", serde_json::json!({ "db": db }));
    Ok(Reply::ok())
}

fn flushall(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    check_flush_mode(args)?;
    ctx.store.flushall()?;
    ctx.audit("flushall", serde_json::json!({}));
    Ok(Reply::ok())
}

/// SAVE: a checkpoint (DESIGN §4): every dirty hot entry written to the cold tier, the
/// checkpoint record synced, WAL segments it covers deleted. There is no RDB file: the cold
/// tier is the snapshot.
fn save(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    ctx.off_async_workers()?;
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
                        crate::metrics::unix_seconds(),
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
    ctx.audit("shutdown", serde_json::json!({ "save": !nosave }));
    ctx.shared.request_shutdown(!nosave);
    // Redis closes the connection without replying when the shutdown goes ahead.
    ctx.client.close_after_reply = true;
    if ctx.client.reply_mode == ReplyMode::On {
        ctx.client.reply_mode = ReplyMode::Skip;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_follows_a_frozen_engine_clock() {
        let now = 1_700_000_000_123_456;
        assert_eq!(server_time_micros(now / 1000, now), now);
        assert_eq!(server_time_micros(5_000, now), 5_000_000);
    }
}
