//! The cost file: prices as written, per-byte rates, and errors that name
//! line and field.

use super::*;

const EXAMPLE: &str = "currency: USD
unit: GB
prices:
  cross_zone:   {egress: 0.01, ingress: 0.01}
  cross_region: {egress: 0.02}
  internet:     {egress: 0.09}
networks:
  nat-gateway:  {egress: 0.045, ingress: 0.045}
";

fn parse(text: &str) -> Result<Prices, String> {
    <Prices as Loadable>::parse(text, "cost.yaml", None).map_err(|e| e.to_string())
}

#[test]
fn the_documented_example_gives_its_prices_per_byte() {
    let prices = parse(EXAMPLE).unwrap();
    assert_eq!((&*prices.currency, prices.unit), ("USD", Unit::Gb));
    let rate = prices.rate(Path::CrossZone, None);
    assert_eq!((rate.sent, rate.received), (0.01 / 1e9, 0.01 / 1e9));
    // A direction left out is 0, and a path left out is 0 both ways.
    assert_eq!(prices.rate(Path::CrossRegion, None).received, 0.0);
    assert_eq!(prices.rate(Path::SameZone, None), Rate::default());
    // A network's entry wins over its path's.
    let nat = prices.rate(Path::Internet, Some("nat-gateway"));
    assert_eq!(nat.sent, 0.045 / 1e9);
    // A network without an entry is priced by its path.
    let other = prices.rate(Path::Internet, Some("s3"));
    assert_eq!(other.sent, 0.09 / 1e9);
    assert_eq!(prices.entries(), 6);
}

#[test]
fn gib_is_two_to_the_thirty_bytes() {
    let prices = parse("currency: EUR\nunit: GiB\nprices:\n  internet: {egress: 1}\n").unwrap();
    let rate = prices.rate(Path::Internet, None);
    assert_eq!(rate.sent, 1.0 / 1_073_741_824.0);
    assert_eq!(rate.cost(1 << 30, 0), 1.0);
}

#[test]
fn every_price_given_is_listed_for_the_gauges() {
    let prices = parse(EXAMPLE).unwrap();
    let listed: Vec<_> = prices.listed().collect();
    assert_eq!(
        listed,
        vec![
            ("path", "cross_zone", Direction::Egress, 0.01),
            ("path", "cross_zone", Direction::Ingress, 0.01),
            ("path", "cross_region", Direction::Egress, 0.02),
            ("path", "internet", Direction::Egress, 0.09),
            ("network", "nat-gateway", Direction::Egress, 0.045),
            ("network", "nat-gateway", Direction::Ingress, 0.045),
        ]
    );
}

#[test]
fn bad_files_name_line_and_field() {
    let cases = [
        (
            "currency: USD\nunit: GB\nprices:\n  cross-zone: {egress: 1}\n",
            "cost.yaml:4: prices: unknown field `cross-zone`",
        ),
        (
            "currency: USD\nunit: GB\nprices:\n  internet: {egress: -0.5}\n",
            "cost.yaml:4: prices.internet.egress: -0.5 is negative",
        ),
        (
            "currency: USD\nunit: GB\nprices:\n  internet: {egress: \"0.09\"}\n",
            "cost.yaml:4: prices.internet.egress: \"0.09\" is not a number",
        ),
        (
            "currency: USD\nunit: GB\nprices:\n  internet: {egress: .nan}\n",
            "cost.yaml:4: prices.internet.egress: NaN is not a price",
        ),
        (
            "currency: USD\nunit: gigabytes\n",
            "cost.yaml:2: unit: \"gigabytes\" is not a unit",
        ),
        ("currency: USD\nprices: {}\n", "missing field `unit`"),
        (
            "currency: USD\nunit: GB\nnetworks:\n  nat: {egres: 1}\n",
            "cost.yaml:4: networks.nat: unknown field `egres`",
        ),
        (
            "currency: USD\nunit: GB\ntax: 0.2\n",
            "cost.yaml:3: unknown field `tax`",
        ),
        ("# nothing yet\n", "cost.yaml:1: the file is empty"),
    ];
    for (text, want) in cases {
        let error = parse(text)
            .err()
            .unwrap_or_else(|| panic!("{text:?} parsed"));
        assert!(
            error.contains(want),
            "{text:?}: got {error:?}, want {want:?}"
        );
        assert!(!error.contains('\n'), "one line: {error:?}");
    }
}

