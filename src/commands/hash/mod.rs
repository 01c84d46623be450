//! The hash family (issue 17), with Redis 7's replies and error texts: HSET and friends,
//! counters, whole-hash reads, HRANDFIELD and HSCAN. Each command is one engine call on
//! one key: a read lends the hash (`Store::read_value`), a write says which fields to set
//! or delete (`Store::update_elements`), so a hash command is atomic like any single-key
//! command (I7) and costs the fields it touches, not the hash's size.
//!
//! What it must never do: touch a key of another type (every call checks with
//! `Value::as_hash`, answering -WRONGTYPE), or leave an empty hash behind (the engine
//! deletes a collection a change leaves empty, as Redis does).

mod expire;
mod read;

use bytes::Bytes;

use super::args;
use super::collections::{read_collection, update_collection};
use super::string::arith;
use super::table::{acl, key, CommandSpec, KeySpec, DENYOOM, FAST, READONLY, WRITE};
use super::{CommandError, CommandResult, Ctx};
use crate::engine::types::hash::HashValue;
use crate::engine::types::{AppliedCounts, ElementOp};
use crate::protocol::Reply;
use expire::{hexpire, hpersist, httl};
use read::{hexists, hget, hgetall, hkeys, hlen, hmget, hrandfield, hscan, hstrlen, hvals};

const HASH: &str = "hash";

// The key's role in each kind of hash command (Redis 7's key specs).
const READS_META: &[KeySpec] = &[KeySpec::at(key::RO, 1)];
const READS: &[KeySpec] = &[KeySpec::at(key::RO | key::ACCESS, 1)];
const UPDATES: &[KeySpec] = &[KeySpec::at(key::RW | key::UPDATE, 1)];
const INSERTS: &[KeySpec] = &[KeySpec::at(key::RW | key::INSERT, 1)];
const DELETES: &[KeySpec] = &[KeySpec::at(key::RW | key::DELETE, 1)];
const READS_AND_UPDATES: &[KeySpec] = &[KeySpec::at(key::RW | key::ACCESS | key::UPDATE, 1)];

const fn row(
    name: &'static str,
    arity: i32,
    flags: u32,
    keys: &'static [KeySpec],
    since: &'static str,
    summary: &'static str,
    handler: super::table::Handler,
) -> CommandSpec {
    CommandSpec::new(
        name,
        arity,
        flags,
        acl::HASH,
        keys,
        HASH,
        since,
        summary,
        handler,
    )
}

pub const COMMANDS: &[CommandSpec] = &[
    row("hset", -4, WRITE | DENYOOM | FAST, UPDATES, "2.0.0",
        "Creates or modifies the value of a field in a hash.", hset),
    row("hsetnx", 4, WRITE | DENYOOM | FAST, INSERTS, "2.0.0",
        "Sets the value of a field in a hash only when the field doesn't exist.", hsetnx),
    row("hmset", -4, WRITE | DENYOOM | FAST, UPDATES, "2.0.0",
        "Sets the values of multiple fields.", hmset),
    row("hget", 3, READONLY | FAST, READS, "2.0.0",
        "Returns the value of a field in a hash.", hget),
    row("hmget", -3, READONLY | FAST, READS, "2.0.0",
        "Returns the values of all fields in a hash.", hmget),
    row("hdel", -3, WRITE | FAST, DELETES, "2.0.0",
        "Deletes one or more fields and their values from a hash. Deletes the hash if no fields remain.", hdel),
    row("hexists", 3, READONLY | FAST, READS_META, "2.0.0",
        "Determines whether a field exists in a hash.", hexists),
    row("hlen", 2, READONLY | FAST, READS_META, "2.0.0",
        "Returns the number of fields in a hash.", hlen),
    row("hstrlen", 3, READONLY | FAST, READS_META, "3.2.0",
        "Returns the length of the value of a field.", hstrlen),
    row("hkeys", 2, READONLY, READS, "2.0.0",
        "Returns all fields in a hash.", hkeys),
    row("hvals", 2, READONLY, READS, "2.0.0",
        "Returns all values in a hash.", hvals),
    row("hgetall", 2, READONLY, READS, "2.0.0",
        "Returns all fields and values in a hash.", hgetall),
    row("hincrby", 4, WRITE | DENYOOM | FAST, READS_AND_UPDATES, "2.0.0",
        "Increments the integer value of a field in a hash by a number. Uses 0 as initial value if the field doesn't exist.", hincrby),
    row("hincrbyfloat", 4, WRITE | DENYOOM | FAST, READS_AND_UPDATES, "2.6.0",
        "Increments the floating point value of a field by a number. Uses 0 as initial value if the field doesn't exist.", hincrbyfloat),
    row("hrandfield", -2, READONLY, READS, "6.2.0",
        "Returns one or more random fields from a hash.", hrandfield),
    row("hexpire", -6, WRITE | FAST, UPDATES, "7.4.0",
        "Set expiry for hash field using relative time to expire (seconds)", hexpire),
    row("hpexpire", -6, WRITE | FAST, UPDATES, "7.4.0",
        "Set expiry for hash field using relative time to expire (milliseconds)", hexpire),
    row("hexpireat", -6, WRITE | FAST, UPDATES, "7.4.0",
        "Set expiry for hash field using an absolute Unix timestamp (seconds)", hexpire),
    row("hpexpireat", -6, WRITE | FAST, UPDATES, "7.4.0",
        "Set expiry for hash field using an absolute Unix timestamp (milliseconds)", hexpire),
    row("httl", -5, READONLY | FAST, READS_META, "7.4.0",
        "Returns the TTL in seconds of a hash field.", httl),
    row("hpttl", -5, READONLY | FAST, READS_META, "7.4.0",
        "Returns the TTL in milliseconds of a hash field.", httl),
    row("hexpiretime", -5, READONLY | FAST, READS_META, "7.4.0",
        "Returns the expiration time of a hash field as a Unix timestamp, in seconds.", httl),
    row("hpexpiretime", -5, READONLY | FAST, READS_META, "7.4.0",
        "Returns the expiration time of a hash field as a Unix timestamp, in msec.", httl),
    row("hpersist", -5, WRITE | FAST, UPDATES, "7.4.0",
        "Removes the expiration time for each specified field", hpersist),
    row("hscan", -3, READONLY, READS, "2.8.0",
        "Iterates over fields and values of a hash.", hscan),
];

