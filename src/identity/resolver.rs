//! Puts the facts together: a flow key in, its interned identity out.
//!
//! The facts are snapshots the background tasks publish (the Kubernetes
//! index, the named networks); [`Resolver::refresh`] picks up the newest once
//! per read, and bumps the generation when any changed, so the flow table
//! knows which flows to look at again. Within one generation an answer is
//! cached per (cgroup, local address, peer address, role).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::sync::watch;

use super::cgroups::Cgroups;
use super::classes::{classify, AddressClass};
use super::conntrack::Conntrack;
use super::kubernetes::KubeIndex;
use super::labels::{empty, Identity, Interner, Local, Path, Peer};
use super::networks::Networks;
use super::path::between;
use super::{PeerKind, Place};
use crate::flows::Role;

/// What the flow table asks of identity: see [`Resolver`].
pub trait Identify: Send + std::fmt::Debug {
    /// Takes in the newest facts; returns their generation, which changes
    /// whenever an identity could have.
    fn refresh(&mut self) -> u64;
    /// The identity of a flow.
    fn identify(&mut self, flow: &FlowEnds) -> Arc<Identity>;
    /// Forgets what no flow needs any more; about once a minute.
    fn prune(&mut self);
}

/// What identity is resolved from: the flow's addresses, its role and the
/// cgroup its local socket was created in (0: not known).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowEnds {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub role: Role,
    pub cgroup: u64,
}

/// This node: its name and where it sits. --node.zone and --node.region win
/// over its Node's labels.
#[derive(Clone, Debug, Default)]
pub struct ThisNode {
    pub name: String,
    pub place_override: Place,
}

#[derive(Debug)]
pub struct Resolver {
    node: ThisNode,
    kube: Option<watch::Receiver<Arc<KubeIndex>>>,
    networks: Option<watch::Receiver<Arc<Networks>>>,
    cgroups: Option<Cgroups>,
    /// Where Service connections were DNATed to, when the node's conntrack
    /// table is readable.
    conntrack: Option<Conntrack>,
    index: Arc<KubeIndex>,
    named: Arc<Networks>,
    here: Place,
    generation: u64,
    interner: Interner,
    cache: HashMap<(u64, IpAddr, IpAddr, Role), Arc<Identity>, foldhash::fast::RandomState>,
}

impl Resolver {
    pub fn new(
        node: ThisNode,
        kube: Option<watch::Receiver<Arc<KubeIndex>>>,
        networks: Option<watch::Receiver<Arc<Networks>>>,
        cgroups: Option<Cgroups>,
    ) -> Resolver {
        let mut resolver = Resolver {
            index: Arc::new(KubeIndex::empty(&node.name)),
            named: Arc::new(Networks::empty()),
            here: Place::default(),
            node,
            kube,
            networks,
            cgroups,
            conntrack: None,
            generation: 0,
            interner: Interner::default(),
            cache: HashMap::default(),
        };
        resolver.take_facts();
        resolver
    }

    /// Resolves the backends of Service connections through `conntrack`.
    pub fn with_conntrack(mut self, conntrack: Conntrack) -> Resolver {
        self.conntrack = Some(conntrack);
        self
    }

    /// Reads the newest snapshot of every fact source.
    fn take_facts(&mut self) {
        if let Some(kube) = &mut self.kube {
            self.index = kube.borrow_and_update().clone();
        }
        if let Some(networks) = &mut self.networks {
            self.named = networks.borrow_and_update().clone();
        }
        let from_node = self.index.this_node();
        let chosen =
            |over: &Option<Arc<str>>, node: &Option<Arc<str>>| over.clone().or(node.clone());
        self.here = Place {
            zone: chosen(&self.node.place_override.zone, &from_node.zone),
            region: chosen(&self.node.place_override.region, &from_node.region),
        };
        self.cache.clear();
        self.generation += 1;
    }

    fn local(&mut self, cgroup: u64) -> Local {
        let Some(cgroups) = &mut self.cgroups else {
            return Local::default();
        };
        let workload = cgroups.resolve(cgroup);
        if let Some(uid) = &workload.pod_uid {
            if let Some(pod) = self.index.pod_by_uid(uid) {
                return Local {
                    namespace: pod.namespace.into(),
                    pod: pod.name.into(),
                    workload: pod.workload.into(),
                };
            }
        }
        Local {
            namespace: empty(),
            pod: empty(),
            workload: workload.workload.clone(),
        }
    }

