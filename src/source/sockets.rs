//! The socket backend's source: live connections from the walk, ended ones
//! from their final totals, and a ledger that lets only growth through.

use std::io;

use libbpf_rs::MapHandle;

use super::ledger::Ledger;
use super::walk::SocketWalker;
use super::{FlowSink, FlowSource, SourceHealth};
use crate::kernel::maps::{read_percpu, take_hash_map, PartialTake};
use crate::kernel::skel::{from_bytes, ConnectionTotals, SocketHealth};
use crate::kernel::{monotonic_now_ns, SocketMaps};

#[derive(Debug)]
pub struct SocketConnections {
    walker: SocketWalker,
    /// closed_sockets: final totals of destroyed connections.
    closed: MapHandle,
    health: MapHandle,
    /// The connections' last known totals.
    ledger: Ledger,
    /// Finals the last drain of closed_sockets held.
    last_closed: usize,
}

impl SocketConnections {
    pub fn new(maps: SocketMaps) -> SocketConnections {
        SocketConnections {
            walker: SocketWalker::new(maps.walk, maps.states),
            closed: maps.closed,
            health: maps.health,
            ledger: Ledger::default(),
            last_closed: 0,
        }
    }

    /// Adds what connections moved since last time, from a walk over the
    /// live ones (`walk`) and from those that ended. The walk goes first: a
    /// connection's final totals are written after it left the walk, so
    /// none is seen alive after its final.
    fn collect(&mut self, walk: bool, sink: &mut dyn FlowSink) -> io::Result<()> {
        let live = if walk {
            self.walker.walk()?
        } else {
            Vec::new()
        };
        // A take that fails partway already deleted the finals it got from
        // the kernel: they count now, and the rest at the next take.
        let (closed, complete) =
            PartialTake::split(take_hash_map(&self.closed, self.last_closed + 64));
        // Growth is stamped when the reading ended, never when it began:
        // bytes that moved during a slow walk must not look older than
        // they are, or a flow could expire before its idle timeout.
        let now = monotonic_now_ns();
        if walk {
            self.ledger.walked(&live, sink, now);
        }
        let finals = closed
            .iter()
            .map(|(_, value)| from_bytes::<ConnectionTotals>(value));
        self.ledger.finished(finals, sink, now);
        self.last_closed = closed.len();
        complete
    }
}

impl FlowSource for SocketConnections {
    fn read(&mut self, sink: &mut dyn FlowSink) -> io::Result<()> {
        self.collect(true, sink)
    }

    /// Empties closed_sockets between scrapes, so it holds at most a
    /// second's worth of ended connections.
    fn maintain(&mut self, sink: &mut dyn FlowSink) -> io::Result<()> {
        self.collect(false, sink)
    }

    fn health(&self) -> io::Result<SourceHealth> {
        let mut health = SourceHealth::default();
        let mut finals_dropped = 0u64;
        for cpu in read_percpu::<SocketHealth>(&self.health, 0)? {
            health.sockets_untracked += cpu.sockets_untracked;
            finals_dropped += cpu.finals_dropped;
            health.count_tracked(cpu.socket_inserts, cpu.socket_deletes);
        }
        // A connection forgotten without a final is one whose final the
        // kernel dropped; count each loss once, whichever saw it.
        health.connection_finals_lost = finals_dropped.max(self.ledger.forgotten);
        Ok(health)
    }
}
