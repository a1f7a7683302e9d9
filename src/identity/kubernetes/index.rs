//! The immutable index a scrape reads: who an IP is, and who a pod uid is.
//!
//! Built by [`IndexBuilder::snapshot`] and shared as `Arc<KubeIndex>`:
//! every answer is worked out at build time, so a lookup is one hash probe
//! and never waits on the watch task.

use std::net::IpAddr;
use std::sync::Arc;

use super::builder::IndexBuilder;
use super::owners::workload;
use super::store::{keep_best, Map};
use crate::identity::kubernetes::facts::PodPhase;
use crate::identity::{PeerKind, Place};

/// Who is behind an IP or a pod uid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubePeer<'a> {
    /// `Pod`, `Service` or `Node`.
    pub kind: PeerKind,
    /// Empty for a Node.
    pub namespace: &'a str,
    pub name: &'a str,
    /// A pod's owning workload; a bare pod's, Service's or Node's own name.
    pub workload: &'a str,
    /// The node a pod runs on, or the Node itself; `None` for a Service.
    pub node: Option<&'a str>,
    /// The pod's node's zone and region, or the Node's own; a Service's is
    /// unknown (its backends may sit anywhere).
    pub place: Place,
}

#[derive(Debug)]
struct Peer {
    kind: PeerKind,
    namespace: Arc<str>,
    name: Arc<str>,
    workload: Arc<str>,
    node: Option<Arc<str>>,
    place: Place,
}

#[derive(Debug)]
pub struct KubeIndex {
    generation: u64,
    synced: bool,
    node_name: Arc<str>,
    this_node: Place,
    peers: Vec<Peer>,
    by_ip: Map<IpAddr, u32>,
    pod_by_uid: Map<Arc<str>, u32>,
}

impl KubeIndex {
    /// The index before anything is known (generation 0).
    pub fn empty(node_name: &str) -> KubeIndex {
        KubeIndex {
            generation: 0,
            synced: false,
            node_name: node_name.into(),
            this_node: Place::default(),
            peers: Vec::new(),
            by_ip: Map::default(),
            pod_by_uid: Map::default(),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether every watcher had completed its first list when this
    /// snapshot was taken.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// The pod, else the Service, else the Node that owns this address.
    /// IPv4-mapped IPv6 addresses (dual-stack sockets) are looked up as IPv4.
    pub fn peer(&self, ip: IpAddr) -> Option<KubePeer<'_>> {
        let at = *self.by_ip.get(&ip.to_canonical())?;
        Some(self.peer_at(at))
    }

    /// The pod with this uid, hostNetwork or not, whatever its phase.
    pub fn pod_by_uid(&self, uid: &str) -> Option<KubePeer<'_>> {
        let at = *self.pod_by_uid.get(uid)?;
        Some(self.peer_at(at))
    }

    /// This node's zone and region, from its Node's labels.
    pub fn this_node(&self) -> &Place {
        &self.this_node
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    fn peer_at(&self, at: u32) -> KubePeer<'_> {
        let peer = &self.peers[at as usize];
        KubePeer {
            kind: peer.kind,
            namespace: &peer.namespace,
            name: &peer.name,
            workload: &peer.workload,
            node: peer.node.as_deref(),
            place: peer.place.clone(),
        }
    }

    pub(super) fn build(builder: &IndexBuilder, generation: u64) -> KubeIndex {
        let node_places: Map<&str, &Place> = builder
            .nodes
            .iter()
            .map(|(_, node)| (&*node.name, &node.place))
            .collect();
        let place_of = |node: Option<&Arc<str>>| -> Place {
            node.and_then(|name| node_places.get(&**name))
                .map_or_else(Place::default, |place| (*place).clone())
        };
        let capacity = builder.pods.len() + builder.services.len() + builder.nodes.len();
        let mut peers = Vec::with_capacity(capacity);
        let mut pod_by_uid = Map::with_capacity_and_hasher(builder.pods.len(), Default::default());
        let mut best_pod = Map::with_capacity_and_hasher(builder.pods.len(), Default::default());

        for (uid, pod) in builder.pods.iter() {
            let at = peers.len() as u32;
            peers.push(Peer {
                kind: PeerKind::Pod,
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                workload: workload(builder, &pod.name, pod.controller.as_ref()),
                node: pod.node.clone(),
                place: place_of(pod.node.as_ref()),
            });
            pod_by_uid.insert(uid.clone(), at);
            // A hostNetwork pod shares its node's addresses: the peer at
            // that IP is the node (and all its host-network pods), so such
            // pods are not candidates for the IP.
            if pod.host_network {
                continue;
            }
            // Several pods can claim one IP: a Succeeded/Failed pod keeps
            // its status.podIP after the IP went to a new pod. Running wins,
            // then Pending, then the newest start; the uid only makes ties
            // deterministic.
            let rank = (phase_rank(pod.phase), pod.start_time, uid.clone());
            for &ip in pod.ips.iter() {
                keep_best(&mut best_pod, ip, rank.clone(), at);
            }
        }
        let mut by_ip: Map<IpAddr, u32> =
            best_pod.into_iter().map(|(ip, (_, at))| (ip, at)).collect();

        for (_, service) in builder.services.iter() {
            let at = peers.len() as u32;
            peers.push(Peer {
                kind: PeerKind::Service,
                namespace: service.namespace.clone(),
                name: service.name.clone(),
                workload: service.name.clone(),
                node: None,
                place: Place::default(),
            });
            for &ip in service.cluster_ips.iter() {
                by_ip.entry(ip).or_insert(at);
            }
        }
        let empty: Arc<str> = Arc::from("");
        for (_, node) in builder.nodes.iter() {
            let at = peers.len() as u32;
            peers.push(Peer {
                kind: PeerKind::Node,
                namespace: empty.clone(),
                name: node.name.clone(),
                workload: node.name.clone(),
                node: Some(node.name.clone()),
                place: node.place.clone(),
            });
            for &ip in node.addresses.iter() {
                by_ip.entry(ip).or_insert(at);
            }
        }
        KubeIndex {
            generation,
            synced: builder.synced(),
            node_name: builder.node_name.clone(),
            this_node: place_of(Some(&builder.node_name)),
            peers,
            by_ip,
            pod_by_uid,
        }
    }
}

fn phase_rank(phase: PodPhase) -> u8 {
    match phase {
        PodPhase::Running => 2,
        PodPhase::Pending => 1,
        PodPhase::Succeeded | PodPhase::Failed | PodPhase::Unknown => 0,
    }
}
