//! Request parsing: multibulk (`*N\r\n$len\r\n...`) and inline commands.
//!
//! Parsing is stateless and two-phase, like mini-redis's `Frame::check` / `Frame::parse`: a
//! scan over the buffered bytes decides whether a whole command is there (skipping bulk data
//! by its length, so only header lines are read), and only then is the command split off the
//! buffer, its arguments being zero-copy slices of one frozen `Bytes`. The accept/reject rules
//! follow Redis's `processMultibulkBuffer` / `processInlineBuffer`, including their leniency
//! (the byte after a header's `\r` and the two bytes after bulk data are not checked).

use std::fmt;
use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};

/// Longest `*N` / `$N` header line before giving up on its `\r`. Redis uses its fixed
/// `PROTO_INLINE_MAX_SIZE` here, independently of any configurable limit.
const MAX_HEADER_LEN: usize = 64 * 1024;

/// Bounds on what one command may make the server buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParserLimits {
    /// Longest bulk argument, in bytes (Redis `proto-max-bulk-len`).
    pub max_bulk_len: usize,
    /// Most arguments in one multibulk command.
    pub max_multibulk_len: usize,
    /// Longest inline command line, in bytes, counting a trailing `\r` but not the `\n`.
    pub max_inline_len: usize,
    /// The client has not authenticated where a password is required: as Redis does, it may
    /// announce at most [`UNAUTHENTICATED_MAX_MULTIBULK_LEN`] arguments of at most
    /// [`UNAUTHENTICATED_MAX_BULK_LEN`] bytes, so it cannot make the server buffer a large
    /// request before it has proved who it is.
    pub unauthenticated: bool,
    /// What all clients' buffers may hold together (`maxmemory-clients`; 0 = no bound): an
    /// argument longer than that could never be received without closing its client, so it
    /// is refused as soon as its length is read.
    pub client_memory_limit: usize,
}

/// Most arguments an unauthenticated client may announce (Redis's `ll > 10` check).
pub const UNAUTHENTICATED_MAX_MULTIBULK_LEN: usize = 10;
/// Longest argument an unauthenticated client may announce (Redis's `ll > 16384` check).
pub const UNAUTHENTICATED_MAX_BULK_LEN: usize = 16384;

impl Default for ParserLimits {
    fn default() -> Self {
        Self {
            max_bulk_len: 512 * 1024 * 1024,
            max_multibulk_len: 1024 * 1024,
            max_inline_len: 64 * 1024,
            unauthenticated: false,
            client_memory_limit: 0,
        }
    }
}

/// A malformed request. Redis replies `-ERR <Display text>` and closes the connection: the
/// stream cannot be resynchronised, so the caller must not parse the same buffer again.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A `*` count that is not an integer or exceeds `max_multibulk_len`.
    InvalidMultibulkLength,
    /// A `*` count above what an unauthenticated client may send.
    UnauthenticatedMultibulkLength,
    /// A `$` length above what an unauthenticated client may send.
    UnauthenticatedBulkLength,
    /// A `$` length that is not an integer, is negative, or exceeds `max_bulk_len`.
    InvalidBulkLength,
    /// A `$` length above `client_memory_limit`.
    BulkOverClientMemory,
    /// An argument header not starting with `$`; holds the byte found instead.
    ExpectedDollar(u8),
    /// An inline line longer than `max_inline_len`.
    TooBigInlineRequest,
    /// A `*` header line with no `\r` within 64 KiB.
    TooBigMultibulkCountString,
    /// A `$` header line with no `\r` within 64 KiB.
    TooBigBulkCountString,
    /// An inline quote that is never closed, or is closed but not followed by a space.
    UnbalancedQuotes,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Self::InvalidMultibulkLength => "invalid multibulk length",
            Self::InvalidBulkLength => "invalid bulk length",
            Self::UnauthenticatedMultibulkLength => "unauthenticated multibulk length",
            Self::UnauthenticatedBulkLength => "unauthenticated bulk length",
            Self::BulkOverClientMemory => {
                "bulk length larger than all clients may buffer (maxmemory-clients)"
            }
            // Redis prints the raw byte; a `String` cannot hold a lone byte >= 0x80, so those
            // come out as the Latin-1 character of the same value.
            Self::ExpectedDollar(byte) => {
                return write!(
                    f,
                    "Protocol error: expected '$', got '{}'",
                    char::from(*byte)
                );
            }
            Self::TooBigInlineRequest => "too big inline request",
            Self::TooBigMultibulkCountString => "too big mbulk count string",
            Self::TooBigBulkCountString => "too big bulk count string",
            Self::UnbalancedQuotes => "unbalanced quotes in request",
        };
        write!(f, "Protocol error: {what}")
    }
}

