//! The path between this node and a peer, from what is known of where each
//! sits.
//!
//! An unknown zone never counts as "the same zone": a private address whose
//! place nobody knows is `unknown`. Cost tools that assume private ranges are
//! in-zone bill cross-zone traffic as free.

use super::labels::Path;
use super::Place;

/// The path from `here` to `there`, both off this node.
pub fn between(here: &Place, there: &Place) -> Path {
    let differ = |a: &Option<_>, b: &Option<_>| match (a, b) {
        (Some(a), Some(b)) => Some(a != b),
        _ => None,
    };
    match (
        differ(&here.region, &there.region),
        differ(&here.zone, &there.zone),
    ) {
        (Some(true), _) => Path::CrossRegion,
        (_, Some(false)) => Path::SameZone,
        (_, Some(true)) => Path::CrossZone,
        (Some(false) | None, None) => Path::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn place(zone: Option<&str>, region: Option<&str>) -> Place {
        Place {
            zone: zone.map(Arc::from),
            region: region.map(Arc::from),
        }
    }

    #[test]
    fn zones_and_regions_decide_the_path() {
        let here = place(Some("eu-1a"), Some("eu-1"));
        let cases = [
            (place(Some("eu-1a"), Some("eu-1")), Path::SameZone),
            (place(Some("eu-1a"), None), Path::SameZone),
            (place(Some("eu-1b"), Some("eu-1")), Path::CrossZone),
            (place(Some("eu-1b"), None), Path::CrossZone),
            (place(Some("us-1a"), Some("us-1")), Path::CrossRegion),
            (place(None, Some("us-1")), Path::CrossRegion),
            // Same region, zone unknown: could be either zone.
            (place(None, Some("eu-1")), Path::Unknown),
            (place(None, None), Path::Unknown),
        ];
        for (there, path) in cases {
            assert_eq!(between(&here, &there), path, "to {there:?}");
        }
    }

    #[test]
    fn nothing_known_here_is_unknown_unless_the_regions_differ() {
        let here = place(None, None);
        assert_eq!(between(&here, &place(Some("a"), Some("r"))), Path::Unknown);
        let here = place(None, Some("r1"));
        assert_eq!(
            between(&here, &place(Some("a"), Some("r2"))),
            Path::CrossRegion
        );
        assert_eq!(between(&here, &place(Some("a"), Some("r1"))), Path::Unknown);
    }
}
