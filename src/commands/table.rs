//! The command table as data (CONVENTIONS 1): one `CommandSpec` per command with its
//! arity, flags, ACL categories, key specs (each key's role, as Redis 7's command JSON
//! declares them) and summary, written as one `CommandSpec::new` row in every family.
//! COMMAND / COMMAND INFO / DOCS / LIST, the arity and auth checks, MULTI queueing, shard
//! locking and (later) ACL rules and cluster routing all read this one table; the tests at
//! the end check that its rows agree with each other.

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

/// ACL categories (Redis's `@name`s). A row declares those its flags do not imply, as
/// Redis's command JSON does; [`CommandSpec::acl_categories`] adds the implied ones.
pub mod acl {
    pub const NONE: u64 = 0;
    pub const KEYSPACE: u64 = 1 << 0;
    pub const READ: u64 = 1 << 1;
    pub const WRITE: u64 = 1 << 2;
    pub const SET: u64 = 1 << 3;
    pub const SORTEDSET: u64 = 1 << 4;
    pub const LIST: u64 = 1 << 5;
    pub const HASH: u64 = 1 << 6;
    pub const STRING: u64 = 1 << 7;
    pub const BITMAP: u64 = 1 << 8;
    pub const HYPERLOGLOG: u64 = 1 << 9;
    pub const GEO: u64 = 1 << 10;
    pub const STREAM: u64 = 1 << 11;
    pub const PUBSUB: u64 = 1 << 12;
    pub const ADMIN: u64 = 1 << 13;
    pub const FAST: u64 = 1 << 14;
    pub const SLOW: u64 = 1 << 15;
    pub const BLOCKING: u64 = 1 << 16;
    pub const DANGEROUS: u64 = 1 << 17;
    pub const CONNECTION: u64 = 1 << 18;
    pub const TRANSACTION: u64 = 1 << 19;
    pub const SCRIPTING: u64 = 1 << 20;

    /// Every category with its name, in the order Redis lists them.
    pub const NAMES: &[(u64, &str)] = &[
        (KEYSPACE, "@keyspace"),
        (READ, "@read"),
        (WRITE, "@write"),
        (SET, "@set"),
        (SORTEDSET, "@sortedset"),
        (LIST, "@list"),
        (HASH, "@hash"),
        (STRING, "@string"),
        (BITMAP, "@bitmap"),
        (HYPERLOGLOG, "@hyperloglog"),
        (GEO, "@geo"),
        (STREAM, "@stream"),
        (PUBSUB, "@pubsub"),
        (ADMIN, "@admin"),
        (FAST, "@fast"),
        (SLOW, "@slow"),
        (BLOCKING, "@blocking"),
        (DANGEROUS, "@dangerous"),
        (CONNECTION, "@connection"),
        (TRANSACTION, "@transaction"),
        (SCRIPTING, "@scripting"),
    ];
}

/// What a command does with a key (Redis 7's key-spec flags): one of RO / RW / OW / RM,
/// refined by ACCESS / UPDATE / INSERT / DELETE.
pub mod key {
    /// Read only: reads the value, never changes it.
    pub const RO: u16 = 1 << 0;
    /// Read-write: reads and changes the value.
    pub const RW: u16 = 1 << 1;
    /// Overwrite: writes without reading the old value.
    pub const OW: u16 = 1 << 2;
    /// Remove: deletes the key.
    pub const RM: u16 = 1 << 3;
    /// The value (or part of it) reaches the client.
    pub const ACCESS: u16 = 1 << 4;
    /// Changes an existing value (or its metadata, such as the TTL).
    pub const UPDATE: u16 = 1 << 5;
    /// Adds data, never changes or removes what is there.
    pub const INSERT: u16 = 1 << 6;
    /// Removes data from the value or the key.
    pub const DELETE: u16 = 1 << 7;
    /// The flags depend on the arguments (SET with and without GET).
    pub const VARIABLE_FLAGS: u16 = 1 << 8;

    /// Every flag with the name COMMAND INFO shows, in Redis's order.
    pub const NAMES: &[(u16, &str)] = &[
        (RO, "RO"),
        (RW, "RW"),
        (OW, "OW"),
        (RM, "RM"),
        (ACCESS, "access"),
        (UPDATE, "update"),
        (INSERT, "insert"),
        (DELETE, "delete"),
        (VARIABLE_FLAGS, "variable_flags"),
    ];

    /// The roles that change the key.
    pub const WRITES: u16 = RW | OW | RM;
}

