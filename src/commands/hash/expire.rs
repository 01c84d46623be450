//! Hash field expiry, with Redis 7.4's and Valkey 9's commands, replies and error texts
//! (checked against Valkey 9.1): HEXPIRE, HPEXPIRE, HEXPIREAT, HPEXPIREAT set deadlines,
//! HTTL, HPTTL, HEXPIRETIME, HPEXPIRETIME read them, HPERSIST removes them. Every command
//! answers one integer per field named, in order; a field named twice sees the effect of
//! its first mention. Expired fields vanish when the engine next lends the hash (see
//! `engine::value_txn`), so they are never seen.

use std::collections::HashMap;

use bytes::Bytes;

use super::{read_hash, update_hash};
use crate::commands::args::{self, is};
use crate::commands::{CommandError, CommandResult, Ctx};
use crate::engine::types::ElementOp;
use crate::engine::ExpireCondition;
use crate::protocol::Reply;

/// Field absent (or key absent), condition not met, deadline set, field deleted; and for
/// the readers and HPERSIST: no deadline, deadline removed.
const NO_FIELD: i64 = -2;
const NO_DEADLINE: i64 = -1;
const NOT_MET: i64 = 0;
const SET: i64 = 1;
const DELETED: i64 = 2;

fn numfields_error() -> CommandError {
    CommandError::err("numfields should be greater than 0 and match the provided number of fields")
}

/// `FIELDS numfields field [field ...]` at `args[at..]`; `mismatch` is the command's error
/// for a missing keyword or a count that does not match.
fn named_fields(
    args: &[Bytes],
    at: usize,
    mismatch: fn() -> CommandError,
) -> Result<&[Bytes], CommandError> {
    if !args.get(at).is_some_and(|word| is(word, "fields")) {
        return Err(mismatch());
    }
    let Some(count) = args.get(at + 1) else {
        return Err(mismatch());
    };
    let count = args::int(count)?;
    let fields = &args[at + 2..];
    if count <= 0 || count as usize != fields.len() {
        return Err(mismatch());
    }
    Ok(fields)
}

