//! FUNCTION libraries (Redis 7 functions). This file owns the registry of loaded libraries
//! and their functions, loading a library's code into a VM (`redis.register_function`,
//! with Redis's checks and texts), keeping the libraries durable as the server record
//! `functions` (WAL + cold tier, `engine::server_records`), and the DUMP / RESTORE payload.
//!
//! A library is kept as its code; its functions are what running the code registered. The
//! registry is a snapshot swapped whole on every change, with a generation that moves, so
//! FCALL reads it without a lock held and each pooled VM reloads the libraries when its
//! generation is behind. Changes are serialised and saved before they are visible.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use mlua::{Function, Lua, MultiValue, Table, Value};
use parking_lot::Mutex;

use super::shebang::{self, flag_named, valid_name, INVALID_NAME};
use crate::engine::Engine;

/// The server record the libraries are saved under.
const RECORD: &str = "functions";
/// Version byte of the saved list (and of the DUMP payload inside its frame).
const FORMAT_VERSION: u8 = 1;
/// DUMP payloads start with this; a CRC32C of everything before it ends them.
const DUMP_MAGIC: &[u8] = b"HCFUNC";

/// One function as FUNCTION LIST shows it.
#[derive(Clone, Debug)]
pub struct FunctionInfo {
    pub name: String,
    pub description: Option<String>,
    pub flags: u8,
}

#[derive(Clone, Debug)]
pub struct Library {
    pub name: String,
    pub code: Bytes,
    pub functions: Vec<FunctionInfo>,
}

/// The libraries at one moment, by name.
#[derive(Default, Debug)]
pub struct Libraries {
    pub generation: u64,
    /// Built only by `Libraries::new`, which indexes `flags` from it.
    by_name: BTreeMap<String, Library>,
    /// Every function's flags by its name (asked on every FCALL).
    flags: HashMap<String, u8, foldhash::fast::RandomState>,
}

impl Libraries {
    fn new(generation: u64, by_name: BTreeMap<String, Library>) -> Libraries {
        let flags = by_name
            .values()
            .flat_map(|library| &library.functions)
            .map(|function| (function.name.clone(), function.flags))
            .collect();
        Libraries {
            generation,
            by_name,
            flags,
        }
    }

    pub fn by_name(&self) -> &BTreeMap<String, Library> {
        &self.by_name
    }

    /// The flags of function `name`, if there is one.
    pub fn flags_of(&self, name: &str) -> Option<u8> {
        self.flags.get(name).copied()
    }

    pub fn function_count(&self) -> usize {
        self.by_name
            .values()
            .map(|library| library.functions.len())
            .sum()
    }
}

/// The registry: the current snapshot and the lock that serialises changes.
#[derive(Default)]
pub struct Functions {
    current: Mutex<Arc<Libraries>>,
    changing: Mutex<()>,
}

impl Functions {
    pub fn snapshot(&self) -> Arc<Libraries> {
        Arc::clone(&self.current.lock())
    }

    /// Loads the libraries saved by an earlier run (at startup; import too). A library that
    /// no longer loads is logged and left out.
    pub fn load_saved(&self, engine: &Engine) {
        let codes = match saved_library_codes(engine) {
            Ok(codes) if codes.is_empty() => return,
            Ok(codes) => codes,
            Err(err) => {
                tracing::error!(%err, "cannot load the saved FUNCTION libraries; starting without them");
                return;
            }
        };
        let mut by_name = BTreeMap::new();
        for code in codes {
            match compile_library(&code) {
                Ok(library) => {
                    by_name.insert(library.name.clone(), library);
                }
                Err(err) => tracing::error!(%err, "a saved FUNCTION library does not load"),
            }
        }
        tracing::info!(
            libraries = by_name.len(),
            "loaded the saved FUNCTION libraries"
        );
        *self.current.lock() = Arc::new(Libraries::new(0, by_name));
    }

