//! Sources of bytes: one per backend family, each turning what its kernel
//! object counted into per-flow deltas for the running totals.
//!
//! - [`tables::PerEventTables`]: the tracepoint, fentry and kprobe backends
//!   count per send and receive into kernel flow tables, which are read
//!   (credited) at scrapes and switched and drained between them.
//! - [`sockets::SocketConnections`]: the socket backend keeps per-connection
//!   positions in the kernel; a walk ([`walk::SocketWalker`]) reports what
//!   the live connections moved, and closed ones leave what no walk
//!   reported.
//!
//! A source knows nothing of the running totals beyond [`FlowSink`], which
//! the flow table (src/flows/table.rs) implements.

pub mod sockets;
pub mod tables;
pub mod walk;

use std::io;

use crate::kernel::skel::{FlowBytes, FlowKeyBytes};
use crate::kernel::BackendMaps;

/// Where a source puts what it read.
pub trait FlowSink {
    /// Bytes a flow moved since its source last reported it, the latest at
    /// `seen_ns` (CLOCK_MONOTONIC).
    fn add(&mut self, key: &FlowKeyBytes, sent: u64, received: u64, seen_ns: u64);
    /// What an entry of a kernel table the probes still write holds now:
    /// only its growth since the last credit counts.
    fn credit(&mut self, key: &FlowKeyBytes, counted: &FlowBytes);
    /// An entry of a kernel table the probes no longer write: what it holds
    /// beyond what credits already took counts.
    fn settle(&mut self, key: &FlowKeyBytes, counted: &FlowBytes);
    /// A table the probes no longer write was drained whole, perhaps over
    /// several tries: every entry credits took from is settled.
    fn table_drained(&mut self);
}

/// A backend family's way of reading its kernel object.
pub trait FlowSource: Send + std::fmt::Debug {
    /// Puts everything counted so far into `sink`, for a scrape: fast, and
    /// without waiting for the kernel.
    fn read(&mut self, sink: &mut dyn FlowSink) -> io::Result<()>;
    /// Between scrapes (once a second): the slower work that keeps the
    /// kernel's maps from filling up.
    fn maintain(&mut self, sink: &mut dyn FlowSink) -> io::Result<()>;
    /// The kernel object's counters about itself.
    fn health(&self) -> io::Result<SourceHealth>;
}

/// Opens the source of the loaded backend family.
pub fn open(maps: BackendMaps) -> io::Result<Box<dyn FlowSource>> {
    Ok(match maps {
        BackendMaps::PerEvent(maps) => Box::new(tables::PerEventTables::new(maps)?),
        BackendMaps::Socket(maps) => Box::new(sockets::SocketConnections::new(maps)?),
    })
}

/// Bytes that could not be given a flow of their own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overflow {
    pub sent: u64,
    pub received: u64,
}

impl Overflow {
    pub fn add(&mut self, sent: u64, received: u64) {
        self.sent = self.sent.wrapping_add(sent);
        self.received = self.received.wrapping_add(received);
    }
}

/// What a source's kernel object says about itself; counters only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceHealth {
    /// Bytes that found the kernel's flow table full, summed over CPUs.
    pub flow_table_full: Overflow,
    /// Entries the kernel flow table held when last drained or read.
    pub table_entries: u64,
    /// Sockets the kernel keeps track of now.
    pub sockets_tracked: u64,
    /// Connections the kernel's socket map had no room for.
    pub sockets_untracked: u64,
    /// Socket calls the kprobe backend saw only half of: their bytes are
    /// not counted.
    pub missed_calls: u64,
    /// Socket backend: connections whose final totals were lost; what they
    /// moved since the scrape before their end is not counted.
    pub connection_finals_lost: u64,
    /// Socket backend: what its walks cost.
    pub walks: Option<sockets::WalkTotals>,
}

impl SourceHealth {
    /// Counts one CPU's inserts into and deletes from a socket map into
    /// `sockets_tracked`. A socket may be inserted on one CPU and deleted
    /// on another: only the sum over all CPUs is meaningful, which wrapping
    /// arithmetic reaches whatever the order.
    fn count_tracked(&mut self, inserts: u64, deletes: u64) {
        self.sockets_tracked = self
            .sockets_tracked
            .wrapping_add(inserts)
            .wrapping_sub(deletes);
    }
}
