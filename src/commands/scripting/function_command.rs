//! FUNCTION LOAD / DELETE / LIST / FLUSH / DUMP / RESTORE / STATS / KILL / HELP, FCALL and
//! FCALL_RO, with Redis's replies and error texts.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::command::{keys_and_argv, script_command, scripting_subcommand};
use super::functions::{self, compile_library, Library};
use super::shebang::flag_list;
use super::{run, Invocation, Target};
use crate::commands::args::{self, is};
use crate::commands::table::{acl, CommandSpec, DENYOOM, NO_KEYS, READONLY, STALE, WRITE};
use crate::commands::{help_reply, CommandError, CommandResult, Ctx};
use crate::engine::glob::glob_match;
use crate::protocol::Reply;

const GROUP: &str = "scripting";

pub const COMMANDS: &[CommandSpec] = &[
    script_command("fcall", 0, "7.0.0", "Invokes a function.", fcall),
    script_command(
        "fcall_ro",
        READONLY,
        "7.0.0",
        "Invokes a read-only function.",
        fcall_ro,
    ),
    CommandSpec::new(
        "function",
        -2,
        0,
        acl::SCRIPTING,
        NO_KEYS,
        GROUP,
        "7.0.0",
        "A container for function commands.",
        function_help,
    )
    .with_subcommands(&[
        scripting_subcommand(
            "delete",
            3,
            WRITE,
            "7.0.0",
            "Deletes a library and its functions.",
            function_delete,
        ),
        scripting_subcommand(
            "dump",
            2,
            0,
            "7.0.0",
            "Dumps all libraries into a serialized binary payload.",
            function_dump,
        ),
        scripting_subcommand(
            "flush",
            -2,
            WRITE,
            "7.0.0",
            "Deletes all libraries and functions.",
            function_flush,
        ),
        scripting_subcommand(
            "help",
            2,
            STALE,
            "7.0.0",
            "Returns helpful text about the different subcommands.",
            function_help,
        ),
        scripting_subcommand(
            "kill",
            2,
            0,
            "7.0.0",
            "Terminates a function during execution.",
            function_kill,
        ),
        scripting_subcommand(
            "list",
            -2,
            0,
            "7.0.0",
            "Returns information about all libraries.",
            function_list,
        ),
        scripting_subcommand(
            "load",
            -3,
            WRITE | DENYOOM,
            "7.0.0",
            "Creates a library.",
            function_load,
        ),
        scripting_subcommand(
            "restore",
            -3,
            WRITE | DENYOOM,
            "7.0.0",
            "Restores all libraries from a payload.",
            function_restore,
        ),
        scripting_subcommand(
            "stats",
            2,
            0,
            "7.0.0",
            "Returns information about a function during execution.",
            function_stats,
        ),
    ]),
];

fn fcall_generic(ctx: &mut Ctx<'_, '_>, args: &[Bytes], ro_command: bool) -> CommandResult {
    let (keys, argv) = keys_and_argv(args)?;
    let name = args::text(&args[1]);
    let flags = ctx
        .shared
        .scripts
        .functions
        .snapshot()
        .flags_of(&name)
        .ok_or_else(|| CommandError::err("Function not found"))?;
    let read_only = super::read_only(Some(flags), ro_command)?;
    run(
        ctx,
        Invocation {
            target: Target::Function { name },
            keys,
            argv,
            read_only,
            command: args,
        },
    )
}

fn fcall(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    fcall_generic(ctx, args, false)
}

fn fcall_ro(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    fcall_generic(ctx, args, true)
}

fn change(
    ctx: &Ctx<'_, '_>,
    edit: impl FnOnce(&functions::Libraries) -> Result<BTreeMap<String, Library>, String>,
) -> Result<(), CommandError> {
    ctx.shared
        .scripts
        .functions
        .change(&ctx.shared.engine, edit)
        .map_err(CommandError::err)
}

