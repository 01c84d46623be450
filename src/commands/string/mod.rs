//! The string and bitmap command families, with Redis 7's replies and error texts: GET/SET
//! and friends, counters and ranges here; bits in `bitmap`, LCS in `lcs`, INCRBYFLOAT's
//! long-double arithmetic in `arith`. Every value is a string, so nothing in this family
//! ever answers WRONGTYPE. A single-key command makes at most one mutating engine call
//! (read-modify-write goes through `Store::update`); anything needing two engine calls or
//! several keys runs inside `Store::atomically` (I7).

use std::ops::RangeInclusive;

use bytes::Bytes;

pub(super) mod arith;
mod bitmap;
mod lcs;
mod options;

use super::args::{self, is};
use super::table::{acl, key, CommandSpec, KeySpec, DENYOOM, FAST, READONLY, WRITE};
use super::{CommandError, CommandResult, Ctx};
use crate::engine::types::ValueType;
use crate::engine::{
    EngineError, EngineResult, ExpireCondition, SetCondition, SetExpiry, SetOptions,
};
use crate::protocol::Reply;
use bitmap::{bitcount, bitop, bitpos, getbit, setbit};
use lcs::lcs;
use options::{expire_deadline, parse_extended_options, ExpireKind, OptionSet};

const STRING: &str = "string";
const BITMAP: &str = "bitmap";

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "get",
        2,
        READONLY | FAST,
        acl::STRING,
        &[KeySpec::at(key::RO | key::ACCESS, 1)],
        STRING,
        "1.0.0",
        "Returns the string value of a key.",
        get,
    ),
    CommandSpec::new(
        "set",
        -3,
        WRITE | DENYOOM,
        acl::STRING,
        &[KeySpec::at(key::RW | key::ACCESS | key::UPDATE | key::VARIABLE_FLAGS, 1)],
        STRING,
        "1.0.0",
        "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.",
        set,
    ),
    CommandSpec::new(
        "setnx",
        3,
        WRITE | DENYOOM | FAST,
        acl::STRING,
        &[KeySpec::at(key::OW | key::INSERT, 1)],
        STRING,
        "1.0.0",
        "Set the string value of a key only when the key doesn't exist.",
        setnx,
    ),
    CommandSpec::new(
        "setex",
        4,
        WRITE | DENYOOM,
        acl::STRING,
        &[KeySpec::at(key::OW | key::UPDATE, 1)],
        STRING,
        "2.0.0",
        "Sets the string value and expiration time of a key. Creates the key if it doesn't exist.",
        setex,
    ),
    CommandSpec::new(
        "psetex",
        4,
        WRITE | DENYOOM,
        acl::STRING,
        &[KeySpec::at(key::OW | key::UPDATE, 1)],
        STRING,
        "2.6.0",
        "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist.",
        setex,
    ),
    CommandSpec::new(
        "getset",
        3,
        WRITE | DENYOOM | FAST,
        acl::STRING,
        &[KeySpec::at(key::RW | key::ACCESS | key::UPDATE, 1)],
        STRING,
        "1.0.0",
        "Returns the previous string value of a key after setting it to a new value.",
        getset,
    ),
    CommandSpec::new(
        "getdel",
        2,
        WRITE | FAST,
        acl::STRING,
        &[KeySpec::at(key::RW | key::ACCESS | key::DELETE, 1)],
        STRING,
        "6.2.0",
        "Returns the string value of a key after deleting the key.",
        getdel,
    ),
    CommandSpec::new(
        "getex",
        -2,
        WRITE | FAST,
        acl::STRING,
        &[KeySpec::at(key::RW | key::ACCESS | key::UPDATE, 1)],
        STRING,
        "6.2.0",
        "Returns the string value of a key after setting its expiration time.",
        getex,
    ),
    CommandSpec::new(
        "mget",
        -2,
        READONLY | FAST,
        acl::STRING,
        &[KeySpec::range(key::RO | key::ACCESS, 1, -1, 1)],
        STRING,
        "1.0.0",
        "Atomically returns the string values of one or more keys.",
        mget,
    ),
    CommandSpec::new(
        "mset",
        -3,
        WRITE | DENYOOM,
        acl::STRING,
        &[KeySpec::range(key::OW | key::UPDATE, 1, -1, 2)],
        STRING,
        "1.0.1",
        "Atomically creates or modifies the string values of one or more keys.",
        mset,
    ),
    CommandSpec::new(
        "msetnx",
        -3,
        WRITE | DENYOOM,
        acl::STRING,
        &[KeySpec::range(key::OW | key::INSERT, 1, -1, 2)],
        STRING,
        "1.0.1",
        "Atomically modifies the string values of one or more keys only when all keys don't exist.",
        msetnx,
    ),
    CommandSpec::new(
        "incr",
        2,
        WRITE | DENYOOM | FAST,
        acl::STRING,
        &[KeySpec::at(key::RW | key::ACCESS | key::UPDATE, 1)],
        STRING,
        "1.0.0",
        "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.",
        incr,
    ),
    CommandSpec::new(
        "decr",
        2,
        WRITE | DENYOOM | FAST,
        acl::STRING,
        &[KeySpec::at(key::RW | key::ACCESS | key::UPDATE, 1)],
        STRING,
        "1.0.0",
        "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.",
        decr,
    ),
    CommandSpec::new(
        "incrby",
        3,
        WRITE | DENYOOM | FAST,
        acl::STRING,
        &[KeySpec::at(key::RW | key::ACCESS | key::UPDATE, 1)],
        STRING,
        "1.0.0",
        "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist.",
        incrby,
    ),
    CommandSpec::new(
        "decrby",
        3,
        WRITE | DENYOOM | FAST,
        acl::STRING,
        &[KeySpec::at(key::RW | key::ACCESS | key::UPDATE, 1)],
        STRING,
        "1.0.0",
        "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist.",
        decrby,
    ),
    CommandSpec::new(
        "incrbyfloat",
        3,
        WRITE | DENYOOM | FAST,
        acl::STRING,
        &[KeySpec::at(key::RW | key::ACCESS | key::UPDATE, 1)],
        STRING,
        "2.6.0",
        "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist.",
        incrbyfloat,
    ),
    CommandSpec::new(
        "append",
        3,
        WRITE | DENYOOM | FAST,
        acl::STRING,
        &[KeySpec::at(key::RW | key::INSERT, 1)],
        STRING,
        "2.0.0",
        "Appends a string to the value of a key. Creates the key if it doesn't exist.",
        append,
    ),
    CommandSpec::new(
        "strlen",
        2,
        READONLY | FAST,
        acl::STRING,
        &[KeySpec::at(key::RO, 1)],
        STRING,
        "2.2.0",
        "Returns the length of a string value.",
        strlen,
    ),
    CommandSpec::new(
        "getrange",
        4,
        READONLY,
        acl::STRING,
        &[KeySpec::at(key::RO | key::ACCESS, 1)],
        STRING,
        "2.4.0",
        "Returns a substring of the string stored at a key.",
        getrange,
    ),
    CommandSpec::new(
        "substr",
        4,
        READONLY,
        acl::STRING,
        &[KeySpec::at(key::RO | key::ACCESS, 1)],
        STRING,
        "1.0.0",
        "Returns a substring from a string value.",
        getrange,
    ),
    CommandSpec::new(
        "setrange",
        4,
        WRITE | DENYOOM,
        acl::STRING,
        &[KeySpec::at(key::RW | key::UPDATE, 1)],
        STRING,
        "2.2.0",
        "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.",
        setrange,
    ),
    CommandSpec::new(
        "setbit",
        4,
        WRITE | DENYOOM,
        acl::BITMAP,
        &[KeySpec::at(key::RW | key::ACCESS | key::UPDATE, 1)],
        BITMAP,
        "2.2.0",
        "Sets or clears the bit at offset of the string value. Creates the key if it doesn't exist.",
        setbit,
    ),
    CommandSpec::new(
        "getbit",
        3,
        READONLY | FAST,
        acl::BITMAP,
        &[KeySpec::at(key::RO | key::ACCESS, 1)],
        BITMAP,
        "2.2.0",
        "Returns a bit value by offset.",
        getbit,
    ),
    CommandSpec::new(
        "bitcount",
        -2,
        READONLY,
        acl::BITMAP,
        &[KeySpec::at(key::RO | key::ACCESS, 1)],
        BITMAP,
        "2.6.0",
        "Counts the number of set bits (population counting) in a string.",
        bitcount,
    ),
    CommandSpec::new(
        "bitpos",
        -3,
        READONLY,
        acl::BITMAP,
        &[KeySpec::at(key::RO | key::ACCESS, 1)],
        BITMAP,
        "2.8.7",
        "Finds the first set (1) or clear (0) bit in a string.",
        bitpos,
    ),
    CommandSpec::new(
        "bitop",
        -4,
        WRITE | DENYOOM,
        acl::BITMAP,
        &[KeySpec::at(key::OW | key::UPDATE, 2), KeySpec::range(key::RO | key::ACCESS, 3, -1, 1)],
        BITMAP,
        "2.6.0",
        "Performs bitwise operations on multiple strings, and stores the result.",
        bitop,
    ),
    CommandSpec::new(
        "lcs",
        -3,
        READONLY,
        acl::STRING,
        &[KeySpec::range(key::RO | key::ACCESS, 1, 1, 1)],
        STRING,
        "7.0.0",
        "Finds the longest common substring.",
        lcs,
    ),
];

