//! The string and bitmap command families (GET/SET and friends, counters, ranges, bits, LCS),
//! with Redis 7's replies and error texts. Every value is a string here, so nothing in this
//! file ever answers WRONGTYPE. A single-key command makes at most one mutating engine call
//! (read-modify-write goes through `Store::update`); anything needing two engine calls or
//! several keys runs inside `Store::atomically` (I7).

use std::ops::RangeInclusive;

use bytes::Bytes;

use super::args::{self, is};
use super::table::{CommandSpec, DENYOOM, FAST, READONLY, WRITE};
use super::{CommandError, CommandResult, Ctx};
use crate::engine::{ExpireCondition, SetCondition, SetExpiry, SetOptions};
use crate::protocol::Reply;

const STRING: &str = "string";
const BITMAP: &str = "bitmap";

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $first:expr, $last:expr, $step:expr, $group:expr, $since:literal, $summary:literal, $handler:expr) => {
        CommandSpec::new(
            $name,
            $arity,
            $flags,
            ($first, $last, $step),
            $group,
            $since,
            $summary,
            $handler,
        )
    };
}

pub const COMMANDS: &[CommandSpec] = &[
    spec!("get", 2, READONLY | FAST, 1, 1, 1, STRING, "1.0.0", "Returns the string value of a key.", get),
    spec!("set", -3, WRITE | DENYOOM, 1, 1, 1, STRING, "1.0.0", "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.", set),
    spec!("setnx", 3, WRITE | DENYOOM | FAST, 1, 1, 1, STRING, "1.0.0", "Set the string value of a key only when the key doesn't exist.", setnx),
    spec!("setex", 4, WRITE | DENYOOM, 1, 1, 1, STRING, "2.0.0", "Sets the string value and expiration time of a key. Creates the key if it doesn't exist.", setex),
    spec!("psetex", 4, WRITE | DENYOOM, 1, 1, 1, STRING, "2.6.0", "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist.", setex),
    spec!("getset", 3, WRITE | DENYOOM | FAST, 1, 1, 1, STRING, "1.0.0", "Returns the previous string value of a key after setting it to a new value.", getset),
    spec!("getdel", 2, WRITE | FAST, 1, 1, 1, STRING, "6.2.0", "Returns the string value of a key after deleting the key.", getdel),
    spec!("getex", -2, WRITE | FAST, 1, 1, 1, STRING, "6.2.0", "Returns the string value of a key after setting its expiration time.", getex),
    spec!("mget", -2, READONLY | FAST, 1, -1, 1, STRING, "1.0.0", "Atomically returns the string values of one or more keys.", mget),
    spec!("mset", -3, WRITE | DENYOOM, 1, -1, 2, STRING, "1.0.1", "Atomically creates or modifies the string values of one or more keys.", mset),
    spec!("msetnx", -3, WRITE | DENYOOM, 1, -1, 2, STRING, "1.0.1", "Atomically modifies the string values of one or more keys only when all keys don't exist.", msetnx),
    spec!("incr", 2, WRITE | DENYOOM | FAST, 1, 1, 1, STRING, "1.0.0", "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.", incr),
    spec!("decr", 2, WRITE | DENYOOM | FAST, 1, 1, 1, STRING, "1.0.0", "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.", decr),
    spec!("incrby", 3, WRITE | DENYOOM | FAST, 1, 1, 1, STRING, "1.0.0", "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist.", incrby),
    spec!("decrby", 3, WRITE | DENYOOM | FAST, 1, 1, 1, STRING, "1.0.0", "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist.", decrby),
    spec!("incrbyfloat", 3, WRITE | DENYOOM | FAST, 1, 1, 1, STRING, "2.6.0", "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist.", incrbyfloat),
    spec!("append", 3, WRITE | DENYOOM | FAST, 1, 1, 1, STRING, "2.0.0", "Appends a string to the value of a key. Creates the key if it doesn't exist.", append),
    spec!("strlen", 2, READONLY | FAST, 1, 1, 1, STRING, "2.2.0", "Returns the length of a string value.", strlen),
    spec!("getrange", 4, READONLY, 1, 1, 1, STRING, "2.4.0", "Returns a substring of the string stored at a key.", getrange),
    spec!("substr", 4, READONLY, 1, 1, 1, STRING, "1.0.0", "Returns a substring from a string value.", getrange),
    spec!("setrange", 4, WRITE | DENYOOM, 1, 1, 1, STRING, "2.2.0", "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.", setrange),
    spec!("setbit", 4, WRITE | DENYOOM, 1, 1, 1, BITMAP, "2.2.0", "Sets or clears the bit at offset of the string value. Creates the key if it doesn't exist.", setbit),
    spec!("getbit", 3, READONLY | FAST, 1, 1, 1, BITMAP, "2.2.0", "Returns a bit value by offset.", getbit),
    spec!("bitcount", -2, READONLY, 1, 1, 1, BITMAP, "2.6.0", "Counts the number of set bits (population counting) in a string.", bitcount),
    spec!("bitpos", -3, READONLY, 1, 1, 1, BITMAP, "2.8.7", "Finds the first set (1) or clear (0) bit in a string.", bitpos),
    spec!("bitop", -4, WRITE | DENYOOM, 2, -1, 1, BITMAP, "2.6.0", "Performs bitwise operations on multiple strings, and stores the result.", bitop),
    spec!("lcs", -3, READONLY, 1, 2, 1, STRING, "7.0.0", "Finds the longest common substring.", lcs),
];

// ----- shared helpers -------------------------------------------------------------------

/// proto-max-bulk-len: no command here may grow a value beyond it.
fn max_value_len(ctx: &Ctx<'_, '_>) -> u64 {
    ctx.shared.config.read().limits.proto_max_bulk_len.0
}

/// keyspace_hits / keyspace_misses, counted by the commands Redis counts (its "read" lookups).
/// Called only after the engine call succeeded, so a WouldBlock retry never counts twice.
fn count_lookup(ctx: &Ctx<'_, '_>, hit: bool) {
    ctx.shared.stats.keyspace_lookup(hit);
}

fn bulk_or_nil(value: Option<Bytes>) -> Reply {
    value.map_or(Reply::Nil, Reply::Bulk)
}

fn too_long() -> CommandError {
    CommandError::err("string exceeds maximum allowed size (proto-max-bulk-len)")
}

fn wrong_arity(command: &str) -> CommandError {
    CommandError::err(format!("wrong number of arguments for '{command}' command"))
}

// ----- SET options and expiry -----------------------------------------------------------

