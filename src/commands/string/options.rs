//! SET's and GETEX's options (Redis's `parseExtendedStringArgumentsOrReply`) and the
//! expiry deadlines they name (`getExpireMillisecondsOrReply`), with Redis's error texts and
//! its order of checks. Parsing only: nothing here touches the engine.

use bytes::Bytes;

use crate::commands::args::{self, is};
use crate::commands::CommandError;

/// Which command's options `parse_extended_options` reads: SET's or GETEX's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OptionSet {
    Set,
    GetEx,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ExpireKind {
    Ex,
    Px,
    ExAt,
    PxAt,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct ExtendedOptions<'a> {
    pub(super) nx: bool,
    pub(super) xx: bool,
    pub(super) get: bool,
    pub(super) keep_ttl: bool,
    pub(super) persist: bool,
    /// The last EX/PX/EXAT/PXAT and its unparsed amount (Redis validates it later, after
    /// the syntax, and for GETEX only once the key is known to exist).
    pub(super) expire: Option<(ExpireKind, &'a [u8])>,
}

/// Redis's `parseExtendedStringArgumentsOrReply`: options in any order; repeating the same
/// option is allowed (the last amount wins), combining conflicting ones is a syntax error.
pub(super) fn parse_extended_options(
    options: &[Bytes],
    mode: OptionSet,
) -> Result<ExtendedOptions<'_>, CommandError> {
    let mut parsed = ExtendedOptions::default();
    let for_set = mode == OptionSet::Set;
    let mut index = 0;
    while index < options.len() {
        let option = &options[index];
        let next = options.get(index + 1);
        let expire_kind = if is(option, "ex") {
            Some(ExpireKind::Ex)
        } else if is(option, "px") {
            Some(ExpireKind::Px)
        } else if is(option, "exat") {
            Some(ExpireKind::ExAt)
        } else if is(option, "pxat") {
            Some(ExpireKind::PxAt)
        } else {
            None
        };
        if is(option, "nx") && for_set && !parsed.xx {
            parsed.nx = true;
        } else if is(option, "xx") && for_set && !parsed.nx {
            parsed.xx = true;
        } else if is(option, "get") && for_set {
            parsed.get = true;
        } else if is(option, "keepttl") && for_set && !parsed.persist && parsed.expire.is_none() {
            parsed.keep_ttl = true;
        } else if is(option, "persist") && !for_set && parsed.expire.is_none() && !parsed.keep_ttl {
            parsed.persist = true;
        } else if let (Some(kind), Some(amount)) = (expire_kind, next) {
            let other_kind = parsed.expire.is_some_and(|(previous, _)| previous != kind);
            if parsed.keep_ttl || parsed.persist || other_kind {
                return Err(CommandError::syntax());
            }
            parsed.expire = Some((kind, amount));
            index += 1;
        } else {
            return Err(CommandError::syntax());
        }
        index += 1;
    }
    Ok(parsed)
}

