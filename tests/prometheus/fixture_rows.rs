//! The identity dashboard's rows over the stand-in exporter of
//! identity_fixture.rs, which has every kind of peer (Kubernetes ones
//! included): no root and no cluster needed.

use std::time::Duration;

use crate::identity_fixture;
use crate::rows::{expect, panel_rows};
use crate::server::Prometheus;
use crate::shipped::{dashboard_exprs_in, substitute};
use crate::support::tools;
use crate::{who_dashboard, WHO};

/// Every query of the identity dashboard returns data over the stand-in
/// exporter, and gives the rows its fixed flows make: the dashboard's
/// expressions with `rate` read as `last_over_time`, so that each rate is
/// the fixture's counter itself.
#[test]
fn identity_dashboard_rows_match_the_fixture_flows() {
    let Some(binary) = tools::prometheus() else {
        return;
    };
    let target = identity_fixture::serve();
    let prometheus = Prometheus::start(&binary, &[target]);
    prometheus.wait_for(
        Duration::from_secs(60),
        "two scrapes of the fixture",
        || {
            let samples = prometheus.value(r#"count_over_time(tcp_flow_exporter_build_info[1m])"#);
            samples.unwrap_or(0) >= 2
        },
    );
    let exprs = dashboard_exprs_in(&who_dashboard());
    assert_eq!(exprs.len(), 10, "queries in {WHO}");
    for item in &exprs {
        let expr = substitute(&item.expr);
        match prometheus.query(&expr) {
            Ok(result) if !result.is_empty() => {}
            other => panic!("{}: {expr}\n    {other:?}", item.origin),
        }
    }

    let exact = |title: &str, ref_id: &str, vars: &[(&str, &str)], keys: &[&str]| {
        panel_rows(&prometheus, (WHO, title, ref_id), vars, keys)
    };
    let graph = "Who talks to whom (bytes per second)";
    let edges = exact(graph, "edges", &[], &["source", "target"]);
    assert_eq!(
        edges,
        expect(&[
            (&["shop/api", "shop/db"], 1_000),
            (&["shop/db", "shop/api"], 5_000),
            (&["shop/api", "pay/payments (Service)"], 300),
            (&["pay/payments", "shop/api"], 700),
            (&["shop/api", "vpc-payments"], 2_000),
            (&["vpc-payments", "shop/api"], 100),
            (&["shop/api", "internet"], 50),
            (&["internet", "shop/api"], 4_000),
            (&["shop/api", "private"], 60),
            (&["private", "shop/api"], 80),
            (&["nginx.service", "internet"], 9_000),
            (&["internet", "nginx.service"], 400),
            (&["192.168.1.10", "node node-b"], 10),
            (&["kube-system/coredns", "loopback"], 1),
        ])
    );
    let ids = exact(graph, "edges", &[], &["id"]);
    assert!(
        ids.contains_key(&vec!["shop/api -> shop/db".to_owned()]),
        "{ids:?}"
    );
    assert_eq!(ids.len(), edges.len(), "one id per edge: {ids:?}");
    // A filter keeps the edges with either end in it.
    assert_eq!(
        exact(
            graph,
            "edges",
            &[("namespace", "pay")],
            &["source", "target"]
        ),
        expect(&[
            (&["pay/payments", "shop/api"], 700),
            (&["shop/api", "pay/payments (Service)"], 300),
        ])
    );
    assert_eq!(
        exact(
            graph,
            "edges",
            &[("workload", "nginx.service")],
            &["source", "target"]
        ),
        expect(&[
            (&["nginx.service", "internet"], 9_000),
            (&["internet", "nginx.service"], 400),
        ])
    );

    let by_path = "Bytes per second by path";
    assert_eq!(
        exact(by_path, "A", &[], &["path"]),
        expect(&[
            (&["cross_zone"], 6_000),
            (&["unknown"], 360),
            (&["same_zone"], 710),
            (&["cross_region"], 2_000),
            (&["internet"], 9_050),
            (&["loopback"], 1),
        ])
    );
    assert_eq!(
        exact(by_path, "B", &[], &["path"]),
        expect(&[
            (&["cross_zone"], 6_000),
            (&["unknown"], 780),
            (&["same_zone"], 320),
            (&["cross_region"], 100),
            (&["internet"], 4_400),
            (&["loopback"], 2),
        ])
    );

    let destinations = "Top internet and named-network destinations";
    let keys = ["dst_kind", "destination", "path"];
    assert_eq!(
        exact(destinations, "A", &[], &keys),
        expect(&[
            (&["network", "vpc-payments", "cross_region"], 2_000),
            (&["internet", "93.184.216.34", "internet"], 50),
            (&["internet", "203.0.113.9", "internet"], 9_000),
        ])
    );
    assert_eq!(
        exact(destinations, "B", &[], &keys),
        expect(&[
            (&["network", "vpc-payments", "cross_region"], 100),
            (&["internet", "93.184.216.34", "internet"], 4_000),
            (&["internet", "203.0.113.9", "internet"], 400),
        ])
    );

    let workload = ["src_namespace", "src_workload"];
    assert_eq!(
        exact("Top 10 workloads sending across zones", "A", &[], &workload),
        expect(&[(&["shop", "api"], 3_000), (&["shop", "db"], 5_000)])
    );
    // The Service call's client end has path unknown: the backend's server
    // end (same_zone) is not cross-zone, and db's (cross_zone) is.
    assert_eq!(
        exact(
            "Top 10 workloads serving across zones (server ends)",
            "A",
            &[],
            &workload
        ),
        expect(&[(&["shop", "db"], 6_000)])
    );
    assert_eq!(
        exact("Flows without identity", "A", &[], &["end"]),
        expect(&[(&["src"], 1), (&["dst"], 0)])
    );
}
