//! The RESP wire format: turning client bytes into command arguments, and replies into bytes.
//!
//! This module owns the wire format only. It knows RESP2 and RESP3 framing (multibulk and
//! inline requests; every reply type) and nothing about what a command means, and it does no
//! I/O: the connection code reads into a `BytesMut`, calls [`parse_command`] until it returns
//! `Ok(None)`, and sends what [`write_reply`] appended to its output buffer.
//!
//! Whatever a client sends, the parser must never panic, never loop without consuming input,
//! and never make the server buffer more than [`ParserLimits`] allow for one command: oversized
//! lengths and counts are rejected as soon as their header line is seen, not after the bytes
//! they announce have piled up. Error texts match Redis's byte for byte, because client
//! libraries and test suites match on them.

mod parse;
mod reply;

pub use parse::{parse_command, ParserLimits, ProtocolError};
pub use reply::{write_reply, ProtocolVersion, Reply};
