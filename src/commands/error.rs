//! Command errors, and the one place a reply error becomes text (CONVENTIONS 8). A handler
//! or a dispatcher check says what went wrong as an [`ErrorCode`] plus a message; only
//! [`error_reply`] joins the two into the RESP error line, and only `From<EngineError>` here
//! decides how an engine failure reads to a client. Nothing else builds `Reply::Error`.
//!
//! "Would block" has one representation above the engine: [`CommandError::WouldBlock`]
//! (from `EngineError::WouldBlock`). It is control flow, not a reply: the dispatcher retries
//! the command where it may block, and a client never sees it.

use std::borrow::Cow;
use std::fmt;

use crate::engine::EngineError;
use crate::protocol::Reply;

/// The first word of a RESP error line: what kind of failure it is, for clients that
/// branch on it (Redis's error prefixes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The generic error: bad arguments, unknown commands, failed operations.
    Err,
    /// The key holds a value of another type.
    WrongType,
    /// The client must authenticate first.
    NoAuth,
    /// AUTH / HELLO with a wrong user name or password.
    WrongPass,
    /// The user may not run the command or touch the key.
    NoPerm,
    /// HELLO asked for a protocol version the server does not speak.
    NoProto,
    /// Writes are refused because persistence failed (Redis's answer when its AOF cannot
    /// be written).
    Misconf,
    /// EXEC after a command failed to queue.
    ExecAbort,
    /// A write that would exceed `maxmemory`.
    Oom,
    /// A script is running.
    Busy,
    /// A write sent to a read-only replica.
    ReadOnly,
    /// The data set is still being loaded.
    Loading,
    /// EVALSHA of a script the server does not have.
    NoScript,
    /// SCRIPT KILL with no script running.
    NotBusy,
    /// SCRIPT KILL of a script that already wrote.
    Unkillable,
    /// A replica without its primary, told not to serve stale data.
    MasterDown,
    /// Fewer good replicas than `min-replicas-to-write`.
    NoReplicas,
}

impl ErrorCode {
    /// The prefix as clients see it.
    pub const fn prefix(self) -> &'static str {
        match self {
            ErrorCode::Err => "ERR",
            ErrorCode::WrongType => "WRONGTYPE",
            ErrorCode::NoAuth => "NOAUTH",
            ErrorCode::WrongPass => "WRONGPASS",
            ErrorCode::NoPerm => "NOPERM",
            ErrorCode::NoProto => "NOPROTO",
            ErrorCode::Misconf => "MISCONF",
            ErrorCode::ExecAbort => "EXECABORT",
            ErrorCode::Oom => "OOM",
            ErrorCode::Busy => "BUSY",
            ErrorCode::ReadOnly => "READONLY",
            ErrorCode::Loading => "LOADING",
            ErrorCode::NoScript => "NOSCRIPT",
            ErrorCode::NotBusy => "NOTBUSY",
            ErrorCode::Unkillable => "UNKILLABLE",
            ErrorCode::MasterDown => "MASTERDOWN",
            ErrorCode::NoReplicas => "NOREPLICAS",
        }
    }
}

/// The one function that turns an error into the RESP error line (`-CODE message`).
pub fn error_reply(code: ErrorCode, message: &str) -> Reply {
    Reply::Error(error_line(code, message))
}

fn error_line(code: ErrorCode, message: &str) -> String {
    format!("{} {message}", code.prefix())
}

/// What a reply error says when a command runs where it may not block, yet was told to.
const WOULD_BLOCK: &str = "internal error: transaction would block";

/// Why a command did not produce a normal reply.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// The engine needs to block; the dispatcher retries on a blocking thread.
    WouldBlock,
    /// A reply error: its code and the text after it.
    Reply {
        code: ErrorCode,
        message: Cow<'static, str>,
    },
}

impl CommandError {
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        CommandError::Reply {
            code,
            message: message.into(),
        }
    }

    /// A generic `ERR` error.
    pub fn err(message: impl fmt::Display) -> Self {
        CommandError::new(ErrorCode::Err, message.to_string())
    }

    pub fn syntax() -> Self {
        CommandError::new(ErrorCode::Err, "syntax error")
    }

    /// Redis's arity error, for commands whose arguments come in groups (HSET's pairs).
    pub fn wrong_arity(command: &str) -> Self {
        CommandError::err(format!("wrong number of arguments for '{command}' command"))
    }

    pub fn not_integer() -> Self {
        CommandError::new(ErrorCode::Err, "value is not an integer or out of range")
    }

    /// The reply a client gets for this error.
    pub fn into_reply(self) -> Reply {
        match self {
            CommandError::Reply { code, message } => error_reply(code, &message),
            // Only a command run with `Access::HotOnly` is ever told to block, and the
            // dispatcher retries those where they may; reaching a client is a bug.
            CommandError::WouldBlock => error_reply(ErrorCode::Err, WOULD_BLOCK),
        }
    }
}

/// The error line without the leading '-', as a client would print it.
impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Reply { code, message } => f.write_str(&error_line(*code, message)),
            CommandError::WouldBlock => f.write_str(&error_line(ErrorCode::Err, WOULD_BLOCK)),
        }
    }
}

/// The one place engine errors become command errors.
impl From<EngineError> for CommandError {
    fn from(err: EngineError) -> Self {
        match err {
            EngineError::WouldBlock => CommandError::WouldBlock,
            // The texts clients know from Redis, whatever the engine calls them.
            EngineError::NoSuchKey => CommandError::err("no such key"),
            EngineError::DbIndexOutOfRange => CommandError::err("DB index is out of range"),
            EngineError::WrongType => CommandError::new(
                ErrorCode::WrongType,
                "Operation against a key holding the wrong kind of value",
            ),
            EngineError::OutOfMemory(refusal) => {
                CommandError::new(ErrorCode::Oom, refusal.message())
            }
            busy @ EngineError::Busy { .. } => CommandError::new(ErrorCode::Busy, busy.to_string()),
            other => CommandError::err(other),
        }
    }
}

pub type CommandResult = Result<Reply, CommandError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_are_code_then_message() {
        assert_eq!(
            CommandError::syntax().into_reply(),
            Reply::Error("ERR syntax error".into())
        );
        assert_eq!(
            error_reply(ErrorCode::ExecAbort, "Transaction discarded."),
            Reply::Error("EXECABORT Transaction discarded.".into())
        );
        assert_eq!(
            CommandError::from(EngineError::WrongType).into_reply(),
            Reply::Error(
                "WRONGTYPE Operation against a key holding the wrong kind of value".into()
            )
        );
        assert_eq!(
            CommandError::from(EngineError::NoSuchKey).to_string(),
            "ERR no such key"
        );
        assert_eq!(
            CommandError::from(EngineError::DbIndexOutOfRange).to_string(),
            "ERR DB index is out of range"
        );
        assert_eq!(
            CommandError::from(EngineError::WouldBlock),
            CommandError::WouldBlock
        );
        assert_eq!(
            CommandError::from(EngineError::OutOfMemory(
                crate::engine::OomRefusal::ColdWritesFailing
            ))
            .to_string(),
            "OOM command not allowed when used memory > 'maxmemory'."
        );
    }
}
