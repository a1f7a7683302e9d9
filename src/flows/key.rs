//! Flows as the exporter shows them, decoded from the kernel's keys.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use crate::identity::labels::Identity;

use crate::kernel::skel::{FlowKey, FlowRole};

const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;

/// Which end of the connection the local socket is.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The local socket connected.
    Client,
    /// The local socket was accepted from a listener.
    Server,
    /// The connection was set up before the exporter started.
    Unknown,
}

impl Role {
    pub fn from_kernel(role: FlowRole) -> Role {
        match role {
            FlowRole::ROLE_CLIENT => Role::Client,
            FlowRole::ROLE_SERVER => Role::Server,
            _ => Role::Unknown,
        }
    }

    pub fn to_kernel(self) -> FlowRole {
        match self {
            Role::Client => FlowRole::ROLE_CLIENT,
            Role::Server => FlowRole::ROLE_SERVER,
            Role::Unknown => FlowRole::ROLE_UNKNOWN,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
            Role::Unknown => "unknown",
        }
    }
}

/// One TCP flow seen from this node. `local` is this node's socket (the
/// `src_*` labels), `remote` its peer (`dst_*`). Port 0 stands for "any
/// port": the client's port under --flows.ports=server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub role: Role,
    /// Who each end is, and the path between them.
    pub identity: Arc<Identity>,
    /// Payload bytes the local application sent to the peer.
    pub sent: u64,
    /// Payload bytes the local application received from the peer.
    pub received: u64,
    /// CLOCK_MONOTONIC nanoseconds of the latest counted send or receive.
    pub last_seen_ns: u64,
}

impl Flow {
    pub fn total_bytes(&self) -> u64 {
        self.sent.saturating_add(self.received)
    }
}

/// A flow's port as its labels show it: `None` for the port the kernel
/// folded away (0, the client's port under --flows.ports=server). Each view
/// writes `None` its own way: an empty label, `*`, or JSON null.
pub fn shown_port(port: u16) -> Option<u16> {
    (port != 0).then_some(port)
}

/// The local and remote socket addresses of a flow key; `None` for an
/// unknown address family. IPv4-mapped IPv6 addresses come out as IPv4: the
/// BPF side already folds them, and this keeps a key written any other way
/// from splitting one flow into two series.
pub fn decode_key(key: &FlowKey) -> Option<(SocketAddr, SocketAddr)> {
    let ip = |bytes: &[u8; 16]| -> Option<IpAddr> {
        match key.family {
            AF_INET => Some(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).into()),
            AF_INET6 => Some(Ipv6Addr::from(*bytes).to_canonical()),
            _ => None,
        }
    };
    Some((
        SocketAddr::new(ip(&key.local_addr)?, key.local_port),
        SocketAddr::new(ip(&key.remote_addr)?, key.remote_port),
    ))
}

