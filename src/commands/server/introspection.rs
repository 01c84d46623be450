//! COMMAND and its subcommands (COUNT, INFO, DOCS, LIST, GETKEYS): answered from the
//! command table alone, in Redis 7's reply shapes, so what clients learn about a command
//! is what the dispatcher enforces.

use bytes::Bytes;

use crate::commands::args::{self, is};
use crate::commands::table::{self, key, CommandSpec, KeySpec};
use crate::commands::{help_reply, CommandError, CommandResult, Ctx};
use crate::engine::glob::glob_match;
use crate::protocol::Reply;

const COMMAND_HELP: &[&str] = &[
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full Redis command.",
];

pub(super) fn command_help(_ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    Ok(help_reply("COMMAND", COMMAND_HELP))
}

/// Top-level commands by name, so replies do not depend on hash order.
fn sorted_commands() -> Vec<&'static CommandSpec> {
    let mut specs: Vec<_> = table::all().collect();
    specs.sort_by_key(|spec| spec.name);
    specs
}

/// A command by the name COMMAND INFO / DOCS accept: "get" or "config|get".
fn find_command(name: &[u8]) -> Option<(&'static CommandSpec, Option<&'static CommandSpec>)> {
    match name.iter().position(|byte| *byte == b'|') {
        None => table::lookup(name).map(|spec| (spec, None)),
        Some(bar) => {
            let parent = table::lookup(&name[..bar])?;
            let spec = parent.subcommand(&name[bar + 1..])?;
            Some((spec, Some(parent)))
        }
    }
}

fn simple_set(items: Vec<&'static str>) -> Reply {
    Reply::Set(
        items
            .into_iter()
            .map(|item| Reply::Simple(item.into()))
            .collect(),
    )
}

/// One COMMAND INFO entry, shaped as Redis 7's: name, arity, flags, first key, last key,
/// step, ACL categories, tips, key specifications, subcommands. The table has no tips.
fn info_entry(spec: &CommandSpec, parent: Option<&CommandSpec>) -> Reply {
    let subcommands = if spec.subcommands.is_empty() {
        Reply::Set(Vec::new())
    } else {
        Reply::Array(
            spec.subcommands
                .iter()
                .map(|sub| info_entry(sub, Some(spec)))
                .collect(),
        )
    };
    Reply::Array(vec![
        Reply::bulk(spec.full_name(parent)),
        Reply::Integer(i64::from(spec.arity)),
        simple_set(spec.flag_names()),
        Reply::Integer(i64::from(spec.first_key)),
        Reply::Integer(i64::from(spec.last_key)),
        Reply::Integer(i64::from(spec.step)),
        simple_set(spec.acl_category_names()),
        Reply::Set(Vec::new()),
        Reply::Set(spec.keys.iter().map(key_spec_entry).collect()),
        subcommands,
    ])
}

/// One key specification as Redis 7 shows it: flags, an index `begin_search` and a range
/// `find_keys`.
fn key_spec_entry(spec: &KeySpec) -> Reply {
    let map = |fields: Vec<(&str, Reply)>| {
        Reply::Map(
            fields
                .into_iter()
                .map(|(name, value)| (Reply::bulk(name.to_string()), value))
                .collect(),
        )
    };
    let flags = key::NAMES
        .iter()
        .filter(|(flag, _)| spec.flags & flag != 0)
        .map(|(_, name)| *name)
        .collect();
    map(vec![
        ("flags", simple_set(flags)),
        (
            "begin_search",
            map(vec![
                ("type", Reply::bulk("index")),
                (
                    "spec",
                    map(vec![("index", Reply::Integer(i64::from(spec.index)))]),
                ),
            ]),
        ),
        (
            "find_keys",
            map(vec![
                ("type", Reply::bulk("range")),
                (
                    "spec",
                    map(vec![
                        ("lastkey", Reply::Integer(i64::from(spec.last))),
                        ("keystep", Reply::Integer(i64::from(spec.step))),
                        ("limit", Reply::Integer(0)),
                    ]),
                ),
            ]),
        ),
    ])
}

/// One COMMAND DOCS entry: summary, since, group and, for containers, the subcommands'.
fn docs_entry(spec: &CommandSpec) -> Reply {
    let mut fields = vec![
        (Reply::bulk("summary"), Reply::bulk(spec.summary)),
        (Reply::bulk("since"), Reply::bulk(spec.since)),
        (Reply::bulk("group"), Reply::bulk(spec.group)),
    ];
    if !spec.subcommands.is_empty() {
        let subcommands = spec
            .subcommands
            .iter()
            .map(|sub| (Reply::bulk(sub.full_name(Some(spec))), docs_entry(sub)))
            .collect();
        fields.push((Reply::bulk("subcommands"), Reply::Map(subcommands)));
    }
    Reply::Map(fields)
}

pub(super) fn command_all(_ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    Ok(Reply::Array(
        sorted_commands()
            .into_iter()
            .map(|spec| info_entry(spec, None))
            .collect(),
    ))
}

