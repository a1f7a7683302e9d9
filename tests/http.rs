//! Root tests of what the HTTP side serves, and of a clean shutdown.

mod support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use support::traffic::Pair;
use support::{http_get_full, tools, Exporter, Scrape};

/// A flow with known byte counts, and the exporter that saw it.
fn exporter_with_flow(args: &[&str]) -> (Exporter, Pair) {
    let exporter = Exporter::start(args);
    let mut pair = Pair::on("127.0.0.1");
    pair.exchange(3_000, 4_000);
    (exporter, pair)
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_text_scrape_passes_promtool_check_metrics() {
    support::require_root();
    let Some(promtool) = tools::promtool() else {
        return;
    };
    let (exporter, _pair) = exporter_with_flow(&[]);
    let (status, headers, body) = http_get_full(exporter.addr, "/metrics", &[]).unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check.stdin.take().unwrap().write_all(&body).unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {out:?}\n{}",
        String::from_utf8_lossy(&body)
    );
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_openmetrics_is_negotiated_and_gzip_honoured() {
    support::require_root();
    let (exporter, pair) = exporter_with_flow(&[]);
    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let (status, headers, body) = http_get_full(
        exporter.addr,
        "/metrics",
        &[("Accept", accept), ("Accept-Encoding", "gzip")],
    )
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(headers["content-encoding"], "gzip");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .unwrap();
    assert!(text.ends_with("# EOF\n"));
    assert!(text.contains("# UNIT tcp_flow_sent_bytes bytes\n"));
    assert_eq!(
        Scrape::parse(&text).flow(&pair.client_flow().server_port_only()),
        Some((3_000, 4_000))
    );
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_landing_page_json_and_health() {
    support::require_root();
    let (exporter, pair) = exporter_with_flow(&[]);
    let remote = pair.client_flow().remote;

    assert_eq!(exporter.get("/healthz"), (200, b"ok\n".to_vec()));
    assert_eq!(exporter.get("/nope").0, 404);

    let (status, html) = exporter.get("/");
    let html = String::from_utf8(html).unwrap();
    assert_eq!(status, 200);
    // The client's own port is aggregated under the default --flows.ports=server.
    // The local name is the test process's cgroup's, which varies by
    // machine: the row is checked from the local address on.
    let row = format!(
        "<td>127.0.0.1:*</td><td>loopback</td><td></td><td>127.0.0.1:{}</td><td>loopback</td>\
         <td>client</td><td class=n title=\"3000 bytes\">2.93 KiB</td>\
         <td class=n title=\"4000 bytes\">3.91 KiB</td>",
        remote.port()
    );
    assert!(html.contains(&row), "{html}");
    assert!(html.contains(r#"href="/metrics""#));

    let (status, json) = exporter.get("/api/flows");
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let flow = json["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["src_port"].is_null() && f["dst_port"] == remote.port())
        .expect("our flow in /api/flows");
    assert_eq!(flow["role"], "client");
    assert_eq!(flow["src_ip"], "127.0.0.1");
    assert_eq!(
        (&flow["dst_kind"], &flow["path"]),
        (&"loopback".into(), &"loopback".into())
    );
    assert_eq!(
        (flow["sent_bytes"].as_u64(), flow["received_bytes"].as_u64()),
        (Some(3_000), Some(4_000))
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let seen = flow["last_activity_unix_ms"].as_u64().unwrap();
    assert!(
        seen <= now_ms + 1000 && now_ms - seen < 60_000,
        "last activity {seen} vs now {now_ms}"
    );
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_custom_telemetry_path() {
    support::require_root();
    let (exporter, pair) = exporter_with_flow(&["--web.telemetry-path=/internal/flows"]);
    assert_eq!(exporter.get("/metrics").0, 404);
    let (status, body) = exporter.get("/internal/flows");
    assert_eq!(status, 200);
    assert_eq!(
        Scrape::parse(&String::from_utf8(body).unwrap())
            .flow(&pair.client_flow().server_port_only()),
        Some((3_000, 4_000))
    );
}

/// Program ids from the exporter's "BPF programs loaded" log line.
fn program_ids(log: &str) -> Vec<u32> {
    log.split("(id ")
        .skip(1)
        .map(|rest| rest.split(')').next().unwrap().parse().unwrap())
        .collect()
}

fn program_exists(id: u32) -> bool {
    // SAFETY: plain syscall wrapper; a returned fd is closed right away.
    let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
    if fd >= 0 {
        // SAFETY: we own the fd just returned.
        unsafe { libc::close(fd) };
        return true;
    }
    assert_eq!(-fd, libc::ENOENT, "bpf_prog_get_fd_by_id({id})");
    false
}

fn signal_detaches_every_program(signal: i32, name: &str) {
    let exporter = Exporter::start(&[]);
    let ids = program_ids(&exporter.log());
    assert!(ids.len() >= 2, "no program ids in log:\n{}", exporter.log());
    assert!(ids.iter().all(|&id| program_exists(id)));
    let (status, log) = exporter.stop_with(signal);
    assert!(status.success(), "exit {status}:\n{log}");
    assert!(log.contains(&format!("{name} received")), "{log}");
    // The kernel may free a detached program only after an RCU grace period,
    // so its id can outlive our process by a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while ids.iter().any(|&id| program_exists(id)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for id in ids {
        assert!(
            !program_exists(id),
            "program {id} still loaded 10 s after shutdown"
        );
    }
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_sigterm_detaches_every_program() {
    support::require_root();
    signal_detaches_every_program(libc::SIGTERM, "SIGTERM");
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_sigint_detaches_every_program() {
    support::require_root();
    signal_detaches_every_program(libc::SIGINT, "SIGINT");
}
