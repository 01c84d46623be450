//! The ACL command: SETUSER, GETUSER, DELUSER, LIST, USERS, WHOAMI, CAT, LOG, GENPASS,
//! DRYRUN, SAVE, LOAD and HELP, with Redis's replies and error texts.

use bytes::Bytes;

use super::catalog::{catalog, category_by_name};
use super::refusal;
use super::user::hex;
use crate::commands::args::{self, is};
use crate::commands::dispatch::resolve;
use crate::commands::table::{acl, CommandSpec, ADMIN, LOADING, NOSCRIPT, NO_KEYS, STALE};
use crate::commands::{help_reply, CommandError, CommandResult, Ctx};
use crate::protocol::Reply;

const GROUP: &str = "server";

const fn sub(
    name: &'static str,
    arity: i32,
    flags: u32,
    summary: &'static str,
    handler: crate::commands::table::Handler,
) -> CommandSpec {
    CommandSpec::new(
        name,
        arity,
        NOSCRIPT | LOADING | STALE | flags,
        acl::NONE,
        NO_KEYS,
        GROUP,
        "6.0.0",
        summary,
        handler,
    )
}

pub const COMMANDS: &[CommandSpec] = &[CommandSpec::new(
    "acl",
    -2,
    0,
    acl::NONE,
    NO_KEYS,
    GROUP,
    "6.0.0",
    "A container for Access List Control commands.",
    acl_help,
)
.with_subcommands(&[
    sub(
        "cat",
        -2,
        0,
        "Lists the ACL categories, or the commands inside a category.",
        acl_cat,
    ),
    sub(
        "deluser",
        -3,
        ADMIN,
        "Deletes ACL users, and terminates their connections.",
        acl_deluser,
    ),
    sub(
        "dryrun",
        -4,
        ADMIN,
        "Simulates the execution of a command by a user, without executing the command.",
        acl_dryrun,
    ),
    sub(
        "genpass",
        -2,
        0,
        "Generates a pseudorandom, secure password that can be used to identify ACL users.",
        acl_genpass,
    ),
    sub(
        "getuser",
        3,
        ADMIN,
        "Lists the ACL rules of a user.",
        acl_getuser,
    ),
    sub(
        "help",
        2,
        0,
        "Returns helpful text about the different subcommands.",
        acl_help,
    ),
    sub(
        "list",
        2,
        ADMIN,
        "Dumps the effective rules in ACL file format.",
        acl_list,
    ),
    sub(
        "load",
        2,
        ADMIN,
        "Reloads the rules from the configured ACL file.",
        acl_load,
    ),
    sub(
        "log",
        -2,
        ADMIN,
        "Lists recent security events generated due to commands rejected by ACL rules.",
        acl_log,
    ),
    sub(
        "save",
        2,
        ADMIN,
        "Saves the effective ACL rules in the configured ACL file.",
        acl_save,
    ),
    sub(
        "setuser",
        -3,
        ADMIN,
        "Creates and modifies an ACL user and its rules.",
        acl_setuser,
    ),
    sub("users", 2, ADMIN, "Lists all ACL users.", acl_users),
    sub(
        "whoami",
        2,
        0,
        "Returns the authenticated username of the current connection.",
        acl_whoami,
    ),
])];

fn acl_setuser(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    ctx.shared
        .acl
        .set_user(&args[2], &args[3..])
        .map_err(CommandError::err)?;
    // The rules are logged by their words, except passwords (kept out of every log).
    let rules: Vec<String> = args[3..]
        .iter()
        .map(|rule| match rule.first() {
            Some(b'>' | b'<') => format!("{}(redacted)", rule[0] as char),
            _ => args::text(rule),
        })
        .collect();
    ctx.audit(
        "acl_setuser",
        serde_json::json!({ "user": args::text(&args[2]), "rules": rules }),
    );
    Ok(Reply::ok())
}

fn acl_deluser(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let removed = ctx
        .shared
        .acl
        .delete_users(&args[2..])
        .map_err(CommandError::err)?;
    let names: Vec<String> = args[2..].iter().map(args::text).collect();
    close_clients_of(ctx, &names);
    ctx.audit("acl_deluser", serde_json::json!({ "users": names }));
    Ok(Reply::Integer(removed as i64))
}

/// Redis closes the connections of a user that is gone.
fn close_clients_of(ctx: &mut Ctx<'_, '_>, names: &[String]) {
    for client in ctx.shared.clients.all() {
        if names.iter().any(|name| **client.user.lock() == **name) {
            client.kill();
            if client.id == ctx.client.handle.id {
                ctx.client.close_after_reply = true;
            }
        }
    }
}

