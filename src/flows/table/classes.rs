//! What the flow table must remember of a key's full identity once its
//! series shows only some labels (--flows.labels): the path and named
//! network that price its bytes, and whether identity named each end.
//! Keys share a handful of such classes, so a key holds a class number.

use std::collections::HashMap;
use std::sync::Arc;

use crate::cost::{Prices, Rate};
use crate::flows::snapshot::Unresolved;
use crate::identity::labels::{Identity, Path};
use crate::identity::PeerKind;

pub type ClassId = u32;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Class {
    path: Path,
    /// The peer's network name from --labels.file, for its price.
    network: Option<Arc<str>>,
    unresolved: (bool, bool),
}

impl Class {
    fn of(identity: &Identity) -> Class {
        let local = &identity.local;
        let peer = &identity.peer;
        Class {
            path: identity.path,
            network: (peer.kind == PeerKind::Network).then(|| peer.name.clone()),
            unresolved: (
                local.pod.is_empty() && local.workload.is_empty(),
                peer.kind == PeerKind::Private,
            ),
        }
    }
}

/// Classes by number, their rates at the prices in force, and how many
/// keys are unresolved at each end.
#[derive(Debug, Default)]
pub struct Classes {
    ids: HashMap<Class, ClassId, foldhash::fast::RandomState>,
    classes: Vec<Class>,
    rates: Vec<Rate>,
    unresolved: Unresolved,
}

impl Classes {
    /// The class of a key with this (full) identity.
    pub fn of(&mut self, identity: &Identity, prices: Option<&Prices>) -> ClassId {
        let class = Class::of(identity);
        if let Some(&id) = self.ids.get(&class) {
            return id;
        }
        let id = self.classes.len() as ClassId;
        self.rates.push(rate(&class, prices));
        self.classes.push(class.clone());
        self.ids.insert(class, id);
        id
    }

    /// What a byte costs each way for keys of `class`.
    pub fn rate(&self, class: ClassId) -> Rate {
        self.rates[class as usize]
    }

    /// New prices for every class, from now on.
    pub fn reprice(&mut self, prices: Option<&Prices>) {
        for (class, rate) in self.classes.iter().zip(&mut self.rates) {
            *rate = self::rate(class, prices);
        }
    }

    pub fn key_added(&mut self, class: ClassId) {
        self.unresolved.add(self.unresolved_of(class));
    }

    pub fn key_removed(&mut self, class: ClassId) {
        self.unresolved.sub(self.unresolved_of(class));
    }

    /// Keys whose local end, or peer, identity could not name.
    pub fn unresolved(&self) -> Unresolved {
        self.unresolved
    }

    fn unresolved_of(&self, class: ClassId) -> Unresolved {
        let (src, dst) = self.classes[class as usize].unresolved;
        Unresolved {
            src: u64::from(src),
            dst: u64::from(dst),
        }
    }
}

fn rate(class: &Class, prices: Option<&Prices>) -> Rate {
    prices.map_or(Rate::default(), |prices| {
        prices.rate(class.path, class.network.as_deref())
    })
}
