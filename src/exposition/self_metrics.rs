//! The exporter's metrics about itself: build and backend, map fill,
//! bytes it could not attribute, scrapes, and the attached programs' runs.

use std::fmt;
use std::sync::Arc;

use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeExemplarValue, NoLabelSet,
};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use crate::config_file::FileStats;
use crate::flows::Snapshot;
use crate::identity::start::IdentityHealth;
use crate::kernel::programs::ProgramStats;

type NoExemplar = Exemplar<NoLabelSet, u64>;

/// Facts about the exporter that do not change between scrapes.
#[derive(Clone, Debug)]
pub struct ExporterInfo {
    pub version: &'static str,
    pub backend: &'static str,
    /// --flows.max: flow series limit and kernel flow table capacity.
    pub flows_max: u32,
    /// --sockets.max: capacity of the socket maps.
    pub sockets_max: u32,
    /// The identity fact sources that run, for their health.
    pub identity: IdentityHealth,
    /// The cost file's reloads, with --cost.file.
    pub cost: Option<Arc<FileStats>>,
}

/// Everything about the exporter itself: build, maps, losses, scrapes.
pub fn encode(
    encoder: &mut DescriptorEncoder,
    snap: &Snapshot,
    info: &ExporterInfo,
) -> fmt::Result {
    encoder
        .encode_descriptor(
            "tcp_flow_exporter_build",
            "Build and runtime facts about tcp-flow-exporter; always 1.",
            None,
            MetricType::Info,
        )?
        .encode_info(&[("version", info.version), ("backend", info.backend)])?;

    // (map label, entries, capacity)
    let maps = [
        (
            "flows",
            snap.source.table_entries,
            u64::from(info.flows_max),
        ),
        (
            "sockets",
            snap.source.sockets_tracked,
            u64::from(info.sockets_max),
        ),
    ];
    let mut entries = encoder.encode_descriptor(
        "tcp_flow_exporter_map_entries",
        "Entries in a BPF map: for flows, what the kernel flow table held when last drained \
         (drains run once a second and at every scrape); for sockets, the connections \
         whose role the kernel remembers.",
        None,
        MetricType::Gauge,
    )?;
    for (map, count, _) in maps {
        entries
            .encode_family(&[("map", map)])?
            .encode_gauge(&count)?;
    }
    let mut capacity = encoder.encode_descriptor(
        "tcp_flow_exporter_map_capacity",
        "Capacity (max_entries) of a BPF map, from --flows.max or --sockets.max.",
        None,
        MetricType::Gauge,
    )?;
    for (map, _, max) in maps {
        capacity
            .encode_family(&[("map", map)])?
            .encode_gauge(&max)?;
    }
    let mut fill = encoder.encode_descriptor(
        "tcp_flow_exporter_map_fill_ratio",
        "Entries over capacity of a BPF map. At 1, new flows go to the overflow flow \
         (flows) or new connections get role unknown (sockets).",
        None,
        MetricType::Gauge,
    )?;
    for (map, count, max) in maps {
        fill.encode_family(&[("map", map)])?
            .encode_gauge(&(count as f64 / max.max(1) as f64))?;
    }
    encoder
        .encode_descriptor(
            "tcp_flow_exporter_flow_series",
            "Flows exported now, one series per counter family each.",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&snap.flow_count)?;
    encoder
        .encode_descriptor(
            "tcp_flow_exporter_flow_series_limit",
            "Most flows exported at once (--flows.max); bytes of further flows go to the overflow flow.",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&u64::from(info.flows_max))?;
    counter(
        encoder,
        "tcp_flow_exporter_flows_expired",
        "Flows dropped after --flows.idle-timeout without traffic; their series ended.",
        snap.flows_expired,
    )?;

    let mut overflow = encoder.encode_descriptor(
        "tcp_flow_exporter_overflow",
        "Payload bytes without a flow of their own, counted in the overflow flow instead: \
         the kernel flow table was full, or --flows.max flows were already exported.",
        Some(&Unit::Bytes),
        MetricType::Counter,
    )?;
    for (reason, bytes) in [
        ("flow_table_full", snap.source.flow_table_full),
        ("series_limit", snap.overflow_series),
    ] {
        for (direction, value) in [("sent", bytes.sent), ("received", bytes.received)] {
            overflow
                .encode_family(&[("direction", direction), ("reason", reason)])?
                .encode_counter::<NoLabelSet, _, u64>(&value, None::<&NoExemplar>)?;
        }
    }
    counter(
        encoder,
        "tcp_flow_exporter_sockets_untracked",
        "Connections the socket map had no room for (--sockets.max). Per-event backends: their \
         flows have role unknown and keep both ports. Socket backend: they are not counted.",
        snap.source.sockets_untracked,
    )?;

    encoder
            .encode_descriptor(
                "tcp_flow_exporter_missed_calls",
                "Socket calls the kprobe backend saw only half of (kretprobe maxactive exceeded, \
                 or a probe skipped by the kernel's recursion guard), so their bytes are not counted.",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, u64>(&snap.source.missed_calls, None::<&NoExemplar>)?;
    counter(
        encoder,
        "tcp_flow_exporter_connection_finals_lost",
        "Socket backend: connections whose final byte totals were lost (the closed-connection \
         map, sized by --sockets.max, was full); what each moved after the scrape before its \
         end is not counted.",
        snap.source.connection_finals_lost,
    )?;
    counter(
        encoder,
        "tcp_flow_exporter_undecodable_entries",
        "Kernel flow entries with an unknown address family, skipped (a bug if not 0).",
        snap.undecodable,
    )?;
    encoder
        .encode_descriptor(
            "tcp_flow_exporter_scrape_errors",
            "Failed reads of the BPF maps since start, by scrapes or by the background drain.",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<NoLabelSet, _, u64>(&snap.read_errors, None::<&NoExemplar>)?;
    encoder
        .encode_descriptor(
            "tcp_flow_exporter_scrape_duration",
            "Time this scrape spent draining the kernel flow table and copying the flows.",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?
        .encode_gauge(&snap.read_duration.as_secs_f64())?;

    encode_programs(encoder, snap)
}

/// Per loaded program: attached (as the kernel says, at this scrape),
/// re-attachments, runs, run time, recursion misses. The socket backend's
/// walk is run, never attached, so it has no attached state.
fn encode_programs(encoder: &mut DescriptorEncoder, snap: &Snapshot) -> fmt::Result {
    let programs = &snap.programs;
    let mut attached = encoder.encode_descriptor(
        "tcp_flow_exporter_program_attached",
        "1 while the kernel runs the BPF program at its hook, asked of the kernel at each scrape; \
         0 if it was detached from outside and could not be attached again.",
        None,
        MetricType::Gauge,
    )?;
    for p in programs {
        if let Some(state) = p.attached {
            attached
                .encode_family(&[("program", p.name.as_str())])?
                .encode_gauge(&u64::from(state))?;
        }
    }
    let watched: Vec<ProgramStats> = programs
        .iter()
        .filter(|p| p.attached.is_some())
        .cloned()
        .collect();
    program_counter(
        encoder,
        "tcp_flow_exporter_program_reattached",
        "Times the BPF program was found detached from outside and attached again; \
         what its hook saw in between is not counted.",
        None,
        &watched,
        |p| p.reattached,
    )?;
    encoder
            .encode_descriptor(
                "tcp_flow_exporter_bpf_stats_enabled",
                "1 while the kernel counts BPF program runs and run time (--bpf.stats or sysctl kernel.bpf_stats_enabled).",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&u64::from(snap.bpf_stats_enabled))?;
    program_counter(
        encoder,
        "tcp_flow_exporter_program_runs",
        "Times the BPF program ran while BPF statistics were on.",
        None,
        programs,
        |p| p.run_count,
    )?;
    program_counter(
        encoder,
        "tcp_flow_exporter_program_run",
        "Time the BPF program ran while BPF statistics were on.",
        Some(&Unit::Seconds),
        programs,
        |p| p.run_time_ns as f64 / 1e9,
    )?;
    program_counter(
            encoder,
            "tcp_flow_exporter_program_recursion_misses",
            "Runs of the BPF program the kernel skipped to prevent recursion; their bytes are not counted.",
            None,
            programs,
            |p| p.recursion_misses,
        )
}

fn program_counter<V: EncodeCounterValue + EncodeExemplarValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    programs: &[ProgramStats],
    value: impl Fn(&ProgramStats) -> V,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, unit, MetricType::Counter)?;
    for p in programs {
        metric
            .encode_family(&[("program", p.name.as_str())])?
            .encode_counter::<NoLabelSet, _, V>(&value(p), None::<&Exemplar<NoLabelSet, V>>)?;
    }
    Ok(())
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    encoder
        .encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None::<&NoExemplar>)
}
