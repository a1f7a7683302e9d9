//! The slim types read real objects: each test serializes a full
//! k8s-openapi object, as the API server would send it, and checks the
//! exact facts that come out.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{
    Container, Node, NodeAddress, NodeStatus, Pod, PodIP, PodSpec, PodStatus, Service, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, OwnerReference};
use serde::de::DeserializeOwned;

use super::*;

fn through_json<T: DeserializeOwned>(object: &impl serde::Serialize) -> T {
    serde_json::from_str(&serde_json::to_string(object).unwrap()).unwrap()
}

fn owner_ref(kind: &str, name: &str, controller: Option<bool>) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: kind.into(),
        name: name.into(),
        uid: format!("{name}-uid"),
        controller,
        block_owner_deletion: Some(true),
    }
}

fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn full_pod() -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web-5d4f8-x2".into()),
            namespace: Some("shop".into()),
            uid: Some("pod-uid-1".into()),
            resource_version: Some("4711".into()),
            labels: labels(&[("app", "web"), ("pod-template-hash", "5d4f8")]),
            annotations: labels(&[("kubectl.kubernetes.io/restartedAt", "2024-05-01")]),
            managed_fields: Some(vec![ManagedFieldsEntry {
                manager: Some("kubelet".into()),
                ..Default::default()
            }]),
            owner_references: Some(vec![
                owner_ref("ConfigMap", "not-the-controller", None),
                owner_ref("ReplicaSet", "web-5d4f8", Some(true)),
            ]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("node-b".into()),
            containers: vec![Container {
                name: "web".into(),
                image: Some("nginx:1.27".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some("10.1.2.3".into()),
            pod_ips: Some(vec![
                PodIP {
                    ip: "10.1.2.3".into(),
                },
                PodIP {
                    ip: "fd00::10:1:2:3".into(),
                },
            ]),
            start_time: Some(Time("2024-05-01T10:00:00Z".parse().unwrap())),
            ..Default::default()
        }),
    }
}

#[test]
fn a_pod_keeps_only_what_the_index_needs() {
    let slim: SlimPod = through_json(&full_pod());
    assert_eq!(slim.meta().resource_version.as_deref(), Some("4711"));
    assert_eq!(slim.meta().labels, None);
    assert_eq!(slim.meta().managed_fields, None);
    assert_eq!(
        slim.into_facts(),
        Some(PodFacts {
            uid: "pod-uid-1".into(),
            namespace: "shop".into(),
            name: "web-5d4f8-x2".into(),
            controller: Some(ControllerRef {
                kind: "ReplicaSet".into(),
                name: "web-5d4f8".into(),
                uid: "web-5d4f8-uid".into(),
            }),
            node_name: Some("node-b".into()),
            host_network: false,
            phase: PodPhase::Running,
            ips: vec![
                "10.1.2.3".parse().unwrap(),
                "fd00::10:1:2:3".parse().unwrap()
            ],
            start_time: Some(1_714_557_600),
        })
    );
}

#[test]
fn an_old_server_pod_ip_and_host_network_are_read() {
    let mut pod = full_pod();
    let status = pod.status.as_mut().unwrap();
    status.pod_ips = None;
    status.pod_ip = Some("192.168.1.20".into());
    status.phase = Some("Pending".into());
    pod.spec.as_mut().unwrap().host_network = Some(true);
    pod.metadata.owner_references = None;
    let facts = through_json::<SlimPod>(&pod).into_facts().unwrap();
    assert_eq!(
        (facts.ips, facts.host_network, facts.phase, facts.controller),
        (
            vec!["192.168.1.20".parse().unwrap()],
            true,
            PodPhase::Pending,
            None
        )
    );
}

#[test]
fn a_pod_without_uid_or_status_is_handled() {
    let mut pod = full_pod();
    pod.metadata.uid = None;
    assert_eq!(through_json::<SlimPod>(&pod).into_facts(), None);
    let mut pod = full_pod();
    pod.status = None;
    let facts = through_json::<SlimPod>(&pod).into_facts().unwrap();
    assert_eq!(
        (facts.phase, facts.ips, facts.start_time),
        (PodPhase::Unknown, vec![], None)
    );
}

fn service(cluster_ips: Option<Vec<&str>>, cluster_ip: Option<&str>) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("shop".into()),
            uid: Some("svc-uid".into()),
            resource_version: Some("12".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ips: cluster_ips.map(|ips| ips.into_iter().map(String::from).collect()),
            cluster_ip: cluster_ip.map(String::from),
            ..Default::default()
        }),
        status: None,
    }
}

