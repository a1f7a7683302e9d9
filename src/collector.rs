//! Moves the kernel's per-flow byte deltas into the exporter's totals.
//!
//! The probes write into one of two kernel tables, chosen by the one slot of
//! `active_flows`. A drain points that slot at the other table; the kernel
//! returns from that update only after every BPF program that could still
//! hold the old table has finished (synchronize_rcu() in
//! maybe_wait_bpf_programs(), on every kernel from 5.10 to 6.18). The old
//! table is then read and emptied with nothing writing to it, so no byte is
//! lost or counted twice, and the kernel never deletes an entry a probe is
//! adding to.
//!
//! Drains run once a second, off the scrape path. A scrape reads the table
//! the probes write without switching it, and the drain that follows adds
//! only the rest ([`FlowTable::credit`]).

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Instant;

use libbpf_rs::{MapCore, MapFlags, MapHandle};

use crate::bpf::{ConnectionTotals, ProbeHealth};
use crate::connections::Ledger;
use crate::flow_table::FlowTable;
use crate::flows::{monotonic_now_ns, value_from, Overflow, Snapshot};
use crate::map_reader::{read_hash_map, read_percpu_slot, take_hash_map};
use crate::socket_walk::SocketWalker;

/// The maps the exporter reads.
#[derive(Debug)]
pub struct FlowMaps {
    /// ARRAY_OF_MAPS with one slot: the table the probes write.
    pub active: MapHandle,
    /// The two flow tables, `flows_even` and `flows_odd`.
    pub tables: [MapHandle; 2],
    pub overflow: MapHandle,
    pub health: MapHandle,
    /// The socket backend's maps, when that is the backend.
    pub sockets: Option<SocketMaps>,
}

/// The socket backend reports connections, not flow deltas.
#[derive(Debug)]
pub struct SocketMaps {
    /// Totals of every live connection, per walk.
    pub walker: SocketWalker,
    /// Final totals of destroyed connections.
    pub closed: MapHandle,
}

/// Kernel counters that only grow, summed over CPUs.
#[derive(Clone, Copy, Debug, Default)]
struct Health {
    overflow: Overflow,
    missed_calls: u64,
    sockets_untracked: u64,
    finals_dropped: u64,
    sockets_tracked: u64,
}

#[derive(Debug)]
pub struct Collector {
    maps: FlowMaps,
    /// Index into `maps.tables` of the table the probes write.
    writing: usize,
    table: FlowTable,
    /// Entries the last drained or read kernel table held.
    last_drained: u64,
    /// Socket backend: the connections' last known totals.
    ledger: Ledger,
    /// Socket backend: finals the last drain of closed_sockets held.
    last_closed: u64,
}

impl Collector {
    pub fn new(maps: FlowMaps, table: FlowTable) -> io::Result<Collector> {
        let mut collector = Collector {
            maps,
            writing: 1,
            table,
            last_drained: 0,
            ledger: Ledger::default(),
            last_closed: 0,
        };
        // The object starts with flows_even in the slot; say so explicitly,
        // so `writing` is right whatever the object's initial value.
        collector.point_probes_at(0)?;
        Ok(collector)
    }