fn acl_getuser(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let Some(user) = ctx.shared.acl.user(&args::text(&args[2])) else {
        return Ok(Reply::Nil);
    };
    let strings = |items: Vec<String>| Reply::Array(items.into_iter().map(Reply::bulk).collect());
    let field = |name: &'static str| Reply::bulk(Bytes::from_static(name.as_bytes()));
    Ok(Reply::Map(vec![
        (
            field("flags"),
            strings(user.flags().iter().map(|flag| flag.to_string()).collect()),
        ),
        (field("passwords"), strings(user.password_hashes())),
        (field("commands"), Reply::bulk(user.describe_commands())),
        (field("keys"), Reply::bulk(user.describe_keys())),
        (field("channels"), Reply::bulk(user.describe_channels())),
        (field("selectors"), Reply::Array(Vec::new())),
    ]))
}

fn acl_list(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    let lines = ctx.shared.acl.describe_all();
    Ok(Reply::Array(lines.into_iter().map(Reply::bulk).collect()))
}

fn acl_users(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    let names = ctx.shared.acl.usernames();
    Ok(Reply::Array(names.into_iter().map(Reply::bulk).collect()))
}

fn acl_whoami(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    Ok(Reply::bulk(ctx.client.user.name.clone()))
}

fn acl_cat(_ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    match args.get(2) {
        None => Ok(Reply::Array(
            acl::NAMES
                .iter()
                .map(|(_, name)| Reply::bulk(Bytes::from_static(&name.as_bytes()[1..])))
                .collect(),
        )),
        Some(name) => {
            let text = args::text(name);
            let category = category_by_name(&text)
                .filter(|category| *category != u64::MAX)
                .ok_or_else(|| CommandError::err(format!("Unknown category '{text}'")))?;
            let catalog = catalog();
            Ok(Reply::Array(
                catalog
                    .in_category(category)
                    .map(|id| Reply::bulk(catalog.entries[id].name.clone()))
                    .collect(),
            ))
        }
    }
}

fn acl_genpass(_ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let bits = match args.get(2) {
        None => 256,
        Some(bits) => args::parse_i64(bits)
            .filter(|bits| (1..=4096).contains(bits))
            .ok_or_else(|| {
                CommandError::err(
                    "ACL GENPASS argument must be the number of bits for the output password, a positive number up to 4096",
                )
            })?,
    };
    let hex_digits = (bits as usize).div_ceil(4);
    let mut random = vec![0u8; hex_digits.div_ceil(2)];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
        .map_err(|_| CommandError::err("no random bytes available"))?;
    let mut password = hex(&random);
    password.truncate(hex_digits);
    Ok(Reply::bulk(password))
}

fn acl_dryrun(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let name = args::text(&args[2]);
    let user = ctx
        .shared
        .acl
        .user(&name)
        .ok_or_else(|| CommandError::err(format!("User '{name}' not found")))?;
    let command = &args[3..];
    if crate::commands::table::lookup(&command[0]).is_none() {
        return Err(CommandError::err(format!(
            "Command '{}' not found",
            args::text(&command[0])
        )));
    }
    let resolved = resolve(command)?;
    Ok(match refusal(&user, resolved, command) {
        None => Reply::ok(),
        Some(refused) => Reply::bulk(refused.dry_run_text()),
    })
}

fn acl_log(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let count = match args.get(2) {
        None => 10,
        Some(arg) if is(arg, "reset") => {
            ctx.shared.acl.log.reset();
            return Ok(Reply::ok());
        }
        Some(arg) => args::int(arg)?.max(0) as usize,
    };
    Ok(ctx.shared.acl.log.reply(count))
}

fn acl_load(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    let gone = ctx.shared.acl.load().map_err(CommandError::err)?;
    close_clients_of(ctx, &gone);
    ctx.audit("acl_load", serde_json::json!({ "removed": gone }));
    Ok(Reply::ok())
}

fn acl_save(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    ctx.shared.acl.save().map_err(CommandError::err)?;
    Ok(Reply::ok())
}

fn acl_help(_ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    let lines = [
        "CAT [<category>]",
        "    List all commands that belong to <category>, or all command categories",
        "    when no category is specified.",
        "DELUSER <username> [<username> ...]",
        "    Delete a list of users.",
        "DRYRUN <username> <command> [<arg> ...]",
        "    Returns whether the user can execute the given command without executing the command.",
        "GETUSER <username>",
        "    Get the user's details.",
        "GENPASS [<bits>]",
        "    Generate a secure 256-bit user password. The optional `bits` argument can",
        "    be used to specify a different size.",
        "LIST",
        "    Show users details in config file format.",
        "LOAD",
        "    Reload users from the ACL file.",
        "LOG [<count> | RESET]",
        "    Show the ACL log entries.",
        "SAVE",
        "    Save the current config to the ACL file.",
        "SETUSER <username> <attribute> [<attribute> ...]",
        "    Create or modify a user with the specified attributes.",
        "USERS",
        "    List all the registered usernames.",
        "WHOAMI",
        "    Return the current connection username.",
    ];
    Ok(help_reply("ACL", &lines))
}
