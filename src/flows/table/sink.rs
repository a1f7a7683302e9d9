//! How sources hand bytes to the table ([`FlowSink`]): the common case,
//! a known key whose identity was checked, in one hash lookup; everything
//! else through [`FlowTable::target`].

use super::{FlowTable, Map, Taken, Target};
use crate::kernel::skel::{FlowBytes, FlowKeyBytes};
use crate::source::FlowSink;

impl FlowSink for FlowTable {
    fn add(&mut self, key: &FlowKeyBytes, sent: u64, received: u64, seen_ns: u64) {
        // The common case in one hash lookup: a known key, identity checked.
        if let Some(bound) = self.keys.get_mut(key) {
            if bound.checked == self.generation {
                bound.last_seen_ns = bound.last_seen_ns.max(seen_ns);
                let series = self.series.get_mut(bound.series);
                series.grow(sent, received, seen_ns);
                if self.prices.is_some() {
                    series.cost += self.classes.rate(bound.class).cost(sent, received);
                }
                return;
            }
        }
        match self.target(key) {
            Target::Series(series) => self.grow(key, series, sent, received, seen_ns),
            Target::Overflow(class) => self.overflow(class, sent, received),
            Target::Undecodable => self.undecodable += 1,
        }
    }

    /// A new flow that finds the table full goes to the overflow flow, as
    /// in a drain, and stays there until the drain.
    fn credit(&mut self, key: &FlowKeyBytes, counted: &FlowBytes) {
        let taken = Taken::of(counted);
        let seen = counted.last_seen_ns;
        if let Some(bound) = self.keys.get_mut(key) {
            if bound.checked == self.generation {
                let (sent, received) = bound.taken.rest_of(counted);
                bound.taken = taken;
                bound.last_seen_ns = bound.last_seen_ns.max(seen);
                let series = self.series.get_mut(bound.series);
                series.grow(sent, received, seen);
                if self.prices.is_some() {
                    series.cost += self.classes.rate(bound.class).cost(sent, received);
                }
                return;
            }
        }
        if let Some((before, class)) = self.overflowed.get(key).copied() {
            let (sent, received) = before.rest_of(counted);
            self.overflow(class, sent, received);
            self.overflowed.insert(*key, (taken, class));
            return;
        }
        let before = self.keys.get(key).map_or(Taken::default(), |b| b.taken);
        let (sent, received) = before.rest_of(counted);
        match self.target(key) {
            Target::Series(series) => {
                self.grow(key, series, sent, received, seen);
                self.keys.get_mut(key).expect("bound").taken = taken;
            }
            Target::Overflow(class) => {
                self.overflow(class, sent, received);
                self.overflowed.insert(*key, (taken, class));
            }
            // Left to the drain, which counts it once.
            Target::Undecodable => {}
        }
    }

    fn settle(&mut self, key: &FlowKeyBytes, counted: &FlowBytes) {
        if let Some((taken, class)) = self.overflowed.remove(key) {
            let (sent, received) = taken.rest_of(counted);
            self.overflow(class, sent, received);
            return;
        }
        // The entry only grew after a scrape read it.
        let before = self.keys.get(key).map_or(Taken::default(), |b| b.taken);
        let (sent, received) = before.rest_of(counted);
        self.add(key, sent, received, counted.last_seen_ns);
        match self.keys.get_mut(key) {
            Some(bound) => bound.taken = Taken::default(),
            // Moved to the overflow flow just now, for want of room for its
            // new identity: that entry is settled too.
            None => _ = self.overflowed.remove(key),
        }
    }

    fn table_drained(&mut self) {
        // Every flow that overflowed at a scrape was in the drained table
        // and is settled; let go of their memory.
        self.overflowed = Map::default();
    }
}
