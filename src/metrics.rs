//! Turns one snapshot into metric families, in the exposition format the
//! scraper asked for.
//!
//! Flow counters are the flow table's u64 totals, emitted as they are at
//! scrape time (a const-counter collector): the table is the only place that
//! accumulates, so the output can never drift from it.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelKey, EncodeLabelSet, LabelSetEncoder, NoLabelSet,
};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::flows::{port_label, Flow, Snapshot};

/// The exposition formats /metrics negotiates between.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics text 1.0.0.
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Facts about the exporter that do not change between scrapes.
#[derive(Clone, Debug)]
pub struct ExporterInfo {
    pub version: &'static str,
    pub backend: &'static str,
    /// --flows.max: flow series limit and kernel flow table capacity.
    pub flows_max: u32,
    /// --sockets.max: capacity of the socket role map.
    pub sockets_max: u32,
}

/// Self-metrics kept across scrapes.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScrapeStats {
    pub errors: u64,
}

/// Encodes a snapshot and the self-metrics into `format`.
pub fn encode(
    snapshot: Arc<Snapshot>,
    info: &ExporterInfo,
    stats: ScrapeStats,
    format: Format,
) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ScrapeCollector {
        snapshot,
        info: info.clone(),
        stats,
    }));
    let mut out = String::new();
    match format {
        Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?,
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry)?,
    }
    Ok(out)
}

#[derive(Debug)]
struct ScrapeCollector {
    snapshot: Arc<Snapshot>,
    info: ExporterInfo,
    stats: ScrapeStats,
}

type NoExemplar = Exemplar<NoLabelSet, u64>;

impl Collector for ScrapeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let snap = &self.snapshot;
        let overflow = snap.overflow();
        flow_counter(
            &mut encoder,
            "tcp_flow_sent",
            "TCP payload bytes the local socket (src) sent to its peer (dst).",
            snap,
            |f| f.sent,
            overflow.sent,
        )?;
        flow_counter(
            &mut encoder,
            "tcp_flow_received",
            "TCP payload bytes the local socket (src) received from its peer (dst).",
            snap,
            |f| f.received,
            overflow.received,
        )?;
        crate::self_metrics::encode(&mut encoder, &self.snapshot, &self.info, self.stats)
    }
}

/// One counter family over every flow, plus the overflow flow: the bytes
/// that found no room, so that sums over all series stay exact.
fn flow_counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    snapshot: &Snapshot,
    value: impl Fn(&Flow) -> u64,
    overflow: u64,
) -> fmt::Result {
    let mut metric =
        encoder.encode_descriptor(name, help, Some(&Unit::Bytes), MetricType::Counter)?;
    for flow in &snapshot.flows {
        metric
            .encode_family(&FlowLabels::Flow(flow))?
            .encode_counter::<NoLabelSet, _, u64>(&value(flow), None::<&NoExemplar>)?;
    }
    metric
        .encode_family(&FlowLabels::Overflow)?
        .encode_counter::<NoLabelSet, _, u64>(&overflow, None::<&NoExemplar>)
}

/// The label value that marks the overflow flow, in place of both IPs and
/// the role.
pub const OVERFLOW_MARKER: &str = "overflow";

/// `src_*` is the local socket, `dst_*` the peer; `role` says which of them
/// connected. An aggregated port (the client's, under --flows.ports=server)
/// is empty, which Prometheus stores as no label at all.
enum FlowLabels<'a> {
    Flow(&'a Flow),
    /// `src_ip="overflow",src_port="",dst_ip="overflow",dst_port="",role="overflow"`.
    Overflow,
}

impl EncodeLabelSet for FlowLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        match self {
            FlowLabels::Flow(flow) => {
                label(encoder, "src_ip", flow.local.ip())?;
                label(encoder, "src_port", port_label(flow.local.port()))?;
                label(encoder, "dst_ip", flow.remote.ip())?;
                label(encoder, "dst_port", port_label(flow.remote.port()))?;
                label(encoder, "role", flow.role.as_str())
            }
            FlowLabels::Overflow => {
                label(encoder, "src_ip", OVERFLOW_MARKER)?;
                label(encoder, "src_port", "")?;
                label(encoder, "dst_ip", OVERFLOW_MARKER)?;
                label(encoder, "dst_port", "")?;
                label(encoder, "role", OVERFLOW_MARKER)
            }
        }
    }
}