impl std::error::Error for ProtocolError {}

/// Parses one command from the front of `buf`.
///
/// `Ok(Some(args))` consumes exactly that command's bytes; the arguments are zero-copy slices
/// of them, and there is always at least one. `Ok(None)` means no complete command is buffered
/// yet: nothing of it was consumed, though no-op frames in front of it (empty inline lines,
/// `*0`, `*-1`) were, since they carry nothing to wait for. After an `Err` the stream is lost.
pub fn parse_command(
    buf: &mut BytesMut,
    limits: &ParserLimits,
) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    loop {
        let step = match buf.first() {
            None => return Ok(None),
            Some(b'*') => parse_multibulk(buf, limits)?,
            Some(_) => parse_inline(buf, limits)?,
        };
        match step {
            Step::Incomplete => return Ok(None),
            Step::Command(args) => return Ok(Some(args)),
            Step::Skipped => {}
        }
    }
}

enum Step {
    Incomplete,
    /// A frame with no arguments was consumed.
    Skipped,
    Command(Vec<Bytes>),
}

/// The extent of a complete multibulk frame at the front of a buffer.
struct Frame {
    len: usize,
    argc: usize,
}

/// Arguments whose ranges the first walk over a frame records on the stack: most commands
/// have no more, and theirs need no second walk.
const FEW_ARGS: usize = 8;

fn parse_multibulk(buf: &mut BytesMut, limits: &ParserLimits) -> Result<Step, ProtocolError> {
    let mut few = [(0usize, 0usize); FEW_ARGS];
    let mut seen = 0;
    let Some(frame) = scan_multibulk(buf, limits, |range| {
        if let Some(slot) = few.get_mut(seen) {
            *slot = (range.start, range.end);
        }
        seen += 1;
    })?
    else {
        return Ok(Step::Incomplete);
    };
    if frame.argc == 0 {
        buf.advance(frame.len);
        return Ok(Step::Skipped);
    }
    let bytes = buf.split_to(frame.len).freeze();
    if frame.argc <= FEW_ARGS {
        let args = few[..frame.argc]
            .iter()
            .map(|&(start, end)| bytes.slice(start..end))
            .collect();
        return Ok(Step::Command(args));
    }
    let mut args = Vec::with_capacity(frame.argc);
    // Past FEW_ARGS, walking the headers again is cheaper than recording every argument's
    // range on the first walk, which would allocate for commands that then turn out to be
    // incomplete. This walk sees the same complete frame, so it reports every argument and
    // cannot fail.
    scan_multibulk(&bytes, limits, |range| args.push(bytes.slice(range)))?;
    Ok(Step::Command(args))
}

/// Checks whether `buf` starts with a complete multibulk frame (it must start with `*`),
/// calling `on_arg` with each argument's byte range as it is found.
fn scan_multibulk(
    buf: &[u8],
    limits: &ParserLimits,
    mut on_arg: impl FnMut(Range<usize>),
) -> Result<Option<Frame>, ProtocolError> {
    let Some(cr) = find_header_end(buf, 0, ProtocolError::TooBigMultibulkCountString)? else {
        return Ok(None);
    };
    let count = parse_integer(buf.get(1..cr).unwrap_or_default())
        .ok_or(ProtocolError::InvalidMultibulkLength)?;
    let mut pos = cr + 2;
    if count <= 0 {
        return Ok(Some(Frame { len: pos, argc: 0 }));
    }
    let argc = usize::try_from(count)
        .ok()
        .filter(|&n| n <= limits.max_multibulk_len)
        .ok_or(ProtocolError::InvalidMultibulkLength)?;
    if limits.unauthenticated && argc > UNAUTHENTICATED_MAX_MULTIBULK_LEN {
        return Err(ProtocolError::UnauthenticatedMultibulkLength);
    }
    for _ in 0..argc {
        let Some(cr) = find_header_end(buf, pos, ProtocolError::TooBigBulkCountString)? else {
            return Ok(None);
        };
        let len = match buf[pos..cr].split_first() {
            Some((b'$', digits)) => parse_integer(digits)
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n <= limits.max_bulk_len)
                .ok_or(ProtocolError::InvalidBulkLength)
                .and_then(|n| {
                    if limits.unauthenticated && n > UNAUTHENTICATED_MAX_BULK_LEN {
                        Err(ProtocolError::UnauthenticatedBulkLength)
                    } else if limits.client_memory_limit > 0 && n > limits.client_memory_limit {
                        Err(ProtocolError::BulkOverClientMemory)
                    } else {
                        Ok(n)
                    }
                })?,
            Some((&other, _)) => return Err(ProtocolError::ExpectedDollar(other)),
            // An empty header line: Redis reports the `\r` it found in place of the `$`.
            None => return Err(ProtocolError::ExpectedDollar(b'\r')),
        };
        let start = cr + 2;
        if buf.len() - start < len.saturating_add(2) {
            return Ok(None);
        }
        on_arg(start..start + len);
        pos = start + len + 2;
    }
    Ok(Some(Frame { len: pos, argc }))
}

