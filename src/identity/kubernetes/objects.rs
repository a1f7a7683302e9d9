//! Slim Pod, Service and Node types for the watchers.
//!
//! Why our own types rather than k8s-openapi's, stripped after parsing: a
//! full `Pod` carries containers, env, volumes, probes, conditions and
//! managedFields, several kB per pod that serde would allocate only for us
//! to drop, on every list page and every watch event (pod status changes
//! are the bulk of a cluster's watch traffic). These types name only the
//! fields the index reads, so serde skips the rest in the parser. Each
//! implements [`kube::Resource`] by hand with the real group, version and
//! plural, so `Api::<SlimPod>::all` asks the API server for `/api/v1/pods`.
//!
//! ReplicaSets and Jobs need nothing but metadata: they are watched as
//! `PartialObjectMeta` (see [`super::watch`]) and read by [`owner_facts`].

use std::borrow::Cow;
use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::core::PartialObjectMeta;
use kube::Resource;
use serde::Deserialize;

use super::facts::{ControllerRef, NodeFacts, OwnerFacts, PodFacts, PodPhase, ServiceFacts};
use crate::identity::Place;

mod meta;
#[cfg(test)]
mod tests;

pub use meta::SlimMeta;

#[derive(Clone, Debug, Deserialize)]
pub struct SlimPod {
    #[serde(default)]
    metadata: SlimMeta,
    spec: Option<PodSpec>,
    status: Option<PodStatus>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    node_name: Option<String>,
    host_network: Option<bool>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodStatus {
    phase: Option<String>,
    #[serde(rename = "podIPs")]
    pod_ips: Option<Vec<PodIp>>,
    #[serde(rename = "podIP")]
    pod_ip: Option<String>,
    start_time: Option<Time>,
}

#[derive(Clone, Debug, Deserialize)]
struct PodIp {
    ip: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SlimService {
    #[serde(default)]
    metadata: SlimMeta,
    spec: Option<ServiceSpec>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceSpec {
    #[serde(rename = "clusterIPs")]
    cluster_ips: Option<Vec<String>>,
    #[serde(rename = "clusterIP")]
    cluster_ip: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SlimNode {
    #[serde(default)]
    metadata: SlimMeta,
    status: Option<NodeStatus>,
}

#[derive(Clone, Debug, Deserialize)]
struct NodeStatus {
    addresses: Option<Vec<NodeAddress>>,
}

#[derive(Clone, Debug, Deserialize)]
struct NodeAddress {
    #[serde(rename = "type")]
    kind: String,
    address: String,
}

macro_rules! core_v1_resource {
    ($type:ty, $kind:literal, $plural:literal, $scope:ty) => {
        impl Resource for $type {
            type DynamicType = ();
            type Scope = $scope;

            fn kind(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($kind)
            }
            fn group(_: &()) -> Cow<'_, str> {
                Cow::Borrowed("")
            }
            fn version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed("v1")
            }
            fn plural(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($plural)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata.meta
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata.meta
            }
        }
    };
}

core_v1_resource!(SlimPod, "Pod", "pods", NamespaceResourceScope);
core_v1_resource!(SlimService, "Service", "services", NamespaceResourceScope);
core_v1_resource!(SlimNode, "Node", "nodes", ClusterResourceScope);

/// The uid that keys every object. The API server always sets it; an object
/// without one cannot be told apart from its successor and is skipped.
pub fn uid_of(meta: &ObjectMeta) -> Option<&str> {
    meta.uid.as_deref().filter(|uid| !uid.is_empty())
}

impl SlimPod {
    pub fn into_facts(self) -> Option<PodFacts> {
        let SlimMeta {
            meta, controller, ..
        } = self.metadata;
        let uid = uid_of(&meta)?.to_owned();
        let spec = self.spec;
        let status = self.status;
        let (phase, ips, start_time) = match status {
            Some(status) => (
                PodPhase::parse(status.phase.as_deref()),
                pod_ips(status.pod_ips, status.pod_ip),
                status.start_time.map(|time| time.0.as_second()),
            ),
            None => (PodPhase::Unknown, Vec::new(), None),
        };
        Some(PodFacts {
            uid,
            namespace: meta.namespace.unwrap_or_default(),
            name: meta.name.unwrap_or_default(),
            controller,
            node_name: spec.as_ref().and_then(|spec| spec.node_name.clone()),
            host_network: spec.and_then(|spec| spec.host_network) == Some(true),
            phase,
            ips,
            start_time,
        })
    }
}

/// `podIPs` lists every family; `podIP` (its first entry) is all that
/// servers before dual stack set. Unparsable strings are skipped.
fn pod_ips(list: Option<Vec<PodIp>>, single: Option<String>) -> Vec<IpAddr> {
    let from_list: Vec<IpAddr> = list
        .unwrap_or_default()
        .iter()
        .filter_map(|entry| parse_ip(entry.ip.as_deref()?))
        .collect();
    if !from_list.is_empty() {
        return from_list;
    }
    single.as_deref().and_then(parse_ip).into_iter().collect()
}

fn parse_ip(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

impl SlimService {
    pub fn into_facts(self) -> Option<ServiceFacts> {
        let meta = self.metadata.meta;
        let uid = uid_of(&meta)?.to_owned();
        let (list, single) = match self.spec {
            Some(spec) => (spec.cluster_ips, spec.cluster_ip),
            None => (None, None),
        };
        // Headless Services have clusterIP "None" and no virtual address:
        // their peers are the pods themselves, found by pod IP.
        let cluster_ips = list
            .or_else(|| single.map(|ip| vec![ip]))
            .unwrap_or_default()
            .iter()
            .filter_map(|text| parse_ip(text))
            .collect();
        Some(ServiceFacts {
            uid,
            namespace: meta.namespace.unwrap_or_default(),
            name: meta.name.unwrap_or_default(),
            cluster_ips,
        })
    }
}

impl SlimNode {
    pub fn into_facts(self) -> Option<NodeFacts> {
        let SlimMeta { meta, topology, .. } = self.metadata;
        let uid = uid_of(&meta)?.to_owned();
        // Hostname and InternalDNS entries are names, not addresses.
        let addresses = self
            .status
            .and_then(|status| status.addresses)
            .unwrap_or_default()
            .iter()
            .filter(|address| matches!(address.kind.as_str(), "InternalIP" | "ExternalIP"))
            .filter_map(|address| parse_ip(&address.address))
            .collect();
        Some(NodeFacts {
            uid,
            name: meta.name.unwrap_or_default(),
            addresses,
            place: Place {
                zone: topology.zone().map(Into::into),
                region: topology.region().map(Into::into),
            },
        })
    }
}

/// A ReplicaSet's or Job's metadata, as the metadata-only watch delivers it.
pub fn owner_facts<K>(object: PartialObjectMeta<K>) -> Option<OwnerFacts> {
    let meta = object.metadata;
    let uid = uid_of(&meta)?.to_owned();
    let controller = meta
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .find(|owner| owner.controller == Some(true))
        .map(|owner| ControllerRef {
            kind: owner.kind,
            name: owner.name,
            uid: owner.uid,
        });
    Some(OwnerFacts {
        uid,
        namespace: meta.namespace.unwrap_or_default(),
        name: meta.name.unwrap_or_default(),
        controller,
    })
}
