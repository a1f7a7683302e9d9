//! The watch task: five kube-rs watchers merged into one stream, applied to
//! an [`IndexBuilder`], and a new [`KubeIndex`] published at most once per
//! second while changes arrive.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::stream::{self, BoxStream, SelectAll};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use kube::core::PartialObjectMeta;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant, MissedTickBehavior};
use tracing::warn;

use super::builder::IndexBuilder;
use super::health::{KubeHealth, ResourceKind};
use super::index::KubeIndex;
use super::objects::{owner_facts, SlimNode, SlimPod, SlimService};
use super::tracker::{Change, Facts, Tracker, Update};

#[cfg(test)]
mod tests;

/// Publishing rebuilds the whole index (a few ms at 10k pods); pod churn can
/// bring hundreds of events a second, so they are batched.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// How often failing kinds are checked for a quiet recovery.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(5);

/// Watches Pods, Services, Nodes, ReplicaSets and Jobs cluster-wide and
/// publishes the index through `publish` until the task is dropped.
///
/// Never returns an error: a watcher that fails keeps its last good data,
/// shows `Failing` in `health`, logs once, and retries with kube-rs's
/// default backoff (0.8 s doubling to 30 s, with jitter).
pub async fn run(
    client: Client,
    node_name: String,
    publish: watch::Sender<Arc<KubeIndex>>,
    health: Arc<KubeHealth>,
) {
    let mut builder = IndexBuilder::new(&node_name);
    let mut tracker = Tracker::new(health);
    let mut updates = watchers(client);
    let mut last_publish: Option<Instant> = None;
    let mut publish_due: Option<Instant> = None;
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING_EVERY);
    housekeeping.set_missed_tick_behavior(MissedTickBehavior::Delay);

    loop {
        let due = publish_due;
        tokio::select! {
            update = updates.next() => {
                let Some(update) = update else {
                    // The watchers retry forever; this is not expected.
                    warn!("kubernetes: every watcher stopped; identities stay as last published");
                    return;
                };
                let now = Instant::now();
                let outcome = tracker.handle(update, &mut builder, now, unix_now());
                if outcome.first_full_sync {
                    publish.send_replace(Arc::new(builder.snapshot()));
                    last_publish = Some(now);
                    publish_due = None;
                } else if outcome.changed && publish_due.is_none() {
                    publish_due = Some(last_publish.map_or(now, |last| (last + PUBLISH_EVERY).max(now)));
                }
            }
            _ = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                publish.send_replace(Arc::new(builder.snapshot()));
                last_publish = Some(Instant::now());
                publish_due = None;
            }
            _ = housekeeping.tick() => tracker.recover_quiet(Instant::now()),
        }
    }
}

fn watchers(client: Client) -> SelectAll<BoxStream<'static, Update>> {
    // resourceVersion=0 lists ("any") are served from the API server's watch
    // cache instead of a quorum read from etcd: with one exporter per node,
    // a rollout of the DaemonSet would otherwise send hundreds of full pod
    // lists to etcd at once. A few seconds of staleness is harmless here:
    // the watch that follows catches up.
    let config = watcher::Config::default().any_semantic();
    stream::select_all([
        updates(
            Api::<SlimPod>::all(client.clone()),
            &config,
            ResourceKind::Pod,
            |pod| pod.into_facts().map(Facts::Pod),
        ),
        updates(
            Api::<SlimService>::all(client.clone()),
            &config,
            ResourceKind::Service,
            |service| service.into_facts().map(Facts::Service),
        ),
        updates(
            Api::<SlimNode>::all(client.clone()),
            &config,
            ResourceKind::Node,
            |node| node.into_facts().map(Facts::Node),
        ),
        // `Api<PartialObjectMeta<K>>` makes kube-rs send metadata-only
        // requests (the API server returns PartialObjectMetadata): owners are
        // only ever needed for their name and their own controller.
        updates(
            Api::<PartialObjectMeta<ReplicaSet>>::all(client.clone()),
            &config,
            ResourceKind::ReplicaSet,
            |owner| owner_facts(owner).map(Facts::ReplicaSet),
        ),
        updates(
            Api::<PartialObjectMeta<Job>>::all(client),
            &config,
            ResourceKind::Job,
            |owner| owner_facts(owner).map(Facts::Job),
        ),
    ])
}

fn updates<K>(
    api: Api<K>,
    config: &watcher::Config,
    kind: ResourceKind,
    facts: fn(K) -> Option<Facts>,
) -> BoxStream<'static, Update>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher(api, config.clone())
        .default_backoff()
        .map(move |result| Update {
            kind,
            result: result.map(|event| Change::from_event(event, facts)),
        })
        .boxed()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}
