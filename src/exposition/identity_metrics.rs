//! Self-metrics of the identity facts: how much is unresolved, the
//! Kubernetes watches, the labels file.

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::MetricType;

use crate::flows::Snapshot;
use crate::identity::kubernetes::WatchState;
use crate::identity::start::IdentityHealth;

type NoExemplar = Exemplar<NoLabelSet, u64>;

pub fn encode(
    encoder: &mut DescriptorEncoder,
    snap: &Snapshot,
    health: &IdentityHealth,
) -> fmt::Result {
    let mut unresolved = encoder.encode_descriptor(
        "tcp_flow_exporter_unresolved_flows",
        "Flow series whose end is not known beyond its address: src, no pod, unit or container \
         for the local socket's cgroup; dst, a private peer no fact source names.",
        None,
        MetricType::Gauge,
    )?;
    for (end, count) in [("src", snap.unresolved.src), ("dst", snap.unresolved.dst)] {
        unresolved
            .encode_family(&[("end", end)])?
            .encode_gauge(&count)?;
    }
    if let Some(kube) = &health.kubernetes {
        let kinds = kube.read();
        let mut synced = encoder.encode_descriptor(
            "tcp_flow_exporter_kubernetes_synced",
            "1 while the watch of a Kubernetes resource is listed and following changes; 0 \
             before its first list and while its requests fail (the last good data stays in use).",
            None,
            MetricType::Gauge,
        )?;
        for k in &kinds {
            synced
                .encode_family(&[("resource", k.kind.as_str())])?
                .encode_gauge(&i64::from(k.state == WatchState::Synced))?;
        }
        let mut state = encoder.encode_descriptor(
            "tcp_flow_exporter_kubernetes_watch_state",
            "The state of the watch of a Kubernetes resource: 1 for the state it is in.",
            None,
            MetricType::Gauge,
        )?;
        for k in &kinds {
            for (name, value) in [
                ("initializing", WatchState::Initializing),
                ("synced", WatchState::Synced),
                ("failing", WatchState::Failing),
            ] {
                state
                    .encode_family(&[("resource", k.kind.as_str()), ("state", name)])?
                    .encode_gauge(&i64::from(k.state == value))?;
            }
        }
        let mut last = encoder.encode_descriptor(
            "tcp_flow_exporter_kubernetes_last_sync_timestamp_seconds",
            "Unix time of the last complete list or watch event of a Kubernetes resource; 0: never.",
            None,
            MetricType::Gauge,
        )?;
        for k in &kinds {
            last.encode_family(&[("resource", k.kind.as_str())])?
                .encode_gauge(&k.last_sync_unix)?;
        }
        let mut errors = encoder.encode_descriptor(
            "tcp_flow_exporter_kubernetes_watch_errors",
            "Failed requests and watch errors per Kubernetes resource since start (a 410 Gone \
             relist is routine and not counted).",
            None,
            MetricType::Counter,
        )?;
        for k in &kinds {
            errors
                .encode_family(&[("resource", k.kind.as_str())])?
                .encode_counter::<NoLabelSet, _, u64>(&k.watch_errors, None::<&NoExemplar>)?;
        }
        let mut objects = encoder.encode_descriptor(
            "tcp_flow_exporter_kubernetes_objects",
            "Objects of a Kubernetes resource the exporter's index holds.",
            None,
            MetricType::Gauge,
        )?;
        for k in &kinds {
            objects
                .encode_family(&[("resource", k.kind.as_str())])?
                .encode_gauge(&k.objects)?;
        }
    }
    if let Some(labels) = &health.labels {
        super::config_metrics::file_reloads(encoder, "labels", "--labels.file", labels)?;
        encoder
            .encode_descriptor(
                "tcp_flow_exporter_labels_networks",
                "Named networks in force from --labels.file.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&labels.entries_loaded())?;
    }
    Ok(())
}
