//! The mutable side of the index: the watch task applies every change here,
//! and [`IndexBuilder::snapshot`] turns the current state into an immutable
//! [`KubeIndex`] for the scrapes.
//!
//! The builder keeps each object by uid and nothing derived: which pod an
//! IP means, and which workload a pod belongs to, are worked out afresh in
//! every snapshot. So a pod that gets a new IP moves, a delete leaves no
//! stale IP entry, and a ReplicaSet that arrives after its pods resolves
//! their workload at the next publish, without bookkeeping that could
//! drift.

use std::net::IpAddr;
use std::sync::Arc;

use super::facts::{ControllerRef, NodeFacts, OwnerFacts, PodFacts, PodPhase, ServiceFacts};
use super::health::ResourceKind;
use super::index::KubeIndex;
use super::store::{Interner, Store};
use crate::identity::Place;

#[cfg(test)]
mod tests;

pub(super) struct Controller {
    pub(super) kind: Arc<str>,
    pub(super) name: Arc<str>,
    pub(super) uid: Arc<str>,
}

pub(super) struct PodRecord {
    pub(super) namespace: Arc<str>,
    pub(super) name: Arc<str>,
    pub(super) controller: Option<Controller>,
    pub(super) node: Option<Arc<str>>,
    pub(super) host_network: bool,
    pub(super) phase: PodPhase,
    pub(super) ips: Box<[IpAddr]>,
    pub(super) start_time: Option<i64>,
}

pub(super) struct ServiceRecord {
    pub(super) namespace: Arc<str>,
    pub(super) name: Arc<str>,
    pub(super) cluster_ips: Box<[IpAddr]>,
}

pub(super) struct NodeRecord {
    pub(super) name: Arc<str>,
    pub(super) addresses: Box<[IpAddr]>,
    pub(super) place: Place,
}

pub(super) struct OwnerRecord {
    pub(super) name: Arc<str>,
    pub(super) controller: Option<Controller>,
}

/// Everything the watchers know, by kind and uid.
pub struct IndexBuilder {
    pub(super) node_name: Arc<str>,
    generation: u64,
    pub(super) pods: Store<PodRecord>,
    pub(super) services: Store<ServiceRecord>,
    pub(super) nodes: Store<NodeRecord>,
    pub(super) replica_sets: Store<OwnerRecord>,
    pub(super) jobs: Store<OwnerRecord>,
    pub(super) names: Interner,
}

impl IndexBuilder {
    pub fn new(node_name: &str) -> IndexBuilder {
        let mut names = Interner::default();
        IndexBuilder {
            node_name: names.intern(node_name),
            generation: 0,
            pods: Store::default(),
            services: Store::default(),
            nodes: Store::default(),
            replica_sets: Store::default(),
            jobs: Store::default(),
            names,
        }
    }

    pub fn apply_pod(&mut self, pod: PodFacts) {
        let record = PodRecord {
            namespace: self.names.intern(&pod.namespace),
            name: pod.name.into(),
            controller: pod.controller.map(|c| self.controller(c)),
            node: pod.node_name.map(|node| self.names.intern(&node)),
            host_network: pod.host_network,
            phase: pod.phase,
            ips: pod.ips.into(),
            start_time: pod.start_time,
        };
        self.pods.apply(pod.uid.into(), record);
    }

    pub fn apply_service(&mut self, service: ServiceFacts) {
        let record = ServiceRecord {
            namespace: self.names.intern(&service.namespace),
            name: service.name.into(),
            cluster_ips: service.cluster_ips.into(),
        };
        self.services.apply(service.uid.into(), record);
    }

    pub fn apply_node(&mut self, node: NodeFacts) {
        let place = Place {
            zone: node.place.zone.map(|zone| self.names.intern(&zone)),
            region: node.place.region.map(|region| self.names.intern(&region)),
        };
        let record = NodeRecord {
            name: self.names.intern(&node.name),
            addresses: node.addresses.into(),
            place,
        };
        self.nodes.apply(node.uid.into(), record);
    }

    pub fn apply_replica_set(&mut self, owner: OwnerFacts) {
        let (uid, record) = self.owner(owner);
        self.replica_sets.apply(uid, record);
    }

    pub fn apply_job(&mut self, owner: OwnerFacts) {
        let (uid, record) = self.owner(owner);
        self.jobs.apply(uid, record);
    }

    /// Removes the object of `kind` with this uid, and only that one.
    pub fn delete(&mut self, kind: ResourceKind, uid: &str) -> bool {
        match kind {
            ResourceKind::Pod => self.pods.delete(uid),
            ResourceKind::Service => self.services.delete(uid),
            ResourceKind::Node => self.nodes.delete(uid),
            ResourceKind::ReplicaSet => self.replica_sets.delete(uid),
            ResourceKind::Job => self.jobs.delete(uid),
        }
    }

    /// A watcher restarted its list: the objects applied from now until
    /// [`IndexBuilder::finish_relist`] replace all of that kind.
    pub fn begin_relist(&mut self, kind: ResourceKind) {
        match kind {
            ResourceKind::Pod => self.pods.begin_relist(),
            ResourceKind::Service => self.services.begin_relist(),
            ResourceKind::Node => self.nodes.begin_relist(),
            ResourceKind::ReplicaSet => self.replica_sets.begin_relist(),
            ResourceKind::Job => self.jobs.begin_relist(),
        }
    }

    pub fn finish_relist(&mut self, kind: ResourceKind) {
        match kind {
            ResourceKind::Pod => self.pods.finish_relist(),
            ResourceKind::Service => self.services.finish_relist(),
            ResourceKind::Node => self.nodes.finish_relist(),
            ResourceKind::ReplicaSet => self.replica_sets.finish_relist(),
            ResourceKind::Job => self.jobs.finish_relist(),
        }
    }

    /// Whether every kind has completed a first list.
    pub fn synced(&self) -> bool {
        self.pods.listed()
            && self.services.listed()
            && self.nodes.listed()
            && self.replica_sets.listed()
            && self.jobs.listed()
    }

    /// How many objects of `kind` lookups currently see.
    pub fn objects(&self, kind: ResourceKind) -> usize {
        match kind {
            ResourceKind::Pod => self.pods.len(),
            ResourceKind::Service => self.services.len(),
            ResourceKind::Node => self.nodes.len(),
            ResourceKind::ReplicaSet => self.replica_sets.len(),
            ResourceKind::Job => self.jobs.len(),
        }
    }

    /// A new immutable index of the current state, one generation newer
    /// than the last.
    pub fn snapshot(&mut self) -> KubeIndex {
        self.names.prune();
        self.generation += 1;
        KubeIndex::build(self, self.generation)
    }

    fn controller(&mut self, controller: ControllerRef) -> Controller {
        Controller {
            kind: self.names.intern(&controller.kind),
            name: self.names.intern(&controller.name),
            uid: self.names.intern(&controller.uid),
        }
    }

    fn owner(&mut self, owner: OwnerFacts) -> (Arc<str>, OwnerRecord) {
        let record = OwnerRecord {
            name: self.names.intern(&owner.name),
            controller: owner.controller.map(|c| self.controller(c)),
        };
        (owner.uid.into(), record)
    }
}
