//! Root end-to-end test against a real Prometheus server (Debian's package,
//! unpacked by scripts/fetch-prometheus.sh): what Prometheus stores equals
//! the bytes the test moved, under the identity labels the test set up, and
//! their cost equals bytes × price at the prices of a --cost.file
//! (prometheus/cost.rs); every PromQL expression shipped in
//! grafana/dashboards and prometheus/rules.yml parses and returns data; and
//! the panels of the identity and network cost dashboards give the exact
//! rows of the real exporter's flows (prometheus/real_identity.rs,
//! prometheus/cost.rs). prometheus/fixture_rows.rs runs the identity
//! dashboard over a stand-in exporter with every kind of peer (Kubernetes
//! ones included), without root.

mod support;

#[path = "prometheus/cost.rs"]
mod cost;
#[path = "prometheus/fixture_rows.rs"]
mod fixture_rows;
#[path = "prometheus/identity_fixture.rs"]
mod identity_fixture;
#[path = "prometheus/real_identity.rs"]
mod real_identity;
#[path = "prometheus/rows.rs"]
mod rows;
#[path = "prometheus/server.rs"]
mod server;
#[path = "prometheus/shipped.rs"]
mod shipped;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cost::{assert_cost, PriceFile};
use real_identity::{assert_dashboard_rows, Moved, NamedNetwork, NETWORK, NODE_ZONE, REGION};
use server::{percent_encode, Prometheus};
use shipped::{condition_sides, dashboard_exprs, rule_exprs, substitute, substitute_with, Shipped};
use support::netns::Netns;
use support::traffic::Pair;
use support::{free_port, tools, Exporter};

/// The identity ("who talks to whom") dashboard.
const WHO: &str = "who-talks-to-whom.json";