/// Finds the `\r` ending the header line that starts at `start`, once the byte after it (the
/// `\n`, unchecked as in Redis) has arrived too.
fn find_header_end(
    buf: &[u8],
    start: usize,
    too_big: ProtocolError,
) -> Result<Option<usize>, ProtocolError> {
    let rest = &buf[start..];
    // Looking no further than the limit makes the verdict independent of how the bytes were
    // split across reads: a `\r` past it would have been "too big" had the line come slowly.
    let window = &rest[..rest.len().min(MAX_HEADER_LEN + 1)];
    match find_byte(window, b'\r') {
        Some(i) if i + 1 < rest.len() => Ok(Some(start + i)),
        Some(_) => Ok(None),
        None if rest.len() > MAX_HEADER_LEN => Err(too_big),
        None => Ok(None),
    }
}

fn parse_inline(buf: &mut BytesMut, limits: &ParserLimits) -> Result<Step, ProtocolError> {
    // Bounded for the same reason as header lines: the verdict must not depend on read sizes.
    let window = &buf[..buf.len().min(limits.max_inline_len.saturating_add(1))];
    let Some(newline) = find_byte(window, b'\n') else {
        if buf.len() > limits.max_inline_len {
            return Err(ProtocolError::TooBigInlineRequest);
        }
        return Ok(Step::Incomplete);
    };
    let line = buf.split_to(newline + 1).freeze();
    let end = match line[..newline].last() {
        Some(b'\r') => newline - 1,
        _ => newline,
    };
    let args = split_inline_args(&line, end)?;
    Ok(if args.is_empty() {
        Step::Skipped
    } else {
        Step::Command(args)
    })
}

/// Splits `line[..end]` into arguments the way Redis's `sdssplitargs` does. Bare words are
/// zero-copy slices of `line`; quoted ones are unescaped into fresh buffers.
fn split_inline_args(line: &Bytes, end: usize) -> Result<Vec<Bytes>, ProtocolError> {
    let text = &line[..end];
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while text.get(i).is_some_and(|&b| is_c_space(b)) {
            i += 1;
        }
        if i >= text.len() {
            return Ok(args);
        }
        let start = i;
        while text
            .get(i)
            .is_some_and(|&b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'"' | b'\''))
        {
            i += 1;
        }
        match text.get(i) {
            // A quote may open mid-word (`a"b c"` is `ab c`) but always ends the argument.
            Some(&quote @ (b'"' | b'\'')) => {
                let mut arg = text[start..i].to_vec();
                i = read_quoted(text, i + 1, quote, &mut arg)?;
                args.push(Bytes::from(arg));
            }
            _ => args.push(line.slice(start..i)),
        }
    }
}

