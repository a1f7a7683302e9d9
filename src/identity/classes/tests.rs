use super::*;
use AddressClass::{Internet, Loopback, Private};

fn class_of(text: &str) -> AddressClass {
    classify(text.parse().expect("a test address"))
}

/// Each range as: the address just below it, its first and last address,
/// and the address just above it.
fn assert_edges(below: &str, first: &str, last: &str, above: &str, class: AddressClass) {
    assert_eq!(class_of(below), Internet, "{below} (below {first})");
    assert_eq!(class_of(first), class, "{first} (first)");
    assert_eq!(class_of(last), class, "{last} (last)");
    assert_eq!(class_of(above), Internet, "{above} (above {last})");
}

#[test]
fn ipv4_loopback_edges() {
    assert_edges(
        "126.255.255.255",
        "127.0.0.0",
        "127.255.255.255",
        "128.0.0.0",
        Loopback,
    );
}

#[test]
fn ipv4_rfc1918_edges() {
    assert_edges(
        "9.255.255.255",
        "10.0.0.0",
        "10.255.255.255",
        "11.0.0.0",
        Private,
    );
    assert_edges(
        "172.15.255.255",
        "172.16.0.0",
        "172.31.255.255",
        "172.32.0.0",
        Private,
    );
    assert_edges(
        "192.167.255.255",
        "192.168.0.0",
        "192.168.255.255",
        "192.169.0.0",
        Private,
    );
}

#[test]
fn ipv4_shared_address_space_edges() {
    assert_edges(
        "100.63.255.255",
        "100.64.0.0",
        "100.127.255.255",
        "100.128.0.0",
        Private,
    );
}

#[test]
fn ipv4_link_local_edges() {
    assert_edges(
        "169.253.255.255",
        "169.254.0.0",
        "169.254.255.255",
        "169.255.0.0",
        Private,
    );
}

#[test]
fn ipv6_unique_local_edges() {
    assert_edges(
        "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "fc00::",
        "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "fe00::",
        Private,
    );
}

#[test]
fn ipv6_link_local_edges() {
    assert_edges(
        "fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "fe80::",
        "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "fec0::",
        Private,
    );
}

#[test]
fn ipv6_loopback_is_one_address() {
    assert_eq!(class_of("::1"), Loopback);
    assert_eq!(class_of("::2"), Internet);
}

#[test]
fn unspecified_addresses_are_loopback() {
    assert_eq!(class_of("0.0.0.0"), Loopback);
    assert_eq!(class_of("::"), Loopback);
    assert_eq!(class_of("0.0.0.1"), Internet);
}

#[test]
fn ipv4_mapped_ipv6_is_classed_as_its_ipv4() {
    assert_eq!(class_of("::ffff:127.0.0.1"), Loopback);
    assert_eq!(class_of("::ffff:10.1.2.3"), Private);
    assert_eq!(class_of("::ffff:100.64.0.0"), Private);
    assert_eq!(class_of("::ffff:169.254.1.1"), Private);
    assert_eq!(class_of("::ffff:192.0.2.1"), Internet);
    assert_eq!(class_of("::ffff:0.0.0.0"), Loopback);
}

#[test]
fn ipv4_compatible_ipv6_is_not_mapped() {
    // ::a.b.c.d is a deprecated form no socket reports for an IPv4 peer.
    assert_eq!(class_of("::10.1.2.3"), Internet);
}

#[test]
fn documentation_and_benchmark_ranges_are_internet() {
    for address in [
        "192.0.2.1",
        "198.51.100.1",
        "203.0.113.1",
        "198.18.0.1",
        "198.19.255.255",
        "2001:db8::1",
        "8.8.8.8",
        "2600:1f14::1",
    ] {
        assert_eq!(class_of(address), Internet, "{address}");
    }
}

#[test]
fn classes_map_to_peer_kinds() {
    assert_eq!(PeerKind::from(Loopback), PeerKind::Loopback);
    assert_eq!(PeerKind::from(Private), PeerKind::Private);
    assert_eq!(PeerKind::from(Internet), PeerKind::Internet);
    assert_eq!(Internet.as_str(), "internet");
    assert_eq!(Private.as_str(), "private");
    assert_eq!(Loopback.as_str(), "loopback");
}
