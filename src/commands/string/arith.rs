//! Redis computes INCRBYFLOAT in the C `long double` of x86-64 (x87 80-bit extended: a
//! 64-bit mantissa), parses with `strtold` and prints with `%.17Lf` before trimming zeros.
//! Users see the difference (0.1 + 0.2 gives "0.3", not "0.30000000000000004"), so this
//! module reproduces that arithmetic exactly in software: correctly rounded parsing, one
//! correctly rounded addition, exact decimal printing.

use std::cmp::Ordering;
use std::fmt::Write as _;

/// Exponent of the lowest mantissa bit of the smallest subnormal (2^-16445).
const MIN_EXPONENT: i64 = -16445;
/// Exponent of the lowest mantissa bit of the largest finite value.
const MAX_EXPONENT: i64 = 16320;
/// `string2ld` refuses texts this long or longer (MAX_LONG_DOUBLE_CHARS).
const MAX_TEXT_LEN: usize = 5 * 1024;
/// Decimal exponents beyond these certainly overflow / underflow to zero.
const MAX_DECIMAL_EXPONENT: i64 = 4933;
const MIN_DECIMAL_EXPONENT: i64 = -4952;
/// Digits `%.17Lf` prints after the point.
const FRACTION_DIGITS: u32 = 17;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncrementError {
    /// The current value or the increment does not parse.
    NotAFloat,
    /// The sum is infinite (or NaN).
    NotFinite,
}

/// INCRBYFLOAT: the text Redis stores and replies for `current + by`.
pub fn increment(current: Option<&[u8]>, by: &[u8]) -> Result<String, IncrementError> {
    let current = match current {
        None => Parsed::Finite(LongDouble::ZERO),
        Some(text) => parse(text).ok_or(IncrementError::NotAFloat)?,
    };
    let by = parse(by).ok_or(IncrementError::NotAFloat)?;
    match (current, by) {
        (Parsed::Finite(a), Parsed::Finite(b)) => {
            add(a, b).map(format).ok_or(IncrementError::NotFinite)
        }
        _ => Err(IncrementError::NotFinite),
    }
}

/// (-1)^negative × mantissa × 2^exponent; mantissa 0 is zero (signed, as in C).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LongDouble {
    negative: bool,
    mantissa: u64,
    exponent: i64,
}

impl LongDouble {
    const ZERO: LongDouble = LongDouble {
        negative: false,
        mantissa: 0,
        exponent: 0,
    };

