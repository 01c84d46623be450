//! Redis glob-style pattern matching (`KEYS`, `SCAN MATCH`, `CONFIG GET`): `*`, `?`,
//! `[abc]`, `[^a-z]`, and `\` escapes, with Redis's rules for odd patterns.

/// Whether `text` matches the Redis glob `pattern` (byte-wise, case-sensitive).
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match_from(pattern, text, 0)
}

/// Guards against patterns like `*a*a*a*...b` blowing up exponentially (Redis caps too).
const MAX_STAR_NESTING: usize = 1000;

fn match_from(mut pattern: &[u8], mut text: &[u8], nesting: usize) -> bool {
    if nesting > MAX_STAR_NESTING {
        return false;
    }
    while let Some(&p) = pattern.first() {
        match p {
            b'*' => {
                while pattern.len() > 1 && pattern[1] == b'*' {
                    pattern = &pattern[1..];
                }
                if pattern.len() == 1 {
                    return true;
                }
                for start in 0..=text.len() {
                    if match_from(&pattern[1..], &text[start..], nesting + 1) {
                        return true;
                    }
                }
                return false;
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
    use super::glob_match;

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
