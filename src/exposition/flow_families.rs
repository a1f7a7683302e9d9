//! The flow counter families, written straight into the response text: bytes
//! sent and received, and with --cost.file what they cost.
//!
//! prometheus-client's encoder cost about 1.1 µs per series here (label
//! values through `fmt::Display`, one `Write` call per fragment): 230 ms of
//! a scrape at 100k flows, 200k series. This writer formats each flow's
//! labels once for both families and its numbers with `itoa`, and produces
//! byte-for-byte what prometheus-client would (a test below compares the
//! two). `cargo bench --bench exporter -- encode` measures it (0.13 µs per
//! flow at 100k flows); BENCHMARKS.md has the numbers.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::chunked::ChunkedText;
use super::format::Format;
use crate::flows::selection::{FlowLabel, LabelSelection};
use crate::flows::FlowTable;
use crate::identity::labels::{escape_into, LABEL_NAMES};
use crate::source::Overflow;
use flow_text::{FlowTemplate, StackText};

struct Family {
    /// Name without the `_total` suffix.
    name: &'static str,
    /// A sample's start: the name with `_total{`.
    sample: &'static str,
    help: &'static str,
}

const SENT: Family = Family {
    name: "tcp_flow_sent_bytes",
    sample: "tcp_flow_sent_bytes_total{",
    help: "TCP payload bytes the local socket (src) sent to its peer (dst).",
};
const RECEIVED: Family = Family {
    name: "tcp_flow_received_bytes",
    sample: "tcp_flow_received_bytes_total{",
    help: "TCP payload bytes the local socket (src) received from its peer (dst).",
};
const COST: Family = Family {
    name: "tcp_flow_cost",
    sample: "tcp_flow_cost_total{",
    help: "What the bytes cost at the --cost.file prices in force when they were read: sent \
           bytes at the egress price, received bytes at the ingress price.",
};

/// Bytes a series line takes on average, to size the output once.
const LINE_ESTIMATE: usize = 128;

/// Room for both flow families of `flows` flows, the overflow flow and the
/// self-metrics, so the body is written without growing its buffer.
pub fn body_estimate(flows: usize) -> usize {
    (flows + 1) * LINE_ESTIMATE * 2 + 64 * 1024
}

/// What the overflow flow adds to the families.
#[derive(Clone, Copy, Debug, Default)]
pub struct OverflowTotals {
    pub bytes: Overflow,
    pub cost: f64,
}

/// Appends the flow families, each with the overflow flow, to `out`: bytes
/// sent and received, and their cost when the table has prices.
pub fn write(out: &mut ChunkedText, table: &FlowTable, overflow: OverflowTotals, format: Format) {
    let chosen = table.selection();
    let currency = table.prices().map(|prices| {
        let mut label = String::from("currency=\"");
        escape_into(&mut label, &prices.currency);
        label.push('"');
        label
    });
    // Each flow's labels are formatted once, into the first family; the
    // others copy them from there (`spans`, 24 bytes a flow: where the
    // labels are, and the received bytes; `costs`, 8 more with prices), so
    // no label is formatted twice. The first family's chunks are kept,
    // read-only, until then.
    let mut spans = Vec::with_capacity(table.len() + 1);
    let mut costs = Vec::with_capacity(if currency.is_some() {
        table.len() + 1
    } else {
        0
    });
    out.keep_chunks();
    header(out, &SENT, format);
    let template = FlowTemplate::new(chosen);
    let (mut flow, mut tail) = (StackText::default(), StackText::default());
    for series in table.series() {
        start_sample(out, &SENT);
        let start = out.mark();
        flow.clear();
        template.write(&series.labels, &mut flow);
        out.push_bytes(flow.as_bytes());
        // Written once per identity, when it was first seen, with a leading
        // comma that only a series without flow labels drops.
        let identity = series.labels.identity.text();
        match template.any() {
            true => out.push_str(identity),
            false => out.push_str(identity.strip_prefix(',').unwrap_or(identity)),
        }
        spans.push((out.span_from(start), series.received));
        if currency.is_some() {
            costs.push(series.cost);
        }
        tail.clear();
        tail.sample_end(series.sent);
        out.push_bytes(tail.as_bytes());
        out.line_end();
    }
    start_sample(out, &SENT);
    let start = out.mark();
    out.push_str(&overflow_labels(chosen));
    spans.push((out.span_from(start), overflow.bytes.received));
    costs.push(overflow.cost);
    end_sample(out, overflow.bytes.sent);
    // Every span is now in a chunk sent and kept.
    out.flush();

    header(out, &RECEIVED, format);
    for &(span, value) in &spans {
        start_sample(out, &RECEIVED);
        out.copy(span);
        tail.clear();
        tail.sample_end(value);
        out.push_bytes(tail.as_bytes());
        out.line_end();
    }
    if let Some(currency) = currency {
        cost_header(out, format);
        for (&(span, _), cost) in spans.iter().zip(costs) {
            start_sample(out, &COST);
            out.copy(span);
            if !span.is_empty() {
                out.push_str(",");
            }
            out.push_str(&currency);
            out.push_str("} ");
            out.push_str(ryu::Buffer::new().format(cost));
            out.push_str("\n");
            out.line_end();
        }
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

/// The overflow flow's labels under the chosen ones: `overflow` in
/// `src_ip`, `dst_ip` and `role`, ports empty, no identity labels. When
/// none of those three is chosen, every chosen identity label says
/// `overflow` instead, so that the series stays apart from the others.
pub fn overflow_labels(chosen: LabelSelection) -> Cow<'static, str> {
    if chosen.is_all() {
        return Cow::Borrowed(OVERFLOW_LABELS);
    }
    let marker = format!("\"{OVERFLOW_MARKER}\"");
    let mut labels: Vec<String> = Vec::new();
    let flow = [
        (FlowLabel::SrcIp, "src_ip", marker.as_str()),
        (FlowLabel::SrcPort, "src_port", "\"\""),
        (FlowLabel::DstIp, "dst_ip", marker.as_str()),
        (FlowLabel::DstPort, "dst_port", "\"\""),
        (FlowLabel::Role, "role", marker.as_str()),
    ];
    for (label, name, value) in flow {
        if chosen.has(label) {
            labels.push(format!("{name}={value}"));
        }
    }
    if !chosen.marks_overflow_by_flow_labels() {
        for (bit, name) in LABEL_NAMES.iter().enumerate() {
            if chosen.identity() & (1 << bit) != 0 {
                labels.push(format!("{name}={marker}"));
            }
        }
    }
    Cow::Owned(labels.join(","))
}

fn cost_header(out: &mut ChunkedText, format: Format) {
    // Money has no unit Prometheus knows; the currency is a label.
    let name = match format {
        Format::Text => format!("{}_total", COST.name),
        Format::OpenMetrics => COST.name.to_owned(),
    };
    let _ = writeln!(out, "# HELP {name} {}", COST.help);
    let _ = writeln!(out, "# TYPE {name} counter");
}

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
    out.push_str(family.sample);
}

fn end_sample(out: &mut ChunkedText, value: u64) {
    out.push_str("} ");
    out.push_str(itoa::Buffer::new().format(value));
    out.push_str("\n");
    out.line_end();
}

mod flow_text;

#[cfg(test)]
mod tests;
