//! Root test: the landing page renders in headless Chromium (Debian's
//! `chromium` package) and names both ends of a flow the test created: a
//! systemd unit (a cgroup made here) calls a peer in a named network of
//! another zone, with byte counts in binary units and the exact number on
//! hover. Leaves a screenshot in target/artifacts/landing-page.png.

mod support;

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::stand_in::{StandIn, TestCgroup};
use support::{only_port, temp_path, tools, Exporter};
use tcp_flow_exporter::identity::cgroups::find_cgroup2_mount;

/// The client's address and its peer's, on the stand-in namespace's
/// loopback (RFC 2544 benchmarking addresses, which never leave it).
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 30, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 30, 2);
const UNIT: &str = "tfe-browser.service";
const NETWORK: &str = "tfe-browser-peers";
/// 3 MiB up; the stand-in server answers half as much (1.5 MiB). Exact
/// multiples of a MiB, so the human units cannot round either way.
const UP: usize = 3 * 1024 * 1024;

/// The peer's /32 as a named network in zone-b, while this node is in
/// zone-a of the same region: the client's path is cross_zone.
fn labels_file() -> std::path::PathBuf {
    let path = temp_path("networks.yaml");
    let yaml = format!(
        "networks:\n  - cidr: {PEER}/32\n    name: {NETWORK}\n    zone: zone-b\n    region: region-1\n"
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Runs headless Chromium with `args` on `url`, killing it after 90 s.
fn headless(binary: &Path, profile: &Path, args: &[&str], url: &str) -> Output {
    let mut child = Command::new(binary)
        .args([
            "--headless",
            // Root cannot use Chromium's sandbox; the page is our own.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", profile.display()),
        ])
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

/// Waits until /api/flows holds the unit's flow with every byte counted, so
/// the page is rendered from a snapshot that has it.
fn wait_for_flow(exporter: &Exporter) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = exporter.get("/api/flows");
        let view: Value = serde_json::from_slice(&body).expect("/api/flows is JSON");
        let counted = view["flows"].as_array().into_iter().flatten().any(|f| {
            f["src_workload"] == UNIT
                && f["sent_bytes"] == UP as u64
                && f["received_bytes"] == (UP / 2) as u64
        });
        if counted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no flow of {UNIT} with {UP} bytes sent in /api/flows within 20 s: {view}\n{}",
            exporter.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_landing_page_names_a_known_peer_in_headless_chromium() {
    support::require_root();
    let Some(binary) = tools::chromium() else {
        return;
    };
    // Natively (the only place this test runs) systemd has mounted cgroup2.
    let root = find_cgroup2_mount().expect("no cgroup2 mount in /proc/self/mountinfo");
    let stand_in = StandIn::new(&[CLIENT, PEER]);
    let labels = labels_file();
    let exporter = Exporter::start(&[
        &only_port(stand_in.port),
        &format!("--labels.file={}", labels.display()),
        &format!("--cgroup.root={}", root.display()),
        "--node.zone=zone-a",
        "--node.region=region-1",
    ]);
    let unit = TestCgroup::new(&root, &format!("system.slice/{UNIT}"));
    stand_in.exchanges_in(&unit.path, &[(CLIENT, PEER, UP)]);
    wait_for_flow(&exporter);
    let url = format!("http://{}/", exporter.addr);
    let profile = temp_path("chromium-profile");

    let dom = headless(&binary, &profile, &["--dump-dom"], &url);
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.status.success() && html.contains("<h1>tcp-flow-exporter</h1>"),
        "chromium could not render the page: {}\n{html}",
        String::from_utf8_lossy(&dom.stderr)
    );
    // src, src address (the client's port folded to *), dst kind, dst,
    // dst address, path, role, then sent and received: human units shown,
    // the exact count in the title a browser shows on hover.
    let port = stand_in.port;
    let row = format!(
        "<tr><td>{UNIT}</td><td>{CLIENT}:*</td><td>network</td><td>{NETWORK}</td>\
         <td>{PEER}:{port}</td><td>cross_zone</td><td>client</td>\
         <td class=\"n\" title=\"3145728 bytes\">3.00 MiB</td>\
         <td class=\"n\" title=\"1572864 bytes\">1.50 MiB</td>"
    );
    assert!(html.contains(&row), "row {row:?} missing from\n{html}");

    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let png = artifacts.join("landing-page.png");
    let _ = std::fs::remove_file(&png);
    let shot = headless(
        &binary,
        &profile,
        &[
            "--window-size=1280,720",
            &format!("--screenshot={}", png.display()),
        ],
        &url,
    );
    let image = std::fs::read(&png).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&shot.stderr)
        )
    });
    assert!(image.starts_with(b"\x89PNG\r\n\x1a\n") && image.len() > 5_000);
    eprintln!("landing page screenshot: {}", png.display());
    let _ = std::fs::remove_dir_all(&profile);
    let _ = std::fs::remove_file(&labels);
}
