//! The two flow counter families, written straight into the response text.
//!
//! prometheus-client's encoder cost about 1.1 µs per series here (label
//! values through `fmt::Display`, one `Write` call per fragment): 230 ms of
//! a scrape at 100k flows, 200k series. This writer formats each flow's
//! labels once for both families and its numbers with `itoa`, and produces
//! byte-for-byte what prometheus-client would (a test below compares the
//! two). `cargo bench --bench exporter -- encode` measures it (0.13 µs per
//! flow at 100k flows); BENCHMARKS.md has the numbers.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use crate::chunked_text::ChunkedText;
use crate::flow_table::FlowTable;
use crate::flows::{decode_key, Overflow, Role};
use crate::metrics::Format;

struct Family {
    /// Name without the `_total` suffix.
    name: &'static str,
    help: &'static str,
}

const SENT: Family = Family {
    name: "tcp_flow_sent_bytes",
    help: "TCP payload bytes the local socket (src) sent to its peer (dst).",
};
const RECEIVED: Family = Family {
    name: "tcp_flow_received_bytes",
    help: "TCP payload bytes the local socket (src) received from its peer (dst).",
};

/// Bytes a series line takes on average, to size the output once.
const LINE_ESTIMATE: usize = 128;

/// Room for both flow families of `flows` flows, the overflow flow and the
/// self-metrics, so the body is written without growing its buffer.
pub fn body_estimate(flows: usize) -> usize {
    (flows + 1) * LINE_ESTIMATE * 2 + 64 * 1024
}

/// Appends both flow families, each with the overflow flow, to `out`.
pub fn write_flow_families(
    out: &mut ChunkedText,
    table: &FlowTable,
    overflow: Overflow,
    format: Format,
) {
    // Each flow's labels are formatted once, into the first family; the
    // second family copies them from there (`spans`, 24 bytes a flow: where
    // the labels are, and the received bytes), so no label is formatted
    // twice. The first family's chunks are kept, read-only, until then.
    let mut spans = Vec::with_capacity(table.len() + 1);
    out.keep_chunks();
    header(out, &SENT, format);
    for (key, totals) in table.entries() {
        let Some((local, remote)) = decode_key(&key) else {
            continue; // never stored: FlowTable drops undecodable keys
        };
        start_sample(out, &SENT);
        let start = out.mark();
        write_labels(
            out,
            local.ip(),
            local.port(),
            remote.ip(),
            remote.port(),
            Role::from_raw(key.role).as_str(),
        );
        spans.push((out.span_from(start), totals.received));
        end_sample(out, totals.sent);
    }
    start_sample(out, &SENT);
    let start = out.mark();
    out.push_str(OVERFLOW_LABELS);
    spans.push((out.span_from(start), overflow.received));
    end_sample(out, overflow.sent);
    // Every span is now in a chunk sent and kept.
    out.flush();

    header(out, &RECEIVED, format);
    for (span, value) in spans {
        start_sample(out, &RECEIVED);
        out.copy(span);
        end_sample(out, value);
    }
    out.drop_kept();
}

/// The overflow flow's labels.
const OVERFLOW_LABELS: &str =
    r#"src_ip="overflow",src_port="",dst_ip="overflow",dst_port="",role="overflow""#;

fn header(out: &mut ChunkedText, family: &Family, format: Format) {
    // Text 0.0.4 names the family with its `_total` suffix and has no UNIT;
    // OpenMetrics names it without, and declares the unit.
    let name = match format {
        Format::Text => format!("{}_total", family.name),
        Format::OpenMetrics => family.name.to_owned(),
    };
    let _ = writeln!(out, "# HELP {name} {}", family.help);
    let _ = writeln!(out, "# TYPE {name} counter");
    if format == Format::OpenMetrics {
        let _ = writeln!(out, "# UNIT {name} bytes");
    }
}

fn start_sample(out: &mut ChunkedText, family: &Family) {
    out.push_str(family.name);
    out.push_str("_total{");
}

