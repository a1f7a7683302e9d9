//! The exporter's running totals per flow.
//!
//! The kernel hands over per-flow byte deltas whenever its table is drained;
//! they are added here, so a counter only ever grows while its series exists,
//! however often the kernel's entry is deleted and created again. A flow idle
//! for longer than --flows.idle-timeout is dropped and its series ends. At
//! most --flows.max flows are kept: the bytes of a new flow beyond that go to
//! the overflow flow until an idle one makes room.
//!
//! Scrapes do not wait for a drain. Switching kernel tables waits for an RCU
//! grace period (7–23 ms on the benchmark VM, more on a busy node), so a
//! scrape reads the table the probes still write and adds each entry's
//! growth since it was last read ([`FlowTable::credit`]); each flow keeps
//! what it took. The drain, once the probes have moved to the other table,
//! adds only the rest ([`FlowTable::add`]). An entry's bytes only grow while
//! its table is written, so every total only grows and each byte is added
//! exactly once.

use std::collections::HashMap;

use crate::bpf::FlowKey;
use crate::flows::{decode_key, value_from, Flow, Overflow, Role};

pub type KeyBytes = [u8; std::mem::size_of::<FlowKey>()];

/// A flow's running totals. The key stays in the kernel's packed form (40
/// bytes) and is decoded only when a scrape writes it out: 80 bytes of data
/// per flow, plus the hash table's own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub sent: u64,
    pub received: u64,
    /// CLOCK_MONOTONIC nanoseconds of the latest counted send or receive.
    pub last_seen_ns: u64,
    /// Bytes of the kernel entry the probes still write that are already in
    /// `sent` and `received`: what scrapes took before the drain.
    taken: Taken,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Taken {
    sent: u64,
    received: u64,
}

/// foldhash: several times faster than std's SipHash on 40-byte keys, and
/// still seeded per process, so remote peers cannot aim collisions at it.
type Map = HashMap<KeyBytes, Totals, foldhash::fast::RandomState>;

