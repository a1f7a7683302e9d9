//! Built-in address classes for a peer nothing else names: loopback,
//! private or internet.
//!
//! These decide `dst_kind` and, for `internet`, the path, so they follow
//! what the bytes cost rather than every IANA special-purpose registry
//! entry: only ranges that never leave the host or the private network are
//! singled out. Documentation ranges (TEST-NET-1/2/3), the benchmarking
//! range 198.18.0.0/15, multicast and the rest are `Internet`; the tests
//! use a TEST-NET address as a "public-looking" peer for exactly that reason.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::PeerKind;

#[cfg(test)]
mod tests;

/// Where an address sits when no Kubernetes object or named network claims it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum AddressClass {
    /// The bytes never leave this host.
    Loopback,
    /// RFC 1918, carrier-grade NAT (100.64.0.0/10), unique local (fc00::/7)
    /// and link-local addresses: reachable only inside some private network.
    Private,
    /// Everything else.
    Internet,
}

impl AddressClass {
    pub fn as_str(self) -> &'static str {
        match self {
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::Internet => "internet",
        }
    }
}

impl From<AddressClass> for PeerKind {
    fn from(class: AddressClass) -> PeerKind {
        match class {
            AddressClass::Loopback => PeerKind::Loopback,
            AddressClass::Private => PeerKind::Private,
            AddressClass::Internet => PeerKind::Internet,
        }
    }
}

/// IPv4 ranges other than `Internet`, as (network, prefix length, class).
const V4_RANGES: [(Ipv4Addr, u8, AddressClass); 6] = [
    (Ipv4Addr::new(127, 0, 0, 0), 8, AddressClass::Loopback),
    (Ipv4Addr::new(10, 0, 0, 0), 8, AddressClass::Private),
    (Ipv4Addr::new(172, 16, 0, 0), 12, AddressClass::Private),
    (Ipv4Addr::new(192, 168, 0, 0), 16, AddressClass::Private),
    (Ipv4Addr::new(100, 64, 0, 0), 10, AddressClass::Private),
    (Ipv4Addr::new(169, 254, 0, 0), 16, AddressClass::Private),
];

/// IPv6 ranges other than `Internet` (::1 and :: are handled on their own).
const V6_RANGES: [(Ipv6Addr, u8, AddressClass); 2] = [
    // Unique local addresses.
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        AddressClass::Private,
    ),
    // Link-local.
    (
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
        AddressClass::Private,
    ),
];

/// The class of `ip`.
///
/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack socket
/// reports for an IPv4 peer) is classed as its IPv4 address.
///
/// The unspecified address (0.0.0.0 or ::) is `Loopback`: Linux treats a
/// connect() to it as a connect to the local host, so such a flow's bytes
/// never leave the machine.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    if ip.is_unspecified() {
        return AddressClass::Loopback;
    }
    let bits = u32::from(ip);
    V4_RANGES
        .iter()
        .find(|(network, len, _)| bits >> (32 - len) == u32::from(*network) >> (32 - len))
        .map_or(AddressClass::Internet, |(_, _, class)| *class)
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    if ip.is_loopback() || ip.is_unspecified() {
        return AddressClass::Loopback;
    }
    let bits = u128::from(ip);
    V6_RANGES
        .iter()
        .find(|(network, len, _)| bits >> (128 - len) == u128::from(*network) >> (128 - len))
        .map_or(AddressClass::Internet, |(_, _, class)| *class)
}