    fn peer(&mut self, flow: &FlowEnds) -> (Peer, Path) {
        let remote = flow.remote.ip().to_canonical();
        let class = classify(remote);
        if class == AddressClass::Loopback || remote == flow.local.ip().to_canonical() {
            return (Peer::of_kind(PeerKind::Loopback), Path::Loopback);
        }
        let backend = self.backend(flow);
        if let Some(known) = self.index.peer(remote) {
            let path = match (known.kind, backend) {
                // The client end sees the ClusterIP, not the backend that
                // answers: conntrack may say which; if not, the server end
                // of the same connection sees the real client and reports
                // the path.
                (PeerKind::Service, Some(backend)) => self.path_to(backend),
                (PeerKind::Service, None) => Path::Unknown,
                _ => self.path_to(remote),
            };
            let peer = Peer {
                kind: known.kind,
                namespace: known.namespace.into(),
                name: known.name.into(),
                workload: known.workload.into(),
            };
            return (peer, path);
        }
        let public = class == AddressClass::Internet;
        if let Some(network) = self.named.find(remote) {
            let path = match between(&self.here, &network.place) {
                Path::Unknown if public => Path::Internet,
                path => path,
            };
            let peer = Peer {
                kind: PeerKind::Network,
                namespace: empty(),
                name: network.name.clone(),
                workload: empty(),
            };
            return (peer, path);
        }
        match public {
            true => (Peer::of_kind(PeerKind::Internet), Path::Internet),
            false => (Peer::of_kind(PeerKind::Private), Path::Unknown),
        }
    }
}

impl Resolver {
    /// The path to an address Kubernetes knows; unknown otherwise.
    fn path_to(&self, ip: IpAddr) -> Path {
        let Some(known) = self.index.peer(ip) else {
            return Path::Unknown;
        };
        let on_this_node = match known.kind {
            PeerKind::Node => known.name == self.index.node_name(),
            _ => known.node == Some(self.index.node_name()),
        };
        match known.kind {
            PeerKind::Service => Path::Unknown,
            _ if on_this_node => Path::SameNode,
            _ => between(&self.here, &known.place),
        }
    }

    /// Where a client connection to a Service really went, from conntrack:
    /// only for flows that keep the client's port (--flows.ports=all), the
    /// one way to name a single connection's entry.
    fn backend(&mut self, flow: &FlowEnds) -> Option<IpAddr> {
        if flow.role != Role::Client || flow.local.port() == 0 {
            return None;
        }
        let conntrack = self.conntrack.as_mut()?;
        let known = self.index.peer(flow.remote.ip().to_canonical())?;
        if known.kind != PeerKind::Service {
            return None;
        }
        match conntrack.translated(flow.local, flow.remote) {
            Ok(found) => found.map(|backend| backend.ip().to_canonical()),
            Err(e) => {
                tracing::debug!(error = %e, "conntrack lookup failed");
                None
            }
        }
    }
}

impl Identify for Resolver {
    fn refresh(&mut self) -> u64 {
        if changed(&self.kube) || changed(&self.networks) {
            self.take_facts();
        }
        // The cache serves the flows of one read that share their ends; kept
        // longer it would hold an entry per flow for nothing (about 100
        // bytes each), since a bound flow asks again only when facts change.
        // Its memory goes too: a burst of new flows must not pin it.
        self.cache = HashMap::default();
        self.generation
    }

    fn identify(&mut self, flow: &FlowEnds) -> Arc<Identity> {
        let key = (flow.cgroup, flow.local.ip(), flow.remote.ip(), flow.role);
        if let Some(known) = self.cache.get(&key) {
            return known.clone();
        }
        let local = self.local(flow.cgroup);
        let (peer, path) = self.peer(flow);
        let identity = self.interner.intern(Identity::new(local, peer, path));
        // A Service's backend is per connection: the answer holds for this
        // client port only.
        let per_connection = identity.peer.kind == PeerKind::Service && self.conntrack.is_some();
        if !per_connection {
            self.cache.insert(key, identity.clone());
        }
        identity
    }

    fn prune(&mut self) {
        // The cache holds a reference too: drop it first, so identities only
        // the cache knew are forgotten.
        self.cache.clear();
        self.interner.prune();
        if let Some(cgroups) = &mut self.cgroups {
            cgroups.prune();
        }
    }
}

/// Whether a fact source published since it was last read. A source that
/// ended keeps its last snapshot.
fn changed<T>(receiver: &Option<watch::Receiver<T>>) -> bool {
    receiver
        .as_ref()
        .is_some_and(|rx| rx.has_changed().unwrap_or(false))
}

#[cfg(test)]
mod tests;
