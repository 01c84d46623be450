//! Keyspace commands: existence, expiry, renaming, copying, iteration. Every command sees
//! the engine's single view of both tiers (I1).

use bytes::Bytes;

use super::args::{self, is};
use super::table::{acl, key, CommandSpec, KeySpec, ALL_SHARDS, FAST, NO_KEYS, READONLY, WRITE};
use super::{help_reply, CommandError, CommandResult, Ctx};
use crate::engine::{ExpireCondition, KeyTtl, RenameOutcome, DEFAULT_SCAN_COUNT};
use crate::protocol::Reply;

const GROUP: &str = "generic";

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "del",
        -2,
        WRITE,
        acl::KEYSPACE,
        &[KeySpec::range(key::RM | key::DELETE, 1, -1, 1)],
        GROUP,
        "1.0.0",
        "Deletes one or more keys.",
        del,
    ),
    CommandSpec::new(
        "unlink",
        -2,
        WRITE | FAST,
        acl::KEYSPACE,
        &[KeySpec::range(key::RM | key::DELETE, 1, -1, 1)],
        GROUP,
        "4.0.0",
        "Asynchronously deletes one or more keys.",
        del,
    ),
    CommandSpec::new(
        "exists",
        -2,
        READONLY | FAST,
        acl::KEYSPACE,
        &[KeySpec::range(key::RO, 1, -1, 1)],
        GROUP,
        "1.0.0",
        "Determines whether one or more keys exist.",
        exists,
    ),
    CommandSpec::new(
        "touch",
        -2,
        READONLY | FAST,
        acl::KEYSPACE,
        &[KeySpec::range(key::RO, 1, -1, 1)],
        GROUP,
        "3.2.1",
        "Returns the number of existing keys out of those specified after updating the time they were last accessed.",
        exists,
    ),
    CommandSpec::new(
        "type",
        2,
        READONLY | FAST,
        acl::KEYSPACE,
        &[KeySpec::at(key::RO, 1)],
        GROUP,
        "1.0.0",
        "Determines the type of value stored at a key.",
        key_type,
    ),
    CommandSpec::new(
        "expire",
        -3,
        WRITE | FAST,
        acl::KEYSPACE,
        &[KeySpec::at(key::RW | key::UPDATE, 1)],
        GROUP,
        "1.0.0",
        "Sets the expiration time of a key in seconds.",
        expire,
    ),
    CommandSpec::new(
        "pexpire",
        -3,
        WRITE | FAST,
        acl::KEYSPACE,
        &[KeySpec::at(key::RW | key::UPDATE, 1)],
        GROUP,
        "2.6.0",
        "Sets the expiration time of a key in milliseconds.",
        expire,
    ),
    CommandSpec::new(
        "expireat",
        -3,
        WRITE | FAST,
        acl::KEYSPACE,
        &[KeySpec::at(key::RW | key::UPDATE, 1)],
        GROUP,
        "1.2.0",
        "Sets the expiration time of a key to a Unix timestamp.",
        expire,
    ),
    CommandSpec::new(
        "pexpireat",
        -3,
        WRITE | FAST,
        acl::KEYSPACE,
        &[KeySpec::at(key::RW | key::UPDATE, 1)],
        GROUP,
        "2.6.0",
        "Sets the expiration time of a key to a Unix milliseconds timestamp.",
        expire,
    ),
    CommandSpec::new(
        "ttl",
        2,
        READONLY | FAST,
        acl::KEYSPACE,
        &[KeySpec::at(key::RO | key::ACCESS, 1)],
        GROUP,
        "1.0.0",
        "Returns the expiration time in seconds of a key.",
        ttl,
    ),
    CommandSpec::new(
        "pttl",
        2,
        READONLY | FAST,
        acl::KEYSPACE,
        &[KeySpec::at(key::RO | key::ACCESS, 1)],
        GROUP,
        "2.6.0",
        "Returns the expiration time in milliseconds of a key.",
        ttl,
    ),
    CommandSpec::new(
        "expiretime",
        2,
        READONLY | FAST,
        acl::KEYSPACE,
        &[KeySpec::at(key::RO | key::ACCESS, 1)],
        GROUP,
        "7.0.0",
        "Returns the expiration time of a key as a Unix timestamp.",
        ttl,
    ),
    CommandSpec::new(
        "pexpiretime",
        2,
        READONLY | FAST,
        acl::KEYSPACE,
        &[KeySpec::at(key::RO | key::ACCESS, 1)],
        GROUP,
        "7.0.0",
        "Returns the expiration time of a key as a Unix milliseconds timestamp.",
        ttl,
    ),
    CommandSpec::new(
        "persist",
        2,
        WRITE | FAST,
        acl::KEYSPACE,
        &[KeySpec::at(key::RW | key::UPDATE, 1)],
        GROUP,
        "2.2.0",
        "Removes the expiration time of a key.",
        persist,
    ),
    CommandSpec::new(
        "keys",
        2,
        READONLY | ALL_SHARDS,
        acl::KEYSPACE | acl::DANGEROUS,
        NO_KEYS,
        GROUP,
        "1.0.0",
        "Returns all key names that match a pattern.",
        keys,
    ),
    CommandSpec::new(
        "scan",
        -2,
        READONLY | ALL_SHARDS,
        acl::KEYSPACE,
        NO_KEYS,
        GROUP,
        "2.8.0",
        "Iterates over the key names in the database.",
        scan,
    ),
    CommandSpec::new(
        "randomkey",
        1,
        READONLY | ALL_SHARDS,
        acl::KEYSPACE,
        NO_KEYS,
        GROUP,
        "1.0.0",
        "Returns a random key name from the database.",
        randomkey,
    ),
    CommandSpec::new(
        "rename",
        3,
        WRITE,
        acl::KEYSPACE,
        &[KeySpec::at(key::RW | key::ACCESS | key::DELETE, 1), KeySpec::at(key::OW | key::UPDATE, 2)],
        GROUP,
        "1.0.0",
        "Renames a key and overwrites the destination.",
        rename,
    ),
    CommandSpec::new(
        "renamenx",
        3,
        WRITE | FAST,
        acl::KEYSPACE,
        &[KeySpec::at(key::RW | key::ACCESS | key::DELETE, 1), KeySpec::at(key::OW | key::INSERT, 2)],
        GROUP,
        "1.0.0",
        "Renames a key only when the target key name doesn't exist.",
        rename,
    ),
    CommandSpec::new(
        "copy",
        -3,
        WRITE,
        acl::KEYSPACE,
        &[KeySpec::at(key::RO | key::ACCESS, 1), KeySpec::at(key::OW | key::UPDATE, 2)],
        GROUP,
        "6.2.0",
        "Copies the value of a key to a new key.",
        copy,
    ),
    CommandSpec::new(
        "move",
        3,
        WRITE | FAST,
        acl::KEYSPACE,
        &[KeySpec::at(key::RW | key::ACCESS | key::UPDATE, 1)],
        GROUP,
        "1.0.0",
        "Moves a key to another database.",
        move_key,
    ),
    CommandSpec::new(
        "dbsize",
        1,
        READONLY | FAST,
        acl::KEYSPACE,
        NO_KEYS,
        GROUP,
        "1.0.0",
        "Returns the number of keys in the database.",
        dbsize,
    ),
    CommandSpec::new(
        "object",
        -2,
        0,
        acl::NONE,
        NO_KEYS,
        GROUP,
        "2.2.3",
        "A container for object introspection commands.",
        object_help,
    )
    .with_subcommands(&[
        CommandSpec::new(
            "encoding",
            3,
            READONLY,
            acl::KEYSPACE,
            &[KeySpec::at(key::RO, 2)],
            GROUP,
            "2.2.3",
            "Returns the internal encoding of a Redis object.",
            object_encoding,
        ),
        CommandSpec::new(
            "freq",
            3,
            READONLY,
            acl::KEYSPACE,
            &[KeySpec::at(key::RO, 2)],
            GROUP,
            "4.0.0",
            "Returns the logarithmic access frequency counter of a Redis object.",
            object_freq,
        ),
        CommandSpec::new(
            "idletime",
            3,
            READONLY,
            acl::KEYSPACE,
            &[KeySpec::at(key::RO, 2)],
            GROUP,
            "2.2.3",
            "Returns the time since the last access to a Redis object.",
            object_idletime,
        ),
        CommandSpec::new(
            "refcount",
            3,
            READONLY,
            acl::KEYSPACE,
            &[KeySpec::at(key::RO, 2)],
            GROUP,
            "2.2.3",
            "Returns the reference count of a value of a key.",
            object_refcount,
        ),
        CommandSpec::new(
            "help",
            2,
            0,
            acl::KEYSPACE,
            NO_KEYS,
            GROUP,
            "6.2.0",
            "Returns helpful text about the different subcommands.",
            object_help,
        ),
    ]),
];

