//! Applies what the watchers report to the builder, and keeps each kind's
//! health: its state, error count, object count and last sync.
//!
//! Logs go out once per state change (listed, failing with the reason,
//! working again), never per event or per retry: an RBAC rule missing for
//! a day must not write a line per backoff step.

use std::time::Duration;

use kube::runtime::watcher::{self, Event};
use kube::Resource;
use std::sync::Arc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::builder::IndexBuilder;
use super::facts::{NodeFacts, OwnerFacts, PodFacts, ServiceFacts};
use super::health::{KubeHealth, ResourceKind, WatchState};
use super::objects::uid_of;

#[cfg(test)]
mod tests;

/// A failing watcher that has reported no new error for this long is taken
/// as working again. kube-rs resumes a broken watch silently (only a relist
/// shows as events), and a quiet kind may send nothing for hours; but a
/// watcher that still fails errs again within the default backoff's 30 s
/// ceiling, plus its request's own time.
pub const QUIET_RECOVERY: Duration = Duration::from_secs(120);

/// One object's facts, by kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Facts {
    Pod(PodFacts),
    Service(ServiceFacts),
    Node(NodeFacts),
    ReplicaSet(OwnerFacts),
    Job(OwnerFacts),
}

/// A watcher event reduced to what the index needs.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// `Init`: a (re)list starts.
    Relist,
    /// `InitApply` or `Apply`.
    Apply(Facts),
    /// `Delete`, by uid.
    Delete(String),
    /// `InitDone`: the list is complete.
    Listed,
}

impl Change {
    /// `None` for an object without a uid, which cannot be keyed.
    pub fn from_event<K: Resource>(
        event: Event<K>,
        facts: fn(K) -> Option<Facts>,
    ) -> Option<Change> {
        match event {
            Event::Init => Some(Change::Relist),
            Event::InitApply(object) | Event::Apply(object) => facts(object).map(Change::Apply),
            Event::Delete(object) => {
                uid_of(object.meta()).map(|uid| Change::Delete(uid.to_owned()))
            }
            Event::InitDone => Some(Change::Listed),
        }
    }
}

pub struct Update {
    pub kind: ResourceKind,
    pub result: Result<Option<Change>, watcher::Error>,
}

/// What handling one update means for publishing.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Lookups would now answer differently.
    pub changed: bool,
    /// This update completed the last of the first lists: publish at once.
    pub first_full_sync: bool,
}

#[derive(Default)]
struct KindTrack {
    relisting: bool,
    listed_once: bool,
    last_error: Option<Instant>,
}

pub struct Tracker {
    health: Arc<KubeHealth>,
    kinds: [KindTrack; 5],
    announced_sync: bool,
}

impl Tracker {
    pub fn new(health: Arc<KubeHealth>) -> Tracker {
        Tracker {
            health,
            kinds: Default::default(),
            announced_sync: false,
        }
    }

    pub fn handle(
        &mut self,
        update: Update,
        builder: &mut IndexBuilder,
        now: Instant,
        unix_now: u64,
    ) -> Outcome {
        let kind = update.kind;
        let mut outcome = Outcome::default();
        match update.result {
            Err(error) => self.failed(kind, &error, now),
            Ok(None) => {}
            Ok(Some(Change::Relist)) => {
                builder.begin_relist(kind);
                self.track(kind).relisting = true;
            }
            Ok(Some(Change::Apply(facts))) => {
                apply(builder, facts);
                outcome.changed = self.live_event(kind, unix_now);
            }
            Ok(Some(Change::Delete(uid))) => {
                builder.delete(kind, &uid);
                outcome.changed = self.live_event(kind, unix_now);
            }
            Ok(Some(Change::Listed)) => {
                builder.finish_relist(kind);
                self.listed(kind, builder.objects(kind), unix_now);
                outcome.changed = true;
                if !self.announced_sync && builder.synced() {
                    self.announced_sync = true;
                    outcome.first_full_sync = true;
                    info!(
                        pods = builder.objects(ResourceKind::Pod),
                        services = builder.objects(ResourceKind::Service),
                        nodes = builder.objects(ResourceKind::Node),
                        "kubernetes: every watcher has listed; identities are complete"
                    );
                }
            }
        }
        self.health.set_objects(kind, builder.objects(kind));
        outcome
    }

