//! Root tests of whose flow a connection is and which flows are kept:
//! client and server roles over IPv4 and IPv6, a connection to itself,
//! connections older than the exporter, and the in-kernel port, CIDR and
//! loopback filters. The filter tests scope their exporter to their own
//! listener ports with --filter.port.include, so the node's other traffic
//! cannot add to the sums they check.

mod support;

use std::io::Write;
use std::net::IpAddr;

use support::netns::Netns;
use support::traffic::{self, listener, Pair};
use support::{only_port, server_mode_flows, Exporter, FlowId};

fn roles_over(ip: &str) {
    let exporter = Exporter::start(&["--flows.ports=all"]);
    let mut pair = Pair::on(ip);
    pair.exchange(7_000, 300);
    let scrape = exporter.scrape();
    assert_eq!(scrape.flow(&pair.client_flow()), Some((7_000, 300)));
    assert_eq!(scrape.flow(&pair.server_flow()), Some((300, 7_000)));
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_roles_over_ipv4() {
    support::require_root();
    roles_over("127.0.0.1");
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_roles_over_ipv6() {
    support::require_root();
    roles_over("::1");
}

fn self_connect_over(ip: &str) {
    let ip: IpAddr = ip.parse().unwrap();
    let exporter = Exporter::start(&["--flows.ports=all"]);
    let mut socket = traffic::self_connected(ip);
    let addr = socket.local_addr().unwrap();
    assert_eq!(socket.peer_addr().unwrap(), addr);
    socket.write_all(&traffic::payload(1_500)).unwrap();
    traffic::read_exactly(&mut socket, 1_500);
    let scrape = exporter.scrape();
    // One socket, both ends: it connected, so it is the client, and it
    // received every byte it sent.
    let flow = FlowId {
        local: addr,
        remote: addr,
        role: "client",
    };
    assert_eq!(scrape.flow(&flow), Some((1_500, 1_500)), "{}", scrape.text);
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_connection_to_itself_is_a_client_over_ipv4() {
    support::require_root();
    self_connect_over("127.0.0.1");
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_connection_to_itself_is_a_client_over_ipv6() {
    support::require_root();
    self_connect_over("::1");
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_connections_older_than_the_exporter_have_role_unknown() {
    support::require_root();
    let mut pair = Pair::on("127.0.0.1");
    let exporter = Exporter::start(&[]);
    pair.exchange(11, 22);
    let scrape = exporter.scrape();
    // Both ports stay, even under --flows.ports=server: which one is the
    // server's is not known.
    let unknown = |flow: FlowId| FlowId {
        role: "unknown",
        ..flow
    };
    assert_eq!(scrape.flow(&unknown(pair.client_flow())), Some((11, 22)));
    assert_eq!(scrape.flow(&unknown(pair.server_flow())), Some((22, 11)));
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_port_filters_match_the_server_port_and_exclude_wins() {
    support::require_root();
    let (kept_listener, kept_server) = listener("127.0.0.1");
    let (dropped_listener, dropped_server) = listener("127.0.0.1");
    let exporter = Exporter::start(&[
        &format!(
            "--filter.port.include={},{}",
            kept_server.port(),
            dropped_server.port()
        ),
        &format!("--filter.port.exclude={}", dropped_server.port()),
    ]);
    let mut kept = Pair::through(&kept_listener, kept_server);
    let mut dropped = Pair::through(&dropped_listener, dropped_server);
    kept.exchange(123, 456);
    dropped.exchange(789, 1011);
    let scrape = exporter.scrape();
    let (client, server) = server_mode_flows(kept_server.ip(), kept_server);
    assert_eq!(scrape.flow(&client), Some((123, 456)));
    assert_eq!(scrape.flow(&server), Some((456, 123)));
    // The client's own (ephemeral) port is not what the filter matches, and
    // the excluded server port is dropped although it is also included.
    assert_eq!(scrape.flows().len(), 2, "{:?}", scrape.flows());
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_cidr_filters_match_the_peer_address() {
    support::require_root();
    let (to_two, two) = listener("127.0.0.2");
    let (to_three, three) = listener("127.0.0.3");
    let (to_v6, v6) = listener("::1");
    let exporter = Exporter::start(&[
        "--filter.cidr.include=127.0.0.0/8,::1/128",
        "--filter.cidr.exclude=127.0.0.3",
        &format!(
            "--filter.port.include={},{},{}",
            two.port(),
            three.port(),
            v6.port()
        ),
    ]);
    let mut a = Pair::through(&to_two, two);
    let mut b = Pair::through(&to_three, three);
    let mut c = Pair::through(&to_v6, v6);
    a.exchange(10, 20);
    b.exchange(30, 40);
    c.exchange(50, 60);
    let scrape = exporter.scrape();
    let flow = |f: FlowId| scrape.flow(&f.server_port_only());
    assert_eq!(flow(a.client_flow()), Some((10, 20)));
    assert_eq!(flow(a.server_flow()), Some((20, 10)));
    // b's client talks to 127.0.0.3, excluded; its server's peer is the
    // client's address, which is not.
    assert_eq!(flow(b.client_flow()), None);
    assert_eq!(flow(b.server_flow()), Some((40, 30)));
    assert_eq!(flow(c.client_flow()), Some((50, 60)));
    assert_eq!(flow(c.server_flow()), Some((60, 50)));
    assert_eq!(scrape.flows().len(), 5, "{:?}", scrape.flows());
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_loopback_switch_drops_only_loopback_peers() {
    support::require_root();
    let ns = Netns::new();
    let outside = ns.listen();
    let outside_addr = outside.local_addr().unwrap();
    let (inside, inside_addr) = listener("127.0.0.1");
    let exporter = Exporter::start(&[
        "--filter.loopback=exclude",
        &format!(
            "--filter.port.include={},{}",
            outside_addr.port(),
            inside_addr.port()
        ),
    ]);
    let mut veth = Pair::through(&outside, outside_addr);
    let mut lo = Pair::through(&inside, inside_addr);
    veth.exchange(5_000, 6_000);
    lo.exchange(7_000, 8_000);
    let scrape = exporter.scrape();
    let (client, server) = server_mode_flows(IpAddr::V4(ns.host_ip), outside_addr);
    assert_eq!(veth.client_flow().local.ip(), IpAddr::V4(ns.host_ip));
    assert_eq!(scrape.flow(&client), Some((5_000, 6_000)));
    assert_eq!(scrape.flow(&server), Some((6_000, 5_000)));
    assert_eq!(scrape.flows().len(), 2, "{:?}", scrape.flows());

    // And by default loopback is counted.
    let counting = Exporter::start(&[&only_port(inside_addr.port())]);
    let mut lo = Pair::through(&inside, inside_addr);
    lo.exchange(1, 2);
    assert_eq!(
        counting.scrape().flow(&lo.client_flow().server_port_only()),
        Some((1, 2))
    );
}

/// The BPF maps an exporter process holds: (map type, key size, value size)
/// -> max_entries, from /proc/<pid>/fdinfo.
fn bpf_maps(pid: u32) -> Vec<((u32, u32, u32), u32)> {
    let mut maps = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
        let Ok(info) = std::fs::read_to_string(entry.unwrap().path()) else {
            continue;
        };
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().parse::<u32>().unwrap())
        };
        let Some(map_type) = field("map_type:") else {
            continue;
        };
        let map = (
            map_type,
            field("key_size:").unwrap(),
            field("value_size:").unwrap(),
        );
        maps.push((map, field("max_entries:").unwrap()));
    }
    maps
}

/// --sockets.max sizes every map it names, in the kernel: the socket
/// backend's socket_shards (an array of maps, key 4, value 4: two shards of
/// 1,024 connections hold 1,000 and a sixteenth more) and closed_sockets
/// (hash, 16, 80), the per-event backends' socket_roles (hash, 8, 4).
#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_sockets_max_sizes_the_socket_maps() {
    support::require_root();
    let exporter = Exporter::start(&["--sockets.max=1000"]);
    let maps = bpf_maps(exporter.pid());
    let sized = |map: (u32, u32, u32)| maps.iter().find(|(m, _)| *m == map).map(|(_, max)| *max);
    let socket = exporter.scrape().text.contains(r#"backend="socket""#);
    // (name, (map type, key size, value size), max_entries); BPF_MAP_TYPE_HASH
    // is 1, BPF_MAP_TYPE_ARRAY_OF_MAPS 12.
    let expected: &[(&str, (u32, u32, u32), u32)] = if socket {
        &[
            ("socket_shards", (12, 4, 4), 2),
            ("closed_sockets", (1, 16, 80), 1000),
        ]
    } else {
        &[("socket_roles", (1, 8, 4), 1000)]
    };
    for (name, map, max) in expected {
        assert_eq!(sized(*map), Some(*max), "{name} in {maps:?}");
    }
}
