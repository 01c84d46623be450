//! Scripting (issue 18): EVAL, EVALSHA, their _RO forms and SCRIPT, FUNCTION and FCALL,
//! with Lua 5.1 (the `mlua` crate, Lua vendored as Redis embeds it). This module owns the
//! script cache (bodies by SHA1), a pool of sandboxed VMs (`lua`), running a script or a
//! function atomically, SCRIPT KILL / FUNCTION KILL, and Redis's error texts; the function
//! libraries are `functions`, the `#!lua` line and script flags `shebang`, `redis.call` in
//! `calls`. Scripts run one at a time, as in Redis, each holding the shards of its keys
//! until it ends (`run`), so its writes are one WAL record (all or nothing after a crash)
//! and no other command sees half of it; other requests for those shards wait at most
//! `busy-reply-threshold`, then get `-BUSY`. A script whose shards are all free starts on
//! the async worker and leaves it before it blocks or once it has run `INLINE_RUN_LIMIT`
//! (`engine::leave_async_worker`), so neither a cold key nor an endless loop holds the
//! worker's other clients. A script's commands pass the checks a client's do (arity, ACL,
//! not-from-scripts, read-only), in `dispatch::run_from_script`.

mod calls;
pub(super) mod command;
pub(super) mod function_command;
pub mod functions;
mod lua;
mod lua_struct;
mod msgpack;
pub mod shebang;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use mlua::{HookTriggers, Lua, MultiValue, Value, VmState};
use parking_lot::Mutex;

use super::{CommandError, CommandResult, Ctx, ErrorCode, Store};
use crate::engine::Access;
use crate::protocol::Reply;
use calls::{call_failure, CallsInScope, ScriptCalls};

/// Instructions between two looks at the kill flag (SCRIPT KILL, SHUTDOWN).
const KILL_CHECK_INSTRUCTIONS: u32 = 10_000;

/// How long a script may run on an async worker before it leaves it, so the worker's other
/// connections wait no longer than this behind one script (then they get `-BUSY` as
/// everyone else does).
const INLINE_RUN_LIMIT: std::time::Duration = std::time::Duration::from_millis(1);

/// The script running now, as SCRIPT KILL, FUNCTION KILL and FUNCTION STATS see it.
pub struct RunningScript {
    kill: AtomicBool,
    wrote: AtomicBool,
    /// A function (FCALL), not an EVAL script: each is killed only by its own KILL.
    function: bool,
    /// The function's name, or the script's SHA1.
    name: String,
    command: Vec<Bytes>,
    started: Instant,
    /// Started on an async worker (`Access::Inline`).
    inline: bool,
    /// `redis.setresp(3)` was called: replies convert into Lua, and booleans back, as RESP3.
    resp3: AtomicBool,
}

impl RunningScript {
    /// Redis's -BUSY text while this script runs: it names the KILL that stops it.
    fn busy_text(&self) -> &'static str {
        if self.function {
            BUSY_FUNCTION
        } else {
            BUSY_EVAL
        }
    }
}

/// Redis's -BUSY texts while a script runs.
const BUSY_EVAL: &str =
    "Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
const BUSY_FUNCTION: &str =
    "Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.";

/// Every script body by SHA1, the idle VMs, and the running script.
#[derive(Default)]
pub struct Scripts {
    bodies: Mutex<ShaMap<Bytes>>,
    /// Idle VMs, each with the cache generation it compiled under.
    vms: Mutex<Vec<Vm>>,
    /// Moves on SCRIPT FLUSH: a VM of an older generation is dropped, not reused.
    generation: AtomicU64,
    running: Mutex<Option<Arc<RunningScript>>>,
    /// Held while a script runs: one at a time, as in Redis (so `running` is the one).
    turn: Mutex<()>,
    pub functions: functions::Functions,
}