    /// Applies a change: `edit` gets the current libraries and returns the new set (or
    /// Redis's error text). No function name may then be in two libraries. The new set is
    /// saved before it is visible; nothing changes if saving fails.
    pub fn change(
        &self,
        engine: &Engine,
        edit: impl FnOnce(&Libraries) -> Result<BTreeMap<String, Library>, String>,
    ) -> Result<(), String> {
        let _one_change_at_a_time = self.changing.lock();
        let current = self.snapshot();
        let by_name = edit(&current)?;
        let mut seen = std::collections::HashSet::new();
        for function in by_name.values().flat_map(|library| &library.functions) {
            if !seen.insert(function.name.as_str()) {
                return Err(format!("Function {} already exists", function.name));
            }
        }
        let saved = encode_codes(by_name.values().map(|library| &library.code));
        engine
            .save_server_record(RECORD, &saved)
            .map_err(|err| format!("saving the libraries failed: {err}"))?;
        *self.current.lock() = Arc::new(Libraries::new(current.generation + 1, by_name));
        Ok(())
    }
}

/// Compiles and runs a library's code in a VM of its own, for its name and functions.
pub fn compile_library(code: &Bytes) -> Result<Library, String> {
    let name = shebang::library_name(code)?;
    let lua = super::sandboxed_vm()?;
    let mut functions: Vec<FunctionInfo> = load_into(&lua, code)?
        .into_iter()
        .map(|registered| registered.info)
        .collect();
    // FUNCTION LIST shows them by name (Redis's order is its hash table's).
    functions.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Library {
        name,
        code: code.clone(),
        functions,
    })
}

/// Every function's callback in one VM, as loaded for one generation of the libraries
/// (kept with the pooled VM, so an FCALL finds its callback without a call into Lua).
#[derive(Default)]
pub struct LoadedFunctions {
    generation: Option<u64>,
    callbacks: HashMap<String, Function, foldhash::fast::RandomState>,
}

impl LoadedFunctions {
    /// The callback of function `name` in `lua`, loading the libraries into it first when
    /// it has not seen this generation of them.
    pub fn callback(
        &mut self,
        lua: &Lua,
        libraries: &Libraries,
        name: &str,
    ) -> Result<&Function, String> {
        if self.generation != Some(libraries.generation) {
            let mut callbacks = HashMap::default();
            for library in libraries.by_name.values() {
                for registered in load_into(lua, &library.code)? {
                    callbacks.insert(registered.info.name, registered.callback);
                }
            }
            self.callbacks = callbacks;
            self.generation = Some(libraries.generation);
        }
        self.callbacks
            .get(name)
            .ok_or_else(|| "Function not found".to_string())
    }
}

/// A function as `redis.register_function` gave it.
struct Registered {
    info: FunctionInfo,
    callback: Function,
}

/// Runs a library's code with the loading API (`redis.register_function`, `redis.log` and
/// the log levels, nothing else, as Redis) and returns what it registered.
fn load_into(lua: &Lua, code: &[u8]) -> Result<Vec<Registered>, String> {
    let chunk = lua
        .load(&*shebang::as_lua(code))
        .set_name("@user_function")
        .into_function()
        .map_err(|err| {
            format!(
                "Error compiling function: {}",
                super::lua::syntax_text(&err)
            )
        })?;
    let registered = RefCell::new(Vec::<Registered>::new());
    let outcome = lua.scope(|scope| {
        let register = scope.create_function(|_, args: MultiValue| {
            let function = registration(args).map_err(mlua::Error::RuntimeError)?;
            let mut registered = registered.borrow_mut();
            if registered.iter().any(|r| r.info.name == function.info.name) {
                return Err(mlua::Error::RuntimeError(
                    "Function already exists in the library".into(),
                ));
            }
            registered.push(function);
            Ok(())
        })?;
        let load: Function = lua.globals().raw_get("__hypercache_load_library")?;
        super::with_load_deadline(lua, || load.call::<(bool, Value)>((chunk, register)))
    });
    let (loaded, error) = outcome.map_err(|err| format!("Lua: {err}"))?;
    if !loaded {
        return Err(format!(
            "Error registering functions: ERR {}",
            super::error_value_text(&error)
        ));
    }
    let registered = registered.into_inner();
    if registered.is_empty() {
        return Err("No functions registered".into());
    }
    Ok(registered)
}