pub(super) fn command_count(_ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    Ok(Reply::Integer(
        i64::try_from(table::count()).unwrap_or(i64::MAX),
    ))
}

/// COMMAND INFO [name ...]: all commands without names; nil for an unknown name.
pub(super) fn command_info(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    if args.len() == 2 {
        return command_all(ctx, args);
    }
    Ok(Reply::Array(
        args[2..]
            .iter()
            .map(|name| match find_command(name) {
                Some((spec, parent)) => info_entry(spec, parent),
                None => Reply::Nil,
            })
            .collect(),
    ))
}

/// COMMAND DOCS [name ...]: all commands without names; unknown names are left out.
pub(super) fn command_docs(_ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let docs = if args.len() == 2 {
        sorted_commands()
            .into_iter()
            .map(|spec| (Reply::bulk(spec.name), docs_entry(spec)))
            .collect()
    } else {
        args[2..]
            .iter()
            .filter_map(|name| {
                let (spec, parent) = find_command(name)?;
                Some((Reply::bulk(spec.full_name(parent)), docs_entry(spec)))
            })
            .collect()
    };
    Ok(Reply::Map(docs))
}

/// COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN pattern]: every command
/// and subcommand name.
pub(super) fn command_list(_ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    enum Filter {
        All,
        Module,
        AclCategory(String),
        Pattern(Vec<u8>),
    }
    let filter = match &args[2..] {
        [] => Filter::All,
        [keyword, kind, value] if is(keyword, "filterby") => {
            if is(kind, "module") {
                Filter::Module
            } else if is(kind, "aclcat") {
                Filter::AclCategory(format!("@{}", args::text(value).to_ascii_lowercase()))
            } else if is(kind, "pattern") {
                Filter::Pattern(value.to_ascii_lowercase())
            } else {
                return Err(CommandError::syntax());
            }
        }
        _ => return Err(CommandError::syntax()),
    };
    let keep = |spec: &CommandSpec, name: &str| match &filter {
        Filter::All => true,
        // There are no modules.
        Filter::Module => false,
        Filter::AclCategory(category) => spec.acl_category_names().contains(&category.as_str()),
        Filter::Pattern(pattern) => glob_match(pattern, name.as_bytes()),
    };
    let mut names = Vec::new();
    for spec in sorted_commands() {
        let commands = std::iter::once((spec, None))
            .chain(spec.subcommands.iter().map(|sub| (sub, Some(spec))));
        for (command, parent) in commands {
            let name = command.full_name(parent);
            if keep(command, &name) {
                names.push(Reply::bulk(name));
            }
        }
    }
    Ok(Reply::Array(names))
}