/// A map by SHA1 text. Looked up on every EVALSHA: foldhash, not the default SipHash, which
/// cost 5% of a small script's time hashing the 40 characters twice.
type ShaMap<T> = HashMap<String, T, foldhash::fast::RandomState>;

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
        let bodies = self.bodies.lock();
        if sha.bytes().any(|byte| byte.is_ascii_uppercase()) {
            return bodies.get(&sha.to_ascii_lowercase()).cloned();
        }
        bodies.get(sha).cloned()
    }

    pub fn flush(&self) {
        self.bodies.lock().clear();
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.vms.lock().clear();
    }

    /// SCRIPT KILL (`function` false) or FUNCTION KILL (true): Redis's replies when nothing
    /// runs, when the script already wrote, or when the other KILL is the one to use.
    pub fn kill(&self, function: bool) -> Result<(), CommandError> {
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
        if script.function != function {
            return Err(CommandError::new(ErrorCode::Busy, script.busy_text()));
        }
        script.kill.store(true, Ordering::Release);
        Ok(())
    }

    /// The -BUSY text for a command that waited out `busy-reply-threshold` behind a script
    /// (None when no script runs: another command held the keys).
    pub fn busy_text(&self) -> Option<&'static str> {
        self.running
            .lock()
            .as_ref()
            .map(|script| script.busy_text())
    }

    /// FUNCTION STATS's `running_script`: the name, the command and the milliseconds so far.
    pub fn running(&self) -> Option<(String, Vec<Bytes>, u64)> {
        let running = self.running.lock();
        let script = running.as_ref()?;
        let millis = script.started.elapsed().as_millis() as u64;
        Some((script.name.clone(), script.command.clone(), millis))
    }

    fn take_vm(&self) -> Result<Vm, CommandError> {
        if let Some(vm) = self.vms.lock().pop() {
            return Ok(vm);
        }
        let generation = self.generation.load(Ordering::Acquire);
        Vm::new(generation).map_err(CommandError::err)
    }

    fn give_back(&self, vm: Vm) {
        if vm.generation == self.generation.load(Ordering::Acquire) {
            self.vms.lock().push(vm);
        }
    }
}

/// A pooled VM with what each run needs at hand on the Rust side, so a run makes as few
/// calls into `mlua` (each locks the VM) as it can: the run wrapper and every script it has
/// compiled, by SHA1.
pub(super) struct Vm {
    /// The script cache generation it compiled under (SCRIPT FLUSH moves it).
    generation: u64,
    pub lua: Lua,
    /// The prelude's `__hypercache_run`.
    run: mlua::Function,
    compiled: ShaMap<mlua::Function>,
    /// The FUNCTION libraries' callbacks, loaded into this VM.
    functions: functions::LoadedFunctions,
}

impl Vm {
    fn new(generation: u64) -> Result<Vm, String> {
        let lua = sandboxed_vm()?;
        let run = lua
            .globals()
            .raw_get("__hypercache_run")
            .map_err(|err| format!("Lua: {err}"))?;
        Ok(Vm {
            generation,
            lua,
            run,
            compiled: ShaMap::default(),
            functions: functions::LoadedFunctions::default(),
        })
    }

    /// The script `body` (whose SHA1 is `sha`) compiled in this VM, compiling it once.
    pub(super) fn compiled(&mut self, sha: &str, body: &[u8]) -> Result<&mlua::Function, String> {
        if !self.compiled.contains_key(sha) {
            let function = lua::compile(&self.lua, body)?;
            self.compiled.insert(sha.to_string(), function);
        }
        Ok(&self.compiled[sha])
    }
}

/// How long a FUNCTION library's top-level code may run while it loads (Redis's 500 ms).
const LIBRARY_LOAD_LIMIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Set while a library loads: the hook stops its code at this instant.
struct LoadDeadline(Instant);

