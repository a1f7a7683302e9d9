//! Who is on each end, and which path: exact bytes under exact label sets.
//!
//! A test API server (support::kube_api) stands in for the cluster, a
//! network namespace for its addresses (support::stand_in), and cgroups made
//! here for pods and systemd units. This node is node-a in zone-a; node-b is
//! in zone-b, both in region-1.

mod support;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use support::kube_api::{host_network_pod, node, owned_by, pod, replica_set, service, KubeApi};
use support::stand_in::{cgroup2_root, exchange_open, StandIn, TestCgroup};
use support::{Exporter, Scrape};

const WEB: Ipv4Addr = Ipv4Addr::new(198, 18, 10, 1);
const DB: Ipv4Addr = Ipv4Addr::new(198, 18, 10, 2);
const CACHE: Ipv4Addr = Ipv4Addr::new(198, 18, 10, 3);
const SERVICE: Ipv4Addr = Ipv4Addr::new(198, 18, 10, 4);
const NODE_B: Ipv4Addr = Ipv4Addr::new(198, 18, 10, 5);
const REUSED: Ipv4Addr = Ipv4Addr::new(198, 18, 10, 6);
const LATE: Ipv4Addr = Ipv4Addr::new(198, 18, 10, 7);
const NODE_A: Ipv4Addr = Ipv4Addr::new(198, 18, 10, 100);
const NAMED: Ipv4Addr = Ipv4Addr::new(100, 64, 20, 1);
const NAMED_AGAIN: Ipv4Addr = Ipv4Addr::new(100, 64, 20, 2);
const NAMED_RENAMED: Ipv4Addr = Ipv4Addr::new(100, 64, 20, 3);
const NAMED_FAR: Ipv4Addr = Ipv4Addr::new(100, 64, 30, 1);
const PRIVATE: Ipv4Addr = Ipv4Addr::new(100, 64, 99, 9);
const VM: Ipv4Addr = Ipv4Addr::new(100, 64, 50, 5);
/// TEST-NET-1: looks public, and is nobody's.
const INTERNET: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

const WEB_UID: &str = "1f0c3a2e-5b6d-4c1e-9a7b-0123456789ab";

const LABELS: &str = "networks:
  - cidr: 100.64.20.0/24
    name: vpc-payments
    zone: zone-b
    region: region-1
  - cidr: 100.64.30.0/24
    name: vpc-far
    region: region-2
";

/// The cluster's objects, as a real one would show them.
fn populate(api: &KubeApi) {
    api.apply(&node("node-a", &NODE_A.to_string(), "zone-a", "region-1"));
    api.apply(&node("node-b", &NODE_B.to_string(), "zone-b", "region-1"));
    api.apply(&replica_set("shop", "web-5d8", "uid-rs-web", "web"));
    let web = pod(
        "shop",
        "web-1",
        WEB_UID,
        &WEB.to_string(),
        "node-a",
        "Running",
    );
    api.apply(&owned_by(web, "ReplicaSet", "web-5d8", "uid-rs-web"));
    let db = pod(
        "data",
        "db-0",
        "uid-db-0",
        &DB.to_string(),
        "node-b",
        "Running",
    );
    api.apply(&owned_by(db, "StatefulSet", "db", "uid-sts-db"));
    api.apply(&pod(
        "data",
        "cache-0",
        "uid-cache-0",
        &CACHE.to_string(),
        "node-a",
        "Running",
    ));
    api.apply(&service("pay", "payments", &SERVICE.to_string()));
    api.apply(&host_network_pod(
        "kube-system",
        "agent-b",
        "uid-agent-b",
        "node-b",
        &NODE_B.to_string(),
    ));
    api.apply(&pod(
        "data",
        "old-1",
        "uid-old-1",
        &REUSED.to_string(),
        "node-b",
        "Running",
    ));
}

/// Every flow series of a scrape, by its labels, with (sent, received).
fn series(scrape: &Scrape) -> Vec<(BTreeMap<String, String>, u64, u64)> {
    scrape
        .identity_series("tcp_flow_sent_bytes_total")
        .into_iter()
        .map(|(labels, sent)| {
            let received = scrape
                .full_sample("tcp_flow_received_bytes_total", &labels)
                .expect("both counters");
            (parse_labels(&labels), sent, received)
        })
        .collect()
}

