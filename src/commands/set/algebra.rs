//! Set operations over several keys: SINTER, SUNION, SDIFF and their STORE forms,
//! SINTERCARD and SMOVE. Each runs in one transaction over its keys' shards, so it sees
//! and leaves one consistent state (I7). Every source key is checked before anything is
//! computed, so a key of another type anywhere answers -WRONGTYPE, as in Redis 7.

use bytes::Bytes;

use super::{bulks, members_reply};
use crate::commands::args;
use crate::commands::{CommandError, CommandResult, Ctx};
use crate::engine::types::set::SetValue;
use crate::engine::types::{ElementOp, Value, ValueType};
use crate::engine::{EngineError, EngineResult, Txn, ValueChange};
use crate::protocol::Reply;

#[derive(Clone, Copy)]
enum Operation {
    Intersection,
    Union,
    Difference,
}

/// A copy of the set a key holds (None when absent), or `WrongType`.
fn copy_set(value: Option<&Value>) -> EngineResult<Option<SetValue>> {
    value.map(|value| value.as_set().cloned()).transpose()
}

/// The sets at `keys` in `txn`, in order.
fn sets_in(txn: &mut Txn<'_>, db: u16, keys: &[Bytes]) -> EngineResult<Vec<Option<SetValue>>> {
    keys.iter()
        .map(|key| txn.read_value(db, key, copy_set)?)
        .collect()
}

/// The sets at `keys`, read at one point in time.
fn read_sets(ctx: &mut Ctx<'_, '_>, keys: &[Bytes]) -> Result<Vec<Option<SetValue>>, CommandError> {
    let db = ctx.db();
    let sets = match keys {
        [key] => vec![ctx.store.read_value(db, key, copy_set)??],
        _ => {
            let names: Vec<&[u8]> = keys.iter().map(|key| &key[..]).collect();
            ctx.store.atomically(&names, |txn| sets_in(txn, db, keys))?
        }
    };
    for set in &sets {
        ctx.count_lookup(set.is_some());
    }
    Ok(sets)
}

/// The result of `operation` over `sets` (a missing key is an empty set).
fn combine(operation: Operation, sets: Vec<Option<SetValue>>) -> SetValue {
    match operation {
        Operation::Intersection => {
            let Some(mut sets) = sets.into_iter().collect::<Option<Vec<SetValue>>>() else {
                return SetValue::default();
            };
            // Walk the smallest set and probe the others.
            sets.sort_by_key(SetValue::len);
            let (smallest, others) = sets.split_first().expect("at least one key");
            let mut result = SetValue::default();
            for member in smallest.iter() {
                if others.iter().all(|set| set.contains(member)) {
                    result.insert(member);
                }
            }
            result
        }
        Operation::Union => {
            let mut sets = sets.into_iter().flatten();
            let mut result = sets.next().unwrap_or_default();
            for set in sets {
                for member in set.iter() {
                    result.insert(member);
                }
            }
            result
        }
        Operation::Difference => {
            let mut sets = sets.into_iter();
            let Some(Some(mut result)) = sets.next() else {
                return SetValue::default();
            };
            for set in sets.flatten() {
                for member in set.iter() {
                    result.remove(member);
                }
            }
            result
        }
    }
}

fn reply_with(ctx: &mut Ctx<'_, '_>, args: &[Bytes], operation: Operation) -> CommandResult {
    let result = combine(operation, read_sets(ctx, &args[1..])?);
    Ok(members_reply(ctx, bulks(result.iter())))
}

pub(super) fn sinter(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    reply_with(ctx, args, Operation::Intersection)
}

pub(super) fn sunion(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    reply_with(ctx, args, Operation::Union)
}

pub(super) fn sdiff(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    reply_with(ctx, args, Operation::Difference)
}

/// SINTERSTORE / SUNIONSTORE / SDIFFSTORE destination key [key ...]: the destination is
/// replaced by the result (deleted when it is empty) without a time to live, whatever it
/// held; the reply is the result's size.
fn store_with(ctx: &mut Ctx<'_, '_>, args: &[Bytes], operation: Operation) -> CommandResult {
    let db = ctx.db();
    let names: Vec<&[u8]> = args[1..].iter().map(|key| &key[..]).collect();
    let (destination, sources) = (&args[1], &args[2..]);
    let (found, size) = ctx.store.atomically(&names, |txn| {
        let sets = sets_in(txn, db, sources)?;
        let found: Vec<bool> = sets.iter().map(Option::is_some).collect();
        let result = combine(operation, sets);
        let size = result.len();
        txn.update_value(db, destination, |_| {
            Ok::<_, EngineError>((ValueChange::Replace(Value::Set(Box::new(result))), ()))
        })?;
        Ok((found, size))
    })?;
    for hit in found {
        ctx.count_lookup(hit);
    }
    Ok(Reply::Integer(size as i64))
}

pub(super) fn sinterstore(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    store_with(ctx, args, Operation::Intersection)
}

pub(super) fn sunionstore(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    store_with(ctx, args, Operation::Union)
}

pub(super) fn sdiffstore(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    store_with(ctx, args, Operation::Difference)
}

/// SINTERCARD numkeys key [key ...] [LIMIT limit]: the intersection's size, counting
/// stopped at `limit` when it is not 0.
pub(super) fn sintercard(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let numkeys = match args::parse_i64(&args[1]) {
        Some(numkeys) if numkeys > 0 => numkeys as usize,
        _ => return Err(CommandError::err("numkeys should be greater than 0")),
    };
    if numkeys > args.len() - 2 {
        return Err(CommandError::err(
            "Number of keys can't be greater than number of args",
        ));
    }
    let keys = &args[2..2 + numkeys];
    let limit = match &args[2 + numkeys..] {
        [] => 0,
        [option, limit] if args::is(option, "limit") => u64::try_from(args::int(limit)?)
            .map_err(|_| CommandError::err("LIMIT can't be negative"))?
            as usize,
        _ => return Err(CommandError::syntax()),
    };
    let result = combine(Operation::Intersection, read_sets(ctx, keys)?);
    let size = match limit {
        0 => result.len(),
        limit => result.len().min(limit),
    };
    Ok(Reply::Integer(size as i64))
}

/// SMOVE source destination member: 1 if the member moved, 0 if the source lacks it.
pub(super) fn smove(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let db = ctx.db();
    let (source, destination, member) = (&args[1], &args[2], &args[3]);
    let moved = ctx.store.atomically(&[source, destination], |txn| {
        // Redis's order: a missing source answers 0 before any type is checked.
        let Some(source_has_it) = txn.read_value(db, source, |value| {
            value
                .map(|value| value.as_set().map(|set| set.contains(member)))
                .transpose()
        })??
        else {
            return Ok(false);
        };
        txn.read_value(db, destination, |value| {
            value.map(Value::as_set).transpose().map(|_| ())
        })??;
        if !source_has_it || source == destination {
            return Ok(source_has_it);
        }
        let moves = [
            (
                source,
                ElementOp::Del {
                    element: member.clone(),
                },
            ),
            (
                destination,
                ElementOp::Put {
                    element: member.clone(),
                    value: Bytes::new(),
                },
            ),
        ];
        for (key, op) in moves {
            txn.update_elements(db, key, ValueType::Set, |_| {
                Ok::<_, EngineError>((vec![op], ()))
            })?;
        }
        Ok(true)
    })?;
    Ok(Reply::Integer(i64::from(moved)))
}
