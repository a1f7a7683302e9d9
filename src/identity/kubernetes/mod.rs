//! Who an IP or a pod uid is in Kubernetes: pods, Services and Nodes, their
//! workloads and zones.
//!
//! The data flows one way:
//!
//! - [`watch::run`] follows five kube-rs watchers (Pods, Services, Nodes in
//!   slim types from [`objects`]; ReplicaSets and Jobs as metadata only);
//! - each event becomes plain [`facts`] and is applied to an
//!   [`IndexBuilder`] by the [`tracker`], which also keeps [`KubeHealth`];
//! - at most once a second the builder makes an immutable [`KubeIndex`],
//!   published through a `tokio::sync::watch` channel for scrapes to read.

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};

mod builder;
mod facts;
mod health;
mod index;
mod objects;
mod owners;
mod store;
#[cfg(test)]
mod tests;
mod tracker;
mod watch;

pub use builder::IndexBuilder;
pub use facts::{ControllerRef, NodeFacts, OwnerFacts, PodFacts, PodPhase, ServiceFacts};
pub use health::{KindHealth, KubeHealth, ResourceKind, WatchState};
pub use index::{KubeIndex, KubePeer};
pub use watch::run;

/// Whether and how to reach the API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeSettings {
    /// `--kubernetes.kubeconfig`; without it, the in-cluster config is used
    /// when running in a pod.
    pub kubeconfig: Option<PathBuf>,
    /// This node's name: its Node's labels give this end's zone and region.
    pub node_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("kubeconfig {path}: {reason}")]
    Kubeconfig { path: PathBuf, reason: String },
    #[error("in-cluster Kubernetes config: {0}")]
    InCluster(String),
    #[error("Kubernetes client: {0}")]
    Client(String),
}

/// The environment variable the kubelet sets in every pod.
const IN_CLUSTER_VARIABLE: &str = "KUBERNETES_SERVICE_HOST";

/// A client when a kubeconfig is given or the exporter runs in a pod;
/// `None` otherwise (enrichment off). Makes no request: an unreachable API
/// server shows later, in the watchers' health.
pub async fn connect(settings: &KubeSettings) -> Result<Option<Client>, KubeError> {
    let config = match &settings.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| kubeconfig_error(path, e))?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| kubeconfig_error(path, e))?
        }
        None if std::env::var_os(IN_CLUSTER_VARIABLE).is_some() => Config::incluster()
            .map_err(|e| KubeError::InCluster(tracker::one_line(&e.to_string())))?,
        None => return Ok(None),
    };
    let client = Client::try_from(config)
        .map_err(|e| KubeError::Client(tracker::one_line(&e.to_string())))?;
    Ok(Some(client))
}

fn kubeconfig_error(path: &Path, error: KubeconfigError) -> KubeError {
    let reason = match error {
        // Its own text repeats the path, which the caller already names.
        KubeconfigError::ReadConfig(io, _) => io.to_string(),
        // The YAML parser adds a multi-line excerpt of the file after a
        // first line that already gives line, column and cause.
        other => other
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
    };
    KubeError::Kubeconfig {
        path: path.to_path_buf(),
        reason,
    }
}
