//! The set family (issue 17), with Redis 7's replies and error texts: members of one set
//! here, the operations over several sets (SINTER, SUNION, SDIFF, their STORE forms,
//! SINTERCARD, SMOVE) in `algebra`. A single-key command is one engine call, as in the hash
//! family: a read lends the set, a write says which members to add or remove; a multi-key
//! command runs in one transaction over its keys' shards (I7).
//!
//! What it must never do: touch a key of another type (`Value::as_set`, -WRONGTYPE; the
//! STORE forms overwrite their destination whatever it held, as Redis does), or leave an
//! empty set behind.

mod algebra;

use bytes::Bytes;

use super::collections::{
    random_position, read_collection, update_collection, RandomCount, ScanRequest,
};
use super::table::{acl, key, CommandSpec, KeySpec, DENYOOM, FAST, READONLY, WRITE};
use super::{CommandError, CommandResult, Ctx};
use crate::engine::types::set::SetValue;
use crate::engine::types::{AppliedCounts, ElementOp};
use crate::protocol::{ProtocolVersion, Reply};
use algebra::{sdiff, sdiffstore, sinter, sintercard, sinterstore, smove, sunion, sunionstore};

const SET: &str = "set";

// The keys' roles in each kind of set command (Redis 7's key specs).
const READS_META: &[KeySpec] = &[KeySpec::at(key::RO, 1)];
const READS: &[KeySpec] = &[KeySpec::at(key::RO | key::ACCESS, 1)];
const INSERTS: &[KeySpec] = &[KeySpec::at(key::RW | key::INSERT, 1)];
const DELETES: &[KeySpec] = &[KeySpec::at(key::RW | key::DELETE, 1)];
const POPS: &[KeySpec] = &[KeySpec::at(key::RW | key::ACCESS | key::DELETE, 1)];
const READS_ALL: &[KeySpec] = &[KeySpec::range(key::RO | key::ACCESS, 1, -1, 1)];
/// SINTERCARD numkeys key [key ...] [LIMIT limit]: the table has no "numkeys" key spec
/// yet, so every argument after numkeys counts as a key (docs/compatibility.md).
const READS_AFTER_NUMKEYS: &[KeySpec] = &[KeySpec::range(key::RO | key::ACCESS, 2, -1, 1)];
const STORES: &[KeySpec] = &[
    KeySpec::at(key::OW | key::UPDATE, 1),
    KeySpec::range(key::RO | key::ACCESS, 2, -1, 1),
];
const MOVES: &[KeySpec] = &[
    KeySpec::at(key::RW | key::ACCESS | key::DELETE, 1),
    KeySpec::at(key::RW | key::INSERT, 2),
];

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
        acl::SET,
        keys,
        SET,
        since,
        summary,
        handler,
    )
}

pub const COMMANDS: &[CommandSpec] = &[
    row("sadd", -3, WRITE | DENYOOM | FAST, INSERTS, "1.0.0",
        "Adds one or more members to a set. Creates the key if it doesn't exist.", sadd),
    row("srem", -3, WRITE | FAST, DELETES, "1.0.0",
        "Removes one or more members from a set. Deletes the set if the last member was removed.", srem),
    row("sismember", 3, READONLY | FAST, READS_META, "1.0.0",
        "Determines whether a member belongs to a set.", sismember),
    row("smismember", -3, READONLY | FAST, READS_META, "6.2.0",
        "Determines whether multiple members belong to a set.", smismember),
    row("scard", 2, READONLY | FAST, READS_META, "1.0.0",
        "Returns the number of members in a set.", scard),
    row("smembers", 2, READONLY, READS, "1.0.0",
        "Returns all members of a set.", smembers),
    row("spop", -2, WRITE | FAST, POPS, "1.0.0",
        "Returns one or more random members from a set after removing them. Deletes the set if the last member was popped.", spop),
    row("srandmember", -2, READONLY, READS, "1.0.0",
        "Get one or multiple random members from a set", srandmember),
    row("smove", 4, WRITE | FAST, MOVES, "1.0.0",
        "Moves a member from one set to another.", smove),
    row("sinter", -2, READONLY, READS_ALL, "1.0.0",
        "Returns the intersect of multiple sets.", sinter),
    row("sintercard", -3, READONLY, READS_AFTER_NUMKEYS, "7.0.0",
        "Returns the number of members of the intersect of multiple sets.", sintercard),
    row("sinterstore", -3, WRITE | DENYOOM, STORES, "1.0.0",
        "Stores the intersect of multiple sets in a key.", sinterstore),
    row("sunion", -2, READONLY, READS_ALL, "1.0.0",
        "Returns the union of multiple sets.", sunion),
    row("sunionstore", -3, WRITE | DENYOOM, STORES, "1.0.0",
        "Stores the union of multiple sets in a key.", sunionstore),
    row("sdiff", -2, READONLY, READS_ALL, "1.0.0",
        "Returns the difference of multiple sets.", sdiff),
    row("sdiffstore", -3, WRITE | DENYOOM, STORES, "1.0.0",
        "Stores the difference of multiple sets in a key.", sdiffstore),
    row("sscan", -3, READONLY, READS, "2.8.0",
        "Iterates over members of a set.", sscan),
];

/// `read_collection` for a set.
pub(super) fn read_set<T>(
    ctx: &mut Ctx<'_, '_>,
    key: &[u8],
    read: impl FnOnce(&SetValue) -> T,
) -> Result<Option<T>, CommandError> {
    read_collection(ctx, key, read)
}