/// `redis.register_function(name, callback)` or `redis.register_function{function_name=,
/// callback=, flags=, description=}`, checked with Redis's texts.
fn registration(args: MultiValue) -> Result<Registered, String> {
    let mut args = args.into_iter();
    let (first, second, third) = (args.next(), args.next(), args.next());
    let (name, callback, flags, description) = match (first, second, third) {
        (Some(Value::Table(named)), None, None) => named_registration(named)?,
        (Some(_), None, None) => return Err("calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).".into()),
        (Some(name), Some(callback), None) => {
            let Value::String(name) = name else {
                return Err("first argument to redis.register_function must be a string".into());
            };
            let Value::Function(callback) = callback else {
                return Err("second argument to redis.register_function must be a function".into());
            };
            (name.to_str().map_err(|_| INVALID_NAME)?.to_string(), callback, 0, None)
        }
        _ => return Err("wrong number of arguments to redis.register_function".into()),
    };
    if !valid_name(&name) {
        return Err(INVALID_NAME.into());
    }
    Ok(Registered {
        info: FunctionInfo {
            name,
            description,
            flags,
        },
        callback,
    })
}

type Registration = (String, Function, u8, Option<String>);

fn named_registration(named: Table) -> Result<Registration, String> {
    let (mut name, mut callback, mut flags, mut description) = (None, None, 0, None);
    for pair in named.pairs::<Value, Value>() {
        let (key, value) = pair.map_err(|err| err.to_string())?;
        let Value::String(key) = key else {
            return Err(
                "named argument key given to redis.register_function is not a string".into(),
            );
        };
        match &*key.as_bytes() {
            b"function_name" => {
                match value {
                    Value::String(text) => {
                        name = Some(String::from_utf8_lossy(&text.as_bytes()).into_owned())
                    }
                    _ => return Err(
                        "function_name argument given to redis.register_function must be a string"
                            .into(),
                    ),
                }
            }
            b"callback" => match value {
                Value::Function(function) => callback = Some(function),
                _ => {
                    return Err(
                        "callback argument given to redis.register_function must be a function"
                            .into(),
                    )
                }
            },
            b"description" => {
                match value {
                    Value::String(text) => {
                        description = Some(String::from_utf8_lossy(&text.as_bytes()).into_owned())
                    }
                    _ => return Err(
                        "description argument given to redis.register_function must be a string"
                            .into(),
                    ),
                }
            }
            b"flags" => {
                let Value::Table(list) = value else {
                    return Err("flags argument to redis.register_function must be a table representing function flags".into());
                };
                for flag in list.sequence_values::<Value>() {
                    let flag = match flag.map_err(|err| err.to_string())? {
                        Value::String(text) => flag_named(&text.as_bytes()),
                        _ => None,
                    };
                    flags |= flag.ok_or("unknown flag given")?;
                }
            }
            _ => return Err("unknown argument given to redis.register_function".into()),
        }
    }
    let name = name.ok_or("redis.register_function must get a function name argument")?;
    let callback = callback.ok_or("redis.register_function must get a callback argument")?;
    Ok((name, callback, flags, description))
}

/// `[version: u8][count: u32 LE]` then each library's `[len: u32 LE][code]`.
fn encode_codes<'a>(codes: impl ExactSizeIterator<Item = &'a Bytes>) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    out.extend_from_slice(&(codes.len() as u32).to_le_bytes());
    for code in codes {
        out.extend_from_slice(&(code.len() as u32).to_le_bytes());
        out.extend_from_slice(code);
    }
    out
}

fn decode_codes(raw: &[u8]) -> Option<Vec<Bytes>> {
    let (&version, rest) = raw.split_first()?;
    if version != FORMAT_VERSION {
        return None;
    }
    let (count, mut rest) = rest.split_at_checked(4)?;
    let count = u32::from_le_bytes(count.try_into().ok()?);
    let mut codes = Vec::new();
    for _ in 0..count {
        let (len, after) = rest.split_at_checked(4)?;
        let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
        let (code, after) = after.split_at_checked(len)?;
        codes.push(Bytes::copy_from_slice(code));
        rest = after;
    }
    rest.is_empty().then_some(codes)
}

