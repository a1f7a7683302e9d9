//! What the traffic costs, under the labels the user chose: exact bytes
//! moved over network namespaces, times the prices of --cost.file, per path
//! and per named network, across a price reload, and summed into the series
//! --flows.labels asks for.
//!
//! This node is in zone-a of region-1 (--node.zone, --node.region); the
//! named networks of --labels.file put the peers in other zones, another
//! region, behind a NAT gateway, or on the internet (TEST-NET-1).

mod support;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::stand_in::{cgroup2_root, StandIn, TestCgroup};
use support::Exporter;

/// Private (100.64.0.0/10), in no named network: its zone is unknown, so
/// the server ends, whose peer it is, take the unpriced path `unknown`.
const WEB: Ipv4Addr = Ipv4Addr::new(100, 64, 20, 1);
const ZONE_B: Ipv4Addr = Ipv4Addr::new(100, 64, 21, 1);
const ZONE_B_AGAIN: Ipv4Addr = Ipv4Addr::new(100, 64, 21, 2);
const FAR: Ipv4Addr = Ipv4Addr::new(100, 64, 31, 1);
const NAT: Ipv4Addr = Ipv4Addr::new(100, 64, 41, 1);
/// TEST-NET-1: looks public, and is nobody's.
const INTERNET: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);

const LABELS: &str = "networks:
  - cidr: 100.64.21.0/24
    name: vpc-b
    zone: zone-b
    region: region-1
  - cidr: 100.64.31.0/24
    name: vpc-far
    region: region-2
  - cidr: 100.64.41.0/24
    name: nat-gateway
    zone: zone-a
    region: region-1
";

const PRICES: &str = "currency: USD
unit: GB
prices:
  same_zone:    {egress: 0.001}
  cross_zone:   {egress: 0.01, ingress: 0.02}
  cross_region: {egress: 0.02}
  internet:     {egress: 0.09, ingress: 0.005}
networks:
  nat-gateway:  {egress: 0.045, ingress: 0.045}
";

/// One exchange from the web workload: its peer, the bytes it sends, and
/// what its client end should be labelled and priced at (per GB: egress,
/// ingress).
struct Exchange {
    peer: Ipv4Addr,
    up: u64,
    kind: &'static str,
    name: &'static str,
    path: &'static str,
    price: (f64, f64),
}

const EXCHANGES: [Exchange; 5] = [
    Exchange {
        peer: ZONE_B,
        up: 3_000_000,
        kind: "network",
        name: "vpc-b",
        path: "cross_zone",
        price: (0.01, 0.02),
    },
    Exchange {
        peer: ZONE_B_AGAIN,
        up: 1_000_000,
        kind: "network",
        name: "vpc-b",
        path: "cross_zone",
        price: (0.01, 0.02),
    },
    Exchange {
        peer: FAR,
        up: 2_000_000,
        kind: "network",
        name: "vpc-far",
        path: "cross_region",
        price: (0.02, 0.0),
    },
    Exchange {
        peer: INTERNET,
        up: 1_000_000,
        kind: "internet",
        name: "",
        path: "internet",
        price: (0.09, 0.005),
    },
    // same_zone, but the network's own price wins.
    Exchange {
        peer: NAT,
        up: 500_000,
        kind: "network",
        name: "nat-gateway",
        path: "same_zone",
        price: (0.045, 0.045),
    },
];

const GB: f64 = 1e9;

/// What `sent` and `received` bytes cost at (egress, ingress) per GB.
fn cost_of(sent: u64, received: u64, (egress, ingress): (f64, f64)) -> f64 {
    sent as f64 / GB * egress + received as f64 / GB * ingress
}

/// Equal up to float rounding: the exporter adds per read, the test
/// multiplies once.
fn assert_close(got: f64, want: f64, what: &str) {
    let tolerance = want.abs() * 1e-9 + 1e-15;
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: cost {got}, want {want}"
    );
}

/// One series of the flow families: its labels, bytes and cost.
#[derive(Clone, Debug, Default)]
struct Series {
    sent: u64,
    received: u64,
    cost: f64,
}

type Labels = BTreeMap<String, String>;

/// Every flow series of a scrape's text by its labels (the currency left
/// out), the overflow flow included.
fn flow_series(text: &str) -> BTreeMap<Labels, Series> {
    let mut all: BTreeMap<Labels, Series> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((name, labels)) = series.split_once('{') else {
            continue;
        };
        let mut labels = parse_labels(labels.trim_end_matches('}'));
        let series = match name {
            "tcp_flow_sent_bytes_total" | "tcp_flow_received_bytes_total" => {
                all.entry(labels).or_default()
            }
            "tcp_flow_cost_total" => {
                assert_eq!(labels.remove("currency").as_deref(), Some("USD"), "{line}");
                all.entry(labels).or_default()
            }
            _ => continue,
        };
        match name {
            "tcp_flow_sent_bytes_total" => series.sent = value.parse().unwrap(),
            "tcp_flow_received_bytes_total" => series.received = value.parse().unwrap(),
            _ => series.cost = value.parse().unwrap(),
        }
    }
    all
}