/// Where a command's keys are and what it does with them (a Redis 7 key spec with an
/// index `begin_search` and a range `find_keys`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySpec {
    pub flags: u16,
    /// Position of the first key (args[0] is the command name).
    pub index: i32,
    /// The last key, relative to `index`; negative counts from the end of the arguments.
    pub last: i32,
    /// Distance between keys.
    pub step: i32,
}

impl KeySpec {
    /// One key at `index`.
    pub const fn at(flags: u16, index: i32) -> KeySpec {
        KeySpec::range(flags, index, 0, 1)
    }

    /// Keys from `index` to `last` (relative to `index`, or from the end if negative),
    /// every `step`.
    pub const fn range(flags: u16, index: i32, last: i32, step: i32) -> KeySpec {
        KeySpec {
            flags,
            index,
            last,
            step,
        }
    }

    /// The positions in `argc` arguments this spec selects.
    pub fn positions(&self, argc: usize) -> Vec<usize> {
        let argc = argc as i64;
        let first = i64::from(self.index);
        let last = if self.last < 0 {
            argc + i64::from(self.last)
        } else {
            first + i64::from(self.last)
        };
        let last = last.min(argc - 1);
        if first >= argc || last < first {
            return Vec::new();
        }
        (first..=last)
            .step_by(self.step.max(1) as usize)
            .map(|position| position as usize)
            .collect()
    }
}

pub const NO_KEYS: &[KeySpec] = &[];

/// Redis's legacy (first, last, step) key range covering `keys`, as COMMAND INFO shows it
/// and the dispatcher locks by: from the first spec's start to the furthest end.
const fn legacy_key_range(keys: &[KeySpec]) -> (i32, i32, i32) {
    if keys.is_empty() {
        return (0, 0, 0);
    }
    let (mut first, mut last, mut open_ended) = (i32::MAX, 0, 0);
    let mut index = 0;
    while index < keys.len() {
        let spec = keys[index];
        if spec.index < first {
            first = spec.index;
        }
        if spec.last < 0 {
            open_ended = spec.last;
        } else if spec.index + spec.last > last {
            last = spec.index + spec.last;
        }
        index += 1;
    }
    if open_ended < 0 {
        last = open_ended;
    }
    (first, last, keys[0].step)
}

pub struct CommandSpec {
    /// Lower case; subcommands use only their own name ("get" for CONFIG GET).
    pub name: &'static str,
    /// Argument count including the name; negative = at least that many.
    pub arity: i32,
    pub flags: u32,
    /// The ACL categories the flags do not imply (see [`acl`]).
    pub acl: u64,
    pub keys: &'static [KeySpec],
    /// Derived from `keys`: first key position (0 = no keys), last (negative counts from
    /// the end), step.
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    pub group: &'static str,
    pub since: &'static str,
    pub summary: &'static str,
    pub handler: Handler,
    pub subcommands: &'static [CommandSpec],
}

