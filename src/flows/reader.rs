//! Reads a source into the running totals and builds the snapshot a scrape
//! reports, in one place.

use std::io;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::snapshot::Snapshot;
use super::table::FlowTable;
use crate::kernel::monotonic_now_ns;
use crate::kernel::programs::{self, ProgramHandle};
use crate::source::FlowSource;

#[derive(Debug)]
pub struct FlowReader {
    source: Box<dyn FlowSource>,
    table: FlowTable,
    /// The loaded programs, for their run statistics, and the links that
    /// keep them attached.
    programs: Vec<ProgramHandle>,
    /// The exporter holds BPF_ENABLE_STATS (--bpf.stats).
    bpf_stats_held: bool,
    /// Failed reads since start, by scrapes or by maintenance.
    errors: u64,
    /// Maintenance runs since start.
    maintained: u64,
}

/// Identity facts no series needs are forgotten every this many maintenance
/// runs (a minute): often enough to bound memory under pod churn, rarely
/// enough to cost nothing.
const PRUNE_EVERY: u64 = 60;

impl FlowReader {
    pub fn new(
        source: Box<dyn FlowSource>,
        table: FlowTable,
        programs: Vec<ProgramHandle>,
        bpf_stats_held: bool,
    ) -> FlowReader {
        FlowReader {
            source,
            table,
            programs,
            bpf_stats_held,
            errors: 0,
            maintained: 0,
        }
    }

    /// Reads everything counted so far and drops idle flows: what a scrape
    /// reports but the flows themselves, which stay in [`Self::table`].
    pub fn refresh(&mut self) -> io::Result<Snapshot> {
        let started = Instant::now();
        programs::keep_attached(&mut self.programs);
        self.table.refresh_identity();
        let source = self
            .source
            .read(&mut self.table)
            .and_then(|()| self.source.health())
            .inspect_err(|_| self.errors += 1)?;
        let now = monotonic_now_ns();
        self.table.expire(now);
        let read_duration = started.elapsed();
        Ok(Snapshot {
            flows: Vec::new(),
            flow_count: self.table.len() as u64,
            source,
            overflow_series: self.table.overflow,
            flows_expired: self.table.expired,
            undecodable: self.table.undecodable,
            read_errors: self.errors,
            programs: programs::read(&self.programs),
            bpf_stats_enabled: self.bpf_stats_held || programs::sysctl_enabled(),
            read_duration,
            taken_at_ns: now,
            unresolved: self.table.unresolved(),
            prices: self.table.current_prices(),
        })
    }

    /// [`Self::refresh`], with a copy of every flow: for the pages.
    pub fn snapshot(&mut self) -> io::Result<Snapshot> {
        let mut snapshot = self.refresh()?;
        snapshot.flows = self.table.flows();
        Ok(snapshot)
    }

    /// The running totals, as of the last refresh or maintenance.
    pub fn table(&self) -> &FlowTable {
        &self.table
    }

    /// The slower work between scrapes, and idle expiry.
    pub fn maintain(&mut self) -> io::Result<()> {
        programs::keep_attached(&mut self.programs);
        self.table.refresh_identity();
        self.maintained += 1;
        if self.maintained.is_multiple_of(PRUNE_EVERY) {
            self.table.prune_identity();
        }
        self.source
            .maintain(&mut self.table)
            .inspect_err(|_| self.errors += 1)?;
        self.table.expire(monotonic_now_ns());
        Ok(())
    }
}

/// The reader, also after a panic elsewhere left its lock poisoned: its
/// totals are plain numbers that stay consistent between statements.
pub fn lock(reader: &Mutex<FlowReader>) -> MutexGuard<'_, FlowReader> {
    crate::lock::unpoisoned(reader)
}
