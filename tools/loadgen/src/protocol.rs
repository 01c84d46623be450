//! Client-side codecs for RESP and the memcached text protocol.
//!
//! Encoders append requests to the caller's buffer; parsers borrow replies from the caller's
//! read buffer and report "incomplete" as `Ok(None)`, which is normal flow, not an error. This
//! module never touches a socket and never allocates per request.

use std::fmt;

/// The wire protocol spoken to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Resp,
    Memcache,
}

/// Bulk values larger than this are taken as a corrupt stream rather than waited for.
const MAX_BULK_LEN: usize = 512 * 1024 * 1024;
/// Aggregates are only walked over (we never send commands that return them), but a corrupt
/// count must not make us wait for billions of elements.
const MAX_AGGREGATE_LEN: usize = 1 << 20;
const MAX_DEPTH: usize = 32;

/// One reply, borrowed from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// RESP `+OK`; memcached `STORED`, `NOT_STORED`, ... (the line as sent).
    Status(&'a [u8]),
    /// RESP `-ERR ...` or `!` bulk error; memcached `ERROR`, `CLIENT_ERROR ...`,
    /// `SERVER_ERROR ...`.
    Error(&'a [u8]),
    Integer(i64),
    /// A RESP bulk string or memcached `VALUE` data block.
    Value(&'a [u8]),
    /// RESP `$-1`, `*-1` or RESP3 `_`; memcached `END` alone (a miss).
    Nil,
    /// An array, set, map or push, with its number of top-level elements; the elements are
    /// parsed (to find the end) but not kept.
    Aggregate(usize),
    /// RESP3 boolean, double or big number, as its text.
    Scalar(&'a [u8]),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "protocol error: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

/// A complete reply and the number of bytes it took, `None` if more bytes are needed.
pub type Parsed<'a> = Result<Option<(Reply<'a>, usize)>, ProtocolError>;

impl Protocol {
    /// Appends a request reading `key`.
    pub fn push_get(self, out: &mut Vec<u8>, key: &[u8]) {
        match self {
            Self::Resp => {
                out.extend_from_slice(b"*2\r\n$3\r\nGET\r\n");
                push_bulk(out, key);
            }
            Self::Memcache => {
                out.extend_from_slice(b"get ");
                out.extend_from_slice(key);
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// Appends a request storing a `value_len`-byte value under `key`; `push_value` writes
    /// the value itself straight into `out`, so it is never built separately.
    pub fn push_set(
        self,
        out: &mut Vec<u8>,
        key: &[u8],
        value_len: usize,
        push_value: impl FnOnce(&mut Vec<u8>),
    ) {
        match self {
            Self::Resp => {
                out.extend_from_slice(b"*3\r\n$3\r\nSET\r\n");
                push_bulk(out, key);
                out.push(b'$');
                push_decimal(out, value_len);
            }
            Self::Memcache => {
                out.extend_from_slice(b"set ");
                out.extend_from_slice(key);
                out.extend_from_slice(b" 0 0 ");
                push_decimal(out, value_len);
            }
        }
        out.extend_from_slice(b"\r\n");
        let start = out.len();
        push_value(out);
        debug_assert_eq!(out.len() - start, value_len);
        out.extend_from_slice(b"\r\n");
    }

    /// As spelled on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Resp => "resp",
            Self::Memcache => "memcache",
        }
    }

    /// The status a successful SET gets.
    pub fn stored_status(self) -> &'static [u8] {
        match self {
            Self::Resp => b"OK",
            Self::Memcache => b"STORED",
        }
    }

    pub fn parse_reply(self, buf: &[u8]) -> Parsed<'_> {
        match self {
            Self::Resp => parse_resp(buf),
            Self::Memcache => parse_memcache(buf),
        }
    }
}

fn push_bulk(out: &mut Vec<u8>, data: &[u8]) {
    out.push(b'$');
    push_decimal(out, data.len());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// The line starting at `pos` (without its CRLF) and the position after the CRLF.
fn line_at(buf: &[u8], pos: usize) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    match buf[pos..].iter().position(|&b| b == b'\n') {
        None => Ok(None),
        Some(0) => Err(ProtocolError("line ends with a bare LF".into())),
        Some(lf) => {
            let end = pos + lf;
            if buf[end - 1] != b'\r' {
                return Err(ProtocolError("line ends with a bare LF".into()));
            }
            Ok(Some((&buf[pos..end - 1], end + 1)))
        }
    }
}

/// RESP integers are signed.
fn parse_integer(text: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ProtocolError(format!("bad integer {:?}", String::from_utf8_lossy(text))))
}

fn parse_length(text: &[u8], max: usize) -> Result<Option<usize>, ProtocolError> {
    match parse_integer(text)? {
        -1 => Ok(None),
        n if n >= 0 && n as u64 <= max as u64 => Ok(Some(n as usize)),
        n => Err(ProtocolError(format!("length {n} out of range"))),
    }
}

pub fn parse_resp(buf: &[u8]) -> Parsed<'_> {
    parse_resp_at(buf, 0, 0)
}

