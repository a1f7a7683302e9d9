//! The socket backend's source: what live connections moved, from the walk,
//! and what ended ones moved after it last saw them, from closed_sockets.
//! The kernel keeps what it reported per connection (bpf/socket_walk.bpf.h),
//! so every byte arrives here once and nothing is kept per connection.

use std::io;

use libbpf_rs::MapHandle;

use super::walk::{SocketWalker, WalkStats};
use super::{FlowSink, FlowSource, SourceHealth};
use crate::kernel::maps::{read_percpu, take_hash_map, PartialTake};
use crate::kernel::skel::{from_bytes, key_bytes, ConnectionTotals, SocketHealth};
use crate::kernel::{monotonic_now_ns, SocketMaps};

#[derive(Debug)]
pub struct SocketConnections {
    walker: SocketWalker,
    /// closed_sockets: what destroyed connections moved after their last
    /// walk.
    closed: MapHandle,
    health: MapHandle,
    /// Finals the last drain of closed_sockets held.
    last_closed: usize,
    /// Every walk so far, summed.
    walks: WalkTotals,
}

impl SocketConnections {
    pub fn new(maps: SocketMaps) -> io::Result<SocketConnections> {
        Ok(SocketConnections {
            walker: SocketWalker::new(maps.walk, maps.shards, maps.walk_out)?,
            closed: maps.closed,
            health: maps.health,
            last_closed: 0,
            walks: WalkTotals::default(),
        })
    }

    /// Adds what connections moved since last time: from a walk over the
    /// live ones (`walk`) and from those that ended.
    fn collect(&mut self, walk: bool, sink: &mut dyn FlowSink) -> io::Result<()> {
        if walk {
            self.walker.walk(sink)?;
            self.walks.add(&self.walker.last);
        }
        // A take that fails partway already deleted the finals it got from
        // the kernel: they count now, and the rest at the next take.
        let (closed, complete) =
            PartialTake::split(take_hash_map(&self.closed, self.last_closed + 64));
        let now = monotonic_now_ns();
        for (_, value) in closed.iter() {
            let rest: ConnectionTotals = from_bytes(value);
            if rest.sent | rest.received != 0 {
                sink.add(&key_bytes(&rest.key), rest.sent, rest.received, now);
            }
        }
        self.last_closed = closed.len();
        complete
    }
}

/// What the walks cost so far, and how the last one went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalkTotals {
    pub walks: u64,
    pub runs: u64,
    pub kernel_ns: u64,
    pub last: WalkStats,
}

impl WalkTotals {
    fn add(&mut self, walk: &WalkStats) {
        self.walks += 1;
        self.runs += u64::from(walk.runs);
        self.kernel_ns += walk.kernel_time.as_nanos() as u64;
        self.last = *walk;
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
        for cpu in read_percpu::<SocketHealth>(&self.health, 0)? {
            health.sockets_untracked += cpu.sockets_untracked;
            health.connection_finals_lost += cpu.finals_dropped;
            health.count_tracked(cpu.socket_inserts, cpu.socket_deletes);
        }
        health.walks = Some(self.walks);
        Ok(health)
    }
}
