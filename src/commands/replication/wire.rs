//! The feed's wire format, after the primary's `+FULLRESYNC <id> <lsn>` or `+CONTINUE <id>`
//! line: frames of `[kind: u8][length: u32 LE][body]`. The replica answers with RESP
//! commands (`REPLCONF ACK <offset>`), as Redis replicas do.
//!
//! Records travel exactly as the WAL holds them (header with LSN and CRC, then payload), so
//! the replica checks every record's CRC and order before it applies it: a cut or garbled
//! link can never apply a record twice, out of order or damaged.

use crate::engine::wal::{decode_streamed_record, Lsn};

/// A batch of whole-key puts from the snapshot (a WAL payload without an LSN).
pub const SNAPSHOT: u8 = b'S';
/// The snapshot is complete; the records after its LSN follow.
pub const SNAPSHOT_END: u8 = b'E';
/// WAL records, one or more, as the log encodes them.
pub const RECORDS: u8 = b'W';
/// Sent when there is nothing else to send for a second: the primary's written LSN (u64 LE).
pub const HEARTBEAT: u8 = b'H';

const HEADER: usize = 5;

/// Appends one frame.
pub fn push_frame(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
}

/// One frame as read from the wire.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: u8,
    pub body: &'a [u8],
    /// Bytes it took, header included.
    pub len: usize,
}

/// The first whole frame in `buf`. `Ok(None)`: not complete yet.
pub fn parse_frame(buf: &[u8]) -> Result<Option<Frame<'_>>, String> {
    let Some(header) = buf.get(..HEADER) else {
        return Ok(None);
    };
    let kind = header[0];
    if !matches!(kind, SNAPSHOT | SNAPSHOT_END | RECORDS | HEARTBEAT) {
        return Err(format!("unknown frame kind {kind}"));
    }
    // At most 4 GB: the feed cuts batches at a megabyte, past which a frame holds a single
    // record or key, which the primary accepted under its `proto-max-bulk-len`.
    let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
    Ok(buf.get(HEADER..HEADER + len).map(|body| Frame {
        kind,
        body,
        len: HEADER + len,
    }))
}

/// Splits a RECORDS body into its records, each checked (CRC, and whole).
pub fn records(mut body: &[u8]) -> impl Iterator<Item = Result<(Lsn, &[u8]), String>> {
    std::iter::from_fn(move || {
        if body.is_empty() {
            return None;
        }
        Some(match decode_streamed_record(body) {
            Ok(Some(record)) => {
                body = &body[record.len..];
                Ok((record.lsn, record.payload))
            }
            Ok(None) => {
                body = &[];
                Err("a record is cut short".to_string())
            }
            Err(err) => {
                body = &[];
                Err(err)
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_refuse_garbage() {
        let mut out = Vec::new();
        push_frame(&mut out, SNAPSHOT, b"abc");
        push_frame(&mut out, HEARTBEAT, &7u64.to_le_bytes());
        let first = parse_frame(&out).unwrap().unwrap();
        assert_eq!((first.kind, first.body), (SNAPSHOT, &b"abc"[..]));
        let second = parse_frame(&out[first.len..]).unwrap().unwrap();
        assert_eq!(
            (second.kind, first.len + second.len),
            (HEARTBEAT, out.len())
        );
        assert_eq!(parse_frame(&out[..first.len - 1]).unwrap(), None);
        assert!(parse_frame(b"Zxxxxxx").is_err());
        assert_eq!(
            parse_frame(&[RECORDS, 0xff, 0xff, 0xff, 0xff]).unwrap(),
            None
        );
    }
}
