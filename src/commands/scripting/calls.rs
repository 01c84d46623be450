//! `redis.call` and `redis.pcall`: how a script's commands reach the server. Both are
//! bound once per VM (`bind`) and find what they work with, the running script's client and
//! transaction (`ScriptCalls`), through this thread's `RUNNING_CALLS`, set by `run_in_vm`
//! for exactly the length of its call into Lua (`CallsInScope`). Binding them per run in an
//! mlua scope cost about a quarter of a small script's time (docs/performance.md). This
//! file owns that pointer, the one `unsafe` in scripting, and the argument and failure
//! rules of a call.

use std::cell::Cell;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use mlua::{Lua, MultiValue, Value};

use super::lua;
use super::RunningScript;
use crate::commands::dispatch::run_from_script;
use crate::commands::{ClientState, Shared, Store};
use crate::protocol::Reply;

thread_local! {
    /// What redis.call / redis.pcall on this thread work with: non-null only while a
    /// `CallsInScope` lives.
    static RUNNING_CALLS: Cell<*mut ScriptCalls<'static, 'static>> =
        const { Cell::new(std::ptr::null_mut()) };
}

/// What a script's redis.call / redis.pcall work with: the server, the script's client and
/// transaction.
pub(super) struct ScriptCalls<'s, 'e> {
    pub shared: &'s Shared,
    pub client: &'s mut ClientState,
    pub store: &'s mut Store<'e>,
    pub read_only: bool,
    pub script: &'s RunningScript,
}

impl ScriptCalls<'_, '_> {
    /// Runs one command for the script; a failure is an error reply, as Redis gives it.
    fn run(&mut self, args: MultiValue) -> mlua::Result<Reply> {
        let argv = match call_arguments(args)? {
            Ok(argv) => argv,
            Err(message) => return Ok(Reply::Error(message)),
        };
        let (reply, writes) =
            run_from_script(self.shared, self.client, &argv, self.store, self.read_only);
        if writes == Some(true) {
            self.script.wrote.store(true, Ordering::Release);
        }
        Ok(reply)
    }
}

/// Makes a `ScriptCalls` what redis.call reaches on this thread, until dropped (also when
/// a panic unwinds through it).
pub(super) struct CallsInScope(());

impl CallsInScope {
    /// `calls` must stay borrowed, unused, until this is dropped: `run_in_vm` keeps both on
    /// its stack around its one call into Lua.
    pub(super) fn enter(calls: &mut ScriptCalls<'_, '_>) -> CallsInScope {
        let pointer: *mut ScriptCalls<'_, '_> = calls;
        RUNNING_CALLS.set(pointer.cast());
        CallsInScope(())
    }
}

impl Drop for CallsInScope {
    fn drop(&mut self) {
        RUNNING_CALLS.set(std::ptr::null_mut());
    }
}

/// `see` applied to the script running on this thread, if one is (the instruction hook,
/// `redis.setresp`).
pub(super) fn running_script<T>(see: impl FnOnce(&RunningScript) -> T) -> Option<T> {
    let calls = RUNNING_CALLS.get();
    if calls.is_null() {
        return None;
    }
    // SAFETY: as in `run_call`, the pointer is live while set; this reads one shared
    // reference out of it, at a moment (the hook between instructions, or a callback that
    // is not `run_call`) when no `&mut` taken from it exists.
    let script: &RunningScript = unsafe { (*calls).script };
    Some(see(script))
}

/// Runs one redis.call / redis.pcall against the running script's `ScriptCalls`, and says
/// whether the script converts replies as RESP3.
fn run_call(args: MultiValue) -> mlua::Result<(Reply, bool)> {
    let calls = RUNNING_CALLS.get();
    if calls.is_null() {
        return Err(mlua::Error::RuntimeError(
            "redis.call is only available while a script runs".into(),
        ));
    }
    // SAFETY: the pointer is set only by `CallsInScope::enter` from a live `&mut
    // ScriptCalls` that its caller leaves untouched until the guard drops, and cleared by
    // that drop, so it points to a live value here. Lua runs the script, and this callback,
    // on the thread that set it. No other reference to it exists while this one does: a
    // command run from a script can never run a script (EVAL, FCALL and the rest are
    // refused inside scripts), so this is never re-entered.
    let calls = unsafe { &mut *calls };
    let reply = calls.run(args)?;
    Ok((reply, calls.script.resp3.load(Ordering::Relaxed)))
}

/// Binds redis.call and redis.pcall in a new VM.
pub(super) fn bind(lua: &Lua) -> mlua::Result<()> {
    let redis: mlua::Table = lua.globals().raw_get("redis")?;
    let pcall = lua.create_function(|lua, args: MultiValue| {
        let (reply, resp3) = run_call(args)?;
        lua::reply_to_lua(lua, reply, resp3)
    })?;
    // A Rust function, not a Lua wrapper: `return redis.call(...)` is then no tail call,
    // and the error names the script's line as Redis's does.
    let call = lua.create_function(|lua, args: MultiValue| {
        let (reply, resp3) = run_call(args)?;
        if let Reply::Error(text) = reply {
            return Err(mlua::Error::external(CallFailed {
                text,
                line: user_script_line(lua),
            }));
        }
        lua::reply_to_lua(lua, reply, resp3)
    })?;
    redis.raw_set("pcall", pcall)?;
    redis.raw_set("call", call)?;
    Ok(())
}

/// A redis.call whose command failed: raised into the script as a Lua error.
#[derive(Debug)]
pub(super) struct CallFailed {
    pub text: String,
    pub line: usize,
}

impl std::fmt::Display for CallFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for CallFailed {}

/// The failed redis.call inside an error, if that is what it is.
pub(super) fn call_failure(err: &mlua::Error) -> Option<&CallFailed> {
    match err {
        mlua::Error::CallbackError { cause, .. } => call_failure(cause),
        mlua::Error::ExternalError(inner) => inner.downcast_ref::<CallFailed>(),
        _ => None,
    }
}

/// The line of the user's script that made the current call.
fn user_script_line(lua: &Lua) -> usize {
    (1..8)
        .filter_map(|level| lua.inspect_stack(level))
        .find(|frame| {
            frame
                .source()
                .short_src
                .is_some_and(|source| source.starts_with("user_"))
        })
        .map_or(0, |frame| frame.curr_line().max(0) as usize)
}

/// A redis.call's arguments as a command: strings and numbers, as Redis accepts them.
fn call_arguments(args: MultiValue) -> mlua::Result<Result<Vec<Bytes>, String>> {
    if args.is_empty() {
        return Ok(Err(
            "ERR Please specify at least one argument for this redis lib call".into(),
        ));
    }
    let mut argv = Vec::with_capacity(args.len());
    for arg in args {
        argv.push(match arg {
            Value::String(text) => Bytes::copy_from_slice(&text.as_bytes()),
            Value::Integer(n) => Bytes::from(n.to_string()),
            Value::Number(n) => Bytes::from(lua_number_text(n)),
            _ => {
                return Ok(Err(
                    "ERR Lua redis lib command arguments must be strings or integers".into(),
                ))
            }
        });
    }
    Ok(Ok(argv))
}

/// A number as Lua's `tostring` writes it (`%.14g`): integers without a fraction.
fn lua_number_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}
