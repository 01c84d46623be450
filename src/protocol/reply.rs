//! Reply encoding for RESP2 and RESP3, with RESP3-only types downgraded for RESP2 clients
//! exactly as Redis downgrades them.

use std::fmt::{self, Write as _};

use bytes::{BufMut, Bytes, BytesMut};

/// One reply, in RESP3 terms; [`write_reply`] downgrades it for RESP2 clients.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+OK`. A `\r` or `\n` in the text is sent as a space.
    Simple(String),
    /// The whole text after `-`, code included: `ERR syntax error`, `WRONGTYPE ...`. A `\r` or
    /// `\n` in the text is sent as a space.
    Error(String),
    Integer(i64),
    Bulk(Bytes),
    /// A missing value: `$-1` in RESP2.
    Nil,
    /// A missing aggregate: `*-1` in RESP2.
    NilArray,
    Array(Vec<Reply>),
    Map(Vec<(Reply, Reply)>),
    Set(Vec<Reply>),
    Double(f64),
    Boolean(bool),
    /// Text with a three-letter format such as `txt` or `mkd`; RESP2 gets the text alone.
    Verbatim {
        format: [u8; 3],
        text: Bytes,
    },
    /// Out-of-band data (pub/sub messages, invalidations); a plain array in RESP2.
    Push(Vec<Reply>),
    /// An integer of any size, as decimal text (`(` in RESP3, a bulk string in RESP2); only
    /// scripts make one (`{big_number=...}`).
    BigNumber(String),
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Reply {
        Reply::Simple("OK".to_owned())
    }

    /// A bulk string: binary-safe, length-prefixed.
    pub fn bulk(bytes: impl Into<Bytes>) -> Reply {
        Reply::Bulk(bytes.into())
    }
}

/// The protocol a connection speaks: RESP2 until the client switches with `HELLO 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolVersion {
    Resp2,
    Resp3,
}

/// Appends the encoding of `reply` to `out`.
pub fn write_reply(out: &mut BytesMut, reply: &Reply, version: ProtocolVersion) {
    use ProtocolVersion::{Resp2, Resp3};
    match (reply, version) {
        (Reply::Simple(text), _) => write_text_line(out, b'+', text),
        (Reply::Error(text), _) => write_text_line(out, b'-', text),
        (Reply::Integer(n), _) => write_integer_line(out, b':', *n),
        (Reply::Bulk(data), _) | (Reply::Verbatim { text: data, .. }, Resp2) => {
            write_bulk(out, data);
        }
        (Reply::Nil | Reply::NilArray, Resp3) => out.extend_from_slice(b"_\r\n"),
        (Reply::Nil, Resp2) => out.extend_from_slice(b"$-1\r\n"),
        (Reply::NilArray, Resp2) => out.extend_from_slice(b"*-1\r\n"),
        (Reply::Array(items), _) | (Reply::Set(items) | Reply::Push(items), Resp2) => {
            write_aggregate(out, b'*', items, version);
        }
        (Reply::Set(items), Resp3) => write_aggregate(out, b'~', items, version),
        (Reply::Push(items), Resp3) => write_aggregate(out, b'>', items, version),
        (Reply::Map(pairs), _) => {
            match version {
                Resp3 => write_length_line(out, b'%', pairs.len()),
                Resp2 => write_length_line(out, b'*', pairs.len() * 2),
            }
            for (key, value) in pairs {
                write_reply(out, key, version);
                write_reply(out, value, version);
            }
        }
        (Reply::Double(value), _) => {
            let mut text = StackText::new();
            format_double(*value, &mut text);
            match version {
                Resp3 => write_line(out, b',', text.as_bytes()),
                Resp2 => write_bulk(out, text.as_bytes()),
            }
        }
        (Reply::BigNumber(text), Resp3) => write_line(out, b'(', text.as_bytes()),
        (Reply::BigNumber(text), Resp2) => write_bulk(out, text.as_bytes()),
        (Reply::Boolean(value), Resp3) => {
            out.extend_from_slice(if *value { b"#t\r\n" } else { b"#f\r\n" });
        }
        (Reply::Boolean(value), Resp2) => {
            out.extend_from_slice(if *value { b":1\r\n" } else { b":0\r\n" });
        }
        (Reply::Verbatim { format, text }, Resp3) => {
            write_length_line(out, b'=', text.len() + 4);
            out.reserve(text.len() + 6);
            out.extend_from_slice(format);
            out.put_u8(b':');
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
        }
    }
}

fn write_aggregate(out: &mut BytesMut, prefix: u8, items: &[Reply], version: ProtocolVersion) {
    write_length_line(out, prefix, items.len());
    for item in items {
        write_reply(out, item, version);
    }
}

fn write_line(out: &mut BytesMut, prefix: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(prefix);
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
}

