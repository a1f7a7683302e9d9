//! The few facts the index needs from each object, in plain Rust types.
//!
//! The watchers turn every object into one of these as it arrives
//! ([`super::objects`]); tests and the benchmark build them directly.

use std::net::IpAddr;

use crate::identity::Place;

/// A pod's lifecycle phase (`status.phase`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl PodPhase {
    /// An absent or unrecognised phase is `Unknown`.
    pub fn parse(phase: Option<&str>) -> PodPhase {
        match phase {
            Some("Pending") => PodPhase::Pending,
            Some("Running") => PodPhase::Running,
            Some("Succeeded") => PodPhase::Succeeded,
            Some("Failed") => PodPhase::Failed,
            _ => PodPhase::Unknown,
        }
    }
}

/// The owner reference with `controller: true`: the one object that
/// manages this one. Other owner references do not name a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerRef {
    pub kind: String,
    pub name: String,
    pub uid: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFacts {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub controller: Option<ControllerRef>,
    /// `spec.nodeName`; `None` until the pod is scheduled.
    pub node_name: Option<String>,
    pub host_network: bool,
    pub phase: PodPhase,
    /// `status.podIPs`, or `status.podIP` from servers that predate dual stack.
    pub ips: Vec<IpAddr>,
    /// `status.startTime` in unix seconds.
    pub start_time: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceFacts {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// `spec.clusterIPs` without headless `None` entries.
    pub cluster_ips: Vec<IpAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFacts {
    pub uid: String,
    pub name: String,
    /// InternalIP and ExternalIP addresses.
    pub addresses: Vec<IpAddr>,
    pub place: Place,
}

/// A ReplicaSet or Job: only its metadata matters, to find the workload
/// above it (Deployment, CronJob).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerFacts {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub controller: Option<ControllerRef>,
}