/// The library codes saved in a data directory's engine (for `hypercache-tool export`).
pub fn saved_library_codes(engine: &Engine) -> Result<Vec<Bytes>, String> {
    match engine
        .server_record(RECORD)
        .map_err(|err| err.to_string())?
    {
        None => Ok(Vec::new()),
        Some(saved) => {
            decode_codes(&saved).ok_or_else(|| "the saved FUNCTION libraries are damaged".into())
        }
    }
}

/// FUNCTION DUMP's payload: magic, the library list, CRC32C of both.
pub fn dump(libraries: &Libraries) -> Vec<u8> {
    let mut out = DUMP_MAGIC.to_vec();
    out.extend(encode_codes(
        libraries.by_name.values().map(|library| &library.code),
    ));
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The library codes of a FUNCTION RESTORE payload, if it is one of ours and intact.
pub fn undump(payload: &[u8]) -> Option<Vec<Bytes>> {
    let (framed, crc) = payload.split_at_checked(payload.len().checked_sub(4)?)?;
    if crc32c::crc32c(framed).to_le_bytes() != crc {
        return None;
    }
    decode_codes(framed.strip_prefix(DUMP_MAGIC)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_payloads_round_trip_and_refuse_damage() {
        let mut libraries = Libraries::default();
        for name in ["a", "b"] {
            let code = Bytes::from(format!(
                "#!lua name={name}\nredis.register_function('f_{name}', function() return 1 end)"
            ));
            libraries
                .by_name
                .insert(name.into(), compile_library(&code).unwrap());
        }
        let payload = dump(&libraries);
        let codes = undump(&payload).unwrap();
        assert_eq!(codes.len(), 2);
        assert_eq!(codes[0], libraries.by_name["a"].code);
        let mut damaged = payload.clone();
        damaged[10] ^= 1;
        assert!(undump(&damaged).is_none());
        assert!(undump(b"garbage").is_none());
        assert!(undump(b"").is_none());
    }

    #[test]
    fn registration_errors_use_redis_texts() {
        let load = |body: &str| compile_library(&Bytes::from(format!("#!lua name=x\n{body}")));
        let err = |body: &str| load(body).unwrap_err();
        assert_eq!(
            err("redis.register_function('h', function() end)\nredis.register_function('h', function() end)"),
            "Error registering functions: ERR Function already exists in the library"
        );
        assert_eq!(
            err("redis.register_function('h')"),
            "Error registering functions: ERR calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments)."
        );
        assert_eq!(
            err("redis.register_function{function_name='h', callback=function() end, flags={'bad'}}"),
            "Error registering functions: ERR unknown flag given"
        );
        assert_eq!(
            err("redis.call('ping')"),
            "Error registering functions: ERR user_function:2: Script attempted to access nonexistent global variable 'call'"
        );
        assert_eq!(
            err("error('boom')"),
            "Error registering functions: ERR user_function:2: Script attempted to access nonexistent global variable 'error'"
        );
        assert_eq!(
            err("x = 1"),
            "Error registering functions: ERR user_function:2: Attempt to modify a readonly table"
        );
        assert_eq!(
            err("local a = "),
            "Error compiling function: user_function:2: unexpected symbol near '<eof>'"
        );
        assert_eq!(err("return 1"), "No functions registered");
        assert_eq!(
            err("local i = 0 while true do i = i + 1 end"),
            "Error registering functions: ERR FUNCTION LOAD timeout"
        );
        let library = load(
            "redis.register_function{function_name='g', callback=function() end, flags={'no-writes'}, description='reads'}",
        )
        .unwrap();
        assert_eq!(library.functions[0].description.as_deref(), Some("reads"));
        assert_eq!(library.functions[0].flags, shebang::NO_WRITES);
    }
}
