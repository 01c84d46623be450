//! Scripting (issue 18): EVAL, EVALSHA, their _RO forms and SCRIPT, with Lua 5.1 (the
//! `mlua` crate, Lua vendored as Redis embeds it). This module owns the script cache
//! (bodies by SHA1), a pool of sandboxed VMs (`lua`), running a script atomically, SCRIPT
//! KILL, and Redis's error texts. A script runs on a blocking thread holding every shard,
//! as Redis runs it alone, so its writes are one WAL record (all or nothing after a crash)
//! and no other command sees half of it; other requests wait at most
//! `busy-reply-threshold`, then get `-BUSY`. A script's commands pass the checks a
//! client's do (arity, ACL, not-from-scripts, read-only), in `dispatch::run_from_script`.
//! It must never run Lua on an async worker.

pub(super) mod command;
mod lua;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use mlua::{HookTriggers, Lua, MultiValue, Value, VmState};
use parking_lot::Mutex;

use super::dispatch::run_from_script;
use super::{CommandError, CommandResult, Ctx, ErrorCode, Store};
use crate::engine::Access;
use crate::protocol::Reply;

/// Instructions between two looks at the kill flag (SCRIPT KILL, SHUTDOWN).
const KILL_CHECK_INSTRUCTIONS: u32 = 10_000;

/// The script running now, as SCRIPT KILL sees it.
pub struct RunningScript {
    kill: AtomicBool,
    wrote: AtomicBool,
}

/// Every script body by SHA1, the idle VMs, and the running script.
#[derive(Default)]
pub struct Scripts {
    bodies: Mutex<HashMap<String, Bytes>>,
    /// Idle VMs, each with the cache generation it compiled under.
    vms: Mutex<Vec<(u64, Lua)>>,
    /// Moves on SCRIPT FLUSH: a VM of an older generation is dropped, not reused.
    generation: AtomicU64,
    running: Mutex<Option<Arc<RunningScript>>>,
}

/// The lowercase hex SHA1 Redis names scripts by.
pub fn sha1_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes);
    digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

impl Scripts {
    /// SCRIPT LOAD / EVAL: keeps the body, returns its SHA1.
    pub fn remember(&self, body: &Bytes) -> String {
        let sha = sha1_hex(body);
        self.bodies
            .lock()
            .entry(sha.clone())
            .or_insert_with(|| body.clone());
        sha
    }

    pub fn body(&self, sha: &str) -> Option<Bytes> {
        self.bodies.lock().get(&sha.to_ascii_lowercase()).cloned()
    }

    pub fn flush(&self) {
        self.bodies.lock().clear();
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.vms.lock().clear();
    }

    /// SCRIPT KILL: Redis's replies when nothing runs or the script already wrote.
    pub fn kill(&self) -> Result<(), CommandError> {
        let running = self.running.lock();
        let Some(script) = running.as_ref() else {
            return Err(CommandError::new(
                ErrorCode::NotBusy,
                "No scripts in execution right now.",
            ));
        };
        if script.wrote.load(Ordering::Acquire) {
            return Err(CommandError::new(
                ErrorCode::Unkillable,
                "Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.",
            ));
        }
        script.kill.store(true, Ordering::Release);
        Ok(())
    }

    fn take_vm(&self) -> Result<(u64, Lua), CommandError> {
        if let Some(vm) = self.vms.lock().pop() {
            return Ok(vm);
        }
        let lua = lua::new_vm().map_err(|err| CommandError::err(format!("Lua: {err}")))?;
        lua.set_hook(
            HookTriggers::new().every_nth_instruction(KILL_CHECK_INSTRUCTIONS),
            |lua, _| {
                let killed = lua
                    .app_data_ref::<Arc<RunningScript>>()
                    .is_some_and(|script| script.kill.load(Ordering::Acquire));
                if killed {
                    Err(mlua::Error::RuntimeError(
                        "Script killed by user with SCRIPT KILL...".into(),
                    ))
                } else {
                    Ok(VmState::Continue)
                }
            },
        );
        Ok((self.generation.load(Ordering::Acquire), lua))
    }

    fn give_back(&self, generation: u64, lua: Lua) {
        if generation == self.generation.load(Ordering::Acquire) {
            self.vms.lock().push((generation, lua));
        }
    }
}

/// What one EVAL asks for.
pub struct Invocation<'a> {
    pub sha: String,
    pub body: Bytes,
    pub keys: &'a [Bytes],
    pub argv: &'a [Bytes],
    pub read_only: bool,
}

/// Runs a script atomically: every shard held (or the EXEC's transaction, which holds
/// them already), on a blocking thread.
pub fn run(ctx: &mut Ctx<'_, '_>, invocation: Invocation<'_>) -> CommandResult {
    if ctx.store.access() == Access::HotOnly {
        return Err(CommandError::WouldBlock);
    }
    let scripts = &ctx.shared.scripts;
    let direct = match &*ctx.store {
        Store::Direct { engine, .. } => Some(*engine),
        Store::Txn(_) => None,
    };
    let (generation, lua) = scripts.take_vm()?;
    let result = match direct {
        // Inside EXEC: the transaction holds every shard already.
        None => run_in_vm(&lua, ctx.shared, ctx.client, ctx.store, &invocation),
        Some(engine) => match engine.transaction_all() {
            Ok(txn) => {
                let mut store = Store::Txn(txn);
                run_in_vm(&lua, ctx.shared, ctx.client, &mut store, &invocation)
            }
            Err(err) => Err(err.into()),
        },
    };
    scripts.give_back(generation, lua);
    result
}

