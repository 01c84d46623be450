//! SLOWLOG GET / LEN / RESET over the server's slow log (`metrics::SlowLog`).

use bytes::Bytes;

use super::subcommand_syntax_error;
use crate::commands::args;
use crate::commands::{help_reply, CommandError, CommandResult, Ctx};
use crate::protocol::Reply;

const SLOWLOG_HELP: &[&str] = &[
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
];

pub(super) fn slowlog_help(_ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    Ok(help_reply("SLOWLOG", SLOWLOG_HELP))
}

/// How many entries SLOWLOG GET returns: 10 by default, -1 = all.
fn slowlog_count(arg: Option<&Bytes>) -> Result<usize, CommandError> {
    let Some(arg) = arg else {
        return Ok(10);
    };
    match args::parse_i64(arg) {
        Some(-1) => Ok(usize::MAX),
        Some(count) if count >= 0 => Ok(usize::try_from(count).unwrap_or(usize::MAX)),
        _ => Err(CommandError::err(
            "count should be greater than or equal to -1",
        )),
    }
}

pub(super) fn slowlog_get(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    if args.len() > 3 {
        return Err(subcommand_syntax_error("SLOWLOG", &args[1]));
    }
    let count = slowlog_count(args.get(2))?;
    let entries = ctx
        .shared
        .slowlog
        .latest(count)
        .into_iter()
        .map(|entry| {
            Reply::Array(vec![
                Reply::Integer(i64::try_from(entry.id).unwrap_or(i64::MAX)),
                Reply::Integer(i64::try_from(entry.unix_time).unwrap_or(i64::MAX)),
                Reply::Integer(i64::try_from(entry.micros).unwrap_or(i64::MAX)),
                Reply::Array(entry.args.into_iter().map(Reply::Bulk).collect()),
                Reply::bulk(entry.client_addr),
                Reply::bulk(entry.client_name),
            ])
        })
        .collect();
    Ok(Reply::Array(entries))
}

pub(super) fn slowlog_len(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    Ok(Reply::Integer(
        i64::try_from(ctx.shared.slowlog.len()).unwrap_or(i64::MAX),
    ))
}

pub(super) fn slowlog_reset(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> CommandResult {
    ctx.shared.slowlog.reset();
    Ok(Reply::ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slowlog_counts() {
        let count = |text: &'static str| slowlog_count(Some(&Bytes::from_static(text.as_bytes())));
        assert_eq!(slowlog_count(None).unwrap(), 10);
        assert_eq!(count("-1").unwrap(), usize::MAX);
        assert_eq!(count("0").unwrap(), 0);
        assert_eq!(count("3").unwrap(), 3);
        for bad in ["-2", "x", "1.5"] {
            assert!(
                matches!(count(bad), Err(error @ CommandError::Reply { .. }) if error.to_string() == "ERR count should be greater than or equal to -1")
            );
        }
    }
}
