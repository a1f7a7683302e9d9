//! How each watcher is doing, for the self-metrics: plain atomics that the
//! watch task writes and a scrape reads without a lock.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// The kinds of object the exporter watches.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Pod,
    Service,
    Node,
    ReplicaSet,
    Job,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 5] = [
        ResourceKind::Pod,
        ResourceKind::Service,
        ResourceKind::Node,
        ResourceKind::ReplicaSet,
        ResourceKind::Job,
    ];

    /// The `resource` label of the self-metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Pod => "pods",
            ResourceKind::Service => "services",
            ResourceKind::Node => "nodes",
            ResourceKind::ReplicaSet => "replicasets",
            ResourceKind::Job => "jobs",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// Where a watcher stands. The numbers are the self-metric's values.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum WatchState {
    /// The first list has not completed yet.
    Initializing = 0,
    /// The watcher has listed and is following changes.
    Synced = 1,
    /// The last request failed; the last good data is still in use.
    Failing = 2,
}

impl WatchState {
    fn from_u8(value: u8) -> WatchState {
        match value {
            1 => WatchState::Synced,
            2 => WatchState::Failing,
            _ => WatchState::Initializing,
        }
    }
}

/// One kind's figures at the moment they were read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindHealth {
    pub kind: ResourceKind,
    pub state: WatchState,
    /// Unix seconds of the last complete list or live watch event; 0 = never.
    pub last_sync_unix: u64,
    /// Failed requests and watch errors since start (a 410 Gone relist is
    /// routine and not counted).
    pub watch_errors: u64,
    /// Objects of this kind the index holds.
    pub objects: u64,
}

#[derive(Default)]
struct Slot {
    state: AtomicU8,
    last_sync_unix: AtomicU64,
    watch_errors: AtomicU64,
    objects: AtomicU64,
}

/// Shared between the watch task (writer) and the self-metrics (reader).
#[derive(Default)]
pub struct KubeHealth {
    slots: [Slot; 5],
}

impl std::fmt::Debug for KubeHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.read()).finish()
    }
}

impl KubeHealth {
    pub fn new() -> KubeHealth {
        KubeHealth::default()
    }

    /// Every kind's figures, in [`ResourceKind::ALL`] order.
    pub fn read(&self) -> [KindHealth; 5] {
        ResourceKind::ALL.map(|kind| {
            let slot = &self.slots[kind.slot()];
            KindHealth {
                kind,
                state: WatchState::from_u8(slot.state.load(Ordering::Relaxed)),
                last_sync_unix: slot.last_sync_unix.load(Ordering::Relaxed),
                watch_errors: slot.watch_errors.load(Ordering::Relaxed),
                objects: slot.objects.load(Ordering::Relaxed),
            }
        })
    }

    pub fn state(&self, kind: ResourceKind) -> WatchState {
        WatchState::from_u8(self.slots[kind.slot()].state.load(Ordering::Relaxed))
    }

    pub(super) fn set_state(&self, kind: ResourceKind, state: WatchState) {
        self.slots[kind.slot()]
            .state
            .store(state as u8, Ordering::Relaxed);
    }

    pub(super) fn synced_at(&self, kind: ResourceKind, unix_seconds: u64) {
        self.slots[kind.slot()]
            .last_sync_unix
            .store(unix_seconds, Ordering::Relaxed);
    }

    pub(super) fn count_error(&self, kind: ResourceKind) {
        self.slots[kind.slot()]
            .watch_errors
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn set_objects(&self, kind: ResourceKind, objects: usize) {
        self.slots[kind.slot()]
            .objects
            .store(objects as u64, Ordering::Relaxed);
    }
}
