//! The bitmap commands (SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP): bit addressing over
//! string values, with Redis 7's index rules and error texts. Values stay strings; this
//! module never answers WRONGTYPE.

use std::ops::RangeInclusive;

use bytes::Bytes;

use super::{clamp_range, max_value_len};
use crate::commands::args::{self, is};
use crate::commands::{CommandError, CommandResult, Ctx};
use crate::engine::SetOptions;
use crate::protocol::Reply;

/// A SETBIT / GETBIT offset: non-negative and inside proto-max-bulk-len bytes.
fn bit_offset(arg: &[u8], max_len: u64) -> Result<u64, CommandError> {
    args::parse_i64(arg)
        .and_then(|offset| u64::try_from(offset).ok())
        .filter(|offset| offset >> 3 < max_len)
        .ok_or_else(|| CommandError::err("bit offset is not an integer or out of range"))
}

/// The mask of bit `offset` within its byte (bit 0 is the most significant).
fn bit_mask(offset: u64) -> u8 {
    0x80 >> (offset & 7)
}

pub(super) fn setbit(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let offset = bit_offset(&args[2], max_value_len(ctx))?;
    let on = match args::parse_i64(&args[3]) {
        Some(0) => false,
        Some(1) => true,
        _ => return Err(CommandError::err("bit is not an integer or out of range")),
    };
    // offset >> 3 < proto-max-bulk-len, which a value must fit in memory anyway.
    let byte = usize::try_from(offset >> 3)
        .map_err(|_| CommandError::err("bit offset is not an integer or out of range"))?;
    let mask = bit_mask(offset);
    ctx.store.update(ctx.db(), &args[1], |current| {
        let existed = current.is_some();
        let current = current.unwrap_or_default();
        let was_set = current.get(byte).is_some_and(|value| value & mask != 0);
        let reply = Reply::Integer(i64::from(was_set));
        if existed && byte < current.len() && was_set == on {
            return Ok((None, reply));
        }
        let mut value = Vec::with_capacity(current.len().max(byte + 1));
        value.extend_from_slice(&current);
        if value.len() <= byte {
            value.resize(byte + 1, 0);
        }
        if on {
            value[byte] |= mask;
        } else {
            value[byte] &= !mask;
        }
        Ok((Some(Bytes::from(value)), reply))
    })
}

pub(super) fn getbit(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let offset = bit_offset(&args[2], max_value_len(ctx))?;
    let value = ctx.store.get(ctx.db(), &args[1])?;
    ctx.count_lookup(value.is_some());
    let set = value.is_some_and(|value| {
        usize::try_from(offset >> 3)
            .ok()
            .and_then(|byte| value.get(byte).copied())
            .is_some_and(|byte| byte & bit_mask(offset) != 0)
    });
    Ok(Reply::Integer(i64::from(set)))
}

/// Whether BITCOUNT / BITPOS indexes count bytes or bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BitUnit {
    Byte,
    Bit,
}

fn parse_bit_unit(arg: &[u8]) -> Result<BitUnit, CommandError> {
    if is(arg, "byte") {
        Ok(BitUnit::Byte)
    } else if is(arg, "bit") {
        Ok(BitUnit::Bit)
    } else {
        Err(CommandError::syntax())
    }
}

/// The inclusive range of bit positions that `start`..`end` in `unit` select in a value of
/// `len` bytes, after Redis's index rules; None when empty.
fn bit_range(len: usize, start: i64, end: i64, unit: BitUnit) -> Option<RangeInclusive<u64>> {
    let len = len as i64;
    match unit {
        BitUnit::Byte => clamp_range(start, end, len)
            .map(|range| *range.start() as u64 * 8..=*range.end() as u64 * 8 + 7),
        BitUnit::Bit => clamp_range(start, end, len.saturating_mul(8))
            .map(|range| *range.start() as u64..=*range.end() as u64),
    }
}

/// Set bits of `value` within `bits` (which lies inside the value).
fn count_set_bits(value: &[u8], bits: RangeInclusive<u64>) -> u64 {
    let (first, last) = (*bits.start(), *bits.end());
    let (first_byte, last_byte) = ((first / 8) as usize, (last / 8) as usize);
    let bytes = &value[first_byte..=last_byte];
    let mut chunks = bytes.chunks_exact(8);
    let mut count: u64 = chunks
        .by_ref()
        .map(|chunk| {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            u64::from(u64::from_ne_bytes(word).count_ones())
        })
        .sum();
    count += chunks
        .remainder()
        .iter()
        .map(|byte| u64::from(byte.count_ones()))
        .sum::<u64>();
    // The edge bytes may hold bits outside the range.
    let before_first = value[first_byte] & !(0xFF >> (first % 8));
    let after_last = value[last_byte] & !(0xFF << (7 - last % 8));
    count - u64::from(before_first.count_ones()) - u64::from(after_last.count_ones())
}

