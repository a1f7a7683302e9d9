//! What the traffic costs, through a real Prometheus: the exporter prices
//! the veth pair's cross-zone bytes at the prices of a --cost.file the test
//! writes, Prometheus stores exactly bytes × price (up to float rounding),
//! and the network cost dashboard's top cost drivers and destinations are
//! those flows.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::real_identity::{Moved, NETWORK};
use crate::rows::float_rows;
use crate::server::Prometheus;
use crate::shipped::{panel_targets, substitute_with};
use crate::support::temp_path;

/// The network cost dashboard.
pub const COST: &str = "network-cost.json";

/// Prices per GB (10^9 bytes) of cross-zone bytes sent and received. No
/// other path has a price: loopback bytes cost nothing.
pub const EGRESS: f64 = 0.01;
pub const INGRESS: f64 = 0.02;
const GB: f64 = 1e9;

/// A --cost.file with the prices above. Removed when dropped.
pub struct PriceFile {
    pub path: PathBuf,
}

impl PriceFile {
    pub fn new() -> PriceFile {
        let path = temp_path("cost.yaml");
        std::fs::write(
            &path,
            format!(
                "currency: USD\nunit: GB\nprices:\n  cross_zone: {{egress: {EGRESS}, ingress: {INGRESS}}}\n"
            ),
        )
        .unwrap();
        PriceFile { path }
    }
}

impl Drop for PriceFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What `sent` and `received` cross-zone bytes cost.
fn cost_of(sent: u64, received: u64) -> f64 {
    sent as f64 / GB * EGRESS + received as f64 / GB * INGRESS
}

/// Equal up to float rounding: the exporter adds what each read costs,
/// the test multiplies once.
fn assert_close(got: Option<f64>, want: f64, what: &str) {
    let close = got.is_some_and(|got| (got - want).abs() <= want.abs() * 1e-9 + 1e-15);
    assert!(close, "{what}: cost {got:?}, want {want}");
}

/// The cost Prometheus stores for each end of the veth connection is its
/// bytes times the prices; the loopback connection costs nothing; the
/// price gauges say the prices; and the dashboard's top cost drivers and
/// destinations, filtered to `moved.instance`, are exactly these flows.
pub fn assert_cost(prometheus: &Prometheus, moved: &Moved) {
    let instance = moved.instance;
    let (up, down) = (moved.up, moved.down);
    let veth = |role: &str| {
        format!(
            r#"tcp_flow_cost_total{{instance="{instance}",role="{role}",dst_kind="network",dst_name="{NETWORK}",path="cross_zone",currency="USD"}}"#
        )
    };
    // The client end sent `up` and received `down`; the server end the
    // other way round. Each end is billed for its own bytes.
    for (role, sent, received) in [("client", up, down), ("server", down, up)] {
        let stored = prometheus.float(&veth(role));
        assert_close(stored, cost_of(sent, received), &veth(role));
    }
    let loopback = format!(r#"sum(tcp_flow_cost_total{{instance="{instance}",path="loopback"}})"#);
    assert_eq!(prometheus.float(&loopback), Some(0.0), "{loopback}");
    for (direction, price) in [("egress", EGRESS), ("ingress", INGRESS)] {
        let gauge = format!(
            r#"tcp_flow_exporter_price{{instance="{instance}",path="cross_zone",direction="{direction}",currency="USD",unit="GB"}}"#
        );
        assert_eq!(prometheus.float(&gauge), Some(price), "{gauge}");
    }

    // Both ends are the test's own sockets: one source workload (perhaps
    // none), one destination, one row.
    let sources = float_rows(
        prometheus,
        &format!(
            "count by (src_namespace, src_workload) ({})",
            veth("client")
        ),
        &["src_namespace", "src_workload"],
    );
    let [(namespace, workload)] = sources
        .keys()
        .map(|k| (k[0].as_str(), k[1].as_str()))
        .collect::<Vec<_>>()[..]
    else {
        panic!("not one source of the veth client end: {sources:?}");
    };
    let source = match namespace {
        "" => workload.to_owned(),
        _ => format!("{namespace}/{workload}"),
    };
    let both = cost_of(up, down) + cost_of(down, up);
    let key = vec![source, NETWORK.to_owned(), "cross_zone".to_owned()];
    let keys = ["source", "destination", "path"];
    let drivers = "Top 10 cost drivers in the time range ($currency)";
    let costs = panel_values(prometheus, (drivers, "A"), instance, &keys);
    assert_eq!(costs.keys().collect::<Vec<_>>(), [&key], "{costs:?}");
    assert_close(costs.get(&key).copied(), both, drivers);
    let bytes = panel_values(prometheus, (drivers, "B"), instance, &keys);
    assert_eq!(bytes, BTreeMap::from([(key, 2.0 * (up + down) as f64)]));

    // A day at the rate of the moment, which last_over_time makes the
    // counter itself: the named network's cost; loopback and the overflow
    // flow (always there) cost nothing.
    let destinations = "Cost per day by destination, top 10 ($currency)";
    let per_day = panel_values(prometheus, (destinations, "A"), instance, &["destination"]);
    let want = [
        ("loopback", 0.0),
        ("overflow", 0.0),
        (NETWORK, both * 86400.0),
    ];
    let names: Vec<&str> = per_day.keys().map(|k| k[0].as_str()).collect();
    assert_eq!(names, want.map(|(name, _)| name), "{per_day:?}");
    for (name, cost) in want {
        let got = per_day.get(&vec![name.to_owned()]).copied();
        assert_close(got, cost, &format!("{destinations}: {name}"));
    }
}

/// The rows of target `ref_id` of the network cost dashboard's panel
/// `title`, filtered to `instance`, with `increase` and `rate` read as
/// `last_over_time`: each is then the counter itself, exact.
fn panel_values(
    prometheus: &Prometheus,
    (title, ref_id): (&str, &str),
    instance: std::net::SocketAddr,
    keys: &[&str],
) -> BTreeMap<Vec<String>, f64> {
    let (_, expr) = panel_targets(COST, title)
        .into_iter()
        .find(|(r, _)| r == ref_id)
        .unwrap_or_else(|| panic!("{title}: no target {ref_id}"));
    let instance = instance.to_string();
    let expr = substitute_with(&expr, &[("instance", &instance)])
        .replace("increase(", "last_over_time(")
        .replace("rate(", "last_over_time(");
    float_rows(prometheus, &expr, keys)
}
