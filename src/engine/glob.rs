//! Redis glob-style pattern matching (`KEYS`, `SCAN MATCH`, `CONFIG GET`): `*`, `?`,
//! `[abc]`, `[^a-z]`, and `\` escapes, with Redis's rules for odd patterns.

/// Whether `text` matches the Redis glob `pattern` (byte-wise, case-sensitive).
///
/// Bounded work whatever the pattern (issue 14; Redis's CVE-2022-36021 was a pattern like
/// `a*a*a*...b` taking exponential time): every token but `*` matches exactly one byte, so
/// when the text stops matching only the *last* `*` needs to take one more byte; the earlier
/// ones could not do better. One pass with one backtrack point: at most
/// (pattern length + 1) x (text length + 1) steps, no recursion.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match_counting(pattern, text, &mut 0)
}

/// `glob_match`, adding the tokens it looked at to `steps` (tests check the bound).
fn match_counting(pattern: &[u8], text: &[u8], steps: &mut u64) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: the pattern after it, and the text position that
    // `*` has reached so far.
    let mut last_star: Option<(usize, usize)> = None;
    loop {
        *steps += 1;
        if p < pattern.len() {
            if pattern[p] == b'*' {
                while p < pattern.len() && pattern[p] == b'*' {
                    p += 1;
                }
                if p == pattern.len() {
                    return true;
                }
                last_star = Some((p, t));
                continue;
            }
            if let Some(next) = match_token(pattern, p, text.get(t).copied()) {
                p = next;
                t += 1;
                continue;
            }
        } else if t == text.len() {
            return true;
        }
        // A mismatch: the last `*` swallows one more byte and the rest is tried again.
        match last_star {
            Some((after_star, reached)) if reached < text.len() => {
                last_star = Some((after_star, reached + 1));
                p = after_star;
                t = reached + 1;
            }
            _ => return false,
        }
    }
}

/// Matches the one-byte token at `pattern[p]` (`?`, a class, an escape or a literal) against
/// `c`; returns where the pattern goes on, or None on a mismatch or at the text's end.
fn match_token(pattern: &[u8], p: usize, c: Option<u8>) -> Option<usize> {
    let c = c?;
    match pattern[p] {
        b'?' => Some(p + 1),
        b'[' => {
            let (matched, rest) = match_class(&pattern[p + 1..], c);
            matched.then_some(pattern.len() - rest.len())
        }
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == c).then_some(p + 2),
        literal => (literal == c).then_some(p + 1),
    }
}

/// Matches `c` against a class body (after `[`); returns the verdict and the pattern after `]`.
fn match_class(mut pattern: &[u8], c: u8) -> (bool, &[u8]) {
    let negate = pattern.first() == Some(&b'^');
    if negate {
        pattern = &pattern[1..];
    }
    let mut matched = false;
    loop {
        match pattern {
            [] => break,
            [b']', rest @ ..] => {
                pattern = rest;
                return (matched != negate, pattern);
            }
            [b'\\', escaped, rest @ ..] => {
                matched |= *escaped == c;
                pattern = rest;
            }
            [lo, b'-', hi, rest @ ..] if *hi != b']' => {
                let (lo, hi) = if lo <= hi { (*lo, *hi) } else { (*hi, *lo) };
                matched |= (lo..=hi).contains(&c);
                pattern = rest;
            }
            [single, rest @ ..] => {
                matched |= *single == c;
                pattern = rest;
            }
        }
    }
    // Unterminated class: Redis treats the end of the pattern as the closing bracket.
    (matched != negate, pattern)
}

#[cfg(test)]
mod tests {
    use super::{glob_match, match_class, match_counting};
    use proptest::prelude::*;

    /// The matcher this file had before (recursive, exponential on `a*a*...b`): the
    /// reference the bounded one must agree with.
    fn reference(mut pattern: &[u8], mut text: &[u8]) -> bool {
        while let Some(&p) = pattern.first() {
            match p {
                b'*' => {
                    while pattern.len() > 1 && pattern[1] == b'*' {
                        pattern = &pattern[1..];
                    }
                    if pattern.len() == 1 {
                        return true;
                    }
                    return (0..=text.len()).any(|start| reference(&pattern[1..], &text[start..]));
                }
                b'?' => {
                    if text.is_empty() {
                        return false;
                    }
                    text = &text[1..];
                }
                b'[' => {
                    let Some(&c) = text.first() else {
                        return false;
                    };
                    let (matched, rest) = match_class(&pattern[1..], c);
                    if !matched {
                        return false;
                    }
                    pattern = rest;
                    text = &text[1..];
                    continue;
                }
                b'\\' if pattern.len() >= 2 => {
                    if text.first() != Some(&pattern[1]) {
                        return false;
                    }
                    pattern = &pattern[1..];
                    text = &text[1..];
                }
                literal => {
                    if text.first() != Some(&literal) {
                        return false;
                    }
                    text = &text[1..];
                }
            }
            pattern = &pattern[1..];
        }
        text.is_empty()
    }

    proptest! {
        #[test]
        fn agrees_with_the_recursive_matcher(
            pattern in proptest::collection::vec(prop::sample::select(b"ab*?[]^-\\".to_vec()), 0..10),
            text in proptest::collection::vec(prop::sample::select(b"ab-]".to_vec()), 0..10),
        ) {
            prop_assert_eq!(glob_match(&pattern, &text), reference(&pattern, &text));
        }
    }

    #[test]
    fn the_cve_2022_36021_pattern_takes_polynomial_steps() {
        // The reproduction: 79 a's against "a*a*...a*b" (34 stars). The recursive
        // matcher needed on the order of C(79, 34) calls; this one a bounded number of
        // steps (counted, not timed).
        let text = vec![b'a'; 79];
        let mut pattern = b"a".to_vec();
        for _ in 0..34 {
            pattern.extend_from_slice(b"*a");
        }
        pattern.push(b'b');
        let mut steps = 0;
        assert!(!match_counting(&pattern, &text, &mut steps));
        let bound = (pattern.len() as u64 + 1) * (text.len() as u64 + 1);
        assert!(steps <= bound, "{steps} steps, bound {bound}");
        // The same with a long key and a long pattern.
        let text = vec![b'a'; 100_000];
        let mut pattern = Vec::new();
        for _ in 0..1000 {
            pattern.extend_from_slice(b"*a");
        }
        pattern.push(b'b');
        let mut steps = 0;
        assert!(!match_counting(&pattern, &text, &mut steps));
        assert!(steps <= (pattern.len() as u64 + 1) * (text.len() as u64 + 1));
    }

    #[test]
    fn redis_glob_semantics() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("*", "anything", true),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h*llo", "heeeello", true),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[b-a]llo", "hallo", true),
            ("h\\*llo", "h*llo", true),
            ("h\\*llo", "hello", false),
            ("user:*", "user:1", true),
            ("user:*", "users", false),
            ("*a*b", "xxaxxb", true),
            ("*a*b", "xxaxxbx", false),
            ("a[", "a", false),
            ("[abc", "b", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                glob_match(pattern.as_bytes(), text.as_bytes()),
                *expected,
                "{pattern} vs {text}"
            );
        }
    }
}
