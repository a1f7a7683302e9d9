//! A pod's workload, from the chain of controller owner references.
//!
//! Deployments and CronJobs do not own pods directly: a Deployment owns
//! ReplicaSets (named `<deployment>-<hash>`) and a CronJob owns Jobs, which
//! own the pods. So for those two kinds the pod's controller is looked up
//! (by uid, which never names a successor) and its own controller, if any,
//! is the workload. StatefulSets, DaemonSets and any other controller own
//! their pods directly and are the workload by their name.

use std::sync::Arc;

use super::builder::{Controller, IndexBuilder, OwnerRecord};
use super::store::Store;

#[cfg(test)]
mod tests;

pub(super) fn workload(
    builder: &IndexBuilder,
    pod_name: &Arc<str>,
    controller: Option<&Controller>,
) -> Arc<str> {
    let Some(controller) = controller else {
        // A bare pod is its own workload.
        return pod_name.clone();
    };
    let parents: &Store<OwnerRecord> = match &*controller.kind {
        "ReplicaSet" => &builder.replica_sets,
        "Job" => &builder.jobs,
        _ => return controller.name.clone(),
    };
    match parents.get(&controller.uid) {
        Some(parent) => match &parent.controller {
            Some(grandparent) => grandparent.name.clone(),
            // A ReplicaSet made by hand, or a Job run by hand.
            None => parent.name.clone(),
        },
        // Not listed yet (or not allowed): the ReplicaSet's or Job's own
        // name is the best there is; the next snapshot after it arrives
        // resolves the chain.
        None => controller.name.clone(),
    }
}