fn parse_resp_at(buf: &[u8], pos: usize, depth: usize) -> Parsed<'_> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError("aggregates nested too deep".into()));
    }
    let Some((line, after)) = line_at(buf, pos)? else {
        return Ok(None);
    };
    let Some((&kind, text)) = line.split_first() else {
        return Err(ProtocolError("empty line".into()));
    };
    let reply = match kind {
        b'+' => Reply::Status(text),
        b'-' => Reply::Error(text),
        b':' => Reply::Integer(parse_integer(text)?),
        b'_' => Reply::Nil,
        b'#' | b',' | b'(' => Reply::Scalar(text),
        b'$' | b'!' | b'=' => {
            let Some(len) = parse_length(text, MAX_BULK_LEN)? else {
                return Ok(Some((Reply::Nil, after)));
            };
            let end = after + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtocolError("bulk string not followed by CRLF".into()));
            }
            let data = &buf[after..end];
            let reply = if kind == b'!' {
                Reply::Error(data)
            } else {
                Reply::Value(data)
            };
            return Ok(Some((reply, end + 2)));
        }
        b'*' | b'~' | b'>' | b'%' => {
            let Some(count) = parse_length(text, MAX_AGGREGATE_LEN)? else {
                return Ok(Some((Reply::Nil, after)));
            };
            let elements = if kind == b'%' { count * 2 } else { count };
            let mut next = after;
            for _ in 0..elements {
                match parse_resp_at(buf, next, depth + 1)? {
                    Some((_, end)) => next = end,
                    None => return Ok(None),
                }
            }
            return Ok(Some((Reply::Aggregate(count), next)));
        }
        other => {
            return Err(ProtocolError(format!(
                "unknown RESP type byte {:?}",
                other as char
            )))
        }
    };
    Ok(Some((reply, after)))
}

