//! Replication commands, with Redis 7's replies and error texts: REPLICAOF / SLAVEOF, ROLE,
//! WAIT, and what a replica sends its primary (REPLCONF, PSYNC, SYNC). The work is in
//! this module's parent; WAIT and PSYNC leave a [`Deferred`] for the connection, which owns
//! the socket and can wait without holding a thread.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use super::super::args::is;
use super::super::table::{
    acl, CommandSpec, ADMIN, FAST, LOADING, NOSCRIPT, NO_KEYS, NO_MULTI, STALE,
};
use super::super::{CommandError, CommandResult, Ctx};
use crate::commands::replication::{Deferred, Primary, PsyncRequest, Replication};
use crate::protocol::Reply;

const GROUP: &str = "server";

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "replicaof",
        3,
        ADMIN | NOSCRIPT | STALE,
        acl::NONE,
        NO_KEYS,
        GROUP,
        "5.0.0",
        "Configures a server as replica of another, or promotes it to a master.",
        replicaof,
    ),
    CommandSpec::new(
        "slaveof",
        3,
        ADMIN | NOSCRIPT | STALE,
        acl::NONE,
        NO_KEYS,
        GROUP,
        "1.0.0",
        "Sets a Redis server as a replica of another, or promotes it to being a master.",
        replicaof,
    ),
    CommandSpec::new(
        "role",
        1,
        NOSCRIPT | LOADING | STALE | FAST,
        acl::DANGEROUS,
        NO_KEYS,
        GROUP,
        "2.8.12",
        "Returns the replication role.",
        role,
    ),
    CommandSpec::new(
        "wait",
        3,
        NOSCRIPT,
        acl::CONNECTION,
        NO_KEYS,
        "generic",
        "3.0.0",
        "Blocks until the asynchronous replication of all preceding write commands sent by the connection is completed.",
        wait,
    ),
    CommandSpec::new(
        "replconf",
        -1,
        ADMIN | NOSCRIPT | LOADING | STALE,
        acl::NONE,
        NO_KEYS,
        GROUP,
        "3.0.0",
        "An internal command for configuring the replication stream.",
        replconf,
    ),
    CommandSpec::new(
        "psync",
        -3,
        ADMIN | NOSCRIPT | NO_MULTI,
        acl::NONE,
        NO_KEYS,
        GROUP,
        "2.8.0",
        "An internal command used in replication.",
        psync,
    ),
    CommandSpec::new(
        "sync",
        1,
        ADMIN | NOSCRIPT | NO_MULTI,
        acl::NONE,
        NO_KEYS,
        GROUP,
        "1.0.0",
        "An internal command used in replication.",
        sync,
    ),
];

fn replicaof(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let replication = &ctx.shared.replication;
    if is(&args[1], "no") && is(&args[2], "one") {
        Replication::promote(ctx.shared).map_err(CommandError::err)?;
        return Ok(Reply::ok());
    }
    let host = String::from_utf8_lossy(&args[1]).into_owned();
    let port = std::str::from_utf8(&args[2])
        .ok()
        .and_then(|text| text.parse::<u16>().ok())
        .filter(|&port| port != 0)
        .ok_or_else(|| CommandError::err("Invalid master port"))?;
    if ctx.engine().wal().is_none() {
        return Err(CommandError::err(
            "replication needs the WAL on this node (persistence.wal: true, or --appendonly yes)",
        ));
    }
    let primary = Primary { host, port };
    if replication.primary().as_ref() == Some(&primary) {
        return Ok(Reply::Simple(
            "OK Already connected to specified master".into(),
        ));
    }
    replication.replicate(primary).map_err(CommandError::err)?;
    Ok(Reply::ok())
}

fn role(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    let replication = &ctx.shared.replication;
    let offset = Replication::offset(ctx.shared) as i64;
    Ok(match replication.primary() {
        Some(primary) => Reply::Array(vec![
            Reply::bulk("slave"),
            Reply::bulk(primary.host),
            Reply::Integer(i64::from(primary.port)),
            Reply::bulk(replication.link_state().role_name()),
            Reply::Integer(offset),
        ]),
        None => Reply::Array(vec![
            Reply::bulk("master"),
            Reply::Integer(offset),
            Reply::Array(
                replication
                    .replicas()
                    .iter()
                    .map(|replica| {
                        Reply::Array(vec![
                            Reply::bulk(replica.addr.ip().to_string()),
                            Reply::bulk(replica.listening_port.to_string()),
                            Reply::bulk(replica.acked.load(Ordering::Acquire).to_string()),
                        ])
                    })
                    .collect(),
            ),
        ]),
    })
}

fn wait(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let replicas = parse_integer(&args[1])?;
    let timeout = parse_integer(&args[2])?;
    if timeout < 0 {
        return Err(CommandError::err("timeout is negative"));
    }
    if ctx.engine().is_replica() {
        return Err(CommandError::err(
            "WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated.",
        ));
    }
    let offset = Replication::offset(ctx.shared);
    let acked = ctx.shared.replication.acked_at_least(offset);
    let replicas = usize::try_from(replicas).unwrap_or(0);
    if acked < replicas {
        ctx.client.deferred = Some(Deferred::Wait {
            replicas,
            offset,
            timeout: (timeout > 0).then(|| Duration::from_millis(timeout as u64)),
        });
    }
    Ok(Reply::Integer(acked as i64))
}

fn parse_integer(arg: &Bytes) -> Result<i64, CommandError> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| CommandError::err("value is not an integer or out of range"))
}

fn replconf(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    if args.len().is_multiple_of(2) {
        return Err(CommandError::err("syntax error"));
    }
    for pair in args[1..].chunks(2) {
        if is(&pair[0], "listening-port") {
            ctx.client.replica_port = std::str::from_utf8(&pair[1])
                .ok()
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| CommandError::err("value is not an integer or out of range"))?;
        } else if !["capa", "ip-address", "ack", "getack", "rdb-only"]
            .iter()
            .any(|name| is(&pair[0], name))
        {
            return Err(CommandError::err(format!(
                "Unrecognized REPLCONF option: {}",
                String::from_utf8_lossy(&pair[0])
            )));
        }
    }
    Ok(Reply::ok())
}

fn psync(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let replid = String::from_utf8_lossy(&args[1]).into_owned();
    let offset = std::str::from_utf8(&args[2])
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .ok_or_else(|| CommandError::err("value is not an integer or out of range"))?;
    become_feed(ctx, replid, u64::try_from(offset).ok())
}

fn sync(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    become_feed(ctx, "?".into(), None)
}

fn become_feed(ctx: &mut Ctx<'_, '_>, replid: String, offset: Option<u64>) -> CommandResult {
    if ctx.engine().wal().is_none() {
        return Err(CommandError::err(
            "replication needs the WAL on the primary (persistence.wal: true, or --appendonly yes)",
        ));
    }
    ctx.client.deferred = Some(Deferred::Feed(PsyncRequest { replid, offset }));
    Ok(Reply::Nil)
}