// ----- shared helpers -------------------------------------------------------------------

/// proto-max-bulk-len: no command here may grow a value beyond it.
fn max_value_len(ctx: &Ctx<'_, '_>) -> u64 {
    ctx.shared.config.read().limits.proto_max_bulk_len.0
}

/// keyspace_hits / keyspace_misses, counted by the commands Redis counts (its "read" lookups).
/// Called only after the engine call succeeded, so a WouldBlock retry never counts twice.
fn bulk_or_nil(value: Option<Bytes>) -> Reply {
    value.map_or(Reply::Nil, Reply::Bulk)
}

fn too_long() -> CommandError {
    CommandError::err("string exceeds maximum allowed size (proto-max-bulk-len)")
}

// ----- GET / SET family -----------------------------------------------------------------

fn get(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let value = ctx.store.get(ctx.db(), &args[1])?;
    ctx.count_lookup(value.is_some());
    Ok(bulk_or_nil(value))
}

/// SET key value [NX | XX] [GET] [EX s | PX ms | EXAT s | PXAT ms | KEEPTTL].
fn set(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let options = parse_extended_options(&args[3..], OptionSet::Set)?;
    let expiry = match options.expire {
        Some((kind, amount)) => {
            SetExpiry::At(expire_deadline(kind, amount, ctx.engine().now_ms(), "set")?)
        }
        None if options.keep_ttl => SetExpiry::Keep,
        None => SetExpiry::Clear,
    };
    let condition = if options.nx {
        SetCondition::IfAbsent
    } else if options.xx {
        SetCondition::IfPresent
    } else {
        SetCondition::Always
    };
    let set_options = SetOptions {
        condition,
        expiry,
        return_previous: options.get,
    };
    let outcome = ctx
        .store
        .set(ctx.db(), &args[1], args[2].clone(), set_options)?;
    if options.get {
        ctx.count_lookup(outcome.previous.is_some());
        return Ok(bulk_or_nil(outcome.previous));
    }
    Ok(if outcome.written {
        Reply::ok()
    } else {
        Reply::Nil
    })
}

