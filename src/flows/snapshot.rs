//! Everything one scrape reports besides the flows' own counters.

use std::sync::Arc;
use std::time::Duration;

use super::key::Flow;
use crate::cost::Prices;
use crate::kernel::programs::ProgramStats;
use crate::source::{Overflow, SourceHealth};

/// Built by [`super::FlowReader`] alone.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The flows themselves, for the pages; empty for /metrics, which writes
    /// them straight from the flow table.
    pub flows: Vec<Flow>,
    /// Flows exported now.
    pub flow_count: u64,
    /// What the kernel object says about itself.
    pub source: SourceHealth,
    /// Bytes of new flows that arrived while --flows.max series existed.
    pub overflow_series: Overflow,
    /// Flows removed after --flows.idle-timeout without traffic, since start.
    pub flows_expired: u64,
    /// Entries with an address family we do not know; the BPF side never
    /// writes them, so anything above zero is a bug worth seeing.
    pub undecodable: u64,
    /// Failed reads of the BPF maps since start, by scrapes or by the
    /// background drain.
    pub read_errors: u64,
    /// Run statistics of the loaded programs.
    pub programs: Vec<ProgramStats>,
    /// Whether the kernel is counting program runs and run time.
    pub bpf_stats_enabled: bool,
    /// Time spent reading the kernel and copying the flows.
    pub read_duration: Duration,
    /// CLOCK_MONOTONIC when the read finished, to age `last_seen_ns`.
    pub taken_at_ns: u64,
    /// Flows whose ends identity could not name.
    pub unresolved: Unresolved,
    /// The prices in force (--cost.file).
    pub prices: Option<Arc<Prices>>,
}

/// Series whose local end has no name (no pod, unit or container), and
/// those whose peer is a private address nothing names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unresolved {
    pub src: u64,
    pub dst: u64,
}

impl Unresolved {
    pub fn add(&mut self, other: Unresolved) {
        self.src += other.src;
        self.dst += other.dst;
    }

    pub fn sub(&mut self, other: Unresolved) {
        self.src -= other.src;
        self.dst -= other.dst;
    }
}

impl Snapshot {
    /// Everything that has no flow of its own: the overflow flow's counters.
    pub fn overflow(&self) -> Overflow {
        let mut total = self.source.flow_table_full;
        total.add(self.overflow_series.sent, self.overflow_series.received);
        total
    }
}