fn del(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let db = ctx.db();
    let keys: Vec<&[u8]> = args[1..].iter().map(|key| &key[..]).collect();
    let removed = if keys.len() == 1 {
        u64::from(ctx.store.delete(db, keys[0])?)
    } else {
        ctx.store.atomically(&keys, |txn| {
            let mut removed = 0;
            for key in &keys {
                removed += u64::from(txn.delete(db, key)?);
            }
            Ok(removed)
        })?
    };
    Ok(Reply::Integer(removed as i64))
}

/// EXISTS and TOUCH: how many of the keys exist (a key named twice counts twice).
fn exists(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let db = ctx.db();
    let keys: Vec<&[u8]> = args[1..].iter().map(|key| &key[..]).collect();
    let found = if keys.len() == 1 {
        u64::from(ctx.store.exists(db, keys[0])?)
    } else {
        ctx.store.atomically(&keys, |txn| {
            let mut found = 0;
            for key in &keys {
                found += u64::from(txn.exists(db, key)?);
            }
            Ok(found)
        })?
    };
    Ok(Reply::Integer(found as i64))
}

fn key_type(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let db = ctx.db();
    let kind = match ctx.store.inspect(db, &args[1])? {
        Some(info) => info.value_type.name(),
        None => "none",
    };
    Ok(Reply::Simple(kind.into()))
}