/// `update_collection` for a set: the members to add or remove.
fn update_set<T>(
    ctx: &mut Ctx<'_, '_>,
    key: &[u8],
    plan: impl FnOnce(Option<&SetValue>) -> Result<(Vec<ElementOp>, T), CommandError>,
) -> Result<(T, AppliedCounts), CommandError> {
    update_collection(ctx, key, plan)
}

fn add(member: &Bytes) -> ElementOp {
    ElementOp::Put {
        element: member.clone(),
        value: Bytes::new(),
    }
}

fn remove(member: &Bytes) -> ElementOp {
    ElementOp::Del {
        element: member.clone(),
    }
}

/// Members as a RESP3 set, or an array in RESP2 (SMEMBERS, SPOP with a count, SINTER, ...).
fn members_reply(ctx: &Ctx<'_, '_>, members: Vec<Reply>) -> Reply {
    match ctx.client.protocol {
        ProtocolVersion::Resp3 => Reply::Set(members),
        ProtocolVersion::Resp2 => Reply::Array(members),
    }
}

fn bulks<'a>(members: impl Iterator<Item = &'a [u8]>) -> Vec<Reply> {
    members
        .map(|member| Reply::Bulk(Bytes::copy_from_slice(member)))
        .collect()
}

/// SADD key member [member ...]: the number of members added.
fn sadd(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let ((), applied) = update_set(ctx, &args[1], |_| {
        Ok((args[2..].iter().map(add).collect(), ()))
    })?;
    Ok(Reply::Integer(applied.added as i64))
}

/// SREM key member [member ...]: the number of members removed.
fn srem(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let ((), applied) = update_set(ctx, &args[1], |set| match set {
        Some(_) => Ok((args[2..].iter().map(remove).collect(), ())),
        None => Ok((Vec::new(), ())),
    })?;
    Ok(Reply::Integer(applied.removed as i64))
}

fn sismember(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let found = read_set(ctx, &args[1], |set| set.contains(&args[2]))?;
    Ok(Reply::Integer(i64::from(found == Some(true))))
}

fn smismember(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let members = &args[2..];
    let found = read_set(ctx, &args[1], |set| {
        members
            .iter()
            .map(|member| Reply::Integer(i64::from(set.contains(member))))
            .collect()
    })?;
    Ok(Reply::Array(
        found.unwrap_or_else(|| vec![Reply::Integer(0); members.len()]),
    ))
}

fn scard(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let len = read_set(ctx, &args[1], SetValue::len)?;
    Ok(Reply::Integer(len.unwrap_or(0) as i64))
}

fn smembers(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let members = read_set(ctx, &args[1], |set| bulks(set.iter()))?;
    Ok(members_reply(ctx, members.unwrap_or_default()))
}

/// SPOP key [count]: one member (or nil), or up to `count` members as a set.
fn spop(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let count = match args.len() {
        2 => None,
        3 => Some(
            u64::try_from(super::args::int(&args[2])?)
                .map_err(|_| CommandError::err("value is out of range, must be positive"))?,
        ),
        _ => return Err(CommandError::syntax()),
    };
    let (popped, _) = update_set(ctx, &args[1], |set| {
        let Some(set) = set.filter(|_| count != Some(0)) else {
            return Ok((Vec::new(), Vec::new()));
        };
        let wanted = count.map_or(1, |count| count.min(set.len() as u64) as usize);
        let popped: Vec<Bytes> = RandomCount::Distinct(wanted)
            .pick(set.len())
            .into_iter()
            .map(|at| Bytes::copy_from_slice(set.at(at).expect("picked in range")))
            .collect();
        Ok((popped.iter().map(remove).collect(), popped))
    })?;
    Ok(match count {
        None => popped.into_iter().next().map_or(Reply::Nil, Reply::Bulk),
        Some(_) => members_reply(ctx, bulks(popped.iter().map(|member| &member[..]))),
    })
}

/// SRANDMEMBER key [count]: one member (or nil), or an array per Redis's count rules.
fn srandmember(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    match args.len() {
        2 => {
            let member = read_set(ctx, &args[1], |set| {
                set.at(random_position(set.len()))
                    .map(Bytes::copy_from_slice)
            })?
            .flatten();
            Ok(member.map_or(Reply::Nil, Reply::Bulk))
        }
        3 => {
            let count = RandomCount::parse(&args[2], false)?;
            let picks = read_set(ctx, &args[1], |set| {
                let picks = count.pick(set.len());
                bulks(
                    picks
                        .into_iter()
                        .map(|at| set.at(at).expect("picked in range")),
                )
            })?;
            Ok(Reply::Array(picks.unwrap_or_default()))
        }
        _ => Err(CommandError::syntax()),
    }
}

/// SSCAN key cursor [MATCH pattern] [COUNT count].
fn sscan(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let request = ScanRequest::parse(args, false)?;
    let found = read_set(ctx, &args[1], |set| {
        let whole = set.is_compact().then(|| set.iter());
        let (cursor, members) = request.elements(set.len(), whole, |at| {
            set.at(at).expect("a position below the length")
        });
        let matching = members.into_iter().filter(|member| request.matches(member));
        (cursor, bulks(matching))
    })?;
    let (cursor, found) = found.unwrap_or_default();
    Ok(ScanRequest::page(cursor, found))
}
