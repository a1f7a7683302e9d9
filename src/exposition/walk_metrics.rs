//! The socket backend's walk: how often it ran, in how many pieces, and how
//! long the longest of them held its CPU.

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use crate::source::sockets::WalkTotals;

type NoExemplar = Exemplar<NoLabelSet, u64>;

pub fn encode(encoder: &mut DescriptorEncoder, walks: &WalkTotals) -> fmt::Result {
    counter(
        encoder,
        "tcp_flow_exporter_socket_walks",
        "Walks over every live connection, one per scrape (socket backend).",
        walks.walks,
    )?;
    counter(
        encoder,
        "tcp_flow_exporter_socket_walk_runs",
        "BPF program runs the walks took: one per shard of the socket map, each over at most \
         1024 connections, with the CPU free for other work between them.",
        walks.runs,
    )?;
    encoder
        .encode_descriptor(
            "tcp_flow_exporter_socket_walk_kernel",
            "Time the walks' BPF program runs took, as the program timed itself.",
            Some(&Unit::Seconds),
            MetricType::Counter,
        )?
        .encode_counter::<NoLabelSet, _, u64>(
            &(walks.kernel_ns as f64 / 1e9),
            None::<&NoExemplar>,
        )?;
    encoder
        .encode_descriptor(
            "tcp_flow_exporter_socket_walk_longest_run",
            "The longest single BPF program run of the last walk: how long it held one CPU.",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?
        .encode_gauge(&walks.last.longest_run.as_secs_f64())?;
    encoder
        .encode_descriptor(
            "tcp_flow_exporter_socket_walk_connections_moved",
            "Connections the last walk found had moved bytes since the walk before.",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&walks.last.records)?;
    Ok(())
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    encoder
        .encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None::<&NoExemplar>)
}