/// HEXPIRE / HPEXPIRE / HEXPIREAT / HPEXPIREAT key time [NX | XX | GT | LT] FIELDS
/// numfields field [field ...].
pub(super) fn hexpire(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let amount = args::int(&args[2])?;
    let invalid = || CommandError::err(format!("invalid expire time in '{name}' command"));
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    let mut at = 3;
    while let Some(option) = args.get(at) {
        match () {
            _ if is(option, "nx") => nx = true,
            _ if is(option, "xx") => xx = true,
            _ if is(option, "gt") => gt = true,
            _ if is(option, "lt") => lt = true,
            _ => break,
        }
        at += 1;
    }
    if nx && (xx || gt || lt) {
        return Err(CommandError::err(
            "NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if gt && lt {
        return Err(CommandError::err(
            "GT and LT options at the same time are not compatible",
        ));
    }
    let condition = match (nx, xx, gt, lt) {
        (true, ..) => ExpireCondition::Nx,
        (_, _, true, _) => ExpireCondition::Gt,
        (_, true, _, true) => ExpireCondition::XxLt,
        (_, _, _, true) => ExpireCondition::Lt,
        (_, true, ..) => ExpireCondition::Xx,
        _ => ExpireCondition::Always,
    };
    let fields = named_fields(args, at, numfields_error)?;
    if amount < 0 {
        return Err(invalid());
    }
    let now = ctx.engine().now_ms();
    let in_seconds = matches!(name.as_str(), "hexpire" | "hexpireat");
    let relative = matches!(name.as_str(), "hexpire" | "hpexpire");
    let mut deadline = match in_seconds {
        true => amount.checked_mul(1000).ok_or_else(invalid)?,
        false => amount,
    };
    if relative {
        deadline = deadline.checked_add(now as i64).ok_or_else(invalid)?;
    }
    let deadline = deadline as u64;
    let (codes, _) = update_hash(ctx, &args[1], |hash| {
        let Some(hash) = hash else {
            return Ok((Vec::new(), vec![NO_FIELD; fields.len()]));
        };
        // What the fields named so far changed: None = deleted, Some(at) = new deadline.
        let mut changed: HashMap<&[u8], Option<u64>> = HashMap::new();
        let (mut ops, mut codes) = (Vec::new(), Vec::with_capacity(fields.len()));
        for field in fields {
            let current = match changed.get(&field[..]) {
                Some(None) => None,
                Some(Some(at)) => Some(Some(*at)),
                None if hash.contains(field) => Some(hash.deadline(field)),
                None => None,
            };
            let Some(current) = current else {
                codes.push(NO_FIELD);
                continue;
            };
            let allowed = match condition {
                ExpireCondition::Always => true,
                ExpireCondition::Nx => current.is_none(),
                ExpireCondition::Xx => current.is_some(),
                ExpireCondition::Gt => current.is_some_and(|at| deadline > at),
                ExpireCondition::Lt => current.is_none_or(|at| deadline < at),
                ExpireCondition::XxLt => current.is_some_and(|at| deadline < at),
            };
            if !allowed {
                codes.push(NOT_MET);
            } else if deadline <= now {
                ops.push(ElementOp::Del {
                    element: field.clone(),
                });
                changed.insert(field, None);
                codes.push(DELETED);
            } else {
                ops.push(ElementOp::Expire {
                    element: field.clone(),
                    at: deadline,
                });
                changed.insert(field, Some(deadline));
                codes.push(SET);
            }
        }
        Ok((ops, codes))
    })?;
    Ok(Reply::Array(
        codes.into_iter().map(Reply::Integer).collect(),
    ))
}

/// HTTL / HPTTL / HEXPIRETIME / HPEXPIRETIME key FIELDS numfields field [field ...].
pub(super) fn httl(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let fields = named_fields(args, 2, CommandError::syntax)?;
    let now = ctx.engine().now_ms();
    let codes = read_hash(ctx, &args[1], |hash| {
        fields
            .iter()
            .map(|field| match (hash.contains(field), hash.deadline(field)) {
                (false, _) => NO_FIELD,
                (true, None) => NO_DEADLINE,
                (true, Some(at)) => {
                    let remaining = at.saturating_sub(now) as i64;
                    match name.as_str() {
                        "httl" => (remaining + 500) / 1000,
                        "hpttl" => remaining,
                        "hexpiretime" => (at / 1000) as i64,
                        _ => at as i64,
                    }
                }
            })
            .collect()
    })?
    .unwrap_or_else(|| vec![NO_FIELD; fields.len()]);
    Ok(Reply::Array(
        codes.into_iter().map(Reply::Integer).collect(),
    ))
}

/// HPERSIST key FIELDS numfields field [field ...].
pub(super) fn hpersist(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let fields = named_fields(args, 2, CommandError::syntax)?;
    let (codes, _) = update_hash(ctx, &args[1], |hash| {
        let Some(hash) = hash else {
            return Ok((Vec::new(), vec![NO_FIELD; fields.len()]));
        };
        let mut persisted: Vec<&[u8]> = Vec::new();
        let (mut ops, mut codes) = (Vec::new(), Vec::with_capacity(fields.len()));
        for field in fields {
            let code = match hash.deadline(field) {
                _ if !hash.contains(field) => NO_FIELD,
                Some(_) if !persisted.contains(&&field[..]) => {
                    persisted.push(field);
                    ops.push(ElementOp::Expire {
                        element: field.clone(),
                        at: 0,
                    });
                    SET
                }
                _ => NO_DEADLINE,
            };
            codes.push(code);
        }
        Ok((ops, codes))
    })?;
    Ok(Reply::Array(
        codes.into_iter().map(Reply::Integer).collect(),
    ))
}
