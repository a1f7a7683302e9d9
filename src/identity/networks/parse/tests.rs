use super::*;

/// The one-line error for `yaml`.
fn error_of(yaml: &str) -> String {
    match Networks::parse(yaml, "labels.yaml") {
        Ok(networks) => panic!("parsed as {networks:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn a_valid_file_gives_every_field() {
    let networks = Networks::parse(
        "networks:\n  - cidr: 10.20.0.0/16\n    name: vpc-payments\n    zone: eu-west-1a\n    region: eu-west-1\n  - cidr: \"2600:1f14::/35\"\n    name: s3-us-west-2\n    region: us-west-2\n",
        "labels.yaml",
    )
    .unwrap();
    let list: Vec<&Network> = networks.iter().collect();
    assert_eq!(
        list,
        [
            &Network {
                cidr: "10.20.0.0/16".parse().unwrap(),
                name: Arc::from("vpc-payments"),
                place: Place {
                    zone: Some(Arc::from("eu-west-1a")),
                    region: Some(Arc::from("eu-west-1")),
                },
            },
            &Network {
                cidr: "2600:1f14::/35".parse().unwrap(),
                name: Arc::from("s3-us-west-2"),
                place: Place {
                    zone: None,
                    region: Some(Arc::from("us-west-2")),
                },
            },
        ]
    );
}

const TWO_GOOD: &str = "\
# Named networks
networks:
  - cidr: 10.20.0.0/16
    name: vpc-payments
  - cidr: 52.218.0.0/17
    name: s3-eu-west-1
";

#[test]
fn a_cidr_out_of_range_names_line_and_field() {
    let yaml = format!("{TWO_GOOD}  - cidr: 10.0.0.0/33\n    name: bad\n");
    assert_eq!(
        error_of(&yaml),
        "labels.yaml:7: networks[2].cidr: \"10.0.0.0/33\" is not a CIDR"
    );
}

#[test]
fn a_bare_address_suggests_a_prefix_length() {
    assert_eq!(
        error_of("networks:\n  - cidr: 10.1.2.3\n    name: host\n"),
        "labels.yaml:2: networks[0].cidr: \"10.1.2.3\" is not a CIDR: add a prefix length, as in \"10.1.2.3/32\""
    );
    assert_eq!(
        error_of("networks:\n  - cidr: \"2001:db8::1\"\n    name: host\n"),
        "labels.yaml:2: networks[0].cidr: \"2001:db8::1\" is not a CIDR: add a prefix length, as in \"2001:db8::1/128\""
    );
}

#[test]
fn host_bits_suggest_the_network_address() {
    assert_eq!(
        error_of("networks:\n  - name: vpc\n    cidr: 10.20.1.0/16\n"),
        "labels.yaml:3: networks[0].cidr: \"10.20.1.0/16\" has host bits set: the network is \"10.20.0.0/16\""
    );
}

#[test]
fn a_duplicate_cidr_names_both_lines() {
    let yaml = format!("{TWO_GOOD}  - name: again\n    cidr: 10.20.0.0/16\n");
    assert_eq!(
        error_of(&yaml),
        "labels.yaml:8: networks[2].cidr: \"10.20.0.0/16\" is listed twice: networks[0] at line 3 has it too"
    );
}

#[test]
fn an_unknown_key_is_named() {
    let yaml = format!("{TWO_GOOD}  - cidr: 10.30.0.0/16\n    name: x\n    zoen: eu-west-1a\n");
    assert_eq!(
        error_of(&yaml),
        "labels.yaml:9: networks[2]: unknown field `zoen`, expected one of `cidr`, `name`, `zone`, `region`"
    );
    assert_eq!(
        error_of("networks: []\nnetwork: []\n"),
        "labels.yaml:2: unknown field `network`, expected `networks`"
    );
}

#[test]
fn missing_fields_are_named() {
    assert_eq!(
        error_of("networks:\n  - name: vpc\n"),
        "labels.yaml:2: networks[0]: missing field `cidr`"
    );
    assert_eq!(
        error_of("networks:\n  - cidr: 10.0.0.0/8\n    zone: a\n"),
        "labels.yaml:2: networks[0]: missing field `name`"
    );
}

#[test]
fn empty_values_are_refused() {
    assert_eq!(
        error_of("networks:\n  - cidr: 10.0.0.0/8\n    name: \"\"\n"),
        "labels.yaml:3: networks[0].name: must not be empty (leave an unknown zone or region out)"
    );
    assert_eq!(
        error_of("networks:\n  - cidr: 10.0.0.0/8\n    name: corp\n    region: ''\n"),
        "labels.yaml:4: networks[0].region: must not be empty (leave an unknown zone or region out)"
    );
}

#[test]
fn wrong_types_are_named() {
    assert_eq!(
        error_of("networks:\n  - cidr: [10.0.0.0/8]\n    name: corp\n"),
        "labels.yaml:2: networks[0].cidr: invalid type: sequence, expected a CIDR like 10.20.0.0/16"
    );
    assert_eq!(
        error_of("networks:\n  - cidr: 10.0.0.0/8\n    name: {first: a}\n"),
        "labels.yaml:3: networks[0].name: invalid type: map, expected a string"
    );
    assert_eq!(
        error_of("networks:\n  cidr: 10.0.0.0/8\n"),
        "labels.yaml:2: networks: invalid type: map, expected a sequence"
    );
    assert_eq!(
        error_of("- cidr: 10.0.0.0/8\n"),
        "labels.yaml:1: invalid type: sequence, expected struct LabelsDocument"
    );
}

#[test]
fn an_empty_file_or_no_networks_key_is_refused() {
    let empty = "labels.yaml:1: the file is empty: expected a `networks:` list";
    assert_eq!(error_of(""), empty);
    assert_eq!(error_of("# only a comment\n\n"), empty);
    assert_eq!(error_of("{}\n"), "labels.yaml:1: missing field `networks`");
}

#[test]
fn yaml_syntax_errors_give_a_line() {
    assert_eq!(
        error_of("networks:\n\t- cidr: 10.0.0.0/8\n"),
        "labels.yaml:2: found character that cannot start any token, while scanning for the next token"
    );
    assert_eq!(
        error_of("networks:\n  - cidr: \"10.0.0.0/8\n    name: corp\n"),
        "labels.yaml:4: found unexpected end of stream, while scanning a quoted scalar at line 2 column 11"
    );
}

#[test]
fn an_empty_list_is_zero_networks() {
    // Every entry commented out leaves `networks:` with a null value.
    for yaml in [
        "networks: []\n",
        "networks:\n",
        "networks:\n#  - cidr: 10.0.0.0/8\n",
    ] {
        let networks = Networks::parse(yaml, "labels.yaml").unwrap();
        assert!(networks.is_empty(), "{yaml:?}");
    }
}

/// Labels files found by machines: any text, and files shaped like the real
/// one with arbitrary values, load or give the documented one-line error
/// naming the file and a line in it; never a panic.
mod arbitrary_files {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            (any::<std::net::IpAddr>(), 0u8..140).prop_map(|(ip, len)| format!("{ip}/{len}")),
            any::<std::net::IpAddr>().prop_map(|ip| ip.to_string()),
            "[a-z0-9./:-]{0,12}",
            "\\PC{0,12}",
            Just(String::new()),
            Just("[]".to_string()),
            Just("{a: 1}".to_string()),
            Just("''".to_string()),
        ]
    }

    /// One `- cidr: … name: …` entry, keys sometimes missing, doubled,
    /// unknown or mis-indented.
    fn entry() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("cidr"),
            Just("name"),
            Just("zone"),
            Just("region"),
            Just("color")
        ];
        let indent = prop_oneof![Just("    "), Just("  "), Just("      ")];
        proptest::collection::vec((indent, key, value()), 0..5).prop_map(|fields| {
            let mut text = "  -".to_string();
            for (i, (indent, key, value)) in fields.iter().enumerate() {
                let pad = if i == 0 { " " } else { indent };
                text.push_str(&format!("{pad}{key}: {value}\n"));
            }
            if fields.is_empty() {
                text.push('\n');
            }
            text
        })
    }

    fn labels_file() -> impl Strategy<Value = String> {
        let head = prop_oneof![
            Just("networks:\n"),
            Just("networks: []\n"),
            Just("nets:\n"),
            Just("")
        ];
        (head, proptest::collection::vec(entry(), 0..6))
            .prop_map(|(head, entries)| format!("{head}{}", entries.concat()))
    }

    fn check(text: &str) -> Result<(), TestCaseError> {
        match Networks::parse(text, "labels.yaml") {
            Ok(networks) => {
                let mut seen = std::collections::HashSet::new();
                for network in networks.iter() {
                    prop_assert_eq!(network.cidr.trunc(), network.cidr);
                    prop_assert!(!network.name.trim().is_empty());
                    prop_assert!(seen.insert(network.cidr), "{} twice", network.cidr);
                }
            }
            Err(error) => crate::config_file::check_names_a_line(&error, "labels.yaml", text)?,
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_text_loads_or_names_a_line(text in "\\PC{0,200}") {
            check(&text)?;
        }

        #[test]
        fn labels_shaped_files_load_or_name_a_line(text in labels_file()) {
            check(&text)?;
        }
    }
}