/// The kernel's key of a flow, as bpf/common.bpf.h builds it: for tests and
/// benchmarks that plant flows. Both addresses must be of one family.
pub fn encode_key(local: SocketAddr, remote: SocketAddr, role: Role) -> FlowKey {
    let mut key = FlowKey {
        local_port: local.port(),
        remote_port: remote.port(),
        role: role.to_kernel(),
        ..FlowKey::default()
    };
    for (ip, bytes) in [
        (local.ip(), &mut key.local_addr),
        (remote.ip(), &mut key.remote_addr),
    ] {
        match ip {
            IpAddr::V4(v4) => {
                key.family = AF_INET;
                bytes[..4].copy_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                key.family = AF_INET6;
                *bytes = v6.octets();
            }
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(local: &str, remote: &str) -> FlowKey {
        encode_key(
            local.parse().unwrap(),
            remote.parse().unwrap(),
            Role::Unknown,
        )
    }

    fn labels(key: &FlowKey) -> (String, String) {
        let (l, r) = decode_key(key).unwrap();
        (l.to_string(), r.to_string())
    }

    #[test]
    fn ipv4_key() {
        let k = key("10.1.2.3:43210", "192.168.0.7:443");
        assert_eq!(k.family, AF_INET);
        assert_eq!(&k.local_addr[..5], &[10, 1, 2, 3, 0]);
        assert_eq!(
            labels(&k),
            ("10.1.2.3:43210".into(), "192.168.0.7:443".into())
        );
    }

    #[test]
    fn ipv6_key() {
        let k = key("[2001:db8::1]:8080", "[fe80::abcd:1]:51000");
        assert_eq!(k.family, AF_INET6);
        assert_eq!(
            labels(&k),
            ("[2001:db8::1]:8080".into(), "[fe80::abcd:1]:51000".into())
        );
    }

    #[test]
    fn ipv4_mapped_ipv6_key_is_ipv4() {
        let k = key("[::ffff:127.0.0.1]:80", "[::ffff:10.0.0.9]:40000");
        assert_eq!(k.family, AF_INET6);
        let (l, r) = decode_key(&k).unwrap();
        assert!(l.is_ipv4() && r.is_ipv4());
        assert_eq!(labels(&k), ("127.0.0.1:80".into(), "10.0.0.9:40000".into()));
    }

    #[test]
    fn loopback_v6_is_not_mistaken_for_mapped() {
        let k = key("[::1]:1", "[::1]:2");
        assert_eq!(labels(&k), ("[::1]:1".into(), "[::1]:2".into()));
    }

    #[test]
    fn unknown_family_is_rejected() {
        let mut k = key("1.2.3.4:1", "5.6.7.8:2");
        k.family = 1;
        assert_eq!(decode_key(&k), None);
    }

    #[test]
    fn roles_and_ports_round_trip() {
        for role in [Role::Client, Role::Server, Role::Unknown] {
            assert_eq!(Role::from_kernel(role.to_kernel()), role);
        }
        assert_eq!(Role::from_kernel(FlowRole(9)), Role::Unknown);
        assert_eq!((shown_port(0), shown_port(443)), (None, Some(443)));
    }

    #[test]
    fn total_bytes_adds_both_directions() {
        let (local, remote) = decode_key(&key("127.0.0.1:5000", "127.0.0.1:6000")).unwrap();
        let flow = Flow {
            local,
            remote,
            role: Role::Server,
            identity: crate::identity::Anonymous::identity(),
            sent: 10,
            received: 1 << 40,
            last_seen_ns: 99,
        };
        assert_eq!(flow.total_bytes(), 10 + (1 << 40));
    }

    /// Kernel keys found by machines: any bytes decode to two addresses of
    /// the key's family, or to `None` for an unknown family; never a panic.
    mod arbitrary_keys {
        use super::*;
        use crate::kernel::skel::{from_bytes, key_bytes, FlowKeyBytes};
        use proptest::prelude::*;

        /// Any key bytes, with a known family half of the time.
        pub fn key_bytes_strategy() -> impl Strategy<Value = FlowKeyBytes> {
            let len = std::mem::size_of::<FlowKeyBytes>();
            let family = prop_oneof![Just(AF_INET), Just(AF_INET6), any::<u16>()];
            (
                proptest::collection::vec(any::<u8>(), len),
                family,
                any::<bool>(),
            )
                .prop_map(|(bytes, family, keep)| {
                    let mut key: FlowKey = from_bytes(&bytes);
                    if !keep {
                        key.family = family;
                    }
                    key_bytes(&key)
                })
        }

        proptest! {
            #[test]
            fn any_bytes_decode_to_their_family_or_none(bytes in key_bytes_strategy()) {
                let key: FlowKey = from_bytes(&bytes);
                match decode_key(&key) {
                    None => prop_assert!(key.family != AF_INET && key.family != AF_INET6),
                    Some((local, remote)) => {
                        prop_assert_eq!((local.port(), remote.port()), (key.local_port, key.remote_port));
                        if key.family == AF_INET {
                            prop_assert_eq!(local.ip(), IpAddr::from(<[u8; 4]>::try_from(&key.local_addr[..4]).unwrap()));
                            prop_assert!(remote.is_ipv4());
                        } else {
                            prop_assert_eq!(local.ip(), Ipv6Addr::from(key.local_addr).to_canonical());
                            prop_assert_eq!(remote.ip(), Ipv6Addr::from(key.remote_addr).to_canonical());
                        }
                    }
                }
                // Any role byte is a role.
                let _ = Role::from_kernel(key.role).as_str();
            }

            #[test]
            fn encoded_keys_decode_to_their_addresses(
                local in any::<std::net::SocketAddrV4>(), remote in any::<std::net::SocketAddrV4>(),
                local6 in any::<std::net::SocketAddrV6>(), remote6 in any::<std::net::SocketAddrV6>(),
            ) {
                let v4 = encode_key(local.into(), remote.into(), Role::Client);
                prop_assert_eq!(decode_key(&v4), Some((local.into(), remote.into())));
                let canonical = |a: std::net::SocketAddrV6| SocketAddr::new(a.ip().to_canonical(), a.port());
                let v6 = encode_key(local6.into(), remote6.into(), Role::Server);
                prop_assert_eq!(decode_key(&v6), Some((canonical(local6), canonical(remote6))));
            }
        }
    }
}
