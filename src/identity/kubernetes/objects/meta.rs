//! `metadata` read slimly: what kube-rs's watcher needs (name, namespace,
//! resourceVersion) plus uid, the controller owner reference and the two
//! topology labels. Annotations, other labels and managedFields (often the
//! largest part of an object) are skipped by the parser, never allocated.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use crate::identity::kubernetes::facts::ControllerRef;

/// Well-known node labels; the beta `failure-domain` pair was replaced in
/// Kubernetes 1.17 but older nodes and some providers still set only it.
const ZONE: &str = "topology.kubernetes.io/zone";
const REGION: &str = "topology.kubernetes.io/region";
const LEGACY_ZONE: &str = "failure-domain.beta.kubernetes.io/zone";
const LEGACY_REGION: &str = "failure-domain.beta.kubernetes.io/region";

#[derive(Clone, Debug, Default)]
pub struct SlimMeta {
    /// Only name, namespace, uid and resourceVersion are filled: the watcher
    /// reads resourceVersion to resume, and its logs name objects.
    pub meta: ObjectMeta,
    pub controller: Option<ControllerRef>,
    pub topology: Topology,
}

/// Zone and region labels; the current label wins over the legacy one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    pub zone: Option<String>,
    pub region: Option<String>,
    legacy_zone: Option<String>,
    legacy_region: Option<String>,
}

impl Topology {
    pub fn zone(&self) -> Option<&str> {
        self.zone.as_deref().or(self.legacy_zone.as_deref())
    }

    pub fn region(&self) -> Option<&str> {
        self.region.as_deref().or(self.legacy_region.as_deref())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    owner_references: Option<Vec<RawOwnerRef>>,
    labels: Option<Topology>,
}

#[derive(Deserialize)]
struct RawOwnerRef {
    kind: String,
    name: String,
    uid: String,
    controller: Option<bool>,
}

impl<'de> Deserialize<'de> for SlimMeta {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawMeta::deserialize(deserializer)?;
        // At most one owner reference may be the controller (API validation).
        let controller = raw
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .find(|owner| owner.controller == Some(true))
            .map(|owner| ControllerRef {
                kind: owner.kind,
                name: owner.name,
                uid: owner.uid,
            });
        Ok(SlimMeta {
            meta: ObjectMeta {
                name: raw.name,
                namespace: raw.namespace,
                uid: raw.uid,
                resource_version: raw.resource_version,
                ..ObjectMeta::default()
            },
            controller,
            topology: raw.labels.unwrap_or_default(),
        })
    }
}

impl<'de> Deserialize<'de> for Topology {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(TopologyVisitor)
    }
}

struct TopologyVisitor;

impl<'de> Visitor<'de> for TopologyVisitor {
    type Value = Topology;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of labels")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Topology, A::Error> {
        let mut topology = Topology::default();
        while let Some(key) = map.next_key::<LabelKey>()? {
            let slot = match key {
                LabelKey::Zone => &mut topology.zone,
                LabelKey::Region => &mut topology.region,
                LabelKey::LegacyZone => &mut topology.legacy_zone,
                LabelKey::LegacyRegion => &mut topology.legacy_region,
                LabelKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value::<String>()?).filter(|value| !value.is_empty());
        }
        Ok(topology)
    }
}

/// A label key, compared without allocating it.
enum LabelKey {
    Zone,
    Region,
    LegacyZone,
    LegacyRegion,
    Other,
}

impl<'de> Deserialize<'de> for LabelKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = LabelKey;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a label key")
            }

            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<LabelKey, E> {
                Ok(match key {
                    ZONE => LabelKey::Zone,
                    REGION => LabelKey::Region,
                    LEGACY_ZONE => LabelKey::LegacyZone,
                    LEGACY_REGION => LabelKey::LegacyRegion,
                    _ => LabelKey::Other,
                })
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}
