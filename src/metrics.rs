//! Turns the flow table and one snapshot into metric families, in the
//! exposition format the scraper asked for.
//!
//! Flow counters are the flow table's u64 totals, written as they are at
//! scrape time ([`flow_text`](crate::flow_text)): the table is the only place
//! that accumulates, so the output can never drift from it.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

use crate::chunked_text::ChunkedText;
use crate::flow_table::FlowTable;
use crate::flow_text;
use crate::flows::Snapshot;

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

/// Appends the flow families and the self-metrics, in `format`, to `out`.
pub fn encode(
    out: &mut ChunkedText,
    flows: &FlowTable,
    snapshot: Arc<Snapshot>,
    info: &ExporterInfo,
    stats: ScrapeStats,
    format: Format,
) {
    flow_text::write_flow_families(out, flows, snapshot.overflow(), format);
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SelfCollector {
        snapshot,
        info: info.clone(),
        stats,
    }));
    // The self-metrics are a few dozen series: prometheus-client's encoder is
    // plenty fast for them, and it ends OpenMetrics with its `# EOF`.
    let encoded = match format {
        Format::Text => prometheus_client::encoding::prometheus_text::encode(out, &registry),
        Format::OpenMetrics => prometheus_client::encoding::text::encode(out, &registry),
    };
    encoded.expect("writing into memory cannot fail");
}

#[derive(Debug)]
struct SelfCollector {
    snapshot: Arc<Snapshot>,
    info: ExporterInfo,
    stats: ScrapeStats,
}

impl Collector for SelfCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        crate::self_metrics::encode(&mut encoder, &self.snapshot, &self.info, self.stats)
    }
}

/// The label value that marks the overflow flow (`src_ip`, `dst_ip` and
/// `role`; its ports are empty): the bytes that found no room, so that sums
/// over all series stay exact.
pub const OVERFLOW_MARKER: &str = "overflow";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::{FlowBytes, FlowKey, ROLE_CLIENT};
    use crate::flows::Overflow;
    use crate::program_stats::ProgramStats;
    use std::net::Ipv6Addr;
    use std::time::Duration;

    fn table() -> FlowTable {
        let mut table = FlowTable::new(10, u64::MAX);
        let mut client = FlowKey {
            family: libc::AF_INET as u16,
            remote_port: 8080,
            role: ROLE_CLIENT,
            ..FlowKey::default()
        };
        client.local_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        client.remote_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        let unknown = FlowKey {
            family: libc::AF_INET6 as u16,
            local_addr: Ipv6Addr::LOCALHOST.octets(),
            remote_addr: Ipv6Addr::LOCALHOST.octets(),
            local_port: 8080,
            remote_port: 40001,
            ..FlowKey::default()
        };
        for (key, sent, received) in [(client, 1234, 0), (unknown, 0, u64::MAX)] {
            let value = FlowBytes {
                sent,
                received,
                last_seen_ns: 1,
            };
            // SAFETY: Plain structs viewed as their bytes.
            let (k, v) = unsafe { (plain::as_bytes(&key), plain::as_bytes(&value)) };
            table.add(k, v);
        }
        table
    }

    fn snapshot() -> Arc<Snapshot> {
        Arc::new(Snapshot {
            flows: Vec::new(),
            flow_count: 2,
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
            connection_finals_lost: 6,
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

    fn encoded(
        flows: &FlowTable,
        snapshot: Arc<Snapshot>,
        info: &ExporterInfo,
        stats: ScrapeStats,
        format: Format,
    ) -> String {
        let out = crate::chunked_text::tests::written(false, |w| {
            encode(w, flows, snapshot, info, stats, format);
        });
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_format_has_exact_flow_samples() {
        let out = encoded(
            &table(),
            snapshot(),
            &info(),
            ScrapeStats { errors: 2 },
            Format::Text,
        );
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
            r#"tcp_flow_exporter_map_entries{map="sockets"} 5"#,
            r#"tcp_flow_exporter_map_capacity{map="sockets"} 1024"#,
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
            "tcp_flow_exporter_connection_finals_lost_total 6",
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
        let out = encoded(
            &table(),
            snapshot(),
            &info(),
            ScrapeStats::default(),
            Format::OpenMetrics,
        );
        assert!(out.ends_with("# EOF\n"), "{out}");
        assert_eq!(out.matches("# EOF").count(), 1, "{out}");
        assert!(
            out.contains("# TYPE tcp_flow_sent_bytes counter\n# UNIT tcp_flow_sent_bytes bytes\n"),
            "{out}"
        );
        assert!(out.contains(r#"tcp_flow_sent_bytes_total{src_ip="127.0.0.1",src_port="",dst_ip="127.0.0.1",dst_port="8080",role="client"} 1234"#), "{out}");
    }
}