/// `read_collection` for a hash.
fn read_hash<T>(
    ctx: &mut Ctx<'_, '_>,
    key: &[u8],
    read: impl FnOnce(&HashValue) -> T,
) -> Result<Option<T>, CommandError> {
    read_collection(ctx, key, read)
}

/// `update_collection` for a hash: the fields to set, delete or give a deadline.
fn update_hash<T>(
    ctx: &mut Ctx<'_, '_>,
    key: &[u8],
    plan: impl FnOnce(Option<&HashValue>) -> Result<(Vec<ElementOp>, T), CommandError>,
) -> Result<(T, AppliedCounts), CommandError> {
    update_collection(ctx, key, plan)
}

/// `put`, then the field's deadline set again: HINCRBY and HINCRBYFLOAT keep a field's
/// time to live, as in Redis 7.4 and Valkey 9 (a plain put drops it).
fn keeping_deadline(hash: Option<&HashValue>, field: &Bytes, put: ElementOp) -> Vec<ElementOp> {
    let mut ops = vec![put];
    if let Some(at) = hash.and_then(|hash| hash.deadline(field)) {
        ops.push(ElementOp::Expire {
            element: field.clone(),
            at,
        });
    }
    ops
}

fn put(field: &Bytes, value: Bytes) -> ElementOp {
    ElementOp::Put {
        element: field.clone(),
        value,
    }
}

/// The field/value pairs after the key (each chunk holds two), or Redis's arity error for
/// an odd count.
fn field_value_pairs<'a>(
    args: &'a [Bytes],
    command: &str,
) -> Result<std::slice::ChunksExact<'a, Bytes>, CommandError> {
    if !args.len().is_multiple_of(2) {
        return Err(CommandError::wrong_arity(command));
    }
    Ok(args[2..].chunks_exact(2))
}

/// Sets every pair; the number of fields that were new.
fn set_fields(ctx: &mut Ctx<'_, '_>, args: &[Bytes], command: &str) -> Result<i64, CommandError> {
    let pairs = field_value_pairs(args, command)?;
    let ((), applied) = update_hash(ctx, &args[1], |_| {
        Ok((
            pairs.map(|pair| put(&pair[0], pair[1].clone())).collect(),
            (),
        ))
    })?;
    Ok(applied.added as i64)
}

/// HSET key field value [field value ...]: the number of fields added.
fn hset(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    Ok(Reply::Integer(set_fields(ctx, args, "hset")?))
}

/// HMSET: HSET answering +OK (deprecated in Redis, still used by old clients).
fn hmset(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    set_fields(ctx, args, "hmset")?;
    Ok(Reply::ok())
}

fn hsetnx(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let (field, value) = (&args[2], &args[3]);
    let ((), applied) = update_hash(ctx, &args[1], |hash| {
        Ok(match hash.is_some_and(|hash| hash.contains(field)) {
            true => (Vec::new(), ()),
            false => (vec![put(field, value.clone())], ()),
        })
    })?;
    Ok(Reply::Integer(applied.added as i64))
}

/// HDEL key field [field ...]: the number of fields removed.
fn hdel(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let ((), applied) = update_hash(ctx, &args[1], |_| {
        let ops = args[2..]
            .iter()
            .map(|field| ElementOp::Del {
                element: field.clone(),
            })
            .collect();
        Ok((ops, ()))
    })?;
    Ok(Reply::Integer(applied.removed as i64))
}

fn hincrby(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let by = args::int(&args[3])?;
    let field = &args[2];
    update_hash(ctx, &args[1], |hash| {
        let current = match hash.and_then(|hash| hash.get(field)) {
            None => 0,
            Some(text) => args::parse_i64(text)
                .ok_or_else(|| CommandError::err("hash value is not an integer"))?,
        };
        let result = current
            .checked_add(by)
            .ok_or_else(|| CommandError::err("increment or decrement would overflow"))?;
        let ops = keeping_deadline(hash, field, put(field, args::int_bytes(result)));
        Ok((ops, Reply::Integer(result)))
    })
    .map(|(reply, _)| reply)
}

fn hincrbyfloat(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let (field, by) = (&args[2], &args[3]);
    // The increment is checked on its own first: Redis names a bad increment and a bad
    // field value differently.
    if arith::increment(None, by).is_err() {
        return Err(
            match args::parse_f64(by).is_some_and(|by| !by.is_finite()) {
                true => CommandError::err("value is NaN or Infinity"),
                false => CommandError::err("value is not a valid float"),
            },
        );
    }
    update_hash(ctx, &args[1], |hash| {
        let current = hash.and_then(|hash| hash.get(field));
        let text = arith::increment(current, by).map_err(|error| match error {
            arith::IncrementError::NotAFloat => CommandError::err("hash value is not a float"),
            arith::IncrementError::NotFinite => {
                CommandError::err("increment would produce NaN or Infinity")
            }
        })?;
        let text = Bytes::from(text);
        let ops = keeping_deadline(hash, field, put(field, text.clone()));
        Ok((ops, Reply::Bulk(text)))
    })
    .map(|(reply, _)| reply)
}
