//! Root test: a scrape drains a big kernel flow table completely (libbpf-rs
//! 0.27's lookup_batch returned only 65,535 of 100,000 entries here), and
//! the totals keep growing across drains that delete every kernel entry.

mod common;

use std::collections::HashSet;

use libbpf_rs::{MapCore, MapFlags};
use tcp_flow_exporter::bpf::{FlowBytes, FlowKey};
use tcp_flow_exporter::collector::Collector;
use tcp_flow_exporter::flow_table::FlowTable;
use tcp_flow_exporter::probe::{Probe, ProbeConfig};

const FLOWS: u32 = 120_000;

fn key(i: u32) -> FlowKey {
    let mut key = FlowKey {
        family: libc::AF_INET as u16,
        local_port: (i % 60_000) as u16 + 1,
        remote_port: 443,
        ..FlowKey::default()
    };
    key.local_addr[..4].copy_from_slice(&[10, 0, (i / 60_000) as u8, 1]);
    key.remote_addr[..4].copy_from_slice(&i.to_be_bytes());
    key
}

#[test]
fn root_scrape_reads_every_entry_of_a_120k_flow_map() {
    if !common::root_or_skip("root_scrape_reads_every_entry_of_a_120k_flow_map") {
        return;
    }
    let config = ProbeConfig {
        flows_max: FLOWS + 1000,
        ..ProbeConfig::default()
    };
    let probe = Probe::maps_only(&config).expect("create the maps");
    let table = FlowTable::new(config.flows_max as usize, u64::MAX);
    let mut collector = Collector::new(probe.flow_maps().unwrap(), table).unwrap();

    // Two rounds of deltas for the same keys, each drained on its own: the
    // second round lands in the other kernel table, as fresh entries.
    for round in 1..=2u64 {
        for i in 0..FLOWS {
            let value = FlowBytes {
                sent: u64::from(i) * 3,
                received: u64::from(i) * 5 + 1,
                last_seen_ns: u64::from(i),
            };
            let key = key(i);
            // SAFETY: Plain structs viewed as their bytes.
            let (k, v) = unsafe { (plain::as_bytes(&key), plain::as_bytes(&value)) };
            collector
                .writing_table()
                .update(k, v, MapFlags::NO_EXIST)
                .unwrap();
        }

        let snapshot = collector.snapshot().unwrap();
        assert_eq!(snapshot.flows.len(), FLOWS as usize);
        assert_eq!(snapshot.table_entries, u64::from(FLOWS));
        assert_eq!(snapshot.undecodable, 0);
        let mut seen = HashSet::new();
        for flow in &snapshot.flows {
            // The value encodes the key's index: check each entry's pairing.
            let i = flow.last_seen_ns as u32;
            let std::net::IpAddr::V4(remote) = flow.remote.ip() else {
                panic!("{flow:?}")
            };
            assert_eq!(u32::from(remote), i, "{flow:?}");
            assert_eq!(
                (flow.sent, flow.received),
                (u64::from(i) * 3 * round, (u64::from(i) * 5 + 1) * round)
            );
            assert!(seen.insert(i), "entry {i} read twice");
        }
        assert_eq!(seen.len(), FLOWS as usize);
    }
    // Both kernel tables are empty again.
    let snapshot = collector.snapshot().unwrap();
    assert_eq!(snapshot.table_entries, 0);
    assert_eq!(snapshot.flows.len(), FLOWS as usize);
}
