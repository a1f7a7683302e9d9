//! The per-event backends' source: two kernel flow tables the probes take
//! turns writing.
//!
//! The probes write into one of the two, chosen by the one slot of
//! `active_flows`. A drain points that slot at the other table; the kernel
//! returns from that update only after every BPF program that could still
//! hold the old table has finished (synchronize_rcu() in
//! maybe_wait_bpf_programs(), on every kernel from 5.10 to 6.18). The old
//! table is then read and emptied with nothing writing to it, so no byte is
//! lost or counted twice, and the kernel never deletes an entry a probe is
//! adding to.
//!
//! Drains run once a second, off the scrape path ([`FlowSource::maintain`]).
//! A scrape reads the table the probes write without switching it
//! ([`FlowSink::credit`]), and the drain that follows adds only the rest
//! ([`FlowSink::settle`]).
//!
//! A drain can fail partway, after its first batches already deleted
//! entries. Those are settled at once; the rest stays in the old table,
//! which stays "undrained" until a later scrape or drain empties it. Until
//! then scrapes credit nothing (what each flow took still describes the
//! undrained entry, and a credit would overwrite it), and the probes are
//! never pointed back at that table. The bytes are late, never lost or
//! counted twice.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{MapCore, MapFlags, MapHandle};

use super::{FlowSink, FlowSource, SourceHealth};
use crate::kernel::maps::{read_hash_map, read_percpu, take_hash_map, MapEntries, PartialTake};
use crate::kernel::skel::{from_bytes, FlowBytes, FlowKeyBytes, PerEventHealth};
use crate::kernel::PerEventMaps;

/// What [`PerEventTables`] does with the kernel's two flow tables (0 and
/// 1): the loaded object's maps, or an in-memory pair in unit tests, which
/// can fail a drain partway without root.
pub trait KernelTables: Send + std::fmt::Debug {
    /// Points the probes at `table`; returns once none writes the other.
    fn point_probes_at(&mut self, table: usize) -> io::Result<()>;
    /// Every entry of `table`, with room for `size_hint` at first.
    fn read(&mut self, table: usize, size_hint: usize) -> io::Result<MapEntries>;
    /// Reads and deletes every entry of `table`.
    fn take(&mut self, table: usize, size_hint: usize) -> Result<MapEntries, PartialTake>;
    /// The object's counters about itself, all but `table_entries`.
    fn health(&self) -> io::Result<SourceHealth>;
}

#[derive(Debug)]
pub struct PerEventTables<K: KernelTables = PerEventMaps> {
    kernel: K,
    /// The table the probes write.
    writing: usize,
    /// The other table, which the probes left, still holds entries: a drain
    /// failed partway.
    undrained: bool,
    /// Entries the last drained or read kernel table held.
    last_len: u64,
}

impl<K: KernelTables> PerEventTables<K> {
    pub fn new(kernel: K) -> io::Result<PerEventTables<K>> {
        let mut tables = PerEventTables {
            kernel,
            writing: 0,
            undrained: false,
            last_len: 0,
        };
        // The object starts with flows_even in the slot; say so explicitly,
        // so `writing` is right whatever the object's initial value.
        tables.kernel.point_probes_at(0)?;
        Ok(tables)
    }

    /// Room to ask for when reading a table: what the last one held.
    fn size_hint(&self) -> usize {
        self.last_len as usize + 64
    }

    /// Takes and settles what the probes' previous table still holds, if a
    /// drain of it failed partway; an error if it still is not empty.
    fn finish_drain(&mut self, sink: &mut dyn FlowSink) -> io::Result<()> {
        if self.undrained {
            self.drain(1 - self.writing, sink)?;
        }
        Ok(())
    }

    /// Takes `table`, which the probes no longer write, and settles each
    /// entry, also those a take that fails partway got.
    fn drain(&mut self, table: usize, sink: &mut dyn FlowSink) -> io::Result<()> {
        let (entries, complete) = PartialTake::split(self.kernel.take(table, self.size_hint()));
        for (key, counted) in flows(&entries) {
            sink.settle(key, &counted);
        }
        self.undrained = complete.is_err();
        complete?;
        sink.table_drained();
        self.last_len = entries.len() as u64;
        Ok(())
    }
}

impl PerEventTables<PerEventMaps> {
    /// The table the probes write now, for tests that plant entries.
    pub fn writing_table(&self) -> &MapHandle {
        &self.kernel.tables[self.writing]
    }
}

impl<K: KernelTables> FlowSource for PerEventTables<K> {
    /// Credits what the table the probes write counted so far, without the
    /// switch and its grace period; first finishes a drain that failed.
    fn read(&mut self, sink: &mut dyn FlowSink) -> io::Result<()> {
        self.finish_drain(sink)?;
        let entries = self.kernel.read(self.writing, self.size_hint())?;
        for (key, counted) in flows(&entries) {
            sink.credit(key, &counted);
        }
        self.last_len = self.last_len.max(entries.len() as u64);
        Ok(())
    }

    /// Switches the probes to the other table, then settles everything the
    /// previous one counted. A drain that failed is finished first: the
    /// probes never go back to a table that still holds entries.
    fn maintain(&mut self, sink: &mut dyn FlowSink) -> io::Result<()> {
        self.finish_drain(sink)?;
        let drained = self.writing;
        self.kernel.point_probes_at(1 - drained)?;
        self.writing = 1 - drained;
        self.drain(drained, sink)
    }

    fn health(&self) -> io::Result<SourceHealth> {
        Ok(SourceHealth {
            table_entries: self.last_len,
            ..self.kernel.health()?
        })
    }
}

impl KernelTables for PerEventMaps {
    fn point_probes_at(&mut self, table: usize) -> io::Result<()> {
        let fd = self.tables[table].as_fd().as_raw_fd() as u32;
        self.active
            .update(&0u32.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
            .map_err(io::Error::other)
    }

    fn read(&mut self, table: usize, size_hint: usize) -> io::Result<MapEntries> {
        read_hash_map(&self.tables[table], size_hint)
    }

    fn take(&mut self, table: usize, size_hint: usize) -> Result<MapEntries, PartialTake> {
        take_hash_map(&self.tables[table], size_hint)
    }

    fn health(&self) -> io::Result<SourceHealth> {
        let mut health = SourceHealth::default();
        for cpu in read_percpu::<FlowBytes>(&self.overflow, 0)? {
            health.flow_table_full.add(cpu.sent, cpu.received);
        }
        for cpu in read_percpu::<PerEventHealth>(&self.health, 0)? {
            health.missed_calls += cpu.missed_calls;
            health.sockets_untracked += cpu.roles_untracked;
            health.count_tracked(cpu.role_inserts, cpu.role_deletes);
        }
        Ok(health)
    }
}

/// A flow table's entries as keys and counts.
fn flows(entries: &MapEntries) -> impl Iterator<Item = (&FlowKeyBytes, FlowBytes)> {
    entries.iter().map(|(key, value)| {
        let key: &FlowKeyBytes = key.try_into().expect("key is a flow_key");
        (key, from_bytes(value))
    })
}

#[cfg(test)]
mod tests;