fn run_in_vm(
    lua: &Lua,
    shared: &super::Shared,
    client: &mut super::ClientState,
    store: &mut Store<'_>,
    invocation: &Invocation<'_>,
) -> CommandResult {
    let function =
        lua::function_for(lua, &invocation.sha, &invocation.body).map_err(CommandError::err)?;
    let vm_error = |err: mlua::Error| CommandError::err(format!("Lua: {err}"));
    let globals = lua.globals();
    let strings = |items: &[Bytes]| -> mlua::Result<mlua::Table> {
        let table = lua.create_table_with_capacity(items.len(), 0)?;
        for (index, item) in items.iter().enumerate() {
            table.raw_set(index + 1, lua.create_string(&item[..])?)?;
        }
        Ok(table)
    };
    globals
        .raw_set("KEYS", strings(invocation.keys).map_err(vm_error)?)
        .map_err(vm_error)?;
    globals
        .raw_set("ARGV", strings(invocation.argv).map_err(vm_error)?)
        .map_err(vm_error)?;
    let script = Arc::new(RunningScript {
        kill: AtomicBool::new(false),
        wrote: AtomicBool::new(false),
    });
    lua.set_app_data(Arc::clone(&script));
    *shared.scripts.running.lock() = Some(Arc::clone(&script));
    let calls = RefCell::new(ScriptCalls {
        client,
        store,
        read_only: invocation.read_only,
        script: &script,
    });
    let outcome = lua.scope(|scope| {
        let pcall = scope.create_function(|lua, args: MultiValue| {
            let reply = calls.borrow_mut().run(shared, args)?;
            lua::reply_to_lua(lua, reply)
        })?;
        // A Rust function, not a Lua wrapper: `return redis.call(...)` is then no tail
        // call, and the error names the script's line as Redis's does.
        let call = scope.create_function(|lua, args: MultiValue| {
            let reply = calls.borrow_mut().run(shared, args)?;
            if let Reply::Error(text) = reply {
                return Err(mlua::Error::external(CallFailed {
                    text,
                    line: user_script_line(lua),
                }));
            }
            lua::reply_to_lua(lua, reply)
        })?;
        let redis: mlua::Table = lua.globals().raw_get("redis")?;
        redis.raw_set("pcall", pcall)?;
        redis.raw_set("call", call)?;
        let run: mlua::Function = lua.globals().raw_get("__hypercache_run")?;
        run.call::<(bool, Value)>(function)
    });
    *shared.scripts.running.lock() = None;
    lua.remove_app_data::<Arc<RunningScript>>();
    let (succeeded, value) = outcome.map_err(vm_error)?;
    if succeeded {
        return Ok(lua::lua_to_reply(&value));
    }
    let at = |line: usize| format!(" script: {}, on @user_script:{line}.", invocation.sha);
    Ok(Reply::Error(match value {
        // A failed redis.call: the command's own error, then where.
        Value::Error(err) if call_failure(&err).is_some() => {
            let failed = call_failure(&err).expect("just matched");
            format!("{}{}", failed.text, at(failed.line))
        }
        // `error({err=...})` raised by the script itself.
        Value::Table(table) => match table.raw_get::<Value>("err") {
            Ok(Value::String(text)) => {
                format!("{}{}", String::from_utf8_lossy(&text.as_bytes()), at(0))
            }
            _ => format!("ERR Error running script{}", at(0)),
        },
        other => {
            let text = match &other {
                Value::String(text) => String::from_utf8_lossy(&text.as_bytes()).into_owned(),
                Value::Error(err) => runtime_error_text(err),
                other => format!("{other:?}"),
            };
            let line = text
                .strip_prefix("user_script:")
                .and_then(|rest| rest.split(':').next())
                .and_then(|line| line.parse().ok())
                .unwrap_or(0);
            format!("ERR {text}{}", at(line))
        }
    }))
}

/// A redis.call whose command failed: raised into the script as a Lua error.
#[derive(Debug)]
struct CallFailed {
    text: String,
    line: usize,
}

impl std::fmt::Display for CallFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for CallFailed {}

/// The failed redis.call inside an error, if that is what it is.
fn call_failure(err: &mlua::Error) -> Option<&CallFailed> {
    match err {
        mlua::Error::CallbackError { cause, .. } => call_failure(cause),
        mlua::Error::ExternalError(inner) => inner.downcast_ref::<CallFailed>(),
        _ => None,
    }
}

/// What a script's redis.call / redis.pcall work with: the script's client and
/// transaction.
struct ScriptCalls<'s, 'e> {
    client: &'s mut super::ClientState,
    store: &'s mut Store<'e>,
    read_only: bool,
    script: &'s RunningScript,
}

impl ScriptCalls<'_, '_> {
    /// Runs one command for the script; a failure is an error reply, as Redis gives it.
    fn run(&mut self, shared: &super::Shared, args: MultiValue) -> mlua::Result<Reply> {
        let argv = match call_arguments(args)? {
            Ok(argv) => argv,
            Err(message) => return Ok(Reply::Error(message)),
        };
        let (reply, writes) =
            run_from_script(shared, self.client, &argv, self.store, self.read_only);
        if writes == Some(true) {
            self.script.wrote.store(true, Ordering::Release);
        }
        Ok(reply)
    }
}

/// The text of an error raised from Rust inside the VM (a hook or a callback), without
/// mlua's traceback.
fn runtime_error_text(err: &mlua::Error) -> String {
    match err {
        mlua::Error::RuntimeError(text) => text.clone(),
        mlua::Error::CallbackError { cause, .. } => runtime_error_text(cause),
        other => other.to_string(),
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
                .is_some_and(|source| source.starts_with("user_script"))
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
