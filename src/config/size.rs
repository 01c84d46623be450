//! Byte sizes as Redis writes them: `1048576`, `64mb`, `1gb`, `512k` (k/kb/m/mb/g/gb, case
//! insensitive; `k` = 1000 and `kb` = 1024, as in redis.conf).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Result<Self, String> {
        let lower = text.trim().to_ascii_lowercase();
        let split = lower
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(lower.len());
        let (digits, unit) = lower.split_at(split);
        let number: u64 = digits
            .parse()
            .map_err(|_| format!("'{text}' is not a size (examples: 1048576, 64mb, 1gb)"))?;
        let multiplier: u64 = match unit {
            "" | "b" => 1,
            "k" => 1000,
            "kb" => 1024,
            "m" => 1000 * 1000,
            "mb" => 1024 * 1024,
            "g" => 1000 * 1000 * 1000,
            "gb" => 1024 * 1024 * 1024,
            _ => {
                return Err(format!(
                    "'{text}' has an unknown unit (use k, kb, m, mb, g or gb)"
                ))
            }
        };
        number
            .checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(|| format!("'{text}' is too large"))
    }
}

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const GB: u64 = 1 << 30;
        const MB: u64 = 1 << 20;
        const KB: u64 = 1 << 10;
        match self.0 {
            0 => write!(f, "0"),
            n if n % GB == 0 => write!(f, "{}gb", n / GB),
            n if n % MB == 0 => write!(f, "{}mb", n / MB),
            n if n % KB == 0 => write!(f, "{}kb", n / KB),
            n => write!(f, "{n}"),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(text) => ByteSize::parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ByteSize;

    #[test]
    fn parses_redis_units() {
        assert_eq!(ByteSize::parse("1048576"), Ok(ByteSize(1 << 20)));
        assert_eq!(ByteSize::parse("64mb"), Ok(ByteSize(64 << 20)));
        assert_eq!(ByteSize::parse("1GB"), Ok(ByteSize(1 << 30)));
        assert_eq!(ByteSize::parse("2k"), Ok(ByteSize(2000)));
        assert_eq!(ByteSize::parse("2kb"), Ok(ByteSize(2048)));
        assert!(ByteSize::parse("12zb").is_err());
        assert!(ByteSize::parse("mb").is_err());
        assert!(ByteSize::parse("99999999999999gb").is_err());
    }

    #[test]
    fn displays_in_the_largest_exact_unit() {
        assert_eq!(ByteSize(64 << 20).to_string(), "64mb");
        assert_eq!(ByteSize(1500).to_string(), "1500");
        assert_eq!(
            ByteSize::parse(&ByteSize(3 << 30).to_string()),
            Ok(ByteSize(3 << 30))
        );
    }
}
