//! What the kernel counts and how it keys it: --flows.ports and --filter.*.
//! Everything here is decided once, before a BPF object loads, and written
//! into its read-only data and filter tries.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use clap::ValueEnum;
use ipnet::IpNet;

use super::skel::{CidrKey, FilterSettings};

/// How much of a flow's port pair is kept.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum PortsMode {
    /// Keep only the server's port; every connection of one client to one
    /// server port is one flow.
    #[default]
    Server,
    /// Keep both ports: one flow per connection.
    All,
}

/// Whether flows to a loopback peer are counted.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Loopback {
    #[default]
    Include,
    Exclude,
}

/// An inclusive TCP port range, written `PORT` or `FIRST-LAST`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let port = |s: &str| -> Result<u16, String> {
            match s.trim().parse::<u16>() {
                Ok(p) if p > 0 => Ok(p),
                _ => Err(format!(
                    "invalid port {s:?}: expected PORT or FIRST-LAST, ports 1-65535"
                )),
            }
        };
        let (first, last) = match text.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(text)?, port(text)?),
        };
        if first > last {
            return Err(format!("invalid port range {text:?}: {first} > {last}"));
        }
        Ok(PortRange { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// Parses a CIDR, or a bare address as a single-host network.
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("invalid CIDR {text:?}: expected e.g. 10.0.0.0/8 or fd00::/8"))
}

/// Everything that decides which flows are counted and under which key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowFilter {
    pub ports: PortsMode,
    pub loopback: Loopback,
    pub cidr_include: Vec<IpNet>,
    pub cidr_exclude: Vec<IpNet>,
    pub port_include: Vec<PortRange>,
    pub port_exclude: Vec<PortRange>,
    /// --cgroup.attribution: the socket's cgroup id is part of the key.
    pub cgroups: bool,
}

impl FlowFilter {
    /// The settings as the BPF objects' read-only `filter` holds them.
    pub fn settings(&self) -> FilterSettings {
        FilterSettings {
            keep_client_ports: u8::from(self.ports == PortsMode::All),
            skip_loopback: u8::from(self.loopback == Loopback::Exclude),
            cidr_include_on: u8::from(!self.cidr_include.is_empty()),
            cidr_exclude_on: u8::from(!self.cidr_exclude.is_empty()),
            port_include_on: u8::from(!self.port_include.is_empty()),
            port_exclude_on: u8::from(!self.port_exclude.is_empty()),
            key_cgroup: u8::from(self.cgroups),
            port_include: port_bitmap(&self.port_include),
            port_exclude: port_bitmap(&self.port_exclude),
            ..FilterSettings::default()
        }
    }
}

/// One bit per port, as filter.bpf.h reads it: bit `p & 63` of word `p >> 6`.
pub fn port_bitmap(ranges: &[PortRange]) -> [u64; 1024] {
    let mut words = [0u64; 1024];
    for range in ranges {
        for port in range.first..=range.last {
            words[usize::from(port >> 6)] |= 1 << (port & 63);
        }
    }
    words
}

/// The LPM trie key of a network: IPv4 as ::ffff:a.b.c.d/(96 + prefix).
pub fn cidr_key(net: &IpNet) -> CidrKey {
    let (addr, prefixlen) = match net {
        IpNet::V4(v4) => (
            v4.network().to_ipv6_mapped().octets(),
            96 + u32::from(v4.prefix_len()),
        ),
        IpNet::V6(v6) => (v6.network().octets(), u32::from(v6.prefix_len())),
    };
    CidrKey { prefixlen, addr }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_parse_and_reject() {
        assert_eq!(
            "443".parse::<PortRange>(),
            Ok(PortRange {
                first: 443,
                last: 443
            })
        );
        assert_eq!(
            "8000-8100".parse::<PortRange>().unwrap().to_string(),
            "8000-8100"
        );
        for bad in ["0", "65536", "http", "10-5", "", "-3"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn bitmap_sets_exactly_the_ports_given() {
        let map = port_bitmap(&[
            "1".parse().unwrap(),
            "63-65".parse().unwrap(),
            "65535".parse().unwrap(),
        ]);
        let set: Vec<u32> = (0..=65535u32)
            .filter(|p| map[(p >> 6) as usize] & (1 << (p & 63)) != 0)
            .collect();
        assert_eq!(set, vec![1, 63, 64, 65, 65535]);
    }

    #[test]
    fn cidrs_become_mapped_trie_keys() {
        let key = cidr_key(&parse_cidr("10.1.0.0/16").unwrap());
        assert_eq!(key.prefixlen, 112);
        assert_eq!(&key.addr[10..14], &[0xff, 0xff, 10, 1]);
        let key = cidr_key(&parse_cidr("fd00::/8").unwrap());
        assert_eq!((key.prefixlen, key.addr[0]), (8, 0xfd));
        // A bare address is one host; host bits of a CIDR are dropped.
        assert_eq!(cidr_key(&parse_cidr("192.0.2.7").unwrap()).prefixlen, 128);
        assert_eq!(parse_cidr("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("example.com").is_err());
    }
}
