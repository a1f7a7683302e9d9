//! The exporter's running totals per flow.
//!
//! The kernel hands over per-flow byte deltas whenever its table is drained;
//! they are added here, so a counter only ever grows while its series exists,
//! however often the kernel's entry is deleted and created again. A flow idle
//! for longer than --flows.idle-timeout is dropped and its series ends. At
//! most --flows.max flows are kept: the bytes of a new flow beyond that go to
//! the overflow flow until an idle one makes room.

use std::collections::HashMap;

use crate::bpf::FlowKey;
use crate::flows::{decode_key, value_from, Flow, Overflow, Role};

pub type KeyBytes = [u8; std::mem::size_of::<FlowKey>()];

/// A flow's running totals. The key stays in the kernel's packed form (40
/// bytes) and is decoded only when a scrape writes it out: 64 bytes of data
/// per flow, plus the hash table's own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub sent: u64,
    pub received: u64,
    /// CLOCK_MONOTONIC nanoseconds of the latest counted send or receive.
    pub last_seen_ns: u64,
}

/// foldhash: several times faster than std's SipHash on 40-byte keys, and
/// still seeded per process, so remote peers cannot aim collisions at it.
type Map = HashMap<KeyBytes, Totals, foldhash::fast::RandomState>;

#[derive(Debug)]
pub struct FlowTable {
    flows: Map,
    limit: usize,
    idle_timeout_ns: u64,
    /// Bytes of flows that found the table at its limit.
    pub overflow: Overflow,
    /// Flows dropped for idleness since start.
    pub expired: u64,
    /// Kernel entries with an unknown address family (a bug if not 0).
    pub undecodable: u64,
}

impl FlowTable {
    pub fn new(limit: usize, idle_timeout_ns: u64) -> FlowTable {
        FlowTable {
            flows: Map::default(),
            limit,
            idle_timeout_ns,
            overflow: Overflow::default(),
            expired: 0,
            undecodable: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Adds one drained kernel entry: a flow key and the bytes it counted
    /// since the previous drain.
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        let key: &KeyBytes = key.try_into().expect("key is sizeof(struct flow_key)");
        let delta = value_from(value);
        self.add_delta(key, delta.sent, delta.received, delta.last_seen_ns);
    }

    /// Adds bytes a flow moved, last at `seen_ns` (CLOCK_MONOTONIC).
    pub fn add_delta(&mut self, key: &KeyBytes, sent: u64, received: u64, seen_ns: u64) {
        if let Some(totals) = self.flows.get_mut(key) {
            totals.sent = totals.sent.wrapping_add(sent);
            totals.received = totals.received.wrapping_add(received);
            totals.last_seen_ns = totals.last_seen_ns.max(seen_ns);
        } else if decode_key(&unpack(key)).is_none() {
            self.undecodable += 1;
        } else if self.flows.len() < self.limit {
            self.flows.insert(
                *key,
                Totals {
                    sent,
                    received,
                    last_seen_ns: seen_ns,
                },
            );
        } else {
            self.overflow.add(sent, received);
        }
    }

    /// Drops every flow without traffic for longer than the idle timeout
    /// before `now_ns` (CLOCK_MONOTONIC).
    pub fn expire(&mut self, now_ns: u64) {
        let timeout = self.idle_timeout_ns;
        let before = self.flows.len();
        self.flows
            .retain(|_, totals| now_ns.saturating_sub(totals.last_seen_ns) <= timeout);
        self.expired += (before - self.flows.len()) as u64;
    }

    /// Every flow's key and totals, in the table's order.
    pub fn entries(&self) -> impl Iterator<Item = (FlowKey, &Totals)> {
        self.flows.iter().map(|(key, totals)| (unpack(key), totals))
    }

    /// Every flow, decoded: for the pages, which show few of them.
    pub fn flows(&self) -> Vec<Flow> {
        self.entries()
            .filter_map(|(key, t)| {
                let (local, remote) = decode_key(&key)?;
                Some(Flow {
                    local,
                    remote,
                    role: Role::from_raw(key.role),
                    sent: t.sent,
                    received: t.received,
                    last_seen_ns: t.last_seen_ns,
                })
            })
            .collect()
    }
}

fn unpack(bytes: &KeyBytes) -> FlowKey {
    let mut key = FlowKey::default();
    plain::copy_from_bytes(&mut key, bytes).expect("key is sizeof(struct flow_key)");
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::FlowBytes;

    fn entry(port: u16, sent: u64, received: u64, at: u64) -> (Vec<u8>, Vec<u8>) {
        let mut key = FlowKey {
            family: libc::AF_INET as u16,
            local_port: port,
            remote_port: 80,
            ..FlowKey::default()
        };
        key.local_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        key.remote_addr[..4].copy_from_slice(&[127, 0, 0, 2]);
        let value = FlowBytes {
            sent,
            received,
            last_seen_ns: at,
        };
        // SAFETY: Plain structs viewed as their bytes.
        unsafe {
            (
                plain::as_bytes(&key).to_vec(),
                plain::as_bytes(&value).to_vec(),
            )
        }
    }

    fn add(table: &mut FlowTable, port: u16, sent: u64, received: u64, at: u64) {
        let (k, v) = entry(port, sent, received, at);
        table.add(&k, &v);
    }

    fn totals(table: &FlowTable) -> Vec<(u16, u64, u64)> {
        let mut all: Vec<_> = table
            .flows()
            .iter()
            .map(|f| (f.local.port(), f.sent, f.received))
            .collect();
        all.sort();
        all
    }

    #[test]
    fn deltas_accumulate_per_flow() {
        let mut table = FlowTable::new(10, 1_000);
        add(&mut table, 1, 10, 0, 5);
        add(&mut table, 2, 0, 7, 5);
        add(&mut table, 1, 5, 3, 6);
        assert_eq!(totals(&table), vec![(1, 15, 3), (2, 0, 7)]);
    }

    #[test]
    fn flows_beyond_the_limit_go_to_overflow() {
        let mut table = FlowTable::new(1, 1_000);
        add(&mut table, 1, 10, 1, 5);
        add(&mut table, 2, 20, 2, 5);
        add(&mut table, 1, 1, 0, 6);
        assert_eq!(totals(&table), vec![(1, 11, 1)]);
        assert_eq!(
            table.overflow,
            Overflow {
                sent: 20,
                received: 2
            }
        );
    }

    #[test]
    fn idle_flows_expire_and_free_room() {
        let mut table = FlowTable::new(1, 100);
        add(&mut table, 1, 10, 0, 1_000);
        table.expire(1_100);
        assert_eq!(table.len(), 1, "idle for exactly the timeout: kept");
        table.expire(1_101);
        assert_eq!((table.len(), table.expired), (0, 1));
        add(&mut table, 2, 4, 0, 1_200);
        assert_eq!(totals(&table), vec![(2, 4, 0)]);
        assert_eq!(table.overflow, Overflow::default());
    }
}