/// EXPIRE / PEXPIRE / EXPIREAT / PEXPIREAT key time [NX|XX|GT|LT].
fn expire(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let name = args[0].to_ascii_lowercase();
    let amount = args::int(&args[2])?;
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for option in &args[3..] {
        if is(option, "nx") {
            nx = true;
        } else if is(option, "xx") {
            xx = true;
        } else if is(option, "gt") {
            gt = true;
        } else if is(option, "lt") {
            lt = true;
        } else {
            return Err(CommandError::err(format!(
                "Unsupported option {}",
                args::text(option)
            )));
        }
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
    let invalid = || {
        CommandError::err(format!(
            "invalid expire time in '{}' command",
            String::from_utf8_lossy(&name)
        ))
    };
    let now = ctx.engine().now_ms() as i64;
    let at_ms: i64 = match name.as_slice() {
        b"expire" => amount
            .checked_mul(1000)
            .and_then(|ms| ms.checked_add(now))
            .ok_or_else(invalid)?,
        b"pexpire" => amount.checked_add(now).ok_or_else(invalid)?,
        b"expireat" => amount.checked_mul(1000).ok_or_else(invalid)?,
        _ => amount,
    };
    // A deadline at or before now (negative included) deletes the key, as in Redis.
    let at = if at_ms <= now { 1 } else { at_ms as u64 };
    let applied = ctx.store.expire_at(ctx.db(), &args[1], at, condition)?;
    Ok(Reply::Integer(i64::from(applied)))
}

/// TTL / PTTL / EXPIRETIME / PEXPIRETIME.
fn ttl(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let name = args[0].to_ascii_lowercase();
    let now = ctx.engine().now_ms();
    let reply = match ctx.store.ttl(ctx.db(), &args[1])? {
        KeyTtl::Missing => -2,
        KeyTtl::Persistent => -1,
        KeyTtl::ExpiresAt(at) => {
            let remaining = at.saturating_sub(now) as i64;
            match name.as_slice() {
                b"ttl" => (remaining + 500) / 1000,
                b"pttl" => remaining,
                b"expiretime" => (at / 1000) as i64,
                _ => at as i64,
            }
        }
    };
    Ok(Reply::Integer(reply))
}

fn persist(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let removed = ctx.store.persist(ctx.db(), &args[1])?;
    Ok(Reply::Integer(i64::from(removed)))
}

fn keys(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let keys = ctx.store.keys(ctx.db(), &args[1])?;
    Ok(Reply::Array(keys.into_iter().map(Reply::Bulk).collect()))
}

/// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type].
fn scan(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let cursor = std::str::from_utf8(&args[1])
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .ok_or_else(|| CommandError::err("invalid cursor"))?;
    let mut pattern: Option<&[u8]> = None;
    let mut count = DEFAULT_SCAN_COUNT;
    let mut only_type: Option<Bytes> = None;
    let mut rest = args[2..].iter();
    while let Some(option) = rest.next() {
        let value = rest.next().ok_or_else(CommandError::syntax)?;
        if is(option, "match") {
            // "*" matches everything: skip the per-key glob.
            pattern = (&value[..] != b"*").then_some(&value[..]);
        } else if is(option, "count") {
            let wanted = args::int(value)?;
            if wanted < 1 {
                return Err(CommandError::syntax());
            }
            count = wanted as usize;
        } else if is(option, "type") {
            only_type = Some(value.clone());
        } else {
            return Err(CommandError::syntax());
        }
    }
    let db = ctx.db();
    let page = ctx.store.scan(db, cursor, pattern, count)?;
    let keys = match only_type {
        None => page.keys,
        Some(wanted) => {
            // A key that vanished since the page was read is left out, as Redis leaves
            // out the keys it finds expired.
            let mut kept = Vec::with_capacity(page.keys.len());
            for key in page.keys {
                let info = ctx.store.inspect(db, &key)?;
                if info.is_some_and(|info| is(&wanted, info.value_type.name())) {
                    kept.push(key);
                }
            }
            kept
        }
    };
    Ok(Reply::Array(vec![
        Reply::bulk(page.cursor.to_string()),
        Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
    ]))
}

fn randomkey(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    Ok(match ctx.store.random_key(ctx.db())? {
        Some(key) => Reply::Bulk(key),
        None => Reply::Nil,
    })
}

/// RENAME / RENAMENX.
fn rename(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let only_if_absent = is(&args[0], "renamenx");
    let outcome = ctx
        .store
        .rename(ctx.db(), &args[1], &args[2], only_if_absent)?;
    Ok(match (only_if_absent, outcome) {
        (false, _) => Reply::ok(),
        (true, RenameOutcome::Renamed) => Reply::Integer(1),
        (true, RenameOutcome::TargetExists) => Reply::Integer(0),
    })
}

/// COPY source destination [DB destination-db] [REPLACE].
fn copy(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let db = ctx.db();
    let mut dst_db = db;
    let mut replace = false;
    let mut rest = args[3..].iter();
    while let Some(option) = rest.next() {
        if is(option, "replace") {
            replace = true;
        } else if is(option, "db") {
            let value = rest.next().ok_or_else(CommandError::syntax)?;
            dst_db = args::db_index(value, ctx.engine().databases())?;
        } else {
            return Err(CommandError::syntax());
        }
    }
    if db == dst_db && args[1] == args[2] {
        return Err(CommandError::err(
            "source and destination objects are the same",
        ));
    }
    let copied = ctx.store.copy(db, &args[1], dst_db, &args[2], replace)?;
    Ok(Reply::Integer(i64::from(copied)))
}

fn move_key(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let db = ctx.db();
    let dst_db = args::db_index(&args[2], ctx.engine().databases())?;
    if dst_db == db {
        return Err(CommandError::err(
            "source and destination objects are the same",
        ));
    }
    let moved = ctx.store.move_key(db, &args[1], dst_db)?;
    Ok(Reply::Integer(i64::from(moved)))
}

fn dbsize(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    Ok(Reply::Integer(ctx.store.dbsize(ctx.db())? as i64))
}

/// Redis's encoding names: for a string "int" for small integers, "embstr" up to 44 bytes,
/// "raw" beyond; a collection names its own (listpack, intset, hashtable).
fn object_encoding(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let db = ctx.db();
    let encoding = ctx.store.read_value(db, &args[2], |value| {
        let value = value?;
        if let Some(encoding) = value.collection_encoding() {
            return Some(encoding);
        }
        let text = value.as_string().ok()?.to_bytes();
        Some(if text.len() <= 20 && args::parse_i64(&text).is_some() {
            "int"
        } else if text.len() <= 44 {
            "embstr"
        } else {
            "raw"
        })
    })?;
    Ok(encoding.map_or(Reply::Nil, Reply::bulk))
}

/// OBJECT FREQ and IDLETIME answer from the key's access stamp (hot or cold alike), each
/// only under a policy that uses it, with Redis's errors otherwise.
fn object_freq(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let db = ctx.db();
    let Some(info) = ctx.store.inspect(db, &args[2])? else {
        return Ok(Reply::Nil);
    };
    if !ctx.engine().eviction_policy().uses_lfu() {
        return Err(CommandError::err(
            "An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        ));
    }
    Ok(Reply::Integer(i64::from(info.lfu_counter)))
}

fn object_idletime(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let db = ctx.db();
    let Some(info) = ctx.store.inspect(db, &args[2])? else {
        return Ok(Reply::Nil);
    };
    if ctx.engine().eviction_policy().uses_lfu() {
        return Err(CommandError::err(
            "An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        ));
    }
    Ok(Reply::Integer(i64::from(info.idle_seconds)))
}

fn object_refcount(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    Ok(if ctx.store.exists(ctx.db(), &args[2])? {
        Reply::Integer(1)
    } else {
        Reply::Nil
    })
}

fn object_help(_ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    let lines = [
        "ENCODING <key>",
        "    Return the kind of internal representation used in order to store the value",
        "    associated with a <key>.",
        "FREQ <key>",
        "    Return the access frequency index of the <key>. The returned integer is",
        "    proportional to the logarithm of the recent access frequency of the key.",
        "IDLETIME <key>",
        "    Return the idle time of the <key>, that is the approximated number of",
        "    seconds elapsed since the last access to the key.",
        "REFCOUNT <key>",
        "    Return the number of references of the value associated with the specified",
        "    <key>.",
    ];
    Ok(help_reply("OBJECT", &lines))
}
