//! The flow families against prometheus-client's own encoder.

use super::*;
use crate::exposition::chunked::tests::written;
use crate::flows::key::shown_port;
use crate::flows::{Flow, Role};
use crate::identity::labels::{Identity, LABEL_NAMES};
use crate::kernel::skel::key_bytes;
use crate::test_support::{key, table_of};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelKey, EncodeLabelSet, LabelSetEncoder, NoLabelSet,
};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::fmt;

fn table() -> FlowTable {
    table_of(&[
        (key("10.0.0.1:0", "192.168.255.254:443", Role::Client), 1, 2),
        (
            key("127.0.0.1:8080", "127.0.0.1:0", Role::Server),
            0,
            u64::MAX,
        ),
        (
            key("1.2.3.4:40000", "5.6.7.8:22", Role::Unknown),
            12_345,
            678,
        ),
        (key("[2001:db8::1]:0", "[::1]:5432", Role::Client), 99, 100),
        (
            key("[::ffff:10.1.2.3]:80", "[fe80::1:2]:0", Role::Server),
            7,
            0,
        ),
    ])
}

/// A port label's text, as the reference writes it.
fn label(port: u16) -> String {
    shown_port(port).map_or_else(String::new, |p| p.to_string())
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
            let values: Vec<String> = match self {
                Labels::Flow(f) => {
                    let (local, peer) = (&f.identity.local, &f.identity.peer);
                    [
                        f.local.ip().to_string(),
                        label(f.local.port()),
                        f.remote.ip().to_string(),
                        label(f.remote.port()),
                        f.role.as_str().to_owned(),
                        local.namespace.to_string(),
                        local.pod.to_string(),
                        local.workload.to_string(),
                        peer.kind.as_str().to_owned(),
                        peer.namespace.to_string(),
                        peer.name.to_string(),
                        peer.workload.to_string(),
                        f.identity.path.as_str().to_owned(),
                    ]
                    .into()
                }
                Labels::Overflow => [m, "", m, "", m]
                    .into_iter()
                    .chain([""; 8])
                    .map(String::from)
                    .collect(),
            };
            let keys = ["src_ip", "src_port", "dst_ip", "dst_port", "role"];
            assert_eq!(values.len(), keys.len() + LABEL_NAMES.len());
            // The flow's own labels always, identity labels when not empty.
            let pairs = keys.iter().chain(&LABEL_NAMES).zip(values).enumerate();
            for (key, value) in pairs
                .filter(|(i, (_, v))| *i < keys.len() || !v.is_empty())
                .map(|(_, pair)| pair)
            {
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
    let text_in = |format| {
        let out = written(false, |w| {
            let overflow = OverflowTotals {
                bytes: overflow,
                cost: 0.0,
            };
            write(w, &table, overflow, format);
        });
        String::from_utf8(out).unwrap()
    };
    for format in [Format::Text, Format::OpenMetrics] {
        assert_eq!(
            text_in(format),
            reference(&flows, overflow, format),
            "{format:?}"
        );
    }
    let text = text_in(Format::Text);
    let id = r#",dst_kind="private",path="unknown""#;
    let none = "";
    for line in [
        r#"tcp_flow_sent_bytes_total{src_ip="10.0.0.1",src_port="",dst_ip="192.168.255.254",dst_port="443",role="client"ID} 1"#,
        r#"tcp_flow_received_bytes_total{src_ip="127.0.0.1",src_port="8080",dst_ip="127.0.0.1",dst_port="",role="server"ID} 18446744073709551615"#,
        r#"tcp_flow_sent_bytes_total{src_ip="1.2.3.4",src_port="40000",dst_ip="5.6.7.8",dst_port="22",role="unknown"ID} 12345"#,
        r#"tcp_flow_sent_bytes_total{src_ip="2001:db8::1",src_port="",dst_ip="::1",dst_port="5432",role="client"ID} 99"#,
        r#"tcp_flow_sent_bytes_total{src_ip="10.1.2.3",src_port="80",dst_ip="fe80::1:2",dst_port="",role="server"ID} 7"#,
        r#"tcp_flow_received_bytes_total{src_ip="overflow",src_port="",dst_ip="overflow",dst_port="",role="overflow"NONE} 6"#,
    ] {
        let line = line.replace("ID", id).replace("NONE", none);
        assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
    }
}

/// Gives every flow the same identity, with a pod name of `len` bytes.
#[derive(Debug)]
struct LongPod(usize);

impl crate::identity::resolver::Identify for LongPod {
    fn refresh(&mut self) -> u64 {
        1
    }
    fn identify(&mut self, _: &crate::identity::resolver::FlowEnds) -> std::sync::Arc<Identity> {
        use crate::identity::labels::{Local, Path, Peer};
        let local = Local {
            namespace: "shop".into(),
            pod: "p".repeat(self.0).into(),
            workload: "web".into(),
        };
        let peer = Peer::of_kind(crate::identity::PeerKind::Internet);
        std::sync::Arc::new(Identity::new(local, peer, Path::Internet))
    }
    fn prune(&mut self) {}
}

#[test]
fn identities_of_any_length_are_written_as_prometheus_client_would() {
    // From a few bytes to far more than a flow's own labels.
    for pod in [10, 250, 300, 400, 5_000] {
        let mut table = FlowTable::with_identity(10, u64::MAX, Box::new(LongPod(pod)));
        for (key, sent, received) in [
            (key("10.0.0.1:0", "192.168.255.254:443", Role::Client), 1, 2),
            (key("[2001:db8::1]:0", "[::1]:5432", Role::Client), 99, 100),
        ] {
            crate::source::FlowSink::add(&mut table, &key_bytes(&key), sent, received, 1);
        }
        let overflow = Overflow {
            sent: 5,
            received: 6,
        };
        let totals = OverflowTotals {
            bytes: overflow,
            cost: 0.0,
        };
        let text = text_of(&table, totals);
        assert_eq!(
            text,
            reference(&table.flows(), overflow, Format::Text),
            "pod of {pod} bytes"
        );
        assert!(text.contains(&"p".repeat(pod)));
    }
}

fn text_of(table: &FlowTable, overflow: OverflowTotals) -> String {
    String::from_utf8(written(false, |w| write(w, table, overflow, Format::Text))).unwrap()
}

#[test]
fn only_chosen_labels_are_written_and_overflow_stays_marked() {
    use crate::flows::selection::LabelSelection;
    let cases = [
        // Flow labels only, some of them.
        (
            "src_ip,role",
            r#"tcp_flow_sent_bytes_total{src_ip="10.0.0.1",role="client"} 1"#,
            r#"tcp_flow_sent_bytes_total{src_ip="overflow",role="overflow"} 5"#,
        ),
        // Identity labels only: no leading comma, and the overflow flow is
        // marked in them.
        (
            "dst_kind,path",
            r#"tcp_flow_sent_bytes_total{dst_kind="private",path="unknown"} 12471"#,
            r#"tcp_flow_sent_bytes_total{dst_kind="overflow",path="overflow"} 5"#,
        ),
        (
            "dst_port,path",
            r#"tcp_flow_sent_bytes_total{dst_port="443",path="unknown"} 1"#,
            r#"tcp_flow_sent_bytes_total{dst_port="",path="overflow"} 5"#,
        ),
    ];
    for (chosen, flow, overflow) in cases {
        let selection = LabelSelection::parse(chosen).unwrap();
        let mut table = FlowTable::new(10, u64::MAX).with_selection(selection);
        for (key, sent, received) in [
            (key("10.0.0.1:0", "192.168.255.254:443", Role::Client), 1, 2),
            (
                key("1.2.3.4:40000", "5.6.7.8:22", Role::Unknown),
                12_345,
                678,
            ),
            (key("1.2.3.5:40001", "5.6.7.8:22", Role::Client), 125, 0),
        ] {
            crate::source::FlowSink::add(&mut table, &key_bytes(&key), sent, received, 1);
        }
        let totals = OverflowTotals {
            bytes: Overflow {
                sent: 5,
                received: 6,
            },
            cost: 0.0,
        };
        let text = text_of(&table, totals);
        for line in [flow, overflow] {
            assert!(
                text.lines().any(|l| l == line),
                "{chosen}: missing {line}\n{text}"
            );
        }
    }
}

#[test]
fn cost_follows_the_same_labels_with_the_currency() {
    use crate::cost::{Price, Prices, Unit};
    use crate::identity::labels::Path;
    use std::sync::Arc;
    let prices = Prices::new(
        "EUR".into(),
        Unit::Gib,
        vec![(
            Path::Unknown,
            Price {
                egress: Some(1.0),
                ingress: Some(2.0),
            },
        )],
        vec![],
    );
    let (_publish, feed) = tokio::sync::watch::channel(Arc::new(prices));
    let mut table = FlowTable::new(10, u64::MAX).with_prices(feed);
    let gib = 1u64 << 30;
    let flow = key("10.0.0.1:0", "192.168.255.254:443", Role::Client);
    crate::source::FlowSink::add(&mut table, &key_bytes(&flow), gib, 3 * gib, 1);
    let totals = OverflowTotals {
        bytes: Overflow::default(),
        cost: 0.25,
    };
    let text = text_of(&table, totals);
    for line in [
        "# TYPE tcp_flow_cost_total counter",
        r#"tcp_flow_cost_total{src_ip="10.0.0.1",src_port="",dst_ip="192.168.255.254",dst_port="443",role="client",dst_kind="private",path="unknown",currency="EUR"} 7.0"#,
        r#"tcp_flow_cost_total{src_ip="overflow",src_port="",dst_ip="overflow",dst_port="",role="overflow",currency="EUR"} 0.25"#,
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
    }
    // Without prices there is no cost family.
    assert!(!text_of(&table_of(&[]), totals).contains("tcp_flow_cost"));
}
