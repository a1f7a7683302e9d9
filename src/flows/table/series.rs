//! The exported series: a slab of running totals, and an index from labels
//! to slot so that keys with equal labels share one. The index holds slot
//! numbers only and compares against the slab, so no series' labels are
//! stored twice (80 bytes a series).

use std::hash::{BuildHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::flows::key::Role;
use crate::identity::labels::Identity;

/// A series' labels. The identity is interned, so equal identities are one
/// pointer and compare as such.
#[derive(Clone, Debug)]
pub struct SeriesLabels {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub role: Role,
    pub identity: Arc<Identity>,
}

impl PartialEq for SeriesLabels {
    fn eq(&self, other: &Self) -> bool {
        self.local == other.local
            && self.remote == other.remote
            && self.role == other.role
            && Arc::ptr_eq(&self.identity, &other.identity)
    }
}

impl Eq for SeriesLabels {}

impl Hash for SeriesLabels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.local.hash(state);
        self.remote.hash(state);
        self.role.hash(state);
        Arc::as_ptr(&self.identity).hash(state);
    }
}

/// One series: its labels and what it counted.
#[derive(Clone, Debug)]
pub struct Series {
    pub labels: SeriesLabels,
    pub sent: u64,
    pub received: u64,
    /// CLOCK_MONOTONIC nanoseconds of the latest counted send or receive.
    pub last_seen_ns: u64,
    /// What its bytes cost at the prices in force when they were read
    /// (--cost.file); 0 without prices.
    pub cost: f64,
}

impl Series {
    pub fn grow(&mut self, sent: u64, received: u64, seen_ns: u64) {
        self.sent = self.sent.wrapping_add(sent);
        self.received = self.received.wrapping_add(received);
        self.last_seen_ns = self.last_seen_ns.max(seen_ns);
    }
}

pub type SeriesId = u32;

/// Series by slot, reused after expiry, and by labels.
#[derive(Debug, Default)]
pub struct SeriesSet {
    slots: Vec<Option<Series>>,
    free: Vec<SeriesId>,
    by_labels: hashbrown::HashTable<SeriesId>,
    hasher: foldhash::fast::RandomState,
}

impl SeriesSet {
    pub fn len(&self) -> usize {
        self.by_labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_labels.is_empty()
    }

    /// The series with these labels, made with no bytes if there is none and
    /// fewer than `limit` exist; `None` if the set is full.
    pub fn find_or_add(&mut self, labels: SeriesLabels, limit: usize) -> Option<SeriesId> {
        let hash = self.hasher.hash_one(&labels);
        let slots = &self.slots;
        let same = |id: &SeriesId| {
            slots[*id as usize]
                .as_ref()
                .is_some_and(|s| s.labels == labels)
        };
        if let Some(&id) = self.by_labels.find(hash, same) {
            return Some(id);
        }
        if self.by_labels.len() >= limit {
            return None;
        }
        let series = Series {
            labels,
            sent: 0,
            received: 0,
            last_seen_ns: 0,
            cost: 0.0,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(series);
                id
            }
            None => {
                self.slots.push(Some(series));
                (self.slots.len() - 1) as SeriesId
            }
        };
        let (slots, hasher) = (&self.slots, &self.hasher);
        let rehash = |id: &SeriesId| {
            let series = slots[*id as usize].as_ref().expect("indexed series exist");
            hasher.hash_one(&series.labels)
        };
        self.by_labels.insert_unique(hash, id, rehash);
        Some(id)
    }

    pub fn get_mut(&mut self, id: SeriesId) -> &mut Series {
        self.slots[id as usize]
            .as_mut()
            .expect("a key's series exists while the key does")
    }

    pub fn get(&self, id: SeriesId) -> &Series {
        self.slots[id as usize]
            .as_ref()
            .expect("a key's series exists while the key does")
    }

    /// Drops every series `dropped` says so of; returns how many.
    pub fn remove_where(&mut self, mut dropped: impl FnMut(SeriesId, &Series) -> bool) -> u64 {
        let mut removed = 0;
        for (id, slot) in self.slots.iter_mut().enumerate() {
            let id = id as SeriesId;
            if slot.as_ref().is_some_and(|series| dropped(id, series)) {
                let series = slot.take().expect("checked above");
                let hash = self.hasher.hash_one(&series.labels);
                if let Ok(entry) = self.by_labels.find_entry(hash, |&other| other == id) {
                    entry.remove();
                }
                self.free.push(id);
                removed += 1;
            }
        }
        removed
    }

    /// Slots, used or free: every id is below it.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Series> {
        self.slots.iter().flatten()
    }
}
