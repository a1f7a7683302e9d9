//! The cap on open connections (--web.max-connections), and who makes room
//! when it is reached.
//!
//! Every connection is accepted, so the listen queue never fills with
//! clients nobody will serve. When the cap is reached, the connection that
//! has waited longest for a request is closed to make room: first those that
//! never sent one, then kept-alive ones between requests. A connection whose
//! request is being answered is never closed for room; when every connection
//! is being answered, the new one is closed at once. So clients that open
//! connections and send nothing cannot keep a scraper out: its connection is
//! the newest, last in line to be closed, and is busy as soon as its request
//! arrives.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Debug)]
pub struct Connections {
    max: usize,
    /// By age: the key counts up.
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    next: u64,
    slots: BTreeMap<u64, Arc<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// Requests being answered (hyper answers one at a time; pipelined
    /// requests wait).
    busy: AtomicUsize,
    /// Whether a request was ever answered here.
    served: AtomicBool,
    closing: Notify,
}

/// One admitted connection; its place is freed when it is dropped.
#[derive(Debug)]
pub struct Slot {
    id: u64,
    state: Arc<State>,
    connections: Arc<Connections>,
}

/// Held while a request is answered, up to its response's last byte.
#[derive(Debug)]
pub struct Busy(Arc<State>);

impl Connections {
    pub fn new(max: usize) -> Arc<Connections> {
        Arc::new(Connections {
            max: max.max(1),
            open: Mutex::new(Open::default()),
        })
    }

    /// A slot for a new connection, after closing the longest-waiting idle
    /// one if the cap is reached; None if every open connection is busy.
    pub fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut open = crate::lock::unpoisoned(&self.open);
        if open.slots.len() >= self.max {
            let idle = |s: &&Arc<State>| s.busy.load(Ordering::Acquire) == 0;
            let victim = open
                .slots
                .iter()
                .filter(|(_, s)| idle(s) && !s.served.load(Ordering::Acquire))
                .chain(open.slots.iter().filter(|(_, s)| idle(s)))
                .map(|(id, _)| *id)
                .next()?;
            if let Some(state) = open.slots.remove(&victim) {
                // Stores a permit: the connection closes even if it is not
                // waiting on it yet.
                state.closing.notify_one();
            }
        }
        let id = open.next;
        open.next += 1;
        let state = Arc::new(State::default());
        open.slots.insert(id, state.clone());
        Some(Slot {
            id,
            state,
            connections: self.clone(),
        })
    }

    #[cfg(test)]
    fn open(&self) -> usize {
        crate::lock::unpoisoned(&self.open).slots.len()
    }
}

impl Slot {
    /// Completes when the connection must close to make room.
    pub async fn closing(&self) {
        self.state.closing.notified().await
    }

    /// Marks a request as being answered until the guard is dropped.
    pub fn busy(&self) -> Busy {
        self.state.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.state.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        crate::lock::unpoisoned(&self.connections.open)
            .slots
            .remove(&self.id);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.served.store(true, Ordering::Release);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn closed(slot: &Slot) -> bool {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_millis(10), slot.closing())
                .await
                .is_ok()
        })
    }

    #[test]
    fn room_is_made_by_the_oldest_that_never_sent_a_request() {
        let connections = Connections::new(3);
        let kept_alive = connections.admit().unwrap();
        drop(kept_alive.busy()); // answered one request, now idle
        let silent_old = connections.admit().unwrap();
        let silent_new = connections.admit().unwrap();
        let newcomer = connections.admit().unwrap();
        assert!(closed(&silent_old));
        assert!(!closed(&silent_new));
        assert!(!closed(&kept_alive));
        assert_eq!(connections.open(), 3);
        // Then the next silent one, then the kept-alive one.
        let _busy = newcomer.busy();
        let second = connections.admit().unwrap();
        let _busy_too = second.busy();
        assert!(closed(&silent_new));
        let _third = connections.admit().unwrap();
        assert!(closed(&kept_alive));
    }

    #[test]
    fn busy_connections_are_never_closed_for_room() {
        let connections = Connections::new(2);
        let a = connections.admit().unwrap();
        let b = connections.admit().unwrap();
        let (_a, _b) = (a.busy(), b.busy());
        assert!(connections.admit().is_none());
        assert!(!closed(&a) && !closed(&b));
        drop(_b);
        assert!(connections.admit().is_some());
        assert!(closed(&b));
    }

    #[test]
    fn a_dropped_slot_frees_its_place() {
        let connections = Connections::new(1);
        let a = connections.admit().unwrap();
        drop(a);
        assert_eq!(connections.open(), 0);
        let b = connections.admit().unwrap();
        assert!(!closed(&b));
    }
}
