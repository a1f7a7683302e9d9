//! One-line builders for the objects the exporter watches, filled in the
//! way a real cluster fills them (the fields the exporter reads, and no
//! more). Each returns the k8s-openapi type, so a test can change any field
//! before `KubeApi::apply`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    HostIP, Node, NodeAddress, NodeStatus, Pod, PodIP, PodSpec, PodStatus, Service, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::Metadata;

pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";

fn meta(namespace: &str, name: &str, uid: &str) -> ObjectMeta {
    let some = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
    ObjectMeta {
        namespace: some(namespace),
        name: some(name),
        uid: some(uid),
        ..ObjectMeta::default()
    }
}

/// A scheduled pod with its IP: `phase` is `Pending`, `Running`,
/// `Succeeded`, `Failed` or `Unknown`. Give it an owner with `owned_by`.
pub fn pod(namespace: &str, name: &str, uid: &str, ip: &str, node: &str, phase: &str) -> Pod {
    Pod {
        metadata: meta(namespace, name, uid),
        spec: Some(PodSpec {
            node_name: Some(node.to_string()),
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some(phase.to_string()),
            pod_ip: Some(ip.to_string()),
            pod_ips: Some(vec![PodIP { ip: ip.to_string() }]),
            ..PodStatus::default()
        }),
    }
}

/// A Running `hostNetwork: true` pod: its IP is its node's, and a real
/// cluster reports the same address as podIP and hostIP.
pub fn host_network_pod(namespace: &str, name: &str, uid: &str, node: &str, node_ip: &str) -> Pod {
    let mut pod = pod(namespace, name, uid, node_ip, node, "Running");
    if let Some(spec) = pod.spec.as_mut() {
        spec.host_network = Some(true);
    }
    if let Some(status) = pod.status.as_mut() {
        status.host_ip = Some(node_ip.to_string());
        status.host_ips = Some(vec![HostIP {
            ip: node_ip.to_string(),
        }]);
    }
    pod
}

/// `pod` with `status.startTime` set, in seconds since the Unix epoch.
pub fn started_at(mut pod: Pod, unix_seconds: i64) -> Pod {
    let time = k8s_openapi::jiff::Timestamp::from_second(unix_seconds)
        .unwrap_or_else(|error| panic!("start time {unix_seconds}: {error}"));
    pod.status.get_or_insert_with(PodStatus::default).start_time = Some(Time(time));
    pod
}

/// A ClusterIP Service.
pub fn service(namespace: &str, name: &str, cluster_ip: &str) -> Service {
    Service {
        metadata: meta(namespace, name, ""),
        spec: Some(ServiceSpec {
            cluster_ip: Some(cluster_ip.to_string()),
            cluster_ips: Some(vec![cluster_ip.to_string()]),
            type_: Some("ClusterIP".to_string()),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// A Node with its InternalIP and its zone and region labels (an empty
/// zone or region leaves that label out, as on a cluster without them).
pub fn node(name: &str, internal_ip: &str, zone: &str, region: &str) -> Node {
    let labels: BTreeMap<String, String> = [(ZONE_LABEL, zone), (REGION_LABEL, region)]
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    let mut metadata = meta("", name, "");
    metadata.labels = Some(labels);
    Node {
        metadata,
        spec: None,
        status: Some(NodeStatus {
            addresses: Some(vec![NodeAddress {
                type_: "InternalIP".to_string(),
                address: internal_ip.to_string(),
            }]),
            ..NodeStatus::default()
        }),
    }
}

/// A ReplicaSet owned by `deployment` (none when empty).
pub fn replica_set(namespace: &str, name: &str, uid: &str, deployment: &str) -> ReplicaSet {
    let set = ReplicaSet {
        metadata: meta(namespace, name, uid),
        ..ReplicaSet::default()
    };
    match deployment {
        "" => set,
        owner => owned_by(set, "Deployment", owner, &format!("uid-deployment-{owner}")),
    }
}

/// A Job created by `cronjob` (none when empty).
pub fn job(namespace: &str, name: &str, uid: &str, cronjob: &str) -> Job {
    let job = Job {
        metadata: meta(namespace, name, uid),
        ..Job::default()
    };
    match cronjob {
        "" => job,
        owner => owned_by(job, "CronJob", owner, &format!("uid-cronjob-{owner}")),
    }
}

/// Adds a controller ownerReference to `object`, the link the exporter
/// follows from a pod to its workload. The owner's apiVersion follows from
/// its kind.
pub fn owned_by<K: Metadata<Ty = ObjectMeta>>(
    mut object: K,
    kind: &str,
    name: &str,
    uid: &str,
) -> K {
    let api_version = match kind {
        "ReplicaSet" | "Deployment" | "StatefulSet" | "DaemonSet" => "apps/v1",
        "Job" | "CronJob" => "batch/v1",
        _ => "v1",
    };
    let owner = OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: name.to_string(),
        uid: uid.to_string(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    object
        .metadata_mut()
        .owner_references
        .get_or_insert_with(Vec::new)
        .push(owner);
    object
}
