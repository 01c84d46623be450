//! What the hash and set families share: HSCAN/SSCAN's arguments and paging, and the
//! random picks of HRANDFIELD / SRANDMEMBER / SPOP with Redis's count rules.
//!
//! Collections are held whole today, so a scan answers with every matching element in one
//! page (cursor 0), as Redis does for its small encodings: every element present for the
//! whole scan is returned, which is all SCAN promises.

use bytes::Bytes;
use rand::seq::index;

use super::args::{self, is};
use super::CommandError;
use crate::engine::glob::glob_match;
use crate::protocol::Reply;

/// HSCAN / SSCAN key cursor [MATCH pattern] [COUNT count] [NOVALUES].
pub(super) struct ScanRequest {
    pattern: Option<Bytes>,
    /// HSCAN NOVALUES: fields only.
    pub(super) no_values: bool,
}

impl ScanRequest {
    /// Parses `args` (the command's whole argument list); NOVALUES only when
    /// `allow_no_values` (HSCAN).
    pub(super) fn parse(args: &[Bytes], allow_no_values: bool) -> Result<Self, CommandError> {
        std::str::from_utf8(&args[2])
            .ok()
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or_else(|| CommandError::err("invalid cursor"))?;
        let mut request = ScanRequest {
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
                // COUNT is a hint; a page holds the whole collection anyway. Redis still
                // checks it.
                if args::int(value)? < 1 {
                    return Err(CommandError::syntax());
                }
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

    /// The reply: cursor 0 (done) and the elements found.
    pub(super) fn page(elements: Vec<Reply>) -> Reply {
        Reply::Array(vec![Reply::bulk("0"), Reply::Array(elements)])
    }
}

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
