use std::net::IpAddr;
use std::sync::Arc;

use super::*;
use crate::identity::kubernetes::facts::PodPhase::{Failed, Pending, Running, Succeeded};
use crate::identity::kubernetes::KubePeer;
use crate::identity::PeerKind;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn pod(uid: &str, name: &str, address: &str, phase: PodPhase, start: Option<i64>) -> PodFacts {
    PodFacts {
        uid: uid.into(),
        namespace: "shop".into(),
        name: name.into(),
        controller: None,
        node_name: Some("node-a".into()),
        host_network: false,
        phase,
        ips: vec![ip(address)],
        start_time: start,
    }
}

fn owned(mut pod: PodFacts, kind: &str, name: &str, uid: &str) -> PodFacts {
    pod.controller = Some(ControllerRef {
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
    });
    pod
}

fn place(zone: &str, region: &str) -> Place {
    Place {
        zone: Some(Arc::from(zone)),
        region: Some(Arc::from(region)),
    }
}

fn node(uid: &str, name: &str, address: &str, zone: &str) -> NodeFacts {
    NodeFacts {
        uid: uid.into(),
        name: name.into(),
        addresses: vec![ip(address)],
        place: place(zone, "eu-west-1"),
    }
}

/// The name of the peer at `address`, or "-" for none.
fn name_at(builder: &mut IndexBuilder, address: &str) -> String {
    let index = builder.snapshot();
    index
        .peer(ip(address))
        .map_or("-".into(), |peer| peer.name.to_owned())
}

#[test]
fn a_running_pod_wins_over_a_finished_one_whichever_came_first() {
    for order in [[0, 1], [1, 0]] {
        let pods = [
            pod("u-old", "old", "10.0.0.5", Succeeded, Some(200)),
            pod("u-new", "new", "10.0.0.5", Running, Some(100)),
        ];
        let mut builder = IndexBuilder::new("node-a");
        for at in order {
            builder.apply_pod(pods[at].clone());
        }
        assert_eq!(name_at(&mut builder, "10.0.0.5"), "new");
    }
}

#[test]
fn pending_wins_over_finished_and_the_newest_start_breaks_ties() {
    let mut builder = IndexBuilder::new("node-a");
    builder.apply_pod(pod("u1", "failed", "10.0.0.5", Failed, Some(300)));
    builder.apply_pod(pod("u2", "pending", "10.0.0.5", Pending, None));
    assert_eq!(name_at(&mut builder, "10.0.0.5"), "pending");

    builder.apply_pod(pod("u3", "done-early", "10.0.0.6", Succeeded, Some(100)));
    builder.apply_pod(pod("u4", "done-late", "10.0.0.6", Succeeded, Some(200)));
    builder.apply_pod(pod("u5", "never-started", "10.0.0.6", Failed, None));
    assert_eq!(name_at(&mut builder, "10.0.0.6"), "done-late");

    builder.apply_pod(pod("u6", "run-early", "10.0.0.7", Running, Some(100)));
    builder.apply_pod(pod("u7", "run-late", "10.0.0.7", Running, Some(200)));
    assert_eq!(name_at(&mut builder, "10.0.0.7"), "run-late");
}

#[test]
fn a_delete_removes_only_the_entry_with_its_uid() {
    let mut builder = IndexBuilder::new("node-a");
    // A StatefulSet pod recreated under the same name: a new uid, same IP.
    builder.apply_pod(pod("u-first", "db-0", "10.0.0.9", Running, Some(100)));
    builder.apply_pod(pod("u-second", "db-0", "10.0.0.9", Pending, Some(200)));
    assert!(!builder.delete(ResourceKind::Pod, "u-unknown"));
    // The late delete of the first incarnation leaves the second in place.
    assert!(builder.delete(ResourceKind::Pod, "u-first"));
    let index = builder.snapshot();
    assert_eq!(index.pod_by_uid("u-first"), None);
    assert_eq!(index.pod_by_uid("u-second").map(|p| p.name), Some("db-0"));
    assert_eq!(index.peer(ip("10.0.0.9")).map(|p| p.name), Some("db-0"));
    assert!(builder.delete(ResourceKind::Pod, "u-second"));
    assert_eq!(name_at(&mut builder, "10.0.0.9"), "-");
}

