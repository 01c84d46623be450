//! What the hash and set families share: HSCAN/SSCAN's arguments and paging, and the
//! random picks of HRANDFIELD / SRANDMEMBER / SPOP with Redis's count rules.
//!
//! A scan walks a collection's positions (its insertion order) from the top down, COUNT
//! positions per call; the cursor is the position to continue below (0: done). That keeps
//! SCAN's promise, every element present for the whole scan is returned, because removing
//! an element only ever moves elements downwards (a swap-remove moves the last one into the
//! hole, a shift-remove moves the ones above it down by one): an element not yet returned
//! stays below the cursor, and one already returned may come again, which SCAN allows. New
//! elements go on top and may be missed, which SCAN also allows. Small collections (Redis's
//! listpack and intset encodings) come whole in one call, as Redis sends them.

use bytes::Bytes;
use rand::seq::index;

use super::args::{self, is};
use super::{CommandError, Ctx};
use crate::engine::glob::glob_match;
use crate::engine::types::hash::HashValue;
use crate::engine::types::set::SetValue;
use crate::engine::types::{AppliedCounts, ElementOp, Value, ValueType};
use crate::engine::EngineResult;
use crate::protocol::Reply;

/// A collection type the commands work on, and how to find it in a key's value.
pub(super) trait Collection {
    const TYPE: ValueType;
    /// The collection, or `WrongType` for a value of another type.
    fn of(value: &Value) -> EngineResult<&Self>;
}

impl Collection for HashValue {
    const TYPE: ValueType = ValueType::Hash;
    fn of(value: &Value) -> EngineResult<&Self> {
        value.as_hash()
    }
}

impl Collection for SetValue {
    const TYPE: ValueType = ValueType::Set;
    fn of(value: &Value) -> EngineResult<&Self> {
        value.as_set()
    }
}

/// Lends the collection at `key` to `read` (None when the key is absent); -WRONGTYPE for
/// another type. Counts the lookup in keyspace_hits / keyspace_misses.
pub(super) fn read_collection<C: Collection, T>(
    ctx: &mut Ctx<'_, '_>,
    key: &[u8],
    read: impl FnOnce(&C) -> T,
) -> Result<Option<T>, CommandError> {
    let db = ctx.db();
    let answer = ctx.store.read_value(db, key, |value| {
        value.map(|value| C::of(value).map(read)).transpose()
    })??;
    ctx.count_lookup(answer.is_some());
    Ok(answer)
}

/// Changes elements of the collection at `key`: `plan` sees it (None when absent) and
/// returns the element changes and the reply. The collection is changed in place and each
/// change logged alone; one left empty is deleted. Also returns how many elements were
/// added and removed.
pub(super) fn update_collection<C: Collection, T>(
    ctx: &mut Ctx<'_, '_>,
    key: &[u8],
    plan: impl FnOnce(Option<&C>) -> Result<(Vec<ElementOp>, T), CommandError>,
) -> Result<(T, AppliedCounts), CommandError> {
    let db = ctx.db();
    ctx.store.update_elements(db, key, C::TYPE, |value| {
        plan(value.map(C::of).transpose()?)
    })
}

/// Positions a scan call looks at when COUNT is not given (Redis's default).
const DEFAULT_SCAN_COUNT: usize = 10;

/// HSCAN / SSCAN key cursor [MATCH pattern] [COUNT count] [NOVALUES].
pub(super) struct ScanRequest {
    cursor: u64,
    count: usize,
    pattern: Option<Bytes>,
    /// HSCAN NOVALUES: fields only.
    pub(super) no_values: bool,
}

impl ScanRequest {
    /// Parses `args` (the command's whole argument list); NOVALUES only when
    /// `allow_no_values` (HSCAN).
    pub(super) fn parse(args: &[Bytes], allow_no_values: bool) -> Result<Self, CommandError> {
        let cursor = std::str::from_utf8(&args[2])
            .ok()
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or_else(|| CommandError::err("invalid cursor"))?;
        let mut request = ScanRequest {
            cursor,
            count: DEFAULT_SCAN_COUNT,
            pattern: None,
            no_values: false,
        };
        let mut rest = args[3..].iter();
        while let Some(option) = rest.next() {
            if allow_no_values && is(option, "novalues") {
                request.no_values = true;
                continue;
            }
            let value = rest.next().ok_or_else(CommandError::syntax)?;
            if is(option, "match") {
                request.pattern = (&value[..] != b"*").then(|| value.clone());
            } else if is(option, "count") {
                let count = args::int(value)?;
                if count < 1 {
                    return Err(CommandError::syntax());
                }
                request.count = usize::try_from(count).unwrap_or(usize::MAX);
            } else {
                return Err(CommandError::syntax());
            }
        }
        Ok(request)
    }

    pub(super) fn matches(&self, element: &[u8]) -> bool {
        self.pattern
            .as_ref()
            .is_none_or(|pattern| glob_match(pattern, element))
    }

