//! MULTI / EXEC / DISCARD / WATCH / UNWATCH. Queueing happens in the dispatcher (the one
//! place that sees every command); EXEC's queue runs there too, as one engine transaction
//! holding every shard its commands touch (I7). These handlers cover the calls the
//! dispatcher passes through: EXEC outside MULTI, nested MULTI, and the WATCH bookkeeping.

use bytes::Bytes;

use super::dispatch::unwatch_all;
use super::table::{
    acl, key, CommandSpec, KeySpec, FAST, LOADING, NOSCRIPT, NO_KEYS, NO_MULTI, STALE,
};
use super::{CommandError, CommandResult, Ctx};
use crate::protocol::Reply;

const GROUP: &str = "transactions";

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "multi",
        1,
        NOSCRIPT | LOADING | STALE | FAST,
        acl::TRANSACTION,
        NO_KEYS,
        GROUP,
        "1.2.0",
        "Starts a transaction.",
        multi,
    ),
    CommandSpec::new(
        "exec",
        1,
        NOSCRIPT | LOADING | STALE,
        acl::TRANSACTION,
        NO_KEYS,
        GROUP,
        "1.2.0",
        "Executes all commands in a transaction.",
        exec_without_multi,
    ),
    CommandSpec::new(
        "discard",
        1,
        NOSCRIPT | LOADING | STALE | FAST,
        acl::TRANSACTION,
        NO_KEYS,
        GROUP,
        "2.0.0",
        "Discards a transaction.",
        discard,
    ),
    CommandSpec::new(
        "watch",
        -2,
        NOSCRIPT | LOADING | STALE | FAST | NO_MULTI,
        acl::TRANSACTION,
        &[KeySpec::range(key::RO, 1, -1, 1)],
        GROUP,
        "2.2.0",
        "Monitors changes to keys to determine the execution of a transaction.",
        watch,
    ),
    CommandSpec::new(
        "unwatch",
        1,
        NOSCRIPT | LOADING | STALE | FAST,
        acl::TRANSACTION,
        NO_KEYS,
        GROUP,
        "2.2.0",
        "Forgets about watched keys of a transaction.",
        unwatch,
    ),
];

fn multi(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    if ctx.client.multi.is_some() {
        return Err(CommandError::err("MULTI calls can not be nested"));
    }
    ctx.client.begin_multi();
    Ok(Reply::ok())
}

fn exec_without_multi(_ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    Err(CommandError::err("EXEC without MULTI"))
}

fn discard(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    if ctx.client.multi.is_none() {
        return Err(CommandError::err("DISCARD without MULTI"));
    }
    ctx.client.end_multi();
    unwatch_all(ctx.shared, ctx.client);
    Ok(Reply::ok())
}

fn watch(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    if ctx.client.multi.is_some() {
        return Err(CommandError::err("WATCH inside MULTI is not allowed"));
    }
    let db = ctx.db();
    for key in &args[1..] {
        if ctx.client.watched.iter().any(|(d, k)| *d == db && k == key) {
            continue;
        }
        ctx.shared.engine.watch(db, key, &ctx.client.watch_flag)?;
        ctx.client.watched.push((db, key.clone()));
    }
    Ok(Reply::ok())
}

fn unwatch(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    unwatch_all(ctx.shared, ctx.client);
    Ok(Reply::ok())
}