fn parse_labels(text: &str) -> Labels {
    if text.is_empty() {
        return Labels::new();
    }
    text.split("\",")
        .map(|pair| {
            let (name, value) = pair.split_once("=\"").expect("name=\"value\"");
            (name.to_owned(), value.trim_end_matches('"').to_owned())
        })
        .collect()
}

/// The series whose labels include every `want` pair; panics unless there
/// is exactly one.
fn one<'a>(all: &'a BTreeMap<Labels, Series>, want: &[(&str, String)]) -> &'a Series {
    let found: Vec<_> = all
        .iter()
        .filter(|(labels, _)| {
            want.iter()
                .all(|(k, v)| labels.get(*k).map_or("", String::as_str) == v)
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "series with {want:?}: {found:#?}\nall: {all:#?}"
    );
    found[0].1
}

/// What each test sets up: every address in a namespace, the labels and
/// cost files, the web workload's cgroup, and the exchanges it runs.
struct Scene {
    stand_in: StandIn,
    labels: PathBuf,
    cost: PathBuf,
    web: TestCgroup,
    moves: Vec<(Ipv4Addr, Ipv4Addr, usize)>,
}

impl Scene {
    fn new() -> Scene {
        let addresses: Vec<_> = [WEB]
            .into_iter()
            .chain(EXCHANGES.iter().map(|e| e.peer))
            .collect();
        let labels = support::temp_path("labels.yaml");
        std::fs::write(&labels, LABELS).unwrap();
        let cost = support::temp_path("cost.yaml");
        std::fs::write(&cost, PRICES).unwrap();
        Scene {
            stand_in: StandIn::new(&addresses),
            labels,
            cost,
            web: TestCgroup::new(&cgroup2_root(), "system.slice/web.service"),
            moves: EXCHANGES
                .iter()
                .map(|e| (WEB, e.peer, e.up as usize))
                .collect(),
        }
    }
}

fn start(stand_in: &StandIn, labels: &Path, cost: &Path, extra: &[&str]) -> Exporter {
    let mut args = vec![
        "--node.name=node-a".to_owned(),
        "--node.zone=zone-a".to_owned(),
        "--node.region=region-1".to_owned(),
        format!("--labels.file={}", labels.display()),
        format!("--cost.file={}", cost.display()),
        format!("--cgroup.root={}", cgroup2_root().display()),
        support::only_port(stand_in.port),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Exporter::start(&args)
}

/// Replaces a file the way editors and ConfigMaps do: a new file renamed
/// over the old one.
fn replace(path: &Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, path).unwrap();
}

