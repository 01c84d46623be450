//! Argument parsing with Redis's rules and error texts.

use bytes::Bytes;

use super::CommandError;

/// A signed 64-bit integer as Redis reads it (`string2ll`): optional '-', digits, no '+',
/// no spaces, no leading zeros except "0" itself.
pub fn parse_i64(arg: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(arg).ok()?;
    if text.is_empty() || text.starts_with('+') || text.len() > 20 {
        return None;
    }
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty()
        || (digits.len() > 1 && digits.starts_with('0'))
        || digits == "0" && text.starts_with('-')
    {
        return None;
    }
    text.parse().ok()
}

pub fn int(arg: &[u8]) -> Result<i64, CommandError> {
    parse_i64(arg).ok_or_else(CommandError::not_integer)
}

/// A float as Redis reads it: no spaces, not NaN; "inf" / "-inf" allowed.
pub fn parse_f64(arg: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(arg).ok()?;
    if text.is_empty() || text.trim() != text {
        return None;
    }
    let value: f64 = match text.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ => text.parse().ok()?,
    };
    (!value.is_nan()).then_some(value)
}

pub fn float(arg: &[u8]) -> Result<f64, CommandError> {
    parse_f64(arg).ok_or_else(|| CommandError::err("value is not a valid float"))
}

/// Case-insensitive keyword comparison.
pub fn is(arg: &[u8], keyword: &str) -> bool {
    arg.eq_ignore_ascii_case(keyword.as_bytes())
}

/// A database index argument (SELECT, MOVE, COPY ... DB).
pub fn db_index(arg: &[u8], databases: u16) -> Result<u16, CommandError> {
    let index = int(arg)?;
    u16::try_from(index)
        .ok()
        .filter(|db| *db < databases)
        .ok_or_else(|| CommandError::err("DB index is out of range"))
}

/// Lossy text for error messages and names.
pub fn text(arg: &Bytes) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

/// Formats an integer reply value into a bulk string (INCR results stored as text).
pub fn int_bytes(value: i64) -> Bytes {
    Bytes::from(value.to_string())
}

/// Redis's `%.17Lg`-style rendering for INCRBYFLOAT results: the shortest text that reads
/// back as the same number, without exponent for ordinary magnitudes.
pub fn float_text(value: f64) -> String {
    if value.is_infinite() {
        return if value > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    if value == value.trunc() && value.abs() < 1e17 {
        return format!("{}", value as i64);
    }
    let text = format!("{value}");
    if text.contains('e') {
        format!("{value:.17}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_follow_string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"+1",
            b" 1",
            b"1 ",
            b"01",
            b"-0",
            b"1.0",
            b"9223372036854775808",
            b"abc",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn floats_reject_nan_and_spaces() {
        assert_eq!(parse_f64(b"1.5"), Some(1.5));
        assert_eq!(parse_f64(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_f64(b"5e3"), Some(5000.0));
        assert_eq!(parse_f64(b"nan"), None);
        assert_eq!(parse_f64(b" 1"), None);
        assert_eq!(float_text(3.0), "3");
        assert_eq!(float_text(10.5), "10.5");
        assert_eq!(float_text(0.1 + 0.2), "0.30000000000000004");
    }
}
