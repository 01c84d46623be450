//! One Lua 5.1 VM as Redis sets it up: only the base, table, string and math libraries
//! (no io, os, loadfile, dofile), `bit` and `cjson` written here, `cmsgpack` (`msgpack`),
//! `struct` (`lua_struct`), the `redis` table (`call`, `pcall`, `error_reply`, `status_reply`, `sha1hex`, `log`, `setresp`,
//! `set_repl`, `replicate_commands` and the LOG_* / REPL_* constants), and globals that can
//! neither be created nor read when missing. It also owns Redis's conversion rules between
//! Lua values and replies, both ways. A VM keeps the functions it has compiled, by SHA1.

use bytes::Bytes;
use mlua::{Function, Lua, LuaOptions, MultiValue, StdLib, Table, Value};

use crate::protocol::Reply;

/// Runs once per VM, after the libraries and the `redis` table are in place:
///
/// `__hypercache_run(f, is_script, nkeys, keys..., argv...)` runs a script or function
/// under `pcall`, so a Lua error comes back as a value (a string, a table the script raised,
/// or the error `redis.call` raised) rather than a Rust error. It builds KEYS and ARGV in
/// Lua, cheaper than table by table from Rust: a script's are globals (left in place until
/// a function runs, which finds none), a function's are its arguments.
///
/// `__hypercache_load_library(chunk, register)` runs a FUNCTION library's code as Redis
/// does: while it loads, its globals are only `redis` with `register_function`, `log` and
/// the log levels; afterwards, the functions it registered see the VM's globals (`redis.call`
/// and the libraries). Its environment reads through `loading_api` while loading, so the
/// closures it creates need no second environment.
///
/// Last, the globals are locked as Redis locks them: they can be neither created nor read
/// when missing, the error is raised at the script's line (level 2), and the lock cannot be
/// taken off.
const PRELUDE: &str = r#"
local pcall, rawget, rawset, select, error, tostring, setmetatable, setfenv = pcall, rawget, rawset, select, error, tostring, setmetatable, setfenv
local G = _G
-- Whether KEYS and ARGV hold a script's (a function must not find them).
local script_globals = false
__hypercache_run = function(f, is_script, nkeys, ...)
    local keys, argv = {}, {}
    local n = select('#', ...)
    if n <= 8 then
        -- A few arguments: no table for them all (select is O(n), so only for a few).
        for i = 1, nkeys do
            keys[i] = (select(i, ...))
        end
        for i = nkeys + 1, n do
            argv[i - nkeys] = (select(i, ...))
        end
    else
        local args = {...}
        for i = 1, nkeys do
            keys[i] = args[i]
        end
        for i = nkeys + 1, n do
            argv[i - nkeys] = args[i]
        end
    end
    if not is_script then
        if script_globals then
            rawset(G, "KEYS", nil)
            rawset(G, "ARGV", nil)
            script_globals = false
        end
        return pcall(f, keys, argv)
    end
    rawset(G, "KEYS", keys)
    rawset(G, "ARGV", argv)
    script_globals = true
    return pcall(f)
end
local function missing_text(name)
    return "Script attempted to access nonexistent global variable '" .. tostring(name) .. "'"
end
local function missing(_, name)
    error(missing_text(name), 2)
end
local function readonly()
    error("Attempt to modify a readonly table", 2)
end
local loading_api = nil
__hypercache_load_library = function(chunk, register)
    local redis = G.redis
    loading_api = {
        redis = setmetatable({
            register_function = register,
            log = redis.log,
            LOG_DEBUG = redis.LOG_DEBUG,
            LOG_VERBOSE = redis.LOG_VERBOSE,
            LOG_NOTICE = redis.LOG_NOTICE,
            LOG_WARNING = redis.LOG_WARNING,
        }, { __index = missing, __newindex = readonly, __metatable = false }),
    }
    setfenv(chunk, setmetatable({}, {
        __index = function(_, name)
            local value = rawget(loading_api or G, name)
            if value == nil then
                error(missing_text(name), 2)
            end
            return value
        end,
        __newindex = readonly,
        __metatable = false,
    }))
    local ok, err = pcall(chunk)
    loading_api = nil
    return ok, err
end
setmetatable(G, { __newindex = readonly, __index = missing, __metatable = false })
"#;

/// The chunk name Redis gives scripts: errors read `user_script:3: ...`.
pub const CHUNK_NAME: &str = "@user_script";