fn who_dashboard() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("grafana/dashboards")
        .join(WHO)
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_prometheus_stores_exact_bytes_and_every_shipped_query_returns_data() {
    support::require_root();
    let Some(binary) = tools::prometheus() else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    // A peer in a network namespace, named by --labels.file with a zone of
    // its own, so the identity dashboard has a named network and cross-zone
    // bytes from the real exporter (no Kubernetes needed).
    let ns = Netns::new();
    let outside = ns.listen();
    let outside_addr = outside.local_addr().unwrap();
    let labels = NamedNetwork::around(&ns);
    // Both exporters price what they count (cross-zone bytes only), so the
    // cost rules and the network cost dashboard have data, the overflow
    // flow's cost included.
    let prices = PriceFile::new();
    let cost_file = format!("--cost.file={}", prices.path.display());
    // `exact` counts only the test's flows; `cramped` overflows its one-flow
    // table with Prometheus's own scrapes, so the overflow condition has
    // data; the third target is down. (Its socket maps keep their default
    // size: with one slot the socket backend would count one connection,
    // one flow, and never overflow.)
    let exact = Exporter::start(&[
        &format!(
            "--filter.port.include={},{}",
            server.port(),
            outside_addr.port()
        ),
        &format!("--labels.file={}", labels.path.display()),
        &format!("--node.zone={NODE_ZONE}"),
        &format!("--node.region={REGION}"),
        &cost_file,
    ]);
    let cramped = Exporter::start(&["--flows.max=1", &cost_file]);
    let down: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let prometheus = Prometheus::start(&binary, &[exact.addr, cramped.addr, down]);

    let mut pair = Pair::through(&listener, server);
    pair.exchange(123_456, 654_321);
    let mut veth = Pair::through(&outside, outside_addr);
    veth.exchange(3_456, 6_543);
    let instance = exact.addr;
    // The loopback pair's flows: its local address is 127.0.0.1 at both
    // ends, and its peer is loopback by class.
    let stored = |role: &str, counter: &str| {
        prometheus.value(&format!(
            r#"tcp_flow_{counter}_bytes_total{{instance="{instance}",src_ip="127.0.0.1",role="{role}",dst_kind="loopback",path="loopback"}}"#
        ))
    };
    // Both ends of the veth pair see the other end in the named network,
    // whose zone differs from this node's within one region.
    let named = |role: &str, counter: &str| {
        prometheus.value(&format!(
            r#"tcp_flow_{counter}_bytes_total{{instance="{instance}",role="{role}",dst_kind="network",dst_name="{NETWORK}",path="cross_zone"}}"#
        ))
    };
    prometheus.wait_for(Duration::from_secs(60), "holding the bytes moved", || {
        stored("client", "received") == Some(654_321)
    });
    assert_eq!(stored("client", "sent"), Some(123_456));
    assert_eq!(stored("server", "sent"), Some(654_321));
    assert_eq!(stored("server", "received"), Some(123_456));
    // The veth bytes move in two parts, the second once Prometheus holds
    // the first: increase(), which the network cost dashboard's tables
    // read, counts only what a counter grows by after its first sample.
    prometheus.wait_for(
        Duration::from_secs(60),
        "holding the first veth bytes",
        || named("client", "received") == Some(6_543),
    );
    veth.exchange(20_000, 70_000);
    prometheus.wait_for(Duration::from_secs(60), "holding the veth bytes", || {
        named("client", "received") == Some(76_543)
    });
    assert_eq!(named("client", "sent"), Some(23_456));
    assert_eq!(named("server", "sent"), Some(76_543));
    assert_eq!(named("server", "received"), Some(23_456));

    // Rates need two samples in their window, recording rules an evaluation
    // over them: wait until both exporters have two samples in a minute,
    // every rule has been evaluated without error, and every recording rule
    // has recorded the flows the test moved (role!="overflow" also matches
    // the rules that have no role label).
    let records: Vec<String> = rule_exprs()
        .into_iter()
        .filter(|r| !r.alert)
        .map(|r| r.origin.trim_start_matches("rules.yml ").to_owned())
        .collect();
    assert!(!records.is_empty(), "no recording rules in rules.yml");
    prometheus.wait_until(
        Duration::from_secs(60),
        "ready for the shipped queries",
        || {
            for target in [exact.addr, cramped.addr] {
                let samples = prometheus.value(&format!(
                    r#"count_over_time(tcp_flow_exporter_build_info{{instance="{target}"}}[1m])"#
                ));
                if samples.unwrap_or(0) < 2 {
                    return Err(format!("{target}: {samples:?} samples in the last minute"));
                }
            }
            prometheus.rules_healthy()?;
            for record in &records {
                // A constant (the cost alert's threshold) has no instance.
                // Recorded a second ago, so that the dashboards' subqueries,
                // which the test samples every second, see it.
                let series = format!(
                    r#"{record}{{instance="{instance}",role!="overflow"}} offset 1s or {record}{{instance=""}} offset 1s"#
                );
                match prometheus.query(&series) {
                    Ok(result) if !result.is_empty() => {}
                    other => return Err(format!("{series}: nothing recorded yet ({other:?})")),
                }
            }
            Ok(())
        },
    );
    let shipped: Vec<Shipped> = dashboard_exprs().into_iter().chain(rule_exprs()).collect();
    assert!(
        shipped.len() >= 10,
        "only {} expressions found",
        shipped.len()
    );
    let mut failures = Vec::new();
    for item in &shipped {
        let expr = substitute(&item.expr);
        let outcome = match prometheus.query(&expr) {
            Err(e) => Err(format!("does not run: {e}")),
            Ok(result) if !result.is_empty() => Ok(()),
            Ok(_) if item.alert => match condition_sides(&expr) {
                // A quiet alert: each side of its condition must still see
                // data (a threshold that is a number needs no query).
                Some((lhs, rhs)) => [lhs, rhs]
                    .into_iter()
                    .filter(|side| side.parse::<f64>().is_err())
                    .try_for_each(|side| match prometheus.query(side) {
                        Ok(r) if !r.is_empty() => Ok(()),
                        other => Err(format!("condition side {side:?} has no data: {other:?}")),
                    }),
                None => Err("empty, and not of the form `expr OP expr`".into()),
            },
            Ok(_) => Err("returns no data".into()),
        };
        if let Err(why) = outcome {
            failures.push(format!("{}: {expr}\n    {why}", item.origin));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The conditions the test set up really fire; the cross-zone cost
    // alert's does with a threshold below the test's few cents a day.
    let alert_expr = |alert: &str| {
        let rule = shipped
            .iter()
            .find(|s| s.origin.ends_with(alert))
            .unwrap_or_else(|| panic!("no alert {alert}"));
        rule.expr.clone()
    };
    let costly = alert_expr("TcpFlowCrossZoneCostHigh")
        .replace("tcp_flow_cost:cross_zone_per_day:threshold", "vector(0)");
    for (alert, expr) in [
        ("TcpFlowExporterDown", alert_expr("TcpFlowExporterDown")),
        (
            "TcpFlowExporterOverflow",
            alert_expr("TcpFlowExporterOverflow"),
        ),
        ("TcpFlowCrossZoneCostHigh", costly),
    ] {
        let result = prometheus.query(&expr).unwrap();
        assert!(!result.is_empty(), "{alert} does not fire: {expr}");
    }

    // The identity dashboard, filtered to the exporter that counted the
    // test's flows, gives exactly their bytes.
    let moved = Moved {
        instance,
        loopback: 123_456 + 654_321,
        veth: &ns,
        up: 23_456,
        down: 76_543,
    };
    assert_dashboard_rows(&prometheus, &moved);
    assert_cost(&prometheus, &moved);
}

#[test]
fn substitution_and_condition_splitting() {
    assert_eq!(
        substitute(r#"sum(rate(x{a=~"$src", b=~"${role}"}[$__rate_interval]))"#),
        r#"sum(rate(x{a=~".*", b=~".*"}[1m]))"#
    );
    // label_replace's groups stay; named variables take the value given.
    assert_eq!(
        substitute_with(
            r#"label_replace(x{n=~"$namespace", w=~"$workload"}, "t", "$1/$2", "k", "(.*)/(.*)")"#,
            &[("namespace", "pay")]
        ),
        r#"label_replace(x{n=~"pay", w=~".*"}, "t", "$1/$2", "k", "(.*)/(.*)")"#
    );
    assert_eq!(
        condition_sides("rate(x[5m]) > 0"),
        Some(("rate(x[5m])", "0"))
    );
    assert_eq!(
        condition_sides(r#"max by (map) (y{map=~"a|b"}) >= 0.9"#),
        Some((r#"max by (map) (y{map=~"a|b"})"#, "0.9"))
    );
    assert_eq!(
        condition_sides("sum by (c) (x) * 86400\n  > on () group_left () t:x:threshold\n"),
        Some(("sum by (c) (x) * 86400", "t:x:threshold"))
    );
    assert_eq!(
        condition_sides("a > bool ignoring(c) group_right(d) b"),
        Some(("a", "b"))
    );
    assert_eq!(condition_sides("sum(a)"), None);
    assert_eq!(
        substitute("sum_over_time(r[$__range:1h]) * 3600"),
        "sum_over_time(r[5m:1s]) * 3600"
    );
    assert_eq!(percent_encode("a{b=\"c\"}"), "a%7Bb%3D%22c%22%7D");
}
