//! The builder's storage: one [`Store`] per kind, keyed by uid, and an
//! [`Interner`] so that the namespace, node and owner names repeated by
//! thousands of pods are held once.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

use foldhash::fast::RandomState;

pub(super) type Map<K, V> = HashMap<K, V, RandomState>;

/// The objects of one kind, keyed by uid.
///
/// Keying by uid, not namespace/name, is what makes deletes safe: a
/// StatefulSet pod deleted and recreated under the same name is a new uid,
/// and the late delete of the old one removes only the old one.
///
/// A relist (kube-rs `Init` .. `InitDone`, after a 410 Gone or at start)
/// fills a fresh map while lookups keep using the old one; `InitDone`
/// swaps them, so objects deleted while the watch was down disappear and
/// nothing is half-listed in between.
pub(super) struct Store<T> {
    live: Map<Arc<str>, T>,
    relist: Option<Map<Arc<str>, T>>,
    listed: bool,
}

impl<T> Default for Store<T> {
    fn default() -> Self {
        Store {
            live: Map::default(),
            relist: None,
            listed: false,
        }
    }
}

impl<T> Store<T> {
    /// During a relist the object belongs to the new set (kube-rs emits no
    /// plain `Apply` between `Init` and `InitDone`).
    pub(super) fn apply(&mut self, uid: Arc<str>, value: T) {
        match &mut self.relist {
            Some(next) => next.insert(uid, value),
            None => self.live.insert(uid, value),
        };
    }

    pub(super) fn delete(&mut self, uid: &str) -> bool {
        let live = self.live.remove(uid).is_some();
        let next = self.relist.as_mut().and_then(|next| next.remove(uid));
        live || next.is_some()
    }

    pub(super) fn begin_relist(&mut self) {
        self.relist = Some(Map::default());
    }

    pub(super) fn finish_relist(&mut self) {
        if let Some(next) = self.relist.take() {
            self.live = next;
        }
        self.listed = true;
    }

    /// Whether a first list has completed.
    pub(super) fn listed(&self) -> bool {
        self.listed
    }

    pub(super) fn get(&self, uid: &str) -> Option<&T> {
        self.live.get(uid)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &T)> {
        self.live.iter()
    }

    pub(super) fn len(&self) -> usize {
        self.live.len()
    }
}

/// Shares one allocation among equal strings.
#[derive(Default)]
pub(super) struct Interner {
    strings: HashSet<Arc<str>, RandomState>,
}

impl Interner {
    pub(super) fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.strings.get(text) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(text);
        self.strings.insert(shared.clone());
        shared
    }

    /// Forgets strings that nothing else holds any more (deleted namespaces,
    /// nodes, ReplicaSets), so churn does not grow the set forever.
    pub(super) fn prune(&mut self) {
        self.strings.retain(|text| Arc::strong_count(text) > 1);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.strings.len()
    }
}

/// Keeps the greatest-ranked candidate per key.
pub(super) fn keep_best<K: Hash + Eq, R: Ord>(
    best: &mut Map<K, (R, u32)>,
    key: K,
    rank: R,
    at: u32,
) {
    match best.get_mut(&key) {
        Some(held) if held.0 >= rank => {}
        Some(held) => *held = (rank, at),
        None => {
            best.insert(key, (rank, at));
        }
    }
}
