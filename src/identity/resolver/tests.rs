//! The resolver's answers from known facts: peer kinds, names and paths,
//! node overrides, and when identities are looked at again.

use std::net::IpAddr;

use super::*;
use crate::identity::kubernetes::{IndexBuilder, NodeFacts, PodFacts, PodPhase, ServiceFacts};

fn place(zone: &str, region: &str) -> Place {
    Place {
        zone: Some(zone.into()),
        region: Some(region.into()),
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn pod(name: &str, address: &str, node: &str) -> PodFacts {
    PodFacts {
        uid: format!("uid-{name}"),
        namespace: "shop".into(),
        name: name.into(),
        controller: None,
        node_name: Some(node.into()),
        host_network: false,
        phase: PodPhase::Running,
        ips: vec![ip(address)],
        start_time: Some(1),
    }
}

/// node-a (zone-a) is this node; node-b is in zone-b, node-c in another
/// region.
fn index() -> KubeIndex {
    let mut builder = IndexBuilder::new("node-a");
    for (name, address, zone, region) in [
        ("node-a", "10.0.0.1", "zone-a", "region-1"),
        ("node-b", "10.0.0.2", "zone-b", "region-1"),
        ("node-c", "10.0.0.3", "zone-c", "region-2"),
    ] {
        builder.apply_node(NodeFacts {
            uid: format!("uid-{name}"),
            name: name.into(),
            addresses: vec![ip(address)],
            place: place(zone, region),
        });
    }
    builder.apply_pod(pod("here", "10.1.0.1", "node-a"));
    builder.apply_pod(pod("there", "10.1.0.2", "node-b"));
    builder.apply_pod(pod("far", "10.1.0.3", "node-c"));
    builder.apply_service(ServiceFacts {
        uid: "uid-svc".into(),
        namespace: "shop".into(),
        name: "api".into(),
        cluster_ips: vec![ip("10.96.0.10")],
    });
    builder.snapshot()
}

const LABELS: &str = "networks:
  - cidr: 10.20.0.0/16
    name: vpc-near
    zone: zone-a
  - cidr: 52.218.0.0/17
    name: s3-region-2
    region: region-2
  - cidr: 54.0.0.0/8
    name: cloud-anywhere
  - cidr: 172.16.0.0/12
    name: onprem
";

struct Setup {
    resolver: Resolver,
    kube: watch::Sender<Arc<KubeIndex>>,
    networks: watch::Sender<Arc<Networks>>,
}

fn setup(place_override: Place) -> Setup {
    let (kube, kube_rx) = watch::channel(Arc::new(index()));
    let labels = Networks::parse(LABELS, "labels.yaml").unwrap();
    let (networks, networks_rx) = watch::channel(Arc::new(labels));
    let node = ThisNode {
        name: "node-a".into(),
        place_override,
    };
    let resolver = Resolver::new(node, Some(kube_rx), Some(networks_rx), None);
    Setup {
        resolver,
        kube,
        networks,
    }
}

fn ends(remote: &str, role: Role) -> FlowEnds {
    FlowEnds {
        local: "10.1.0.1:40000".parse().unwrap(),
        remote: format!("{remote}:443").parse().unwrap(),
        role,
        cgroup: 0,
    }
}

/// (dst_kind, dst_name, dst_workload, path) of a client flow to `remote`.
fn peer_of(resolver: &mut Resolver, remote: &str) -> (&'static str, String, String, &'static str) {
    let identity = resolver.identify(&ends(remote, Role::Client));
    (
        identity.peer.kind.as_str(),
        identity.peer.name.to_string(),
        identity.peer.workload.to_string(),
        identity.path.as_str(),
    )
}

#[test]
fn every_kind_of_peer_gets_its_name_and_path() {
    let mut s = setup(Place::default());
    let cases = [
        ("10.1.0.1", ("loopback", "", "", "loopback")), // the local address itself
        ("127.0.0.9", ("loopback", "", "", "loopback")),
        ("10.1.0.2", ("pod", "there", "there", "cross_zone")),
        ("10.1.0.3", ("pod", "far", "far", "cross_region")),
        ("10.0.0.1", ("node", "node-a", "node-a", "same_node")),
        ("10.0.0.2", ("node", "node-b", "node-b", "cross_zone")),
        ("10.96.0.10", ("service", "api", "api", "unknown")),
        ("10.20.3.4", ("network", "vpc-near", "", "same_zone")),
        ("52.218.1.1", ("network", "s3-region-2", "", "cross_region")),
        // Public, and where it is nobody says: the internet.
        ("54.1.2.3", ("network", "cloud-anywhere", "", "internet")),
        // Private and placed nowhere: never assumed to be in this zone.
        ("172.16.5.5", ("network", "onprem", "", "unknown")),
        ("10.9.9.9", ("private", "", "", "unknown")),
        ("192.0.2.1", ("internet", "", "", "internet")),
    ];
    for (remote, (kind, name, workload, path)) in cases {
        let want = (kind, name.to_owned(), workload.to_owned(), path);
        assert_eq!(peer_of(&mut s.resolver, remote), want, "{remote}");
    }
}

#[test]
fn a_pod_on_this_node_is_same_node_whatever_the_zones() {
    let mut s = setup(Place::default());
    s.resolver.refresh();
    let mut builder = IndexBuilder::new("node-a");
    builder.apply_pod(pod("mate", "10.1.0.9", "node-a"));
    // No Node objects at all: no zones, yet the node is known.
    s.kube.send_replace(Arc::new(builder.snapshot()));
    s.resolver.refresh();
    assert_eq!(
        peer_of(&mut s.resolver, "10.1.0.9"),
        ("pod", "mate".into(), "mate".into(), "same_node")
    );
}

#[test]
fn node_flags_override_the_node_labels() {
    // --node.zone=zone-b: node-b's pods are now in this zone.
    let mut s = setup(place("zone-b", "region-1"));
    assert_eq!(peer_of(&mut s.resolver, "10.1.0.2").3, "same_zone");
    assert_eq!(peer_of(&mut s.resolver, "10.20.3.4").3, "cross_zone");
}

#[test]
fn identities_are_shared_and_looked_at_again_only_when_facts_change() {
    let mut s = setup(Place::default());
    let first = s.resolver.refresh();
    let a = s.resolver.identify(&ends("10.1.0.2", Role::Client));
    let b = s.resolver.identify(&ends("10.1.0.2", Role::Client));
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(s.resolver.refresh(), first, "nothing published");
    // The pod's address now belongs to a pod elsewhere: a new generation,
    // and a new identity for the same ends.
    let mut builder = IndexBuilder::new("node-a");
    builder.apply_pod(pod("newcomer", "10.1.0.2", "node-a"));
    s.kube.send_replace(Arc::new(builder.snapshot()));
    let second = s.resolver.refresh();
    assert_ne!(second, first);
    let c = s.resolver.identify(&ends("10.1.0.2", Role::Client));
    assert_eq!(&*c.peer.name, "newcomer");
    assert_eq!(c.path, Path::SameNode);
    // A new set of networks is a new generation too.
    s.networks.send_replace(Arc::new(Networks::empty()));
    assert_ne!(s.resolver.refresh(), second);
    assert_eq!(peer_of(&mut s.resolver, "10.20.3.4").0, "private");
}
