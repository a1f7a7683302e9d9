//! tcp-flow-exporter: exact per-flow TCP byte counters for Prometheus.
//!
//! The data flows through the modules in this order:
//! kernel hook (`bpf/flow.bpf.c`, configured by [`filter`], loaded by
//! [`probe`]) → kernel flow tables, drained by [`collector`] with
//! [`map_reader`] → running totals ([`flow_table`]) → snapshot ([`flows`]) →
//! metric families ([`metrics`]) → HTTP ([`http`], [`negotiate`], [`pages`],
//! [`chunked_text`]).

pub mod bpf;
pub mod chunked_text;
pub mod cli;
pub mod collector;
pub mod connections;
pub mod filter;
pub mod flow_table;
pub mod flow_text;
pub mod flows;
pub mod http;
pub mod kernel;
pub mod map_reader;
pub mod metrics;
pub mod negotiate;
pub mod pages;
pub mod privileges;
pub mod probe;
pub mod program_stats;
mod self_metrics;
pub mod socket_walk;