/// Which command's options `parse_extended_options` reads: SET's or GETEX's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OptionSet {
    Set,
    GetEx,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ExpireKind {
    Ex,
    Px,
    ExAt,
    PxAt,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ExtendedOptions<'a> {
    nx: bool,
    xx: bool,
    get: bool,
    keep_ttl: bool,
    persist: bool,
    /// The last EX/PX/EXAT/PXAT and its unparsed amount (Redis validates it later, after
    /// the syntax, and for GETEX only once the key is known to exist).
    expire: Option<(ExpireKind, &'a [u8])>,
}

/// Redis's `parseExtendedStringArgumentsOrReply`: options in any order; repeating the same
/// option is allowed (the last amount wins), combining conflicting ones is a syntax error.
fn parse_extended_options(
    options: &[Bytes],
    mode: OptionSet,
) -> Result<ExtendedOptions<'_>, CommandError> {
    let mut parsed = ExtendedOptions::default();
    let for_set = mode == OptionSet::Set;
    let mut index = 0;
    while index < options.len() {
        let option = &options[index];
        let next = options.get(index + 1);
        let expire_kind = if is(option, "ex") {
            Some(ExpireKind::Ex)
        } else if is(option, "px") {
            Some(ExpireKind::Px)
        } else if is(option, "exat") {
            Some(ExpireKind::ExAt)
        } else if is(option, "pxat") {
            Some(ExpireKind::PxAt)
        } else {
            None
        };
        if is(option, "nx") && for_set && !parsed.xx {
            parsed.nx = true;
        } else if is(option, "xx") && for_set && !parsed.nx {
            parsed.xx = true;
        } else if is(option, "get") && for_set {
            parsed.get = true;
        } else if is(option, "keepttl") && for_set && !parsed.persist && parsed.expire.is_none() {
            parsed.keep_ttl = true;
        } else if is(option, "persist") && !for_set && parsed.expire.is_none() && !parsed.keep_ttl {
            parsed.persist = true;
        } else if let (Some(kind), Some(amount)) = (expire_kind, next) {
            let other_kind = parsed.expire.is_some_and(|(previous, _)| previous != kind);
            if parsed.keep_ttl || parsed.persist || other_kind {
                return Err(CommandError::syntax());
            }
            parsed.expire = Some((kind, amount));
            index += 1;
        } else {
            return Err(CommandError::syntax());
        }
        index += 1;
    }
    Ok(parsed)
}

/// Redis's `getExpireMillisecondsOrReply`: the absolute deadline in ms for an expiry option.
fn expire_deadline(
    kind: ExpireKind,
    amount: &[u8],
    now_ms: u64,
    command: &str,
) -> Result<u64, CommandError> {
    let value = args::int(amount)?;
    let invalid = || CommandError::err(format!("invalid expire time in '{command}' command"));
    let in_seconds = matches!(kind, ExpireKind::Ex | ExpireKind::ExAt);
    if value <= 0 || (in_seconds && value > i64::MAX / 1000) {
        return Err(invalid());
    }
    let mut deadline = if in_seconds { value * 1000 } else { value };
    if matches!(kind, ExpireKind::Ex | ExpireKind::Px) {
        let now = i64::try_from(now_ms).map_err(|_| invalid())?;
        deadline = deadline.checked_add(now).ok_or_else(invalid)?;
    }
    // Positive by the checks above.
    Ok(deadline.unsigned_abs())
}

// ----- GET / SET family -----------------------------------------------------------------

fn get(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let value = ctx.store.get(ctx.db(), &args[1])?;
    count_lookup(ctx, value.is_some());
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
        count_lookup(ctx, outcome.previous.is_some());
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
    count_lookup(ctx, outcome.previous.is_some());
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
    count_lookup(ctx, value.is_some());
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
    count_lookup(ctx, !matches!(outcome, Ok(None)));
    Ok(bulk_or_nil(outcome?))
}

fn mget(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let db = ctx.db();
    let keys: Vec<&[u8]> = args[1..].iter().map(|key| &key[..]).collect();
    let values = if let [key] = keys[..] {
        vec![ctx.store.get(db, key)?]
    } else {
        ctx.store.atomically(&keys, |txn| {
            keys.iter().map(|key| txn.get(db, key)).collect()
        })?
    };
    for value in &values {
        count_lookup(ctx, value.is_some());
    }
    Ok(Reply::Array(values.into_iter().map(bulk_or_nil).collect()))
}