/// COMMAND GETKEYS command [arg ...]: the key arguments, by the table's key positions.
pub(super) fn command_getkeys(_ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let inner = &args[2..];
    let invalid = || CommandError::err("Invalid command specified");
    let mut spec = table::lookup(&inner[0]).ok_or_else(invalid)?;
    if !spec.subcommands.is_empty() && inner.len() >= 2 {
        spec = spec.subcommand(&inner[1]).ok_or_else(invalid)?;
    }
    if !spec.arity_ok(inner.len()) {
        return Err(CommandError::err(
            "Invalid number of arguments specified for command",
        ));
    }
    let positions = spec.key_positions(inner.len());
    if positions.is_empty() {
        return Err(CommandError::err("The command has no key arguments"));
    }
    Ok(Reply::Array(
        positions
            .into_iter()
            .map(|position| Reply::Bulk(inner[position].clone()))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command_spec(name: &str) -> &'static CommandSpec {
        table::lookup(name.as_bytes()).unwrap()
    }

    fn simple(items: &[&str]) -> Reply {
        Reply::Set(
            items
                .iter()
                .map(|item| Reply::Simple(item.to_string()))
                .collect(),
        )
    }

    #[test]
    fn command_info_entries_have_redis_7_shape() {
        let Reply::Array(entry) = info_entry(command_spec("config"), None) else {
            panic!()
        };
        assert_eq!(entry.len(), 10);
        assert_eq!(entry[0], Reply::bulk("config"));
        assert_eq!(entry[1], Reply::Integer(-2));
        assert_eq!(entry[2], simple(&[]));
        assert_eq!(
            entry[3..6],
            [Reply::Integer(0), Reply::Integer(0), Reply::Integer(0)]
        );
        assert_eq!(entry[6], simple(&["@slow"]));
        assert_eq!(entry[7], Reply::Set(vec![]));
        assert_eq!(entry[8], Reply::Set(vec![]));
        let Reply::Array(subcommands) = &entry[9] else {
            panic!("{:?}", entry[9])
        };
        assert_eq!(subcommands.len(), 5);
        let get = subcommands
            .iter()
            .find(
                |sub| matches!(sub, Reply::Array(fields) if fields[0] == Reply::bulk("config|get")),
            )
            .unwrap();
        let Reply::Array(get) = get else { panic!() };
        assert_eq!(get[1], Reply::Integer(-3));
        assert_eq!(get[2], simple(&["admin", "noscript", "loading", "stale"]));
        assert_eq!(get[6], simple(&["@admin", "@slow", "@dangerous"]));
        assert_eq!(get[9], Reply::Set(vec![]));

        let (usage, parent) = find_command(b"MEMORY|usage").unwrap();
        let Reply::Array(usage) = info_entry(usage, parent) else {
            panic!()
        };
        assert_eq!(usage[0], Reply::bulk("memory|usage"));
        assert_eq!(
            usage[3..6],
            [Reply::Integer(2), Reply::Integer(2), Reply::Integer(1)]
        );
        assert_eq!(usage[6], simple(&["@read", "@slow"]));
        assert!(find_command(b"config|nosuch").is_none());
        assert!(find_command(b"nosuch").is_none());
    }

    #[test]
    fn command_info_and_docs_answer_from_the_table() {
        for spec in table::all() {
            let entries = std::iter::once((spec, None))
                .chain(spec.subcommands.iter().map(|sub| (sub, Some(spec))));
            for (command, parent) in entries {
                let Reply::Array(info) = info_entry(command, parent) else {
                    panic!()
                };
                assert_eq!(info[0], Reply::bulk(command.full_name(parent)));
                assert_eq!(info[1], Reply::Integer(i64::from(command.arity)));
                assert_eq!(info[2], simple_set(command.flag_names()));
                assert_eq!(
                    info[3..6],
                    [
                        Reply::Integer(i64::from(command.first_key)),
                        Reply::Integer(i64::from(command.last_key)),
                        Reply::Integer(i64::from(command.step)),
                    ]
                );
                assert_eq!(info[6], simple_set(command.acl_category_names()));
                let Reply::Set(key_specs) = &info[8] else {
                    panic!()
                };
                assert_eq!(key_specs.len(), command.keys.len());
                let Reply::Map(docs) = docs_entry(command) else {
                    panic!()
                };
                assert_eq!(docs[0].1, Reply::bulk(command.summary));
                assert_eq!(docs[1].1, Reply::bulk(command.since));
                assert_eq!(docs[2].1, Reply::bulk(command.group));
            }
        }
    }

    #[test]
    fn command_docs_entries_nest_subcommands() {
        let Reply::Map(fields) = docs_entry(command_spec("slowlog")) else {
            panic!()
        };
        let keys: Vec<&Reply> = fields.iter().map(|(key, _)| key).collect();
        assert_eq!(
            keys,
            [
                &Reply::bulk("summary"),
                &Reply::bulk("since"),
                &Reply::bulk("group"),
                &Reply::bulk("subcommands")
            ]
        );
        assert_eq!(fields[1].1, Reply::bulk("2.2.12"));
        assert_eq!(fields[2].1, Reply::bulk("server"));
        let Reply::Map(subcommands) = &fields[3].1 else {
            panic!()
        };
        assert_eq!(subcommands[0].0, Reply::bulk("slowlog|get"));
        let Reply::Map(get) = &subcommands[0].1 else {
            panic!()
        };
        assert_eq!(get.len(), 3, "a leaf has no subcommands field");
    }

    #[test]
    fn acl_categories_are_redis_7s() {
        // What Redis 7.0's COMMAND INFO answers (FLUSHALL was "@write @slow" while the
        // categories were guessed from the flags).
        assert_eq!(
            command_spec("flushall").acl_category_names(),
            ["@keyspace", "@write", "@slow", "@dangerous"]
        );
        assert_eq!(command_spec("time").acl_category_names(), ["@fast"]);
        assert_eq!(
            command_spec("debug").acl_category_names(),
            ["@admin", "@slow", "@dangerous"]
        );
        assert_eq!(
            command_spec("lastsave").acl_category_names(),
            ["@admin", "@fast", "@dangerous"]
        );
        assert_eq!(
            command_spec("get").acl_category_names(),
            ["@read", "@string", "@fast"]
        );
    }

    #[test]
    fn key_specs_have_redis_7_shape() {
        let Reply::Array(entry) = info_entry(command_spec("bitop"), None) else {
            panic!()
        };
        let Reply::Set(specs) = &entry[8] else {
            panic!("{:?}", entry[8])
        };
        assert_eq!(specs.len(), 2);
        let bulk = |text: &str| Reply::bulk(text.to_string());
        let int_map = |name: &str, value: i64| (bulk(name), Reply::Integer(value));
        assert_eq!(
            specs[0],
            Reply::Map(vec![
                (bulk("flags"), simple(&["OW", "update"])),
                (
                    bulk("begin_search"),
                    Reply::Map(vec![
                        (bulk("type"), bulk("index")),
                        (bulk("spec"), Reply::Map(vec![int_map("index", 2)])),
                    ])
                ),
                (
                    bulk("find_keys"),
                    Reply::Map(vec![
                        (bulk("type"), bulk("range")),
                        (
                            bulk("spec"),
                            Reply::Map(vec![
                                int_map("lastkey", 0),
                                int_map("keystep", 1),
                                int_map("limit", 0),
                            ])
                        ),
                    ])
                ),
            ])
        );
    }
}