/// Waits until a self-metric line is in the scrape.
fn wait_line(exporter: &Exporter, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = exporter.scrape().text;
        if text.lines().any(|l| l == line) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {line:?} within 20 s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn client_end(peer: Ipv4Addr) -> Vec<(&'static str, String)> {
    vec![
        ("src_ip", WEB.to_string()),
        ("dst_ip", peer.to_string()),
        ("role", "client".into()),
    ]
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_cost_is_bytes_times_price_per_path_and_network_across_a_reload() {
    support::require_root();
    let Scene {
        stand_in,
        labels,
        cost,
        web,
        moves,
    } = Scene::new();
    let exporter = start(&stand_in, &labels, &cost, &[]);
    stand_in.exchanges_in(&web.path, &moves);

    let scrape = exporter.scrape();
    let all = flow_series(&scrape.text);
    let mut total = 0.0;
    for e in &EXCHANGES {
        let mut want = client_end(e.peer);
        want.push(("dst_kind", e.kind.into()));
        want.push(("dst_name", e.name.into()));
        want.push(("path", e.path.into()));
        let series = one(&all, &want);
        assert_eq!((series.sent, series.received), (e.up, e.up / 2), "{want:?}");
        let expected = cost_of(e.up, e.up / 2, e.price);
        assert_close(series.cost, expected, &format!("{want:?}"));
        total += expected;
    }
    // Every server end's peer is the web address: private, zone unknown, so
    // its path is `unknown`, which has no price.
    let sum: f64 = all.values().map(|s| s.cost).sum();
    assert_close(sum, total, "all series");
    for line in [
        r#"tcp_flow_exporter_price{path="cross_zone",direction="ingress",currency="USD",unit="GB"} 0.02"#,
        r#"tcp_flow_exporter_price{network="nat-gateway",direction="egress",currency="USD",unit="GB"} 0.045"#,
    ] {
        assert!(scrape.text.lines().any(|l| l == line), "no {line}");
    }

    // Internet egress gets cheaper. What moved before keeps its price; what
    // moves after costs the new one.
    let internet = client_end(INTERNET);
    let before = one(&all, &internet).cost;
    replace(&cost, &PRICES.replace("egress: 0.09", "egress: 0.05"));
    wait_line(
        &exporter,
        r#"tcp_flow_exporter_price{path="internet",direction="egress",currency="USD",unit="GB"} 0.05"#,
    );
    stand_in.exchanges_in(&web.path, &[(WEB, INTERNET, 2_000_000)]);
    let all = flow_series(&exporter.scrape().text);
    let series = one(&all, &internet);
    assert_eq!((series.sent, series.received), (3_000_000, 1_500_000));
    let after = before + cost_of(2_000_000, 1_000_000, (0.05, 0.005));
    assert_close(series.cost, after, "internet after the reload");

    // A bad file (another currency) changes nothing: the old prices stay.
    replace(&cost, &PRICES.replace("USD", "EUR"));
    wait_line(
        &exporter,
        r#"tcp_flow_exporter_cost_reloads_total{result="failure"} 1"#,
    );
    stand_in.exchanges_in(&web.path, &[(WEB, INTERNET, 1_000_000)]);
    let all = flow_series(&exporter.scrape().text);
    let series = one(&all, &internet);
    assert_close(
        series.cost,
        after + cost_of(1_000_000, 500_000, (0.05, 0.005)),
        "internet after a failed reload",
    );
    assert!(
        exporter.log().contains("prices not reloaded"),
        "{}",
        exporter.log()
    );
}

/// The label values of a client end of `e`, by label name.
fn client_labels(e: &Exchange) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("src_ip", WEB.to_string()),
        ("src_port", String::new()),
        ("dst_ip", e.peer.to_string()),
        ("role", "client".into()),
        ("src_workload", "web.service".into()),
        ("dst_kind", e.kind.into()),
        ("dst_name", e.name.into()),
        ("path", e.path.into()),
    ])
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_chosen_labels_add_flows_into_series_and_sums_stay_exact() {
    support::require_root();
    let Scene {
        stand_in,
        labels,
        cost,
        web,
        moves,
    } = Scene::new();
    let moved: u64 = EXCHANGES.iter().map(|e| e.up).sum();
    let priced: f64 = EXCHANGES
        .iter()
        .map(|e| cost_of(e.up, e.up / 2, e.price))
        .sum();
    for chosen in [
        // Workload to workload, no address at all.
        "src_workload,dst_kind,dst_name,path,role",
        "dst_ip,role",
        // Only the path: client and server ends add up together.
        "path",
    ] {
        let names: Vec<&str> = chosen.split(',').collect();
        let exporter = start(
            &stand_in,
            &labels,
            &cost,
            &[&format!("--flows.labels={chosen}")],
        );
        stand_in.exchanges_in(&web.path, &moves);
        let all = flow_series(&exporter.scrape().text);
        for series in all.keys() {
            assert!(
                series.keys().all(|name| names.contains(&name.as_str())),
                "{chosen}: a label not chosen in {series:?}"
            );
        }
        // Each client end's series holds every exchange with its labels.
        let mut want: BTreeMap<Vec<(&str, String)>, Series> = BTreeMap::new();
        for e in &EXCHANGES {
            let values = client_labels(e);
            let key: Vec<_> = names
                .iter()
                .map(|n| (*n, values.get(n).cloned().unwrap_or_default()))
                .collect();
            let series = want.entry(key).or_default();
            series.sent += e.up;
            series.received += e.up / 2;
            series.cost += cost_of(e.up, e.up / 2, e.price);
        }
        for (key, expected) in &want {
            // With only `path`, the server ends (path unknown) are apart.
            let got = one(&all, key);
            assert_eq!(
                (got.sent, got.received),
                (expected.sent, expected.received),
                "{chosen}: {key:?}"
            );
            assert_close(got.cost, expected.cost, &format!("{chosen}: {key:?}"));
        }
        // Sums over every series, overflow included: each exchange moved
        // up + up/2 bytes each way, once at each end.
        let sent: u64 = all.values().map(|s| s.sent).sum();
        let received: u64 = all.values().map(|s| s.received).sum();
        assert_eq!(
            (sent, received),
            (moved + moved / 2, moved + moved / 2),
            "{chosen}"
        );
        let cost: f64 = all.values().map(|s| s.cost).sum();
        assert_close(cost, priced, chosen);
        drop(exporter);
    }
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_a_bad_cost_file_stops_the_start_naming_line_and_field() {
    support::require_root();
    let cost = support::temp_path("cost.yaml");
    std::fs::write(
        &cost,
        "currency: USD\nunit: GB\nprices:\n  internet: {egress: -1}\n",
    )
    .unwrap();
    support::assert_start_fails_with(
        &[&format!("--cost.file={}", cost.display())],
        &format!(
            "tcp-flow-exporter: error: --cost.file: {}:4: prices.internet.egress: -1 is negative: a price is 0 or more",
            cost.display()
        ),
    );
}