/// A label's value; an empty one is not written at all.
fn value_of<'a>(labels: &'a BTreeMap<String, String>, name: &str) -> &'a str {
    labels.get(name).map_or("", String::as_str)
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    text.split("\",")
        .map(|pair| {
            let (name, value) = pair.split_once("=\"").expect("name=\"value\"");
            (name.to_owned(), value.trim_end_matches('"').to_owned())
        })
        .collect()
}

/// The one series matching every `want` label; panics with the scrape's
/// series when there is none or several.
fn one(
    all: &[(BTreeMap<String, String>, u64, u64)],
    want: &[(&str, &str)],
) -> (BTreeMap<String, String>, u64, u64) {
    let found: Vec<_> = all
        .iter()
        .filter(|(labels, _, _)| want.iter().all(|(k, v)| value_of(labels, k) == *v))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "series matching {want:?}: {found:#?}\nall: {all:#?}"
    );
    found[0].clone()
}

/// The identity labels of a client end in the web pod, towards a peer.
fn from_web(to: Ipv4Addr, peer: [&str; 4], path: &str) -> Vec<(&'static str, String)> {
    let [kind, namespace, name, workload] = peer;
    vec![
        ("src_ip", WEB.to_string()),
        ("dst_ip", to.to_string()),
        ("role", "client".into()),
        ("src_namespace", "shop".into()),
        ("src_pod", "web-1".into()),
        ("src_workload", "web".into()),
        ("dst_kind", kind.into()),
        ("dst_namespace", namespace.into()),
        ("dst_name", name.into()),
        ("dst_workload", workload.into()),
        ("path", path.into()),
    ]
}

fn assert_series(scrape: &Scrape, want: &[(&str, String)], sent: u64, received: u64) {
    let want: Vec<(&str, &str)> = want.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (labels, s, r) = one(&series(scrape), &want);
    assert_eq!((s, r), (sent, received), "bytes of {labels:?}");
}

