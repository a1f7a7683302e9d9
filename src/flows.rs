//! Flows as the exporter shows them, and everything one scrape reports.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::bpf::{FlowBytes, FlowKey, ROLE_CLIENT, ROLE_SERVER};

const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;

/// Which end of the connection the local socket is.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The local socket connected.
    Client,
    /// The local socket was accepted from a listener.
    Server,
    /// The connection was set up before the exporter started.
    Unknown,
}

impl Role {
    pub fn from_raw(raw: u8) -> Role {
        match raw {
            ROLE_CLIENT => Role::Client,
            ROLE_SERVER => Role::Server,
            _ => Role::Unknown,
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

/// The text of a port label: empty for an aggregated (0) port.
pub fn port_label(port: u16) -> String {
    if port == 0 {
        String::new()
    } else {
        port.to_string()
    }
}

/// Bytes that could not be given a flow of their own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overflow {
    pub sent: u64,
    pub received: u64,
}

impl Overflow {
    pub fn add(&mut self, sent: u64, received: u64) {
        self.sent = self.sent.wrapping_add(sent);
        self.received = self.received.wrapping_add(received);
    }
}

/// Everything one scrape reports.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The flows themselves, for the pages; empty for /metrics, which writes
    /// them straight from the flow table.
    pub flows: Vec<Flow>,
    /// Flows exported now.
    pub flow_count: u64,
    /// Bytes that found the kernel's flow table full, summed over CPUs.
    pub overflow_kernel: Overflow,
    /// Bytes of new flows that arrived while --flows.max series existed.
    pub overflow_series: Overflow,
    /// Flows removed after --flows.idle-timeout without traffic, since start.
    pub flows_expired: u64,
    /// Entries the kernel flow table held when last drained.
    pub table_entries: u64,
    /// Sockets whose role the kernel remembers now.
    pub sockets_tracked: u64,
    /// Connections whose role could not be remembered (socket map full).
    pub sockets_untracked: u64,
    /// Socket calls the probes saw only half of (kprobe backend), summed
    /// over CPUs: their bytes are not counted.
    pub missed_calls: u64,
    /// Socket backend: connections whose final totals were lost, because
    /// closed_sockets was full or they never arrived; what they moved since
    /// the scrape before their end is not counted.
    pub connection_finals_lost: u64,
    /// Entries with an address family we do not know; the BPF side never
    /// writes them, so anything above zero is a bug worth seeing.
    pub undecodable: u64,
    /// Run statistics of the attached programs.
    pub programs: Vec<crate::program_stats::ProgramStats>,
    /// Whether the kernel is counting program runs and run time.
    pub bpf_stats_enabled: bool,
    /// Time spent draining the kernel tables and copying the flows.
    pub read_duration: Duration,
    /// CLOCK_MONOTONIC when the read finished, to age `last_seen_ns`.
    pub taken_at_ns: u64,
}

impl Snapshot {
    /// Everything that has no flow of its own: the overflow flow's counters.
    pub fn overflow(&self) -> Overflow {
        let mut total = self.overflow_kernel;
        total.add(self.overflow_series.sent, self.overflow_series.received);
        total
    }
}

pub fn value_from(bytes: &[u8]) -> FlowBytes {
    let mut value = FlowBytes::default();
    // The map's value size is the struct's size, checked when the probe loads.
    plain::copy_from_bytes(&mut value, bytes).expect("value is sizeof(struct flow_bytes)");
    value
}

/// Decodes one map entry; `None` for an unknown address family.
pub fn decode(key_bytes: &[u8], value_bytes: &[u8]) -> Option<Flow> {
    let mut key = FlowKey::default();
    plain::copy_from_bytes(&mut key, key_bytes).expect("key is sizeof(struct flow_key)");
    let (local, remote) = decode_key(&key)?;
    let value = value_from(value_bytes);
    Some(Flow {
        local,
        remote,
        role: Role::from_raw(key.role),
        sent: value.sent,
        received: value.received,
        last_seen_ns: value.last_seen_ns,
    })
}

/// The local and remote socket addresses of a flow key. IPv4-mapped IPv6
/// addresses come out as IPv4: the BPF side already folds them, and this keeps
/// a key written any other way from splitting one flow into two series.
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

/// CLOCK_MONOTONIC in nanoseconds, the clock of bpf_ktime_get_ns().
pub fn monotonic_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(family: u16, local: &[u8], remote: &[u8], ports: (u16, u16)) -> FlowKey {
        let mut key = FlowKey {
            family,
            local_port: ports.0,
            remote_port: ports.1,
            ..FlowKey::default()
        };
        key.local_addr[..local.len()].copy_from_slice(local);
        key.remote_addr[..remote.len()].copy_from_slice(remote);
        key
    }

    fn labels(key: &FlowKey) -> (String, String) {
        let (l, r) = decode_key(key).unwrap();
        (l.to_string(), r.to_string())
    }

    #[test]
    fn ipv4_key() {
        let k = key(AF_INET, &[10, 1, 2, 3], &[192, 168, 0, 7], (43210, 443));
        assert_eq!(
            labels(&k),
            ("10.1.2.3:43210".into(), "192.168.0.7:443".into())
        );
    }

    #[test]
    fn ipv6_key() {
        let local: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let remote: Ipv6Addr = "fe80::abcd:1".parse().unwrap();
        let k = key(AF_INET6, &local.octets(), &remote.octets(), (8080, 51000));
        assert_eq!(
            labels(&k),
            ("[2001:db8::1]:8080".into(), "[fe80::abcd:1]:51000".into())
        );
    }

    #[test]
    fn ipv4_mapped_ipv6_key_is_ipv4() {
        let local: Ipv6Addr = "::ffff:127.0.0.1".parse().unwrap();
        let remote: Ipv6Addr = "::ffff:10.0.0.9".parse().unwrap();
        let k = key(AF_INET6, &local.octets(), &remote.octets(), (80, 40000));
        let (l, r) = decode_key(&k).unwrap();
        assert!(l.is_ipv4() && r.is_ipv4());
        assert_eq!(labels(&k), ("127.0.0.1:80".into(), "10.0.0.9:40000".into()));
    }

    #[test]
    fn loopback_v6_is_not_mistaken_for_mapped() {
        let k = key(
            AF_INET6,
            &Ipv6Addr::LOCALHOST.octets(),
            &Ipv6Addr::LOCALHOST.octets(),
            (1, 2),
        );
        assert_eq!(labels(&k), ("[::1]:1".into(), "[::1]:2".into()));
    }

    #[test]
    fn unknown_family_is_rejected() {
        assert_eq!(
            decode_key(&key(1, &[1, 2, 3, 4], &[5, 6, 7, 8], (1, 2))),
            None
        );
    }

    #[test]
    fn decode_reads_counters() {
        let mut k = key(AF_INET, &[127, 0, 0, 1], &[127, 0, 0, 1], (5000, 6000));
        k.role = ROLE_SERVER;
        let v = FlowBytes {
            sent: 10,
            received: 1 << 40,
            last_seen_ns: 99,
        };
        // SAFETY: Plain types, viewed as bytes for the round trip.
        let (kb, vb) = unsafe { (plain::as_bytes(&k), plain::as_bytes(&v)) };
        let flow = decode(kb, vb).unwrap();
        assert_eq!(
            (flow.sent, flow.received, flow.last_seen_ns),
            (10, 1 << 40, 99)
        );
        assert_eq!(flow.total_bytes(), 10 + (1 << 40));
        assert_eq!(flow.role, Role::Server);
        assert_eq!(
            (port_label(0), port_label(443)),
            (String::new(), "443".into())
        );
    }
}