/// A new sandboxed VM with the `redis` table; `redis.call` and `redis.pcall` are bound
/// per run.
pub fn new_vm() -> mlua::Result<Lua> {
    let lua = Lua::new_with(
        StdLib::TABLE | StdLib::STRING | StdLib::MATH,
        LuaOptions::default(),
    )?;
    let globals = lua.globals();
    for unsafe_global in [
        "dofile",
        "loadfile",
        "print",
        "collectgarbage",
        "module",
        "require",
    ] {
        globals.raw_set(unsafe_global, Value::Nil)?;
    }
    let redis = lua.create_table()?;
    for (name, field) in [("error_reply", "err"), ("status_reply", "ok")] {
        redis.set(
            name,
            lua.create_function(move |lua, text: mlua::String| tagged(lua, field, text))?,
        )?;
    }
    redis.set(
        "sha1hex",
        lua.create_function(|_, text: mlua::String| Ok(super::sha1_hex(&text.as_bytes())))?,
    )?;
    redis.set(
        "log",
        lua.create_function(|_, (level, message): (i64, mlua::String)| {
            let message = String::from_utf8_lossy(&message.as_bytes()).into_owned();
            match level {
                0 => tracing::debug!(target: "script", "{message}"),
                1 | 2 => tracing::info!(target: "script", "{message}"),
                _ => tracing::warn!(target: "script", "{message}"),
            }
            Ok(())
        })?,
    )?;
    // Replication applies a script's effects, so these change nothing here.
    redis.set("set_repl", lua.create_function(|_, _: MultiValue| Ok(()))?)?;
    redis.set("replicate_commands", lua.create_function(|_, ()| Ok(true))?)?;
    redis.set(
        "setresp",
        lua.create_function(|_, version: i64| match version {
            2 | 3 => {
                super::calls::running_script(|script| {
                    script
                        .resp3
                        .store(version == 3, std::sync::atomic::Ordering::Relaxed)
                });
                Ok(())
            }
            _ => Err(mlua::Error::RuntimeError(
                "RESP version must be 2 or 3.".into(),
            )),
        })?,
    )?;
    for (name, value) in [
        ("LOG_DEBUG", 0),
        ("LOG_VERBOSE", 1),
        ("LOG_NOTICE", 2),
        ("LOG_WARNING", 3),
        ("REPL_NONE", 0),
        ("REPL_SLAVE", 1),
        ("REPL_REPLICA", 1),
        ("REPL_AOF", 2),
        ("REPL_ALL", 3),
    ] {
        redis.set(name, value)?;
    }
    globals.raw_set("redis", redis)?;
    globals.raw_set("bit", bit_library(&lua)?)?;
    globals.raw_set("cjson", cjson_library(&lua)?)?;
    globals.raw_set("cmsgpack", super::msgpack::library(&lua)?)?;
    globals.raw_set("struct", super::lua_struct::library(&lua)?)?;
    lua.load(PRELUDE).set_name("@prelude").exec()?;
    Ok(lua)
}

/// The compiled function for `sha`, compiling `body` into this VM the first time.
pub fn compile(lua: &Lua, body: &[u8]) -> Result<Function, String> {
    lua.load(&*super::shebang::as_lua(body))
        .set_name(CHUNK_NAME)
        .into_function()
        .map_err(|err| compile_error_text(&err))
}

fn compile_error_text(err: &mlua::Error) -> String {
    format!(
        "Error compiling script (new function): {}",
        syntax_text(err)
    )
}