/// FUNCTION LOAD [REPLACE] code: compiles and runs the library in a VM of its own (so a
/// failure leaves nothing behind), then saves and publishes it; answers its name.
fn function_load(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let mut replace = false;
    for option in &args[2..args.len() - 1] {
        if !is(option, "replace") {
            return Err(CommandError::err(format!(
                "Unknown option given: {}",
                args::text(option)
            )));
        }
        replace = true;
    }
    // Changes to the libraries are saved (a synced disk write).
    ctx.off_async_workers()?;
    let code = args[args.len() - 1].clone();
    let name = super::shebang::library_name(&code).map_err(CommandError::err)?;
    if !replace
        && ctx
            .shared
            .scripts
            .functions
            .snapshot()
            .by_name()
            .contains_key(&name)
    {
        return Err(CommandError::err(format!(
            "Library '{name}' already exists"
        )));
    }
    let library = compile_library(&code).map_err(CommandError::err)?;
    change(ctx, |current| {
        if !replace && current.by_name().contains_key(&name) {
            return Err(format!("Library '{name}' already exists"));
        }
        let mut by_name = current.by_name().clone();
        by_name.insert(name.clone(), library);
        Ok(by_name)
    })?;
    Ok(Reply::bulk(name))
}

fn function_delete(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    // Changes to the libraries are saved (a synced disk write).
    ctx.off_async_workers()?;
    let name = args::text(&args[2]);
    change(ctx, |current| {
        let mut by_name = current.by_name().clone();
        by_name
            .remove(&name)
            .ok_or_else(|| "Library not found".to_string())?;
        Ok(by_name)
    })?;
    Ok(Reply::ok())
}

fn function_flush(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    match args.get(2) {
        None => {}
        Some(mode) if args.len() == 3 && (is(mode, "sync") || is(mode, "async")) => {}
        Some(_) => {
            return Err(CommandError::err(
                "FUNCTION FLUSH only supports SYNC|ASYNC option",
            ))
        }
    }
    // Changes to the libraries are saved (a synced disk write).
    ctx.off_async_workers()?;
    change(ctx, |_| Ok(BTreeMap::new()))?;
    Ok(Reply::ok())
}

fn function_dump(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    let libraries = ctx.shared.scripts.functions.snapshot();
    Ok(Reply::Bulk(Bytes::from(functions::dump(&libraries))))
}

/// How FUNCTION RESTORE treats the libraries already loaded.
enum RestorePolicy {
    /// Refuse if a restored library's name is taken (the default).
    Append,
    /// Drop every loaded library first.
    Flush,
    /// Restored libraries replace loaded ones of the same name.
    Replace,
}

fn function_restore(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let policy = match args.get(3) {
        None => RestorePolicy::Append,
        Some(policy) if args.len() == 4 && is(policy, "append") => RestorePolicy::Append,
        Some(policy) if args.len() == 4 && is(policy, "flush") => RestorePolicy::Flush,
        Some(policy) if args.len() == 4 && is(policy, "replace") => RestorePolicy::Replace,
        Some(_) => {
            return Err(CommandError::err(
                "Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
            ))
        }
    };
    // Changes to the libraries are saved (a synced disk write).
    ctx.off_async_workers()?;
    let codes = functions::undump(&args[2])
        .ok_or_else(|| CommandError::err("DUMP payload version or checksum are wrong"))?;
    let restored = codes
        .iter()
        .map(compile_library)
        .collect::<Result<Vec<_>, _>>()
        .map_err(CommandError::err)?;
    change(ctx, |current| {
        let mut by_name = match policy {
            RestorePolicy::Flush => BTreeMap::new(),
            RestorePolicy::Append | RestorePolicy::Replace => current.by_name().clone(),
        };
        for library in restored {
            if matches!(policy, RestorePolicy::Append) && by_name.contains_key(&library.name) {
                return Err(format!("Library {} already exists", library.name));
            }
            by_name.insert(library.name.clone(), library);
        }
        Ok(by_name)
    })?;
    Ok(Reply::ok())
}