/// Appends the unescaped contents of a quoted section starting just after its opening quote
/// at `i`, returning the index just past the closing quote.
fn read_quoted(
    text: &[u8],
    mut i: usize,
    quote: u8,
    arg: &mut Vec<u8>,
) -> Result<usize, ProtocolError> {
    loop {
        let Some(&b) = text.get(i) else {
            return Err(ProtocolError::UnbalancedQuotes);
        };
        if b == quote {
            return match text.get(i + 1) {
                Some(&next) if !is_c_space(next) => Err(ProtocolError::UnbalancedQuotes),
                _ => Ok(i + 1),
            };
        }
        if b == b'\\' && quote == b'"' {
            if let Some(byte) = hex_escape(text.get(i + 1..i + 4)) {
                arg.push(byte);
                i += 4;
                continue;
            }
            if let Some(&escaped) = text.get(i + 1) {
                arg.push(match escaped {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 0x08,
                    b'a' => 0x07,
                    other => other,
                });
                i += 2;
                continue;
            }
        } else if b == b'\\' && quote == b'\'' && text.get(i + 1) == Some(&b'\'') {
            arg.push(b'\'');
            i += 2;
            continue;
        }
        arg.push(b);
        i += 1;
    }
}

/// Decodes the `xHH` after a backslash; anything else is not a hex escape (Redis then takes
/// the `x` literally).
fn hex_escape(escape: Option<&[u8]>) -> Option<u8> {
    let &[b'x', high, low] = escape? else {
        return None;
    };
    let digit = |c: u8| char::from(c).to_digit(16);
    let value = digit(high)? * 16 + digit(low)?;
    u8::try_from(value).ok()
}

/// C `isspace` in the "C" locale, which `sdssplitargs` uses between arguments.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn find_byte(haystack: &[u8], needle: u8) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

