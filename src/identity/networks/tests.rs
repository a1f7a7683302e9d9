use super::*;

fn networks(yaml: &str) -> Networks {
    Networks::parse(yaml, "labels.yaml").expect("a valid test file")
}

fn name_of<'a>(networks: &'a Networks, ip: &str) -> Option<&'a str> {
    networks
        .find(ip.parse().expect("a test address"))
        .map(|network| &*network.name)
}

const NESTED: &str = "\
networks:
  - cidr: 10.0.0.0/8
    name: corp
  - cidr: 10.20.0.0/16
    name: vpc-payments
    zone: eu-west-1a
    region: eu-west-1
  - cidr: 10.20.30.0/24
    name: payments-db
  - cidr: 10.20.30.40/32
    name: primary
  - cidr: 0.0.0.0/0
    name: anywhere-v4
  - cidr: 2600:1f14::/35
    name: s3-us-west-2
  - cidr: 2600:1f14:1000::/40
    name: narrower-v6
";

#[test]
fn the_narrowest_network_wins() {
    let networks = networks(NESTED);
    assert_eq!(name_of(&networks, "10.20.30.40"), Some("primary"));
    assert_eq!(name_of(&networks, "10.20.30.41"), Some("payments-db"));
    assert_eq!(name_of(&networks, "10.20.31.1"), Some("vpc-payments"));
    assert_eq!(name_of(&networks, "10.21.0.0"), Some("corp"));
    assert_eq!(name_of(&networks, "11.0.0.0"), Some("anywhere-v4"));
}

#[test]
fn range_edges_match_exactly() {
    let networks = networks(NESTED);
    assert_eq!(name_of(&networks, "10.20.0.0"), Some("vpc-payments"));
    assert_eq!(name_of(&networks, "10.20.255.255"), Some("vpc-payments"));
    assert_eq!(name_of(&networks, "10.19.255.255"), Some("corp"));
    assert_eq!(name_of(&networks, "10.21.0.0"), Some("corp"));
}

#[test]
fn ipv6_networks_match_ipv6_addresses_only() {
    let networks = networks(NESTED);
    assert_eq!(name_of(&networks, "2600:1f14::1"), Some("s3-us-west-2"));
    assert_eq!(name_of(&networks, "2600:1f14:1000::1"), Some("narrower-v6"));
    assert_eq!(name_of(&networks, "2600:1f14:1100::"), Some("s3-us-west-2"));
    assert_eq!(
        name_of(&networks, "2600:1f14:1fff:ffff:ffff:ffff:ffff:ffff"),
        Some("s3-us-west-2")
    );
    assert_eq!(name_of(&networks, "2600:1f14:2000::"), None);
    // 0.0.0.0/0 covers IPv4 only.
    assert_eq!(name_of(&networks, "2001:db8::1"), None);
}

#[test]
fn ipv4_mapped_addresses_look_up_as_ipv4() {
    let networks = networks(NESTED);
    assert_eq!(name_of(&networks, "::ffff:10.20.30.40"), Some("primary"));
    assert_eq!(name_of(&networks, "::ffff:10.20.1.1"), Some("vpc-payments"));
    assert_eq!(name_of(&networks, "::ffff:192.0.2.1"), Some("anywhere-v4"));
}

#[test]
fn a_match_carries_its_place() {
    let networks = networks(NESTED);
    let found = networks.find("10.20.1.1".parse().unwrap()).unwrap();
    assert_eq!(found.cidr, "10.20.0.0/16".parse::<IpNet>().unwrap());
    assert_eq!(
        found.place,
        Place {
            zone: Some(Arc::from("eu-west-1a")),
            region: Some(Arc::from("eu-west-1")),
        }
    );
    let bare = networks.find("10.1.1.1".parse().unwrap()).unwrap();
    assert_eq!(bare.place, Place::default());
}

#[test]
fn no_match_without_a_covering_network() {
    let networks = networks(
        "networks:\n  - cidr: 10.20.0.0/16\n    name: vpc\n  - cidr: 192.0.2.0/24\n    name: test-net\n",
    );
    assert_eq!(name_of(&networks, "10.21.0.1"), None);
    assert_eq!(name_of(&networks, "192.0.3.0"), None);
    assert_eq!(name_of(&networks, "192.0.2.255"), Some("test-net"));
    assert_eq!(networks.len(), 2);
    assert!(!networks.is_empty());
}

#[test]
fn empty_sets_find_nothing() {
    let empty = Networks::empty();
    assert_eq!(empty.len(), 0);
    assert!(empty.is_empty());
    assert_eq!(name_of(&empty, "10.0.0.1"), None);
    let listed_empty = networks("networks: []\n");
    assert!(listed_empty.is_empty());
    assert_eq!(name_of(&listed_empty, "10.0.0.1"), None);
}

#[test]
fn iteration_keeps_file_order() {
    let names: Vec<String> = networks(NESTED)
        .iter()
        .map(|network| network.name.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "corp",
            "vpc-payments",
            "payments-db",
            "primary",
            "anywhere-v4",
            "s3-us-west-2",
            "narrower-v6"
        ]
    );
}

#[test]
fn thousands_of_networks_resolve_each_to_its_own() {
    // Every /24 in 10.0.0.0/12 plus a /16 over each sixteenth of them.
    let mut yaml = String::from("networks:\n");
    for third in 0..16u32 {
        for second in 0..16u32 {
            yaml.push_str(&format!(
                "  - cidr: 10.{second}.{third}.0/24\n    name: n-{second}-{third}\n"
            ));
        }
    }
    for second in 0..16u32 {
        yaml.push_str(&format!(
            "  - cidr: 10.{second}.0.0/16\n    name: wide-{second}\n"
        ));
    }
    let networks = networks(&yaml);
    assert_eq!(networks.len(), 16 * 16 + 16);
    for second in 0..16u32 {
        for third in 0..16u32 {
            let ip = format!("10.{second}.{third}.77");
            assert_eq!(
                name_of(&networks, &ip),
                Some(format!("n-{second}-{third}").as_str())
            );
        }
        let outside = format!("10.{second}.200.1");
        assert_eq!(
            name_of(&networks, &outside),
            Some(format!("wide-{second}").as_str())
        );
    }
}
