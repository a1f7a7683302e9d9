//! Named networks from `--labels.file`: a CIDR gets a name, and optionally
//! the zone and region it sits in.
//!
//! ```yaml
//! networks:
//!   - cidr: 10.20.0.0/16
//!     name: vpc-payments
//!     zone: eu-west-1a      # optional
//!     region: eu-west-1     # optional
//!   - cidr: 52.218.0.0/17
//!     name: s3-eu-west-1
//! ```
//!
//! The narrowest network holding an address names it. The file is read in
//! the background ([`crate::config_file::keep_loaded`]); a scrape only looks up the current set.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use ipnet::IpNet;

use super::Place;

mod index;
mod locate;
mod parse;

use crate::config_file::{ConfigError, Loadable, WatchedFile};

/// The labels file, kept loaded by [`crate::config_file::keep_loaded`].
pub type LabelsFile = WatchedFile<Networks>;

#[cfg(test)]
pub(crate) mod scratch;
#[cfg(test)]
mod tests;

/// One named network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    pub cidr: IpNet,
    pub name: Arc<str>,
    pub place: Place,
}

/// A set of named networks, indexed for longest-prefix lookups.
pub struct Networks {
    /// In file order.
    list: Vec<Network>,
    index: index::PrefixIndex,
}

impl Networks {
    /// No networks: every lookup misses.
    pub fn empty() -> Networks {
        Networks {
            list: Vec::new(),
            index: index::PrefixIndex::new(),
        }
    }

    /// Parses a labels file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Networks, ConfigError> {
        parse::parse(text, origin)
    }

    /// Reads and parses the labels file at `path`.
    pub fn load(path: &Path) -> Result<Networks, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            origin: origin.clone(),
            source,
        })?;
        Networks::parse(&text, &origin)
    }

    /// Indexes `list`. On a CIDR listed twice, returns the positions of its
    /// first and second entries, and the CIDR.
    fn from_list(list: Vec<Network>) -> Result<Networks, (usize, usize, IpNet)> {
        let mut index = index::PrefixIndex::new();
        for (position, network) in list.iter().enumerate() {
            if let Some(first) = index.insert(network.cidr, position) {
                return Err((first, position, network.cidr));
            }
        }
        Ok(Networks { list, index })
    }

    /// The narrowest network holding `ip`. An IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`) is looked up as its IPv4 address.
    pub fn find(&self, ip: IpAddr) -> Option<&Network> {
        self.index.find(ip).map(|position| &self.list[position])
    }

    /// The networks in file order.
    pub fn iter(&self) -> impl Iterator<Item = &Network> {
        self.list.iter()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

impl Loadable for Networks {
    const WHAT: &'static str = "labels";

    fn parse(
        text: &str,
        origin: &str,
        _before: Option<&Networks>,
    ) -> Result<Networks, ConfigError> {
        parse::parse(text, origin)
    }

    fn entries(&self) -> usize {
        self.len()
    }

    fn summary(&self) -> String {
        format!("{} named networks", self.len())
    }
}

impl std::fmt::Debug for Networks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.list).finish()
    }
}