fn setnx(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let options = SetOptions {
        condition: SetCondition::IfAbsent,
        ..SetOptions::default()
    };
    let outcome = ctx
        .store
        .set(ctx.db(), &args[1], args[2].clone(), options)?;
    Ok(Reply::Integer(i64::from(outcome.written)))
}

/// SETEX key seconds value / PSETEX key milliseconds value.
fn setex(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let (kind, command) = if is(&args[0], "psetex") {
        (ExpireKind::Px, "psetex")
    } else {
        (ExpireKind::Ex, "setex")
    };
    let deadline = expire_deadline(kind, &args[2], ctx.engine().now_ms(), command)?;
    let options = SetOptions {
        expiry: SetExpiry::At(deadline),
        ..SetOptions::default()
    };
    ctx.store
        .set(ctx.db(), &args[1], args[3].clone(), options)?;
    Ok(Reply::ok())
}

fn getset(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let options = SetOptions {
        return_previous: true,
        ..SetOptions::default()
    };
    let outcome = ctx
        .store
        .set(ctx.db(), &args[1], args[2].clone(), options)?;
    ctx.count_lookup(outcome.previous.is_some());
    Ok(bulk_or_nil(outcome.previous))
}

/// Read and delete are two engine calls, so they run as one transaction on the key.
fn getdel(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let db = ctx.db();
    let key = &args[1][..];
    let value = ctx.store.atomically(&[key], |txn| {
        let value = txn.get(db, key)?;
        if value.is_some() {
            txn.delete(db, key)?;
        }
        Ok(value)
    })?;
    ctx.count_lookup(value.is_some());
    Ok(bulk_or_nil(value))
}

