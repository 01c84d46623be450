//! Connection commands: AUTH, HELLO, PING, ECHO, SELECT, QUIT, RESET and CLIENT.

use bytes::Bytes;

use super::acl::{record_denial, DenialContext, DenialReason};
use super::args::{self, is};
use super::dispatch::unwatch_all;
use super::server::info::REDIS_COMPAT_VERSION;
use super::table::{acl, CommandSpec, ADMIN, FAST, LOADING, NOSCRIPT, NO_AUTH, NO_KEYS, STALE};
use super::ReplyMode;
use super::{help_reply, CommandError, CommandResult, Ctx, ErrorCode};
use crate::protocol::{ProtocolVersion, Reply};

const GROUP: &str = "connection";

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "auth",
        -2,
        NOSCRIPT | LOADING | STALE | FAST | NO_AUTH,
        acl::CONNECTION,
        NO_KEYS,
        GROUP,
        "1.0.0",
        "Authenticates the connection.",
        auth,
    ),
    CommandSpec::new(
        "hello",
        -1,
        NOSCRIPT | LOADING | STALE | FAST | NO_AUTH,
        acl::CONNECTION,
        NO_KEYS,
        GROUP,
        "6.0.0",
        "Handshakes with the Redis server.",
        hello,
    ),
    CommandSpec::new(
        "ping",
        -1,
        FAST,
        acl::CONNECTION,
        NO_KEYS,
        GROUP,
        "1.0.0",
        "Returns the server's liveliness response.",
        ping,
    ),
    CommandSpec::new(
        "echo",
        2,
        FAST,
        acl::CONNECTION,
        NO_KEYS,
        GROUP,
        "1.0.0",
        "Returns the given string.",
        echo,
    ),
    CommandSpec::new(
        "select",
        2,
        LOADING | STALE | FAST,
        acl::CONNECTION,
        NO_KEYS,
        GROUP,
        "1.0.0",
        "Changes the selected database.",
        select,
    ),
    CommandSpec::new(
        "quit",
        -1,
        NOSCRIPT | LOADING | STALE | FAST | NO_AUTH,
        acl::CONNECTION,
        NO_KEYS,
        GROUP,
        "1.0.0",
        "Closes the connection.",
        quit,
    ),
    CommandSpec::new(
        "reset",
        1,
        NOSCRIPT | LOADING | STALE | FAST | NO_AUTH,
        acl::CONNECTION,
        NO_KEYS,
        GROUP,
        "6.2.0",
        "Resets the connection.",
        reset,
    ),
    CommandSpec::new(
        "client",
        -2,
        0,
        acl::NONE,
        NO_KEYS,
        GROUP,
        "2.4.0",
        "A container for client connection commands.",
        client_help,
    )
    .with_subcommands(&[
        CommandSpec::new(
            "id",
            2,
            NOSCRIPT | LOADING | STALE,
            acl::CONNECTION,
            NO_KEYS,
            GROUP,
            "5.0.0",
            "Returns the unique client ID of the connection.",
            client_id,
        ),
        CommandSpec::new(
            "getname",
            2,
            NOSCRIPT | LOADING | STALE,
            acl::CONNECTION,
            NO_KEYS,
            GROUP,
            "2.6.9",
            "Returns the name of the connection.",
            client_getname,
        ),
        CommandSpec::new(
            "setname",
            3,
            NOSCRIPT | LOADING | STALE,
            acl::CONNECTION,
            NO_KEYS,
            GROUP,
            "2.6.9",
            "Sets the connection name.",
            client_setname,
        ),
        CommandSpec::new(
            "list",
            -2,
            ADMIN | NOSCRIPT | LOADING | STALE,
            acl::CONNECTION,
            NO_KEYS,
            GROUP,
            "2.4.0",
            "Lists open connections.",
            client_list,
        ),
        CommandSpec::new(
            "info",
            2,
            NOSCRIPT | LOADING | STALE,
            acl::CONNECTION,
            NO_KEYS,
            GROUP,
            "6.2.0",
            "Returns information about the connection.",
            client_info,
        ),
        CommandSpec::new(
            "kill",
            -3,
            ADMIN | NOSCRIPT | LOADING | STALE,
            acl::CONNECTION,
            NO_KEYS,
            GROUP,
            "2.4.0",
            "Terminates open connections.",
            client_kill,
        ),
        CommandSpec::new(
            "setinfo",
            4,
            NOSCRIPT | LOADING | STALE,
            acl::CONNECTION,
            NO_KEYS,
            GROUP,
            "7.2.0",
            "Sets information specific to the client or connection.",
            client_setinfo,
        ),
        CommandSpec::new(
            "reply",
            3,
            NOSCRIPT | LOADING | STALE,
            acl::CONNECTION,
            NO_KEYS,
            GROUP,
            "3.2.0",
            "Instructs the server whether to reply to commands.",
            client_reply,
        ),
        CommandSpec::new(
            "no-evict",
            3,
            ADMIN | NOSCRIPT | LOADING | STALE,
            acl::CONNECTION,
            NO_KEYS,
            GROUP,
            "7.0.0",
            "Sets the client eviction mode of the connection.",
            client_no_evict,
        ),
        CommandSpec::new(
            "no-touch",
            3,
            NOSCRIPT | LOADING | STALE,
            acl::CONNECTION,
            NO_KEYS,
            GROUP,
            "7.2.0",
            "Controls whether commands sent by the client affect the LRU/LFU of accessed keys.",
            client_flag_ok,
        ),
        CommandSpec::new(
            "help",
            2,
            LOADING | STALE,
            acl::CONNECTION,
            NO_KEYS,
            GROUP,
            "5.0.0",
            "Returns helpful text about the different subcommands.",
            client_help,
        ),
    ]),
];

