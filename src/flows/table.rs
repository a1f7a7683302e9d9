//! The exporter's running totals per series.
//!
//! A series is a flow's labels: its addresses, role and identity (who each
//! end is, and the path). Kernel keys map to series: two keys whose labels
//! agree (two containers of one pod, say) add into one series, and a key
//! whose identity changes (a pod's IP given to another pod) moves to a new
//! series, so no byte is ever reported under two label sets and a series'
//! labels never change. The identity is bound when a key is first seen and
//! looked at again when its facts change ([`Identify::refresh`]).
//!
//! Sources hand over per-flow byte counts ([`crate::source::FlowSink`]); they are added
//! here, so a counter only ever grows while its series exists, however
//! often the kernel's entry is deleted and created again. A flow idle for
//! longer than --flows.idle-timeout is dropped and its series ends. At most
//! --flows.max flows are kept: the bytes of a new flow beyond that go to the
//! overflow flow until an idle one makes room.
//!
//! Scrapes do not wait for a drain. Switching kernel tables waits for an RCU
//! grace period (7–23 ms on the benchmark VM, more on a busy node), so a
//! scrape reads the table the probes still write and adds each entry's
//! growth since it was last read ([`crate::source::FlowSink::credit`]); each flow keeps
//! what it took. The drain, once the probes have moved to the other table,
//! adds only the rest ([`crate::source::FlowSink::settle`]). An entry's bytes only grow
//! while its table is written, so every total only grows and each byte is
//! added exactly once.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::sync::watch;

use self::classes::{ClassId, Classes};
use self::series::{Series, SeriesId, SeriesLabels, SeriesSet};
use super::key::{decode_key, Flow, Role};
use super::selection::{FlowLabel, LabelSelection};
use super::snapshot::Unresolved;
use crate::cost::Prices;
use crate::identity::labels::{Identity, Interner, ALL_SHOWN};
use crate::identity::resolver::{FlowEnds, Identify};
use crate::identity::Anonymous;
use crate::kernel::skel::{from_bytes, FlowBytes, FlowKey, FlowKeyBytes};
use crate::source::Overflow;

mod classes;
pub mod series;
mod sink;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Taken {
    sent: u64,
    received: u64,
}

impl Taken {
    fn of(counted: &FlowBytes) -> Taken {
        Taken {
            sent: counted.sent,
            received: counted.received,
        }
    }

    /// What `counted` holds beyond what was taken.
    fn rest_of(self, counted: &FlowBytes) -> (u64, u64) {
        (
            counted.sent.saturating_sub(self.sent),
            counted.received.saturating_sub(self.received),
        )
    }
}

/// A kernel key's binding to its series.
#[derive(Clone, Copy, Debug)]
struct Bound {
    series: SeriesId,
    /// What prices its bytes and whether its ends are named.
    class: ClassId,
    /// The identity generation this binding was last checked against.
    checked: u64,
    /// CLOCK_MONOTONIC nanoseconds of the key's latest growth.
    last_seen_ns: u64,
    /// Bytes of the key's kernel entry that scrapes credited, already in
    /// its series, until a drain settles that entry. It is in the table the
    /// probes write or, while a drain that failed partway is unfinished, in
    /// the one they left.
    taken: Taken,
}

/// foldhash: several times faster than std's SipHash on 48-byte keys, and
/// still seeded per process, so remote peers cannot aim collisions at it.
type Map<V> = HashMap<FlowKeyBytes, V, foldhash::fast::RandomState>;

#[derive(Debug)]
pub struct FlowTable {
    keys: Map<Bound>,
    series: SeriesSet,
    /// New flows a scrape found the table full for: what it took from each
    /// into the overflow flow, and their class, until the drain settles them.
    overflowed: Map<(Taken, ClassId)>,
    identify: Box<dyn Identify>,
    /// The labels series show (--flows.labels), and the identities cut
    /// down to them.
    selection: LabelSelection,
    projected: Interner,
    classes: Classes,
    /// The prices in force (--cost.file), and where new ones come from.
    prices: Option<(Arc<Prices>, watch::Receiver<Arc<Prices>>)>,
    generation: u64,
    limit: usize,
    idle_timeout_ns: u64,
    /// No key or series can be idle at or before this CLOCK_MONOTONIC time:
    /// the oldest `last_seen_ns` plus the timeout. Growth only moves
    /// `last_seen_ns` forward, except where a key or series first grows
    /// ([`Self::grow`]), which lowers this.
    earliest_expiry_ns: u64,
    /// Bytes of flows that found the table at its limit.
    pub overflow: Overflow,
    /// What the overflow flow's bytes cost.
    pub overflow_cost: f64,
    /// Series dropped for idleness since start.
    pub expired: u64,
    /// Kernel entries with an unknown address family (a bug if not 0).
    pub undecodable: u64,
}

/// What a key's growth is added to.
enum Target {
    Series(SeriesId),
    /// The overflow flow, priced by the key's class.
    Overflow(ClassId),
    Undecodable,
}

