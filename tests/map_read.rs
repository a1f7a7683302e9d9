//! Root test: a scrape reads a big kernel flow table completely (libbpf-rs
//! 0.27's lookup_batch returned only 65,535 of 100,000 entries here), a
//! drain empties it completely and adds only what grew since that read, and
//! the totals keep growing across drains that delete every kernel entry.

mod support;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};

use libbpf_rs::{MapCore, MapFlags};
use tcp_flow_exporter::flows::key::{encode_key, Role};
use tcp_flow_exporter::flows::{Flow, FlowTable};
use tcp_flow_exporter::kernel::skel::{as_bytes, FlowBytes, FlowKey};
use tcp_flow_exporter::kernel::{BackendMaps, Probe, ProbeConfig};
use tcp_flow_exporter::source::tables::PerEventTables;
use tcp_flow_exporter::source::FlowSource;

const FLOWS: u32 = 120_000;
/// Bytes each way a third of the entries grow by after a scrape read them.
const GROWTH: u64 = 7;

fn key(i: u32) -> FlowKey {
    let local = Ipv4Addr::new(10, 0, (i / 60_000) as u8, 1);
    encode_key(
        SocketAddr::new(local.into(), (i % 60_000) as u16 + 1),
        SocketAddr::new(Ipv4Addr::from(i).into(), 443),
        Role::Unknown,
    )
}

/// What a scrape reads: entries in the kernel table, undecodable entries,
/// and every flow.
fn scrape(tables: &mut PerEventTables, table: &mut FlowTable) -> (u64, u64, Vec<Flow>) {
    tables.read(table).unwrap();
    let health = tables.health().unwrap();
    (health.table_entries, table.undecodable, table.flows())
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_scrape_reads_every_entry_of_a_120k_flow_map() {
    support::require_root();
    let config = ProbeConfig {
        flows_max: FLOWS + 1000,
        ..ProbeConfig::default()
    };
    let probe = Probe::maps_only(&config).expect("create the maps");
    let BackendMaps::PerEvent(maps) = probe.maps().unwrap() else {
        panic!("maps_only creates the per-event maps");
    };
    let mut tables = PerEventTables::new(maps).unwrap();
    let mut table = FlowTable::new(config.flows_max as usize, u64::MAX);

    // Two rounds of deltas for the same keys, each in its own kernel table.
    // A scrape reads the table being written and keeps it; the drain that
    // switches tables then adds only what grew after that read.
    for round in 1..=2u64 {
        plant(&tables, 0);
        let (entries, undecodable, flows) = scrape(&mut tables, &mut table);
        assert_eq!(entries, u64::from(FLOWS));
        assert_eq!(undecodable, 0);
        check(&flows, round, GROWTH * (round - 1));
        // The probes keep writing after the scrape's read: a third of the
        // entries grow by GROWTH bytes each way before the drain.
        plant(&tables, GROWTH);
        tables.maintain(&mut table).unwrap();
        let (_, _, flows) = scrape(&mut tables, &mut table);
        check(&flows, round, GROWTH * round);
    }
    // Both kernel tables are empty again.
    tables.maintain(&mut table).unwrap();
    let (entries, _, flows) = scrape(&mut tables, &mut table);
    assert_eq!(entries, 0);
    assert_eq!(flows.len(), FLOWS as usize);
}

/// Writes one round's values into the table the probes write; with
/// `extra`, only a third of the keys, each grown by `extra` bytes each way.
fn plant(tables: &PerEventTables, extra: u64) {
    for i in (0..FLOWS).filter(|i| extra == 0 || i.is_multiple_of(3)) {
        let value = FlowBytes {
            sent: u64::from(i) * 3 + extra,
            received: u64::from(i) * 5 + 1 + extra,
            last_seen_ns: u64::from(i),
        };
        let key = key(i);
        let (k, v) = (as_bytes(&key), as_bytes(&value));
        let flags = if extra == 0 {
            MapFlags::NO_EXIST
        } else {
            MapFlags::EXIST
        };
        tables.writing_table().update(k, v, flags).unwrap();
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
        let grown = if i.is_multiple_of(3) { grown } else { 0 };
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