fn label(encoder: &mut LabelSetEncoder, key: &str, value: impl fmt::Display) -> fmt::Result {
    let mut label = encoder.encode_label();
    let mut key_encoder = label.encode_label_key()?;
    key.encode(&mut key_encoder)?;
    let mut value_encoder = key_encoder.encode_label_value()?;
    write!(value_encoder, "{value}")?;
    value_encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::{Overflow, Role};
    use crate::program_stats::ProgramStats;
    use std::time::Duration;

    fn snapshot() -> Arc<Snapshot> {
        Arc::new(Snapshot {
            flows: vec![
                Flow {
                    local: "127.0.0.1:0".parse().unwrap(),
                    remote: "127.0.0.1:8080".parse().unwrap(),
                    role: Role::Client,
                    sent: 1234,
                    received: 0,
                    last_seen_ns: 1,
                },
                Flow {
                    local: "[::1]:8080".parse().unwrap(),
                    remote: "[::1]:40001".parse().unwrap(),
                    role: Role::Unknown,
                    sent: 0,
                    received: 18_446_744_073_709_551_615,
                    last_seen_ns: 2,
                },
            ],
            overflow_kernel: Overflow {
                sent: 7,
                received: 9,
            },
            overflow_series: Overflow {
                sent: 100,
                received: 0,
            },
            flows_expired: 12,
            table_entries: 2,
            sockets_tracked: 5,
            sockets_untracked: 1,
            missed_calls: 4,
            programs: vec![ProgramStats {
                name: "tp_sock_send_length",
                run_count: 10,
                run_time_ns: 1_500_000_000,
                recursion_misses: 1,
            }],
            bpf_stats_enabled: true,
            undecodable: 0,
            read_duration: Duration::from_millis(3),
            taken_at_ns: 3,
        })
    }

    fn info() -> ExporterInfo {
        ExporterInfo {
            version: "1.2.3",
            backend: "tracepoint",
            flows_max: 65536,
            sockets_max: 1024,
        }
    }

    #[test]
    fn text_format_has_exact_flow_samples() {
        let out = encode(snapshot(), &info(), ScrapeStats { errors: 2 }, Format::Text).unwrap();
        for line in [
            "# TYPE tcp_flow_sent_bytes_total counter",
            r#"tcp_flow_sent_bytes_total{src_ip="127.0.0.1",src_port="",dst_ip="127.0.0.1",dst_port="8080",role="client"} 1234"#,
            r#"tcp_flow_received_bytes_total{src_ip="::1",src_port="8080",dst_ip="::1",dst_port="40001",role="unknown"} 18446744073709551615"#,
            r#"tcp_flow_sent_bytes_total{src_ip="overflow",src_port="",dst_ip="overflow",dst_port="",role="overflow"} 107"#,
            r#"tcp_flow_received_bytes_total{src_ip="overflow",src_port="",dst_ip="overflow",dst_port="",role="overflow"} 9"#,
            r#"tcp_flow_exporter_map_fill_ratio{map="flows"} 0.000030517578125"#,
            r#"tcp_flow_exporter_build_info{version="1.2.3",backend="tracepoint"} 1"#,
            r#"tcp_flow_exporter_map_entries{map="flows"} 2"#,
            r#"tcp_flow_exporter_map_capacity{map="flows"} 65536"#,
            r#"tcp_flow_exporter_map_entries{map="socket_roles"} 5"#,
            r#"tcp_flow_exporter_map_capacity{map="socket_roles"} 1024"#,
            r#"tcp_flow_exporter_overflow_bytes_total{direction="sent",reason="flow_table_full"} 7"#,
            r#"tcp_flow_exporter_overflow_bytes_total{direction="received",reason="flow_table_full"} 9"#,
            r#"tcp_flow_exporter_overflow_bytes_total{direction="sent",reason="series_limit"} 100"#,
            r#"tcp_flow_exporter_overflow_bytes_total{direction="received",reason="series_limit"} 0"#,
            "tcp_flow_exporter_flow_series 2",
            "tcp_flow_exporter_flow_series_limit 65536",
            "tcp_flow_exporter_flows_expired_total 12",
            "tcp_flow_exporter_sockets_untracked_total 1",
            "tcp_flow_exporter_scrape_errors_total 2",
            "tcp_flow_exporter_missed_calls_total 4",
            "tcp_flow_exporter_bpf_stats_enabled 1",
            r#"tcp_flow_exporter_program_attached{program="tp_sock_send_length"} 1"#,
            r#"tcp_flow_exporter_program_runs_total{program="tp_sock_send_length"} 10"#,
            r#"tcp_flow_exporter_program_run_seconds_total{program="tp_sock_send_length"} 1.5"#,
            r#"tcp_flow_exporter_program_recursion_misses_total{program="tp_sock_send_length"} 1"#,
            "tcp_flow_exporter_scrape_duration_seconds 0.003",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
        assert!(!out.contains("# EOF"), "0.0.4 has no EOF marker");
    }

    #[test]
    fn openmetrics_format_ends_with_eof() {
        let out = encode(
            snapshot(),
            &info(),
            ScrapeStats::default(),
            Format::OpenMetrics,
        )
        .unwrap();
        assert!(out.ends_with("# EOF\n"), "{out}");
        assert!(
            out.contains("# TYPE tcp_flow_sent_bytes counter\n# UNIT tcp_flow_sent_bytes bytes\n"),
            "{out}"
        );
        assert!(out.contains(r#"tcp_flow_sent_bytes_total{src_ip="127.0.0.1",src_port="",dst_ip="127.0.0.1",dst_port="8080",role="client"} 1234"#), "{out}");
    }
}
