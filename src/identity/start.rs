//! Starting the fact sources from the flags: the cgroup names, the labels
//! file, the Kubernetes watchers. Each failure that makes a flag's promise
//! impossible stops the exporter with one line; what can still work later
//! (an API server that is down) only logs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;
use tracing::{info, warn};

use super::cgroups::{find_cgroup2_mount, CgroupSettings, Cgroups};
use super::conntrack::Conntrack;
use super::kubernetes::{self, KubeHealth, KubeIndex, KubeSettings};
use super::networks::LabelsFile;
use super::resolver::{Resolver, ThisNode};
use super::Place;
use crate::config_file::{self, FileStats};

/// What the flags ask of identity.
#[derive(Clone, Debug)]
pub struct IdentityConfig {
    pub kubeconfig: Option<PathBuf>,
    pub node_name: String,
    pub node_zone: Option<String>,
    pub node_region: Option<String>,
    pub labels_file: Option<PathBuf>,
    /// Whether sockets' cgroups are named (--cgroup.attribution).
    pub cgroup_attribution: bool,
    /// --cgroup.root; the first cgroup2 mount without it.
    pub cgroup_root: Option<PathBuf>,
    /// --conntrack.netns; the exporter's own namespace without it.
    pub conntrack_netns: Option<PathBuf>,
}

/// The health of each fact source that runs, for the self-metrics.
#[derive(Clone, Debug, Default)]
pub struct IdentityHealth {
    pub kubernetes: Option<Arc<KubeHealth>>,
    pub labels: Option<Arc<FileStats>>,
    /// Conntrack lookups run, which need CAP_NET_ADMIN at each request.
    pub conntrack: bool,
}

/// How long start-up waits for the first full list of every watched kind,
/// so that the first scrape already names its pods. Past it the exporter
/// serves anyway, and names what it learns later in new series.
const FIRST_SYNC_WAIT: Duration = Duration::from_secs(10);

/// Starts every fact source the flags ask for, on the current runtime, and
/// returns the resolver that reads them.
pub async fn start(config: &IdentityConfig) -> Result<(Resolver, IdentityHealth)> {
    let mut health = IdentityHealth::default();
    let cgroups = match config.cgroup_attribution {
        true => cgroups(config.cgroup_root.clone()),
        false => None,
    };

    let networks = match &config.labels_file {
        Some(path) => {
            let file = LabelsFile::open(path).map_err(|e| anyhow::anyhow!("--labels.file: {e}"))?;
            let stats = Arc::new(FileStats::default());
            let (publish, receive) = watch::channel(file.current());
            info!(networks = file.current().len(), path = %path.display(), "named networks loaded");
            tokio::spawn(config_file::keep_loaded(file, publish, stats.clone()));
            health.labels = Some(stats);
            Some(receive)
        }
        None => {
            tokio::spawn(nothing_to_reload());
            None
        }
    };

    let settings = KubeSettings {
        kubeconfig: config.kubeconfig.clone(),
        node_name: config.node_name.clone(),
    };
    let kube = match kubernetes::connect(&settings)
        .await
        .context("--kubernetes.kubeconfig")?
    {
        Some(client) => {
            let kube_health = Arc::new(KubeHealth::default());
            let (publish, mut receive) =
                watch::channel(Arc::new(KubeIndex::empty(&config.node_name)));
            tokio::spawn(kubernetes::run(
                client,
                config.node_name.clone(),
                publish,
                kube_health.clone(),
            ));
            let synced = tokio::time::timeout(FIRST_SYNC_WAIT, receive.wait_for(|i| i.synced()));
            match synced.await {
                Ok(Ok(_)) => info!(node = %config.node_name, "Kubernetes objects listed"),
                _ => warn!(
                    "Kubernetes objects not listed within {FIRST_SYNC_WAIT:?}; serving anyway, \
                     flows seen meanwhile are labelled by address class"
                ),
            }
            health.kubernetes = Some(kube_health);
            Some(receive)
        }
        None => None,
    };

    let node = ThisNode {
        name: config.node_name.clone(),
        place_override: Place {
            zone: config.node_zone.as_deref().map(Arc::from),
            region: config.node_region.as_deref().map(Arc::from),
        },
    };
    let mut resolver = Resolver::new(node, kube, networks, cgroups);
    match Conntrack::open(config.conntrack_netns.as_deref()) {
        Ok(conntrack) => {
            resolver = resolver.with_conntrack(conntrack);
            health.conntrack = true;
        }
        // Asked for: a promise the exporter cannot keep.
        Err(e) if config.conntrack_netns.is_some() => {
            return Err(anyhow::anyhow!("--conntrack.netns: {e}"));
        }
        Err(e) => info!(reason = %e, "Service backends not resolved from conntrack"),
    }
    Ok((resolver, health))
}

/// SIGHUP asks an exporter to reload; without --labels.file there is
/// nothing to, and the signal's default action would kill the process.
async fn nothing_to_reload() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        return;
    };
    while hangups.recv().await.is_some() {
        info!("SIGHUP: nothing to reload (no --labels.file)");
    }
}

/// The cgroup namer, or `None` with a warning: without it flows still count,
/// and the kernel still splits them by cgroup, only without names.
fn cgroups(root: Option<PathBuf>) -> Option<Cgroups> {
    let mut settings = CgroupSettings::default();
    // Hosts in systemd's hybrid layout mount cgroup2 at
    // /sys/fs/cgroup/unified, not at the usual place.
    if let Some(root) = root.or_else(find_cgroup2_mount) {
        settings.cgroup_root = root;
    }
    match Cgroups::new(settings) {
        Ok(cgroups) => Some(cgroups),
        Err(e) => {
            warn!(error = %e, "cannot name cgroups: src_workload stays empty");
            None
        }
    }
}

/// --node.name, else $NODE_NAME (clap reads it), else the hostname.
pub fn node_name(flag: Option<String>) -> String {
    flag.filter(|name| !name.is_empty()).unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .unwrap_or_default()
    })
}
