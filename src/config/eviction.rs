//! What the cache does when it is full: Redis's `maxmemory-policy` names and their tuning
//! knobs (`maxmemory-samples`, `lfu-log-factor`, `lfu-decay-time`). Only the vocabulary
//! lives here; the engine's `eviction` module applies it (DESIGN section 8).

use serde::{Deserialize, Serialize};

/// Redis's eviction policies. In HyperCache a full RAM share moves keys down to the disk
/// (never losing one); the policy decides which keys leave the whole cache once the disk
/// budget (`maxdisk`) is reached too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvictionPolicy {
    /// Refuse writes (`-OOM`) instead of evicting.
    Noeviction,
    /// Least recently used among all keys.
    AllkeysLru,
    /// Least frequently used among all keys.
    AllkeysLfu,
    /// Any key.
    AllkeysRandom,
    /// Least recently used among keys with a TTL.
    VolatileLru,
    /// Least frequently used among keys with a TTL.
    VolatileLfu,
    /// Any key with a TTL.
    VolatileRandom,
    /// The key with the nearest expiry.
    VolatileTtl,
}

impl EvictionPolicy {
    /// Every policy, in the order Redis's error text lists them.
    pub const ALL: [EvictionPolicy; 8] = [
        EvictionPolicy::VolatileLru,
        EvictionPolicy::VolatileLfu,
        EvictionPolicy::VolatileRandom,
        EvictionPolicy::VolatileTtl,
        EvictionPolicy::AllkeysLru,
        EvictionPolicy::AllkeysLfu,
        EvictionPolicy::AllkeysRandom,
        EvictionPolicy::Noeviction,
    ];

    /// Redis's name for the policy.
    pub fn name(self) -> &'static str {
        match self {
            EvictionPolicy::Noeviction => "noeviction",
            EvictionPolicy::AllkeysLru => "allkeys-lru",
            EvictionPolicy::AllkeysLfu => "allkeys-lfu",
            EvictionPolicy::AllkeysRandom => "allkeys-random",
            EvictionPolicy::VolatileLru => "volatile-lru",
            EvictionPolicy::VolatileLfu => "volatile-lfu",
            EvictionPolicy::VolatileRandom => "volatile-random",
            EvictionPolicy::VolatileTtl => "volatile-ttl",
        }
    }

    /// Parses Redis's name, case-insensitively.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|policy| policy.name().eq_ignore_ascii_case(text))
    }

    /// Only keys with a TTL may be evicted.
    pub fn volatile_only(self) -> bool {
        matches!(
            self,
            EvictionPolicy::VolatileLru
                | EvictionPolicy::VolatileLfu
                | EvictionPolicy::VolatileRandom
                | EvictionPolicy::VolatileTtl
        )
    }

    /// Victims are chosen by access frequency (OBJECT FREQ answers only then).
    pub fn uses_lfu(self) -> bool {
        matches!(
            self,
            EvictionPolicy::AllkeysLfu | EvictionPolicy::VolatileLfu
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_parse_case_insensitively() {
        for policy in EvictionPolicy::ALL {
            assert_eq!(EvictionPolicy::parse(policy.name()), Some(policy));
            let yaml = serde_yaml::to_string(&policy).unwrap();
            assert_eq!(yaml.trim(), policy.name());
        }
        assert_eq!(
            EvictionPolicy::parse("AllKeys-LFU"),
            Some(EvictionPolicy::AllkeysLfu)
        );
        assert_eq!(EvictionPolicy::parse("lru"), None);
    }
}
