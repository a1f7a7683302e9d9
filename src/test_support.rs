//! Fixtures for the unit tests: kernel keys and entries, and flow tables
//! built from them. The one place tests make kernel data by hand.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::flows::key::encode_key;
pub use crate::flows::key::Role;
use crate::flows::FlowTable;
use crate::kernel::skel::{
    as_bytes, from_bytes, key_bytes, ConnectionTotals, FlowBytes, FlowKey, FlowKeyBytes,
};
use crate::source::FlowSink;

/// The kernel's key of a flow, from `"ip:port"` texts.
pub fn key(local: &str, remote: &str, role: Role) -> FlowKey {
    let addr = |text: &str| text.parse::<SocketAddr>().expect("ip:port");
    encode_key(addr(local), addr(remote), role)
}

/// The key of flow number `port`: 127.0.0.1:`port` to 127.0.0.2:80.
pub fn key_with_port(port: u16) -> FlowKeyBytes {
    key_bytes(&key(
        &format!("127.0.0.1:{port}"),
        "127.0.0.2:80",
        Role::Unknown,
    ))
}

/// A kernel flow table's value.
pub fn counted(sent: u64, received: u64, last_seen_ns: u64) -> FlowBytes {
    FlowBytes {
        sent,
        received,
        last_seen_ns,
    }
}

/// A table of the given flows and their (sent, received) bytes, each as one
/// drained kernel entry.
pub fn table_of(flows: &[(FlowKey, u64, u64)]) -> FlowTable {
    let mut table = FlowTable::new(100, u64::MAX);
    for (key, sent, received) in flows {
        table.settle(&key_bytes(key), &counted(*sent, *received, 1));
    }
    table
}

/// Every flow of `table` as (local port, sent, received), sorted.
pub fn totals_by_port(table: &FlowTable) -> Vec<(u16, u64, u64)> {
    let mut all: Vec<_> = table
        .flows()
        .iter()
        .map(|f| (f.local.port(), f.sent, f.received))
        .collect();
    all.sort();
    all
}

/// A socket-backend connection's totals, as the walk or its final reports
/// them.
pub fn connection(
    socket: u64,
    id: u64,
    key: &FlowKey,
    sent: u64,
    received: u64,
) -> ConnectionTotals {
    ConnectionTotals {
        socket,
        id,
        key: from_bytes(as_bytes(key)),
        sent,
        received,
    }
}

/// A sink that only sums what sources add per flow, for testing a source
/// without the flow table's limits and expiry.
#[derive(Debug, Default)]
pub struct Recorder {
    pub added: BTreeMap<FlowKeyBytes, (u64, u64)>,
}

impl Recorder {
    /// Every flow's (sent, received) so far, in key order.
    pub fn totals(&self) -> Vec<(u64, u64)> {
        self.added.values().copied().collect()
    }
}

impl FlowSink for Recorder {
    fn add(&mut self, key: &FlowKeyBytes, sent: u64, received: u64, _seen_ns: u64) {
        let totals = self.added.entry(*key).or_default();
        totals.0 += sent;
        totals.1 += received;
    }

    fn credit(&mut self, _: &FlowKeyBytes, _: &FlowBytes) {
        unimplemented!("per-event tables are tested against the flow table")
    }

    fn settle(&mut self, _: &FlowKeyBytes, _: &FlowBytes) {
        unimplemented!("per-event tables are tested against the flow table")
    }

    fn table_drained(&mut self, _: bool) {}
}
