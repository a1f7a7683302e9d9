//! The exporter's metrics about itself: build and backend, map fill,
//! bytes it could not attribute, scrapes, and the attached programs' runs.

use std::fmt;

use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeExemplarValue, EncodeLabelSet, NoLabelSet,
};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use crate::flows::Snapshot;
use crate::metrics::{ExporterInfo, ScrapeStats};
use crate::program_stats::ProgramStats;

type NoExemplar = Exemplar<NoLabelSet, u64>;

/// Everything about the exporter itself: build, maps, losses, scrapes.
pub(crate) fn encode(
    encoder: &mut DescriptorEncoder,
    snap: &Snapshot,
    info: &ExporterInfo,
    stats: ScrapeStats,
) -> fmt::Result {
    encoder
        .encode_descriptor(
            "tcp_flow_exporter_build",
            "Build and runtime facts about tcp-flow-exporter; always 1.",
            None,
            MetricType::Info,
        )?
        .encode_info(&[("version", info.version), ("backend", info.backend)])?;

    let map = [("map", info.map_name)];
    let entries = snap.flows.len() as u64 + snap.undecodable;
    gauge(
        encoder,
        "tcp_flow_exporter_map_entries",
        "Entries in the BPF map at this scrape.",
        &map,
        entries,
    )?;
    gauge(
        encoder,
        "tcp_flow_exporter_map_capacity",
        "Capacity (max_entries) of the BPF map, from --flows.max.",
        &map,
        u64::from(info.map_capacity),
    )?;
    encoder
        .encode_descriptor(
            "tcp_flow_exporter_map_fill_ratio",
            "Entries over capacity of the BPF map; at 1 new flows go to the overflow flow.",
            None,
            MetricType::Gauge,
        )?
        .encode_family(&map)?
        .encode_gauge(&(entries as f64 / f64::from(info.map_capacity.max(1))))?;

    let mut overflow = encoder.encode_descriptor(
        "tcp_flow_exporter_overflow",
        "Payload bytes counted while the flow map was full, so not attributed to a flow.",
        Some(&Unit::Bytes),
        MetricType::Counter,
    )?;
    for (direction, bytes) in [
        ("sent", snap.overflow.sent),
        ("received", snap.overflow.received),
    ] {
        overflow
            .encode_family(&[("direction", direction)])?
            .encode_counter::<NoLabelSet, _, u64>(&bytes, None::<&NoExemplar>)?;
    }

    encoder
            .encode_descriptor(
                "tcp_flow_exporter_missed_calls",
                "Socket calls the kprobe backend saw only half of (kretprobe maxactive exceeded, \
                 or a probe skipped by the kernel's recursion guard), so their bytes are not counted.",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, u64>(&snap.missed_calls, None::<&NoExemplar>)?;
    encoder
        .encode_descriptor(
            "tcp_flow_exporter_undecodable_entries",
            "Flow map entries with an unknown address family, skipped (a bug if not 0).",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&snap.undecodable)?;
    encoder
        .encode_descriptor(
            "tcp_flow_exporter_scrape_errors",
            "Scrapes that failed to read the BPF maps since start.",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<NoLabelSet, _, u64>(&stats.errors, None::<&NoExemplar>)?;
    encoder
        .encode_descriptor(
            "tcp_flow_exporter_scrape_duration",
            "Time this scrape spent reading and decoding the BPF maps.",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?
        .encode_gauge(&snap.read_duration.as_secs_f64())?;

    encode_programs(encoder, snap)
}

/// Per attached program: attached, runs, run time, recursion misses.
fn encode_programs(encoder: &mut DescriptorEncoder, snap: &Snapshot) -> fmt::Result {
    let programs = &snap.programs;
    encoder
            .encode_descriptor(
                "tcp_flow_exporter_bpf_stats_enabled",
                "1 while the kernel counts BPF program runs and run time (--bpf.stats or sysctl kernel.bpf_stats_enabled).",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&u64::from(snap.bpf_stats_enabled))?;
    let mut attached = encoder.encode_descriptor(
        "tcp_flow_exporter_program_attached",
        "1 for each BPF program attached to its kernel hook.",
        None,
        MetricType::Gauge,
    )?;
    for p in programs {
        attached
            .encode_family(&[("program", p.name)])?
            .encode_gauge(&1u64)?;
    }
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
            .encode_family(&[("program", p.name)])?
            .encode_counter::<NoLabelSet, _, V>(&value(p), None::<&Exemplar<NoLabelSet, V>>)?;
    }
    Ok(())
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    labels: &impl EncodeLabelSet,
    value: u64,
) -> fmt::Result {
    encoder
        .encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_family(labels)?
        .encode_gauge(&value)
}