impl CommandSpec {
    /// One table row; a container adds its subcommands with [`Self::with_subcommands`].
    #[expect(
        clippy::too_many_arguments,
        reason = "one argument per column of the table"
    )]
    pub const fn new(
        name: &'static str,
        arity: i32,
        flags: u32,
        acl: u64,
        keys: &'static [KeySpec],
        group: &'static str,
        since: &'static str,
        summary: &'static str,
        handler: Handler,
    ) -> CommandSpec {
        let (first_key, last_key, step) = legacy_key_range(keys);
        CommandSpec {
            name,
            arity,
            flags,
            acl,
            keys,
            first_key,
            last_key,
            step,
            group,
            since,
            summary,
            handler,
            subcommands: &[],
        }
    }

    pub const fn with_subcommands(self, subcommands: &'static [CommandSpec]) -> CommandSpec {
        CommandSpec {
            subcommands,
            ..self
        }
    }

    /// Every ACL category: the row's own plus those its flags imply, as Redis's
    /// `setImplicitACLCategories` adds them (a command that is not @fast is @slow).
    pub fn acl_categories(&self) -> u64 {
        let mut categories = self.acl;
        if self.has(WRITE) {
            categories |= acl::WRITE;
        }
        if self.has(READONLY) && categories & acl::SCRIPTING == 0 {
            categories |= acl::READ;
        }
        if self.has(ADMIN) {
            categories |= acl::ADMIN | acl::DANGEROUS;
        }
        if self.has(FAST) {
            categories |= acl::FAST;
        }
        if categories & acl::FAST == 0 {
            categories |= acl::SLOW;
        }
        categories
    }

    /// [`Self::acl_categories`] by name, in Redis's order.
    pub fn acl_category_names(&self) -> Vec<&'static str> {
        let categories = self.acl_categories();
        acl::NAMES
            .iter()
            .filter(|(category, _)| categories & category != 0)
            .map(|(_, name)| *name)
            .collect()
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
        match self.key_range(argc) {
            Some((first, last, step)) => (first..=last).step_by(step).collect(),
            None => Vec::new(),
        }
    }

    /// How many keys the command names with `argc` arguments (no allocation: asked for
    /// every command, to decide whether it needs a transaction).
    pub fn key_count(&self, argc: usize) -> usize {
        self.key_range(argc)
            .map_or(0, |(first, last, step)| (last - first) / step + 1)
    }

    /// The key positions as (first, last, step), or None when there are none.
    fn key_range(&self, argc: usize) -> Option<(usize, usize, usize)> {
        if self.first_key <= 0 || argc == 0 {
            return None;
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
            return None;
        }
        Some((first, last as usize, step))
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

    /// Every command and subcommand, with its container.
    fn every_spec() -> Vec<(&'static CommandSpec, Option<&'static CommandSpec>)> {
        all()
            .flat_map(|spec| {
                std::iter::once((spec, None))
                    .chain(spec.subcommands.iter().map(move |sub| (sub, Some(spec))))
            })
            .collect()
    }

    #[test]
    fn names_are_lower_case_and_unique() {
        for spec in all() {
            let mut names: Vec<&str> = spec.subcommands.iter().map(|sub| sub.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), spec.subcommands.len(), "{}", spec.name);
        }
        for (spec, _) in every_spec() {
            assert_eq!(spec.name, spec.name.to_ascii_lowercase());
        }
    }

    #[test]
    fn key_roles_agree_with_flags() {
        let roles = key::RO | key::RW | key::OW | key::RM;
        for (spec, parent) in every_spec() {
            let name = spec.full_name(parent);
            for key_spec in spec.keys {
                assert_eq!((key_spec.flags & roles).count_ones(), 1, "{name}: one role");
                assert!(key_spec.index > 0 && key_spec.step > 0, "{name}");
            }
            let writes_a_key = spec.keys.iter().any(|k| k.flags & key::WRITES != 0);
            if spec.has(WRITE) {
                // Keyless writes (FLUSHALL) change every key at once.
                assert!(writes_a_key || spec.keys.is_empty(), "{name} writes no key");
            } else {
                assert!(!writes_a_key, "{name} writes a key without the write flag");
            }
        }
    }

    #[test]
    fn acl_categories_agree_with_flags() {
        let implied = acl::READ | acl::WRITE | acl::FAST | acl::SLOW;
        for (spec, parent) in every_spec() {
            let name = spec.full_name(parent);
            assert_eq!(
                spec.acl & implied,
                0,
                "{name} declares what its flags imply"
            );
            let categories = spec.acl_categories();
            let has = |category: u64| categories & category != 0;
            assert_eq!(has(acl::WRITE), spec.has(WRITE), "{name} @write");
            // Redis leaves read-only scripts (EVAL_RO) out of @read: what they read is
            // up to the script.
            let reads = spec.has(READONLY) && spec.acl & acl::SCRIPTING == 0;
            assert_eq!(has(acl::READ), reads, "{name} @read");
            assert_eq!(has(acl::FAST), spec.has(FAST), "{name} @fast");
            assert_ne!(has(acl::FAST), has(acl::SLOW), "{name} @fast xor @slow");
            if spec.has(ADMIN) {
                assert!(has(acl::ADMIN) && has(acl::DANGEROUS), "{name} @admin");
            }
        }
    }

    #[test]
    fn key_positions_agree_with_key_specs() {
        for (spec, parent) in every_spec() {
            let shortest = spec.arity.unsigned_abs() as usize;
            for argc in shortest..shortest + 6 {
                let mut from_specs: Vec<usize> = spec
                    .keys
                    .iter()
                    .flat_map(|key_spec| key_spec.positions(argc))
                    .collect();
                from_specs.sort_unstable();
                from_specs.dedup();
                assert_eq!(
                    spec.key_positions(argc),
                    from_specs,
                    "{} with {argc} arguments",
                    spec.full_name(parent)
                );
                assert_eq!(
                    spec.key_count(argc),
                    from_specs.len(),
                    "key count of {} with {argc} arguments",
                    spec.full_name(parent)
                );
            }
        }
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
