//! `struct`, the binary packing library Redis gives scripts (Roberto Ierusalimschy's
//! lua_struct): `pack(fmt, ...)`, `unpack(fmt, s [, pos])` and `size(fmt)`, with its format
//! language: `<` `>` `=` byte order, `!n` alignment, `b B h H l L T i[n] I[n]` integers,
//! `f d` floats, `s` zero-terminated and `c[n]` fixed strings (`c0` in unpack: the length
//! is the previous value), `x` padding, spaces ignored. Positions are 1-based, as in Lua.

use mlua::{Lua, MultiValue, Value};

use super::lua::script_error;

/// Widest integer the format accepts (lua_struct's MAXINTSIZE).
const MAX_INT_SIZE: usize = 32;
/// `!` without a number: the platform's widest alignment.
const NATIVE_ALIGN: usize = 8;

#[derive(Clone, Copy)]
struct Header {
    little: bool,
    align: usize,
}

/// One format item.
enum Item {
    Int {
        size: usize,
        signed: bool,
    },
    Float,
    Double,
    /// `c[n]`; `c0` takes its length from the data (pack) or the previous value (unpack).
    Chars(usize),
    ZeroTerminated,
    Pad,
}

impl Item {
    fn size(&self) -> usize {
        match self {
            Item::Int { size, .. } => *size,
            Item::Float => 4,
            Item::Double => 8,
            Item::Chars(n) => *n,
            Item::ZeroTerminated => 0,
            Item::Pad => 1,
        }
    }
}

/// Parses the format into items, each with the byte order and alignment in force.
fn parse(format: &[u8]) -> Result<Vec<(Header, Item)>, String> {
    let mut header = Header {
        little: true,
        align: 1,
    };
    let mut items = Vec::new();
    let mut rest = format;
    let number = |rest: &mut &[u8], default: usize| -> usize {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return default;
        }
        let text = std::str::from_utf8(&rest[..digits]).unwrap_or("0");
        *rest = &rest[digits..];
        text.parse().unwrap_or(usize::MAX)
    };
    while let Some((&option, after)) = rest.split_first() {
        rest = after;
        let int = |size: usize, signed: bool| Item::Int { size, signed };
        let item = match option {
            b' ' => continue,
            b'<' | b'=' => {
                header.little = true;
                continue;
            }
            b'>' => {
                header.little = false;
                continue;
            }
            b'!' => {
                let align = number(&mut rest, NATIVE_ALIGN);
                if !align.is_power_of_two() {
                    return Err("alignment must be power of 2".into());
                }
                header.align = align;
                continue;
            }
            b'b' => int(1, true),
            b'B' => int(1, false),
            b'h' => int(2, true),
            b'H' => int(2, false),
            b'l' => int(8, true),
            b'L' | b'T' => int(8, false),
            b'i' | b'I' => {
                let size = number(&mut rest, 4);
                if size > MAX_INT_SIZE {
                    return Err(format!(
                        "integral size {size} is larger than limit of {MAX_INT_SIZE}"
                    ));
                }
                int(size, option == b'i')
            }
            b'f' => Item::Float,
            b'd' => Item::Double,
            b'c' => Item::Chars(number(&mut rest, 1)),
            b's' => Item::ZeroTerminated,
            b'x' => Item::Pad,
            other => return Err(format!("invalid format option '{}'", char::from(other))),
        };
        items.push((header, item));
    }
    Ok(items)
}

/// Padding before an item at offset `len` (no padding for chars, strings or bytes).
fn padding(header: Header, item: &Item, len: usize) -> usize {
    let size = item.size();
    if size <= 1 || matches!(item, Item::Chars(_)) {
        return 0;
    }
    let align = size.min(header.align);
    (align - (len & (align - 1))) & (align - 1)
}

fn put_int(out: &mut Vec<u8>, value: u64, size: usize, little: bool) {
    let mut bytes: Vec<u8> = (0..size)
        .map(|i| if i < 8 { (value >> (8 * i)) as u8 } else { 0 })
        .collect();
    if !little {
        bytes.reverse();
    }
    out.extend_from_slice(&bytes);
}

fn number_arg(lua: &Lua, args: &[Value], index: usize) -> mlua::Result<f64> {
    match args.get(index) {
        Some(Value::Integer(n)) => Ok(*n as f64),
        Some(Value::Number(n)) => Ok(*n),
        Some(Value::String(text)) => text
            .to_str()
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .ok_or_else(|| bad_argument(lua, index + 2, "pack", "number expected")),
        _ => Err(bad_argument(lua, index + 2, "pack", "number expected")),
    }
}

fn bad_argument(lua: &Lua, position: usize, function: &str, message: &str) -> mlua::Error {
    script_error(
        lua,
        &format!("bad argument #{position} to '{function}' ({message})"),
    )
}

