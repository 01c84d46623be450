//! EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT LOAD / EXISTS / FLUSH / KILL / HELP, with
//! Redis's replies and error texts.

use bytes::Bytes;

use super::shebang::{self, EvalMode};
use super::{run, Invocation, Target};
use crate::commands::args::{self, is};
use crate::commands::table::{acl, CommandSpec, ALL_SHARDS, NOSCRIPT, NO_KEYS, READONLY, STALE};
use crate::commands::{help_reply, CommandError, CommandResult, Ctx, ErrorCode};
use crate::protocol::Reply;

const GROUP: &str = "scripting";

/// A script or function command's row (EVAL, FCALL and their forms): it holds every shard
/// (inside EXEC too), as Redis runs a script alone, and is never run from a script.
pub(super) const fn script_command(
    name: &'static str,
    flags: u32,
    since: &'static str,
    summary: &'static str,
    handler: crate::commands::table::Handler,
) -> CommandSpec {
    CommandSpec::new(
        name,
        -3,
        NOSCRIPT | STALE | ALL_SHARDS | flags,
        acl::SCRIPTING,
        NO_KEYS,
        GROUP,
        since,
        summary,
        handler,
    )
}

/// A SCRIPT or FUNCTION subcommand's row: never run from a script, no keys.
pub(super) const fn scripting_subcommand(
    name: &'static str,
    arity: i32,
    flags: u32,
    since: &'static str,
    summary: &'static str,
    handler: crate::commands::table::Handler,
) -> CommandSpec {
    CommandSpec::new(
        name,
        arity,
        NOSCRIPT | flags,
        acl::SCRIPTING,
        NO_KEYS,
        GROUP,
        since,
        summary,
        handler,
    )
}

pub const COMMANDS: &[CommandSpec] = &[
    script_command(
        "eval",
        0,
        "2.6.0",
        "Executes a server-side Lua script.",
        eval,
    ),
    script_command(
        "evalsha",
        0,
        "2.6.0",
        "Executes a server-side Lua script by SHA1 digest.",
        evalsha,
    ),
    script_command(
        "eval_ro",
        READONLY,
        "7.0.0",
        "Executes a read-only server-side Lua script.",
        eval_ro,
    ),
    script_command(
        "evalsha_ro",
        READONLY,
        "7.0.0",
        "Executes a read-only server-side Lua script by SHA1 digest.",
        evalsha_ro,
    ),
    CommandSpec::new(
        "script",
        -2,
        0,
        acl::SCRIPTING,
        NO_KEYS,
        GROUP,
        "2.6.0",
        "A container for Lua scripts management commands.",
        script_help,
    )
    .with_subcommands(&[
        scripting_subcommand(
            "exists",
            -3,
            0,
            "2.6.0",
            "Determines whether server-side Lua scripts exist in the script cache.",
            script_exists,
        ),
        scripting_subcommand(
            "flush",
            -2,
            0,
            "2.6.0",
            "Removes all server-side Lua scripts from the script cache.",
            script_flush,
        ),
        scripting_subcommand(
            "help",
            2,
            0,
            "5.0.0",
            "Returns helpful text about the different subcommands.",
            script_help,
        ),
        scripting_subcommand(
            "kill",
            2,
            0,
            "2.6.0",
            "Terminates a server-side Lua script during execution.",
            script_kill,
        ),
        scripting_subcommand(
            "load",
            3,
            STALE,
            "2.6.0",
            "Loads a server-side Lua script to the script cache.",
            script_load,
        ),
    ]),
];

/// The keys and arguments after `numkeys`, with Redis's checks.
pub(super) fn keys_and_argv(args: &[Bytes]) -> Result<(&[Bytes], &[Bytes]), CommandError> {
    let numkeys = args::int(&args[2])?;
    if numkeys < 0 {
        return Err(CommandError::err("Number of keys can't be negative"));
    }
    let rest = &args[3..];
    if numkeys as u64 > rest.len() as u64 {
        return Err(CommandError::err(
            "Number of keys can't be greater than number of args",
        ));
    }
    Ok(rest.split_at(numkeys as usize))
}