fn end_sample(out: &mut ChunkedText, value: u64) {
    out.push_str("} ");
    out.push_str(itoa::Buffer::new().format(value));
    out.push_str("\n");
    out.line_end();
}

fn write_labels(
    out: &mut ChunkedText,
    local_ip: IpAddr,
    local_port: u16,
    remote_ip: IpAddr,
    remote_port: u16,
    role: &str,
) {
    out.push_str("src_ip=\"");
    write_ip(out, local_ip);
    out.push_str("\",src_port=\"");
    write_port(out, local_port);
    out.push_str("\",dst_ip=\"");
    write_ip(out, remote_ip);
    out.push_str("\",dst_port=\"");
    write_port(out, remote_port);
    out.push_str("\",role=\"");
    out.push_str(role);
    out.push_str("\"");
}

fn write_ip(out: &mut ChunkedText, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => write_ipv4(out, v4),
        // Rare next to IPv4, and its zero-run compression is best left to std.
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

fn write_ipv4(out: &mut ChunkedText, ip: Ipv4Addr) {
    let mut digits = itoa::Buffer::new();
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push_str(".");
        }
        out.push_str(digits.format(octet));
    }
}

/// An aggregated port (0) is an empty label value.
fn write_port(out: &mut ChunkedText, port: u16) {
    if port != 0 {
        out.push_str(itoa::Buffer::new().format(port));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::{FlowBytes, FlowKey, ROLE_CLIENT, ROLE_SERVER};
    use crate::chunked_text::tests::written;
    use crate::flows::{port_label, Flow};
    use crate::metrics::OVERFLOW_MARKER;
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::{
        DescriptorEncoder, EncodeLabelKey, EncodeLabelSet, LabelSetEncoder, NoLabelSet,
    };
    use prometheus_client::metrics::exemplar::Exemplar;
    use prometheus_client::metrics::MetricType;
    use prometheus_client::registry::{Registry, Unit};
    use std::fmt;

    fn table() -> FlowTable {
        let mut table = FlowTable::new(100, u64::MAX);
        // family, local, remote, local port, remote port, role, sent, received
        type Entry<'a> = (u16, &'a [u8], &'a [u8], u16, u16, u8, u64, u64);
        let entries: [Entry; 5] = [
            (
                2,
                &[10, 0, 0, 1],
                &[192, 168, 255, 254],
                0,
                443,
                ROLE_CLIENT,
                1,
                2,
            ),
            (
                2,
                &[127, 0, 0, 1],
                &[127, 0, 0, 1],
                8080,
                0,
                ROLE_SERVER,
                0,
                u64::MAX,
            ),
            (2, &[1, 2, 3, 4], &[5, 6, 7, 8], 40000, 22, 0, 12_345, 678),
            (
                10,
                &"2001:db8::1"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
                &std::net::Ipv6Addr::LOCALHOST.octets(),
                0,
                5432,
                ROLE_CLIENT,
                99,
                100,
            ),
            (
                10,
                &"::ffff:10.1.2.3"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
                &"fe80::1:2".parse::<std::net::Ipv6Addr>().unwrap().octets(),
                80,
                0,
                ROLE_SERVER,
                7,
                0,
            ),
        ];
        for (family, local, remote, lport, rport, role, sent, received) in entries {
            let mut key = FlowKey {
                family,
                local_port: lport,
                remote_port: rport,
                role,
                ..FlowKey::default()
            };
            key.local_addr[..local.len()].copy_from_slice(local);
            key.remote_addr[..remote.len()].copy_from_slice(remote);
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

    /// The same families through prometheus-client: the reference.
    fn reference(flows: &[Flow], overflow: Overflow, format: Format) -> String {
        #[derive(Debug)]
        struct Families(Vec<Flow>, Overflow);
        enum Labels<'a> {
            Flow(&'a Flow),
            Overflow,
        }
        impl EncodeLabelSet for Labels<'_> {
            fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
                let m = OVERFLOW_MARKER;
                let values = match self {
                    Labels::Flow(f) => [
                        f.local.ip().to_string(),
                        port_label(f.local.port()),
                        f.remote.ip().to_string(),
                        port_label(f.remote.port()),
                        f.role.as_str().to_owned(),
                    ],
                    Labels::Overflow => [m.into(), "".into(), m.into(), "".into(), m.into()],
                };
                let keys = ["src_ip", "src_port", "dst_ip", "dst_port", "role"];
                for (key, value) in keys.iter().zip(values) {
                    let mut label = encoder.encode_label();
                    let mut k = label.encode_label_key()?;
                    key.encode(&mut k)?;
                    let mut v = k.encode_label_value()?;
                    v.write_str(&value)?;
                    v.finish()?;
                }
                Ok(())
            }
        }
        impl Collector for Families {
            fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
                for (family, pick) in [(&SENT, 0), (&RECEIVED, 1)] {
                    let name = family.name.trim_end_matches("_bytes");
                    let mut metric = encoder.encode_descriptor(
                        name,
                        family.help,
                        Some(&Unit::Bytes),
                        MetricType::Counter,
                    )?;
                    let value = |f: &Flow| if pick == 0 { f.sent } else { f.received };
                    for flow in &self.0 {
                        metric
                            .encode_family(&Labels::Flow(flow))?
                            .encode_counter::<NoLabelSet, _, u64>(
                                &value(flow),
                                None::<&Exemplar<NoLabelSet, u64>>,
                            )?;
                    }
                    let overflow = if pick == 0 {
                        self.1.sent
                    } else {
                        self.1.received
                    };
                    metric
                        .encode_family(&Labels::Overflow)?
                        .encode_counter::<NoLabelSet, _, u64>(
                            &overflow,
                            None::<&Exemplar<NoLabelSet, u64>>,
                        )?;
                }
                Ok(())
            }
        }
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Families(flows.to_vec(), overflow)));
        let mut out = String::new();
        match format {
            Format::Text => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).unwrap()
            }
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &registry).unwrap()
            }
        }
        out.trim_end_matches("# EOF\n").to_owned()
    }

    #[test]
    fn output_matches_prometheus_client_in_both_formats() {
        let table = table();
        // Same iteration order for both: the table's.
        let flows: Vec<Flow> = table.flows();
        let overflow = Overflow {
            sent: 5,
            received: 6,
        };
        let write = |format| {
            let out = written(false, |w| {
                write_flow_families(w, &table, overflow, format);
            });
            String::from_utf8(out).unwrap()
        };
        for format in [Format::Text, Format::OpenMetrics] {
            assert_eq!(
                write(format),
                reference(&flows, overflow, format),
                "{format:?}"
            );
        }
        let text = write(Format::Text);
        for line in [
            r#"tcp_flow_sent_bytes_total{src_ip="10.0.0.1",src_port="",dst_ip="192.168.255.254",dst_port="443",role="client"} 1"#,
            r#"tcp_flow_received_bytes_total{src_ip="127.0.0.1",src_port="8080",dst_ip="127.0.0.1",dst_port="",role="server"} 18446744073709551615"#,
            r#"tcp_flow_sent_bytes_total{src_ip="1.2.3.4",src_port="40000",dst_ip="5.6.7.8",dst_port="22",role="unknown"} 12345"#,
            r#"tcp_flow_sent_bytes_total{src_ip="2001:db8::1",src_port="",dst_ip="::1",dst_port="5432",role="client"} 99"#,
            r#"tcp_flow_sent_bytes_total{src_ip="10.1.2.3",src_port="80",dst_ip="fe80::1:2",dst_port="",role="server"} 7"#,
            r#"tcp_flow_received_bytes_total{src_ip="overflow",src_port="",dst_ip="overflow",dst_port="",role="overflow"} 6"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
    }
}