fn pack(lua: &Lua, format: &[u8], args: &[Value]) -> mlua::Result<Vec<u8>> {
    let items = parse(format).map_err(|message| bad_argument(lua, 1, "pack", &message))?;
    let mut out = Vec::new();
    let mut next = 0;
    for (header, item) in items {
        out.resize(out.len() + padding(header, &item, out.len()), 0);
        match item {
            Item::Pad => out.push(0),
            Item::Int { size, .. } => {
                let n = number_arg(lua, args, next)?;
                next += 1;
                let value = if n < 0.0 { n as i64 as u64 } else { n as u64 };
                put_int(&mut out, value, size, header.little);
            }
            Item::Float | Item::Double => {
                let n = number_arg(lua, args, next)?;
                next += 1;
                let mut bytes = match item {
                    Item::Float => (n as f32).to_le_bytes().to_vec(),
                    _ => n.to_le_bytes().to_vec(),
                };
                if !header.little {
                    bytes.reverse();
                }
                out.extend_from_slice(&bytes);
            }
            Item::Chars(size) => {
                let Some(Value::String(text)) = args.get(next) else {
                    return Err(bad_argument(lua, next + 2, "pack", "string expected"));
                };
                let bytes = text.as_bytes();
                let size = if size == 0 { bytes.len() } else { size };
                if bytes.len() < size {
                    return Err(bad_argument(lua, next + 2, "pack", "string too short"));
                }
                out.extend_from_slice(&bytes[..size]);
                next += 1;
            }
            Item::ZeroTerminated => {
                let Some(Value::String(text)) = args.get(next) else {
                    return Err(bad_argument(lua, next + 2, "pack", "string expected"));
                };
                out.extend_from_slice(&text.as_bytes());
                out.push(0);
                next += 1;
            }
        }
    }
    Ok(out)
}

fn unpack(lua: &Lua, format: &[u8], data: &[u8], start: usize) -> mlua::Result<MultiValue> {
    let items = parse(format).map_err(|message| bad_argument(lua, 1, "unpack", &message))?;
    let too_short = || bad_argument(lua, 2, "unpack", "data string too short");
    let mut at = start;
    let mut values: Vec<Value> = Vec::new();
    for (header, item) in items {
        at += padding(header, &item, at);
        let take = |at: usize, n: usize| {
            at.checked_add(n)
                .and_then(|end| data.get(at..end))
                .ok_or_else(too_short)
        };
        match item {
            Item::Pad => at += 1,
            Item::Int { size, signed } => {
                let mut bytes = take(at, size)?.to_vec();
                if !header.little {
                    bytes.reverse();
                }
                let mut value = bytes
                    .iter()
                    .take(8)
                    .rev()
                    .fold(0u64, |n, byte| (n << 8) | u64::from(*byte));
                if signed && size < 8 && size > 0 && value >> (8 * size - 1) & 1 == 1 {
                    value |= u64::MAX << (8 * size);
                }
                let number = match signed {
                    true => value as i64 as f64,
                    false => value as f64,
                };
                values.push(Value::Number(number));
                at += size;
            }
            Item::Float | Item::Double => {
                let size = item.size();
                let mut bytes = take(at, size)?.to_vec();
                if !header.little {
                    bytes.reverse();
                }
                let number = match size {
                    4 => f64::from(f32::from_le_bytes(bytes.try_into().expect("4 bytes"))),
                    _ => f64::from_le_bytes(bytes.try_into().expect("8 bytes")),
                };
                values.push(Value::Number(number));
                at += size;
            }
            Item::Chars(size) => {
                let size = match size {
                    // c0: the length is the value just read.
                    0 => match values.pop() {
                        Some(Value::Number(n)) if n >= 0.0 => n as usize,
                        _ => {
                            return Err(bad_argument(
                                lua,
                                1,
                                "unpack",
                                "format 'c0' needs a previous size",
                            ))
                        }
                    },
                    size => size,
                };
                values.push(Value::String(lua.create_string(take(at, size)?)?));
                at += size;
            }
            Item::ZeroTerminated => {
                let rest = data.get(at..).ok_or_else(too_short)?;
                let len = rest
                    .iter()
                    .position(|&byte| byte == 0)
                    .ok_or_else(|| bad_argument(lua, 2, "unpack", "unfinished string in data"))?;
                values.push(Value::String(lua.create_string(&rest[..len])?));
                at += len + 1;
            }
        }
    }
    values.push(Value::Integer(at as i64 + 1));
    Ok(MultiValue::from_vec(values))
}

pub fn library(lua: &Lua) -> mlua::Result<mlua::Table> {
    let library = lua.create_table()?;
    library.set(
        "pack",
        lua.create_function(|lua, (format, args): (mlua::String, MultiValue)| {
            let args: Vec<Value> = args.into_iter().collect();
            lua.create_string(pack(lua, &format.as_bytes(), &args)?)
        })?,
    )?;
    library.set(
        "unpack",
        lua.create_function(
            |lua, (format, data, position): (mlua::String, mlua::String, Option<i64>)| {
                let data = data.as_bytes();
                let start = position.unwrap_or(1);
                if start < 1 || start as usize > data.len() + 1 {
                    return Err(bad_argument(
                        lua,
                        3,
                        "unpack",
                        "offset must be 1 or greater",
                    ));
                }
                unpack(lua, &format.as_bytes(), &data, start as usize - 1)
            },
        )?,
    )?;
    library.set(
        "size",
        lua.create_function(|lua, format: mlua::String| {
            let items = parse(&format.as_bytes())
                .map_err(|message| bad_argument(lua, 1, "size", &message))?;
            let mut len: usize = 0;
            for (header, item) in items {
                if matches!(item, Item::ZeroTerminated | Item::Chars(0)) {
                    return Err(bad_argument(
                        lua,
                        1,
                        "size",
                        "options 'c0' - 's' have undefined sizes",
                    ));
                }
                // Saturating: `c99999999999999999999` must not overflow.
                len = len
                    .saturating_add(padding(header, &item, len))
                    .saturating_add(item.size());
            }
            Ok(len as i64)
        })?,
    )?;
    Ok(library)
}
