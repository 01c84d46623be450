//! LCS: Redis's dynamic-programming longest common subsequence of two string values,
//! with its walk back through the table (which decides ties and so the ranges IDX shows).
//! The table's size is checked against proto-max-bulk-len before it is allocated.

use bytes::Bytes;

use super::max_value_len;
use crate::commands::args::{self, is};
use crate::commands::{CommandError, CommandResult, Ctx};
use crate::engine::EngineError;
use crate::protocol::Reply;

/// One run of the common subsequence that is contiguous in both strings (inclusive ranges).
#[derive(Clone, Debug, PartialEq, Eq)]
struct LcsMatch {
    a: (usize, usize),
    b: (usize, usize),
}

impl LcsMatch {
    fn len(&self) -> usize {
        self.a.1 - self.a.0 + 1
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Lcs {
    len: usize,
    /// Filled only when asked to walk the table.
    text: Vec<u8>,
    /// Last match first, as Redis emits them.
    matches: Vec<LcsMatch>,
}

/// Redis's dynamic-programming LCS, including its walk back through the table (which
/// decides the ties, and so which subsequence and which ranges come out). None when the
/// table cannot be allocated.
fn longest_common_subsequence(a: &[u8], b: &[u8], walk: bool) -> Option<Lcs> {
    let width = b.len() + 1;
    let cells = (a.len() + 1).checked_mul(width)?;
    let mut table: Vec<u32> = Vec::new();
    table.try_reserve_exact(cells).ok()?;
    table.resize(cells, 0);
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            table[i * width + j] = if a[i - 1] == b[j - 1] {
                table[(i - 1) * width + j - 1] + 1
            } else {
                table[(i - 1) * width + j].max(table[i * width + j - 1])
            };
        }
    }
    let len = table[cells - 1] as usize;
    let mut lcs = Lcs {
        len,
        ..Lcs::default()
    };
    if !walk {
        return Some(lcs);
    }
    lcs.text = vec![0; len];
    let mut remaining = len;
    let (mut i, mut j) = (a.len(), b.len());
    let mut current: Option<LcsMatch> = None;
    while i > 0 && j > 0 {
        let emit = if a[i - 1] == b[j - 1] {
            lcs.text[remaining - 1] = a[i - 1];
            let run = current.get_or_insert(LcsMatch {
                a: (i - 1, i - 1),
                b: (j - 1, j - 1),
            });
            // A run only continues diagonally (a mismatch ends it), so it always extends.
            run.a.0 = i - 1;
            run.b.0 = j - 1;
            remaining -= 1;
            i -= 1;
            j -= 1;
            // The run reached the start of one string: the walk ends here.
            i == 0 || j == 0
        } else {
            if table[(i - 1) * width + j] > table[i * width + j - 1] {
                i -= 1;
            } else {
                j -= 1;
            }
            current.is_some()
        };
        if emit {
            lcs.matches.extend(current.take());
        }
    }
    Some(lcs)
}

/// LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN].
pub(super) fn lcs(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> CommandResult {
    let db = ctx.db();
    let (key_a, key_b) = (&args[1][..], &args[2][..]);
    let (a, b) = ctx
        .store
        .atomically(&[key_a, key_b], |txn| {
            Ok((txn.get(db, key_a)?, txn.get(db, key_b)?))
        })
        .map_err(|error| match error {
            // Redis's own text here, not -WRONGTYPE.
            EngineError::WrongType => {
                CommandError::err("The specified keys must contain string values")
            }
            other => other.into(),
        })?;
    ctx.count_lookup(a.is_some());
    ctx.count_lookup(b.is_some());
    let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
    let (mut want_len, mut want_idx, mut with_match_len) = (false, false, false);
    let mut min_match_len = 0;
    let mut index = 3;
    while index < args.len() {
        let option = &args[index];
        if is(option, "idx") {
            want_idx = true;
        } else if is(option, "len") {
            want_len = true;
        } else if is(option, "withmatchlen") {
            with_match_len = true;
        } else if is(option, "minmatchlen") && index + 1 < args.len() {
            min_match_len = args::int(&args[index + 1])?.max(0);
            index += 1;
        } else {
            return Err(CommandError::syntax());
        }
        index += 1;
    }
    if want_idx && want_len {
        return Err(CommandError::err(
            "If you want both the length and indexes, please just use IDX.",
        ));
    }
    let beyond_u32 = |value: &Bytes| value.len() as u64 >= u64::from(u32::MAX - 1);
    if beyond_u32(&a) || beyond_u32(&b) {
        return Err(CommandError::err("String too long for LCS"));
    }
    let table_bytes = (a.len() as u64 + 1) * (b.len() as u64 + 1) * 4;
    if table_bytes > max_value_len(ctx) {
        return Err(CommandError::err(
            "Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        ));
    }
    let Some(result) = longest_common_subsequence(&a, &b, want_idx || !want_len) else {
        return Err(CommandError::err(
            "Insufficient memory, failed allocating transient memory for LCS",
        ));
    };
    if want_len {
        return Ok(Reply::Integer(result.len as i64));
    }
    if !want_idx {
        return Ok(Reply::bulk(result.text));
    }
    let matches = result
        .matches
        .iter()
        .filter(|run| run.len() as i64 >= min_match_len)
        .map(|run| {
            let range = |(start, end): (usize, usize)| {
                Reply::Array(vec![
                    Reply::Integer(start as i64),
                    Reply::Integer(end as i64),
                ])
            };
            let mut entry = vec![range(run.a), range(run.b)];
            if with_match_len {
                entry.push(Reply::Integer(run.len() as i64));
            }
            Reply::Array(entry)
        })
        .collect();
    Ok(Reply::Map(vec![
        (Reply::bulk("matches"), Reply::Array(matches)),
        (Reply::bulk("len"), Reply::Integer(result.len as i64)),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcs_matches_redis_output() {
        let lcs = longest_common_subsequence(b"ohmytext", b"mynewtext", true).unwrap();
        assert_eq!(lcs.len, 6);
        assert_eq!(lcs.text, b"mytext");
        assert_eq!(
            lcs.matches,
            vec![
                LcsMatch {
                    a: (4, 7),
                    b: (5, 8)
                },
                LcsMatch {
                    a: (2, 3),
                    b: (0, 1)
                },
            ]
        );
        assert_eq!(lcs.matches[0].len(), 4);
        let len_only = longest_common_subsequence(b"ohmytext", b"mynewtext", false).unwrap();
        assert_eq!(
            (len_only.len, len_only.text.len(), len_only.matches.len()),
            (6, 0, 0)
        );
        let empty = longest_common_subsequence(b"abc", b"", true).unwrap();
        assert_eq!(
            (empty.len, empty.text.len(), empty.matches.len()),
            (0, 0, 0)
        );
    }
}
