//! The `#!lua` first line, Redis's way: an EVAL body may start with `#!lua flags=...`
//! (without it, the script runs in compatibility mode: it may write, whatever it does), and
//! a FUNCTION library must start with `#!lua name=<library>`. This file owns parsing both,
//! the script flags and their names, and turning the line into a Lua comment so the code
//! compiles with its line numbers unchanged.

/// Script flags, in Redis's order (FUNCTION LIST prints them in this order).
pub const FLAG_NAMES: [(&str, u8); 5] = [
    ("no-writes", NO_WRITES),
    ("allow-oom", ALLOW_OOM),
    ("allow-stale", ALLOW_STALE),
    ("no-cluster", NO_CLUSTER),
    ("allow-cross-slot-keys", ALLOW_CROSS_SLOT_KEYS),
];

/// The script may not write: a write command inside it is refused.
pub const NO_WRITES: u8 = 1;
/// Accepted for Redis compatibility; writes inside meet the engine's own OOM refusals.
pub const ALLOW_OOM: u8 = 2;
/// Accepted; meaningful once replicas can serve stale data (replication, issue 16).
pub const ALLOW_STALE: u8 = 4;
/// Accepted; meaningful once cluster mode exists.
pub const NO_CLUSTER: u8 = 8;
pub const ALLOW_CROSS_SLOT_KEYS: u8 = 16;

/// The flag named `name`, if it is one.
pub fn flag_named(name: &[u8]) -> Option<u8> {
    FLAG_NAMES
        .iter()
        .find(|(flag, _)| flag.as_bytes() == name)
        .map(|(_, bit)| *bit)
}

/// The names of the flags set in `flags`, in Redis's order.
pub fn flag_list(flags: u8) -> impl Iterator<Item = &'static str> {
    FLAG_NAMES
        .iter()
        .filter(move |(_, bit)| flags & bit != 0)
        .map(|(name, _)| *name)
}

/// How an EVAL body runs: with a shebang, by its flags; without, in compatibility mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalMode {
    Compatible,
    Flagged(u8),
}

/// Parses an EVAL body's shebang, with Redis's error texts.
pub fn eval_mode(body: &[u8]) -> Result<EvalMode, String> {
    if !body.starts_with(b"#!") {
        return Ok(EvalMode::Compatible);
    }
    let Some(end) = body.iter().position(|&byte| byte == b'\n') else {
        return Err("Invalid script shebang".into());
    };
    let line = String::from_utf8_lossy(&body[..end]);
    let mut parts = line.split(' ').filter(|part| !part.is_empty());
    let engine = parts.next().unwrap_or_default();
    if engine != "#!lua" {
        return Err(format!("Unexpected engine in script shebang: {engine}"));
    }
    let mut flags = 0;
    for option in parts {
        let Some(list) = option.strip_prefix("flags=") else {
            return Err(format!("Unknown lua shebang option: {option}"));
        };
        for name in list.split(',').filter(|name| !name.is_empty()) {
            flags |= flag_named(name.as_bytes())
                .ok_or_else(|| format!("Unexpected flag in script shebang: {name}"))?;
        }
    }
    Ok(EvalMode::Flagged(flags))
}

/// Parses a library's first line and returns its name, with Redis's error texts.
pub fn library_name(code: &[u8]) -> Result<String, String> {
    if !code.starts_with(b"#!") {
        return Err("Missing library metadata".into());
    }
    let end = code
        .iter()
        .position(|&byte| byte == b'\n')
        .unwrap_or(code.len());
    let line = String::from_utf8_lossy(&code[2..end]);
    let mut parts = line.split(' ').filter(|part| !part.is_empty());
    let engine = parts.next().unwrap_or_default();
    if !engine.eq_ignore_ascii_case("lua") {
        return Err(format!("Engine '{engine}' not found"));
    }
    let mut name = None;
    for option in parts {
        match option.strip_prefix("name=") {
            Some(_) if name.is_some() => {
                return Err("Invalid metadata value, name argument was given multiple times".into())
            }
            Some(given) => name = Some(given.to_string()),
            None => return Err(format!("Invalid metadata value given: {option}")),
        }
    }
    let name = name.ok_or("Library name was not given")?;
    if !valid_name(&name) {
        return Err(INVALID_NAME.into());
    }
    Ok(name)
}

/// Redis's text for a bad library or function name (it says "Library" for both).
pub const INVALID_NAME: &str = "Library names can only contain letters, numbers, or underscores(_) and must be at least one character long";

/// Library and function names: letters, digits and underscores, at least one.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

/// The code with its shebang line made a Lua comment (`#!` becomes `--`), so it compiles
/// and its lines keep their numbers in error messages.
pub fn as_lua(code: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if code.starts_with(b"#!") {
        let mut owned = code.to_vec();
        owned[..2].copy_from_slice(b"--");
        std::borrow::Cow::Owned(owned)
    } else {
        std::borrow::Cow::Borrowed(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_shebangs_parse_as_redis_does() {
        assert_eq!(eval_mode(b"return 1"), Ok(EvalMode::Compatible));
        assert_eq!(eval_mode(b"#!lua\nreturn 1"), Ok(EvalMode::Flagged(0)));
        assert_eq!(
            eval_mode(b"#!lua flags=\nreturn 1"),
            Ok(EvalMode::Flagged(0))
        );
        assert_eq!(
            eval_mode(b"#!lua flags=no-writes,allow-oom\nreturn 1"),
            Ok(EvalMode::Flagged(NO_WRITES | ALLOW_OOM))
        );
        assert_eq!(
            eval_mode(b"#!lua"),
            Err("Invalid script shebang".to_string())
        );
        assert_eq!(
            eval_mode(b"#!js\n"),
            Err("Unexpected engine in script shebang: #!js".to_string())
        );
        assert_eq!(
            eval_mode(b"#!lua name=x\n"),
            Err("Unknown lua shebang option: name=x".to_string())
        );
        assert_eq!(
            eval_mode(b"#!lua flags=bad\n"),
            Err("Unexpected flag in script shebang: bad".to_string())
        );
    }

    #[test]
    fn library_lines_parse_as_redis_does() {
        assert_eq!(library_name(b"#!lua name=my_lib\n"), Ok("my_lib".into()));
        assert_eq!(
            library_name(b"return 1"),
            Err("Missing library metadata".into())
        );
        assert_eq!(
            library_name(b"#!lua\n"),
            Err("Library name was not given".into())
        );
        assert_eq!(library_name(b"#!lua name=a-b\n"), Err(INVALID_NAME.into()));
        assert_eq!(
            library_name(b"#!lua name=a foo=bar\n"),
            Err("Invalid metadata value given: foo=bar".into())
        );
        assert_eq!(
            library_name(b"#!lua name=a name=b\n"),
            Err("Invalid metadata value, name argument was given multiple times".into())
        );
        assert_eq!(
            library_name(b"#!js name=a\n"),
            Err("Engine 'js' not found".into())
        );
    }

    #[test]
    fn the_shebang_becomes_a_comment_and_flags_keep_redis_order() {
        assert_eq!(&*as_lua(b"#!lua\nreturn 1"), b"--lua\nreturn 1");
        assert_eq!(&*as_lua(b"return 1"), b"return 1");
        let names: Vec<_> = flag_list(ALLOW_CROSS_SLOT_KEYS | NO_WRITES).collect();
        assert_eq!(names, ["no-writes", "allow-cross-slot-keys"]);
    }
}
