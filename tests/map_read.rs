//! Root test: a scrape reads a big kernel flow table completely (libbpf-rs
//! 0.27's lookup_batch returned only 65,535 of 100,000 entries here), a
//! drain empties it completely and adds only what grew since that read, and
//! the totals keep growing across drains that delete every kernel entry.

mod common;

use std::collections::HashSet;

use libbpf_rs::{MapCore, MapFlags};
use tcp_flow_exporter::bpf::{FlowBytes, FlowKey};
use tcp_flow_exporter::collector::Collector;
use tcp_flow_exporter::flow_table::FlowTable;
use tcp_flow_exporter::flows::Flow;
use tcp_flow_exporter::probe::{Probe, ProbeConfig};

const FLOWS: u32 = 120_000;
/// Bytes each way a third of the entries grow by after a scrape read them.
const GROWTH: u64 = 7;

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

    // Two rounds of deltas for the same keys, each in its own kernel table.
    // A scrape reads the table being written and keeps it; the drain that
    // switches tables then adds only what grew after that read.
    for round in 1..=2u64 {
        plant(&collector, 0);
        let snapshot = collector.snapshot().unwrap();
        assert_eq!(snapshot.table_entries, u64::from(FLOWS));
        assert_eq!(snapshot.undecodable, 0);
        check(&snapshot.flows, round, GROWTH * (round - 1));
        // The probes keep writing after the scrape's read: a third of the
        // entries grow by GROWTH bytes each way before the drain.
        plant(&collector, GROWTH);
        collector.drain().unwrap();
        let snapshot = collector.snapshot().unwrap();
        check(&snapshot.flows, round, GROWTH * round);
    }
    // Both kernel tables are empty again.
    collector.drain().unwrap();
    let snapshot = collector.snapshot().unwrap();
    assert_eq!(snapshot.table_entries, 0);
    assert_eq!(snapshot.flows.len(), FLOWS as usize);
}

/// Writes one round's values into the table the probes write; with
/// `extra`, only a third of the keys, each grown by `extra` bytes each way.
fn plant(collector: &Collector, extra: u64) {
    for i in (0..FLOWS).filter(|i| extra == 0 || i % 3 == 0) {
        let value = FlowBytes {
            sent: u64::from(i) * 3 + extra,
            received: u64::from(i) * 5 + 1 + extra,
            last_seen_ns: u64::from(i),
        };
        let key = key(i);
        // SAFETY: Plain structs viewed as their bytes.
        let (k, v) = unsafe { (plain::as_bytes(&key), plain::as_bytes(&value)) };
        let flags = if extra == 0 {
            MapFlags::NO_EXIST
        } else {
            MapFlags::EXIST
        };
        collector.writing_table().update(k, v, flags).unwrap();
    }
}

/// Every key's totals after `round` rounds, every third key also grown by
/// `grown` in all; each entry read exactly once.
fn check(flows: &[Flow], round: u64, grown: u64) {
    assert_eq!(flows.len(), FLOWS as usize);
    let mut seen = HashSet::new();
    for flow in flows {
        // The value encodes the key's index: check each entry's pairing.
        let i = flow.last_seen_ns as u32;
        let std::net::IpAddr::V4(remote) = flow.remote.ip() else {
            panic!("{flow:?}")
        };
        assert_eq!(u32::from(remote), i, "{flow:?}");
        let grown = if i % 3 == 0 { grown } else { 0 };
        assert_eq!(
            (flow.sent, flow.received),
            (
                u64::from(i) * 3 * round + grown,
                (u64::from(i) * 5 + 1) * round + grown
            ),
            "{flow:?}"
        );
        assert!(seen.insert(i), "entry {i} read twice");
    }
}
