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

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{MapCore, MapFlags};

use super::{FlowSink, FlowSource, SourceHealth};
use crate::kernel::maps::{read_hash_map, read_percpu, take_hash_map, MapEntries};
use crate::kernel::skel::{from_bytes, FlowBytes, FlowKeyBytes, PerEventHealth};
use crate::kernel::PerEventMaps;

#[derive(Debug)]
pub struct PerEventTables {
    maps: PerEventMaps,
    /// Index into `maps.tables` of the table the probes write.
    writing: usize,
    /// Entries the last drained or read kernel table held.
    last_len: u64,
}

impl PerEventTables {
    pub fn new(maps: PerEventMaps) -> io::Result<PerEventTables> {
        let mut tables = PerEventTables {
            maps,
            writing: 1,
            last_len: 0,
        };
        // The object starts with flows_even in the slot; say so explicitly,
        // so `writing` is right whatever the object's initial value.
        tables.point_probes_at(0)?;
        Ok(tables)
    }

    /// The table the probes write now, for tests that plant entries.
    pub fn writing_table(&self) -> &libbpf_rs::MapHandle {
        &self.maps.tables[self.writing]
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

    /// Room to ask for when reading a table: what the last one held.
    fn size_hint(&self) -> usize {
        self.last_len as usize + 64
    }
}

impl FlowSource for PerEventTables {
    /// Credits what the table the probes write counted so far, without the
    /// switch and its grace period.
    fn read(&mut self, sink: &mut dyn FlowSink) -> io::Result<()> {
        let entries = read_hash_map(&self.maps.tables[self.writing], self.size_hint())?;
        for (key, counted) in flows(&entries) {
            sink.credit(key, &counted);
        }
        self.last_len = self.last_len.max(entries.len() as u64);
        Ok(())
    }

    /// Switches the probes to the other table, then settles everything the
    /// previous one counted.
    fn maintain(&mut self, sink: &mut dyn FlowSink) -> io::Result<()> {
        let drained = self.writing;
        self.point_probes_at(1 - drained)?;
        let entries = take_hash_map(&self.maps.tables[drained], self.size_hint())
            .inspect_err(|_| sink.table_drained(false))?;
        for (key, counted) in flows(&entries) {
            sink.settle(key, &counted);
        }
        sink.table_drained(true);
        self.last_len = entries.len() as u64;
        Ok(())
    }

    fn health(&self) -> io::Result<SourceHealth> {
        let mut health = SourceHealth {
            table_entries: self.last_len,
            ..SourceHealth::default()
        };
        for cpu in read_percpu::<FlowBytes>(&self.maps.overflow, 0)? {
            health.flow_table_full.add(cpu.sent, cpu.received);
        }
        for cpu in read_percpu::<PerEventHealth>(&self.maps.health, 0)? {
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
