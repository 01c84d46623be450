//! The DEBUG subset clients' test suites use (SLEEP, SET-ACTIVE-EXPIRE, HELP), reading its
//! arguments as Redis's C code does. SLEEP blocks only its own client, on a blocking thread.

use std::time::Duration;

use bytes::Bytes;

use super::subcommand_syntax_error;
use crate::commands::args::is;
use crate::commands::{help_reply, CommandResult, Ctx};
use crate::protocol::Reply;

const DEBUG_HELP: &[&str] = &[
    "SET-ACTIVE-EXPIRE <0|1>",
    "    Setting it to 0 disables expiring keys in background when they are not",
    "    accessed (otherwise the Redis behavior). Setting it to 1 reenables back the",
    "    default.",
    "SLEEP <seconds>",
    "    Stop the server for <seconds>. Decimals allowed.",
];

pub(super) fn debug(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let subcommand = &args[1];
    match args.len() {
        2 if is(subcommand, "help") => Ok(help_reply("DEBUG", DEBUG_HELP)),
        3 if is(subcommand, "sleep") => {
            ctx.off_async_workers()?;
            // Only this client waits; Redis would stop the whole server.
            std::thread::sleep(sleep_duration(&args[2]));
            Ok(Reply::ok())
        }
        3 if is(subcommand, "set-active-expire") => {
            ctx.engine().set_active_expiry(c_atoi(&args[2]) != 0);
            Ok(Reply::ok())
        }
        _ => Err(subcommand_syntax_error("DEBUG", subcommand)),
    }
}

/// DEBUG SLEEP reads its argument with C's `strtod`: the longest numeric prefix, 0 when
/// there is none. Negative and unrepresentable times do not sleep.
fn sleep_duration(arg: &[u8]) -> Duration {
    // A number's text is short; looking further would only cost time on junk input.
    let text = String::from_utf8_lossy(&arg[..arg.len().min(64)]);
    let text = text.trim_start();
    let seconds = (1..=text.len())
        .rev()
        .filter(|end| text.is_char_boundary(*end))
        .find_map(|end| text[..end].parse::<f64>().ok())
        .unwrap_or(0.0);
    Duration::try_from_secs_f64(seconds).unwrap_or(Duration::ZERO)
}

/// C's `atoi`: leading spaces, an optional sign, then digits; 0 when there are none.
fn c_atoi(arg: &[u8]) -> i64 {
    let mut bytes = arg
        .iter()
        .skip_while(|byte| byte.is_ascii_whitespace())
        .peekable();
    let negative = match bytes.peek() {
        Some(b'-') => {
            bytes.next();
            true
        }
        Some(b'+') => {
            bytes.next();
            false
        }
        _ => false,
    };
    let magnitude = bytes
        .take_while(|byte| byte.is_ascii_digit())
        .fold(0i64, |total, digit| {
            total
                .saturating_mul(10)
                .saturating_add(i64::from(digit - b'0'))
        });
    if negative {
        -magnitude
    } else {
        magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_arguments_parse_like_c() {
        assert_eq!(sleep_duration(b"0.25"), Duration::from_millis(250));
        assert_eq!(sleep_duration(b"1.5abc"), Duration::from_millis(1500));
        assert_eq!(sleep_duration(b"abc"), Duration::ZERO);
        assert_eq!(sleep_duration(b"-1"), Duration::ZERO);
        assert_eq!(sleep_duration(b"inf"), Duration::ZERO);
        assert_eq!(sleep_duration("\u{e9}1".as_bytes()), Duration::ZERO);
        assert_eq!(c_atoi(b"1"), 1);
        assert_eq!(c_atoi(b" -2x"), -2);
        assert_eq!(c_atoi(b"x"), 0);
        assert_eq!(c_atoi(b"99999999999999999999999"), i64::MAX);
    }
}