/// Redis's `getExpireMillisecondsOrReply`: the absolute deadline in ms for an expiry option.
pub(super) fn expire_deadline(
    kind: ExpireKind,
    amount: &[u8],
    now_ms: u64,
    command: &str,
) -> Result<u64, CommandError> {
    let value = args::int(amount)?;
    let invalid = || CommandError::err(format!("invalid expire time in '{command}' command"));
    let in_seconds = matches!(kind, ExpireKind::Ex | ExpireKind::ExAt);
    if value <= 0 || (in_seconds && value > i64::MAX / 1000) {
        return Err(invalid());
    }
    let mut deadline = if in_seconds { value * 1000 } else { value };
    if matches!(kind, ExpireKind::Ex | ExpireKind::Px) {
        let now = i64::try_from(now_ms).map_err(|_| invalid())?;
        deadline = deadline.checked_add(now).ok_or_else(invalid)?;
    }
    // Positive by the checks above.
    Ok(deadline.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|word| Bytes::from(word.to_string()))
            .collect()
    }

    fn parse_set(words: &[&str]) -> Result<ExtendedOptions<'static>, String> {
        let owned: &'static [Bytes] = Box::leak(options(words).into_boxed_slice());
        parse_extended_options(owned, OptionSet::Set).map_err(|error| match error {
            error @ CommandError::Reply { .. } => error.to_string(),
            other => format!("{other:?}"),
        })
    }

    fn parse_getex(words: &[&str]) -> Result<ExtendedOptions<'static>, String> {
        let owned: &'static [Bytes] = Box::leak(options(words).into_boxed_slice());
        parse_extended_options(owned, OptionSet::GetEx).map_err(|error| match error {
            error @ CommandError::Reply { .. } => error.to_string(),
            other => format!("{other:?}"),
        })
    }

    #[test]
    fn set_options_combine_like_redis() {
        let parsed = parse_set(&["nx", "GET", "px", "100"]).unwrap();
        assert!(parsed.nx && parsed.get && !parsed.xx);
        assert_eq!(parsed.expire, Some((ExpireKind::Px, &b"100"[..])));
        // Repeats are fine; the last amount wins.
        let parsed = parse_set(&["EX", "10", "ex", "20", "nx", "nx"]).unwrap();
        assert_eq!(parsed.expire, Some((ExpireKind::Ex, &b"20"[..])));
        assert!(parse_set(&["keepttl", "xx"]).unwrap().keep_ttl);
        for bad in [
            &["nx", "xx"][..],
            &["ex", "10", "px", "100"],
            &["ex", "10", "keepttl"],
            &["keepttl", "exat", "10"],
            &["ex"],
            &["persist"],
            &["foo"],
            &["ex", "abc", "nx", "xx"],
        ] {
            assert_eq!(
                parse_set(bad),
                Err("ERR syntax error".to_string()),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn getex_options_differ_from_sets() {
        assert!(parse_getex(&["persist"]).unwrap().persist);
        assert_eq!(
            parse_getex(&["pxat", "5"]).unwrap().expire,
            Some((ExpireKind::PxAt, &b"5"[..]))
        );
        for bad in [
            &["get"][..],
            &["nx"],
            &["keepttl"],
            &["persist", "ex", "10"],
            &["ex"],
        ] {
            assert_eq!(
                parse_getex(bad),
                Err("ERR syntax error".to_string()),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn expire_deadlines_reject_what_redis_rejects() {
        let error = |result: Result<u64, CommandError>| match result {
            Err(error @ CommandError::Reply { .. }) => error.to_string(),
            other => format!("{other:?}"),
        };
        let now = 1_000_000;
        assert_eq!(
            expire_deadline(ExpireKind::Ex, b"10", now, "set").unwrap(),
            now + 10_000
        );
        assert_eq!(
            expire_deadline(ExpireKind::Px, b"10", now, "set").unwrap(),
            now + 10
        );
        assert_eq!(
            expire_deadline(ExpireKind::ExAt, b"10", now, "set").unwrap(),
            10_000
        );
        assert_eq!(
            expire_deadline(ExpireKind::PxAt, b"9223372036854775807", now, "set").unwrap(),
            i64::MAX as u64
        );
        for (kind, amount) in [
            (ExpireKind::Ex, &b"0"[..]),
            (ExpireKind::Px, b"-1"),
            (ExpireKind::Ex, b"9223372036854775"),
            (ExpireKind::ExAt, b"9223372036854776"),
            (ExpireKind::Px, b"9223372036854775807"),
        ] {
            assert_eq!(
                error(expire_deadline(kind, amount, now, "setex")),
                "ERR invalid expire time in 'setex' command"
            );
        }
        assert_eq!(
            error(expire_deadline(ExpireKind::Ex, b"1.5", now, "set")),
            "ERR value is not an integer or out of range"
        );
    }
}