#[test]
fn services_keep_their_cluster_ips_and_headless_ones_none() {
    let dual: SlimService = through_json(&service(
        Some(vec!["10.96.0.10", "fd00::a"]),
        Some("10.96.0.10"),
    ));
    assert_eq!(
        dual.into_facts(),
        Some(ServiceFacts {
            uid: "svc-uid".into(),
            namespace: "shop".into(),
            name: "web".into(),
            cluster_ips: vec!["10.96.0.10".parse().unwrap(), "fd00::a".parse().unwrap()],
        })
    );
    let headless: SlimService = through_json(&service(Some(vec!["None"]), Some("None")));
    assert_eq!(
        headless.into_facts().unwrap().cluster_ips,
        Vec::<IpAddr>::new()
    );
    let old_server: SlimService = through_json(&service(None, Some("10.96.0.11")));
    assert_eq!(
        old_server.into_facts().unwrap().cluster_ips,
        vec!["10.96.0.11".parse::<IpAddr>().unwrap()]
    );
}

fn node(node_labels: &[(&str, &str)]) -> Node {
    let address = |kind: &str, address: &str| NodeAddress {
        type_: kind.into(),
        address: address.into(),
    };
    Node {
        metadata: ObjectMeta {
            name: Some("node-b".into()),
            uid: Some("node-uid".into()),
            resource_version: Some("99".into()),
            labels: labels(node_labels),
            ..Default::default()
        },
        spec: None,
        status: Some(NodeStatus {
            addresses: Some(vec![
                address("Hostname", "node-b"),
                address("InternalIP", "192.168.1.11"),
                address("ExternalIP", "203.0.113.7"),
                address("InternalDNS", "node-b.internal"),
            ]),
            ..Default::default()
        }),
    }
}

#[test]
fn nodes_keep_their_addresses_and_zone_labels() {
    let slim: SlimNode = through_json(&node(&[
        ("kubernetes.io/hostname", "node-b"),
        ("topology.kubernetes.io/zone", "eu-west-1b"),
        ("topology.kubernetes.io/region", "eu-west-1"),
        ("failure-domain.beta.kubernetes.io/zone", "stale-zone"),
    ]));
    assert_eq!(
        slim.into_facts(),
        Some(NodeFacts {
            uid: "node-uid".into(),
            name: "node-b".into(),
            addresses: vec![
                "192.168.1.11".parse().unwrap(),
                "203.0.113.7".parse().unwrap()
            ],
            place: Place {
                zone: Some("eu-west-1b".into()),
                region: Some("eu-west-1".into()),
            },
        })
    );
}

#[test]
fn legacy_zone_labels_are_the_fallback() {
    let legacy: SlimNode = through_json(&node(&[
        ("failure-domain.beta.kubernetes.io/zone", "us-east-1c"),
        ("failure-domain.beta.kubernetes.io/region", "us-east-1"),
    ]));
    let place = legacy.into_facts().unwrap().place;
    assert_eq!(
        (place.zone.as_deref(), place.region.as_deref()),
        (Some("us-east-1c"), Some("us-east-1"))
    );
    let unlabelled: SlimNode = through_json(&node(&[("topology.kubernetes.io/zone", "")]));
    assert_eq!(unlabelled.into_facts().unwrap().place, Place::default());
}

#[test]
fn owners_come_from_metadata_only_objects() {
    // What the API server sends for a metadata-only request.
    let json = r#"{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1",
        "metadata":{"name":"web-5d4f8","namespace":"shop","uid":"rs-uid","resourceVersion":"7",
        "ownerReferences":[{"apiVersion":"apps/v1","kind":"Deployment","name":"web",
        "uid":"dep-uid","controller":true}]}}"#;
    let object: PartialObjectMeta<ReplicaSet> = serde_json::from_str(json).unwrap();
    assert_eq!(
        owner_facts(object),
        Some(OwnerFacts {
            uid: "rs-uid".into(),
            namespace: "shop".into(),
            name: "web-5d4f8".into(),
            controller: Some(ControllerRef {
                kind: "Deployment".into(),
                name: "web".into(),
                uid: "dep-uid".into(),
            }),
        })
    );
}

#[test]
fn the_slim_types_name_the_real_endpoints() {
    assert_eq!(SlimPod::url_path(&(), None), "/api/v1/pods");
    assert_eq!(SlimService::url_path(&(), None), "/api/v1/services");
    assert_eq!(SlimNode::url_path(&(), None), "/api/v1/nodes");
    assert_eq!(SlimPod::kind(&()), "Pod");
}
