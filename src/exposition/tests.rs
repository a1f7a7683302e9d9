//! The whole /metrics text of a known table and snapshot, in both formats.

use super::*;
use crate::flows::Role;
use crate::kernel::programs::ProgramStats;
use crate::source::{Overflow, SourceHealth};
use crate::test_support::{key, table_of};
use std::time::Duration;

fn table() -> FlowTable {
    table_of(&[
        (key("127.0.0.1:0", "127.0.0.1:8080", Role::Client), 1234, 0),
        (key("[::1]:8080", "[::1]:40001", Role::Unknown), 0, u64::MAX),
    ])
}

fn snapshot() -> Arc<Snapshot> {
    Arc::new(Snapshot {
        flows: Vec::new(),
        flow_count: 2,
        source: SourceHealth {
            flow_table_full: Overflow {
                sent: 7,
                received: 9,
            },
            table_entries: 2,
            sockets_tracked: 5,
            sockets_untracked: 1,
            missed_calls: 4,
            connection_finals_lost: 6,
            walks: None,
        },
        overflow_series: Overflow {
            sent: 100,
            received: 0,
        },
        flows_expired: 12,
        undecodable: 0,
        read_errors: 2,
        programs: vec![ProgramStats {
            name: "tp_sock_send_length".into(),
            run_count: 10,
            run_time_ns: 1_500_000_000,
            recursion_misses: 1,
            attached: Some(false),
            reattached: 3,
        }],
        bpf_stats_enabled: true,
        read_duration: Duration::from_millis(3),
        taken_at_ns: 3,
        unresolved: crate::flows::snapshot::Unresolved { src: 1, dst: 2 },
        prices: None,
    })
}

fn info() -> ExporterInfo {
    ExporterInfo {
        version: "1.2.3",
        backend: "tracepoint",
        flows_max: 65536,
        sockets_max: 1024,
        identity: Default::default(),
        cost: None,
    }
}

fn encoded(
    flows: &FlowTable,
    snapshot: Arc<Snapshot>,
    info: &ExporterInfo,
    format: Format,
) -> String {
    let out = chunked::tests::written(false, |w| {
        encode(w, flows, snapshot, info, format);
    });
    String::from_utf8(out).unwrap()
}

#[test]
fn text_format_has_exact_flow_samples() {
    let out = encoded(&table(), snapshot(), &info(), Format::Text);
    for line in [
        "# TYPE tcp_flow_sent_bytes_total counter",
        r#"tcp_flow_sent_bytes_total{src_ip="127.0.0.1",src_port="",dst_ip="127.0.0.1",dst_port="8080",role="client",dst_kind="private",path="unknown"} 1234"#,
        r#"tcp_flow_received_bytes_total{src_ip="::1",src_port="8080",dst_ip="::1",dst_port="40001",role="unknown",dst_kind="private",path="unknown"} 18446744073709551615"#,
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
        r#"tcp_flow_exporter_program_runs_total{program="tp_sock_send_length"} 10"#,
        r#"tcp_flow_exporter_program_run_seconds_total{program="tp_sock_send_length"} 1.5"#,
        r#"tcp_flow_exporter_program_recursion_misses_total{program="tp_sock_send_length"} 1"#,
        "tcp_flow_exporter_scrape_duration_seconds 0.003",
        r#"tcp_flow_exporter_unresolved_flows{end="src"} 1"#,
        r#"tcp_flow_exporter_unresolved_flows{end="dst"} 2"#,
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
    }
    assert!(!out.contains("# EOF"), "0.0.4 has no EOF marker");
    // The attached state and re-attachments, as the kernel said.
    for line in [
        r#"tcp_flow_exporter_program_attached{program="tp_sock_send_length"} 0"#,
        r#"tcp_flow_exporter_program_reattached_total{program="tp_sock_send_length"} 3"#,
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
    }
}

#[test]
fn the_socket_walks_cost_is_shown_only_for_the_socket_backend() {
    use crate::source::sockets::WalkTotals;
    use crate::source::walk::WalkStats;
    let out = encoded(&table(), snapshot(), &info(), Format::Text);
    assert!(!out.contains("socket_walk"), "{out}");
    let mut snapshot = Arc::try_unwrap(snapshot()).unwrap();
    snapshot.source.walks = Some(WalkTotals {
        walks: 3,
        runs: 700,
        kernel_ns: 1_500_000_000,
        last: WalkStats {
            runs: 256,
            longest_run: Duration::from_micros(250),
            kernel_time: Duration::from_millis(20),
            records: 11,
        },
    });
    let out = encoded(&table(), Arc::new(snapshot), &info(), Format::Text);
    for line in [
        "tcp_flow_exporter_socket_walks_total 3",
        "tcp_flow_exporter_socket_walk_runs_total 700",
        "tcp_flow_exporter_socket_walk_kernel_seconds_total 1.5",
        "tcp_flow_exporter_socket_walk_longest_run_seconds 0.00025",
        "tcp_flow_exporter_socket_walk_connections_moved 11",
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
    }
}

#[test]
fn openmetrics_format_ends_with_eof() {
    let out = encoded(&table(), snapshot(), &info(), Format::OpenMetrics);
    assert!(out.ends_with("# EOF\n"), "{out}");
    assert_eq!(out.matches("# EOF").count(), 1, "{out}");
    assert!(
        out.contains("# TYPE tcp_flow_sent_bytes counter\n# UNIT tcp_flow_sent_bytes bytes\n"),
        "{out}"
    );
    assert!(out.contains(r#"tcp_flow_sent_bytes_total{src_ip="127.0.0.1",src_port="",dst_ip="127.0.0.1",dst_port="8080",role="client",dst_kind="private",path="unknown"} 1234"#), "{out}");
}

#[test]
fn prices_in_force_are_gauges_beside_the_cost_files_reloads() {
    use crate::config_file::Loadable;
    use crate::cost::Prices;
    let text = "currency: USD\nunit: GB\nprices:\n  cross_zone: {egress: 0.01, ingress: 0.02}\n\
                networks:\n  nat-gateway: {egress: 0.045}\n";
    let prices = <Prices as Loadable>::parse(text, "cost.yaml", None).unwrap();
    let mut snapshot = Arc::try_unwrap(snapshot()).unwrap();
    snapshot.prices = Some(Arc::new(prices));
    let mut info = info();
    info.cost = Some(Arc::new(crate::config_file::FileStats::new()));
    let out = encoded(&table(), Arc::new(snapshot), &info, Format::Text);
    for line in [
        r#"tcp_flow_exporter_price{path="cross_zone",direction="egress",currency="USD",unit="GB"} 0.01"#,
        r#"tcp_flow_exporter_price{path="cross_zone",direction="ingress",currency="USD",unit="GB"} 0.02"#,
        r#"tcp_flow_exporter_price{network="nat-gateway",direction="egress",currency="USD",unit="GB"} 0.045"#,
        r#"tcp_flow_exporter_cost_reloads_total{result="failure"} 0"#,
        "tcp_flow_exporter_cost_last_load_timestamp_seconds 0",
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
    }
    assert_eq!(out.matches("tcp_flow_exporter_price{").count(), 3, "{out}");
}
