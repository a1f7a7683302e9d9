//! The exporter's running totals per flow.
//!
//! Sources hand over per-flow byte counts ([`FlowSink`]); they are added
//! here, so a counter only ever grows while its series exists, however
//! often the kernel's entry is deleted and created again. A flow idle for
//! longer than --flows.idle-timeout is dropped and its series ends. At most
//! --flows.max flows are kept: the bytes of a new flow beyond that go to the
//! overflow flow until an idle one makes room.
//!
//! Scrapes do not wait for a drain. Switching kernel tables waits for an RCU
//! grace period (7–23 ms on the benchmark VM, more on a busy node), so a
//! scrape reads the table the probes still write and adds each entry's
//! growth since it was last read ([`FlowSink::credit`]); each flow keeps
//! what it took. The drain, once the probes have moved to the other table,
//! adds only the rest ([`FlowSink::settle`]). An entry's bytes only grow
//! while its table is written, so every total only grows and each byte is
//! added exactly once.

use std::collections::HashMap;

use super::key::{decode_key, Flow, Role};
use crate::kernel::skel::{from_bytes, FlowBytes, FlowKey, FlowKeyBytes};
use crate::source::{FlowSink, Overflow};

/// A flow's running totals. The key stays in the kernel's packed form (40
/// bytes) and is decoded only when a scrape writes it out: 80 bytes of data
/// per flow, plus the hash table's own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub sent: u64,
    pub received: u64,
    /// CLOCK_MONOTONIC nanoseconds of the latest counted send or receive.
    pub last_seen_ns: u64,
    /// Bytes of the flow's kernel entry that scrapes credited, already in
    /// `sent` and `received`, until a drain settles that entry. It is in
    /// the table the probes write or, while a drain that failed partway is
    /// unfinished, in the one they left.
    taken: Taken,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Taken {
    sent: u64,
    received: u64,
}

impl Taken {
    fn of(counted: &FlowBytes) -> Taken {
        Taken {
            sent: counted.sent,
            received: counted.received,
        }
    }

    /// What `counted` holds beyond what was taken.
    fn rest_of(self, counted: &FlowBytes) -> (u64, u64) {
        (
            counted.sent.saturating_sub(self.sent),
            counted.received.saturating_sub(self.received),
        )
    }
}

/// foldhash: several times faster than std's SipHash on 40-byte keys, and
/// still seeded per process, so remote peers cannot aim collisions at it.
type Map<V> = HashMap<FlowKeyBytes, V, foldhash::fast::RandomState>;

#[derive(Debug)]
pub struct FlowTable {
    flows: Map<Totals>,
    /// New flows a scrape found the table full for: what it took from each
    /// into the overflow flow, until the drain settles them.
    overflowed: Map<Taken>,
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
            overflowed: Map::default(),
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

    /// Puts a flow the table does not have yet in it, or, at the limit, its
    /// bytes in the overflow flow; false if it overflowed.
    fn insert(&mut self, key: &FlowKeyBytes, totals: Totals) -> bool {
        if self.flows.len() < self.limit {
            self.flows.insert(*key, totals);
            return true;
        }
        self.overflow.add(totals.sent, totals.received);
        false
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
        self.flows
            .iter()
            .map(|(key, totals)| (from_bytes::<FlowKey>(key), totals))
    }

    /// Every flow, decoded: for the pages, which show few of them.
    pub fn flows(&self) -> Vec<Flow> {
        self.entries()
            .filter_map(|(key, t)| {
                let (local, remote) = decode_key(&key)?;
                Some(Flow {
                    local,
                    remote,
                    role: Role::from_kernel(key.role),
                    sent: t.sent,
                    received: t.received,
                    last_seen_ns: t.last_seen_ns,
                })
            })
            .collect()
    }
}

impl FlowSink for FlowTable {
    fn add(&mut self, key: &FlowKeyBytes, sent: u64, received: u64, seen_ns: u64) {
        if let Some(totals) = self.flows.get_mut(key) {
            totals.grow(sent, received, seen_ns);
        } else if !decodable(key) {
            self.undecodable += 1;
        } else {
            let totals = Totals {
                sent,
                received,
                last_seen_ns: seen_ns,
                taken: Taken::default(),
            };
            self.insert(key, totals);
        }
    }

    /// A new flow that finds the table full goes to the overflow flow, as
    /// in a drain, and stays there until the drain.
    fn credit(&mut self, key: &FlowKeyBytes, counted: &FlowBytes) {
        let taken = Taken::of(counted);
        if let Some(totals) = self.flows.get_mut(key) {
            let (sent, received) = totals.taken.rest_of(counted);
            totals.grow(sent, received, counted.last_seen_ns);
            totals.taken = taken;
        } else if let Some(before) = self.overflowed.get_mut(key) {
            let (sent, received) = before.rest_of(counted);
            self.overflow.add(sent, received);
            *before = taken;
        } else if !decodable(key) {
            // Left to the drain, which counts it once.
        } else {
            let totals = Totals {
                sent: counted.sent,
                received: counted.received,
                last_seen_ns: counted.last_seen_ns,
                taken,
            };
            if !self.insert(key, totals) {
                self.overflowed.insert(*key, taken);
            }
        }
    }

    fn settle(&mut self, key: &FlowKeyBytes, counted: &FlowBytes) {
        if let Some(totals) = self.flows.get_mut(key) {
            // The entry only grew after a scrape read it.
            let (sent, received) = totals.taken.rest_of(counted);
            totals.grow(sent, received, counted.last_seen_ns);
            totals.taken = Taken::default();
        } else if let Some(taken) = self.overflowed.remove(key) {
            let (sent, received) = taken.rest_of(counted);
            self.overflow.add(sent, received);
        } else {
            self.add(key, counted.sent, counted.received, counted.last_seen_ns);
        }
    }

    fn table_drained(&mut self) {
        // Every flow that overflowed at a scrape was in the drained table
        // and is settled; let go of their memory.
        self.overflowed = Map::default();
    }
}

impl Totals {
    fn grow(&mut self, sent: u64, received: u64, seen_ns: u64) {
        self.sent = self.sent.wrapping_add(sent);
        self.received = self.received.wrapping_add(received);
        self.last_seen_ns = self.last_seen_ns.max(seen_ns);
    }
}

fn decodable(key: &FlowKeyBytes) -> bool {
    decode_key(&from_bytes(key)).is_some()
}

#[cfg(test)]
mod tests;
