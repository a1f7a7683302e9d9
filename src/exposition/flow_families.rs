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

use super::chunked::ChunkedText;
use super::format::Format;
use crate::flows::key::shown_port;
use crate::flows::FlowTable;
use crate::source::Overflow;

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
pub fn write(out: &mut ChunkedText, table: &FlowTable, overflow: Overflow, format: Format) {
    // Each flow's labels are formatted once, into the first family; the
    // second family copies them from there (`spans`, 24 bytes a flow: where
    // the labels are, and the received bytes), so no label is formatted
    // twice. The first family's chunks are kept, read-only, until then.
    let mut spans = Vec::with_capacity(table.len() + 1);
    out.keep_chunks();
    header(out, &SENT, format);
    for series in table.series() {
        let labels = &series.labels;
        start_sample(out, &SENT);
        let start = out.mark();
        write_labels(
            out,
            labels.local.ip(),
            labels.local.port(),
            labels.remote.ip(),
            labels.remote.port(),
            labels.role.as_str(),
        );
        // Written once per identity, when it was first seen.
        out.push_str(labels.identity.text());
        spans.push((out.span_from(start), series.received));
        end_sample(out, series.sent);
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

/// The label value that marks the overflow flow (`src_ip`, `dst_ip` and
/// `role`; its ports are empty): the bytes that found no room, so that sums
/// over all series stay exact.
macro_rules! overflow_marker {
    () => {
        "overflow"
    };
}
pub const OVERFLOW_MARKER: &str = overflow_marker!();

/// The overflow flow's labels; it has no identity labels (all empty).
pub const OVERFLOW_LABELS: &str = concat!(
    r#"src_ip=""#,
    overflow_marker!(),
    r#"",src_port="",dst_ip=""#,
    overflow_marker!(),
    r#"",dst_port="",role=""#,
    overflow_marker!(),
    r#"""#
);

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

/// A port folded away by the kernel is an empty label value.
fn write_port(out: &mut ChunkedText, port: u16) {
    if let Some(port) = shown_port(port) {
        out.push_str(itoa::Buffer::new().format(port));
    }
}

#[cfg(test)]
mod tests;