    /// This call's elements of a collection of `len`, and the cursor to answer: all of a
    /// packed one (`whole`, its elements in order, as Redis walks a listpack) with cursor 0;
    /// else COUNT positions from the cursor down, each read through `at`.
    pub(super) fn elements<T>(
        &self,
        len: usize,
        whole: Option<impl Iterator<Item = T>>,
        at: impl Fn(usize) -> T,
    ) -> (u64, Vec<T>) {
        if let Some(all) = whole {
            return (0, all.collect());
        }
        let top = match self.cursor {
            0 => len,
            cursor => usize::try_from(cursor).unwrap_or(usize::MAX).min(len),
        };
        let bottom = top.saturating_sub(self.count);
        (bottom as u64, (bottom..top).rev().map(at).collect())
    }

    /// The reply: the next cursor (0 = done) and the elements found.
    pub(super) fn page(cursor: u64, elements: Vec<Reply>) -> Reply {
        Reply::Array(vec![
            Reply::bulk(cursor.to_string()),
            Reply::Array(elements),
        ])
    }
}

/// The most elements a negative count may ask for: a reply of repeats is built whole
/// before it is sent, so an absurd count would exhaust memory (a positive count is bounded
/// by the collection's size). Redis has no such bound.
const MAX_REPEATING_PICKS: u64 = 1 << 20;

/// How many elements HRANDFIELD / SRANDMEMBER return, and whether they may repeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RandomCount {
    /// A positive count: distinct elements, at most the collection's size.
    Distinct(usize),
    /// A negative count: exactly this many, repeats allowed.
    Repeating(usize),
}

impl RandomCount {
    /// Parses a count; `-i64::MAX..=i64::MAX` as Redis takes it, halved when each element
    /// brings its value too (HRANDFIELD WITHVALUES), so the reply's length fits.
    pub(super) fn parse(arg: &[u8], with_values: bool) -> Result<Self, CommandError> {
        let count = args::int(arg)?;
        if count == i64::MIN {
            return Err(CommandError::err(
                "value is out of range, value must between -9223372036854775807 and 9223372036854775807",
            ));
        }
        if with_values && count.unsigned_abs() > (i64::MAX / 2) as u64 {
            return Err(CommandError::err("value is out of range"));
        }
        Ok(match count >= 0 {
            true => RandomCount::Distinct(count as usize),
            false if count.unsigned_abs() > MAX_REPEATING_PICKS => {
                return Err(CommandError::err(format!(
                    "value is out of range, a negative count may ask for at most {MAX_REPEATING_PICKS} elements"
                )))
            }
            false => RandomCount::Repeating(count.unsigned_abs() as usize),
        })
    }

    /// Positions in `0..len` to return: distinct ones in the collection's order when the
    /// count covers it, else a random sample.
    pub(super) fn pick(self, len: usize) -> Vec<usize> {
        let mut rng = rand::rng();
        match self {
            _ if len == 0 => Vec::new(),
            RandomCount::Distinct(count) if count >= len => (0..len).collect(),
            RandomCount::Distinct(count) => index::sample(&mut rng, len, count).into_vec(),
            RandomCount::Repeating(count) => (0..count)
                .map(|_| rand::Rng::random_range(&mut rng, 0..len))
                .collect(),
        }
    }
}

/// One random position in `0..len` (`len` > 0).
pub(super) fn random_position(len: usize) -> usize {
    rand::random_range(0..len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_redis_ranges() {
        assert_eq!(
            RandomCount::parse(b"3", false).unwrap(),
            RandomCount::Distinct(3)
        );
        assert_eq!(
            RandomCount::parse(b"-3", false).unwrap(),
            RandomCount::Repeating(3)
        );
        assert!(RandomCount::parse(b"-9223372036854775808", false).is_err());
        assert!(RandomCount::parse(b"4611686018427387904", true).is_err());
        assert!(RandomCount::parse(b"4611686018427387903", true).is_ok());
        assert!(RandomCount::parse(b"x", false).is_err());
    }

    fn request(cursor: u64, count: usize) -> ScanRequest {
        ScanRequest {
            cursor,
            count,
            pattern: None,
            no_values: false,
        }
    }

    #[test]
    fn scans_walk_down_count_positions_at_a_time() {
        let walk =
            |cursor, len| request(cursor, 4).elements(len, None::<std::ops::Range<usize>>, |at| at);
        assert_eq!(walk(0, 10), (6, vec![9, 8, 7, 6]));
        assert_eq!(walk(6, 10), (2, vec![5, 4, 3, 2]));
        assert_eq!(walk(2, 10), (0, vec![1, 0]));
        // A collection that shrank under the cursor: the walk goes on from its top.
        assert_eq!(walk(8, 3), (0, vec![2, 1, 0]));
        // A packed one comes whole, in order.
        assert_eq!(
            request(0, 4).elements(3, Some(0..3), |at| at),
            (0, vec![0, 1, 2])
        );
    }

    #[test]
    fn picks_are_distinct_or_exactly_counted() {
        let mut distinct = RandomCount::Distinct(5).pick(10);
        assert_eq!(distinct.len(), 5);
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 5);
        assert_eq!(
            RandomCount::Distinct(50).pick(10),
            (0..10).collect::<Vec<_>>()
        );
        let repeating = RandomCount::Repeating(50).pick(3);
        assert_eq!(repeating.len(), 50);
        assert!(repeating.iter().all(|&at| at < 3));
        assert!(RandomCount::Repeating(5).pick(0).is_empty());
    }
}