    fn point_probes_at(&mut self, index: usize) -> io::Result<()> {
        let fd = self.maps.tables[index].as_fd().as_raw_fd() as u32;
        self.maps
            .active
            .update(&0u32.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
            .map_err(io::Error::other)?;
        self.writing = index;
        Ok(())
    }

    /// Switches the probes to the other table, then moves everything the
    /// previous one counted into the totals.
    pub fn drain(&mut self) -> io::Result<()> {
        if self.maps.sockets.is_some() {
            // The socket backend never writes the flow tables: no switch, no
            // grace period to wait for.
            return Ok(());
        }
        let drained = self.writing;
        self.point_probes_at(1 - drained)?;
        let entries = take_hash_map(&self.maps.tables[drained], self.last_drained as usize + 64)
            .inspect_err(|_| self.table.forget_taken())?;
        for (key, value) in entries.iter() {
            self.table.add(key, value);
        }
        self.table.drained();
        self.last_drained = entries.len() as u64;
        Ok(())
    }

    /// Adds what the table the probes write counted so far, without the
    /// switch and its grace period: for scrapes (see [`FlowTable::credit`]).
    fn read_written(&mut self) -> io::Result<()> {
        if self.maps.sockets.is_some() {
            return Ok(());
        }
        let written = &self.maps.tables[self.writing];
        let entries = read_hash_map(written, self.last_drained as usize + 64)?;
        for (key, value) in entries.iter() {
            self.table.credit(key, value);
        }
        self.last_drained = self.last_drained.max(entries.len() as u64);
        Ok(())
    }

    /// Drains, drops idle flows, and reads everything a scrape reports but
    /// the flows themselves, which stay in [`Collector::table`].
    pub fn refresh(&mut self) -> io::Result<Snapshot> {
        let started = Instant::now();
        self.collect_connections(true)?;
        self.read_written()?;
        let now = monotonic_now_ns();
        self.table.expire(now);
        let health = self.read_health()?;
        Ok(Snapshot {
            flow_count: self.table.len() as u64,
            overflow_kernel: health.overflow,
            overflow_series: self.table.overflow,
            flows_expired: self.table.expired,
            table_entries: self.last_drained,
            sockets_tracked: health.sockets_tracked,
            sockets_untracked: health.sockets_untracked,
            missed_calls: health.missed_calls,
            // A connection forgotten without a final is one whose final the
            // kernel dropped; count each loss once, whichever saw it.
            connection_finals_lost: health.finals_dropped.max(self.ledger.forgotten),
            undecodable: self.table.undecodable,
            read_duration: started.elapsed(),
            taken_at_ns: now,
            ..Snapshot::default()
        })
    }

    /// [`Collector::refresh`], with a copy of every flow: for the pages.
    pub fn snapshot(&mut self) -> io::Result<Snapshot> {
        let mut snapshot = self.refresh()?;
        snapshot.flows = self.table.flows();
        Ok(snapshot)
    }

    /// The running totals, as of the last drain.
    pub fn table(&self) -> &FlowTable {
        &self.table
    }

    /// Drains and drops idle flows, between scrapes.
    pub fn maintain(&mut self) -> io::Result<()> {
        self.collect_connections(false)?;
        self.drain()?;
        self.table.expire(monotonic_now_ns());
        Ok(())
    }

    /// The table the probes write now, for tests that plant entries.
    pub fn writing_table(&self) -> &MapHandle {
        &self.maps.tables[self.writing]
    }

    /// Socket backend: adds what connections moved since last time, from a
    /// walk over the live ones (`walk`) and from those that ended. The walk
    /// goes first: a connection's final totals are written after it left
    /// the walk, so none is seen alive after its final.
    fn collect_connections(&mut self, walk: bool) -> io::Result<()> {
        let Some(sockets) = self.maps.sockets.as_mut() else {
            return Ok(());
        };
        let now = monotonic_now_ns();
        if walk {
            let live = sockets.walker.walk()?;
            self.ledger.walked(&live, &mut self.table, now);
        }
        let closed = take_hash_map(&sockets.closed, self.last_closed as usize + 64)?;
        let finals = closed.iter().map(|(_, value)| {
            let mut t = ConnectionTotals::default();
            plain::copy_from_bytes(&mut t, value).expect("value is a connection_totals");
            t
        });
        self.ledger.finished(finals, &mut self.table, now);
        self.last_closed = closed.len() as u64;
        Ok(())
    }

    fn read_health(&self) -> io::Result<Health> {
        let mut health = Health::default();
        for cpu in read_percpu_slot(&self.maps.overflow, 0)? {
            let bytes = value_from(&cpu);
            health.overflow.add(bytes.sent, bytes.received);
        }
        let (mut inserts, mut deletes) = (0u64, 0u64);
        for cpu in read_percpu_slot(&self.maps.health, 0)? {
            let mut h = ProbeHealth::default();
            plain::copy_from_bytes(&mut h, &cpu).expect("value is sizeof(struct probe_health)");
            health.missed_calls += h.missed_calls;
            health.sockets_untracked += h.sockets_untracked;
            health.finals_dropped += h.finals_dropped;
            // A socket may be inserted on one CPU and deleted on another:
            // only the sums are meaningful.
            inserts = inserts.wrapping_add(h.socket_inserts);
            deletes = deletes.wrapping_add(h.socket_deletes);
        }
        health.sockets_tracked = inserts.wrapping_sub(deletes);
        Ok(health)
    }
}