/// GETEX key [EX s | PX ms | EXAT s | PXAT ms | PERSIST].
fn getex(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let options = parse_extended_options(&args[2..], OptionSet::GetEx)?;
    let db = ctx.db();
    let key = &args[1][..];
    if options.expire.is_none() && !options.persist {
        return get(ctx, args);
    }
    // Redis answers nil for a missing key before it looks at the amount, so a bad amount
    // is only reported when the key exists.
    let now = ctx.engine().now_ms();
    let deadline = options
        .expire
        .map(|(kind, amount)| expire_deadline(kind, amount, now, "getex"))
        .transpose();
    let outcome = ctx.store.atomically(&[key], |txn| {
        let Some(value) = txn.get(db, key)? else {
            return Ok(Ok(None));
        };
        match deadline {
            Err(error) => return Ok(Err(error)),
            // A deadline already past deletes the key (the engine does that for us).
            Ok(Some(at)) => {
                txn.expire_at(db, key, at, ExpireCondition::Always)?;
            }
            Ok(None) => {
                txn.persist(db, key)?;
            }
        }
        Ok(Ok(Some(value)))
    })?;
    ctx.count_lookup(!matches!(outcome, Ok(None)));
    Ok(bulk_or_nil(outcome?))
}

fn mget(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let db = ctx.db();
    let keys: Vec<&[u8]> = args[1..].iter().map(|key| &key[..]).collect();
    // A key of another type reads as nil here, as in Redis, not as an error.
    let string_or_nil = |value: EngineResult<Option<Bytes>>| match value {
        Err(EngineError::WrongType) => Ok(None),
        other => other,
    };
    let values = if let [key] = keys[..] {
        vec![string_or_nil(ctx.store.get(db, key))?]
    } else {
        ctx.store.atomically(&keys, |txn| {
            keys.iter()
                .map(|key| string_or_nil(txn.get(db, key)))
                .collect()
        })?
    };
    for value in &values {
        ctx.count_lookup(value.is_some());
    }
    Ok(Reply::Array(values.into_iter().map(bulk_or_nil).collect()))
}

/// The key/value pairs of MSET / MSETNX, or Redis's arity error for an odd count.
fn key_value_pairs<'a>(
    args: &'a [Bytes],
    command: &str,
) -> Result<Vec<(&'a [u8], &'a Bytes)>, CommandError> {
    if args.len().is_multiple_of(2) {
        return Err(CommandError::wrong_arity(command));
    }
    Ok(args[1..]
        .chunks_exact(2)
        .map(|pair| (&pair[0][..], &pair[1]))
        .collect())
}

fn mset(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let db = ctx.db();
    let pairs = key_value_pairs(args, "mset")?;
    if let [(key, value)] = pairs[..] {
        ctx.store
            .set(db, key, value.clone(), SetOptions::default())?;
    } else {
        let keys: Vec<&[u8]> = pairs.iter().map(|(key, _)| *key).collect();
        ctx.store.atomically(&keys, |txn| {
            for (key, value) in &pairs {
                txn.set(db, key, (*value).clone(), SetOptions::default())?;
            }
            Ok(())
        })?;
    }
    Ok(Reply::ok())
}

fn msetnx(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let db = ctx.db();
    let pairs = key_value_pairs(args, "msetnx")?;
    let written = if let [(key, value)] = pairs[..] {
        let options = SetOptions {
            condition: SetCondition::IfAbsent,
            ..SetOptions::default()
        };
        ctx.store.set(db, key, value.clone(), options)?.written
    } else {
        let keys: Vec<&[u8]> = pairs.iter().map(|(key, _)| *key).collect();
        ctx.store.atomically(&keys, |txn| {
            for key in &keys {
                if txn.exists(db, key)? {
                    return Ok(false);
                }
            }
            for (key, value) in &pairs {
                txn.set(db, key, (*value).clone(), SetOptions::default())?;
            }
            Ok(true)
        })?
    };
    Ok(Reply::Integer(i64::from(written)))
}

// ----- counters -------------------------------------------------------------------------

/// Adds `by` to the integer stored at the key (0 when absent), keeping its time to live.
fn increment_by(ctx: &mut Ctx<'_, '_>, key: &[u8], by: i64) -> CommandResult {
    ctx.store.update(ctx.db(), key, |current| {
        let value = match current {
            None => 0,
            Some(text) => args::parse_i64(&text).ok_or_else(CommandError::not_integer)?,
        };
        let result = value
            .checked_add(by)
            .ok_or_else(|| CommandError::err("increment or decrement would overflow"))?;
        Ok((Some(args::int_bytes(result)), Reply::Integer(result)))
    })
}

fn incr(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    increment_by(ctx, &args[1], 1)
}

fn decr(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    increment_by(ctx, &args[1], -1)
}

fn incrby(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let by = args::int(&args[2])?;
    increment_by(ctx, &args[1], by)
}

