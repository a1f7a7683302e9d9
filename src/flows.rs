//! A complete snapshot of the kernel's flow map, decoded into typed flows.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use libbpf_rs::MapHandle;

use crate::bpf::{FlowBytes, FlowKey, ProbeHealth};
use crate::map_reader::{read_hash_map, read_percpu_slot};

const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;

/// One TCP flow seen from this node. `local` is this node's socket (the
/// `src_*` labels), `remote` its peer (`dst_*`), whichever side connected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    pub local: SocketAddr,
    pub remote: SocketAddr,
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

/// Bytes counted while the flow map was full, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overflow {
    pub sent: u64,
    pub received: u64,
}

/// Everything one scrape reads from the kernel.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub flows: Vec<Flow>,
    pub overflow: Overflow,
    /// Socket calls the probes saw only half of (kprobe backend), summed
    /// over CPUs: their bytes are not counted.
    pub missed_calls: u64,
    /// Entries with an address family we do not know; the BPF side never
    /// writes them, so anything above zero is a bug worth seeing.
    pub undecodable: u64,
    /// Run statistics of the attached programs.
    pub programs: Vec<crate::program_stats::ProgramStats>,
    /// Whether the kernel is counting program runs and run time.
    pub bpf_stats_enabled: bool,
    /// Time spent reading and decoding the maps.
    pub read_duration: Duration,
    /// CLOCK_MONOTONIC when the read finished, to age `last_seen_ns`.
    pub taken_at_ns: u64,
}

/// The maps a scrape reads.
#[derive(Debug)]
pub struct FlowMaps {
    pub flows: MapHandle,
    pub overflow: MapHandle,
    pub health: MapHandle,
    pub capacity: u32,
}

impl FlowMaps {
    /// Reads every map completely.
    pub fn snapshot(&self) -> io::Result<Snapshot> {
        let started = Instant::now();
        let entries = read_hash_map(&self.flows, self.capacity as usize)?;
        let mut snapshot = Snapshot {
            flows: Vec::with_capacity(entries.len()),
            ..Snapshot::default()
        };
        for (key, value) in entries.iter() {
            match decode(key, value) {
                Some(flow) => snapshot.flows.push(flow),
                None => snapshot.undecodable += 1,
            }
        }
        for cpu in read_percpu_slot(&self.overflow, 0)? {
            let bytes = value_from(&cpu);
            snapshot.overflow.sent += bytes.sent;
            snapshot.overflow.received += bytes.received;
        }
        for cpu in read_percpu_slot(&self.health, 0)? {
            let mut health = ProbeHealth::default();
            plain::copy_from_bytes(&mut health, &cpu)
                .expect("value is sizeof(struct probe_health)");
            snapshot.missed_calls += health.missed_calls;
        }
        snapshot.read_duration = started.elapsed();
        snapshot.taken_at_ns = monotonic_now_ns();
        Ok(snapshot)
    }
}

fn value_from(bytes: &[u8]) -> FlowBytes {
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
        let k = key(AF_INET, &[127, 0, 0, 1], &[127, 0, 0, 1], (5000, 6000));
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
    }
}