#[test]
fn a_reload_may_not_change_the_currency() {
    let before = parse(EXAMPLE).unwrap();
    let changed = EXAMPLE.replace("USD", "EUR");
    let error = <Prices as Loadable>::parse(&changed, "cost.yaml", Some(&before))
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.starts_with("cost.yaml:1: currency: cannot change from USD to EUR"),
        "{error}"
    );
    // New prices in the same currency are fine.
    let cheaper = EXAMPLE.replace("0.09", "0.05");
    let after = <Prices as Loadable>::parse(&cheaper, "cost.yaml", Some(&before)).unwrap();
    assert_eq!(after.rate(Path::Internet, None).sent, 0.05 / 1e9);
}

/// Cost files found by machines: any text, and files shaped like the real
/// one with arbitrary values, load with finite prices of 0 or more, or give
/// the documented one-line error naming the file and a line; never a panic.
mod arbitrary_files {
    use super::*;
    use proptest::prelude::*;

    fn amount() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<f64>().prop_map(|v| v.to_string()),
            any::<i64>().prop_map(|v| v.to_string()),
            any::<u64>().prop_map(|v| v.to_string()),
            Just(".inf".to_string()),
            Just("-.inf".to_string()),
            Just(".nan".to_string()),
            Just("1e400".to_string()),
            "[0-9.eE+-]{0,10}",
            "\\PC{0,10}",
        ]
    }

    fn entry() -> impl Strategy<Value = String> {
        let direction = prop_oneof![Just("egress"), Just("ingress"), Just("both")];
        proptest::collection::vec((direction, amount()), 0..3).prop_map(|fields| {
            let fields: Vec<String> = fields.iter().map(|(d, v)| format!("{d}: {v}")).collect();
            format!("{{{}}}", fields.join(", "))
        })
    }

    fn cost_file() -> impl Strategy<Value = String> {
        let currency = prop_oneof![Just("USD".to_string()), "\\PC{0,6}"];
        let unit = prop_oneof![Just("GB"), Just("GiB"), Just("TB"), Just("")];
        let path = prop_oneof![
            Just("same_zone"),
            Just("cross_zone"),
            Just("internet"),
            Just("loopback"),
            Just("moon")
        ];
        let prices = proptest::collection::vec((path, entry()), 0..4);
        let networks = proptest::collection::vec(("[a-z-]{0,6}", entry()), 0..3);
        (currency, unit, prices, networks).prop_map(|(currency, unit, prices, networks)| {
            let mut text = format!("currency: {currency}\nunit: {unit}\nprices:\n");
            for (path, entry) in prices {
                text.push_str(&format!("  {path}: {entry}\n"));
            }
            text.push_str("networks:\n");
            for (name, entry) in networks {
                text.push_str(&format!("  {name}: {entry}\n"));
            }
            text
        })
    }

    fn check(text: &str) -> Result<(), TestCaseError> {
        match <Prices as Loadable>::parse(text, "cost.yaml", None) {
            Ok(prices) => {
                for (_, _, _, price) in prices.listed() {
                    prop_assert!(price.is_finite() && price >= 0.0, "{price}");
                }
            }
            Err(error) => crate::config_file::check_names_a_line(&error, "cost.yaml", text)?,
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_text_loads_or_names_a_line(text in "\\PC{0,200}") {
            check(&text)?;
        }

        #[test]
        fn cost_shaped_files_load_or_name_a_line(text in cost_file()) {
            check(&text)?;
        }
    }
}
