//! `cmsgpack`, the MessagePack library Redis gives scripts (job queues such as BullMQ keep
//! their data in it): `pack(v, ...)`, `unpack(s)`, `unpack_one(s [, offset])` and
//! `unpack_limit(s, limit [, offset])`, encoding exactly as Redis's lua_cmsgpack does
//! (the smallest integer form, float32 when it is exact, str8 for 32-255 bytes, a table
//! with keys 1..n as an array and any other as a map, nil past 16 levels of nesting).
//! Decoding is bounded: nesting past `MAX_DECODE_DEPTH` is refused, not recursed into.

use mlua::{Lua, MultiValue, Table, Value};

use super::lua::script_error;

/// Tables nested deeper than this are packed as nil (Redis's LUACMSGPACK_MAX_NESTING).
const MAX_PACK_NESTING: usize = 16;
/// Deeper input is refused as bad data, so hostile bytes cannot exhaust the (blocking
/// thread's) stack; packing nests at most 16 levels, so its own output always decodes.
const MAX_DECODE_DEPTH: usize = 64;

const BAD_FORMAT: &str = "Bad data format in input.";
const MISSING_BYTES: &str = "Missing bytes in input.";

pub fn library(lua: &Lua) -> mlua::Result<Table> {
    let cmsgpack = lua.create_table()?;
    cmsgpack.set(
        "pack",
        lua.create_function(|lua, values: MultiValue| {
            if values.is_empty() {
                return Err(script_error(
                    lua,
                    "bad argument #0 to 'pack' (MessagePack pack needs input.)",
                ));
            }
            let mut out = Vec::new();
            for value in values.iter() {
                pack(&mut out, value, 0);
            }
            lua.create_string(&out)
        })?,
    )?;
    cmsgpack.set(
        "unpack",
        lua.create_function(|lua, data: mlua::String| {
            let bytes = data.as_bytes();
            let (values, _) = unpack(lua, &bytes, 0, 0)?;
            Ok(MultiValue::from_vec(values))
        })?,
    )?;
    cmsgpack.set(
        "unpack_one",
        lua.create_function(|lua, (data, offset): (mlua::String, Option<i64>)| {
            unpack_returning_offset(lua, &data.as_bytes(), 1, offset)
        })?,
    )?;
    cmsgpack.set(
        "unpack_limit",
        lua.create_function(
            |lua, (data, limit, offset): (mlua::String, i64, Option<i64>)| {
                unpack_returning_offset(lua, &data.as_bytes(), limit.max(0) as usize, offset)
            },
        )?,
    )?;
    Ok(cmsgpack)
}

/// `unpack_one` / `unpack_limit`: the offset to continue from (-1 at the end), then values.
fn unpack_returning_offset(
    lua: &Lua,
    bytes: &[u8],
    limit: usize,
    offset: Option<i64>,
) -> mlua::Result<MultiValue> {
    let start = offset.unwrap_or(0);
    if start < 0 || start as usize > bytes.len() {
        return Err(script_error(
            lua,
            "bad argument #2 to 'unpack' (Start offset greater than input length.)",
        ));
    }
    let (values, next) = unpack(lua, bytes, start as usize, limit)?;
    let next = if next >= bytes.len() { -1 } else { next as i64 };
    let mut out = vec![Value::Integer(next)];
    out.extend(values);
    Ok(MultiValue::from_vec(out))
}

/// Decodes up to `limit` values (0: all) from `start`; returns them and where it stopped.
fn unpack(
    lua: &Lua,
    bytes: &[u8],
    start: usize,
    limit: usize,
) -> mlua::Result<(Vec<Value>, usize)> {
    let mut reader = Reader { bytes, at: start };
    let mut values = Vec::new();
    while reader.at < bytes.len() && (limit == 0 || values.len() < limit) {
        let value = reader.value(lua, 0).map_err(|failure| match failure {
            Failure::Lua(err) => err,
            Failure::Format(message) => script_error(lua, message),
        })?;
        values.push(value);
    }
    Ok((values, reader.at))
}

fn pack(out: &mut Vec<u8>, value: &Value, depth: usize) {
    match value {
        Value::Boolean(true) => out.push(0xc3),
        Value::Boolean(false) => out.push(0xc2),
        Value::Integer(n) => pack_int(out, *n),
        Value::Number(n) => pack_number(out, *n),
        Value::String(text) => pack_bytes(out, &text.as_bytes()),
        Value::Table(table) if depth < MAX_PACK_NESTING => pack_table(out, table, depth),
        // nil, functions, userdata, and tables nested too deep.
        _ => out.push(0xc0),
    }
}

