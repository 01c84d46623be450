//! The command table as data (CONVENTIONS 1): one `CommandSpec` per command with its
//! arity, flags, key positions and summary. COMMAND / COMMAND INFO / DOCS, the arity and
//! auth checks, MULTI queueing and shard locking all read this one table.

use std::collections::HashMap;
use std::sync::LazyLock;

use foldhash::fast::RandomState;

use bytes::Bytes;

use super::{CommandResult, Ctx};

pub type Handler = fn(&mut Ctx<'_, '_>, &[Bytes]) -> CommandResult;

/// Flags Redis reports in COMMAND INFO.
pub const WRITE: u32 = 1 << 0;
pub const READONLY: u32 = 1 << 1;
pub const DENYOOM: u32 = 1 << 2;
pub const ADMIN: u32 = 1 << 3;
pub const FAST: u32 = 1 << 4;
pub const NO_AUTH: u32 = 1 << 5;
pub const NO_MULTI: u32 = 1 << 6;
pub const LOADING: u32 = 1 << 7;
pub const STALE: u32 = 1 << 8;
pub const NOSCRIPT: u32 = 1 << 9;
/// Internal: the command reads or changes every shard (FLUSHALL, SCAN, KEYS, ...), so
/// inside EXEC the transaction must hold all of them.
pub const ALL_SHARDS: u32 = 1 << 16;

const FLAG_NAMES: &[(u32, &str)] = &[
    (WRITE, "write"),
    (READONLY, "readonly"),
    (DENYOOM, "denyoom"),
    (ADMIN, "admin"),
    (NOSCRIPT, "noscript"),
    (LOADING, "loading"),
    (STALE, "stale"),
    (FAST, "fast"),
    (NO_AUTH, "no_auth"),
    (NO_MULTI, "no_multi"),
];

pub struct CommandSpec {
    /// Lower case; subcommands use only their own name ("get" for CONFIG GET).
    pub name: &'static str,
    /// Argument count including the name; negative = at least that many.
    pub arity: i32,
    pub flags: u32,
    /// First key position (0 = no keys), last (negative counts from the end), step.
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    pub group: &'static str,
    pub since: &'static str,
    pub summary: &'static str,
    pub handler: Handler,
    pub subcommands: &'static [CommandSpec],
}

/// Key positions as (first, last, step); see [`CommandSpec::first_key`].
pub type KeySpec = (i32, i32, i32);
pub const NO_KEYS: KeySpec = (0, 0, 0);

impl CommandSpec {
    /// One table row without subcommands.
    #[expect(
        clippy::too_many_arguments,
        reason = "one argument per column of the table"
    )]
    pub const fn new(
        name: &'static str,
        arity: i32,
        flags: u32,
        keys: KeySpec,
        group: &'static str,
        since: &'static str,
        summary: &'static str,
        handler: Handler,
    ) -> CommandSpec {
        CommandSpec {
            name,
            arity,
            flags,
            first_key: keys.0,
            last_key: keys.1,
            step: keys.2,
            group,
            since,
            summary,
            handler,
            subcommands: &[],
        }
    }

    /// "get", or "config|get" for a subcommand of `parent` (the name COMMAND, INFO,
    /// CLIENT LIST and error messages use).
    pub fn full_name(&self, parent: Option<&CommandSpec>) -> String {
        match parent {
            Some(parent) => format!("{}|{}", parent.name, self.name),
            None => self.name.to_string(),
        }
    }

    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        let arity = i64::from(self.arity);
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }

    pub fn flag_names(&self) -> Vec<&'static str> {
        FLAG_NAMES
            .iter()
            .filter(|(flag, _)| self.has(*flag))
            .map(|(_, name)| *name)
            .collect()
    }

    /// Positions of the key arguments in `args` (args[0] is the command name).
    pub fn key_positions(&self, argc: usize) -> Vec<usize> {
        if self.first_key <= 0 || argc == 0 {
            return Vec::new();
        }
        let first = self.first_key as usize;
        let last = if self.last_key < 0 {
            argc as i64 + i64::from(self.last_key)
        } else {
            i64::from(self.last_key)
        };
        let step = self.step.max(1) as usize;
        let last = last.min(argc as i64 - 1);
        if last < first as i64 {
            return Vec::new();
        }
        (first..=last as usize).step_by(step).collect()
    }

    pub fn subcommand(&self, name: &[u8]) -> Option<&'static CommandSpec> {
        self.subcommands
            .iter()
            .find(|sub| sub.name.as_bytes().eq_ignore_ascii_case(name))
    }
}

/// Every top-level command, by lower-case name.
static TABLE: LazyLock<HashMap<&'static str, &'static CommandSpec, RandomState>> =
    LazyLock::new(|| {
        let mut table = HashMap::default();
        for family in super::FAMILIES {
            for spec in family.iter() {
                assert!(
                    table.insert(spec.name, spec).is_none(),
                    "command {} registered twice",
                    spec.name
                );
                assert_eq!(spec.name, spec.name.to_ascii_lowercase());
            }
        }
        table
    });

/// Looks a command up by name, case-insensitively, without allocating for short names.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    let mut buffer = [0u8; 32];
    let lower: &[u8] = if name.len() <= buffer.len() {
        for (slot, byte) in buffer.iter_mut().zip(name) {
            *slot = byte.to_ascii_lowercase();
        }
        &buffer[..name.len()]
    } else {
        return None;
    };
    let lower = std::str::from_utf8(lower).ok()?;
    TABLE.get(lower).copied()
}

pub fn all() -> impl Iterator<Item = &'static CommandSpec> {
    TABLE.values().copied()
}

pub fn count() -> usize {
    TABLE.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        // Every command DESIGN.md section 5 promises is in the table.
        let promised = "auth hello ping echo select quit reset client get set setnx setex psetex \
            getset getdel getex mget mset msetnx incr decr incrby decrby incrbyfloat append strlen \
            getrange setrange setbit getbit bitcount bitpos bitop lcs del unlink exists type expire \
            pexpire expireat pexpireat ttl pttl expiretime pexpiretime persist keys scan randomkey \
            rename renamenx touch copy move dbsize multi exec discard watch unwatch info config \
            flushdb flushall save bgsave lastsave time shutdown slowlog memory debug command object";
        for name in promised.split_whitespace() {
            assert!(lookup(name.as_bytes()).is_some(), "{name} is missing");
        }
        assert_eq!(count(), all().count());
        for spec in all() {
            assert!(spec.arity != 0, "{} has arity 0", spec.name);
            assert!(!spec.summary.is_empty(), "{} lacks a summary", spec.name);
            if spec.first_key > 0 {
                assert!(spec.step > 0, "{} has keys but no step", spec.name);
            }
            for sub in spec.subcommands {
                assert!(sub.arity != 0, "{}|{} has arity 0", spec.name, sub.name);
            }
        }
        assert!(lookup(b"GeT").is_some());
        assert!(lookup(b"nosuchcommand").is_none());
    }

    #[test]
    fn key_positions_follow_first_last_step() {
        let mset = lookup(b"mset").unwrap();
        assert_eq!(mset.key_positions(5), vec![1, 3]);
        let del = lookup(b"del").unwrap();
        assert_eq!(del.key_positions(4), vec![1, 2, 3]);
        let get = lookup(b"get").unwrap();
        assert_eq!(get.key_positions(2), vec![1]);
        let ping = lookup(b"ping").unwrap();
        assert!(ping.key_positions(1).is_empty());
    }
}
