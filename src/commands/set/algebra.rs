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
use crate::engine::{EngineError, EngineResult, Txn};
use crate::protocol::Reply;

#[derive(Clone, Copy)]
enum Operation {
    Intersection,
    Union,
    Difference,
}

/// Something that lends the sets at keys, one at a time: a transaction over every key of a
/// multi-key command, or the store for a command naming one key.
trait LendSets {
    /// Lends the set at `key` (None when absent); `WrongType` for another type.
    fn with_set<T>(
        &mut self,
        key: &[u8],
        read: impl FnOnce(Option<&SetValue>) -> T,
    ) -> EngineResult<T>;
}

/// The sets of one transaction, in one database.
struct InTxn<'t, 'e> {
    txn: &'t mut Txn<'e>,
    db: u16,
}

impl LendSets for InTxn<'_, '_> {
    fn with_set<T>(
        &mut self,
        key: &[u8],
        read: impl FnOnce(Option<&SetValue>) -> T,
    ) -> EngineResult<T> {
        self.txn.read_value(self.db, key, |value| {
            value.map(Value::as_set).transpose().map(read)
        })?
    }
}

/// The result of `operation` over the sets at `keys` (a missing key is an empty set),
/// and which keys were found. Every key's type is checked first, as Redis does; then the
/// work is proportional to the smallest set (intersection) or the first (difference),
/// probing the others where they are held, without copying them.
fn combine(
    sets: &mut impl LendSets,
    keys: &[Bytes],
    operation: Operation,
) -> EngineResult<(SetValue, Vec<bool>)> {
    let sizes: Vec<Option<usize>> = keys
        .iter()
        .map(|key| sets.with_set(key, |set| set.map(SetValue::len)))
        .collect::<EngineResult<_>>()?;
    let found: Vec<bool> = sizes.iter().map(Option::is_some).collect();
    let copy_of = |set: Option<&SetValue>| set.cloned().unwrap_or_default();
    let result = match operation {
        Operation::Intersection => {
            let Some(sizes) = sizes.into_iter().collect::<Option<Vec<usize>>>() else {
                return Ok((SetValue::default(), found));
            };
            let smallest = (0..keys.len()).min_by_key(|&i| sizes[i]).expect("a key");
            let mut result = sets.with_set(&keys[smallest], copy_of)?;
            for (i, key) in keys.iter().enumerate() {
                if i != smallest && !result.is_empty() {
                    sets.with_set(key, |set| {
                        let set = set.expect("sized above, in the same transaction");
                        result.retain(|member| set.contains(member));
                    })?;
                }
            }
            result
        }
        Operation::Union => {
            let mut result = SetValue::default();
            for key in keys {
                sets.with_set(key, |set| {
                    for member in set.into_iter().flat_map(SetValue::iter) {
                        result.insert(member);
                    }
                })?;
            }
            result
        }
        Operation::Difference => {
            if sizes[0].is_none() {
                return Ok((SetValue::default(), found));
            }
            let mut result = sets.with_set(&keys[0], copy_of)?;
            for key in &keys[1..] {
                if result.is_empty() {
                    break;
                }
                sets.with_set(key, |set| {
                    if let Some(set) = set {
                        result.retain(|member| !set.contains(member));
                    }
                })?;
            }
            result
        }
    };
    Ok((result, found))
}

/// `combine` over `keys` at one point in time, counting each key's lookup.
fn combine_keys(
    ctx: &mut Ctx<'_, '_>,
    keys: &[Bytes],
    operation: Operation,
) -> Result<SetValue, CommandError> {
    let db = ctx.db();
    let names: Vec<&[u8]> = keys.iter().map(|key| &key[..]).collect();
    let (result, found) = ctx.store.atomically(&names, |txn| {
        combine(&mut InTxn { txn, db }, keys, operation)
    })?;
    for hit in found {
        ctx.count_lookup(hit);
    }
    Ok(result)
}

fn reply_with(ctx: &mut Ctx<'_, '_>, args: &[Bytes], operation: Operation) -> CommandResult {
    let keys = &args[1..];
    let result = match keys {
        // One key: its members, lent without a transaction.
        [key] => super::read_set(ctx, key, |set| bulks(set.iter()))?.unwrap_or_default(),
        _ => bulks(combine_keys(ctx, keys, operation)?.iter()),
    };
    Ok(members_reply(ctx, result))
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
        let (result, found) = combine(&mut InTxn { txn, db }, sources, operation)?;
        let size = result.len();
        txn.replace_value(db, destination, Value::Set(Box::new(result)))?;
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
    let size = match keys {
        [key] => super::read_set(ctx, key, SetValue::len)?.unwrap_or(0),
        _ => combine_keys(ctx, keys, Operation::Intersection)?.len(),
    };
    let size = match limit {
        0 => size,
        limit => size.min(limit),
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