/// Writes a simple-string-style line whose text the client cannot length-check: a `\r` or `\n`
/// in it would end the reply early and desynchronise the stream, so (like Redis does for
/// errors) they become spaces.
fn write_text_line(out: &mut BytesMut, prefix: u8, text: &str) {
    let start = out.len() + 1;
    write_line(out, prefix, text.as_bytes());
    let end = out.len() - 2;
    for byte in &mut out[start..end] {
        if matches!(*byte, b'\r' | b'\n') {
            *byte = b' ';
        }
    }
}

fn write_bulk(out: &mut BytesMut, data: &[u8]) {
    out.reserve(HEADER_LEN + data.len() + 2);
    write_length_line(out, b'$', data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

fn write_length_line(out: &mut BytesMut, prefix: u8, len: usize) {
    // usize is at most 64 bits on every target Rust supports.
    write_number_line(out, prefix, false, len as u64);
}

fn write_integer_line(out: &mut BytesMut, prefix: u8, value: i64) {
    write_number_line(out, prefix, value < 0, value.unsigned_abs());
}

/// Room for a type byte, a sign, the 20 digits of `u64::MAX` and `\r\n`.
const HEADER_LEN: usize = 24;

/// Writes `<prefix><number>\r\n`, assembled on the stack so `out` takes a single copy.
fn write_number_line(out: &mut BytesMut, prefix: u8, negative: bool, magnitude: u64) {
    let mut line = [0; HEADER_LEN];
    line[HEADER_LEN - 2..].copy_from_slice(b"\r\n");
    let start = format_decimal(negative, magnitude, &mut line[..HEADER_LEN - 2]) - 1;
    line[start] = prefix;
    out.extend_from_slice(&line[start..]);
}

/// Formats `magnitude` (negated if `negative`) into the end of `buf`, which must hold at least
/// 21 bytes, and returns where the text starts.
fn format_decimal(negative: bool, mut magnitude: u64, buf: &mut [u8]) -> usize {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if negative {
        start -= 1;
        buf[start] = b'-';
    }
    start
}

/// Significant digits in C's `%.17g`, which Redis uses for doubles: enough to round-trip any
/// f64.
const DOUBLE_DIGITS: usize = 17;

/// Writes `value` as Redis 7.0 does (`%.17g`, with `inf`, `-inf` and `nan` spelt out), so
/// that scores read back identically from HyperCache and Redis.
fn format_double(value: f64, out: &mut StackText) {
    if value.is_nan() {
        out.push(b"nan");
        return;
    }
    if value.is_infinite() {
        out.push(if value > 0.0 { b"inf" } else { b"-inf" });
        return;
    }
    if value.is_sign_negative() {
        out.push(b"-");
    }
    let value = value.abs();
    // Below 2^52 an integral value's `%.17g` form is its plain decimal digits; this is the
    // common case (counters, integer scores) and integer formatting is much cheaper.
    if value.fract() == 0.0 && value < 4_503_599_627_370_496.0 {
        let mut digits = [0; HEADER_LEN];
        let start = format_decimal(false, value as u64, &mut digits);
        out.push(&digits[start..]);
        return;
    }

    // Rust's `{:.16e}` is correctly rounded to 17 significant digits, like glibc's printf;
    // only the layout differs from `%g`'s, so it is rearranged below.
    let mut scientific = StackText::new();
    write!(scientific, "{value:.16e}").expect("`{:.16e}` of a finite f64 is at most 23 bytes");
    let text = scientific.as_bytes();
    let exponent_at = text.iter().position(|&b| b == b'e').unwrap_or(text.len());
    let (mantissa, exponent) = text.split_at(exponent_at);
    let mut digits = [b'0'; DOUBLE_DIGITS];
    for (slot, &digit) in digits
        .iter_mut()
        .zip(mantissa.iter().filter(|&&b| b != b'.'))
    {
        *slot = digit;
    }
    let exponent = exponent_value(exponent.get(1..).unwrap_or_default());
    // `%g` drops trailing zeros of the fraction, and the point with them.
    let significant = digits
        .iter()
        .rposition(|&b| b != b'0')
        .map_or(1, |last| last + 1);
    let digits = &digits[..significant];

    if !(-4..DOUBLE_DIGITS as i32).contains(&exponent) {
        out.push(&digits[..1]);
        if digits.len() > 1 {
            out.push(b".");
            out.push(&digits[1..]);
        }
        out.push(if exponent < 0 { b"e-" } else { b"e+" });
        let magnitude = exponent.unsigned_abs();
        if magnitude < 10 {
            out.push(b"0");
        }
        let mut exponent_digits = [0; HEADER_LEN];
        let start = format_decimal(false, magnitude.into(), &mut exponent_digits);
        out.push(&exponent_digits[start..]);
    } else if exponent >= 0 {
        let integer_len = exponent as usize + 1;
        if digits.len() > integer_len {
            out.push(&digits[..integer_len]);
            out.push(b".");
            out.push(&digits[integer_len..]);
        } else {
            out.push(digits);
            for _ in digits.len()..integer_len {
                out.push(b"0");
            }
        }
    } else {
        out.push(b"0.");
        for _ in 1..exponent.unsigned_abs() {
            out.push(b"0");
        }
        out.push(digits);
    }
}

/// Parses the exponent of Rust's `{:e}` output: an optional `-` and decimal digits.
fn exponent_value(text: &[u8]) -> i32 {
    let (sign, digits) = match text.split_first() {
        Some((b'-', rest)) => (-1, rest),
        _ => (1, text),
    };
    sign * digits
        .iter()
        .fold(0i32, |acc, &d| acc * 10 + i32::from(d.wrapping_sub(b'0')))
}

/// A fixed stack buffer, so formatting a double allocates nothing.
struct StackText {
    bytes: [u8; 32],
    len: usize,
}

impl StackText {
    fn new() -> Self {
        Self {
            bytes: [0; 32],
            len: 0,
        }
    }

    /// Appends `text`. Callers stay within the buffer by construction: the longest `%.17g`
    /// output, such as `-2.2250738585072014e-308`, is 24 bytes.
    fn push(&mut self, text: &[u8]) {
        self.bytes[self.len..self.len + text.len()].copy_from_slice(text);
        self.len += text.len();
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let end = self.len + text.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProtocolVersion::{Resp2, Resp3};

    fn encode(reply: &Reply, version: ProtocolVersion) -> Vec<u8> {
        let mut out = BytesMut::from(&b"prefix"[..]);
        write_reply(&mut out, reply, version);
        assert_eq!(&out[..6], b"prefix", "write_reply must append");
        out[6..].to_vec()
    }

    /// Checks `reply`'s exact bytes in RESP2 and RESP3.
    fn check(reply: Reply, resp2: &[u8], resp3: &[u8]) {
        assert_eq!(
            String::from_utf8_lossy(&encode(&reply, Resp2)),
            String::from_utf8_lossy(resp2),
            "RESP2 {reply:?}"
        );
        assert_eq!(
            String::from_utf8_lossy(&encode(&reply, Resp3)),
            String::from_utf8_lossy(resp3),
            "RESP3 {reply:?}"
        );
    }

    fn double_text(value: f64) -> String {
        let mut text = StackText::new();
        format_double(value, &mut text);
        String::from_utf8_lossy(text.as_bytes()).into_owned()
    }

    #[test]
    fn scalars() {
        check(Reply::ok(), b"+OK\r\n", b"+OK\r\n");
        check(
            Reply::Simple("two\r\nlines".into()),
            b"+two  lines\r\n",
            b"+two  lines\r\n",
        );
        check(
            Reply::Error("ERR syntax error".into()),
            b"-ERR syntax error\r\n",
            b"-ERR syntax error\r\n",
        );
        check(
            Reply::Error("ERR bad\r\nthing\n".into()),
            b"-ERR bad  thing \r\n",
            b"-ERR bad  thing \r\n",
        );
        check(Reply::Integer(0), b":0\r\n", b":0\r\n");
        check(Reply::Integer(-42), b":-42\r\n", b":-42\r\n");
        check(
            Reply::Integer(i64::MIN),
            b":-9223372036854775808\r\n",
            b":-9223372036854775808\r\n",
        );
        check(
            Reply::Integer(i64::MAX),
            b":9223372036854775807\r\n",
            b":9223372036854775807\r\n",
        );
        check(
            Reply::bulk(&b"a\r\nb"[..]),
            b"$4\r\na\r\nb\r\n",
            b"$4\r\na\r\nb\r\n",
        );
        check(Reply::bulk(""), b"$0\r\n\r\n", b"$0\r\n\r\n");
        check(Reply::Nil, b"$-1\r\n", b"_\r\n");
        check(Reply::NilArray, b"*-1\r\n", b"_\r\n");
        check(Reply::Boolean(true), b":1\r\n", b"#t\r\n");
        check(Reply::Boolean(false), b":0\r\n", b"#f\r\n");
        check(
            Reply::Verbatim {
                format: *b"txt",
                text: Bytes::from_static(b"Some string"),
            },
            b"$11\r\nSome string\r\n",
            b"=15\r\ntxt:Some string\r\n",
        );
        check(
            Reply::BigNumber("123456789012345678901234567890".into()),
            b"$30\r\n123456789012345678901234567890\r\n",
            b"(123456789012345678901234567890\r\n",
        );
    }

    #[test]
    fn doubles() {
        check(Reply::Double(3.5), b"$3\r\n3.5\r\n", b",3.5\r\n");
        check(Reply::Double(1.0), b"$1\r\n1\r\n", b",1\r\n");
        check(Reply::Double(f64::INFINITY), b"$3\r\ninf\r\n", b",inf\r\n");
        check(
            Reply::Double(f64::NEG_INFINITY),
            b"$4\r\n-inf\r\n",
            b",-inf\r\n",
        );
        check(Reply::Double(f64::NAN), b"$3\r\nnan\r\n", b",nan\r\n");
        check(
            Reply::Double(0.1),
            b"$19\r\n0.10000000000000001\r\n",
            b",0.10000000000000001\r\n",
        );
    }

    #[test]
    fn double_text_matches_redis_and_printf() {
        // Left: what Redis 7.0 ZSCORE (or C printf "%.17g") gives for the value on the right.
        let cases: &[(&str, f64)] = &[
            ("0", 0.0),
            ("-0", -0.0),
            ("1", 1.0),
            ("-17", -17.0),
            ("3.5", 3.5),
            ("-2.25", -2.25),
            ("0.10000000000000001", 0.1),
            ("0.30000000000000004", 0.1 + 0.2),
            ("123456789.123", 123_456_789.123),
            ("0.0001", 0.0001),
            ("1.0000000000000001e-05", 1e-5),
            ("2.5000000000000001e-05", 2.5e-5),
            ("1.4999999999999999e-07", 1.5e-7),
            ("1000000000000000", 1e15),
            ("10000000000000000", 1e16),
            ("1e+17", 1e17),
            ("1.2345678901234568e+17", 123_456_789_012_345_678.0),
            ("4.6116860184273879e+18", 4_611_686_018_427_387_904.0),
            ("1e+20", 1e20),
            ("9.9999999999999992e+22", 1e23),
            ("1.0000000000000001e+300", 1e300),
            ("-1e-300", -1e-300),
            ("1.7976931348623157e+308", f64::MAX),
            ("-1.7976931348623157e+308", f64::MIN),
            ("2.2250738585072014e-308", f64::MIN_POSITIVE),
            ("4.9406564584124654e-324", 5e-324),
            ("9007199254740992", 9_007_199_254_740_992.0),
            ("4503599627370495.5", 4_503_599_627_370_495.5),
            // Exact ties at the 17th digit round half to even, as glibc does.
            ("2251799813685246.2", 2_251_799_813_685_246.0 + 0.25),
            ("2251799813685247.8", 2_251_799_813_685_247.0 + 0.75),
        ];
        for &(expected, value) in cases {
            assert_eq!(double_text(value), expected, "{value:e}");
        }
    }

    #[test]
    fn aggregates() {
        let items = vec![Reply::Integer(1), Reply::bulk("a"), Reply::Nil];
        check(
            Reply::Array(items.clone()),
            b"*3\r\n:1\r\n$1\r\na\r\n$-1\r\n",
            b"*3\r\n:1\r\n$1\r\na\r\n_\r\n",
        );
        check(
            Reply::Set(items.clone()),
            b"*3\r\n:1\r\n$1\r\na\r\n$-1\r\n",
            b"~3\r\n:1\r\n$1\r\na\r\n_\r\n",
        );
        check(
            Reply::Push(items),
            b"*3\r\n:1\r\n$1\r\na\r\n$-1\r\n",
            b">3\r\n:1\r\n$1\r\na\r\n_\r\n",
        );
        check(
            Reply::Map(vec![
                (Reply::bulk("score"), Reply::Double(1.5)),
                (Reply::Simple("flag".into()), Reply::Boolean(true)),
            ]),
            b"*4\r\n$5\r\nscore\r\n$3\r\n1.5\r\n+flag\r\n:1\r\n",
            b"%2\r\n$5\r\nscore\r\n,1.5\r\n+flag\r\n#t\r\n",
        );
        check(Reply::Array(vec![]), b"*0\r\n", b"*0\r\n");
        check(Reply::Map(vec![]), b"*0\r\n", b"%0\r\n");
        check(Reply::Set(vec![]), b"*0\r\n", b"~0\r\n");
        check(
            Reply::Array(vec![
                Reply::Array(vec![Reply::NilArray]),
                Reply::Set(vec![]),
            ]),
            b"*2\r\n*1\r\n*-1\r\n*0\r\n",
            b"*2\r\n*1\r\n_\r\n~0\r\n",
        );
    }

    #[test]
    fn lengths_use_all_their_digits() {
        let data = Bytes::from(vec![b'x'; 1234]);
        let encoded = encode(&Reply::Bulk(data), Resp2);
        assert!(encoded.starts_with(b"$1234\r\nxxx"));
        assert!(encoded.ends_with(b"xxx\r\n"));
        assert_eq!(encoded.len(), 7 + 1234 + 2);
    }
}