/// The first position within `bits` (inside the value) whose bit equals `bit`.
fn find_bit(value: &[u8], bit: bool, bits: RangeInclusive<u64>) -> Option<u64> {
    let (first, last) = (*bits.start(), *bits.end());
    let (first_byte, last_byte) = ((first / 8) as usize, (last / 8) as usize);
    value[first_byte..=last_byte]
        .iter()
        .enumerate()
        .find_map(|(offset, &byte)| {
            let index = first_byte + offset;
            let mut candidates = if bit { byte } else { !byte };
            if index == first_byte {
                candidates &= 0xFF >> (first % 8);
            }
            if index == last_byte {
                candidates &= 0xFF << (7 - last % 8);
            }
            (candidates != 0).then(|| index as u64 * 8 + u64::from(candidates.leading_zeros()))
        })
}

/// BITCOUNT key [start end [BYTE | BIT]].
pub(super) fn bitcount(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let value = ctx.store.get(ctx.db(), &args[1])?;
    ctx.count_lookup(value.is_some());
    // Redis answers 0 for a missing key before it reads the other arguments.
    let Some(value) = value else {
        return Ok(Reply::Integer(0));
    };
    let range = match args.len() {
        2 => bit_range(value.len(), 0, -1, BitUnit::Byte),
        4 | 5 => {
            let start = args::int(&args[2])?;
            let end = args::int(&args[3])?;
            if start < 0 && end < 0 && start > end {
                return Ok(Reply::Integer(0));
            }
            let unit = match args.get(4) {
                Some(unit) => parse_bit_unit(unit)?,
                None => BitUnit::Byte,
            };
            bit_range(value.len(), start, end, unit)
        }
        _ => return Err(CommandError::syntax()),
    };
    let count = range.map_or(0, |bits| count_set_bits(&value, bits));
    Ok(Reply::Integer(count as i64))
}