impl FlowTable {
    /// A table whose flows carry no identity: for tests and benchmarks.
    pub fn new(limit: usize, idle_timeout_ns: u64) -> FlowTable {
        FlowTable::with_identity(limit, idle_timeout_ns, Box::new(Anonymous))
    }

    pub fn with_identity(
        limit: usize,
        idle_timeout_ns: u64,
        mut identify: Box<dyn Identify>,
    ) -> FlowTable {
        FlowTable {
            keys: Map::default(),
            series: SeriesSet::default(),
            overflowed: Map::default(),
            generation: identify.refresh(),
            identify,
            selection: LabelSelection::all(),
            projected: Interner::default(),
            classes: Classes::default(),
            prices: None,
            limit,
            idle_timeout_ns,
            earliest_expiry_ns: 0,
            overflow: Overflow::default(),
            overflow_cost: 0.0,
            expired: 0,
            undecodable: 0,
        }
    }

    /// Series show only these labels; flows that agree on them add into one.
    pub fn with_selection(mut self, selection: LabelSelection) -> FlowTable {
        self.selection = selection;
        self
    }

    /// Bytes are priced at the newest prices `prices` holds.
    pub fn with_prices(mut self, prices: watch::Receiver<Arc<Prices>>) -> FlowTable {
        let current = prices.borrow().clone();
        self.classes.reprice(Some(&current));
        self.prices = Some((current, prices));
        self
    }

    pub fn selection(&self) -> LabelSelection {
        self.selection
    }

    /// The prices in force, if any.
    pub fn prices(&self) -> Option<&Prices> {
        self.prices.as_ref().map(|(current, _)| &**current)
    }

    /// The prices in force, shared.
    pub fn current_prices(&self) -> Option<Arc<Prices>> {
        self.prices.as_ref().map(|(current, _)| current.clone())
    }

