//! The labels file's YAML, and errors that name the file, line and field.
//!
//! Checks that can be made on one value (a CIDR, a name) run while
//! deserializing, so serde_yaml_ng stamps their errors with the value's
//! line and path. The one check across entries, a CIDR listed twice, runs
//! afterwards and borrows that machinery through [`super::locate`].

use std::fmt;
use std::sync::Arc;

use ipnet::IpNet;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::{locate, Network, Networks};
use crate::config_file::ConfigError;
use crate::identity::Place;

#[cfg(test)]
mod tests;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelsDocument {
    networks: Vec<NetworkEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkEntry {
    cidr: Cidr,
    name: Label,
    #[serde(default)]
    zone: Option<Label>,
    #[serde(default)]
    region: Option<Label>,
}

/// A network address with its prefix length, host bits clear.
struct Cidr(IpNet);

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Cidr, D::Error> {
        deserializer.deserialize_str(CidrVisitor)
    }
}

struct CidrVisitor;

impl Visitor<'_> for CidrVisitor {
    type Value = Cidr;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a CIDR like 10.20.0.0/16")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Cidr, E> {
        let Ok(cidr) = text.parse::<IpNet>() else {
            if let Ok(address) = text.parse::<std::net::IpAddr>() {
                let bits = if address.is_ipv4() { 32 } else { 128 };
                return Err(E::custom(format!(
                    "{text:?} is not a CIDR: add a prefix length, as in \"{address}/{bits}\""
                )));
            }
            return Err(E::custom(format!("{text:?} is not a CIDR")));
        };
        if cidr.trunc() != cidr {
            return Err(E::custom(format!(
                "{text:?} has host bits set: the network is \"{}\"",
                cidr.trunc()
            )));
        }
        Ok(Cidr(cidr))
    }
}

/// A name, zone or region: a non-empty string.
struct Label(Arc<str>);

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Label, D::Error> {
        deserializer.deserialize_str(LabelVisitor)
    }
}

struct LabelVisitor;

impl Visitor<'_> for LabelVisitor {
    type Value = Label;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Label, E> {
        if text.trim().is_empty() {
            return Err(E::custom(
                "must not be empty (leave an unknown zone or region out)",
            ));
        }
        Ok(Label(Arc::from(text)))
    }
}

pub(super) fn parse(text: &str, origin: &str) -> Result<Networks, ConfigError> {
    // Option: an empty file (or one with only comments) is a null document,
    // which deserves its own message rather than "invalid type: unit".
    let document: Option<LabelsDocument> =
        serde_yaml_ng::from_str(text).map_err(|error| ConfigError::from_yaml(origin, &error))?;
    let Some(document) = document else {
        return Err(ConfigError::Invalid {
            origin: origin.to_string(),
            line: 1,
            message: "the file is empty: expected a `networks:` list".to_string(),
        });
    };
    let list = document
        .networks
        .into_iter()
        .map(|entry| Network {
            cidr: entry.cidr.0,
            name: entry.name.0,
            place: Place {
                zone: entry.zone.map(|zone| zone.0),
                region: entry.region.map(|region| region.0),
            },
        })
        .collect::<Vec<_>>();
    Networks::from_list(list)
        .map_err(|(first, again, cidr)| listed_twice(text, origin, cidr, first, again))
}

/// The error for `networks[again]` repeating the CIDR of `networks[first]`.
fn listed_twice(text: &str, origin: &str, cidr: IpNet, first: usize, again: usize) -> ConfigError {
    let first_line = locate::error_at(text, first, "cidr", String::new())
        .and_then(|error| error.location())
        .map_or(0, |location| location.line());
    let message =
        format!("\"{cidr}\" is listed twice: networks[{first}] at line {first_line} has it too");
    match locate::error_at(text, again, "cidr", message.clone()) {
        Some(error) => ConfigError::from_yaml(origin, &error),
        None => ConfigError::Invalid {
            origin: origin.to_string(),
            line: 1,
            message: format!("networks[{again}].cidr: {message}"),
        },
    }
}
