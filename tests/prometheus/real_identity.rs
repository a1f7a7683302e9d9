//! The identity dashboard over the real exporter: a named network the test
//! writes around a network namespace's veth pair, and the exact rows each
//! panel gives for the bytes the test moved.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use crate::rows::{expect, panel_rows, rows, Rows};
use crate::server::Prometheus;
use crate::support::netns::Netns;
use crate::support::temp_path;
use crate::WHO;

pub const NETWORK: &str = "tfe-test-vpc";
pub const NODE_ZONE: &str = "zone-a";
pub const REGION: &str = "region-1";

/// A --labels.file naming the /30 of a namespace's veth pair (both ends) as
/// NETWORK, in another zone of this node's region. Removed when dropped.
pub struct NamedNetwork {
    pub path: PathBuf,
}

impl NamedNetwork {
    pub fn around(ns: &Netns) -> NamedNetwork {
        let base = Ipv4Addr::from(u32::from(ns.host_ip) & !3);
        let path = temp_path("networks.yaml");
        std::fs::write(
            &path,
            format!(
                "networks:\n  - cidr: {base}/30\n    name: {NETWORK}\n    zone: zone-b\n    region: {REGION}\n"
            ),
        )
        .unwrap();
        NamedNetwork { path }
    }
}

impl Drop for NamedNetwork {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What the test moved through the exporter at `instance`, and nothing else
/// (its --filter.port.include keeps only these two connections).
pub struct Moved<'a> {
    pub instance: SocketAddr,
    /// Bytes of the loopback connection, both directions together.
    pub loopback: u64,
    /// The veth connection: the client's end in this namespace, and what
    /// it sent and received.
    pub veth: &'a Netns,
    pub up: u64,
    pub down: u64,
}

/// Every panel of the identity dashboard, filtered to `moved.instance`,
/// gives the exact rows of the four flows moved (each connection seen from
/// both ends).
pub fn assert_dashboard_rows(prometheus: &Prometheus, moved: &Moved) {
    let instance = moved.instance.to_string();
    let vars = [("instance", instance.as_str())];
    let panel = |title: &str, ref_id: &str, keys: &[&str]| {
        panel_rows(prometheus, (WHO, title, ref_id), &vars, keys)
    };
    // The local workload is the test process's cgroup, whatever this
    // machine calls it (a unit, a container's name, or nothing at the
    // root): one for all four flows, since the test made every socket.
    // (The overflow series is always there, with no workload.)
    let flows = format!(r#"tcp_flow_sent_bytes_total{{instance="{instance}", role!="overflow"}}"#);
    let by_workload = rows(
        prometheus,
        &format!("count by (src_workload) ({flows})"),
        &["src_workload"],
    );
    let [(key, 4)] = by_workload
        .iter()
        .map(|(k, v)| (&k[0], *v))
        .collect::<Vec<_>>()[..]
    else {
        panic!("not four flows of one local workload: {by_workload:?}");
    };
    let workload = key.clone();
    // The graph names a local end by its workload, or its address.
    let local = |ip: IpAddr| match workload.is_empty() {
        true => ip.to_string(),
        false => workload.clone(),
    };
    let (up, down, both) = (moved.up, moved.down, moved.up + moved.down);
    let (client, server) = (
        IpAddr::V4(moved.veth.host_ip),
        IpAddr::V4(moved.veth.inner_ip),
    );
    let mut edges = Rows::new();
    for (source, target, bytes) in [
        (
            local(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "loopback".into(),
            moved.loopback,
        ),
        // What each end sends goes to the network...
        (local(client), NETWORK.into(), up),
        (local(server), NETWORK.into(), down),
        // ...and what each end receives from a network comes from it.
        (NETWORK.into(), local(client), down),
        (NETWORK.into(), local(server), up),
    ] {
        *edges.entry(vec![source, target]).or_default() += bytes;
    }
    let graph = "Who talks to whom (bytes per second)";
    assert_eq!(panel(graph, "edges", &["source", "target"]), edges);

    let by_path = expect(&[(&["loopback"], moved.loopback), (&["cross_zone"], both)]);
    assert_eq!(panel("Bytes per second by path", "A", &["path"]), by_path);
    assert_eq!(panel("Bytes per second by path", "B", &["path"]), by_path);
    let destinations = "Top internet and named-network destinations";
    let keys = ["dst_kind", "destination", "path"];
    let named = expect(&[(&["network", NETWORK, "cross_zone"], both)]);
    assert_eq!(panel(destinations, "A", &keys), named);
    assert_eq!(panel(destinations, "B", &keys), named);
    // Across zones, each end sends its share; the server end's traffic
    // both ways is what it serves.
    let across = expect(&[(&[workload.as_str()], both)]);
    let sending = "Top 10 workloads sending across zones";
    assert_eq!(panel(sending, "A", &["src_workload"]), across);
    let serving = "Top 10 workloads serving across zones (server ends)";
    assert_eq!(panel(serving, "A", &["src_workload"]), across);
    // A local end without a workload is unresolved; no peer is private.
    let unresolved_src = if workload.is_empty() { 4 } else { 0 };
    assert_eq!(
        panel("Flows without identity", "A", &["end"]),
        expect(&[(&["src"], unresolved_src), (&["dst"], 0)])
    );
    for ref_id in ["A", "B"] {
        assert_eq!(
            panel("Named networks loaded", ref_id, &[]),
            expect(&[(&[], 1)])
        );
    }
}
