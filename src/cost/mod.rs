//! Prices from `--cost.file`: what a byte costs by the path it takes, or by
//! the named network it goes to.
//!
//! ```yaml
//! currency: USD
//! unit: GB            # GB (10^9 bytes) or GiB (2^30); no default
//! prices:             # per unit, for bytes this node sends and receives
//!   cross_zone:   {egress: 0.01, ingress: 0.01}
//!   internet:     {egress: 0.09}
//! networks:           # by --labels.file network name; wins over the path
//!   nat-gateway:  {egress: 0.045, ingress: 0.045}
//! ```
//!
//! A price left out is 0. A network's entry replaces its path's prices
//! whole: a direction it leaves out is 0 there too. The file is kept loaded
//! like the labels file ([`crate::config_file`]); a flow's bytes are priced
//! when the exporter reads them, at the prices in force then.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

use crate::config_file::{self, ConfigError, FileStats, Loadable, WatchedFile};
use crate::identity::labels::Path;

mod parse;
#[cfg(test)]
mod tests;

/// The cost file, kept loaded by [`crate::config_file::keep_loaded`].
pub type CostFile = WatchedFile<Prices>;

/// Loads the cost file at `path` and keeps it loaded in a task on the
/// current runtime; an error here is a start-up error.
pub fn start(
    path: &std::path::Path,
) -> Result<(watch::Receiver<Arc<Prices>>, Arc<FileStats>), ConfigError> {
    let file = CostFile::open(path)?;
    let stats = Arc::new(FileStats::new());
    let (publish, receive) = watch::channel(file.current());
    tracing::info!(path = %path.display(), "loaded {}", file.current().summary());
    tokio::spawn(config_file::keep_loaded(file, publish, stats.clone()));
    Ok((receive, stats))
}

/// Bytes per unit of `unit:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// 10^9 bytes, as the clouds bill.
    Gb,
    /// 2^30 bytes.
    Gib,
}

impl Unit {
    pub fn bytes(self) -> f64 {
        match self {
            Unit::Gb => 1e9,
            Unit::Gib => (1u64 << 30) as f64,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Gb => "GB",
            Unit::Gib => "GiB",
        }
    }
}

/// The two directions a node's bytes are billed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Bytes this node sends.
    Egress,
    /// Bytes this node receives.
    Ingress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Egress => "egress",
            Direction::Ingress => "ingress",
        }
    }
}

/// One entry's prices per unit, as written; `None` where left out.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Price {
    pub egress: Option<f64>,
    pub ingress: Option<f64>,
}

impl Price {
    pub fn get(&self, direction: Direction) -> Option<f64> {
        match direction {
            Direction::Egress => self.egress,
            Direction::Ingress => self.ingress,
        }
    }
}

/// What a byte sent and a byte received cost, in the currency.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rate {
    pub sent: f64,
    pub received: f64,
}

impl Rate {
    /// What `sent` and `received` bytes cost at this rate: each count
    /// times its price per byte, so that fixed prices give exactly
    /// bytes / unit × price up to float rounding.
    pub fn cost(&self, sent: u64, received: u64) -> f64 {
        sent as f64 * self.sent + received as f64 * self.received
    }
}

/// Every path a price can be given for, in the order the file lists them.
pub const PATHS: [Path; 7] = [
    Path::Loopback,
    Path::SameNode,
    Path::SameZone,
    Path::CrossZone,
    Path::CrossRegion,
    Path::Internet,
    Path::Unknown,
];

/// A cost file's prices.
#[derive(Clone, Debug, PartialEq)]
pub struct Prices {
    pub currency: Arc<str>,
    pub unit: Unit,
    /// By path, as listed.
    pub paths: Vec<(Path, Price)>,
    /// By network name, as listed.
    pub networks: Vec<(Arc<str>, Price)>,
    by_network: HashMap<Arc<str>, Price>,
}

impl Prices {
    pub fn new(
        currency: Arc<str>,
        unit: Unit,
        paths: Vec<(Path, Price)>,
        networks: Vec<(Arc<str>, Price)>,
    ) -> Prices {
        let by_network = networks.iter().cloned().collect();
        Prices {
            currency,
            unit,
            paths,
            networks,
            by_network,
        }
    }

    /// What a byte costs each way on `path`, or to the named `network`,
    /// whose entry wins when it has one.
    pub fn rate(&self, path: Path, network: Option<&str>) -> Rate {
        let price = network
            .and_then(|name| self.by_network.get(name))
            .copied()
            .or_else(|| {
                self.paths
                    .iter()
                    .find(|(p, _)| *p == path)
                    .map(|(_, price)| *price)
            })
            .unwrap_or_default();
        let per_byte = |per_unit: Option<f64>| per_unit.unwrap_or(0.0) / self.unit.bytes();
        Rate {
            sent: per_byte(price.egress),
            received: per_byte(price.ingress),
        }
    }

    /// Every price given, for the price gauges: (`path` or `network`,
    /// its value, direction, price per unit).
    pub fn listed(&self) -> impl Iterator<Item = (&'static str, &str, Direction, f64)> {
        let paths = self
            .paths
            .iter()
            .map(|(path, price)| ("path", path.as_str(), *price));
        let networks = self
            .networks
            .iter()
            .map(|(name, price)| ("network", &**name, *price));
        paths.chain(networks).flat_map(|(label, value, price)| {
            [Direction::Egress, Direction::Ingress]
                .into_iter()
                .filter_map(move |d| price.get(d).map(|p| (label, value, d, p)))
        })
    }
}

impl Loadable for Prices {
    const WHAT: &'static str = "prices";

    fn parse(text: &str, origin: &str, before: Option<&Prices>) -> Result<Prices, ConfigError> {
        parse::parse(text, origin, before)
    }

    fn entries(&self) -> usize {
        self.listed().count()
    }

    fn summary(&self) -> String {
        format!(
            "{} prices in {} per {}",
            self.entries(),
            self.currency,
            self.unit.as_str()
        )
    }
}