/// FUNCTION LIST [LIBRARYNAME pattern] [WITHCODE].
fn function_list(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let mut with_code = false;
    let mut pattern: Option<&Bytes> = None;
    let mut rest = args[2..].iter();
    while let Some(option) = rest.next() {
        if is(option, "withcode") {
            with_code = true;
        } else if is(option, "libraryname") {
            if pattern.is_some() {
                return Err(CommandError::err("library name can be given once"));
            }
            pattern = Some(
                rest.next()
                    .ok_or_else(|| CommandError::err("library name argument was not given"))?,
            );
        } else {
            return Err(CommandError::err(format!(
                "Unknown argument {}",
                args::text(option)
            )));
        }
    }
    let libraries = ctx.shared.scripts.functions.snapshot();
    let text = |s: &str| Reply::bulk(s.to_string());
    let listed = libraries
        .by_name()
        .values()
        .filter(|library| {
            pattern.is_none_or(|pattern| glob_match(pattern, library.name.as_bytes()))
        })
        .map(|library| {
            let functions = library
                .functions
                .iter()
                .map(|function| {
                    Reply::Map(vec![
                        (text("name"), text(&function.name)),
                        (
                            text("description"),
                            function.description.as_deref().map_or(Reply::Nil, text),
                        ),
                        (
                            text("flags"),
                            Reply::Set(
                                flag_list(function.flags)
                                    .map(|flag| Reply::Simple(flag.to_string()))
                                    .collect(),
                            ),
                        ),
                    ])
                })
                .collect();
            let mut fields = vec![
                (text("library_name"), text(&library.name)),
                (text("engine"), text("LUA")),
                (text("functions"), Reply::Array(functions)),
            ];
            if with_code {
                fields.push((text("library_code"), Reply::Bulk(library.code.clone())));
            }
            Reply::Map(fields)
        })
        .collect();
    Ok(Reply::Array(listed))
}

fn function_stats(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    let text = |s: &str| Reply::bulk(s.to_string());
    let running = match ctx.shared.scripts.running() {
        None => Reply::Nil,
        Some((name, command, millis)) => Reply::Map(vec![
            (text("name"), Reply::bulk(name)),
            (
                text("command"),
                Reply::Array(command.into_iter().map(Reply::Bulk).collect()),
            ),
            (text("duration_ms"), Reply::Integer(millis as i64)),
        ]),
    };
    let libraries = ctx.shared.scripts.functions.snapshot();
    let lua = Reply::Map(vec![
        (
            text("libraries_count"),
            Reply::Integer(libraries.by_name().len() as i64),
        ),
        (
            text("functions_count"),
            Reply::Integer(libraries.function_count() as i64),
        ),
    ]);
    Ok(Reply::Map(vec![
        (text("running_script"), running),
        (text("engines"), Reply::Map(vec![(text("LUA"), lua)])),
    ]))
}

fn function_kill(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    ctx.shared.scripts.kill(true)?;
    Ok(Reply::ok())
}

fn function_help(_ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    let lines = [
        "LOAD [REPLACE] <FUNCTION CODE>",
        "    Create a new library with the given library name and code.",
        "DELETE <LIBRARY NAME>",
        "    Delete the given library.",
        "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
        "    Return general information on all the libraries:",
        "    * Library name",
        "    * The engine used to run the Library",
        "    * Library description",
        "    * Functions list",
        "    * Library code (if WITHCODE is given)",
        "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
        "STATS",
        "    Return information about the current function running:",
        "    * Function name",
        "    * Command used to run the function",
        "    * Duration in MS that the function is running",
        "    If no function is running, return nil",
        "    In addition, returns a list of available engines.",
        "KILL",
        "    Kill the current running function.",
        "FLUSH [ASYNC|SYNC]",
        "    Delete all the libraries.",
        "    When called without the optional mode argument, the behavior is determined by the",
        "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
        "    * ASYNC: Asynchronously flush the libraries.",
        "    * SYNC: Synchronously flush the libraries.",
        "DUMP",
        "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
        "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
        "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
        "    control how to handle existing libraries (default APPEND):",
        "    * FLUSH: delete all existing libraries.",
        "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
        "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
        "      libraries with the new libraries (notice that even on this option there is a chance of failure",
        "      in case of functions name collision with another library).",
    ];
    Ok(help_reply("FUNCTION", &lines))
}