/// Where an EVAL-family command finds its script.
#[derive(Clone, Copy)]
enum Source {
    /// EVAL, EVAL_RO: the body is the argument (and joins the cache).
    Body,
    /// EVALSHA, EVALSHA_RO: the argument names a cached body.
    Sha,
}

fn eval_generic(
    ctx: &mut Ctx<'_, '_>,
    args: &[Bytes],
    source: Source,
    ro_command: bool,
) -> CommandResult {
    let (keys, argv) = keys_and_argv(args)?;
    let (sha, body) = match source {
        Source::Body => (super::sha1_hex(&args[1]), args[1].clone()),
        Source::Sha => {
            let no_script =
                || CommandError::new(ErrorCode::NoScript, "No matching script. Please use EVAL.");
            // A SHA1 is hex: anything that is not text names no script.
            let sha = std::str::from_utf8(&args[1]).map_err(|_| no_script())?;
            let body = ctx.shared.scripts.body(sha).ok_or_else(no_script)?;
            (sha.to_ascii_lowercase(), body)
        }
    };
    let flags = match shebang::eval_mode(&body).map_err(CommandError::err)? {
        EvalMode::Compatible => None,
        EvalMode::Flagged(flags) => Some(flags),
    };
    let read_only = super::read_only(flags, ro_command)?;
    if let Source::Body = source {
        ctx.shared.scripts.remember(&body);
    }
    run(
        ctx,
        Invocation {
            target: Target::Script { sha, body },
            keys,
            argv,
            read_only,
            command: args,
        },
    )
}

fn eval(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    eval_generic(ctx, args, Source::Body, false)
}

fn eval_ro(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    eval_generic(ctx, args, Source::Body, true)
}

fn evalsha(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    eval_generic(ctx, args, Source::Sha, false)
}

fn evalsha_ro(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    eval_generic(ctx, args, Source::Sha, true)
}

/// SCRIPT LOAD: compiles the body (so a syntax error is reported now), keeps it, and
/// answers its SHA1.
fn script_load(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let scripts = &ctx.shared.scripts;
    shebang::eval_mode(&args[2]).map_err(CommandError::err)?;
    let sha = super::sha1_hex(&args[2]);
    let mut vm = scripts.take_vm()?;
    let compiled = vm.compiled(&sha, &args[2]).map(|_| ());
    scripts.give_back(vm);
    compiled.map_err(CommandError::err)?;
    scripts.remember(&args[2]);
    Ok(Reply::bulk(sha))
}

fn script_exists(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    Ok(Reply::Array(
        args[2..]
            .iter()
            .map(|sha| {
                let known = ctx.shared.scripts.body(&args::text(sha)).is_some();
                Reply::Integer(i64::from(known))
            })
            .collect(),
    ))
}

fn script_flush(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    match args.get(2) {
        None => {}
        Some(mode) if args.len() == 3 && (is(mode, "sync") || is(mode, "async")) => {}
        Some(_) => {
            return Err(CommandError::err(
                "SCRIPT FLUSH only support SYNC|ASYNC option",
            ))
        }
    }
    ctx.shared.scripts.flush();
    Ok(Reply::ok())
}

fn script_kill(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    ctx.shared.scripts.kill(false)?;
    Ok(Reply::ok())
}

fn script_help(_ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    let lines = [
        "EXISTS <sha1> [<sha1> ...]",
        "    Return information about the existence of the scripts in the script cache.",
        "FLUSH [ASYNC|SYNC]",
        "    Flush the Lua scripts cache. Very dangerous on replicas.",
        "    When called without the optional mode argument, the behavior is determined by the",
        "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
        "    * ASYNC: Asynchronously flush the scripts cache.",
        "    * SYNC: Synchronously flush the scripts cache.",
        "KILL",
        "    Kill the currently executing Lua script.",
        "LOAD <script>",
        "    Load a script into the scripts cache without executing it.",
    ];
    Ok(help_reply("SCRIPT", &lines))
}
