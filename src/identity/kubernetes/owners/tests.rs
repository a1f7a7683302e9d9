//! Workloads through the builder: the owner objects and pods are applied
//! as the watchers would, and each snapshot names the workload.

use std::net::IpAddr;

use crate::identity::kubernetes::facts::{ControllerRef, OwnerFacts, PodFacts, PodPhase};
use crate::identity::kubernetes::IndexBuilder;

fn pod(uid: &str, name: &str, address: &str, controller: Option<(&str, &str, &str)>) -> PodFacts {
    PodFacts {
        uid: uid.into(),
        namespace: "shop".into(),
        name: name.into(),
        controller: controller.map(|(kind, name, uid)| ControllerRef {
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
        }),
        node_name: Some("node-a".into()),
        host_network: false,
        phase: PodPhase::Running,
        ips: vec![address.parse::<IpAddr>().unwrap()],
        start_time: None,
    }
}

fn owner(uid: &str, name: &str, controller: Option<(&str, &str)>) -> OwnerFacts {
    OwnerFacts {
        uid: uid.into(),
        namespace: "shop".into(),
        name: name.into(),
        controller: controller.map(|(kind, name)| ControllerRef {
            kind: kind.into(),
            name: name.into(),
            uid: format!("{name}-uid"),
        }),
    }
}

#[test]
fn workloads_follow_controller_owner_references() {
    let mut builder = IndexBuilder::new("node-a");
    let cases = [
        ("ReplicaSet", "web-5d4f8", "rs-1", "web"),
        ("Job", "backup-2891", "job-1", "backup"),
        ("Job", "manual-run", "job-2", "manual-run"),
        ("ReplicaSet", "rollout-77c", "rs-2", "canary"),
        ("StatefulSet", "db", "sts-1", "db"),
        ("DaemonSet", "agent", "ds-1", "agent"),
        ("Workflow", "etl", "wf-1", "etl"),
    ];
    builder.apply_replica_set(owner("rs-1", "web-5d4f8", Some(("Deployment", "web"))));
    builder.apply_replica_set(owner("rs-2", "rollout-77c", Some(("Rollout", "canary"))));
    builder.apply_job(owner("job-1", "backup-2891", Some(("CronJob", "backup"))));
    builder.apply_job(owner("job-2", "manual-run", None));
    for (n, (kind, name, uid, _)) in cases.iter().enumerate() {
        let address = format!("10.0.1.{n}");
        let controller = Some((*kind, *name, *uid));
        builder.apply_pod(pod(
            &format!("p{n}"),
            &format!("pod-{n}"),
            &address,
            controller,
        ));
    }
    builder.apply_pod(pod("bare", "debug-shell", "10.0.2.1", None));
    let index = builder.snapshot();
    for (n, (_, _, _, workload)) in cases.iter().enumerate() {
        let peer = index.pod_by_uid(&format!("p{n}")).unwrap();
        assert_eq!(peer.workload, *workload, "case {n}");
    }
    assert_eq!(index.pod_by_uid("bare").unwrap().workload, "debug-shell");
}

#[test]
fn a_replica_set_known_late_resolves_at_the_next_snapshot() {
    let mut builder = IndexBuilder::new("node-a");
    let controller = Some(("ReplicaSet", "web-5d4f8", "rs-1"));
    builder.apply_pod(pod("p1", "web-5d4f8-x2", "10.0.0.4", controller));
    assert_eq!(
        builder.snapshot().pod_by_uid("p1").unwrap().workload,
        "web-5d4f8"
    );
    builder.apply_replica_set(owner("rs-1", "web-5d4f8", Some(("Deployment", "web"))));
    assert_eq!(builder.snapshot().pod_by_uid("p1").unwrap().workload, "web");
}