/// The key/value pairs of MSET / MSETNX, or Redis's arity error for an odd count.
fn key_value_pairs<'a>(
    args: &'a [Bytes],
    command: &str,
) -> Result<Vec<(&'a [u8], &'a Bytes)>, CommandError> {
    if args.len().is_multiple_of(2) {
        return Err(wrong_arity(command));
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
        let text = long_double::increment(current.as_deref(), by).map_err(|error| match error {
            long_double::IncrementError::NotAFloat => {
                CommandError::err("value is not a valid float")
            }
            long_double::IncrementError::NotFinite => {
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
    count_lookup(ctx, info.is_some());
    Ok(Reply::Integer(info.map_or(0, |info| info.len as i64)))
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
    count_lookup(ctx, value.is_some());
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

// ----- bits -----------------------------------------------------------------------------

/// A SETBIT / GETBIT offset: non-negative and inside proto-max-bulk-len bytes.
fn bit_offset(arg: &[u8], max_len: u64) -> Result<u64, CommandError> {
    args::parse_i64(arg)
        .and_then(|offset| u64::try_from(offset).ok())
        .filter(|offset| offset >> 3 < max_len)
        .ok_or_else(|| CommandError::err("bit offset is not an integer or out of range"))
}

/// The mask of bit `offset` within its byte (bit 0 is the most significant).
fn bit_mask(offset: u64) -> u8 {
    0x80 >> (offset & 7)
}

fn setbit(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let offset = bit_offset(&args[2], max_value_len(ctx))?;
    let on = match args::parse_i64(&args[3]) {
        Some(0) => false,
        Some(1) => true,
        _ => return Err(CommandError::err("bit is not an integer or out of range")),
    };
    // offset >> 3 < proto-max-bulk-len, which a value must fit in memory anyway.
    let byte = usize::try_from(offset >> 3)
        .map_err(|_| CommandError::err("bit offset is not an integer or out of range"))?;
    let mask = bit_mask(offset);
    ctx.store.update(ctx.db(), &args[1], |current| {
        let existed = current.is_some();
        let current = current.unwrap_or_default();
        let was_set = current.get(byte).is_some_and(|value| value & mask != 0);
        let reply = Reply::Integer(i64::from(was_set));
        if existed && byte < current.len() && was_set == on {
            return Ok((None, reply));
        }
        let mut value = Vec::with_capacity(current.len().max(byte + 1));
        value.extend_from_slice(&current);
        if value.len() <= byte {
            value.resize(byte + 1, 0);
        }
        if on {
            value[byte] |= mask;
        } else {
            value[byte] &= !mask;
        }
        Ok((Some(Bytes::from(value)), reply))
    })
}

fn getbit(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let offset = bit_offset(&args[2], max_value_len(ctx))?;
    let value = ctx.store.get(ctx.db(), &args[1])?;
    count_lookup(ctx, value.is_some());
    let set = value.is_some_and(|value| {
        usize::try_from(offset >> 3)
            .ok()
            .and_then(|byte| value.get(byte).copied())
            .is_some_and(|byte| byte & bit_mask(offset) != 0)
    });
    Ok(Reply::Integer(i64::from(set)))
}

/// Whether BITCOUNT / BITPOS indexes count bytes or bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BitUnit {
    Byte,
    Bit,
}

fn parse_bit_unit(arg: &[u8]) -> Result<BitUnit, CommandError> {
    if is(arg, "byte") {
        Ok(BitUnit::Byte)
    } else if is(arg, "bit") {
        Ok(BitUnit::Bit)
    } else {
        Err(CommandError::syntax())
    }
}

/// The inclusive range of bit positions that `start`..`end` in `unit` select in a value of
/// `len` bytes, after Redis's index rules; None when empty.
fn bit_range(len: usize, start: i64, end: i64, unit: BitUnit) -> Option<RangeInclusive<u64>> {
    let len = len as i64;
    match unit {
        BitUnit::Byte => clamp_range(start, end, len)
            .map(|range| *range.start() as u64 * 8..=*range.end() as u64 * 8 + 7),
        BitUnit::Bit => clamp_range(start, end, len.saturating_mul(8))
            .map(|range| *range.start() as u64..=*range.end() as u64),
    }
}

/// Set bits of `value` within `bits` (which lies inside the value).
fn count_set_bits(value: &[u8], bits: RangeInclusive<u64>) -> u64 {
    let (first, last) = (*bits.start(), *bits.end());
    let (first_byte, last_byte) = ((first / 8) as usize, (last / 8) as usize);
    let bytes = &value[first_byte..=last_byte];
    let mut chunks = bytes.chunks_exact(8);
    let mut count: u64 = chunks
        .by_ref()
        .map(|chunk| {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            u64::from(u64::from_ne_bytes(word).count_ones())
        })
        .sum();
    count += chunks
        .remainder()
        .iter()
        .map(|byte| u64::from(byte.count_ones()))
        .sum::<u64>();
    // The edge bytes may hold bits outside the range.
    let before_first = value[first_byte] & !(0xFF >> (first % 8));
    let after_last = value[last_byte] & !(0xFF << (7 - last % 8));
    count - u64::from(before_first.count_ones()) - u64::from(after_last.count_ones())
}

/// The first position within `bits` (inside the value) whose bit equals `bit`.
fn find_bit(value: &[u8], bit: bool, bits: RangeInclusive<u64>) -> Option<u64> {
    let (first, last) = (*bits.start(), *bits.end());
    let (first_byte, last_byte) = ((first / 8) as usize, (last / 8) as usize);
    value[first_byte..=last_byte]
        .iter()
        .enumerate()
        .find_map(|(offset, &byte)| {
            let index = first_byte + offset;
            let mut candidates = if bit { byte } else { !byte };
            if index == first_byte {
                candidates &= 0xFF >> (first % 8);
            }
            if index == last_byte {
                candidates &= 0xFF << (7 - last % 8);
            }
            (candidates != 0).then(|| index as u64 * 8 + u64::from(candidates.leading_zeros()))
        })
}

/// BITCOUNT key [start end [BYTE | BIT]].
fn bitcount(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let value = ctx.store.get(ctx.db(), &args[1])?;
    count_lookup(ctx, value.is_some());
    // Redis answers 0 for a missing key before it reads the other arguments.
    let Some(value) = value else {
        return Ok(Reply::Integer(0));
    };
    let range = match args.len() {
        2 => bit_range(value.len(), 0, -1, BitUnit::Byte),
        4 | 5 => {
            let start = args::int(&args[2])?;
            let end = args::int(&args[3])?;
            if start < 0 && end < 0 && start > end {
                return Ok(Reply::Integer(0));
            }
            let unit = match args.get(4) {
                Some(unit) => parse_bit_unit(unit)?,
                None => BitUnit::Byte,
            };
            bit_range(value.len(), start, end, unit)
        }
        _ => return Err(CommandError::syntax()),
    };
    let count = range.map_or(0, |bits| count_set_bits(&value, bits));
    Ok(Reply::Integer(count as i64))
}

/// BITPOS key bit [start [end [BYTE | BIT]]].
fn bitpos(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let bit = match args::int(&args[2])? {
        0 => false,
        1 => true,
        _ => return Err(CommandError::err("The bit argument must be 1 or 0.")),
    };
    let value = ctx.store.get(ctx.db(), &args[1])?;
    count_lookup(ctx, value.is_some());
    // A missing key is an endless run of zeros.
    let Some(value) = value else {
        return Ok(Reply::Integer(if bit { -1 } else { 0 }));
    };
    let (range, end_given) = match args.len() {
        3 => (bit_range(value.len(), 0, -1, BitUnit::Byte), false),
        4..=6 => {
            // Redis reads start, then the unit, then end: that decides which error wins.
            let start = args::int(&args[3])?;
            let unit = match args.get(5) {
                Some(unit) => parse_bit_unit(unit)?,
                None => BitUnit::Byte,
            };
            match args.get(4) {
                Some(end) => (bit_range(value.len(), start, args::int(end)?, unit), true),
                None => (bit_range(value.len(), start, -1, unit), false),
            }
        }
        _ => return Err(CommandError::syntax()),
    };
    let Some(bits) = range else {
        return Ok(Reply::Integer(-1));
    };
    let after_range = *bits.end() + 1;
    let position = match find_bit(&value, bit, bits) {
        Some(position) => position as i64,
        // Looking for a clear bit without an explicit end: the value continues with zeros
        // past its end, so the answer is the first bit after it.
        None if !bit && !end_given => after_range as i64,
        None => -1,
    };
    Ok(Reply::Integer(position))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BitOp {
    And,
    Or,
    Xor,
    Not,
}

/// BITOP's result: missing sources and short ones count as zero bytes; the result is as
/// long as the longest source.
fn bit_operation(op: BitOp, sources: &[Option<Bytes>]) -> Vec<u8> {
    let sources: Vec<&[u8]> = sources
        .iter()
        .map(|source| source.as_deref().unwrap_or_default())
        .collect();
    let len = sources.iter().map(|source| source.len()).max().unwrap_or(0);
    let Some((first, rest)) = sources.split_first() else {
        return Vec::new();
    };
    let mut result = first.to_vec();
    result.resize(len, 0);
    if op == BitOp::Not {
        result.iter_mut().for_each(|byte| *byte = !*byte);
        return result;
    }
    for source in rest {
        for (index, byte) in result.iter_mut().enumerate() {
            let other = source.get(index).copied().unwrap_or(0);
            match op {
                BitOp::And => *byte &= other,
                BitOp::Or => *byte |= other,
                BitOp::Xor | BitOp::Not => *byte ^= other,
            }
        }
    }
    result
}

/// BITOP AND | OR | XOR | NOT destkey key [key ...].
fn bitop(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let op = if is(&args[1], "and") {
        BitOp::And
    } else if is(&args[1], "or") {
        BitOp::Or
    } else if is(&args[1], "xor") {
        BitOp::Xor
    } else if is(&args[1], "not") {
        BitOp::Not
    } else {
        return Err(CommandError::syntax());
    };
    if op == BitOp::Not && args.len() != 4 {
        return Err(CommandError::err(
            "BITOP NOT must be called with a single source key.",
        ));
    }
    let db = ctx.db();
    let destination = &args[2][..];
    let keys: Vec<&[u8]> = args[2..].iter().map(|key| &key[..]).collect();
    let (found, len) = ctx.store.atomically(&keys, |txn| {
        let sources = keys[1..]
            .iter()
            .map(|key| txn.get(db, key))
            .collect::<Result<Vec<_>, _>>()?;
        let found: Vec<bool> = sources.iter().map(Option::is_some).collect();
        let result = bit_operation(op, &sources);
        let len = result.len();
        // An empty result deletes the destination, as in Redis.
        if result.is_empty() {
            txn.delete(db, destination)?;
        } else {
            txn.set(db, destination, Bytes::from(result), SetOptions::default())?;
        }
        Ok((found, len))
    })?;
    for hit in found {
        count_lookup(ctx, hit);
    }
    Ok(Reply::Integer(len as i64))
}

// ----- LCS ------------------------------------------------------------------------------

/// One run of the common subsequence that is contiguous in both strings (inclusive ranges).
#[derive(Clone, Debug, PartialEq, Eq)]
struct LcsMatch {
    a: (usize, usize),
    b: (usize, usize),
}

impl LcsMatch {
    fn len(&self) -> usize {
        self.a.1 - self.a.0 + 1
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Lcs {
    len: usize,
    /// Filled only when asked to walk the table.
    text: Vec<u8>,
    /// Last match first, as Redis emits them.
    matches: Vec<LcsMatch>,
}

/// Redis's dynamic-programming LCS, including its walk back through the table (which
/// decides the ties, and so which subsequence and which ranges come out). None when the
/// table cannot be allocated.
fn longest_common_subsequence(a: &[u8], b: &[u8], walk: bool) -> Option<Lcs> {
    let width = b.len() + 1;
    let cells = (a.len() + 1).checked_mul(width)?;
    let mut table: Vec<u32> = Vec::new();
    table.try_reserve_exact(cells).ok()?;
    table.resize(cells, 0);
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            table[i * width + j] = if a[i - 1] == b[j - 1] {
                table[(i - 1) * width + j - 1] + 1
            } else {
                table[(i - 1) * width + j].max(table[i * width + j - 1])
            };
        }
    }
    let len = table[cells - 1] as usize;
    let mut lcs = Lcs {
        len,
        ..Lcs::default()
    };
    if !walk {
        return Some(lcs);
    }
    lcs.text = vec![0; len];
    let mut remaining = len;
    let (mut i, mut j) = (a.len(), b.len());
    let mut current: Option<LcsMatch> = None;
    while i > 0 && j > 0 {
        let emit = if a[i - 1] == b[j - 1] {
            lcs.text[remaining - 1] = a[i - 1];
            let run = current.get_or_insert(LcsMatch {
                a: (i - 1, i - 1),
                b: (j - 1, j - 1),
            });
            // A run only continues diagonally (a mismatch ends it), so it always extends.
            run.a.0 = i - 1;
            run.b.0 = j - 1;
            remaining -= 1;
            i -= 1;
            j -= 1;
            // The run reached the start of one string: the walk ends here.
            i == 0 || j == 0
        } else {
            if table[(i - 1) * width + j] > table[i * width + j - 1] {
                i -= 1;
            } else {
                j -= 1;
            }
            current.is_some()
        };
        if emit {
            lcs.matches.extend(current.take());
        }
    }
    Some(lcs)
}

/// LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN].
fn lcs(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let db = ctx.db();
    let (key_a, key_b) = (&args[1][..], &args[2][..]);
    let (a, b) = ctx.store.atomically(&[key_a, key_b], |txn| {
        Ok((txn.get(db, key_a)?, txn.get(db, key_b)?))
    })?;
    count_lookup(ctx, a.is_some());
    count_lookup(ctx, b.is_some());
    let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
    let (mut want_len, mut want_idx, mut with_match_len) = (false, false, false);
    let mut min_match_len = 0;
    let mut index = 3;
    while index < args.len() {
        let option = &args[index];
        if is(option, "idx") {
            want_idx = true;
        } else if is(option, "len") {
            want_len = true;
        } else if is(option, "withmatchlen") {
            with_match_len = true;
        } else if is(option, "minmatchlen") && index + 1 < args.len() {
            min_match_len = args::int(&args[index + 1])?.max(0);
            index += 1;
        } else {
            return Err(CommandError::syntax());
        }
        index += 1;
    }
    if want_idx && want_len {
        return Err(CommandError::err(
            "If you want both the length and indexes, please just use IDX.",
        ));
    }
    let beyond_u32 = |value: &Bytes| value.len() as u64 >= u64::from(u32::MAX - 1);
    if beyond_u32(&a) || beyond_u32(&b) {
        return Err(CommandError::err("String too long for LCS"));
    }
    let table_bytes = (a.len() as u64 + 1) * (b.len() as u64 + 1) * 4;
    if table_bytes > max_value_len(ctx) {
        return Err(CommandError::err(
            "Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        ));
    }
    let Some(result) = longest_common_subsequence(&a, &b, want_idx || !want_len) else {
        return Err(CommandError::err(
            "Insufficient memory, failed allocating transient memory for LCS",
        ));
    };
    if want_len {
        return Ok(Reply::Integer(result.len as i64));
    }
    if !want_idx {
        return Ok(Reply::bulk(result.text));
    }
    let matches = result
        .matches
        .iter()
        .filter(|run| run.len() as i64 >= min_match_len)
        .map(|run| {
            let range = |(start, end): (usize, usize)| {
                Reply::Array(vec![
                    Reply::Integer(start as i64),
                    Reply::Integer(end as i64),
                ])
            };
            let mut entry = vec![range(run.a), range(run.b)];
            if with_match_len {
                entry.push(Reply::Integer(run.len() as i64));
            }
            Reply::Array(entry)
        })
        .collect();
    Ok(Reply::Map(vec![
        (Reply::bulk("matches"), Reply::Array(matches)),
        (Reply::bulk("len"), Reply::Integer(result.len as i64)),
    ]))
}

// ----- INCRBYFLOAT arithmetic -----------------------------------------------------------

/// Redis computes INCRBYFLOAT in the C `long double` of x86-64 (x87 80-bit extended: a
/// 64-bit mantissa), parses with `strtold` and prints with `%.17Lf` before trimming zeros.
/// Users see the difference (0.1 + 0.2 gives "0.3", not "0.30000000000000004"), so this
/// module reproduces that arithmetic exactly in software: correctly rounded parsing, one
/// correctly rounded addition, exact decimal printing.
mod long_double {
    use std::cmp::Ordering;
    use std::fmt::Write as _;

    /// Exponent of the lowest mantissa bit of the smallest subnormal (2^-16445).
    const MIN_EXPONENT: i64 = -16445;
    /// Exponent of the lowest mantissa bit of the largest finite value.
    const MAX_EXPONENT: i64 = 16320;
    /// `string2ld` refuses texts this long or longer (MAX_LONG_DOUBLE_CHARS).
    const MAX_TEXT_LEN: usize = 5 * 1024;
    /// Decimal exponents beyond these certainly overflow / underflow to zero.
    const MAX_DECIMAL_EXPONENT: i64 = 4933;
    const MIN_DECIMAL_EXPONENT: i64 = -4952;
    /// Digits `%.17Lf` prints after the point.
    const FRACTION_DIGITS: u32 = 17;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum IncrementError {
        /// The current value or the increment does not parse.
        NotAFloat,
        /// The sum is infinite (or NaN).
        NotFinite,
    }

    /// INCRBYFLOAT: the text Redis stores and replies for `current + by`.
    pub fn increment(current: Option<&[u8]>, by: &[u8]) -> Result<String, IncrementError> {
        let current = match current {
            None => Parsed::Finite(LongDouble::ZERO),
            Some(text) => parse(text).ok_or(IncrementError::NotAFloat)?,
        };
        let by = parse(by).ok_or(IncrementError::NotAFloat)?;
        match (current, by) {
            (Parsed::Finite(a), Parsed::Finite(b)) => {
                add(a, b).map(format).ok_or(IncrementError::NotFinite)
            }
            _ => Err(IncrementError::NotFinite),
        }
    }

    /// (-1)^negative × mantissa × 2^exponent; mantissa 0 is zero (signed, as in C).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct LongDouble {
        negative: bool,
        mantissa: u64,
        exponent: i64,
    }

    impl LongDouble {
        const ZERO: LongDouble = LongDouble {
            negative: false,
            mantissa: 0,
            exponent: 0,
        };

        fn zero(negative: bool) -> LongDouble {
            LongDouble {
                negative,
                ..LongDouble::ZERO
            }
        }
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Parsed {
        Finite(LongDouble),
        /// "inf" / "infinity": valid input whose sum can only be rejected.
        Infinite,
    }

    /// A little-endian arbitrary-precision natural number: just what exact rounding needs.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    struct Natural {
        limbs: Vec<u32>,
    }

    impl Natural {
        fn from_u64(value: u64) -> Natural {
            let mut natural = Natural {
                limbs: vec![value as u32, (value >> 32) as u32],
            };
            natural.trim();
            natural
        }

        fn trim(&mut self) {
            while self.limbs.last() == Some(&0) {
                self.limbs.pop();
            }
        }

        fn is_zero(&self) -> bool {
            self.limbs.is_empty()
        }

        fn mul_add_small(&mut self, factor: u32, addend: u32) {
            let mut carry = u64::from(addend);
            for limb in &mut self.limbs {
                let product = u64::from(*limb) * u64::from(factor) + carry;
                *limb = product as u32;
                carry = product >> 32;
            }
            if carry != 0 {
                self.limbs.push(carry as u32);
            }
        }

        fn mul_pow10(&mut self, mut power: u64) {
            while power > 0 {
                let step = power.min(9);
                self.mul_add_small(10u32.pow(step as u32), 0);
                power -= step;
            }
        }

        /// Divides in place; returns the remainder.
        fn div_small(&mut self, divisor: u32) -> u32 {
            let mut remainder = 0u64;
            for limb in self.limbs.iter_mut().rev() {
                let current = (remainder << 32) | u64::from(*limb);
                *limb = (current / u64::from(divisor)) as u32;
                remainder = current % u64::from(divisor);
            }
            self.trim();
            remainder as u32
        }

        /// Divides in place by 10^power; true if the division was inexact. Exact because
        /// floor(floor(x / a) / b) = floor(x / ab).
        fn div_pow10(&mut self, mut power: u64) -> bool {
            let mut inexact = false;
            while power > 0 {
                let step = power.min(9);
                inexact |= self.div_small(10u32.pow(step as u32)) != 0;
                power -= step;
            }
            inexact
        }

        fn shl(&self, bits: u64) -> Natural {
            if self.is_zero() {
                return Natural::default();
            }
            let mut limbs = vec![0; (bits / 32) as usize];
            let shift = (bits % 32) as u32;
            if shift == 0 {
                limbs.extend_from_slice(&self.limbs);
            } else {
                let mut carry = 0;
                for &limb in &self.limbs {
                    limbs.push((limb << shift) | carry);
                    carry = limb >> (32 - shift);
                }
                limbs.push(carry);
            }
            let mut natural = Natural { limbs };
            natural.trim();
            natural
        }

        fn bit_len(&self) -> u64 {
            self.limbs.last().map_or(0, |top| {
                (self.limbs.len() as u64 - 1) * 32 + u64::from(32 - top.leading_zeros())
            })
        }

        fn bit(&self, index: u64) -> bool {
            self.limbs
                .get((index / 32) as usize)
                .is_some_and(|limb| (limb >> (index % 32)) & 1 == 1)
        }

        /// Whether any bit below `index` is set.
        fn any_below(&self, index: u64) -> bool {
            let whole = ((index / 32) as usize).min(self.limbs.len());
            let partial = index % 32;
            self.limbs[..whole].iter().any(|&limb| limb != 0)
                || (partial != 0
                    && self
                        .limbs
                        .get(whole)
                        .is_some_and(|&limb| limb & ((1 << partial) - 1) != 0))
        }

        /// The 64 bits starting at bit `from`.
        fn bits_from(&self, from: u64) -> u64 {
            (0..64)
                .filter(|offset| self.bit(from + offset))
                .fold(0, |bits, offset| bits | 1 << offset)
        }

        fn add(&self, other: &Natural) -> Natural {
            let mut limbs = Vec::with_capacity(self.limbs.len().max(other.limbs.len()) + 1);
            let mut carry = 0u64;
            for index in 0..self.limbs.len().max(other.limbs.len()) {
                let sum = u64::from(self.limbs.get(index).copied().unwrap_or(0))
                    + u64::from(other.limbs.get(index).copied().unwrap_or(0))
                    + carry;
                limbs.push(sum as u32);
                carry = sum >> 32;
            }
            limbs.push(carry as u32);
            let mut natural = Natural { limbs };
            natural.trim();
            natural
        }

        /// `self - other`, for `self >= other`.
        fn sub(&self, other: &Natural) -> Natural {
            let mut limbs = Vec::with_capacity(self.limbs.len());
            let mut borrow = 0i64;
            for (index, &limb) in self.limbs.iter().enumerate() {
                let mut difference = i64::from(limb)
                    - i64::from(other.limbs.get(index).copied().unwrap_or(0))
                    - borrow;
                borrow = i64::from(difference < 0);
                if difference < 0 {
                    difference += 1 << 32;
                }
                limbs.push(difference as u32);
            }
            let mut natural = Natural { limbs };
            natural.trim();
            natural
        }

        fn compare(&self, other: &Natural) -> Ordering {
            self.limbs
                .len()
                .cmp(&other.limbs.len())
                .then_with(|| self.limbs.iter().rev().cmp(other.limbs.iter().rev()))
        }

        fn to_decimal(&self) -> String {
            let mut rest = self.clone();
            let mut chunks = Vec::new();
            while !rest.is_zero() {
                chunks.push(rest.div_small(1_000_000_000));
            }
            let mut text = chunks.pop().unwrap_or(0).to_string();
            for chunk in chunks.iter().rev() {
                let _ = write!(text, "{chunk:09}");
            }
            text
        }
    }

    enum Rounded {
        Zero,
        Finite { mantissa: u64, exponent: i64 },
        Overflow,
    }

    /// Rounds magnitude × 2^exponent to the nearest extended value, ties to even. `sticky`
    /// says a nonzero tail below the magnitude's last bit was cut off; callers that set it
    /// give at least 66 significant bits, so that tail is always below the rounding bit.
    fn round(magnitude: &Natural, exponent: i64, sticky: bool) -> Rounded {
        let length = magnitude.bit_len() as i64;
        let drop = (length - 64).max(MIN_EXPONENT - exponent);
        let (mut mantissa, mut exponent) = if drop <= 0 {
            (magnitude.bits_from(0), exponent)
        } else {
            let drop = drop as u64;
            let kept = magnitude.bits_from(drop);
            let half = magnitude.bit(drop - 1);
            let rest = sticky || magnitude.any_below(drop - 1);
            let exponent = exponent + drop as i64;
            if half && (rest || kept & 1 == 1) {
                match kept.checked_add(1) {
                    Some(kept) => (kept, exponent),
                    None => (1 << 63, exponent + 1),
                }
            } else {
                (kept, exponent)
            }
        };
        if mantissa == 0 {
            return Rounded::Zero;
        }
        // Normalise (top mantissa bit set) unless that would go below the subnormal floor.
        let shift = i64::from(mantissa.leading_zeros()).min(exponent - MIN_EXPONENT);
        if shift > 0 {
            mantissa <<= shift;
            exponent -= shift;
        }
        if exponent > MAX_EXPONENT {
            return Rounded::Overflow;
        }
        Rounded::Finite { mantissa, exponent }
    }

    /// `strtold` as Redis's `string2ld` accepts it: the whole text, no spaces, no NaN, and
    /// nothing that overflows or underflows to zero.
    fn parse(text: &[u8]) -> Option<Parsed> {
        if text.is_empty() || text.len() >= MAX_TEXT_LEN {
            return None;
        }
        let (negative, body) = match text[0] {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
            return Some(Parsed::Infinite);
        }
        let (magnitude, exponent, sticky) = match body {
            [b'0', b'x' | b'X', hex @ ..] => parse_hex(hex)?,
            _ => parse_decimal(body)?,
        };
        if magnitude.is_zero() {
            return Some(Parsed::Finite(LongDouble::zero(negative)));
        }
        match round(&magnitude, exponent, sticky) {
            Rounded::Finite { mantissa, exponent } => Some(Parsed::Finite(LongDouble {
                negative,
                mantissa,
                exponent,
            })),
            // strtold reports ERANGE with 0 or HUGE_VAL; string2ld refuses both.
            Rounded::Zero | Rounded::Overflow => None,
        }
    }

    /// Digits with an optional point; returns the digits as a number, how many followed
    /// the point, and the unparsed rest. None without a single digit.
    fn parse_digits(text: &[u8], radix: u32) -> Option<(Natural, u64, &[u8])> {
        let mut value = Natural::default();
        let (mut any_digit, mut seen_point, mut fraction_digits) = (false, false, 0u64);
        let mut rest = text;
        while let Some((&byte, tail)) = rest.split_first() {
            if byte == b'.' && !seen_point {
                seen_point = true;
            } else if let Some(digit) = char::from(byte).to_digit(radix) {
                value.mul_add_small(radix, digit);
                any_digit = true;
                fraction_digits += u64::from(seen_point);
            } else {
                break;
            }
            rest = tail;
        }
        any_digit.then_some((value, fraction_digits, rest))
    }

    /// An exponent's `[+-]digits` (the whole rest), saturated far beyond any useful range.
    fn parse_exponent(text: &[u8]) -> Option<i64> {
        let (negative, digits) = match text.split_first() {
            Some((b'-', digits)) => (true, digits),
            Some((b'+', digits)) => (false, digits),
            _ => (false, text),
        };
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let value = digits.iter().fold(0i64, |value, digit| {
            (value * 10 + i64::from(digit - b'0')).min(1_000_000_000)
        });
        Some(if negative { -value } else { value })
    }

    /// A decimal text as magnitude × 2^exponent (+ sticky tail), correctly rounded later.
    fn parse_decimal(text: &[u8]) -> Option<(Natural, i64, bool)> {
        let (digits, fraction_digits, rest) = parse_digits(text, 10)?;
        let exponent = match rest.split_first() {
            None => 0,
            Some((b'e' | b'E', exponent)) => parse_exponent(exponent)?,
            Some(_) => return None,
        };
        if digits.is_zero() {
            return Some((digits, 0, false));
        }
        let decimal_exponent = exponent - fraction_digits as i64;
        let significant_digits = digits.to_decimal().len() as i64;
        if significant_digits - 1 + decimal_exponent >= MAX_DECIMAL_EXPONENT {
            return None;
        }
        if significant_digits + decimal_exponent <= MIN_DECIMAL_EXPONENT {
            return None;
        }
        if decimal_exponent >= 0 {
            let mut value = digits;
            value.mul_pow10(decimal_exponent as u64);
            return Some((value, 0, false));
        }
        // digits / 10^k: scale up by 2^shift first so the quotient keeps at least 66
        // significant bits (log2(10) < 3.322).
        let power = decimal_exponent.unsigned_abs();
        let denominator_bits = power * 3322 / 1000 + 1;
        let shift = (70 + denominator_bits).saturating_sub(digits.bit_len());
        let mut quotient = digits.shl(shift);
        let inexact = quotient.div_pow10(power);
        Some((quotient, -(shift as i64), inexact))
    }

    /// A hexadecimal text after "0x": hex digits with an optional point, optional `p` and a
    /// binary exponent. Exact in binary, so nothing is sticky.
    fn parse_hex(text: &[u8]) -> Option<(Natural, i64, bool)> {
        let (digits, fraction_digits, rest) = parse_digits(text, 16)?;
        let exponent = match rest.split_first() {
            None => 0,
            Some((b'p' | b'P', exponent)) => parse_exponent(exponent)?,
            Some(_) => return None,
        };
        let exponent = exponent - 4 * fraction_digits as i64;
        // Cheap range checks before `round`, which works in bits.
        let top = digits.bit_len() as i64 + exponent;
        if top > MAX_EXPONENT + 64 + 1 {
            return None;
        }
        if !digits.is_zero() && top < MIN_EXPONENT - 1 {
            return None;
        }
        Some((digits, exponent, false))
    }

    /// a + b, correctly rounded; None when the sum overflows to infinity.
    fn add(a: LongDouble, b: LongDouble) -> Option<LongDouble> {
        if a.mantissa == 0 && b.mantissa == 0 {
            return Some(LongDouble::zero(a.negative && b.negative));
        }
        if a.mantissa == 0 {
            return Some(b);
        }
        if b.mantissa == 0 {
            return Some(a);
        }
        let exponent = a.exponent.min(b.exponent);
        let a_exact = Natural::from_u64(a.mantissa).shl((a.exponent - exponent) as u64);
        let b_exact = Natural::from_u64(b.mantissa).shl((b.exponent - exponent) as u64);
        let (negative, magnitude) = if a.negative == b.negative {
            (a.negative, a_exact.add(&b_exact))
        } else {
            match a_exact.compare(&b_exact) {
                Ordering::Greater => (a.negative, a_exact.sub(&b_exact)),
                Ordering::Less => (b.negative, b_exact.sub(&a_exact)),
                // x + (-x) is +0 when rounding to nearest.
                Ordering::Equal => return Some(LongDouble::ZERO),
            }
        };
        match round(&magnitude, exponent, false) {
            Rounded::Finite { mantissa, exponent } => Some(LongDouble {
                negative,
                mantissa,
                exponent,
            }),
            Rounded::Zero => Some(LongDouble::zero(negative)),
            Rounded::Overflow => None,
        }
    }

    /// Redis's `ld2string(..., LD_STR_HUMAN)`: `%.17Lf`, trailing zeros and point removed,
    /// "-0" shown as "0".
    fn format(value: LongDouble) -> String {
        let sign = if value.negative { "-" } else { "" };
        let text = if value.exponent >= 0 {
            let integer = Natural::from_u64(value.mantissa).shl(value.exponent as u64);
            format!("{sign}{}", integer.to_decimal())
        } else {
            let scale = value.exponent.unsigned_abs();
            let (integer, fraction) = if scale >= 64 {
                (0u128, u128::from(value.mantissa))
            } else {
                let mantissa = u128::from(value.mantissa);
                (mantissa >> scale, mantissa & ((1 << scale) - 1))
            };
            let unit = 10u128.pow(FRACTION_DIGITS);
            // fraction < 2^64 and unit < 2^57, so this fits; it is the fraction scaled to
            // 17 digits, still over 2^scale.
            let scaled = fraction * unit;
            let (mut digits, round_up) = if scale >= 128 {
                (0, false)
            } else {
                let digits = scaled >> scale;
                let remainder = scaled & ((1 << scale) - 1);
                let half = 1u128 << (scale - 1);
                let round_up = remainder > half || (remainder == half && digits & 1 == 1);
                (digits, round_up)
            };
            let mut integer = integer;
            if round_up {
                digits += 1;
                if digits == unit {
                    digits = 0;
                    integer += 1;
                }
            }
            let text = format!("{sign}{integer}.{digits:017}");
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        };
        if text == "-0" {
            "0".to_string()
        } else {
            text
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn incr(current: &str, by: &str) -> Result<String, IncrementError> {
            increment(Some(current.as_bytes()), by.as_bytes())
        }

        #[test]
        fn sums_round_like_x87_long_double() {
            // Each expectation is what Redis 7.0 on x86-64 answered.
            assert_eq!(incr("0", "0.1").unwrap(), "0.1");
            assert_eq!(incr("0.1", "0.2").unwrap(), "0.3");
            assert_eq!(incr("0.1", "0.7").unwrap(), "0.8");
            assert_eq!(incr("10.5", "0.1").unwrap(), "10.6");
            assert_eq!(incr("10.6", "1e20").unwrap(), "100000000000000000008");
            assert_eq!(
                incr("100000000000000000008", "1e25").unwrap(),
                "10000100000000000000000000"
            );
            assert_eq!(incr("-1.5", "0.1").unwrap(), "-1.4");
            assert_eq!(
                incr("1", "0.3333333333333333333333333").unwrap(),
                "1.33333333333333333"
            );
            assert_eq!(
                incr("1.33333333333333333", "123456789.123456789").unwrap(),
                "123456790.45679012233449612"
            );
            assert_eq!(
                incr("3.0", "1.23456789012345678901").unwrap(),
                "4.23456789012345679"
            );
            assert_eq!(incr("5.0e3", "2.0e2").unwrap(), "5200");
            assert_eq!(
                increment(None, b"18446744073709551617").unwrap(),
                "18446744073709551616"
            );
        }

        #[test]
        fn printing_rounds_the_exact_value_half_to_even() {
            // 2^-18 and 3 × 2^-18 end in an exact 5 at the 18th decimal.
            assert_eq!(
                incr("0", "0.000003814697265625").unwrap(),
                "0.00000381469726562"
            );
            assert_eq!(
                incr("0", "0.000011444091796875").unwrap(),
                "0.00001144409179688"
            );
            assert_eq!(incr("0", "1.5e-17").unwrap(), "0.00000000000000002");
            assert_eq!(incr("0", "5e-18").unwrap(), "0");
            assert_eq!(incr("0", "1e-20").unwrap(), "0");
            assert_eq!(incr("0", "-0.0000000000000000001").unwrap(), "0");
            assert_eq!(incr("-0", "-0").unwrap(), "0");
            assert_eq!(incr("1e300", "-1e300").unwrap(), "0");
            let big = incr("0", "1e300").unwrap();
            assert!(
                big.starts_with("10000000000000000000089973240795591938705239442732"),
                "{big}"
            );
            assert_eq!(big.len(), 301);
        }

        #[test]
        fn parsing_follows_strtold() {
            assert_eq!(incr("0", ".5").unwrap(), "0.5");
            assert_eq!(incr("0.5", "5.").unwrap(), "5.5");
            assert_eq!(incr("0", "+1.5").unwrap(), "1.5");
            assert_eq!(incr("0", "0x1.8p1").unwrap(), "3");
            assert_eq!(incr("0", "0X10").unwrap(), "16");
            assert_eq!(incr("0", "3e-4951").unwrap(), "0");
            assert!(incr("0", "1e400")
                .unwrap()
                .starts_with("1000000000000000000028188068394758651458"));
            for bad in [
                "", " 1", "1 ", "1e", "1e+", ".", "e5", "0x", "nan", "NaN", "1e-4952", "1.2e4932",
                "1e5000", "1,5", "--1", "0x1p",
            ] {
                assert_eq!(incr("0", bad), Err(IncrementError::NotAFloat), "{bad:?}");
                assert_eq!(incr(bad, "1"), Err(IncrementError::NotAFloat), "{bad:?}");
            }
            assert_eq!(
                incr(&"1".repeat(MAX_TEXT_LEN), "1"),
                Err(IncrementError::NotAFloat)
            );
        }

        #[test]
        fn infinities_are_refused_after_parsing() {
            assert_eq!(incr("0", "inf"), Err(IncrementError::NotFinite));
            assert_eq!(incr("0", "-INFINITY"), Err(IncrementError::NotFinite));
            assert_eq!(incr("1.18e4932", "1e4932"), Err(IncrementError::NotFinite));
            assert!(incr("0", "1.18e4932")
                .unwrap()
                .starts_with("1180000000000000000000652812918093699202"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|word| Bytes::from(word.to_string()))
            .collect()
    }

    fn parse_set(words: &[&str]) -> Result<ExtendedOptions<'static>, String> {
        let owned: &'static [Bytes] = Box::leak(options(words).into_boxed_slice());
        parse_extended_options(owned, OptionSet::Set).map_err(|error| match error {
            CommandError::Reply(text) => text,
            other => format!("{other:?}"),
        })
    }

    fn parse_getex(words: &[&str]) -> Result<ExtendedOptions<'static>, String> {
        let owned: &'static [Bytes] = Box::leak(options(words).into_boxed_slice());
        parse_extended_options(owned, OptionSet::GetEx).map_err(|error| match error {
            CommandError::Reply(text) => text,
            other => format!("{other:?}"),
        })
    }

    #[test]
    fn set_options_combine_like_redis() {
        let parsed = parse_set(&["nx", "GET", "px", "100"]).unwrap();
        assert!(parsed.nx && parsed.get && !parsed.xx);
        assert_eq!(parsed.expire, Some((ExpireKind::Px, &b"100"[..])));
        // Repeats are fine; the last amount wins.
        let parsed = parse_set(&["EX", "10", "ex", "20", "nx", "nx"]).unwrap();
        assert_eq!(parsed.expire, Some((ExpireKind::Ex, &b"20"[..])));
        assert!(parse_set(&["keepttl", "xx"]).unwrap().keep_ttl);
        for bad in [
            &["nx", "xx"][..],
            &["ex", "10", "px", "100"],
            &["ex", "10", "keepttl"],
            &["keepttl", "exat", "10"],
            &["ex"],
            &["persist"],
            &["foo"],
            &["ex", "abc", "nx", "xx"],
        ] {
            assert_eq!(
                parse_set(bad),
                Err("ERR syntax error".to_string()),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn getex_options_differ_from_sets() {
        assert!(parse_getex(&["persist"]).unwrap().persist);
        assert_eq!(
            parse_getex(&["pxat", "5"]).unwrap().expire,
            Some((ExpireKind::PxAt, &b"5"[..]))
        );
        for bad in [
            &["get"][..],
            &["nx"],
            &["keepttl"],
            &["persist", "ex", "10"],
            &["ex"],
        ] {
            assert_eq!(
                parse_getex(bad),
                Err("ERR syntax error".to_string()),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn expire_deadlines_reject_what_redis_rejects() {
        let error = |result: Result<u64, CommandError>| match result {
            Err(CommandError::Reply(text)) => text,
            other => format!("{other:?}"),
        };
        let now = 1_000_000;
        assert_eq!(
            expire_deadline(ExpireKind::Ex, b"10", now, "set").unwrap(),
            now + 10_000
        );
        assert_eq!(
            expire_deadline(ExpireKind::Px, b"10", now, "set").unwrap(),
            now + 10
        );
        assert_eq!(
            expire_deadline(ExpireKind::ExAt, b"10", now, "set").unwrap(),
            10_000
        );
        assert_eq!(
            expire_deadline(ExpireKind::PxAt, b"9223372036854775807", now, "set").unwrap(),
            i64::MAX as u64
        );
        for (kind, amount) in [
            (ExpireKind::Ex, &b"0"[..]),
            (ExpireKind::Px, b"-1"),
            (ExpireKind::Ex, b"9223372036854775"),
            (ExpireKind::ExAt, b"9223372036854776"),
            (ExpireKind::Px, b"9223372036854775807"),
        ] {
            assert_eq!(
                error(expire_deadline(kind, amount, now, "setex")),
                "ERR invalid expire time in 'setex' command"
            );
        }
        assert_eq!(
            error(expire_deadline(ExpireKind::Ex, b"1.5", now, "set")),
            "ERR value is not an integer or out of range"
        );
    }

    #[test]
    fn ranges_follow_redis_index_rules() {
        assert_eq!(clamp_range(0, -1, 6), Some(0..=5));
        assert_eq!(clamp_range(-3, -1, 6), Some(3..=5));
        assert_eq!(clamp_range(-100, 2, 6), Some(0..=2));
        assert_eq!(clamp_range(2, 100, 6), Some(2..=5));
        assert_eq!(clamp_range(4, 2, 6), None);
        assert_eq!(clamp_range(0, -1, 0), None);
        assert_eq!(clamp_range(i64::MIN, i64::MAX, 3), Some(0..=2));
        assert_eq!(bit_range(6, 1, 1, BitUnit::Byte), Some(8..=15));
        assert_eq!(bit_range(6, 5, 30, BitUnit::Bit), Some(5..=30));
        assert_eq!(bit_range(2, -3, -1, BitUnit::Bit), Some(13..=15));
    }

    #[test]
    fn bits_are_counted_within_the_range() {
        let foobar = b"foobar";
        assert_eq!(
            count_set_bits(foobar, bit_range(6, 0, -1, BitUnit::Byte).unwrap()),
            26
        );
        assert_eq!(
            count_set_bits(foobar, bit_range(6, 1, 1, BitUnit::Byte).unwrap()),
            6
        );
        assert_eq!(
            count_set_bits(foobar, bit_range(6, 5, 30, BitUnit::Bit).unwrap()),
            17
        );
        assert_eq!(count_set_bits(&[0xFF], 3..=3), 1);
        assert_eq!(count_set_bits(&[0xFF; 20], 4..=155), 152);
    }

    #[test]
    fn first_bit_is_found_only_inside_the_range() {
        assert_eq!(find_bit(&[0xFF, 0xF0, 0x00], false, 0..=23), Some(12));
        assert_eq!(find_bit(&[0x00, 0x00, 0x01], true, 0..=23), Some(23));
        assert_eq!(find_bit(&[0x00, 0x00, 0x01], true, 0..=22), None);
        assert_eq!(find_bit(&[0xFF; 3], false, 0..=23), None);
        // Bits before the start of the range are not candidates.
        assert_eq!(find_bit(&[0x80, 0x01], true, 1..=15), Some(15));
        assert_eq!(find_bit(b"foobar", true, 2..=47), Some(2));
        assert_eq!(find_bit(&[0b1011_1111], false, 2..=7), None);
        assert_eq!(find_bit(&[0b1011_1111], false, 1..=7), Some(1));
    }

    #[test]
    fn bitop_pads_short_sources_with_zeros() {
        let sources = [
            Some(Bytes::from_static(b"\xff\x0f")),
            None,
            Some(Bytes::from_static(b"\x01")),
        ];
        assert_eq!(bit_operation(BitOp::Or, &sources), vec![0xFF, 0x0F]);
        assert_eq!(bit_operation(BitOp::And, &sources), vec![0x00, 0x00]);
        assert_eq!(bit_operation(BitOp::Xor, &sources), vec![0xFE, 0x0F]);
        assert_eq!(bit_operation(BitOp::Not, &sources[..1]), vec![0x00, 0xF0]);
        assert!(bit_operation(BitOp::And, &[None, None]).is_empty());
    }

    #[test]
    fn lcs_matches_redis_output() {
        let lcs = longest_common_subsequence(b"ohmytext", b"mynewtext", true).unwrap();
        assert_eq!(lcs.len, 6);
        assert_eq!(lcs.text, b"mytext");
        assert_eq!(
            lcs.matches,
            vec![
                LcsMatch {
                    a: (4, 7),
                    b: (5, 8)
                },
                LcsMatch {
                    a: (2, 3),
                    b: (0, 1)
                },
            ]
        );
        assert_eq!(lcs.matches[0].len(), 4);
        let len_only = longest_common_subsequence(b"ohmytext", b"mynewtext", false).unwrap();
        assert_eq!(
            (len_only.len, len_only.text.len(), len_only.matches.len()),
            (6, 0, 0)
        );
        let empty = longest_common_subsequence(b"abc", b"", true).unwrap();
        assert_eq!(
            (empty.len, empty.text.len(), empty.matches.len()),
            (0, 0, 0)
        );
    }
}