fn pack_number(out: &mut Vec<u8>, n: f64) {
    if n.is_finite() && (n as i64) as f64 == n {
        pack_int(out, n as i64);
    } else if (n as f32) as f64 == n {
        out.push(0xca);
        out.extend_from_slice(&(n as f32).to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn pack_int(out: &mut Vec<u8>, n: i64) {
    if n >= 0 {
        match n {
            0..=127 => out.push(n as u8),
            128..=0xff => out.extend_from_slice(&[0xcc, n as u8]),
            0x100..=0xffff => {
                out.push(0xcd);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                out.push(0xce);
                out.extend_from_slice(&(n as u32).to_be_bytes());
            }
            _ => {
                out.push(0xcf);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
    } else if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= -128 {
        out.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= -32768 {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= -2_147_483_648 {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn pack_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = bytes.len();
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if len <= 0xff {
        out.extend_from_slice(&[0xd9, len as u8]);
    } else if len <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    out.extend_from_slice(bytes);
}

/// The header of an array or map of `len` items: the fix form, then 16 and 32 bits.
fn pack_header(out: &mut Vec<u8>, len: usize, fix: u8, wide: u8) {
    if len < 16 {
        out.push(fix | len as u8);
    } else if len <= 0xffff {
        out.push(wide);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(wide + 1);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

fn pack_table(out: &mut Vec<u8>, table: &Table, depth: usize) {
    let pairs: Vec<(Value, Value)> = table
        .clone()
        .pairs::<Value, Value>()
        .filter_map(Result::ok)
        .collect();
    // An array when the keys are exactly 1..n (Redis's table_is_an_array).
    let max_index = pairs
        .iter()
        .map(|(key, _)| match key {
            Value::Integer(n) if *n >= 1 => Some(*n as usize),
            Value::Number(n) if *n >= 1.0 && n.fract() == 0.0 => Some(*n as usize),
            _ => None,
        })
        .try_fold(0, |max, index| index.map(|index| max.max(index)));
    match max_index {
        Some(max) if max == pairs.len() => {
            pack_header(out, max, 0x90, 0xdc);
            for index in 1..=max {
                let item: Value = table.raw_get(index).unwrap_or(Value::Nil);
                pack(out, &item, depth + 1);
            }
        }
        _ => {
            pack_header(out, pairs.len(), 0x80, 0xde);
            for (key, item) in &pairs {
                pack(out, key, depth + 1);
                pack(out, item, depth + 1);
            }
        }
    }
}

enum Failure {
    Format(&'static str),
    Lua(mlua::Error),
}

impl From<mlua::Error> for Failure {
    fn from(err: mlua::Error) -> Self {
        Failure::Lua(err)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Failure> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(Failure::Format(MISSING_BYTES))?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn uint(&mut self, width: usize) -> Result<u64, Failure> {
        Ok(self
            .take(width)?
            .iter()
            .fold(0u64, |n, byte| (n << 8) | u64::from(*byte)))
    }

    fn value(&mut self, lua: &Lua, depth: usize) -> Result<Value, Failure> {
        if depth > MAX_DECODE_DEPTH {
            return Err(Failure::Format(BAD_FORMAT));
        }
        let tag = self.take(1)?[0];
        let number = |n: f64| Ok(Value::Number(n));
        match tag {
            0x00..=0x7f => Ok(Value::Integer(i64::from(tag))),
            0xe0..=0xff => Ok(Value::Integer(i64::from(tag as i8))),
            0x80..=0x8f => self.map(lua, usize::from(tag & 0x0f), depth),
            0x90..=0x9f => self.array(lua, usize::from(tag & 0x0f), depth),
            0xa0..=0xbf => self.string(lua, usize::from(tag & 0x1f)),
            0xc0 => Ok(Value::Nil),
            0xc2 => Ok(Value::Boolean(false)),
            0xc3 => Ok(Value::Boolean(true)),
            0xc4 | 0xd9 => {
                let len = self.uint(1)? as usize;
                self.string(lua, len)
            }
            0xc5 | 0xda => {
                let len = self.uint(2)? as usize;
                self.string(lua, len)
            }
            0xc6 | 0xdb => {
                let len = self.uint(4)? as usize;
                self.string(lua, len)
            }
            0xca => number(f64::from(f32::from_bits(self.uint(4)? as u32))),
            0xcb => number(f64::from_bits(self.uint(8)?)),
            0xcc => Ok(Value::Integer(self.uint(1)? as i64)),
            0xcd => Ok(Value::Integer(self.uint(2)? as i64)),
            0xce => Ok(Value::Integer(self.uint(4)? as i64)),
            0xcf => number(self.uint(8)? as f64),
            0xd0 => Ok(Value::Integer(i64::from(self.uint(1)? as u8 as i8))),
            0xd1 => Ok(Value::Integer(i64::from(self.uint(2)? as u16 as i16))),
            0xd2 => Ok(Value::Integer(i64::from(self.uint(4)? as u32 as i32))),
            0xd3 => number(self.uint(8)? as i64 as f64),
            0xdc => {
                let len = self.uint(2)? as usize;
                self.array(lua, len, depth)
            }
            0xdd => {
                let len = self.uint(4)? as usize;
                self.array(lua, len, depth)
            }
            0xde => {
                let len = self.uint(2)? as usize;
                self.map(lua, len, depth)
            }
            0xdf => {
                let len = self.uint(4)? as usize;
                self.map(lua, len, depth)
            }
            _ => Err(Failure::Format(BAD_FORMAT)),
        }
    }

    fn string(&mut self, lua: &Lua, len: usize) -> Result<Value, Failure> {
        let bytes = self.take(len)?;
        Ok(Value::String(lua.create_string(bytes)?))
    }

    /// A declared length never reserves more than the input could hold.
    fn capacity(&self, len: usize) -> usize {
        len.min(self.bytes.len() - self.at)
    }

    fn array(&mut self, lua: &Lua, len: usize, depth: usize) -> Result<Value, Failure> {
        let table = lua.create_table_with_capacity(self.capacity(len), 0)?;
        for index in 1..=len {
            let item = self.value(lua, depth + 1)?;
            table.raw_set(index, item)?;
        }
        Ok(Value::Table(table))
    }

    fn map(&mut self, lua: &Lua, len: usize, depth: usize) -> Result<Value, Failure> {
        let table = lua.create_table_with_capacity(0, self.capacity(len))?;
        for _ in 0..len {
            let key = self.value(lua, depth + 1)?;
            let item = self.value(lua, depth + 1)?;
            if !key.is_nil() {
                table.raw_set(key, item)?;
            }
        }
        Ok(Value::Table(table))
    }
}