/// Parses a RESP integer as strictly as Redis's `string2ll`: an optional `-`, then digits with
/// no leading zero (except `0` itself) and no `+`, no spaces, no overflow.
fn parse_integer(text: &[u8]) -> Option<i64> {
    if text == b"0" {
        return Some(0);
    }
    let (negative, digits) = match text.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, text),
    };
    if !matches!(digits.first()?, b'1'..=b'9') {
        return None;
    }
    let mut magnitude: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(input: &[u8]) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        parse_command(&mut BytesMut::from(input), &ParserLimits::default())
    }

    fn args(list: &[&[u8]]) -> Vec<Bytes> {
        list.iter().map(|a| Bytes::copy_from_slice(a)).collect()
    }

    fn error_text(input: &[u8], limits: &ParserLimits) -> String {
        match parse_command(&mut BytesMut::from(input), limits) {
            Err(e) => e.to_string(),
            other => panic!("expected an error for {input:?}, got {other:?}"),
        }
    }

    const SET: &[u8] = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";

    #[test]
    fn full_multibulk_consumes_exactly_its_bytes() {
        let mut buf = BytesMut::from(SET);
        buf.extend_from_slice(b"*1");
        let parsed = parse_command(&mut buf, &ParserLimits::default());
        assert_eq!(parsed, Ok(Some(args(&[b"SET", b"key", b"value"]))));
        assert_eq!(&buf[..], b"*1");
    }

    #[test]
    fn arguments_share_the_read_buffer() {
        let mut buf = BytesMut::from(SET);
        let start = buf.as_ptr() as usize;
        let parsed = parse_command(&mut buf, &ParserLimits::default());
        let Ok(Some(parsed)) = parsed else {
            panic!("no command in {SET:?}");
        };
        let value = parsed[2].as_ptr() as usize;
        assert!(
            (start..start + SET.len()).contains(&value),
            "value was copied"
        );
    }

    #[test]
    fn every_proper_prefix_is_incomplete_and_left_untouched() {
        for split in 0..SET.len() {
            let mut buf = BytesMut::from(&SET[..split]);
            assert_eq!(
                parse_command(&mut buf, &ParserLimits::default()),
                Ok(None),
                "split at {split}"
            );
            assert_eq!(&buf[..], &SET[..split], "split at {split}");
            buf.extend_from_slice(&SET[split..]);
            assert_eq!(
                parse_command(&mut buf, &ParserLimits::default()),
                Ok(Some(args(&[b"SET", b"key", b"value"])))
            );
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn pipeline_parses_one_command_at_a_time() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        buf.extend_from_slice(SET);
        buf.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n");
        let limits = ParserLimits::default();
        assert_eq!(parse_command(&mut buf, &limits), Ok(Some(args(&[b"PING"]))));
        assert_eq!(
            parse_command(&mut buf, &limits),
            Ok(Some(args(&[b"SET", b"key", b"value"])))
        );
        assert_eq!(
            parse_command(&mut buf, &limits),
            Ok(Some(args(&[b"GET", b"key"])))
        );
        assert_eq!(parse_command(&mut buf, &limits), Ok(None));
        assert!(buf.is_empty());
    }

    #[test]
    fn bulk_data_is_binary_safe() {
        assert_eq!(
            parse(b"*2\r\n$4\r\na\r\nb\r\n$3\r\n\0\xff*\r\n"),
            Ok(Some(args(&[b"a\r\nb", b"\0\xff*"])))
        );
    }

    #[test]
    fn zero_length_bulk_is_an_empty_argument() {
        assert_eq!(
            parse(b"*2\r\n$0\r\n\r\n$1\r\nx\r\n"),
            Ok(Some(args(&[b"", b"x"])))
        );
    }

    #[test]
    fn separators_are_not_checked_like_redis() {
        assert_eq!(parse(b"*1\rX$4\r\nPINGXY"), Ok(Some(args(&[b"PING"]))));
    }

    #[test]
    fn inline_words_quotes_and_escapes() {
        assert_eq!(
            parse(b"SET  key\t\"a \\\"b\\\\ \\n\\r\\t\\b\\a\\x41\\xzz\\q\" 'it\\'s \\n'\r\n"),
            Ok(Some(args(&[
                b"SET",
                b"key",
                b"a \"b\\ \n\r\t\x08\x07Axzzq",
                b"it's \\n",
            ])))
        );
        assert_eq!(
            parse(b"echo a\"b c\"\n"),
            Ok(Some(args(&[b"echo", b"ab c"])))
        );
        assert_eq!(
            parse(b"echo \"\" ''\n"),
            Ok(Some(args(&[b"echo", b"", b""])))
        );
        assert_eq!(parse(b"PING"), Ok(None));
        assert_eq!(parse(b"PING\n"), Ok(Some(args(&[b"PING"]))));
    }

    #[test]
    fn inline_bare_words_share_the_read_buffer() {
        let input = b"GET somekey\r\n";
        let mut buf = BytesMut::from(&input[..]);
        let start = buf.as_ptr() as usize;
        let Ok(Some(parsed)) = parse_command(&mut buf, &ParserLimits::default()) else {
            panic!("no command");
        };
        assert_eq!(parsed[1].as_ptr() as usize, start + 4);
    }

    #[test]
    fn empty_frames_are_skipped() {
        let mut buf = BytesMut::from(&b"\r\n\n  \t\n*0\r\n*-1\r\n*-7\r\nPING\r\n\n"[..]);
        let limits = ParserLimits::default();
        assert_eq!(parse_command(&mut buf, &limits), Ok(Some(args(&[b"PING"]))));
        assert_eq!(parse_command(&mut buf, &limits), Ok(None));
        assert!(buf.is_empty(), "a trailing empty line is consumed too");

        let mut buf = BytesMut::from(&b"\r\n*0\r\n*1\r\n$4\r\nPI"[..]);
        assert_eq!(parse_command(&mut buf, &limits), Ok(None));
        assert_eq!(&buf[..], b"*1\r\n$4\r\nPI");
    }

    #[test]
    fn error_texts_match_redis() {
        let limits = ParserLimits::default();
        let cases: &[(&[u8], &str)] = &[
            (b"*abc\r\n", "Protocol error: invalid multibulk length"),
            (b"*01\r\n", "Protocol error: invalid multibulk length"),
            (b"*+1\r\n", "Protocol error: invalid multibulk length"),
            (b"*\r\n", "Protocol error: invalid multibulk length"),
            (b"*-0\r\n", "Protocol error: invalid multibulk length"),
            (
                b"*99999999999999999999\r\n",
                "Protocol error: invalid multibulk length",
            ),
            (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$01\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$x\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$ 3\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\nfoo\r\n", "Protocol error: expected '$', got 'f'"),
            (
                b"*2\r\n$1\r\na\r\n*1\r\n",
                "Protocol error: expected '$', got '*'",
            ),
            (b"*1\r\n\r\n", "Protocol error: expected '$', got '\r'"),
            (
                b"set \"a\"b c\r\n",
                "Protocol error: unbalanced quotes in request",
            ),
            (
                b"set 'a'b c\r\n",
                "Protocol error: unbalanced quotes in request",
            ),
            (
                b"echo \"abc\r\n",
                "Protocol error: unbalanced quotes in request",
            ),
            (
                b"echo \"a\\\"\n",
                "Protocol error: unbalanced quotes in request",
            ),
            (
                b"echo 'abc\\'\n",
                "Protocol error: unbalanced quotes in request",
            ),
        ];
        for (input, text) in cases {
            assert_eq!(error_text(input, &limits), *text, "input {input:?}");
        }
    }

    #[test]
    fn header_lines_without_cr_are_bounded() {
        let limits = ParserLimits::default();
        let mut line = vec![b'*'];
        line.resize(MAX_HEADER_LEN, b'1');
        assert_eq!(parse(&line), Ok(None), "exactly at the limit still waits");
        line.push(b'1');
        assert_eq!(
            error_text(&line, &limits),
            "Protocol error: too big mbulk count string"
        );

        let mut bulk = b"*1\r\n$".to_vec();
        bulk.resize(4 + MAX_HEADER_LEN, b'1');
        assert_eq!(parse(&bulk), Ok(None));
        bulk.push(b'1');
        assert_eq!(
            error_text(&bulk, &limits),
            "Protocol error: too big bulk count string"
        );
    }

    #[test]
    fn limits_are_enforced_at_the_header() {
        let limits = ParserLimits {
            max_bulk_len: 10,
            max_multibulk_len: 3,
            max_inline_len: 8,
            unauthenticated: false,
            client_memory_limit: 0,
        };
        let invalid_bulk = "Protocol error: invalid bulk length";
        assert_eq!(error_text(b"*1\r\n$11\r\n", &limits), invalid_bulk);
        let mut buf = BytesMut::from(&b"*1\r\n$10\r\n0123456789\r\n"[..]);
        assert_eq!(
            parse_command(&mut buf, &limits),
            Ok(Some(args(&[b"0123456789"])))
        );

        let invalid_count = "Protocol error: invalid multibulk length";
        assert_eq!(error_text(b"*4\r\n", &limits), invalid_count);
        let mut buf = BytesMut::from(&b"*3\r\n"[..]);
        assert_eq!(parse_command(&mut buf, &limits), Ok(None));

        let too_big = "Protocol error: too big inline request";
        assert_eq!(error_text(b"123456789", &limits), too_big);
        assert_eq!(error_text(b"123456789\n", &limits), too_big);
        let mut buf = BytesMut::from(&b"12345678"[..]);
        assert_eq!(parse_command(&mut buf, &limits), Ok(None));
        let mut buf = BytesMut::from(&b"1234567\r\n"[..]);
        assert_eq!(
            parse_command(&mut buf, &limits),
            Ok(Some(args(&[b"1234567"])))
        );
    }

    #[test]
    fn bulk_lengths_near_the_integer_limits_do_not_overflow() {
        let limits = ParserLimits {
            max_bulk_len: usize::MAX,
            max_multibulk_len: usize::MAX,
            max_inline_len: usize::MAX,
            unauthenticated: false,
            client_memory_limit: 0,
        };
        let mut buf = BytesMut::from(&b"*1\r\n$9223372036854775807\r\nabc"[..]);
        assert_eq!(parse_command(&mut buf, &limits), Ok(None));
        let mut buf = BytesMut::from(&b"*9223372036854775807\r\n$1\r\na\r\n"[..]);
        assert_eq!(parse_command(&mut buf, &limits), Ok(None));
        let mut buf = BytesMut::from(&b"abc"[..]);
        assert_eq!(parse_command(&mut buf, &limits), Ok(None));
    }

    #[test]
    fn integers_parse_like_string2ll() {
        assert_eq!(parse_integer(b"0"), Some(0));
        assert_eq!(parse_integer(b"-1"), Some(-1));
        assert_eq!(parse_integer(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_integer(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"00",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"1a",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"99999999999999999999999",
        ] {
            assert_eq!(parse_integer(bad), None, "{bad:?}");
        }
    }

    /// Encodes `args` as a multibulk command.
    fn multibulk(args: &[Vec<u8>]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// Encodes `args` as an inline command, mixing bare, single- and double-quoted words.
    fn inline(args: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, arg) in args.iter().enumerate() {
            out.extend_from_slice(if n % 2 == 0 { b" " } else { b" \t " });
            if !arg.is_empty() && arg.iter().all(u8::is_ascii_alphanumeric) {
                out.extend_from_slice(arg);
            } else if n % 3 == 0 && arg.iter().all(|&b| b == b' ' || b.is_ascii_alphanumeric()) {
                out.push(b'\'');
                out.extend_from_slice(arg);
                out.push(b'\'');
            } else {
                out.push(b'"');
                for &b in arg {
                    if b.is_ascii_alphanumeric() {
                        out.push(b);
                    } else {
                        out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
                    }
                }
                out.push(b'"');
            }
        }
        out.extend_from_slice(if args.len().is_multiple_of(2) {
            b"\r\n"
        } else {
            b"\n"
        });
        out
    }

    /// Bytes that steer random input into the parser's interesting states.
    fn protocol_ish_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            prop::sample::select(b"*$\r\n\"'\\ \t-0123456789x".to_vec()),
            any::<u8>(),
        ]
    }

    fn small_limits() -> ParserLimits {
        ParserLimits {
            max_bulk_len: 40,
            max_multibulk_len: 6,
            max_inline_len: 30,
            unauthenticated: false,
            client_memory_limit: 0,
        }
    }

    #[test]
    fn an_argument_longer_than_all_clients_may_buffer_is_refused_at_its_header() {
        let limits = ParserLimits {
            client_memory_limit: 1000,
            ..ParserLimits::default()
        };
        assert_eq!(
            error_text(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1001\r\n", &limits),
            "Protocol error: bulk length larger than all clients may buffer (maxmemory-clients)"
        );
        let mut fits = BytesMut::from(&b"*1\r\n$1000\r\n"[..]);
        assert_eq!(parse_command(&mut fits, &limits), Ok(None));
    }

    #[test]
    fn an_unauthenticated_client_may_announce_ten_arguments_of_16384_bytes() {
        let limits = ParserLimits {
            unauthenticated: true,
            ..ParserLimits::default()
        };
        assert_eq!(
            error_text(b"*11\r\n", &limits),
            "Protocol error: unauthenticated multibulk length"
        );
        assert_eq!(
            error_text(b"*1\r\n$16385\r\n", &limits),
            "Protocol error: unauthenticated bulk length"
        );
        let mut buf = BytesMut::from(&b"*10\r\n$16384\r\n"[..]);
        assert_eq!(
            parse_command(&mut buf, &limits),
            Ok(None),
            "at the limits: wait"
        );
        let authenticated = ParserLimits::default();
        let mut buf = BytesMut::from(&b"*11\r\n$16385\r\n"[..]);
        assert_eq!(parse_command(&mut buf, &authenticated), Ok(None));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic_and_always_progress(
            bytes in prop::collection::vec(protocol_ish_byte(), 0..400),
            small in any::<bool>(),
        ) {
            let limits = if small { small_limits() } else { ParserLimits::default() };
            let mut buf = BytesMut::from(&bytes[..]);
            let mut before = buf.len();
            // Each command must consume input, so this ends within `bytes.len()` rounds.
            while let Ok(Some(args)) = parse_command(&mut buf, &limits) {
                prop_assert!(!args.is_empty());
                prop_assert!(buf.len() < before);
                before = buf.len();
            }
        }

        #[test]
        fn split_streams_parse_like_whole_ones(
            commands in prop::collection::vec(
                (
                    // Up to 11 arguments: both sides of FEW_ARGS.
                    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 1..12),
                    any::<bool>(),
                    0..4usize,
                ),
                1..6,
            ),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let noise: [&[u8]; 4] = [b"", b"\r\n", b"*0\r\n", b" \n*-1\r\n"];
            let mut stream = Vec::new();
            for (args, as_inline, noise_kind) in &commands {
                stream.extend_from_slice(noise[*noise_kind]);
                stream.extend(if *as_inline { inline(args) } else { multibulk(args) });
            }
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
            cuts.push(stream.len());
            cuts.sort_unstable();

            let limits = ParserLimits {
                max_inline_len: 1024,
                max_multibulk_len: 16,
                ..small_limits()
            };
            let mut buf = BytesMut::new();
            let mut parsed = Vec::new();
            let mut fed = 0;
            for cut in cuts {
                buf.extend_from_slice(&stream[fed..cut]);
                fed = cut;
                while let Some(args) = parse_command(&mut buf, &limits)? {
                    parsed.push(args);
                }
            }
            let expected: Vec<Vec<Bytes>> = commands
                .iter()
                .map(|(args, _, _)| args.iter().map(|a| Bytes::copy_from_slice(a)).collect())
                .collect();
            prop_assert_eq!(parsed, expected);
            prop_assert!(buf.is_empty());
        }
    }
}