/// Waits until a self-metric sample has `value`.
fn wait_metric(exporter: &Exporter, name: &str, labels: &str, value: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let scrape = exporter.scrape();
        if scrape.sample(name, labels) == Some(value) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{{{labels}}} not {value} within 20 s:\n{}",
            scrape.text
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_every_peer_and_path_is_named_with_exact_bytes() {
    support::require_root();
    let api = KubeApi::start();
    populate(&api);
    let addresses = [
        WEB,
        DB,
        CACHE,
        SERVICE,
        NODE_B,
        REUSED,
        LATE,
        NAMED,
        NAMED_AGAIN,
        NAMED_RENAMED,
        NAMED_FAR,
        PRIVATE,
        VM,
        INTERNET,
    ];
    let stand_in = StandIn::new(&addresses);
    let labels_file = support::temp_path("labels.yaml");
    std::fs::write(&labels_file, LABELS).unwrap();
    let root = cgroup2_root();
    let exporter = Exporter::start(&[
        &format!("--kubernetes.kubeconfig={}", api.kubeconfig().display()),
        "--node.name=node-a",
        &format!("--labels.file={}", labels_file.display()),
        &format!("--cgroup.root={}", root.display()),
        &support::only_port(stand_in.port),
    ]);
    wait_metric(
        &exporter,
        "tcp_flow_exporter_kubernetes_synced",
        r#"resource="pods""#,
        1,
    );

    // The web pod's container, as the kubelet's systemd driver names it.
    let container = TestCgroup::new(
        &root,
        &format!(
            "kubepods.slice/kubepods-pod{}.slice/cri-containerd-{}.scope",
            WEB_UID.replace('-', "_"),
            "ab".repeat(32)
        ),
    );
    stand_in.exchanges_in(
        &container.path,
        &[
            (WEB, DB, 3000),
            (WEB, CACHE, 2000),
            (WEB, SERVICE, 1000),
            (WEB, NODE_B, 800),
            (WEB, NAMED, 600),
            (WEB, NAMED_FAR, 500),
            (WEB, INTERNET, 400),
            (WEB, PRIVATE, 300),
        ],
    );
    // Two systemd units on one address: two workloads, two series.
    let alpha = TestCgroup::new(&root, "system.slice/alpha.service");
    let beta = TestCgroup::new(&root, "system.slice/beta.service");
    stand_in.exchanges_in(&alpha.path, &[(VM, DB, 700)]);
    stand_in.exchanges_in(&beta.path, &[(VM, DB, 900)]);

    let scrape = exporter.scrape();
    // Kept for the README's example scrape, where the tree is writable (a
    // kernel-matrix guest sees it read-only).
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/artifacts");
    let _ = std::fs::create_dir_all(&artifacts)
        .and_then(|()| std::fs::write(artifacts.join("identity-scrape.txt"), &scrape.text));
    let cases: [(Ipv4Addr, [&str; 4], &str, u64); 8] = [
        (DB, ["pod", "data", "db-0", "db"], "cross_zone", 3000),
        (
            CACHE,
            ["pod", "data", "cache-0", "cache-0"],
            "same_node",
            2000,
        ),
        // The client sees the ClusterIP, not the backend: no path.
        (
            SERVICE,
            ["service", "pay", "payments", "payments"],
            "unknown",
            1000,
        ),
        // A hostNetwork pod's address is its node's.
        (NODE_B, ["node", "", "node-b", "node-b"], "cross_zone", 800),
        (
            NAMED,
            ["network", "", "vpc-payments", ""],
            "cross_zone",
            600,
        ),
        (
            NAMED_FAR,
            ["network", "", "vpc-far", ""],
            "cross_region",
            500,
        ),
        (INTERNET, ["internet", "", "", ""], "internet", 400),
        // Private, and nobody knows its zone: never same_zone.
        (PRIVATE, ["private", "", "", ""], "unknown", 300),
    ];
    for (to, peer, path, up) in cases {
        assert_series(&scrape, &from_web(to, peer, path), up, up / 2);
    }
    // The server end of the Service connection sees the real client: the
    // web pod on this node.
    let server_end = [
        ("src_ip", SERVICE.to_string()),
        ("role", "server".into()),
        ("dst_ip", WEB.to_string()),
        ("dst_kind", "pod".into()),
        ("dst_name", "web-1".into()),
        ("dst_workload", "web".into()),
        ("path", "same_node".into()),
    ];
    assert_series(&scrape, &server_end, 500, 1000);
    for (unit, up) in [("alpha.service", 700), ("beta.service", 900)] {
        let want = [
            ("src_ip", VM.to_string()),
            ("role", "client".into()),
            ("src_workload", unit.into()),
            ("src_pod", String::new()),
            ("dst_name", "db-0".into()),
        ];
        assert_series(&scrape, &want, up, up / 2);
    }

    // IP reuse: old-1's address goes to new-1 while a connection to it is
    // open. What moved before the exporter saw the change stays old-1's;
    // what moved after is new-1's; no byte is under both.
    let stream = stand_in.connect(WEB, REUSED);
    let mut writer = stream.try_clone().unwrap();
    std::io::Write::write_all(&mut writer, &[b'x'; 1000]).unwrap();
    wait_for_series(
        &exporter,
        &[
            ("dst_name", "old-1"),
            ("dst_ip", "198.18.10.6"),
            ("role", "client"),
        ],
        1000,
    );
    api.delete::<k8s_openapi::api::core::v1::Pod>(Some("data"), "old-1");
    api.apply(&pod(
        "data",
        "new-1",
        "uid-new-1",
        &REUSED.to_string(),
        "node-a",
        "Running",
    ));
    wait_for_peer(&exporter, &stand_in, REUSED, "new-1");
    exchange_open(stream, 1000, 2000);
    let scrape = exporter.scrape();
    let to_reused = |name: &str| {
        vec![
            ("src_ip", WEB.to_string()),
            ("dst_ip", REUSED.to_string()),
            ("role", "client".to_owned()),
            ("dst_name", name.to_owned()),
        ]
    };
    let old = one_owned(&scrape, &to_reused("old-1"));
    let new = one_owned(&scrape, &to_reused("new-1"));
    assert_eq!((old.1, old.2), (1000, 0), "old-1 keeps what moved before");
    assert_eq!((new.1, new.2), (2000, 1500), "new-1 gets what moved after");
    assert_eq!(new.0["path"], "same_node");

    // The API server compacts its history and restarts: the exporter lists
    // again and follows what changed meanwhile.
    api.compact();
    api.go_down();
    api.apply(&pod(
        "data",
        "late-1",
        "uid-late-1",
        &LATE.to_string(),
        "node-b",
        "Running",
    ));
    api.come_back();
    wait_for_peer(&exporter, &stand_in, LATE, "late-1");
    stand_in.exchanges_in(&container.path, &[(WEB, LATE, 100)]);
    let scrape = exporter.scrape();
    assert_series(
        &scrape,
        &from_web(LATE, ["pod", "data", "late-1", "late-1"], "cross_zone"),
        100,
        50,
    );
    // Pods listed again after the compaction (late-1 arrived). A kind
    // whose watch resumed without a change has no event to show it is back,
    // and is shown synced again 120 s after its last error: not waited for.
    assert_eq!(
        scrape.sample("tcp_flow_exporter_kubernetes_synced", r#"resource="pods""#),
        Some(1)
    );

    // A bad labels file on reload keeps the networks in force.
    std::fs::write(
        &labels_file,
        "networks:\n  - cidr: 100.64.20.0/33\n    name: broken\n",
    )
    .unwrap();
    wait_metric(
        &exporter,
        "tcp_flow_exporter_labels_reloads_total",
        r#"result="failure""#,
        1,
    );
    stand_in.exchanges_in(&container.path, &[(WEB, NAMED_AGAIN, 200)]);
    let scrape = exporter.scrape();
    assert_series(
        &scrape,
        &from_web(
            NAMED_AGAIN,
            ["network", "", "vpc-payments", ""],
            "cross_zone",
        ),
        200,
        100,
    );
    // A good one replaces them.
    std::fs::write(
        &labels_file,
        LABELS.replace("vpc-payments", "vpc-payments-v2"),
    )
    .unwrap();
    wait_metric(
        &exporter,
        "tcp_flow_exporter_labels_reloads_total",
        r#"result="success""#,
        1,
    );
    stand_in.exchanges_in(&container.path, &[(WEB, NAMED_RENAMED, 200)]);
    let scrape = exporter.scrape();
    assert_series(
        &scrape,
        &from_web(
            NAMED_RENAMED,
            ["network", "", "vpc-payments-v2", ""],
            "cross_zone",
        ),
        200,
        100,
    );
    drop((container, alpha, beta));
}

fn one_owned(scrape: &Scrape, want: &[(&str, String)]) -> (BTreeMap<String, String>, u64, u64) {
    let want: Vec<(&str, &str)> = want.iter().map(|(k, v)| (*k, v.as_str())).collect();
    one(&series(scrape), &want)
}

/// Waits until the series matching `want` has sent `sent` bytes.
fn wait_for_series(exporter: &Exporter, want: &[(&str, &str)], sent: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all = series(&exporter.scrape());
        let found = all
            .iter()
            .find(|(labels, _, _)| want.iter().all(|(k, v)| value_of(labels, k) == *v));
        if found.is_some_and(|(_, s, _)| *s == sent) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no series {want:?} with {sent} sent: {all:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the exporter names `ip` as the pod `name`: probes from the
/// VM address (series no assertion reads) until one is labelled so.
fn wait_for_peer(exporter: &Exporter, stand_in: &StandIn, ip: Ipv4Addr, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let want = [("src_ip", VM.to_string()), ("dst_ip", ip.to_string())];
    loop {
        exchange_open(stand_in.connect(VM, ip), 0, 10);
        let all = series(&exporter.scrape());
        let named = all.iter().any(|(labels, _, _)| {
            want.iter().all(|(k, v)| value_of(labels, k) == v)
                && value_of(labels, "dst_name") == name
        });
        if named {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{ip} not named {name} within 20 s: {all:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_a_bad_labels_file_stops_the_start_naming_line_and_field() {
    support::require_root();
    let file = support::temp_path("labels.yaml");
    std::fs::write(
        &file,
        "networks:\n  - cidr: 10.0.0.0/8\n    name: a\n  - cidr: 10.1.0.0/33\n    name: b\n",
    )
    .unwrap();
    support::assert_start_fails_with(
        &[&format!("--labels.file={}", file.display())],
        &format!(
            "tcp-flow-exporter: error: --labels.file: {}:4: networks[1].cidr: \"10.1.0.0/33\" is not a CIDR",
            file.display()
        ),
    );
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_without_rights_to_pods_it_counts_on_says_why_once_and_recovers() {
    support::require_root();
    let api = KubeApi::start();
    populate(&api);
    api.forbid("/api/v1/pods", true);
    let stand_in = StandIn::new(&[WEB, DB]);
    let exporter = Exporter::start(&[
        &format!("--kubernetes.kubeconfig={}", api.kubeconfig().display()),
        "--node.name=node-a",
        &support::only_port(stand_in.port),
    ]);
    let failing = r#"resource="pods",state="failing""#;
    wait_metric(
        &exporter,
        "tcp_flow_exporter_kubernetes_watch_state",
        failing,
        1,
    );
    // Counting goes on, and the peer is named from what is still known:
    // Nodes and Services, not pods.
    exchange_open(stand_in.connect(WEB, DB), 0, 1000);
    let scrape = exporter.scrape();
    let want = [
        ("src_ip", WEB.to_string()),
        ("dst_ip", DB.to_string()),
        ("role", "client".into()),
        ("dst_kind", "internet".into()),
        ("path", "internet".into()),
    ];
    assert_series(&scrape, &want, 1000, 500);
    assert_eq!(
        scrape.sample("tcp_flow_exporter_kubernetes_synced", r#"resource="nodes""#),
        Some(1)
    );
    // Several retries later, the reason is in the log once.
    std::thread::sleep(Duration::from_secs(3));
    let log = exporter.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("pods"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning about pods:\n{log}");
    assert!(
        warnings[0].contains("403") || warnings[0].contains("orbidden"),
        "{}",
        warnings[0]
    );

    api.forbid("/api/v1/pods", false);
    wait_metric(
        &exporter,
        "tcp_flow_exporter_kubernetes_synced",
        r#"resource="pods""#,
        1,
    );
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_a_service_client_gets_its_backends_path_from_conntrack() {
    support::require_root();
    let ledger = Ipv4Addr::new(198, 18, 10, 8);
    let api = KubeApi::start();
    populate(&api);
    api.apply(&service("pay", "ledger", &ledger.to_string()));
    let stand_in = StandIn::new(&[WEB, DB, ledger]);
    // kube-proxy's part: the ClusterIP goes to the db pod, on node-b.
    stand_in.dnat(ledger, DB);
    let root = cgroup2_root();
    let exporter = Exporter::start(&[
        &format!("--kubernetes.kubeconfig={}", api.kubeconfig().display()),
        "--node.name=node-a",
        "--flows.ports=all",
        &format!("--conntrack.netns=/run/netns/{}", stand_in.name),
        &format!("--cgroup.root={}", root.display()),
        &support::only_port(stand_in.port),
    ]);
    wait_metric(
        &exporter,
        "tcp_flow_exporter_kubernetes_synced",
        r#"resource="services""#,
        1,
    );
    let container = TestCgroup::new(
        &root,
        &format!(
            "kubepods.slice/kubepods-pod{}.slice",
            WEB_UID.replace('-', "_")
        ),
    );
    stand_in.exchanges_in(&container.path, &[(WEB, ledger, 1200)]);
    let scrape = exporter.scrape();
    // The client still called the Service; the path is its backend's.
    let client = from_web(ledger, ["service", "pay", "ledger", "ledger"], "cross_zone");
    assert_series(&scrape, &client, 1200, 600);
    // The backend's end sees the web pod, on this node.
    let server = [
        ("src_ip", DB.to_string()),
        ("role", "server".into()),
        ("dst_name", "web-1".into()),
        ("path", "same_node".into()),
    ];
    assert_series(&scrape, &server, 600, 1200);
    drop(container);
}