    fn zero(negative: bool) -> LongDouble {
        LongDouble {
            negative,
            ..LongDouble::ZERO
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Parsed {
    Finite(LongDouble),
    /// "inf" / "infinity": valid input whose sum can only be rejected.
    Infinite,
}

/// A little-endian arbitrary-precision natural number: just what exact rounding needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Natural {
    limbs: Vec<u32>,
}

impl Natural {
    fn from_u64(value: u64) -> Natural {
        let mut natural = Natural {
            limbs: vec![value as u32, (value >> 32) as u32],
        };
        natural.trim();
        natural
    }

    fn trim(&mut self) {
        while self.limbs.last() == Some(&0) {
            self.limbs.pop();
        }
    }

    fn is_zero(&self) -> bool {
        self.limbs.is_empty()
    }

    fn mul_add_small(&mut self, factor: u32, addend: u32) {
        let mut carry = u64::from(addend);
        for limb in &mut self.limbs {
            let product = u64::from(*limb) * u64::from(factor) + carry;
            *limb = product as u32;
            carry = product >> 32;
        }
        if carry != 0 {
            self.limbs.push(carry as u32);
        }
    }

    fn mul_pow10(&mut self, mut power: u64) {
        while power > 0 {
            let step = power.min(9);
            self.mul_add_small(10u32.pow(step as u32), 0);
            power -= step;
        }
    }

    /// Divides in place; returns the remainder.
    fn div_small(&mut self, divisor: u32) -> u32 {
        let mut remainder = 0u64;
        for limb in self.limbs.iter_mut().rev() {
            let current = (remainder << 32) | u64::from(*limb);
            *limb = (current / u64::from(divisor)) as u32;
            remainder = current % u64::from(divisor);
        }
        self.trim();
        remainder as u32
    }

    /// Divides in place by 10^power; true if the division was inexact. Exact because
    /// floor(floor(x / a) / b) = floor(x / ab).
    fn div_pow10(&mut self, mut power: u64) -> bool {
        let mut inexact = false;
        while power > 0 {
            let step = power.min(9);
            inexact |= self.div_small(10u32.pow(step as u32)) != 0;
            power -= step;
        }
        inexact
    }

    fn shl(&self, bits: u64) -> Natural {
        if self.is_zero() {
            return Natural::default();
        }
        let mut limbs = vec![0; (bits / 32) as usize];
        let shift = (bits % 32) as u32;
        if shift == 0 {
            limbs.extend_from_slice(&self.limbs);
        } else {
            let mut carry = 0;
            for &limb in &self.limbs {
                limbs.push((limb << shift) | carry);
                carry = limb >> (32 - shift);
            }
            limbs.push(carry);
        }
        let mut natural = Natural { limbs };
        natural.trim();
        natural
    }

    fn bit_len(&self) -> u64 {
        self.limbs.last().map_or(0, |top| {
            (self.limbs.len() as u64 - 1) * 32 + u64::from(32 - top.leading_zeros())
        })
    }

    fn bit(&self, index: u64) -> bool {
        self.limbs
            .get((index / 32) as usize)
            .is_some_and(|limb| (limb >> (index % 32)) & 1 == 1)
    }

    /// Whether any bit below `index` is set.
    fn any_below(&self, index: u64) -> bool {
        let whole = ((index / 32) as usize).min(self.limbs.len());
        let partial = index % 32;
        self.limbs[..whole].iter().any(|&limb| limb != 0)
            || (partial != 0
                && self
                    .limbs
                    .get(whole)
                    .is_some_and(|&limb| limb & ((1 << partial) - 1) != 0))
    }

    /// The 64 bits starting at bit `from`.
    fn bits_from(&self, from: u64) -> u64 {
        (0..64)
            .filter(|offset| self.bit(from + offset))
            .fold(0, |bits, offset| bits | 1 << offset)
    }

    fn add(&self, other: &Natural) -> Natural {
        let mut limbs = Vec::with_capacity(self.limbs.len().max(other.limbs.len()) + 1);
        let mut carry = 0u64;
        for index in 0..self.limbs.len().max(other.limbs.len()) {
            let sum = u64::from(self.limbs.get(index).copied().unwrap_or(0))
                + u64::from(other.limbs.get(index).copied().unwrap_or(0))
                + carry;
            limbs.push(sum as u32);
            carry = sum >> 32;
        }
        limbs.push(carry as u32);
        let mut natural = Natural { limbs };
        natural.trim();
        natural
    }

    /// `self - other`, for `self >= other`.
    fn sub(&self, other: &Natural) -> Natural {
        let mut limbs = Vec::with_capacity(self.limbs.len());
        let mut borrow = 0i64;
        for (index, &limb) in self.limbs.iter().enumerate() {
            let mut difference =
                i64::from(limb) - i64::from(other.limbs.get(index).copied().unwrap_or(0)) - borrow;
            borrow = i64::from(difference < 0);
            if difference < 0 {
                difference += 1 << 32;
            }
            limbs.push(difference as u32);
        }
        let mut natural = Natural { limbs };
        natural.trim();
        natural
    }

    fn compare(&self, other: &Natural) -> Ordering {
        self.limbs
            .len()
            .cmp(&other.limbs.len())
            .then_with(|| self.limbs.iter().rev().cmp(other.limbs.iter().rev()))
    }

    fn to_decimal(&self) -> String {
        let mut rest = self.clone();
        let mut chunks = Vec::new();
        while !rest.is_zero() {
            chunks.push(rest.div_small(1_000_000_000));
        }
        let mut text = chunks.pop().unwrap_or(0).to_string();
        for chunk in chunks.iter().rev() {
            let _ = write!(text, "{chunk:09}");
        }
        text
    }
}

enum Rounded {
    Zero,
    Finite { mantissa: u64, exponent: i64 },
    Overflow,
}

/// Rounds magnitude × 2^exponent to the nearest extended value, ties to even. `sticky`
/// says a nonzero tail below the magnitude's last bit was cut off; callers that set it
/// give at least 66 significant bits, so that tail is always below the rounding bit.
fn round(magnitude: &Natural, exponent: i64, sticky: bool) -> Rounded {
    let length = magnitude.bit_len() as i64;
    let drop = (length - 64).max(MIN_EXPONENT - exponent);
    let (mut mantissa, mut exponent) = if drop <= 0 {
        (magnitude.bits_from(0), exponent)
    } else {
        let drop = drop as u64;
        let kept = magnitude.bits_from(drop);
        let half = magnitude.bit(drop - 1);
        let rest = sticky || magnitude.any_below(drop - 1);
        let exponent = exponent + drop as i64;
        if half && (rest || kept & 1 == 1) {
            match kept.checked_add(1) {
                Some(kept) => (kept, exponent),
                None => (1 << 63, exponent + 1),
            }
        } else {
            (kept, exponent)
        }
    };
    if mantissa == 0 {
        return Rounded::Zero;
    }
    // Normalise (top mantissa bit set) unless that would go below the subnormal floor.
    let shift = i64::from(mantissa.leading_zeros()).min(exponent - MIN_EXPONENT);
    if shift > 0 {
        mantissa <<= shift;
        exponent -= shift;
    }
    if exponent > MAX_EXPONENT {
        return Rounded::Overflow;
    }
    Rounded::Finite { mantissa, exponent }
}

/// `strtold` as Redis's `string2ld` accepts it: the whole text, no spaces, no NaN, and
/// nothing that overflows or underflows to zero.
fn parse(text: &[u8]) -> Option<Parsed> {
    if text.is_empty() || text.len() >= MAX_TEXT_LEN {
        return None;
    }
    let (negative, body) = match text[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
        return Some(Parsed::Infinite);
    }
    let (magnitude, exponent, sticky) = match body {
        [b'0', b'x' | b'X', hex @ ..] => parse_hex(hex)?,
        _ => parse_decimal(body)?,
    };
    if magnitude.is_zero() {
        return Some(Parsed::Finite(LongDouble::zero(negative)));
    }
    match round(&magnitude, exponent, sticky) {
        Rounded::Finite { mantissa, exponent } => Some(Parsed::Finite(LongDouble {
            negative,
            mantissa,
            exponent,
        })),
        // strtold reports ERANGE with 0 or HUGE_VAL; string2ld refuses both.
        Rounded::Zero | Rounded::Overflow => None,
    }
}

/// Digits with an optional point; returns the digits as a number, how many followed
/// the point, and the unparsed rest. None without a single digit.
fn parse_digits(text: &[u8], radix: u32) -> Option<(Natural, u64, &[u8])> {
    let mut value = Natural::default();
    let (mut any_digit, mut seen_point, mut fraction_digits) = (false, false, 0u64);
    let mut rest = text;
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'.' && !seen_point {
            seen_point = true;
        } else if let Some(digit) = char::from(byte).to_digit(radix) {
            value.mul_add_small(radix, digit);
            any_digit = true;
            fraction_digits += u64::from(seen_point);
        } else {
            break;
        }
        rest = tail;
    }
    any_digit.then_some((value, fraction_digits, rest))
}

/// An exponent's `[+-]digits` (the whole rest), saturated far beyond any useful range.
fn parse_exponent(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', digits)) => (true, digits),
        Some((b'+', digits)) => (false, digits),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = digits.iter().fold(0i64, |value, digit| {
        (value * 10 + i64::from(digit - b'0')).min(1_000_000_000)
    });
    Some(if negative { -value } else { value })
}

/// A decimal text as magnitude × 2^exponent (+ sticky tail), correctly rounded later.
fn parse_decimal(text: &[u8]) -> Option<(Natural, i64, bool)> {
    let (digits, fraction_digits, rest) = parse_digits(text, 10)?;
    let exponent = match rest.split_first() {
        None => 0,
        Some((b'e' | b'E', exponent)) => parse_exponent(exponent)?,
        Some(_) => return None,
    };
    if digits.is_zero() {
        return Some((digits, 0, false));
    }
    let decimal_exponent = exponent - fraction_digits as i64;
    let significant_digits = digits.to_decimal().len() as i64;
    if significant_digits - 1 + decimal_exponent >= MAX_DECIMAL_EXPONENT {
        return None;
    }
    if significant_digits + decimal_exponent <= MIN_DECIMAL_EXPONENT {
        return None;
    }
    if decimal_exponent >= 0 {
        let mut value = digits;
        value.mul_pow10(decimal_exponent as u64);
        return Some((value, 0, false));
    }
    // digits / 10^k: scale up by 2^shift first so the quotient keeps at least 66
    // significant bits (log2(10) < 3.322).
    let power = decimal_exponent.unsigned_abs();
    let denominator_bits = power * 3322 / 1000 + 1;
    let shift = (70 + denominator_bits).saturating_sub(digits.bit_len());
    let mut quotient = digits.shl(shift);
    let inexact = quotient.div_pow10(power);
    Some((quotient, -(shift as i64), inexact))
}

/// A hexadecimal text after "0x": hex digits with an optional point, optional `p` and a
/// binary exponent. Exact in binary, so nothing is sticky.
fn parse_hex(text: &[u8]) -> Option<(Natural, i64, bool)> {
    let (digits, fraction_digits, rest) = parse_digits(text, 16)?;
    let exponent = match rest.split_first() {
        None => 0,
        Some((b'p' | b'P', exponent)) => parse_exponent(exponent)?,
        Some(_) => return None,
    };
    let exponent = exponent - 4 * fraction_digits as i64;
    // Cheap range checks before `round`, which works in bits.
    let top = digits.bit_len() as i64 + exponent;
    if top > MAX_EXPONENT + 64 + 1 {
        return None;
    }
    if !digits.is_zero() && top < MIN_EXPONENT - 1 {
        return None;
    }
    Some((digits, exponent, false))
}

/// a + b, correctly rounded; None when the sum overflows to infinity.
fn add(a: LongDouble, b: LongDouble) -> Option<LongDouble> {
    if a.mantissa == 0 && b.mantissa == 0 {
        return Some(LongDouble::zero(a.negative && b.negative));
    }
    if a.mantissa == 0 {
        return Some(b);
    }
    if b.mantissa == 0 {
        return Some(a);
    }
    let exponent = a.exponent.min(b.exponent);
    let a_exact = Natural::from_u64(a.mantissa).shl((a.exponent - exponent) as u64);
    let b_exact = Natural::from_u64(b.mantissa).shl((b.exponent - exponent) as u64);
    let (negative, magnitude) = if a.negative == b.negative {
        (a.negative, a_exact.add(&b_exact))
    } else {
        match a_exact.compare(&b_exact) {
            Ordering::Greater => (a.negative, a_exact.sub(&b_exact)),
            Ordering::Less => (b.negative, b_exact.sub(&a_exact)),
            // x + (-x) is +0 when rounding to nearest.
            Ordering::Equal => return Some(LongDouble::ZERO),
        }
    };
    match round(&magnitude, exponent, false) {
        Rounded::Finite { mantissa, exponent } => Some(LongDouble {
            negative,
            mantissa,
            exponent,
        }),
        Rounded::Zero => Some(LongDouble::zero(negative)),
        Rounded::Overflow => None,
    }
}

/// Redis's `ld2string(..., LD_STR_HUMAN)`: `%.17Lf`, trailing zeros and point removed,
/// "-0" shown as "0".
fn format(value: LongDouble) -> String {
    let sign = if value.negative { "-" } else { "" };
    let text = if value.exponent >= 0 {
        let integer = Natural::from_u64(value.mantissa).shl(value.exponent as u64);
        format!("{sign}{}", integer.to_decimal())
    } else {
        let scale = value.exponent.unsigned_abs();
        let (integer, fraction) = if scale >= 64 {
            (0u128, u128::from(value.mantissa))
        } else {
            let mantissa = u128::from(value.mantissa);
            (mantissa >> scale, mantissa & ((1 << scale) - 1))
        };
        let unit = 10u128.pow(FRACTION_DIGITS);
        // fraction < 2^64 and unit < 2^57, so this fits; it is the fraction scaled to
        // 17 digits, still over 2^scale.
        let scaled = fraction * unit;
        let (mut digits, round_up) = if scale >= 128 {
            (0, false)
        } else {
            let digits = scaled >> scale;
            let remainder = scaled & ((1 << scale) - 1);
            let half = 1u128 << (scale - 1);
            let round_up = remainder > half || (remainder == half && digits & 1 == 1);
            (digits, round_up)
        };
        let mut integer = integer;
        if round_up {
            digits += 1;
            if digits == unit {
                digits = 0;
                integer += 1;
            }
        }
        let text = format!("{sign}{integer}.{digits:017}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    if text == "-0" {
        "0".to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incr(current: &str, by: &str) -> Result<String, IncrementError> {
        increment(Some(current.as_bytes()), by.as_bytes())
    }

    #[test]
    fn sums_round_like_x87_long_double() {
        // Each expectation is what Redis 7.0 on x86-64 answered.
        assert_eq!(incr("0", "0.1").unwrap(), "0.1");
        assert_eq!(incr("0.1", "0.2").unwrap(), "0.3");
        assert_eq!(incr("0.1", "0.7").unwrap(), "0.8");
        assert_eq!(incr("10.5", "0.1").unwrap(), "10.6");
        assert_eq!(incr("10.6", "1e20").unwrap(), "100000000000000000008");
        assert_eq!(
            incr("100000000000000000008", "1e25").unwrap(),
            "10000100000000000000000000"
        );
        assert_eq!(incr("-1.5", "0.1").unwrap(), "-1.4");
        assert_eq!(
            incr("1", "0.3333333333333333333333333").unwrap(),
            "1.33333333333333333"
        );
        assert_eq!(
            incr("1.33333333333333333", "123456789.123456789").unwrap(),
            "123456790.45679012233449612"
        );
        assert_eq!(
            incr("3.0", "1.23456789012345678901").unwrap(),
            "4.23456789012345679"
        );
        assert_eq!(incr("5.0e3", "2.0e2").unwrap(), "5200");
        assert_eq!(
            increment(None, b"18446744073709551617").unwrap(),
            "18446744073709551616"
        );
    }

    #[test]
    fn printing_rounds_the_exact_value_half_to_even() {
        // 2^-18 and 3 × 2^-18 end in an exact 5 at the 18th decimal.
        assert_eq!(
            incr("0", "0.000003814697265625").unwrap(),
            "0.00000381469726562"
        );
        assert_eq!(
            incr("0", "0.000011444091796875").unwrap(),
            "0.00001144409179688"
        );
        assert_eq!(incr("0", "1.5e-17").unwrap(), "0.00000000000000002");
        assert_eq!(incr("0", "5e-18").unwrap(), "0");
        assert_eq!(incr("0", "1e-20").unwrap(), "0");
        assert_eq!(incr("0", "-0.0000000000000000001").unwrap(), "0");
        assert_eq!(incr("-0", "-0").unwrap(), "0");
        assert_eq!(incr("1e300", "-1e300").unwrap(), "0");
        let big = incr("0", "1e300").unwrap();
        assert!(
            big.starts_with("10000000000000000000089973240795591938705239442732"),
            "{big}"
        );
        assert_eq!(big.len(), 301);
    }

    #[test]
    fn parsing_follows_strtold() {
        assert_eq!(incr("0", ".5").unwrap(), "0.5");
        assert_eq!(incr("0.5", "5.").unwrap(), "5.5");
        assert_eq!(incr("0", "+1.5").unwrap(), "1.5");
        assert_eq!(incr("0", "0x1.8p1").unwrap(), "3");
        assert_eq!(incr("0", "0X10").unwrap(), "16");
        assert_eq!(incr("0", "3e-4951").unwrap(), "0");
        assert!(incr("0", "1e400")
            .unwrap()
            .starts_with("1000000000000000000028188068394758651458"));
        for bad in [
            "", " 1", "1 ", "1e", "1e+", ".", "e5", "0x", "nan", "NaN", "1e-4952", "1.2e4932",
            "1e5000", "1,5", "--1", "0x1p",
        ] {
            assert_eq!(incr("0", bad), Err(IncrementError::NotAFloat), "{bad:?}");
            assert_eq!(incr(bad, "1"), Err(IncrementError::NotAFloat), "{bad:?}");
        }
        assert_eq!(
            incr(&"1".repeat(MAX_TEXT_LEN), "1"),
            Err(IncrementError::NotAFloat)
        );
    }

    #[test]
    fn infinities_are_refused_after_parsing() {
        assert_eq!(incr("0", "inf"), Err(IncrementError::NotFinite));
        assert_eq!(incr("0", "-INFINITY"), Err(IncrementError::NotFinite));
        assert_eq!(incr("1.18e4932", "1e4932"), Err(IncrementError::NotFinite));
        assert!(incr("0", "1.18e4932")
            .unwrap()
            .starts_with("1180000000000000000000652812918093699202"));
    }
}
