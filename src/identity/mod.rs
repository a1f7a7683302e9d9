//! Who is on each end of a flow, and which network path its bytes take.
//!
//! Facts come from four places, each in its own module, and are combined
//! by [`resolver`]:
//!
//! - [`cgroups`]: the local end, from the socket's cgroup id that the kernel
//!   puts in the flow key (a pod's uid, a systemd unit, a container);
//! - [`kubernetes`]: pods, Services and Nodes by IP, owners, zones;
//! - [`networks`]: named networks from --labels.file;
//! - [`classes`]: loopback, private and internet for everything else.
//!
//! Every lookup is in memory: a scrape never waits on the API server, a file
//! or DNS. Background tasks replace the facts as they change.

use std::sync::Arc;

pub mod cgroups;
pub mod classes;
pub mod conntrack;
pub mod kubernetes;
pub mod labels;
pub mod networks;
pub mod path;
pub mod resolver;
pub mod start;

use self::labels::{Identity, Interner, Local, Path, Peer};
use self::resolver::{FlowEnds, Identify};

/// What the peer of a flow is: the `dst_kind` label.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum PeerKind {
    Pod,
    Service,
    Node,
    Network,
    Loopback,
    Private,
    Internet,
}

impl PeerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerKind::Pod => "pod",
            PeerKind::Service => "service",
            PeerKind::Node => "node",
            PeerKind::Network => "network",
            PeerKind::Loopback => "loopback",
            PeerKind::Private => "private",
            PeerKind::Internet => "internet",
        }
    }
}

/// Where something sits, as far as it is known.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Place {
    pub zone: Option<Arc<str>>,
    pub region: Option<Arc<str>>,
}

/// Identity for tables that have none (tests, benchmarks): every flow gets
/// the same, with empty names and an unknown path.
#[derive(Debug, Default)]
pub struct Anonymous;

impl Anonymous {
    pub fn identity() -> Arc<Identity> {
        static ONE: std::sync::OnceLock<Arc<Identity>> = std::sync::OnceLock::new();
        ONE.get_or_init(|| {
            let mut interner = Interner::default();
            interner.intern(Identity::new(
                Local::default(),
                Peer::of_kind(PeerKind::Private),
                Path::Unknown,
            ))
        })
        .clone()
    }
}

impl Identify for Anonymous {
    fn refresh(&mut self) -> u64 {
        0
    }

    fn identify(&mut self, _: &FlowEnds) -> Arc<Identity> {
        Anonymous::identity()
    }

    fn prune(&mut self) {}
}