#[test]
fn an_ip_reused_by_a_new_pod_follows_the_pods_lifecycles() {
    let mut builder = IndexBuilder::new("node-a");
    builder.apply_pod(pod("u-a", "a", "10.0.0.5", Running, Some(100)));
    assert_eq!(name_at(&mut builder, "10.0.0.5"), "a");
    // a finishes; its status keeps the IP, which the CNI hands to b.
    builder.apply_pod(pod("u-a", "a", "10.0.0.5", Succeeded, Some(100)));
    assert_eq!(name_at(&mut builder, "10.0.0.5"), "a");
    builder.apply_pod(pod("u-b", "b", "10.0.0.5", Pending, Some(150)));
    assert_eq!(name_at(&mut builder, "10.0.0.5"), "b");
    builder.apply_pod(pod("u-b", "b", "10.0.0.5", Running, Some(150)));
    assert_eq!(name_at(&mut builder, "10.0.0.5"), "b");
    // a's delete arrives late and must not take b's IP with it.
    builder.delete(ResourceKind::Pod, "u-a");
    assert_eq!(name_at(&mut builder, "10.0.0.5"), "b");
    // b moves to a new IP: the old one is no one's any more.
    builder.apply_pod(pod("u-b", "b", "10.0.0.8", Running, Some(150)));
    assert_eq!(name_at(&mut builder, "10.0.0.5"), "-");
    assert_eq!(name_at(&mut builder, "10.0.0.8"), "b");
}

#[test]
fn a_host_network_pod_is_found_by_uid_but_its_ip_is_the_node() {
    let mut builder = IndexBuilder::new("node-a");
    builder.apply_node(node("n-a", "node-a", "192.168.1.10", "eu-west-1a"));
    let mut agent = pod("u-agent", "agent-x1", "192.168.1.10", Running, Some(100));
    agent.host_network = true;
    builder.apply_pod(owned(agent, "DaemonSet", "agent", "ds-uid"));
    let index = builder.snapshot();
    let at_ip = index.peer(ip("192.168.1.10")).unwrap();
    assert_eq!(
        (at_ip.kind, at_ip.name, at_ip.namespace),
        (PeerKind::Node, "node-a", "")
    );
    assert_eq!(
        index.pod_by_uid("u-agent"),
        Some(KubePeer {
            kind: PeerKind::Pod,
            namespace: "shop",
            name: "agent-x1",
            workload: "agent",
            node: Some("node-a"),
            place: place("eu-west-1a", "eu-west-1"),
        })
    );
}

#[test]
fn an_ip_is_a_pod_before_a_service_before_a_node() {
    let mut builder = IndexBuilder::new("node-a");
    builder.apply_node(node("n-a", "node-a", "10.0.0.1", "eu-west-1a"));
    builder.apply_service(ServiceFacts {
        uid: "s1".into(),
        namespace: "shop".into(),
        name: "web".into(),
        cluster_ips: vec![ip("10.0.0.1"), ip("fd00::1")],
    });
    builder.apply_pod(pod("p1", "web-1", "10.0.0.1", Running, Some(1)));
    assert_eq!(name_at(&mut builder, "10.0.0.1"), "web-1");
    builder.delete(ResourceKind::Pod, "p1");
    let index = builder.snapshot();
    let service = index.peer(ip("10.0.0.1")).unwrap();
    assert_eq!(
        (
            service.kind,
            service.namespace,
            service.workload,
            service.node,
            service.place
        ),
        (PeerKind::Service, "shop", "web", None, Place::default())
    );
    assert_eq!(index.peer(ip("fd00::1")).map(|p| p.name), Some("web"));
    builder.delete(ResourceKind::Service, "s1");
    assert_eq!(name_at(&mut builder, "10.0.0.1"), "node-a");
}

#[test]
fn ipv4_mapped_addresses_find_the_ipv4_entry() {
    let mut builder = IndexBuilder::new("node-a");
    builder.apply_pod(pod("p1", "web-1", "10.0.0.3", Running, Some(1)));
    assert_eq!(name_at(&mut builder, "::ffff:10.0.0.3"), "web-1");
}