/// A compile error's message. mlua prefixes the chunk name as `[string "..."]` only for
/// unnamed chunks; ours read `user_script:1: ...` as Redis's do.
pub fn syntax_text(err: &mlua::Error) -> String {
    match err {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// An error raised at the script's line, as `luaL_error` raises it in Redis (for the
/// libraries' argument and data errors).
pub(super) fn script_error(lua: &Lua, message: &str) -> mlua::Error {
    let at = lua
        .inspect_stack(1)
        .and_then(|frame| {
            let source = frame.source().short_src?.into_owned();
            Some(format!("{source}:{}: ", frame.curr_line()))
        })
        .unwrap_or_default();
    mlua::Error::RuntimeError(format!("{at}{message}"))
}

/// A one-field table `{name = value}`, the shape Redis gives RESP3 types in Lua.
fn tagged(lua: &Lua, name: &str, value: impl mlua::IntoLua) -> mlua::Result<Value> {
    let table = lua.create_table_with_capacity(0, 1)?;
    table.raw_set(name, value)?;
    Ok(Value::Table(table))
}

/// A reply as a script sees it, by Redis's rules. RESP2 (the default): integer → number,
/// bulk → string, nil → false, array → table, status → `{ok=...}`, error → `{err=...}`,
/// and RESP3 types as a RESP2 client gets them. After `redis.setresp(3)`: nil → nil,
/// booleans → booleans, and `{map=}`, `{set=}`, `{double=}`, `{big_number=}`,
/// `{verbatim_string={format=, string=}}`.
pub fn reply_to_lua(lua: &Lua, reply: Reply, resp3: bool) -> mlua::Result<Value> {
    let string = |bytes: &[u8]| lua.create_string(bytes).map(Value::String);
    Ok(match reply {
        Reply::Simple(text) => tagged(lua, "ok", lua.create_string(text.as_bytes())?)?,
        Reply::Error(text) => tagged(lua, "err", lua.create_string(text.as_bytes())?)?,
        Reply::Integer(n) => Value::Integer(n),
        Reply::Bulk(bytes) => string(&bytes)?,
        Reply::Nil | Reply::NilArray if resp3 => Value::Nil,
        Reply::Nil | Reply::NilArray => Value::Boolean(false),
        Reply::Boolean(value) if resp3 => Value::Boolean(value),
        Reply::Boolean(value) => Value::Integer(i64::from(value)),
        Reply::Double(value) if resp3 => tagged(lua, "double", value)?,
        Reply::Double(value) => string(crate::commands::args::float_text(value).as_bytes())?,
        Reply::BigNumber(text) if resp3 => tagged(lua, "big_number", text)?,
        Reply::BigNumber(text) => string(text.as_bytes())?,
        Reply::Verbatim { format, text } if resp3 => {
            let verbatim = lua.create_table_with_capacity(0, 2)?;
            verbatim.raw_set("format", lua.create_string(format)?)?;
            verbatim.raw_set("string", lua.create_string(&text[..])?)?;
            tagged(lua, "verbatim_string", verbatim)?
        }
        Reply::Verbatim { text, .. } => string(&text)?,
        Reply::Set(items) if resp3 => {
            let set = lua.create_table_with_capacity(0, items.len())?;
            for item in items {
                let member = reply_to_lua(lua, item, resp3)?;
                if !member.is_nil() {
                    set.raw_set(member, true)?;
                }
            }
            tagged(lua, "set", set)?
        }
        Reply::Map(pairs) if resp3 => {
            let map = lua.create_table_with_capacity(0, pairs.len())?;
            for (key, value) in pairs {
                let key = reply_to_lua(lua, key, resp3)?;
                if !key.is_nil() {
                    map.raw_set(key, reply_to_lua(lua, value, resp3)?)?;
                }
            }
            tagged(lua, "map", map)?
        }
        Reply::Array(items) | Reply::Set(items) | Reply::Push(items) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (index, item) in items.into_iter().enumerate() {
                table.raw_set(index + 1, reply_to_lua(lua, item, resp3)?)?;
            }
            Value::Table(table)
        }
        Reply::Map(pairs) => {
            let table = lua.create_table_with_capacity(pairs.len() * 2, 0)?;
            for (index, (key, value)) in pairs.into_iter().enumerate() {
                table.raw_set(index * 2 + 1, reply_to_lua(lua, key, resp3)?)?;
                table.raw_set(index * 2 + 2, reply_to_lua(lua, value, resp3)?)?;
            }
            Value::Table(table)
        }
    })
}

/// A script's return value as a reply (Redis's rules): number → integer (truncated),
/// string → bulk, nil → nil, true → 1 and false → nil (after `redis.setresp(3)`: RESP3
/// booleans), `{ok=...}` → status, `{err=...}` → error, `{double=}`, `{big_number=}`,
/// `{map=}`, `{set=}`, `{verbatim_string=}` → those RESP3 types (a RESP2 client gets them
/// as Redis downgrades them), any other table → array up to its first nil.
pub fn lua_to_reply(value: &Value, resp3: bool) -> Reply {
    nested_reply(value, resp3, 0)
}

/// Nesting of a script's reply past which the rest is Redis's error element: a table that
/// contains itself would otherwise recurse until the stack overflows.
const REPLY_MAX_DEPTH: usize = 128;

fn nested_reply(value: &Value, resp3: bool, depth: usize) -> Reply {
    if depth > REPLY_MAX_DEPTH {
        return Reply::Error("ERR reached lua stack limit".into());
    }
    let lua_to_reply = |value: &Value, resp3: bool| nested_reply(value, resp3, depth + 1);
    let text = |text: &mlua::String| String::from_utf8_lossy(&text.as_bytes()).into_owned();
    match value {
        Value::Nil => Reply::Nil,
        Value::Boolean(value) if resp3 => Reply::Boolean(*value),
        Value::Boolean(false) => Reply::Nil,
        Value::Boolean(true) => Reply::Integer(1),
        Value::Integer(n) => Reply::Integer(*n),
        Value::Number(n) => Reply::Integer(*n as i64),
        Value::String(text) => Reply::Bulk(Bytes::copy_from_slice(&text.as_bytes())),
        Value::Table(table) => {
            let field = |name: &str| table.raw_get::<Value>(name).unwrap_or(Value::Nil);
            if let Value::String(message) = field("err") {
                // Sent as written, code or no code (Redis does the same).
                return Reply::Error(text(&message));
            }
            if let Value::String(status) = field("ok") {
                return Reply::Simple(text(&status));
            }
            match field("double") {
                Value::Number(n) => return Reply::Double(n),
                Value::Integer(n) => return Reply::Double(n as f64),
                _ => {}
            }
            if let Value::String(number) = field("big_number") {
                return Reply::BigNumber(text(&number));
            }
            if let Value::Table(map) = field("map") {
                return Reply::Map(
                    map.pairs::<Value, Value>()
                        .filter_map(Result::ok)
                        .map(|(key, value)| {
                            (lua_to_reply(&key, resp3), lua_to_reply(&value, resp3))
                        })
                        .collect(),
                );
            }
            if let Value::Table(set) = field("set") {
                return Reply::Set(
                    set.pairs::<Value, Value>()
                        .filter_map(Result::ok)
                        .map(|(member, _)| lua_to_reply(&member, resp3))
                        .collect(),
                );
            }
            if let Value::Table(verbatim) = field("verbatim_string") {
                let format: Option<mlua::String> = verbatim.raw_get("format").ok();
                let string: Option<mlua::String> = verbatim.raw_get("string").ok();
                if let (Some(format), Some(string)) = (format, string) {
                    if let Ok(format) = <[u8; 3]>::try_from(&*format.as_bytes()) {
                        return Reply::Verbatim {
                            format,
                            text: Bytes::copy_from_slice(&string.as_bytes()),
                        };
                    }
                }
            }
            let mut items = Vec::new();
            for index in 1.. {
                match table.raw_get::<Value>(index) {
                    Ok(Value::Nil) | Err(_) => break,
                    Ok(item) => items.push(lua_to_reply(&item, resp3)),
                }
            }
            Reply::Array(items)
        }
        _ => Reply::Nil,
    }
}

/// Lua BitOp's `bit` library, as Redis ships it: 32-bit signed results.
fn bit_library(lua: &Lua) -> mlua::Result<Table> {
    let bit = lua.create_table()?;
    let to32 = |value: f64| -> i32 { (value as i64) as i32 };
    bit.set("tobit", lua.create_function(move |_, x: f64| Ok(to32(x)))?)?;
    bit.set("bnot", lua.create_function(move |_, x: f64| Ok(!to32(x)))?)?;
    let fold = |op: fn(i32, i32) -> i32| {
        move |_: &Lua, values: mlua::Variadic<f64>| {
            Ok(values.iter().map(|x| to32(*x)).reduce(op).unwrap_or(0))
        }
    };
    bit.set("band", lua.create_function(fold(|a, b| a & b))?)?;
    bit.set("bor", lua.create_function(fold(|a, b| a | b))?)?;
    bit.set("bxor", lua.create_function(fold(|a, b| a ^ b))?)?;
    bit.set(
        "lshift",
        lua.create_function(move |_, (x, n): (f64, f64)| {
            Ok(((to32(x) as u32) << (to32(n) & 31)) as i32)
        })?,
    )?;
    bit.set(
        "rshift",
        lua.create_function(move |_, (x, n): (f64, f64)| {
            Ok(((to32(x) as u32) >> (to32(n) & 31)) as i32)
        })?,
    )?;
    bit.set(
        "arshift",
        lua.create_function(move |_, (x, n): (f64, f64)| Ok(to32(x) >> (to32(n) & 31)))?,
    )?;
    bit.set(
        "tohex",
        lua.create_function(move |_, (x, n): (f64, Option<f64>)| {
            let digits = n.map_or(8, |n| to32(n).unsigned_abs().min(8) as usize);
            let text = format!("{:08x}", to32(x) as u32);
            Ok(text[8 - digits..].to_string())
        })?,
    )?;
    Ok(bit)
}

/// `cjson.encode` / `cjson.decode`, through serde_json: tables with keys 1..n are arrays,
/// other tables objects.
fn cjson_library(lua: &Lua) -> mlua::Result<Table> {
    let cjson = lua.create_table()?;
    cjson.set(
        "encode",
        lua.create_function(|_, value: Value| {
            Ok(json_of(&value, 0)
                .map_err(mlua::Error::RuntimeError)?
                .to_string())
        })?,
    )?;
    cjson.set(
        "decode",
        lua.create_function(|lua, text: mlua::String| {
            let json: serde_json::Value =
                serde_json::from_slice(&text.as_bytes()).map_err(|err| {
                    mlua::Error::RuntimeError(format!(
                        "Expected value but found invalid JSON: {err}"
                    ))
                })?;
            lua_of(lua, &json)
        })?,
    )?;
    Ok(cjson)
}

/// Nesting cjson.encode accepts (serde_json refuses deeper input when decoding).
const JSON_MAX_DEPTH: usize = 128;

fn json_of(value: &Value, depth: usize) -> Result<serde_json::Value, String> {
    // Redis allows 1000 levels; each level here is a Rust frame on a blocking thread's
    // stack, and 1000 of them overflowed it (a self-referencing table crashed the server),
    // so the limit is serde_json's own decoding limit, 128.
    if depth > JSON_MAX_DEPTH {
        return Err(format!(
            "Cannot serialise, excessive nesting ({})",
            JSON_MAX_DEPTH + 1
        ));
    }
    Ok(match value {
        Value::Nil => serde_json::Value::Null,
        Value::Boolean(b) => serde_json::Value::Bool(*b),
        Value::Integer(n) => serde_json::Value::from(*n),
        Value::Number(n) => serde_json::Number::from_f64(*n)
            .map(serde_json::Value::Number)
            .ok_or("Cannot serialise number: must not be NaN or Inf")?,
        Value::String(text) => {
            serde_json::Value::String(String::from_utf8_lossy(&text.as_bytes()).into_owned())
        }
        Value::Table(table) => {
            let length = table.raw_len();
            let pairs: Vec<(Value, Value)> = table
                .clone()
                .pairs::<Value, Value>()
                .collect::<mlua::Result<_>>()
                .map_err(|err| err.to_string())?;
            if length > 0 && pairs.len() == length {
                let mut items = Vec::with_capacity(length);
                for index in 1..=length {
                    let item: Value = table.raw_get(index).map_err(|err| err.to_string())?;
                    items.push(json_of(&item, depth + 1)?);
                }
                serde_json::Value::Array(items)
            } else {
                let mut object = serde_json::Map::new();
                for (key, item) in pairs {
                    let key = match key {
                        Value::String(text) => {
                            String::from_utf8_lossy(&text.as_bytes()).into_owned()
                        }
                        Value::Integer(n) => n.to_string(),
                        Value::Number(n) => n.to_string(),
                        _ => {
                            return Err(
                                "Cannot serialise table: table key must be a number or string"
                                    .into(),
                            )
                        }
                    };
                    object.insert(key, json_of(&item, depth + 1)?);
                }
                serde_json::Value::Object(object)
            }
        }
        _ => return Err("Cannot serialise: type not supported".into()),
    })
}

fn lua_of(lua: &Lua, json: &serde_json::Value) -> mlua::Result<Value> {
    Ok(match json {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(n) => Value::Integer(n),
            None => Value::Number(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(text) => Value::String(lua.create_string(text)?),
        serde_json::Value::Array(items) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (index, item) in items.iter().enumerate() {
                table.raw_set(index + 1, lua_of(lua, item)?)?;
            }
            Value::Table(table)
        }
        serde_json::Value::Object(object) => {
            let table = lua.create_table_with_capacity(0, object.len())?;
            for (key, item) in object {
                table.raw_set(key.as_str(), lua_of(lua, item)?)?;
            }
            Value::Table(table)
        }
    })
}
