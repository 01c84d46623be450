//! The hash commands that only read: single fields, the whole hash, HRANDFIELD and HSCAN.

use bytes::Bytes;

use super::read_hash;
use crate::commands::args::is;
use crate::commands::collections::{random_position, RandomCount, ScanRequest};
use crate::commands::{CommandError, CommandResult, Ctx};
use crate::protocol::ProtocolVersion;
use crate::protocol::Reply;

/// A bulk reply with its own copy of bytes a collection holds.
fn bulk(bytes: &[u8]) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(bytes))
}

pub(super) fn hget(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let value = read_hash(ctx, &args[1], |hash| hash.get(&args[2]).map(bulk))?.flatten();
    Ok(value.unwrap_or(Reply::Nil))
}

pub(super) fn hmget(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let fields = &args[2..];
    let values = read_hash(ctx, &args[1], |hash| {
        fields
            .iter()
            .map(|field| hash.get(field).map_or(Reply::Nil, bulk))
            .collect()
    })?;
    Ok(Reply::Array(
        values.unwrap_or_else(|| vec![Reply::Nil; fields.len()]),
    ))
}

pub(super) fn hexists(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let found = read_hash(ctx, &args[1], |hash| hash.contains(&args[2]))?;
    Ok(Reply::Integer(i64::from(found == Some(true))))
}

pub(super) fn hlen(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let len = read_hash(ctx, &args[1], |hash| hash.len())?;
    Ok(Reply::Integer(len.unwrap_or(0) as i64))
}

pub(super) fn hstrlen(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let len = read_hash(ctx, &args[1], |hash| {
        hash.get(&args[2]).map_or(0, <[u8]>::len)
    })?;
    Ok(Reply::Integer(len.unwrap_or(0) as i64))
}

pub(super) fn hkeys(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let fields = read_hash(ctx, &args[1], |hash| {
        hash.iter().map(|(field, _)| bulk(field)).collect()
    })?;
    Ok(Reply::Array(fields.unwrap_or_default()))
}

pub(super) fn hvals(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let values = read_hash(ctx, &args[1], |hash| {
        hash.iter().map(|(_, value)| bulk(value)).collect()
    })?;
    Ok(Reply::Array(values.unwrap_or_default()))
}

/// HGETALL: a map in RESP3, field, value, field, value, ... in RESP2.
pub(super) fn hgetall(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let pairs: Vec<(Reply, Reply)> = read_hash(ctx, &args[1], |hash| {
        hash.iter()
            .map(|(field, value)| (bulk(field), bulk(value)))
            .collect()
    })?
    .unwrap_or_default();
    Ok(match ctx.client.protocol {
        ProtocolVersion::Resp3 => Reply::Map(pairs),
        ProtocolVersion::Resp2 => {
            Reply::Array(pairs.into_iter().flat_map(|(f, v)| [f, v]).collect())
        }
    })
}

/// HRANDFIELD key [count [WITHVALUES]].
pub(super) fn hrandfield(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let with_values = match args.len() {
        2 | 3 => false,
        4 if is(&args[3], "withvalues") => true,
        _ => return Err(CommandError::syntax()),
    };
    if args.len() == 2 {
        let field = read_hash(ctx, &args[1], |hash| {
            hash.at(random_position(hash.len()))
                .map(|(field, _)| bulk(field))
        })?
        .flatten();
        return Ok(field.unwrap_or(Reply::Nil));
    }
    let count = RandomCount::parse(&args[2], with_values)?;
    let resp3 = ctx.client.protocol == ProtocolVersion::Resp3;
    let picks = read_hash(ctx, &args[1], |hash| {
        let mut out = Vec::new();
        for at in count.pick(hash.len()) {
            let (field, value) = hash.at(at).expect("picked in range");
            let (field, value) = (bulk(field), bulk(value));
            match (with_values, resp3) {
                (false, _) => out.push(field),
                // RESP3 pairs each field with its value; RESP2 lists them flat.
                (true, true) => out.push(Reply::Array(vec![field, value])),
                (true, false) => out.extend([field, value]),
            }
        }
        out
    })?;
    Ok(Reply::Array(picks.unwrap_or_default()))
}

/// HSCAN key cursor [MATCH pattern] [COUNT count] [NOVALUES].
pub(super) fn hscan(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let request = ScanRequest::parse(args, true)?;
    let found = read_hash(ctx, &args[1], |hash| {
        let whole = hash.is_compact().then(|| hash.iter());
        let (cursor, pairs) = request.elements(hash.len(), whole, |at| {
            hash.at(at).expect("a position below the length")
        });
        let mut out = Vec::new();
        for (field, value) in pairs {
            if request.matches(field) {
                out.push(bulk(field));
                if !request.no_values {
                    out.push(bulk(value));
                }
            }
        }
        (cursor, out)
    })?;
    let (cursor, found) = found.unwrap_or_default();
    Ok(ScanRequest::page(cursor, found))
}