#[derive(Debug)]
pub struct FlowTable {
    flows: Map,
    /// New flows a scrape found the table full for: what it took from each
    /// into the overflow flow, until the drain settles them.
    overflowed: HashMap<KeyBytes, Taken, foldhash::fast::RandomState>,
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
            overflowed: HashMap::default(),
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
    /// since the previous drain, less what scrapes already took from it.
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        let key: &KeyBytes = key.try_into().expect("key is sizeof(struct flow_key)");
        let all = value_from(value);
        if let Some(totals) = self.flows.get_mut(key) {
            // The entry only grew after a scrape read it.
            totals.grow(
                all.sent.saturating_sub(totals.taken.sent),
                all.received.saturating_sub(totals.taken.received),
                all.last_seen_ns,
            );
            totals.taken = Taken::default();
        } else if let Some(taken) = self.overflowed.remove(key) {
            self.overflow.add(
                all.sent.saturating_sub(taken.sent),
                all.received.saturating_sub(taken.received),
            );
        } else {
            self.add_delta(key, all.sent, all.received, all.last_seen_ns);
        }
    }

    /// Adds what an entry of the kernel table the probes still write grew by
    /// since a scrape last read it, and remembers what it holds now. A new
    /// flow that finds the table full goes to the overflow flow, as in a
    /// drain, and stays there until the drain.
    pub fn credit(&mut self, key: &[u8], value: &[u8]) {
        let key: &KeyBytes = key.try_into().expect("key is sizeof(struct flow_key)");
        let now = value_from(value);
        let taken = Taken {
            sent: now.sent,
            received: now.received,
        };
        if let Some(totals) = self.flows.get_mut(key) {
            totals.grow(
                now.sent.saturating_sub(totals.taken.sent),
                now.received.saturating_sub(totals.taken.received),
                now.last_seen_ns,
            );
            totals.taken = taken;
        } else if let Some(before) = self.overflowed.get_mut(key) {
            self.overflow.add(
                now.sent.saturating_sub(before.sent),
                now.received.saturating_sub(before.received),
            );
            *before = taken;
        } else if decode_key(&unpack(key)).is_none() {
            // Left to the drain, which counts it once.
        } else if self.flows.len() < self.limit {
            self.flows.insert(
                *key,
                Totals {
                    sent: now.sent,
                    received: now.received,
                    last_seen_ns: now.last_seen_ns,
                    taken,
                },
            );
        } else {
            self.overflow.add(now.sent, now.received);
            self.overflowed.insert(*key, taken);
        }
    }

    /// Forgets what scrapes took from a kernel table that could not be
    /// drained in full: the next table starts from nothing.
    pub fn forget_taken(&mut self) {
        for totals in self.flows.values_mut() {
            totals.taken = Taken::default();
        }
        self.drained();
    }

    /// After a drain: every flow that overflowed at a scrape was in the
    /// drained table and is settled; let go of their memory.
    pub fn drained(&mut self) {
        self.overflowed = HashMap::default();
    }

    /// Adds bytes a flow moved, last at `seen_ns` (CLOCK_MONOTONIC).
    pub fn add_delta(&mut self, key: &KeyBytes, sent: u64, received: u64, seen_ns: u64) {
        if let Some(totals) = self.flows.get_mut(key) {
            totals.grow(sent, received, seen_ns);
        } else if decode_key(&unpack(key)).is_none() {
            self.undecodable += 1;
        } else if self.flows.len() < self.limit {
            self.flows.insert(
                *key,
                Totals {
                    sent,
                    received,
                    last_seen_ns: seen_ns,
                    taken: Taken::default(),
                },
            );
        } else {
            self.overflow.add(sent, received);
        }
    }

    /// Drops every flow without traffic for longer than the idle timeout
    /// before `now_ns` (CLOCK_MONOTONIC). A flow a scrape took bytes from
    /// stays until the drain settles it, whatever the timeout: dropped
    /// earlier, the drain would count those bytes again in a new series.
    pub fn expire(&mut self, now_ns: u64) {
        let timeout = self.idle_timeout_ns;
        let before = self.flows.len();
        self.flows.retain(|_, totals| {
            now_ns.saturating_sub(totals.last_seen_ns) <= timeout
                || totals.taken != Taken::default()
        });
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

impl Totals {
    fn grow(&mut self, sent: u64, received: u64, seen_ns: u64) {
        self.sent = self.sent.wrapping_add(sent);
        self.received = self.received.wrapping_add(received);
        self.last_seen_ns = self.last_seen_ns.max(seen_ns);
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

    /// A scrape's read of the kernel table the probes write.
    fn credit(table: &mut FlowTable, port: u16, sent: u64, received: u64, at: u64) {
        let (k, v) = entry(port, sent, received, at);
        table.credit(&k, &v);
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

    #[test]
    fn each_byte_is_added_once_across_scrape_reads_and_the_drain() {
        let mut table = FlowTable::new(10, u64::MAX);
        credit(&mut table, 1, 10, 0, 5);
        assert_eq!(totals(&table), vec![(1, 10, 0)]);
        // Read again: only the growth counts, and a new entry in full.
        credit(&mut table, 1, 15, 2, 6);
        credit(&mut table, 2, 7, 0, 6);
        assert_eq!(totals(&table), vec![(1, 15, 2), (2, 7, 0)]);
        // The drain holds what the probes wrote after the last read, too.
        add(&mut table, 1, 20, 2, 7);
        add(&mut table, 2, 7, 1, 7);
        add(&mut table, 3, 4, 4, 7);
        assert_eq!(totals(&table), vec![(1, 20, 2), (2, 7, 1), (3, 4, 4)]);
        // The next kernel table starts from nothing.
        credit(&mut table, 1, 5, 0, 8);
        add(&mut table, 1, 6, 0, 9);
        add(&mut table, 2, 1, 0, 9);
        assert_eq!(totals(&table), vec![(1, 26, 2), (2, 8, 1), (3, 4, 4)]);
    }

    #[test]
    fn a_new_flow_beyond_the_limit_overflows_once() {
        let mut table = FlowTable::new(1, u64::MAX);
        credit(&mut table, 1, 1, 0, 5);
        credit(&mut table, 2, 10, 0, 5);
        assert_eq!(
            table.overflow,
            Overflow {
                sent: 10,
                received: 0
            }
        );
        credit(&mut table, 2, 12, 0, 5);
        assert_eq!(
            table.overflow,
            Overflow {
                sent: 12,
                received: 0
            }
        );
        add(&mut table, 1, 1, 0, 6);
        add(&mut table, 2, 25, 3, 6);
        assert_eq!(totals(&table), vec![(1, 1, 0)]);
        assert_eq!(
            table.overflow,
            Overflow {
                sent: 25,
                received: 3
            }
        );
    }

    #[test]
    fn a_flow_a_scrape_took_from_stays_until_the_drain() {
        let mut table = FlowTable::new(10, 100);
        credit(&mut table, 1, 10, 0, 1_000);
        table.expire(5_000);
        assert_eq!(table.len(), 1, "idle, but its bytes are not settled");
        add(&mut table, 1, 12, 0, 1_000);
        assert_eq!(totals(&table), vec![(1, 12, 0)]);
        table.expire(5_000);
        assert_eq!((table.len(), table.expired), (0, 1));
    }

    #[test]
    fn a_table_that_was_not_drained_in_full_is_forgotten() {
        let mut table = FlowTable::new(10, u64::MAX);
        credit(&mut table, 1, 10, 0, 5);
        table.forget_taken();
        // The next table's entry starts from nothing.
        add(&mut table, 1, 3, 0, 6);
        assert_eq!(totals(&table), vec![(1, 13, 0)]);
    }
}