#[test]
fn zones_come_from_the_nodes() {
    let mut builder = IndexBuilder::new("node-a");
    builder.apply_node(node("n-a", "node-a", "192.168.1.10", "eu-west-1a"));
    builder.apply_node(node("n-b", "node-b", "192.168.1.11", "eu-west-1b"));
    let mut remote = pod("p1", "web-1", "10.0.0.4", Running, None);
    remote.node_name = Some("node-b".into());
    builder.apply_pod(remote);
    let mut unscheduled = pod("p2", "web-2", "10.0.0.5", Pending, None);
    unscheduled.node_name = None;
    builder.apply_pod(unscheduled);
    let index = builder.snapshot();
    assert_eq!(index.node_name(), "node-a");
    assert_eq!(index.this_node(), &place("eu-west-1a", "eu-west-1"));
    let remote = index.peer(ip("10.0.0.4")).unwrap();
    assert_eq!(
        (remote.node, remote.place),
        (Some("node-b"), place("eu-west-1b", "eu-west-1"))
    );
    let node_b = index.peer(ip("192.168.1.11")).unwrap();
    assert_eq!(
        (node_b.kind, node_b.place),
        (PeerKind::Node, place("eu-west-1b", "eu-west-1"))
    );
    let unscheduled = index.peer(ip("10.0.0.5")).unwrap();
    assert_eq!(
        (unscheduled.node, unscheduled.place),
        (None, Place::default())
    );
    // A node name that matches no Node: nothing is known of this end.
    assert_eq!(
        IndexBuilder::new("elsewhere").snapshot().this_node(),
        &Place::default()
    );
}

#[test]
fn a_relist_replaces_the_kind_and_drops_what_was_deleted_meanwhile() {
    let mut builder = IndexBuilder::new("node-a");
    builder.apply_pod(pod("u-a", "a", "10.0.0.1", Running, None));
    builder.apply_pod(pod("u-b", "b", "10.0.0.2", Running, None));
    builder.apply_service(ServiceFacts {
        uid: "s1".into(),
        namespace: "shop".into(),
        name: "web".into(),
        cluster_ips: vec![ip("10.96.0.10")],
    });
    builder.begin_relist(ResourceKind::Pod);
    builder.apply_pod(pod("u-a", "a", "10.0.0.1", Running, None));
    // Mid-relist, lookups still see the last complete set.
    assert_eq!(name_at(&mut builder, "10.0.0.2"), "b");
    assert_eq!(builder.objects(ResourceKind::Pod), 2);
    builder.finish_relist(ResourceKind::Pod);
    let index = builder.snapshot();
    assert_eq!(index.peer(ip("10.0.0.1")).map(|p| p.name), Some("a"));
    assert_eq!(index.peer(ip("10.0.0.2")), None);
    assert_eq!(index.pod_by_uid("u-b"), None);
    // Other kinds are untouched by a pod relist.
    assert_eq!(index.peer(ip("10.96.0.10")).map(|p| p.name), Some("web"));
    assert_eq!(builder.objects(ResourceKind::Pod), 1);
}

#[test]
fn generations_grow_and_synced_waits_for_every_kind() {
    assert_eq!(KubeIndex::empty("node-a").generation(), 0);
    assert!(!KubeIndex::empty("node-a").synced());
    let mut builder = IndexBuilder::new("node-a");
    assert_eq!(builder.snapshot().generation(), 1);
    for (n, kind) in ResourceKind::ALL.into_iter().enumerate() {
        builder.begin_relist(kind);
        builder.finish_relist(kind);
        let index = builder.snapshot();
        assert_eq!(index.generation(), n as u64 + 2);
        assert_eq!(index.synced(), kind == ResourceKind::Job, "{kind:?}");
    }
}

#[test]
fn names_no_longer_used_are_forgotten() {
    let mut builder = IndexBuilder::new("node-a");
    let mut facts = pod("p1", "web-1", "10.0.0.4", Running, None);
    facts.namespace = "short-lived".into();
    builder.apply_pod(facts);
    // "short-lived" and "node-a" (the pod's node) are interned; the node
    // name stays because the builder itself holds it.
    assert_eq!(builder.names.len(), 2);
    builder.delete(ResourceKind::Pod, "p1");
    let _ = builder.snapshot();
    assert_eq!(builder.names.len(), 1);
}
