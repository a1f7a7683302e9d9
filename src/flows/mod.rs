//! Flow totals: what every flow moved since the exporter started, kept as
//! counters that only grow, and the snapshot each scrape reports.
//!
//! [`FlowReader`] reads a [`crate::source::FlowSource`] into the
//! [`FlowTable`] at every scrape and, every second, runs its maintenance
//! ([`maintenance`]).

pub mod key;
pub mod maintenance;
pub mod reader;
pub mod selection;
pub mod snapshot;
pub mod table;

pub use key::{Flow, Role};
pub use reader::FlowReader;
pub use snapshot::Snapshot;
pub use table::FlowTable;