fn decrby(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let by = args::int(&args[2])?;
    // -i64::MIN does not exist; Redis has its own message for it.
    let by = by
        .checked_neg()
        .ok_or_else(|| CommandError::err("decrement would overflow"))?;
    increment_by(ctx, &args[1], by)
}

fn incrbyfloat(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let by = &args[2];
    ctx.store.update(ctx.db(), &args[1], |current| {
        let text = arith::increment(current.as_deref(), by).map_err(|error| match error {
            arith::IncrementError::NotAFloat => CommandError::err("value is not a valid float"),
            arith::IncrementError::NotFinite => {
                CommandError::err("increment would produce NaN or Infinity")
            }
        })?;
        let text = Bytes::from(text);
        Ok((Some(text.clone()), Reply::Bulk(text)))
    })
}

// ----- ranges ---------------------------------------------------------------------------

fn append(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let max_len = max_value_len(ctx);
    let suffix = &args[2];
    ctx.store.update(ctx.db(), &args[1], |current| {
        let Some(current) = current else {
            return Ok((Some(suffix.clone()), Reply::Integer(suffix.len() as i64)));
        };
        let total = current.len() + suffix.len();
        if total as u64 > max_len {
            return Err(too_long());
        }
        let mut value = Vec::with_capacity(total);
        value.extend_from_slice(&current);
        value.extend_from_slice(suffix);
        Ok((Some(Bytes::from(value)), Reply::Integer(total as i64)))
    })
}

fn strlen(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let info = ctx.store.inspect(ctx.db(), &args[1])?;
    ctx.count_lookup(info.is_some());
    match info {
        None => Ok(Reply::Integer(0)),
        Some(info) if info.value_type == ValueType::String => Ok(Reply::Integer(info.len as i64)),
        Some(_) => Err(EngineError::WrongType.into()),
    }
}

/// Redis's index rules for GETRANGE / BITCOUNT / BITPOS over `len` units: negative
/// indexes count from the end, both are clamped into the value; None when nothing is left.
fn clamp_range(start: i64, end: i64, len: i64) -> Option<RangeInclusive<i64>> {
    let start = if start < 0 { start + len } else { start }.max(0);
    let end = if end < 0 { end + len } else { end }.max(0).min(len - 1);
    (start <= end).then_some(start..=end)
}

/// GETRANGE / SUBSTR key start end.
fn getrange(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let start = args::int(&args[2])?;
    let end = args::int(&args[3])?;
    let value = ctx.store.get(ctx.db(), &args[1])?;
    ctx.count_lookup(value.is_some());
    let value = value.unwrap_or_default();
    if start < 0 && end < 0 && start > end {
        return Ok(Reply::Bulk(Bytes::new()));
    }
    let slice = match clamp_range(start, end, value.len() as i64) {
        Some(range) => value.slice(*range.start() as usize..=*range.end() as usize),
        None => Bytes::new(),
    };
    Ok(Reply::Bulk(slice))
}

fn setrange(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let offset = args::int(&args[2])?;
    let Ok(offset) = usize::try_from(offset) else {
        return Err(CommandError::err("offset is out of range"));
    };
    let max_len = max_value_len(ctx);
    let patch = &args[3];
    ctx.store.update(ctx.db(), &args[1], |current| {
        let current = match current {
            // Writing nothing creates nothing and changes nothing.
            None if patch.is_empty() => return Ok((None, Reply::Integer(0))),
            Some(current) if patch.is_empty() => {
                return Ok((None, Reply::Integer(current.len() as i64)))
            }
            current => current.unwrap_or_default(),
        };
        let end = offset as u64 + patch.len() as u64;
        if end > max_len {
            return Err(too_long());
        }
        let end = end as usize;
        let mut value = Vec::with_capacity(current.len().max(end));
        value.extend_from_slice(&current);
        if value.len() < end {
            value.resize(end, 0);
        }
        value[offset..end].copy_from_slice(patch);
        let len = value.len() as i64;
        Ok((Some(Bytes::from(value)), Reply::Integer(len)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_redis_index_rules() {
        assert_eq!(clamp_range(0, -1, 6), Some(0..=5));
        assert_eq!(clamp_range(-3, -1, 6), Some(3..=5));
        assert_eq!(clamp_range(-100, 2, 6), Some(0..=2));
        assert_eq!(clamp_range(2, 100, 6), Some(2..=5));
        assert_eq!(clamp_range(4, 2, 6), None);
        assert_eq!(clamp_range(0, -1, 0), None);
        assert_eq!(clamp_range(i64::MIN, i64::MAX, 3), Some(0..=2));
    }
}
