//! CONFIG GET / SET / RESETSTAT / REWRITE: Redis's parameter names mapped onto the typed
//! configuration through `config::params`. CONFIG SET applies all its changes or none, and
//! REWRITE replaces the file atomically; neither ever leaves a half-written config behind.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;

use crate::commands::{help_reply, CommandError, CommandResult, Ctx};
use crate::config::params::{self, Mutability, Param};
use crate::config::Config;
use crate::engine::glob::glob_match;
use crate::protocol::Reply;

const CONFIG_HELP: &[&str] = &[
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "REWRITE",
    "    Rewrite the configuration file.",
];

pub(super) fn config_help(_ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    Ok(help_reply("CONFIG", CONFIG_HELP))
}

/// The configuration as CONFIG shows it: the port is the one actually bound, which differs
/// from the configured one when that was 0.
fn shown_config(config: &Config, bound_port: u16) -> Config {
    let mut shown = config.clone();
    shown.server.port = bound_port;
    shown
}

/// CONFIG GET pattern [pattern ...]: a pattern without glob characters names a parameter
/// (and is echoed as given, as Redis does); the others are matched case-insensitively.
/// Each parameter is listed once.
pub(super) fn config_get(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let shown = shown_config(&ctx.shared.config.read(), ctx.shared.port);
    let mut found: Vec<(Bytes, &'static Param)> = Vec::new();
    let mut add = |name: Bytes, param: &'static Param| {
        if !found.iter().any(|(_, seen)| std::ptr::eq(*seen, param)) {
            found.push((name, param));
        }
    };
    for pattern in &args[2..] {
        if !pattern
            .iter()
            .any(|byte| matches!(byte, b'*' | b'?' | b'['))
        {
            if let Some(param) = params::lookup(pattern) {
                add(pattern.clone(), param);
            }
            continue;
        }
        let pattern = pattern.to_ascii_lowercase();
        for param in params::all() {
            if glob_match(&pattern, param.name.as_bytes()) {
                add(Bytes::from_static(param.name.as_bytes()), param);
            }
        }
    }
    Ok(Reply::Map(
        found
            .into_iter()
            .map(|(name, param)| (Reply::Bulk(name), Reply::bulk((param.get)(&shown))))
            .collect(),
    ))
}

pub(super) fn config_set(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    if !args.len().is_multiple_of(2) {
        return Err(CommandError::syntax());
    }
    let pairs: Vec<(&[u8], &[u8])> = args[2..]
        .chunks_exact(2)
        .map(|pair| (&pair[0][..], &pair[1][..]))
        .collect();
    // Held throughout, so concurrent CONFIG SETs cannot lose each other's changes.
    let mut config = ctx.shared.config.write();
    let updated = apply_config_set(&config, ctx.shared.port, &pairs)?;
    // Everything else reads the live configuration when it needs it.
    if updated.slowlog.max_len != config.slowlog.max_len {
        ctx.shared.slowlog.set_max_len(updated.slowlog.max_len);
    }
    ctx.shared
        .slowlog
        .set_threshold_us(updated.slowlog.log_slower_than);
    if updated.replication != config.replication {
        ctx.shared.replication.apply_config(&updated.replication);
        ctx.engine()
            .set_replication_backlog(updated.replication.repl_backlog_size.0);
    }
    if updated.storage != config.storage {
        // The policy, its knobs and maxdisk; the rest of the storage section is fixed.
        ctx.engine().apply_eviction_config(&updated.storage);
    }
    if updated.tls != config.tls && ctx.shared.tls.read().is_some() {
        // Redis reloads the certificates on any tls-* change; one that does not load
        // changes nothing.
        let reloaded = crate::tls::server_config(&updated.tls).map_err(|err| {
            CommandError::err(format!(
                "CONFIG SET failed - Unable to update TLS configuration. {err}"
            ))
        })?;
        *ctx.shared.tls.write() = Some(reloaded);
    }
    if updated.limits.busy_reply_threshold_ms != config.limits.busy_reply_threshold_ms {
        ctx.engine().set_busy_reply_threshold(Duration::from_millis(
            updated.limits.busy_reply_threshold_ms,
        ));
    }
    if updated.security.requirepass != config.security.requirepass {
        // Redis: requirepass is the default user's password.
        ctx.shared
            .acl
            .set_requirepass(updated.security.requirepass.as_deref());
    }
    if updated.logging.level != config.logging.level {
        crate::config::apply_log_level(&updated.logging.level);
    }
    *config = updated;
    ctx.audit("config_set", crate::audit::config_set_detail(&pairs));
    Ok(Reply::ok())
}

fn config_set_failed(name: &str, reason: &str) -> CommandError {
    CommandError::err(format!(
        "CONFIG SET failed (possibly related to argument '{name}') - {reason}"
    ))
}

