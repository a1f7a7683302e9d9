//! Longest-prefix match over the named networks.
//!
//! One hash map per prefix length present, probed longest first: a lookup
//! costs at most one hash probe per distinct prefix length (a handful in
//! practice, 33 or 129 at worst), however many networks the file names.
//! The lookup runs once per new flow, at scrape time.

use std::hash::Hash;
use std::net::IpAddr;

use foldhash::{HashMap, HashMapExt};
use ipnet::IpNet;

/// Networks by prefix, for one address family.
struct Tables<K> {
    /// (prefix length, network address → position in the list), longest
    /// prefix first.
    by_length: Vec<(u8, HashMap<K, usize>)>,
}

impl<K: Hash + Eq + Copy> Tables<K> {
    fn new() -> Self {
        Tables {
            by_length: Vec::new(),
        }
    }

    /// Adds `network` at `position`; returns the position already there
    /// when the same network was added before.
    fn insert(&mut self, prefix_len: u8, network: K, position: usize) -> Option<usize> {
        let at = match self
            .by_length
            .binary_search_by(|(len, _)| prefix_len.cmp(len))
        {
            Ok(at) => at,
            Err(at) => {
                self.by_length.insert(at, (prefix_len, HashMap::new()));
                at
            }
        };
        let table = &mut self.by_length[at].1;
        match table.get(&network) {
            Some(first) => Some(*first),
            None => {
                table.insert(network, position);
                None
            }
        }
    }

    fn find(&self, network_of: impl Fn(u8) -> K) -> Option<usize> {
        self.by_length
            .iter()
            .find_map(|(len, table)| table.get(&network_of(*len)).copied())
    }
}

/// The index behind [`super::Networks::find`].
pub(super) struct PrefixIndex {
    v4: Tables<u32>,
    v6: Tables<u128>,
}

impl PrefixIndex {
    pub(super) fn new() -> Self {
        PrefixIndex {
            v4: Tables::new(),
            v6: Tables::new(),
        }
    }

    /// Adds `cidr` at `position`; returns the position of an earlier
    /// identical network instead when there is one.
    pub(super) fn insert(&mut self, cidr: IpNet, position: usize) -> Option<usize> {
        // trunc(): host bits would never match a masked address.
        match cidr.trunc() {
            IpNet::V4(net) => self
                .v4
                .insert(net.prefix_len(), u32::from(net.network()), position),
            IpNet::V6(net) => self
                .v6
                .insert(net.prefix_len(), u128::from(net.network()), position),
        }
    }

    /// The position of the narrowest network holding `ip`. An IPv4-mapped
    /// IPv6 address is looked up as its IPv4 address, so IPv6 networks
    /// covering ::ffff:0:0/96 never match: name the IPv4 network instead.
    pub(super) fn find(&self, ip: IpAddr) -> Option<usize> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        match ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                self.v4
                    .find(|len| bits & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0))
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                self.v6
                    .find(|len| bits & u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0))
            }
        }
    }
}
