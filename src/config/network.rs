//! Who may connect, beyond the password: address lists (`security.allow`, `security.deny`,
//! CIDR blocks such as `10.0.0.0/8` or a single address) and a cap on connections per
//! client address (`security.maxclients_per_ip`), with their CONFIG parameters
//! (`hypercache-allow`, `hypercache-deny`, `hypercache-maxclients-per-ip`), a per-client
//! command rate (`hypercache-client-commands-per-second`), and the audit log's path
//! (`hypercache-audit-log`, set at start). The server's accept path asks
//! [`SecurityConfig::admits`]; this module only parses and matches.

use std::net::IpAddr;

use super::params::{in_range, optional_path_shown, parse_optional_path, Mutability, Param};
use super::SecurityConfig;

/// An address block: `addr/prefix`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("'{text}' is not an address or address/prefix"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|bits| *bits <= max)
                .ok_or_else(|| format!("'{text}': the prefix must be 0 to {max}"))?,
        };
        Ok(Cidr { network, prefix })
    }

    /// Whether `ip` is in this block (an IPv4 client seen as an IPv4-mapped IPv6 address
    /// counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Checks every entry of an address list; the message names the bad one.
pub fn validate_list(list: &[String]) -> Result<(), String> {
    list.iter()
        .try_for_each(|entry| Cidr::parse(entry).map(|_| ()))
}

fn matches_any(list: &[String], ip: IpAddr) -> bool {
    list.iter()
        .filter_map(|entry| Cidr::parse(entry).ok())
        .any(|cidr| cidr.contains(ip))
}

impl SecurityConfig {
    /// Whether the address lists let a client from `ip` connect: not on the deny list,
    /// and on the allow list when there is one.
    pub fn admits(&self, ip: IpAddr) -> bool {
        !matches_any(&self.deny, ip) && (self.allow.is_empty() || matches_any(&self.allow, ip))
    }
}

fn show_list(list: &[String]) -> String {
    list.join(" ")
}

fn parse_list(text: &str) -> Result<Vec<String>, String> {
    let list: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    validate_list(&list)?;
    Ok(list)
}

/// The CONFIG parameters of this module (listed after the general ones).
pub const PARAMS: &[Param] = &[
    Param {
        name: "hypercache-allow",
        mutability: Mutability::Live,
        get: |c| show_list(&c.security.allow),
        set: |c, v| {
            c.security.allow = parse_list(v)?;
            Ok(())
        },
    },
    Param {
        name: "hypercache-deny",
        mutability: Mutability::Live,
        get: |c| show_list(&c.security.deny),
        set: |c, v| {
            c.security.deny = parse_list(v)?;
            Ok(())
        },
    },
    Param {
        name: "hypercache-audit-log",
        mutability: Mutability::Fixed,
        get: |c| optional_path_shown(&c.security.audit_log),
        set: |c, v| {
            c.security.audit_log = parse_optional_path(v);
            Ok(())
        },
    },
    Param {
        name: "hypercache-client-commands-per-second",
        mutability: Mutability::Live,
        get: |c| c.security.max_commands_per_second.to_string(),
        set: |c, v| {
            c.security.max_commands_per_second = in_range(v, 0, i64::from(i32::MAX))? as u64;
            Ok(())
        },
    },
    Param {
        name: "hypercache-maxclients-per-ip",
        mutability: Mutability::Live,
        get: |c| c.security.maxclients_per_ip.to_string(),
        set: |c, v| {
            c.security.maxclients_per_ip = in_range(v, 0, i64::from(i32::MAX))? as usize;
            Ok(())
        },
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_match_as_written() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let block = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(block.contains(ip("10.1.200.3")));
        assert!(!block.contains(ip("10.2.0.1")));
        assert!(block.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped");
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("127.0.0.2").unwrap().contains(ip("127.0.0.2")));
        assert!(!Cidr::parse("127.0.0.2").unwrap().contains(ip("127.0.0.1")));
        assert!(Cidr::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        assert!(!Cidr::parse("fd00::/8").unwrap().contains(ip("10.0.0.1")));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nonsense").is_err());
    }

    #[test]
    fn deny_wins_and_an_allow_list_is_exclusive() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let mut security = SecurityConfig::default();
        assert!(security.admits(ip("203.0.113.9")), "no lists: everyone");
        security.allow = vec!["127.0.0.0/8".into(), "10.0.0.0/8".into()];
        assert!(security.admits(ip("10.9.9.9")));
        assert!(!security.admits(ip("203.0.113.9")));
        security.deny = vec!["10.9.0.0/16".into()];
        assert!(!security.admits(ip("10.9.9.9")));
        assert!(security.admits(ip("10.8.9.9")));
    }
}