/// A sandboxed VM (`lua::new_vm`) whose instruction hook stops a script SCRIPT KILL or
/// FUNCTION KILL asked to stop, and a library whose loading runs past its deadline.
pub(super) fn sandboxed_vm() -> Result<Lua, String> {
    let lua = lua::new_vm()
        .and_then(|lua| calls::bind(&lua).map(|()| lua))
        .map_err(|err| format!("Lua: {err}"))?;
    lua.set_hook(
        HookTriggers::new().every_nth_instruction(KILL_CHECK_INSTRUCTIONS),
        |lua, _| {
            let (killed, overstayed) = calls::running_script(|script| {
                let overstayed = script.inline && script.started.elapsed() >= INLINE_RUN_LIMIT;
                (script.kill.load(Ordering::Acquire), overstayed)
            })
            .unwrap_or((false, false));
            if overstayed {
                crate::engine::leave_async_worker();
            }
            if killed {
                return Err(mlua::Error::RuntimeError(
                    "Script killed by user with SCRIPT KILL...".into(),
                ));
            }
            let load_timed_out = lua
                .app_data_ref::<LoadDeadline>()
                .is_some_and(|deadline| Instant::now() >= deadline.0);
            if load_timed_out {
                return Err(mlua::Error::RuntimeError("FUNCTION LOAD timeout".into()));
            }
            Ok(VmState::Continue)
        },
    );
    Ok(lua)
}

/// Runs `load` (a library's top-level code) under the load deadline.
pub(super) fn with_load_deadline<T>(lua: &Lua, load: impl FnOnce() -> T) -> T {
    lua.set_app_data(LoadDeadline(Instant::now() + LIBRARY_LOAD_LIMIT));
    let result = load();
    lua.remove_app_data::<LoadDeadline>();
    result
}

/// What runs: an EVAL script or a FUNCTION.
pub enum Target {
    Script { sha: String, body: Bytes },
    Function { name: String },
}

/// What one EVAL or FCALL asks for.
pub struct Invocation<'a> {
    pub target: Target,
    pub keys: &'a [Bytes],
    pub argv: &'a [Bytes],
    /// Write commands inside are refused (no-writes, or an _RO command).
    pub read_only: bool,
    /// The whole command, for FUNCTION STATS.
    pub command: &'a [Bytes],
}

/// Whether a script runs read-only, by its flags (None: an EVAL body without a shebang)
/// and the command: an _RO command refuses a flagged script that may write (Redis's rule).
pub fn read_only(flags: Option<u8>, ro_command: bool) -> Result<bool, CommandError> {
    let no_writes = flags.is_some_and(|flags| flags & shebang::NO_WRITES != 0);
    if ro_command && flags.is_some() && !no_writes {
        return Err(CommandError::err(
            "Can not execute a script with write flag using *_ro command.",
        ));
    }
    Ok(ro_command || no_writes)
}

/// Runs a script atomically: one script at a time (as in Redis), holding the shards of
/// the keys it declares and of every other key it touches until it ends
/// (`Engine::transaction_for_script`), or inside EXEC, whose transaction holds every shard.
/// Offered first on the async worker: when its turn and its shards are free at once the
/// script runs there (`Access::Inline`), and leaves the worker only if it must block (a
/// cold key, a full shard, a busy shard it did not declare) or runs past
/// `INLINE_RUN_LIMIT`; otherwise it goes to a blocking thread before anything ran. A hot
/// script thus costs no thread hand-off.
pub fn run(ctx: &mut Ctx<'_, '_>, invocation: Invocation<'_>) -> CommandResult {
    let scripts = &ctx.shared.scripts;
    let engine = &ctx.shared.engine;
    let access = ctx.store.access();
    let _turn = match scripts.turn.try_lock() {
        Some(turn) => turn,
        None => {
            access.prepare_to_block()?;
            engine.lock_as_request(&scripts.turn)?
        }
    };
    let txn = match &*ctx.store {
        Store::Direct { .. } => {
            let keys: Vec<&[u8]> = invocation.keys.iter().map(|key| &key[..]).collect();
            Some(engine.transaction_for_script(access, &keys)?)
        }
        // Inside EXEC: the transaction holds every shard already.
        Store::Txn(_) => None,
    };
    let mut vm = scripts.take_vm()?;
    let result = match txn {
        Some(txn) => {
            let mut store = Store::Txn(txn);
            run_in_vm(&mut vm, ctx.shared, ctx.client, &mut store, &invocation)
        }
        None => run_in_vm(&mut vm, ctx.shared, ctx.client, ctx.store, &invocation),
    };
    scripts.give_back(vm);
    result
}