/// CONFIG SET's rules, apart from the running server: all the changes or none. Like Redis,
/// names are checked first (unknown, immutable, duplicate), then values in order.
fn apply_config_set(
    current: &Config,
    bound_port: u16,
    pairs: &[(&[u8], &[u8])],
) -> Result<Config, CommandError> {
    let shown = shown_config(current, bound_port);
    let mut chosen: Vec<(&'static Param, &[u8])> = Vec::with_capacity(pairs.len());
    for (name, value) in pairs {
        let given = String::from_utf8_lossy(name);
        let Some(param) = params::lookup(name) else {
            return Err(CommandError::err(format!(
                "Unknown option or number of arguments for CONFIG SET - '{given}'"
            )));
        };
        if param.mutability == Mutability::Immutable && parse_shown(param, &shown, value).is_err() {
            return Err(config_set_failed(&given, IMMUTABLE));
        }
        if chosen.iter().any(|(seen, _)| std::ptr::eq(*seen, param)) {
            return Err(config_set_failed(&given, "duplicate parameter"));
        }
        chosen.push((param, value));
    }
    let mut updated = current.clone();
    for (param, value) in chosen {
        let failed = |reason: &str| config_set_failed(param.name, reason);
        match param.mutability {
            Mutability::Immutable => {}
            Mutability::Fixed => {
                parse_shown(param, &shown, value).map_err(|reason| failed(&reason))?
            }
            Mutability::Live => {
                let value = std::str::from_utf8(value)
                    .map_err(|_| failed("argument must be valid UTF-8"))?;
                // The current value always goes back in, even one outside Redis's range
                // (the config file's limits are looser than CONFIG SET's).
                if value != (param.get)(&shown) {
                    (param.set)(&mut updated, value).map_err(|reason| failed(&reason))?;
                }
            }
        }
    }
    Ok(updated)
}

const IMMUTABLE: &str = "can't set immutable config";

/// Checks that `value` parses and denotes what `param` already is (`1gb` is 1073741824):
/// all a parameter the server cannot change will take.
fn parse_shown(param: &Param, shown: &Config, value: &[u8]) -> Result<(), String> {
    let value = std::str::from_utf8(value).map_err(|_| IMMUTABLE.to_string())?;
    let mut parsed = shown.clone();
    (param.set)(&mut parsed, value)?;
    if (param.get)(&parsed) == (param.get)(shown) {
        Ok(())
    } else {
        Err(IMMUTABLE.into())
    }
}

/// Redis resets the counters INFO shows; the slow log keeps its entries (SLOWLOG RESET).
pub(super) fn config_resetstat(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    ctx.shared.stats.reset();
    ctx.engine().stats().reset();
    Ok(Reply::ok())
}

pub(super) fn config_rewrite(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    let Some(path) = ctx.shared.config_file.as_deref() else {
        return Err(CommandError::err(
            "The server is running without a config file",
        ));
    };
    ctx.off_async_workers()?;
    let rewrite_failed =
        |err: &dyn std::fmt::Display| CommandError::err(format!("Rewriting config file: {err}"));
    let mut config = ctx.shared.config.read().clone();
    if config.security.aclfile.is_none() {
        // Without an ACL file the users live in the configuration, as they are now (Redis
        // rewrites its `user` lines the same way).
        config.security.users = ctx.shared.acl.describe_all();
    }
    let yaml = serde_yaml::to_string(&config).map_err(|err| rewrite_failed(&err))?;
    let text =
        format!("# Written by CONFIG REWRITE from the running server's configuration.\n{yaml}");
    replace_file(path, text.as_bytes()).map_err(|err| rewrite_failed(&err))?;
    Ok(Reply::ok())
}

/// Writes a sibling file and renames it over `path`, so a crash leaves the old file or
/// the new one, never half of one.
fn replace_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".rewrite-tmp");
    let temporary = Path::new(&temporary);
    let mut file = std::fs::File::create(temporary)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ByteSize;

    const PORT: u16 = 6379;

    fn set(current: &Config, pairs: &[(&str, &str)]) -> Result<Config, String> {
        let pairs: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(name, value)| (name.as_bytes(), value.as_bytes()))
            .collect();
        apply_config_set(current, PORT, &pairs).map_err(|err| match err {
            error @ CommandError::Reply { .. } => error.to_string(),
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn every_config_get_value_is_accepted_by_config_set() {
        for bound_port in [PORT, 41234] {
            let config = Config {
                server: crate::config::ServerConfig {
                    port: 0,
                    ..Default::default()
                },
                ..Default::default()
            };
            let shown = shown_config(&config, bound_port);
            let names: Vec<String> = params::all()
                .map(|param| param.name.to_uppercase())
                .collect();
            let values: Vec<String> = params::all().map(|param| (param.get)(&shown)).collect();
            // All at once, as a client restoring a CONFIG GET * would send them.
            let pairs: Vec<(&[u8], &[u8])> = names
                .iter()
                .zip(&values)
                .map(|(name, value)| (name.as_bytes(), value.as_bytes()))
                .collect();
            let updated = apply_config_set(&config, bound_port, &pairs)
                .unwrap_or_else(|err| panic!("{err:?}"));
            assert_eq!(updated, config);
        }
    }

    #[test]
    fn fixed_parameters_accept_only_their_value() {
        let config = Config::default();
        assert_eq!(set(&config, &[("maxmemory", "1gb")]), Ok(config.clone()));
        assert_eq!(set(&config, &[("port", "6379")]), Ok(config.clone()));
        assert_eq!(set(&config, &[("hz", "10")]), Ok(config.clone()));
        let failed = |name: &str, reason: &str| {
            format!("ERR CONFIG SET failed (possibly related to argument '{name}') - {reason}")
        };
        for (name, value) in [
            ("port", "1234"),
            ("maxmemory", "2gb"),
            ("save", "3600 1"),
            ("hz", "100"),
            ("databases", "15"),
            ("hypercache-hot-shards", "abc"),
        ] {
            assert_eq!(
                set(&config, &[(name, value)]).unwrap_err(),
                failed(name, "can't set immutable config")
            );
        }
        // What Redis could change gets Redis's complaint about the value first.
        assert_eq!(
            set(&config, &[("MAXMEMORY", "abc")]).unwrap_err(),
            failed("maxmemory", "argument must be a memory value")
        );
        assert_eq!(
            set(&config, &[("save", "1 x")]).unwrap_err(),
            failed("save", "Invalid save parameters")
        );
        assert_eq!(
            set(&config, &[("maxmemory-policy", "lots")]).unwrap_err(),
            failed(
                "maxmemory-policy",
                "argument(s) must be one of the following: volatile-lru, volatile-lfu, \
                 volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, \
                 noeviction"
            )
        );
        // Redis checks immutability with the names, before any value.
        assert_eq!(
            set(&config, &[("timeout", "abc"), ("Databases", "15")]).unwrap_err(),
            failed("Databases", "can't set immutable config")
        );
    }

    #[test]
    fn config_set_errors_and_atomicity() {
        let config = Config::default();
        assert_eq!(
            set(&config, &[("foo", "bar")]).unwrap_err(),
            "ERR Unknown option or number of arguments for CONFIG SET - 'foo'"
        );
        // Names are all checked before any value.
        assert_eq!(
            set(&config, &[("timeout", "abc"), ("foo", "2")]).unwrap_err(),
            "ERR Unknown option or number of arguments for CONFIG SET - 'foo'"
        );
        assert_eq!(
            set(&config, &[("timeout", "1"), ("TIMEOUT", "2")]).unwrap_err(),
            "ERR CONFIG SET failed (possibly related to argument 'TIMEOUT') - duplicate parameter"
        );
        assert_eq!(
            set(&config, &[("timeout", "5"), ("MaxClients", "x")]).unwrap_err(),
            "ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument couldn't be parsed into an integer"
        );
        let updated = set(
            &config,
            &[
                ("timeout", "5"),
                ("maxclients", "20"),
                ("requirepass", "pw"),
                ("slowlog-max-len", "3"),
                ("proto-max-bulk-len", "2mb"),
                ("client-output-buffer-limit", "normal 1mb 512kb 10"),
            ],
        )
        .unwrap();
        assert_eq!(updated.server.timeout, 5);
        assert_eq!(updated.server.maxclients, 20);
        assert_eq!(updated.security.requirepass.as_deref(), Some("pw"));
        assert_eq!(updated.slowlog.max_len, 3);
        assert_eq!(updated.limits.proto_max_bulk_len, ByteSize(2 << 20));
        assert_eq!(
            updated.limits.client_output_buffer_soft_limit,
            ByteSize(512 << 10)
        );
    }

    #[test]
    fn a_current_value_outside_redis_range_is_accepted_back() {
        let mut config = Config::default();
        config.limits.proto_max_bulk_len = ByteSize(2048);
        assert_eq!(
            set(&config, &[("proto-max-bulk-len", "2048")]),
            Ok(config.clone())
        );
        assert!(set(&config, &[("proto-max-bulk-len", "4096")]).is_err());
    }

    #[test]
    fn help_replies_follow_redis_layout() {
        let Reply::Array(lines) = help_reply("CONFIG", CONFIG_HELP) else {
            panic!()
        };
        assert_eq!(lines.len(), 11);
        assert_eq!(
            lines[0],
            Reply::Simple("CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:".into())
        );
        assert_eq!(lines[10], Reply::Simple("    Prints this help.".into()));
    }
}