    /// Takes failing kinds that have been quiet for [`QUIET_RECOVERY`] as
    /// working again. A kind in the middle of a list stays failing until
    /// the list completes.
    pub fn recover_quiet(&mut self, now: Instant) {
        for kind in ResourceKind::ALL {
            let track = &self.kinds[kind as usize];
            let quiet = track
                .last_error
                .is_some_and(|at| now.saturating_duration_since(at) >= QUIET_RECOVERY);
            let relisting = track.relisting;
            if quiet && !relisting && self.health.state(kind) == WatchState::Failing {
                self.recovered(kind, "no error for two minutes");
            }
        }
    }

    fn track(&mut self, kind: ResourceKind) -> &mut KindTrack {
        &mut self.kinds[kind as usize]
    }

    /// An Apply or Delete. From a live watch it proves the watch works and
    /// changes what lookups see; during a relist it only fills the new set.
    fn live_event(&mut self, kind: ResourceKind, unix_now: u64) -> bool {
        if self.track(kind).relisting {
            return false;
        }
        self.health.synced_at(kind, unix_now);
        if self.health.state(kind) == WatchState::Failing {
            self.recovered(kind, "a watch event arrived");
        }
        true
    }

    fn listed(&mut self, kind: ResourceKind, objects: usize, unix_now: u64) {
        let track = self.track(kind);
        track.relisting = false;
        let first = !track.listed_once;
        track.listed_once = true;
        self.health.synced_at(kind, unix_now);
        match self.health.state(kind) {
            WatchState::Failing => self.recovered(kind, "the list completed"),
            _ if first => {
                info!(resource = kind.as_str(), objects, "kubernetes: listed");
                self.health.set_state(kind, WatchState::Synced);
            }
            _ => debug!(resource = kind.as_str(), objects, "kubernetes: relisted"),
        }
    }

    fn failed(&mut self, kind: ResourceKind, error: &watcher::Error, now: Instant) {
        // 410 Gone: the watch fell behind the server's history (routine after
        // a long disconnect, or an API server restart). kube-rs relists and
        // the relist replaces this kind's set; nothing is failing.
        if let watcher::Error::WatchError(status) = error {
            if status.code == 410 {
                debug!(
                    resource = kind.as_str(),
                    "kubernetes: watch expired (410 Gone); relisting"
                );
                return;
            }
        }
        self.health.count_error(kind);
        self.track(kind).last_error = Some(now);
        if self.health.state(kind) != WatchState::Failing {
            self.health.set_state(kind, WatchState::Failing);
            warn!(
                resource = kind.as_str(),
                reason = %one_line(&error.to_string()),
                "kubernetes: watching fails; keeping the last data and retrying with backoff"
            );
        }
    }

    fn recovered(&mut self, kind: ResourceKind, how: &str) {
        let track = self.track(kind);
        track.last_error = None;
        let state = if track.listed_once {
            WatchState::Synced
        } else {
            WatchState::Initializing
        };
        self.health.set_state(kind, state);
        info!(
            resource = kind.as_str(),
            how, "kubernetes: watching works again"
        );
    }
}

fn apply(builder: &mut IndexBuilder, facts: Facts) {
    match facts {
        Facts::Pod(pod) => builder.apply_pod(pod),
        Facts::Service(service) => builder.apply_service(service),
        Facts::Node(node) => builder.apply_node(node),
        Facts::ReplicaSet(owner) => builder.apply_replica_set(owner),
        Facts::Job(owner) => builder.apply_job(owner),
    }
}

/// Error texts may span lines (YAML and API server messages); a log line
/// and a metric help text want one.
pub(super) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