fn run_in_vm(
    vm: &mut Vm,
    shared: &super::Shared,
    client: &mut super::ClientState,
    store: &mut Store<'_>,
    invocation: &Invocation<'_>,
) -> CommandResult {
    let vm_error = |err: mlua::Error| CommandError::err(format!("Lua: {err}"));
    // `__hypercache_run(f, is_script, #KEYS, KEYS..., ARGV...)` makes the KEYS and ARGV
    // tables: globals for a script (cleared after), the arguments of a function.
    let mut call_args =
        MultiValue::with_capacity(3 + invocation.keys.len() + invocation.argv.len());
    for item in invocation.keys.iter().chain(invocation.argv) {
        call_args.push_back(Value::String(
            vm.lua.create_string(&item[..]).map_err(vm_error)?,
        ));
    }
    let (function, chunk, name) = match &invocation.target {
        Target::Script { sha, body } => {
            let function = vm.compiled(sha, body).map_err(CommandError::err)?.clone();
            (function, "user_script", sha.as_str())
        }
        Target::Function { name } => {
            let libraries = shared.scripts.functions.snapshot();
            let function = vm
                .functions
                .callback(&vm.lua, &libraries, name)
                .map_err(CommandError::err)?
                .clone();
            (function, "user_function", name.as_str())
        }
    };
    let is_script = matches!(invocation.target, Target::Script { .. });
    call_args.push_front(Value::Integer(invocation.keys.len() as i64));
    call_args.push_front(Value::Boolean(is_script));
    call_args.push_front(Value::Function(function));
    let lua = &vm.lua;
    let script = Arc::new(RunningScript {
        kill: AtomicBool::new(false),
        wrote: AtomicBool::new(false),
        function: matches!(invocation.target, Target::Function { .. }),
        name: name.to_string(),
        command: invocation.command.to_vec(),
        started: Instant::now(),
        inline: store.access() == Access::Inline,
        resp3: AtomicBool::new(false),
    });
    *shared.scripts.running.lock() = Some(Arc::clone(&script));
    let mut calls = ScriptCalls {
        shared,
        client,
        store,
        read_only: invocation.read_only,
        script: &script,
    };
    let outcome = {
        let _in_scope = CallsInScope::enter(&mut calls);
        vm.run.call::<(bool, Value)>(call_args)
    };
    *shared.scripts.running.lock() = None;
    if is_script && outcome.is_err() {
        // The wrapper clears KEYS and ARGV before a function runs; a run that ended in an
        // error it could not catch clears them here too, to be sure.
        let globals = lua.globals();
        globals.raw_set("KEYS", Value::Nil).map_err(vm_error)?;
        globals.raw_set("ARGV", Value::Nil).map_err(vm_error)?;
    }
    let (succeeded, value) = outcome.map_err(vm_error)?;
    if succeeded {
        return Ok(lua::lua_to_reply(
            &value,
            script.resp3.load(Ordering::Relaxed),
        ));
    }
    let at = |line: usize| format!(" script: {name}, on @{chunk}:{line}.");
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
            let text = error_value_text(&other);
            let line = text
                .strip_prefix(chunk)
                .and_then(|rest| rest.strip_prefix(':'))
                .and_then(|rest| rest.split(':').next())
                .and_then(|line| line.parse().ok())
                .unwrap_or(0);
            format!("ERR {text}{}", at(line))
        }
    }))
}

/// The text of a Lua error value: a message, or an error raised from Rust.
pub fn error_value_text(value: &Value) -> String {
    match value {
        Value::String(text) => String::from_utf8_lossy(&text.as_bytes()).into_owned(),
        Value::Error(err) => runtime_error_text(err),
        other => format!("{other:?}"),
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