const WRONGPASS: &str = "invalid username-password pair or user is disabled.";

/// Checks a username/password pair against `requirepass` (the only user is "default").
/// Logs the client in as `user` (`default` when not given) if the password is right;
/// otherwise records the failure (audit log, ACL LOG) and answers Redis's WRONGPASS.
fn log_in(
    ctx: &mut Ctx<'_, '_>,
    user: Option<&Bytes>,
    password: &Bytes,
) -> Result<(), CommandError> {
    let name = user.map_or(&b"default"[..], |user| &user[..]);
    if let Some(user) = ctx.shared.acl.authenticate(name, password) {
        ctx.client.log_in(user);
        ctx.client.acl_generation = u64::MAX;
        return Ok(());
    }
    let name = String::from_utf8_lossy(name).into_owned();
    ctx.audit("auth_failed", serde_json::json!({ "user": name }));
    let context = match ctx.client.multi {
        Some(_) => DenialContext::Multi,
        None => DenialContext::TopLevel,
    };
    record_denial(
        ctx.shared,
        ctx.client,
        DenialReason::Auth,
        context,
        "AUTH".into(),
        &name,
    );
    Err(CommandError::new(ErrorCode::WrongPass, WRONGPASS))
}

fn auth(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let (user, password) = match args.len() {
        2 => (None, &args[1]),
        3 => (Some(&args[1]), &args[2]),
        _ => return Err(CommandError::syntax()),
    };
    if user.is_none() && ctx.shared.acl.default_user().needs_no_password() {
        return Err(CommandError::err(
            "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        ));
    }
    log_in(ctx, user, password)?;
    Ok(Reply::ok())
}

/// HELLO [protover [AUTH username password] [SETNAME clientname]].
fn hello(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let mut protocol = None;
    let mut rest = args[1..].iter();
    if let Some(version) = rest.next() {
        protocol = Some(match args::parse_i64(version) {
            Some(2) => ProtocolVersion::Resp2,
            Some(3) => ProtocolVersion::Resp3,
            Some(_) => {
                return Err(CommandError::new(
                    ErrorCode::NoProto,
                    "unsupported protocol version",
                ))
            }
            None => {
                return Err(CommandError::err(
                    "Protocol version is not an integer or out of range",
                ))
            }
        });
    }
    let mut credentials = None;
    let mut name = None;
    while let Some(option) = rest.next() {
        if is(option, "auth") {
            let (Some(user), Some(password)) = (rest.next(), rest.next()) else {
                return Err(CommandError::err(format!(
                    "Syntax error in HELLO option '{}'",
                    args::text(option)
                )));
            };
            credentials = Some((user, password));
        } else if is(option, "setname") {
            let Some(value) = rest.next() else {
                return Err(CommandError::err(format!(
                    "Syntax error in HELLO option '{}'",
                    args::text(option)
                )));
            };
            name = Some(value);
        } else {
            return Err(CommandError::err(format!(
                "Syntax error in HELLO option '{}'",
                args::text(option)
            )));
        }
    }
    if let Some((user, password)) = credentials {
        log_in(ctx, Some(user), password)?;
    }
    if !ctx.client.authenticated {
        return Err(CommandError::new(
            ErrorCode::NoAuth,
            "HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        ));
    }
    if let Some(name) = name {
        set_client_name(ctx, name)?;
    }
    if let Some(protocol) = protocol {
        ctx.client.set_protocol(protocol);
    }
    let proto = match ctx.client.protocol {
        ProtocolVersion::Resp2 => 2,
        ProtocolVersion::Resp3 => 3,
    };
    Ok(Reply::Map(vec![
        (Reply::bulk("server"), Reply::bulk("redis")),
        (Reply::bulk("version"), Reply::bulk(REDIS_COMPAT_VERSION)),
        (Reply::bulk("proto"), Reply::Integer(proto)),
        (
            Reply::bulk("id"),
            Reply::Integer(ctx.client.handle.id as i64),
        ),
        (Reply::bulk("mode"), Reply::bulk("standalone")),
        (Reply::bulk("role"), Reply::bulk("master")),
        (Reply::bulk("modules"), Reply::Array(Vec::new())),
    ]))
}

fn ping(_ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    match args.len() {
        1 => Ok(Reply::Simple("PONG".into())),
        2 => Ok(Reply::Bulk(args[1].clone())),
        _ => Err(CommandError::err(
            "wrong number of arguments for 'ping' command",
        )),
    }
}

fn echo(_ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    Ok(Reply::Bulk(args[1].clone()))
}

fn select(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let index = args::int(&args[1])?;
    let db = u16::try_from(index)
        .ok()
        .filter(|db| *db < ctx.engine().databases())
        .ok_or_else(|| CommandError::err("DB index is out of range"))?;
    ctx.client.select(db);
    Ok(Reply::ok())
}

fn quit(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    ctx.client.close_after_reply = true;
    Ok(Reply::ok())
}

fn reset(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    ctx.client.end_multi();
    unwatch_all(ctx.shared, ctx.client);
    ctx.client.select(0);
    ctx.client.set_protocol(ProtocolVersion::Resp2);
    ctx.client.reply_mode = ReplyMode::On;
    let default = ctx.shared.acl.default_user();
    let authenticated = default.needs_no_password();
    ctx.client.log_in(default);
    ctx.client.authenticated = authenticated;
    ctx.client.acl_generation = u64::MAX;
    *ctx.client.handle.name.lock() = None;
    Ok(Reply::Simple("RESET".into()))
}

fn client_id(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    Ok(Reply::Integer(ctx.client.handle.id as i64))
}

fn client_getname(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    Ok(match ctx.client.handle.name.lock().clone() {
        Some(name) => Reply::bulk(name),
        None => Reply::Nil,
    })
}

/// Redis allows printable ASCII other than space in client names; empty clears the name.
fn set_client_name(ctx: &mut Ctx<'_, '_>, name: &Bytes) -> Result<(), CommandError> {
    if name.iter().any(|byte| !(b'!'..=b'~').contains(byte)) {
        return Err(CommandError::err(
            "Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    *ctx.client.handle.name.lock() = (!name.is_empty()).then(|| args::text(name));
    Ok(())
}

fn client_setname(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    set_client_name(ctx, &args[2])?;
    Ok(Reply::ok())
}

/// CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id ...].
fn client_list(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let mut ids: Option<Vec<u64>> = None;
    let mut only_normal = true;
    let mut i = 2;
    while i < args.len() {
        if is(&args[i], "type") && i + 1 < args.len() {
            let kind = &args[i + 1];
            if !["normal", "master", "replica", "slave", "pubsub"]
                .iter()
                .any(|k| is(kind, k))
            {
                return Err(CommandError::err(format!(
                    "Unknown client type '{}'",
                    args::text(kind)
                )));
            }
            only_normal = is(kind, "normal");
            i += 2;
        } else if is(&args[i], "id") && i + 1 < args.len() {
            let mut wanted = Vec::new();
            for id in &args[i + 1..] {
                let id = args::parse_i64(id)
                    .filter(|id| *id > 0)
                    .ok_or_else(|| CommandError::err("Invalid client ID"))?;
                wanted.push(id as u64);
            }
            ids = Some(wanted);
            i = args.len();
        } else {
            return Err(CommandError::syntax());
        }
    }
    let mut text = String::new();
    if only_normal {
        for client in ctx.shared.clients.all() {
            if ids.as_ref().is_none_or(|ids| ids.contains(&client.id)) {
                text.push_str(&client.info_line());
                text.push('\n');
            }
        }
    }
    Ok(verbatim(text))
}

fn client_info(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    let mut text = ctx.client.handle.info_line();
    text.push('\n');
    Ok(verbatim(text))
}

/// Verbatim text; the encoder sends it as a bulk string to RESP2 clients (as Redis replies
/// to CLIENT LIST and CLIENT INFO).
fn verbatim(text: String) -> Reply {
    Reply::Verbatim {
        format: *b"txt",
        text: Bytes::from(text),
    }
}

/// CLIENT KILL addr:port (old form) or CLIENT KILL <filter> <value> ... (new form).
fn client_kill(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let me = ctx.client.handle.id;
    if args.len() == 3 {
        let addr = args::text(&args[2]);
        let target = ctx
            .shared
            .clients
            .all()
            .into_iter()
            .find(|client| client.addr.to_string() == addr);
        return match target {
            Some(client) => {
                client.kill();
                if client.id == me {
                    ctx.client.close_after_reply = true;
                }
                Ok(Reply::ok())
            }
            None => Err(CommandError::err("No such client")),
        };
    }
    let mut id = None;
    let mut addr = None;
    let mut laddr = None;
    let mut skip_me = true;
    let mut max_age = None;
    let mut matches_nothing = false;
    let mut user = None;
    let mut rest = args[2..].iter();
    while let Some(filter) = rest.next() {
        let value = rest.next().ok_or_else(CommandError::syntax)?;
        if is(filter, "id") {
            id = Some(
                args::parse_i64(value)
                    .filter(|id| *id > 0)
                    .ok_or_else(|| CommandError::err("client-id should be greater than 0"))?
                    as u64,
            );
        } else if is(filter, "addr") {
            addr = Some(args::text(value));
        } else if is(filter, "laddr") {
            laddr = Some(args::text(value));
        } else if is(filter, "skipme") {
            skip_me = if is(value, "yes") {
                true
            } else if is(value, "no") {
                false
            } else {
                return Err(CommandError::syntax());
            };
        } else if is(filter, "maxage") {
            max_age = Some(args::int(value)?.max(0) as u64);
        } else if is(filter, "type") {
            // Every client here is a normal one; the other types Redis knows match none.
            if !["normal", "master", "replica", "slave", "pubsub"]
                .iter()
                .any(|known| is(value, known))
            {
                return Err(CommandError::err(format!(
                    "Unknown client type '{}'",
                    args::text(value)
                )));
            }
            matches_nothing |= !is(value, "normal");
        } else if is(filter, "user") {
            let name = args::text(value);
            if ctx.shared.acl.user(&name).is_none() {
                return Err(CommandError::err(format!("No such user '{name}'")));
            }
            user = Some(name);
        } else {
            return Err(CommandError::syntax());
        }
    }
    if matches_nothing {
        return Ok(Reply::Integer(0));
    }
    let mut killed = 0;
    for client in ctx.shared.clients.all() {
        let matches = id.is_none_or(|id| client.id == id)
            && addr.as_ref().is_none_or(|a| client.addr.to_string() == *a)
            && laddr
                .as_ref()
                .is_none_or(|a| client.local_addr.to_string() == *a)
            && max_age.is_none_or(|age| client.created.elapsed().as_secs() >= age)
            && user
                .as_ref()
                .is_none_or(|name| *client.user.lock() == *name)
            && !(skip_me && client.id == me);
        if matches {
            client.kill();
            if client.id == me {
                ctx.client.close_after_reply = true;
            }
            killed += 1;
        }
    }
    Ok(Reply::Integer(killed))
}

/// CLIENT SETINFO LIB-NAME|LIB-VER value (redis-py and go-redis send it on connect).
fn client_setinfo(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let value = &args[3];
    if value.iter().any(|byte| !(b'!'..=b'~').contains(byte)) {
        return Err(CommandError::err(format!(
            "{} cannot contain spaces, newlines or special characters.",
            args::text(&args[2]).to_ascii_lowercase()
        )));
    }
    let slot = if is(&args[2], "lib-name") {
        &ctx.client.handle.lib_name
    } else if is(&args[2], "lib-ver") {
        &ctx.client.handle.lib_ver
    } else {
        return Err(CommandError::err(format!(
            "Unrecognized option '{}'",
            args::text(&args[2])
        )));
    };
    *slot.lock() = (!value.is_empty()).then(|| args::text(value));
    Ok(Reply::ok())
}

fn client_reply(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let mode = if is(&args[2], "on") {
        ReplyMode::On
    } else if is(&args[2], "off") {
        ReplyMode::Off
    } else if is(&args[2], "skip") {
        ReplyMode::Skip
    } else {
        return Err(CommandError::syntax());
    };
    // As in Redis, OFF and SKIP silence this very reply; the connection applies the mode.
    ctx.client.reply_mode = mode;
    Ok(Reply::ok())
}

/// CLIENT NO-EVICT on|off: whether `maxmemory-clients` may close this client.
fn client_no_evict(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let on = if is(&args[2], "on") {
        true
    } else if is(&args[2], "off") {
        false
    } else {
        return Err(CommandError::syntax());
    };
    ctx.client
        .handle
        .no_evict
        .store(on, std::sync::atomic::Ordering::Relaxed);
    Ok(Reply::ok())
}

fn client_flag_ok(_ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    if is(&args[2], "on") || is(&args[2], "off") {
        Ok(Reply::ok())
    } else {
        Err(CommandError::syntax())
    }
}

fn client_help(_ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    let lines = [
        "GETNAME",
        "    Return the name of the current connection.",
        "ID",
        "    Return the ID of the current connection.",
        "INFO",
        "    Return information about the current client connection.",
        "KILL <ip:port>",
        "    Kill connection made from <ip:port>.",
        "KILL <option> <value> [<option> <value> [...]]",
        "    Kill connections. Options are: ID, ADDR, LADDR, SKIPME, MAXAGE, TYPE, USER.",
        "LIST [TYPE (NORMAL|MASTER|REPLICA|PUBSUB)] [ID <id> [<id> ...]]",
        "    Return information about client connections.",
        "REPLY (ON|OFF|SKIP)",
        "    Control the replies sent to the current connection.",
        "SETNAME <name>",
        "    Assign the name <name> to the current connection.",
        "SETINFO <LIB-NAME|LIB-VER> <value>",
        "    Set client library name or version.",
    ];
    Ok(help_reply("CLIENT", &lines))
}