/// BITPOS key bit [start [end [BYTE | BIT]]].
pub(super) fn bitpos(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let bit = match args::int(&args[2])? {
        0 => false,
        1 => true,
        _ => return Err(CommandError::err("The bit argument must be 1 or 0.")),
    };
    let value = ctx.store.get(ctx.db(), &args[1])?;
    ctx.count_lookup(value.is_some());
    // A missing key is an endless run of zeros.
    let Some(value) = value else {
        return Ok(Reply::Integer(if bit { -1 } else { 0 }));
    };
    let (range, end_given) = match args.len() {
        3 => (bit_range(value.len(), 0, -1, BitUnit::Byte), false),
        4..=6 => {
            // Redis reads start, then the unit, then end: that decides which error wins.
            let start = args::int(&args[3])?;
            let unit = match args.get(5) {
                Some(unit) => parse_bit_unit(unit)?,
                None => BitUnit::Byte,
            };
            match args.get(4) {
                Some(end) => (bit_range(value.len(), start, args::int(end)?, unit), true),
                None => (bit_range(value.len(), start, -1, unit), false),
            }
        }
        _ => return Err(CommandError::syntax()),
    };
    let Some(bits) = range else {
        return Ok(Reply::Integer(-1));
    };
    let after_range = *bits.end() + 1;
    let position = match find_bit(&value, bit, bits) {
        Some(position) => position as i64,
        // Looking for a clear bit without an explicit end: the value continues with zeros
        // past its end, so the answer is the first bit after it.
        None if !bit && !end_given => after_range as i64,
        None => -1,
    };
    Ok(Reply::Integer(position))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BitOp {
    And,
    Or,
    Xor,
    Not,
}

/// BITOP's result: missing sources and short ones count as zero bytes; the result is as
/// long as the longest source.
fn bit_operation(op: BitOp, sources: &[Option<Bytes>]) -> Vec<u8> {
    let sources: Vec<&[u8]> = sources
        .iter()
        .map(|source| source.as_deref().unwrap_or_default())
        .collect();
    let len = sources.iter().map(|source| source.len()).max().unwrap_or(0);
    let Some((first, rest)) = sources.split_first() else {
        return Vec::new();
    };
    let mut result = first.to_vec();
    result.resize(len, 0);
    if op == BitOp::Not {
        result.iter_mut().for_each(|byte| *byte = !*byte);
        return result;
    }
    for source in rest {
        for (index, byte) in result.iter_mut().enumerate() {
            let other = source.get(index).copied().unwrap_or(0);
            match op {
                BitOp::And => *byte &= other,
                BitOp::Or => *byte |= other,
                BitOp::Xor | BitOp::Not => *byte ^= other,
            }
        }
    }
    result
}

/// BITOP AND | OR | XOR | NOT destkey key [key ...].
pub(super) fn bitop(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let op = if is(&args[1], "and") {
        BitOp::And
    } else if is(&args[1], "or") {
        BitOp::Or
    } else if is(&args[1], "xor") {
        BitOp::Xor
    } else if is(&args[1], "not") {
        BitOp::Not
    } else {
        return Err(CommandError::syntax());
    };
    if op == BitOp::Not && args.len() != 4 {
        return Err(CommandError::err(
            "BITOP NOT must be called with a single source key.",
        ));
    }
    let db = ctx.db();
    let destination = &args[2][..];
    let keys: Vec<&[u8]> = args[2..].iter().map(|key| &key[..]).collect();
    let (found, len) = ctx.store.atomically(&keys, |txn| {
        let sources = keys[1..]
            .iter()
            .map(|key| txn.get(db, key))
            .collect::<Result<Vec<_>, _>>()?;
        let found: Vec<bool> = sources.iter().map(Option::is_some).collect();
        let result = bit_operation(op, &sources);
        let len = result.len();
        // An empty result deletes the destination, as in Redis.
        if result.is_empty() {
            txn.delete(db, destination)?;
        } else {
            txn.set(db, destination, Bytes::from(result), SetOptions::default())?;
        }
        Ok((found, len))
    })?;
    for hit in found {
        ctx.count_lookup(hit);
    }
    Ok(Reply::Integer(len as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_ranges_follow_redis_index_rules() {
        assert_eq!(bit_range(6, 1, 1, BitUnit::Byte), Some(8..=15));
        assert_eq!(bit_range(6, 5, 30, BitUnit::Bit), Some(5..=30));
        assert_eq!(bit_range(2, -3, -1, BitUnit::Bit), Some(13..=15));
    }

    #[test]
    fn bits_are_counted_within_the_range() {
        let foobar = b"foobar";
        assert_eq!(
            count_set_bits(foobar, bit_range(6, 0, -1, BitUnit::Byte).unwrap()),
            26
        );
        assert_eq!(
            count_set_bits(foobar, bit_range(6, 1, 1, BitUnit::Byte).unwrap()),
            6
        );
        assert_eq!(
            count_set_bits(foobar, bit_range(6, 5, 30, BitUnit::Bit).unwrap()),
            17
        );
        assert_eq!(count_set_bits(&[0xFF], 3..=3), 1);
        assert_eq!(count_set_bits(&[0xFF; 20], 4..=155), 152);
    }

    #[test]
    fn first_bit_is_found_only_inside_the_range() {
        assert_eq!(find_bit(&[0xFF, 0xF0, 0x00], false, 0..=23), Some(12));
        assert_eq!(find_bit(&[0x00, 0x00, 0x01], true, 0..=23), Some(23));
        assert_eq!(find_bit(&[0x00, 0x00, 0x01], true, 0..=22), None);
        assert_eq!(find_bit(&[0xFF; 3], false, 0..=23), None);
        // Bits before the start of the range are not candidates.
        assert_eq!(find_bit(&[0x80, 0x01], true, 1..=15), Some(15));
        assert_eq!(find_bit(b"foobar", true, 2..=47), Some(2));
        assert_eq!(find_bit(&[0b1011_1111], false, 2..=7), None);
        assert_eq!(find_bit(&[0b1011_1111], false, 1..=7), Some(1));
    }

    #[test]
    fn bitop_pads_short_sources_with_zeros() {
        let sources = [
            Some(Bytes::from_static(b"\xff\x0f")),
            None,
            Some(Bytes::from_static(b"\x01")),
        ];
        assert_eq!(bit_operation(BitOp::Or, &sources), vec![0xFF, 0x0F]);
        assert_eq!(bit_operation(BitOp::And, &sources), vec![0x00, 0x00]);
        assert_eq!(bit_operation(BitOp::Xor, &sources), vec![0xFE, 0x0F]);
        assert_eq!(bit_operation(BitOp::Not, &sources[..1]), vec![0x00, 0xF0]);
        assert!(bit_operation(BitOp::And, &[None, None]).is_empty());
    }
}
