//! The cost file's YAML, with errors that name the line and field.
//!
//! Each value is checked while it is deserialized, so serde_yaml_ng stamps
//! a bad one with its line and path (`prices.cross_zone.egress: ...`), as
//! for the labels file.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::{Price, Prices, Unit, PATHS};
use crate::config_file::ConfigError;
use crate::identity::labels::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CostDocument {
    currency: Currency,
    unit: UnitField,
    #[serde(default)]
    prices: Option<PathPrices>,
    #[serde(default)]
    networks: Option<BTreeMap<String, Entry>>,
}

/// `prices:`, one optional entry per path.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathPrices {
    loopback: Option<Entry>,
    same_node: Option<Entry>,
    same_zone: Option<Entry>,
    cross_zone: Option<Entry>,
    cross_region: Option<Entry>,
    internet: Option<Entry>,
    unknown: Option<Entry>,
}

impl PathPrices {
    fn get(&self, path: Path) -> Option<&Entry> {
        match path {
            Path::Loopback => self.loopback.as_ref(),
            Path::SameNode => self.same_node.as_ref(),
            Path::SameZone => self.same_zone.as_ref(),
            Path::CrossZone => self.cross_zone.as_ref(),
            Path::CrossRegion => self.cross_region.as_ref(),
            Path::Internet => self.internet.as_ref(),
            Path::Unknown => self.unknown.as_ref(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    egress: Option<Amount>,
    ingress: Option<Amount>,
}

impl Entry {
    fn price(&self) -> Price {
        Price {
            egress: self.egress.as_ref().map(|a| a.0),
            ingress: self.ingress.as_ref().map(|a| a.0),
        }
    }
}

/// A price per unit: a finite number, zero or more.
struct Amount(f64);

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Amount, D::Error> {
        deserializer.deserialize_any(AmountVisitor)
    }
}

struct AmountVisitor;

impl Visitor<'_> for AmountVisitor {
    type Value = Amount;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a price per unit, a number like 0.01")
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Amount, E> {
        if !value.is_finite() {
            return Err(E::custom(format!(
                "{value} is not a price: give a finite number"
            )));
        }
        if value < 0.0 {
            return Err(E::custom(format!(
                "{value} is negative: a price is 0 or more"
            )));
        }
        Ok(Amount(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Amount, E> {
        Ok(Amount(value as f64))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Amount, E> {
        self.visit_f64(value as f64)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Amount, E> {
        Err(E::custom(format!(
            "{text:?} is not a number: write the price without quotes or currency, as in 0.01"
        )))
    }
}

struct Currency(Arc<str>);

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Currency, D::Error> {
        deserializer.deserialize_str(CurrencyVisitor)
    }
}

struct CurrencyVisitor;

impl Visitor<'_> for CurrencyVisitor {
    type Value = Currency;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a currency code like USD")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Currency, E> {
        let code = text.trim();
        if code.is_empty() || code.len() > 16 || code.chars().any(char::is_whitespace) {
            return Err(E::custom(format!(
                "{text:?} is not a currency: give a code like USD or EUR"
            )));
        }
        Ok(Currency(Arc::from(code)))
    }
}

struct UnitField(Unit);

impl<'de> Deserialize<'de> for UnitField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<UnitField, D::Error> {
        deserializer.deserialize_str(UnitVisitor)
    }
}

struct UnitVisitor;

impl Visitor<'_> for UnitVisitor {
    type Value = UnitField;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("GB or GiB")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<UnitField, E> {
        match text {
            "GB" => Ok(UnitField(Unit::Gb)),
            "GiB" => Ok(UnitField(Unit::Gib)),
            _ => Err(E::custom(format!(
                "{text:?} is not a unit: use GB (10^9 bytes) or GiB (2^30 bytes)"
            ))),
        }
    }
}

pub(super) fn parse(
    text: &str,
    origin: &str,
    before: Option<&Prices>,
) -> Result<Prices, ConfigError> {
    let invalid = |line: usize, message: String| ConfigError::Invalid {
        origin: origin.to_string(),
        line,
        message,
    };
    // Option: an empty file is a null document, which deserves its own
    // message rather than "invalid type: unit".
    let document: Option<CostDocument> =
        serde_yaml_ng::from_str(text).map_err(|error| ConfigError::from_yaml(origin, &error))?;
    let Some(document) = document else {
        return Err(invalid(
            1,
            "the file is empty: expected `currency:`, `unit:` and `prices:`".into(),
        ));
    };
    let currency = document.currency.0;
    // The cost series carry the currency as a label, and a series never
    // changes its labels.
    if let Some(before) = before.filter(|before| before.currency != currency) {
        let line = line_of(text, "currency:");
        return Err(invalid(
            line,
            format!(
                "currency: cannot change from {} to {currency} while running (the cost \
                 series carry it); restart the exporter to change it",
                before.currency
            ),
        ));
    }
    let paths = match &document.prices {
        Some(prices) => PATHS
            .iter()
            .filter_map(|&path| prices.get(path).map(|entry| (path, entry.price())))
            .collect(),
        None => Vec::new(),
    };
    let networks = document
        .networks
        .unwrap_or_default()
        .into_iter()
        .map(|(name, entry)| (Arc::from(name), entry.price()))
        .collect();
    Ok(Prices::new(currency, document.unit.0, paths, networks))
}

/// The 1-based line a top-level key starts on; 1 if none does.
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|line| line.starts_with(key))
        .map_or(1, |i| i + 1)
}