    /// Series exported now.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.len() == 0
    }

    /// Takes in the newest identity facts and prices; call before each
    /// read. Bytes read from then on are priced at the new prices.
    pub fn refresh_identity(&mut self) {
        self.generation = self.identify.refresh();
        if let Some((current, feed)) = &mut self.prices {
            if feed.has_changed().unwrap_or(false) {
                *current = feed.borrow_and_update().clone();
                self.classes.reprice(Some(current));
            }
        }
    }

    /// Forgets identity facts no series needs; about once a minute.
    pub fn prune_identity(&mut self) {
        self.identify.prune();
        self.projected.prune();
    }

    /// The series a key's growth goes to now. A known key whose identity
    /// changed moves to a new series; a new key gets one, or the overflow
    /// flow at the limit.
    fn target(&mut self, key: &FlowKeyBytes) -> Target {
        let Some(bound) = self.keys.get(key).copied() else {
            return self.bind_new(key);
        };
        if bound.checked == self.generation {
            return Target::Series(bound.series);
        }
        let Some((full, class)) = self.full_labels(key) else {
            return Target::Undecodable;
        };
        if class != bound.class {
            self.classes.key_removed(bound.class);
            self.classes.key_added(class);
        }
        let labels = self.project(full);
        if labels == self.series.get(bound.series).labels {
            let bound = self.keys.get_mut(key).expect("bound");
            bound.checked = self.generation;
            bound.class = class;
            return Target::Series(bound.series);
        }
        match self.series.find_or_add(labels, self.limit) {
            Some(series) => {
                let bound = self.keys.get_mut(key).expect("bound");
                bound.series = series;
                bound.class = class;
                bound.checked = self.generation;
                Target::Series(series)
            }
            None => {
                // No room for the new identity: what the key took stays
                // with its old series, and its growth from now on is a new
                // flow that overflows.
                self.keys.remove(key);
                self.classes.key_removed(class);
                if bound.taken != Taken::default() {
                    self.overflowed.insert(*key, (bound.taken, class));
                }
                Target::Overflow(class)
            }
        }
    }

    fn bind_new(&mut self, key: &FlowKeyBytes) -> Target {
        let Some((full, class)) = self.full_labels(key) else {
            return Target::Undecodable;
        };
        let labels = self.project(full);
        match self.series.find_or_add(labels, self.limit) {
            Some(series) => {
                let bound = Bound {
                    series,
                    class,
                    checked: self.generation,
                    last_seen_ns: 0,
                    taken: Taken::default(),
                };
                self.keys.insert(*key, bound);
                self.classes.key_added(class);
                Target::Series(series)
            }
            None => Target::Overflow(class),
        }
    }

    /// A key's labels with its full identity, and its class; `None` for an
    /// unknown address family.
    fn full_labels(&mut self, key: &FlowKeyBytes) -> Option<(SeriesLabels, ClassId)> {
        let kernel = from_bytes::<FlowKey>(key);
        let (local, remote) = decode_key(&kernel)?;
        let mut labels = SeriesLabels {
            local,
            remote,
            role: Role::from_kernel(kernel.role),
            identity: Anonymous::identity(),
        };
        labels.identity = self.identity_of(&labels, kernel.cgroup);
        let prices = self.prices.as_ref().map(|(current, _)| &**current);
        let class = self.classes.of(&labels.identity, prices);
        Some((labels, class))
    }

    /// `labels` with only the chosen ones (--flows.labels) left: the others
    /// set to one fixed value, so that flows differing only there are one
    /// series.
    fn project(&mut self, mut labels: SeriesLabels) -> SeriesLabels {
        let chosen = self.selection;
        if chosen.is_all() {
            return labels;
        }
        let nobody = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let cut = |addr: &mut SocketAddr, ip: FlowLabel, port: FlowLabel| {
            if !chosen.has(ip) {
                *addr = SocketAddr::new(nobody, addr.port());
            }
            if !chosen.has(port) {
                addr.set_port(0);
            }
        };
        cut(&mut labels.local, FlowLabel::SrcIp, FlowLabel::SrcPort);
        cut(&mut labels.remote, FlowLabel::DstIp, FlowLabel::DstPort);
        if !chosen.has(FlowLabel::Role) {
            labels.role = Role::Unknown;
        }
        if chosen.identity() != ALL_SHOWN {
            let projected = labels.identity.projected(chosen.identity());
            labels.identity = self.projected.intern(projected);
        }
        labels
    }

    fn identity_of(&mut self, labels: &SeriesLabels, cgroup: u64) -> Arc<Identity> {
        self.identify.identify(&FlowEnds {
            local: labels.local,
            remote: labels.remote,
            role: labels.role,
            cgroup,
        })
    }

    /// Growth of a key whose binding is new or changed; the fast paths in
    /// [`crate::source::FlowSink`] handle the rest.
    fn grow(&mut self, key: &FlowKeyBytes, series: SeriesId, sent: u64, received: u64, seen: u64) {
        // A new key or series may be older than everything kept so far.
        let expiry = seen.saturating_add(self.idle_timeout_ns);
        self.earliest_expiry_ns = self.earliest_expiry_ns.min(expiry);
        let series = self.series.get_mut(series);
        series.grow(sent, received, seen);
        if let Some(bound) = self.keys.get_mut(key) {
            bound.last_seen_ns = bound.last_seen_ns.max(seen);
            if self.prices.is_some() {
                series.cost += self.classes.rate(bound.class).cost(sent, received);
            }
        }
    }

    /// Growth that found no room: into the overflow flow.
    fn overflow(&mut self, class: ClassId, sent: u64, received: u64) {
        self.overflow.add(sent, received);
        if self.prices.is_some() {
            self.overflow_cost += self.classes.rate(class).cost(sent, received);
        }
    }

    /// Drops every series without traffic for longer than the idle timeout
    /// before `now_ns` (CLOCK_MONOTONIC), and the keys bound to it. A key a
    /// scrape took bytes from stays, with its series, until the drain
    /// settles it, whatever the timeout: dropped earlier, the drain would
    /// count those bytes again in a new series.
    ///
    /// Nothing can be idle before [`Self::earliest_expiry_ns`], so until
    /// then this costs nothing; scrapes and maintenance call it often.
    pub fn expire(&mut self, now_ns: u64) {
        if now_ns <= self.earliest_expiry_ns {
            return;
        }
        let timeout = self.idle_timeout_ns;
        let idle = |seen: u64| now_ns.saturating_sub(seen) > timeout;
        // The oldest `last_seen_ns` of what stays, for the next bound.
        let mut oldest = u64::MAX;
        let mut pinned = vec![false; self.series_slots()];
        let classes = &mut self.classes;
        self.keys.retain(|_, bound| {
            let stays = bound.taken != Taken::default() || !idle(bound.last_seen_ns);
            if stays {
                pinned[bound.series as usize] = true;
                oldest = oldest.min(bound.last_seen_ns);
            } else {
                classes.key_removed(bound.class);
            }
            stays
        });
        self.expired += self.series.remove_where(|id, series| {
            let dropped = !pinned[id as usize] && idle(series.last_seen_ns);
            if !dropped {
                oldest = oldest.min(series.last_seen_ns);
            }
            dropped
        });
        self.earliest_expiry_ns = oldest.saturating_add(timeout);
    }

    fn series_slots(&self) -> usize {
        self.series.slots()
    }

    /// Every series, in the table's order.
    pub fn series(&self) -> impl Iterator<Item = &Series> {
        self.series.iter()
    }

    /// How many flows (kernel keys) have an end identity could not name.
    pub fn unresolved(&self) -> Unresolved {
        self.classes.unresolved()
    }

    /// Every series as a flow: for the pages, which show few of them.
    pub fn flows(&self) -> Vec<Flow> {
        self.series()
            .map(|s| Flow {
                local: s.labels.local,
                remote: s.labels.remote,
                role: s.labels.role,
                identity: s.labels.identity.clone(),
                sent: s.sent,
                received: s.received,
                last_seen_ns: s.last_seen_ns,
            })
            .collect()
    }
}

#[cfg(test)]
mod arbitrary;
#[cfg(test)]
mod tests;
