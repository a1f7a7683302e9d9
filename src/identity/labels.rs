//! A flow's identity labels: who each end is and the path between them.
//!
//! Identities are interned ([`Interner`]): every flow with the same labels
//! holds the same `Arc`, so a series is named by pointer, and each identity's
//! label text is written once, not once per flow and scrape.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::PeerKind;

/// The identity labels, in the order they follow the flow's own labels.
pub const LABEL_NAMES: [&str; 8] = [
    "src_namespace",
    "src_pod",
    "src_workload",
    "dst_kind",
    "dst_namespace",
    "dst_name",
    "dst_workload",
    "path",
];

/// Which network path a flow's bytes take: the `path` label.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Path {
    Loopback,
    SameNode,
    SameZone,
    CrossZone,
    CrossRegion,
    Internet,
    Unknown,
}

impl Path {
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Loopback => "loopback",
            Path::SameNode => "same_node",
            Path::SameZone => "same_zone",
            Path::CrossZone => "cross_zone",
            Path::CrossRegion => "cross_region",
            Path::Internet => "internet",
            Path::Unknown => "unknown",
        }
    }
}

/// The local end: a pod, or on a plain host a systemd unit or container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Local {
    pub namespace: Arc<str>,
    pub pod: Arc<str>,
    pub workload: Arc<str>,
}

/// The peer: what it is, its name, and its owner.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    pub kind: PeerKind,
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub workload: Arc<str>,
}

impl Peer {
    /// A peer known only by its address class.
    pub fn of_kind(kind: PeerKind) -> Peer {
        Peer {
            kind,
            namespace: empty(),
            name: empty(),
            workload: empty(),
        }
    }
}

/// One series' identity. Equality and hashing ignore `text`, which follows
/// from the rest.
#[derive(Debug)]
pub struct Identity {
    pub local: Local,
    pub peer: Peer,
    pub path: Path,
    /// Which of [`LABEL_NAMES`] the series shows, one bit each
    /// (--flows.labels); [`ALL_SHOWN`] unless projected.
    shown: u8,
    /// `,src_namespace="…",…,path="…"`, escaped for the text formats, empty
    /// values and labels not shown left out.
    text: Box<str>,
}

/// Every identity label shown.
pub const ALL_SHOWN: u8 = u8::MAX;

impl Identity {
    pub fn new(local: Local, peer: Peer, path: Path) -> Identity {
        Identity::showing(local, peer, path, ALL_SHOWN)
    }

    /// This identity with only the labels in `shown` (bits of
    /// [`LABEL_NAMES`]): the others are emptied, or set to one fixed value
    /// where they cannot be empty, so that identities differing only in
    /// what is not shown are equal and their flows add into one series.
    pub fn projected(&self, shown: u8) -> Identity {
        let keep = |bit: usize, value: &Arc<str>| {
            if shown & (1 << bit) != 0 {
                value.clone()
            } else {
                empty()
            }
        };
        let local = Local {
            namespace: keep(0, &self.local.namespace),
            pod: keep(1, &self.local.pod),
            workload: keep(2, &self.local.workload),
        };
        let peer = Peer {
            kind: if shown & (1 << 3) != 0 {
                self.peer.kind
            } else {
                PeerKind::Private
            },
            namespace: keep(4, &self.peer.namespace),
            name: keep(5, &self.peer.name),
            workload: keep(6, &self.peer.workload),
        };
        let path = if shown & (1 << 7) != 0 {
            self.path
        } else {
            Path::Unknown
        };
        Identity::showing(local, peer, path, shown)
    }

    fn showing(local: Local, peer: Peer, path: Path, shown: u8) -> Identity {
        let values: [&str; 8] = [
            &local.namespace,
            &local.pod,
            &local.workload,
            peer.kind.as_str(),
            &peer.namespace,
            &peer.name,
            &peer.workload,
            path.as_str(),
        ];
        // An empty value is left out: Prometheus reads `x=""` as no label
        // at all, and most peers have some (no namespace for an internet
        // address, no pod for a host process), so this saves up to 125
        // bytes a series, twice per scrape.
        let mut text = String::new();
        for (bit, (name, value)) in LABEL_NAMES.iter().zip(values).enumerate() {
            if value.is_empty() || shown & (1 << bit) == 0 {
                continue;
            }
            let _ = write!(text, ",{name}=\"");
            escape_into(&mut text, value);
            text.push('"');
        }
        Identity {
            local,
            peer,
            path,
            shown,
            text: text.into_boxed_str(),
        }
    }

    /// The labels as they follow a flow's own, with a leading comma.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Identity {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
            && self.peer == other.peer
            && self.local == other.local
            && self.shown == other.shown
    }
}

impl Eq for Identity {}

impl Hash for Identity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.local.hash(state);
        self.peer.hash(state);
        self.path.hash(state);
        self.shown.hash(state);
    }
}

/// Hands out one `Arc` per distinct identity, so that equal identities are
/// the same pointer.
#[derive(Debug, Default)]
pub struct Interner {
    known: HashSet<Arc<Identity>, foldhash::fast::RandomState>,
}

impl Interner {
    pub fn intern(&mut self, identity: Identity) -> Arc<Identity> {
        if let Some(known) = self.known.get(&identity) {
            return known.clone();
        }
        let identity = Arc::new(identity);
        self.known.insert(identity.clone());
        identity
    }

    /// Forgets identities no flow holds any more.
    pub fn prune(&mut self) {
        self.known
            .retain(|identity| Arc::strong_count(identity) > 1);
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}

/// The empty label value, shared.
pub fn empty() -> Arc<str> {
    thread_local! {
        static EMPTY: Arc<str> = Arc::from("");
    }
    EMPTY.with(Arc::clone)
}

/// Label values as the text formats escape them: backslash, double quote
/// and line feed.
pub fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests;