/// Parses the reply to one `get <key>` (one `VALUE` block or none, then `END`) or one `set`.
pub fn parse_memcache(buf: &[u8]) -> Parsed<'_> {
    let Some((line, after)) = line_at(buf, 0)? else {
        return Ok(None);
    };
    if let Some(header) = line.strip_prefix(b"VALUE ") {
        // VALUE <key> <flags> <bytes> [<cas unique>]
        let len_field = header
            .split(|&b| b == b' ')
            .nth(2)
            .ok_or_else(|| ProtocolError("VALUE line without a length".into()))?;
        let len = parse_length(len_field, MAX_BULK_LEN)?
            .ok_or_else(|| ProtocolError("VALUE line with length -1".into()))?;
        let data_end = after + len;
        let end = data_end + b"\r\nEND\r\n".len();
        if buf.len() < end {
            return Ok(None);
        }
        if &buf[data_end..end] != b"\r\nEND\r\n" {
            return Err(ProtocolError("VALUE data not followed by CRLF END".into()));
        }
        return Ok(Some((Reply::Value(&buf[after..data_end]), end)));
    }
    let reply = if line == b"END" {
        Reply::Nil
    } else if line == b"ERROR"
        || line.starts_with(b"CLIENT_ERROR")
        || line.starts_with(b"SERVER_ERROR")
    {
        Reply::Error(line)
    } else {
        Reply::Status(line)
    };
    Ok(Some((reply, after)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every strict prefix of a complete reply must parse as "incomplete", and the whole as
    /// `expected` using all of `wire`: this is what a reply split across reads looks like.
    fn assert_parses_only_when_complete(protocol: Protocol, wire: &[u8], expected: Reply<'_>) {
        for cut in 0..wire.len() {
            assert_eq!(
                protocol.parse_reply(&wire[..cut]),
                Ok(None),
                "prefix of {} bytes of {:?}",
                cut,
                String::from_utf8_lossy(wire)
            );
        }
        assert_eq!(protocol.parse_reply(wire), Ok(Some((expected, wire.len()))));
        // Bytes of the next reply behind it are left alone.
        let mut followed = wire.to_vec();
        followed.extend_from_slice(b"+NEXT\r\n");
        assert_eq!(
            protocol.parse_reply(&followed),
            Ok(Some((expected, wire.len())))
        );
    }

    #[test]
    fn resp_encodes_get_and_set() {
        let mut out = Vec::new();
        Protocol::Resp.push_get(&mut out, b"key:000000001234");
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$16\r\nkey:000000001234\r\n");
        out.clear();
        Protocol::Resp.push_set(&mut out, b"k", 12, |v| {
            v.extend_from_slice(b"hello\r\nworld")
        });
        assert_eq!(
            out,
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$12\r\nhello\r\nworld\r\n"
        );
    }

    #[test]
    fn memcache_encodes_get_and_set() {
        let mut out = Vec::new();
        Protocol::Memcache.push_get(&mut out, b"key:1");
        assert_eq!(out, b"get key:1\r\n");
        out.clear();
        Protocol::Memcache.push_set(&mut out, b"key:1", 0, |_| {});
        assert_eq!(out, b"set key:1 0 0 0\r\n\r\n");
    }

    #[test]
    fn resp_parses_every_reply_type_split_anywhere() {
        let resp = Protocol::Resp;
        assert_parses_only_when_complete(resp, b"+OK\r\n", Reply::Status(b"OK"));
        assert_parses_only_when_complete(
            resp,
            b"-OOM command not allowed\r\n",
            Reply::Error(b"OOM command not allowed"),
        );
        assert_parses_only_when_complete(resp, b":-42\r\n", Reply::Integer(-42));
        assert_parses_only_when_complete(resp, b"$5\r\nab\r\nc\r\n", Reply::Value(b"ab\r\nc"));
        assert_parses_only_when_complete(resp, b"$0\r\n\r\n", Reply::Value(b""));
        assert_parses_only_when_complete(resp, b"$-1\r\n", Reply::Nil);
        assert_parses_only_when_complete(resp, b"*-1\r\n", Reply::Nil);
        assert_parses_only_when_complete(resp, b"_\r\n", Reply::Nil);
        assert_parses_only_when_complete(resp, b"#t\r\n", Reply::Scalar(b"t"));
        assert_parses_only_when_complete(resp, b"!3\r\nbad\r\n", Reply::Error(b"bad"));
        assert_parses_only_when_complete(
            resp,
            b"*3\r\n$1\r\na\r\n*2\r\n:1\r\n$-1\r\n+x\r\n",
            Reply::Aggregate(3),
        );
        assert_parses_only_when_complete(resp, b"%1\r\n+k\r\n:2\r\n", Reply::Aggregate(1));
        assert_parses_only_when_complete(resp, b"*0\r\n", Reply::Aggregate(0));
    }

    #[test]
    fn resp_rejects_corrupt_streams() {
        for wire in [
            &b"?what\r\n"[..],
            b"$3\r\nabcd\r\n",
            b":12x\r\n",
            b"$-2\r\n",
            b"+OK\n",
            b"\r\n",
        ] {
            assert!(
                parse_resp(wire).is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(wire)
            );
        }
        assert!(parse_resp(b"$999999999999\r\n").is_err());
    }

    #[test]
    fn memcache_parses_hit_miss_store_and_errors_split_anywhere() {
        let mc = Protocol::Memcache;
        assert_parses_only_when_complete(
            mc,
            b"VALUE key:1 0 7\r\nab\r\nEND\r\nEND\r\n",
            Reply::Value(b"ab\r\nEND"),
        );
        assert_parses_only_when_complete(
            mc,
            b"VALUE key:1 5 3 99\r\nxyz\r\nEND\r\n",
            Reply::Value(b"xyz"),
        );
        assert_parses_only_when_complete(mc, b"END\r\n", Reply::Nil);
        assert_parses_only_when_complete(mc, b"STORED\r\n", Reply::Status(b"STORED"));
        assert_parses_only_when_complete(mc, b"NOT_STORED\r\n", Reply::Status(b"NOT_STORED"));
        assert_parses_only_when_complete(mc, b"ERROR\r\n", Reply::Error(b"ERROR"));
        assert_parses_only_when_complete(
            mc,
            b"SERVER_ERROR out of memory storing object\r\n",
            Reply::Error(b"SERVER_ERROR out of memory storing object"),
        );
        assert_parses_only_when_complete(
            mc,
            b"CLIENT_ERROR bad data chunk\r\n",
            Reply::Error(b"CLIENT_ERROR bad data chunk"),
        );
    }

    #[test]
    fn memcache_rejects_a_value_block_without_end() {
        assert!(parse_memcache(b"VALUE k 0 2\r\nab\r\nVALUE k 0 2\r\nab\r\nEND\r\n").is_err());
        assert!(parse_memcache(b"VALUE k 0\r\n").is_err());
        assert!(parse_memcache(b"VALUE k 0 2\r\nabc\r\nEND\r\n").is_err());
    }
}
