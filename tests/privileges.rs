//! Root tests of least privilege after attach, of programs detached from
//! outside, of SIGKILL and restarts, and of start-up without bpffs or with
//! a read-only /sys.

mod support;

#[path = "privileges/reattach.rs"]
mod reattach;

use std::process::Command;
use std::time::{Duration, Instant};

use support::traffic::Pair;
use support::{free_port, http_get, tools, Exporter, BIN};
use tcp_flow_exporter::kernel::least_privilege::{bit, CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON};

/// A `Cap*:` or `NoNewPrivs:` field of a /proc status file.
fn status_field(status: &str, field: &str) -> u64 {
    let value = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in\n{status}"))
        .trim();
    u64::from_str_radix(value, 16).unwrap()
}

/// (major, minor) of the running kernel.
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release.split(['.', '-']).map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap(), parts.next().unwrap())
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_capabilities_are_dropped_after_attach() {
    support::require_root();
    let exporter = Exporter::start(&[]);
    let log = exporter.log();
    // Conntrack lookups keep CAP_NET_ADMIN permitted where ctnetlink exists.
    let conntrack = !log.contains("Service backends not resolved from conntrack");
    let kept = bit(CAP_BPF) | bit(CAP_PERFMON) | if conntrack { bit(CAP_NET_ADMIN) } else { 0 };
    // Before Linux 6.5, kernel.unprivileged_bpf_disabled may gate every
    // bpf() call on CAP_BPF; the exporter then keeps it effective. Whether
    // it does is the kernel's to say, and the exporter tries a call after
    // the drop to find out: on Debian's 6.1.0-57 that call succeeds without
    // it and counting stays exact (seen 2026-12-02).
    let unprivileged_off = std::fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled")
        .unwrap()
        .trim()
        != "0";
    let effective_allowed = if kernel_version() < (6, 5) && unprivileged_off {
        vec![0, bit(CAP_BPF)]
    } else {
        vec![0]
    };
    let mut pair = Pair::on("127.0.0.1");
    pair.exchange(3_000, 4_000);
    // Every thread, the scrape's and the drain's included.
    assert_eq!(
        exporter
            .scrape()
            .flow(&pair.client_flow().server_port_only()),
        Some((3_000, 4_000))
    );
    let tasks = std::fs::read_dir(format!("/proc/{}/task", exporter.pid())).unwrap();
    for task in tasks {
        // A blocking-pool thread may end between the listing and the read:
        // a thread that is gone holds nothing.
        let Ok(status) = std::fs::read_to_string(task.unwrap().path().join("status")) else {
            continue;
        };
        let effective = status_field(&status, "CapEff:");
        assert!(effective_allowed.contains(&effective), "{status}");
        assert_eq!(status_field(&status, "CapPrm:"), kept, "{status}");
        assert_eq!(status_field(&status, "CapBnd:"), kept, "{status}");
        assert_eq!(status_field(&status, "CapInh:"), 0, "{status}");
        assert_eq!(status_field(&status, "CapAmb:"), 0, "{status}");
        assert_eq!(status_field(&status, "NoNewPrivs:"), 1, "{status}");
    }
    // The socket walk and the drains still work: more bytes, counted exactly.
    pair.exchange(500, 700);
    assert_eq!(
        exporter
            .scrape()
            .flow(&pair.client_flow().server_port_only()),
        Some((3_500, 4_700))
    );
}

/// Program ids from the exporter's "BPF programs loaded" log line.
fn program_ids(log: &str) -> Vec<u32> {
    log.split("(id ")
        .skip(1)
        .map(|rest| rest.split(')').next().unwrap().parse().unwrap())
        .collect()
}

/// `bpftool <args> -j`, parsed.
fn bpftool_json(bpftool: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(bpftool).args(args).arg("-j").output().unwrap();
    assert!(out.status.success(), "bpftool {args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Ids in `bpftool prog list`.
fn loaded_programs(bpftool: &std::path::Path) -> Vec<u32> {
    let list = bpftool_json(bpftool, &["prog", "list"]);
    let ids = list.as_array().unwrap().iter();
    ids.map(|p| p["id"].as_u64().unwrap() as u32).collect()
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_outside_detach_is_refused_and_shown_from_the_kernel() {
    support::require_root();
    let Some(bpftool) = tools::bpftool() else {
        return;
    };
    let exporter = Exporter::start(&[]);
    let ids = program_ids(&exporter.log());
    let links = bpftool_json(&bpftool, &["link", "list"]);
    let ours: Vec<u64> = links
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| ids.contains(&(l["prog_id"].as_u64().unwrap() as u32)))
        .map(|l| l["id"].as_u64().unwrap())
        .collect();
    assert!(!ours.is_empty(), "no links of {ids:?} in {links}");
    for link in &ours {
        // Raw tracepoint, tracing and perf event links have no
        // BPF_LINK_DETACH: the kernel refuses.
        let out = Command::new(&bpftool)
            .args(["link", "detach", "id", &link.to_string()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "detached link {link}");
        assert!(stderr.contains("Operation not supported"), "{stderr}");
    }
    let mut pair = Pair::on("127.0.0.1");
    pair.exchange(3_000, 4_000);
    let scrape = exporter.scrape();
    let attached: Vec<&str> = scrape
        .text
        .lines()
        .filter(|l| l.starts_with("tcp_flow_exporter_program_attached{"))
        .collect();
    assert_eq!(attached.len(), ours.len(), "{}", scrape.text);
    assert!(attached.iter().all(|l| l.ends_with("} 1")), "{attached:?}");
    assert_eq!(
        scrape.flow(&pair.client_flow().server_port_only()),
        Some((3_000, 4_000))
    );
    assert!(!exporter.log().contains("detached from outside"));
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_sigkill_leaves_no_program_loaded() {
    support::require_root();
    let Some(bpftool) = tools::bpftool() else {
        return;
    };
    let exporter = Exporter::start(&[]);
    let ids = program_ids(&exporter.log());
    assert!(ids.len() >= 2, "{}", exporter.log());
    let loaded = loaded_programs(&bpftool);
    assert!(
        ids.iter().all(|id| loaded.contains(id)),
        "{ids:?} in {loaded:?}"
    );
    let (status, _) = exporter.stop_with(libc::SIGKILL);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    // The kernel frees a program after an RCU grace period.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<u32> = loaded_programs(&bpftool)
            .into_iter()
            .filter(|id| ids.contains(id))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still loaded 10 s after SIGKILL: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_restart_counts_from_zero() {
    support::require_root();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let first = Exporter::start(&[]);
    let mut pair = Pair::through(&listener, server);
    let flow = pair.client_flow().server_port_only();
    pair.exchange(3_000, 4_000);
    assert_eq!(first.scrape().flow(&flow), Some((3_000, 4_000)));
    let _ = first.stop_with(libc::SIGKILL);
    // A new exporter, and a new connection to the same server: the same
    // series starts again from 0, which rate() treats as a counter reset.
    let second = Exporter::start(&[]);
    assert_eq!(second.scrape().flow(&flow), None);
    let mut again = Pair::through(&listener, server);
    again.exchange(100, 200);
    assert_eq!(again.client_flow().server_port_only(), flow);
    assert_eq!(second.scrape().flow(&flow), Some((100, 200)));
}

/// Runs the exporter under `unshare --mount` after `setup` (shell), and
/// returns the flow it counted for 3000/4000 bytes, or its output if it
/// did not serve.
fn counts_in_private_mounts(setup: &str) -> Result<Option<(u64, u64)>, String> {
    let port = free_port();
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation=private", "sh", "-c"])
        .arg(format!(
            "{setup} && exec {BIN} --probe={} --web.listen-address=127.0.0.1:{port}",
            support::probe_under_test()
        ))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(http_get(addr, "/healthz", &[]), Ok((200, _))) {
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut pair = Pair::on("127.0.0.1");
    pair.exchange(3_000, 4_000);
    let (status, body) = http_get(addr, "/metrics", &[]).unwrap();
    assert_eq!(status, 200);
    let scrape = support::Scrape::parse(&String::from_utf8(body).unwrap());
    // SAFETY: kill() on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    Ok(scrape.flow(&pair.client_flow().server_port_only()))
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_needs_no_bpffs() {
    support::require_root();
    // An empty tmpfs where bpffs would be: the exporter pins nothing.
    let counted = counts_in_private_mounts("mount -t tmpfs none /sys/fs/bpf");
    assert_eq!(counted, Ok(Some((3_000, 4_000))));
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_read_only_sys_still_counts() {
    support::require_root();
    // Read-only for this mount namespace only: the host's /sys is untouched.
    let counted = counts_in_private_mounts("mount -o remount,bind,ro /sys");
    assert_eq!(counted, Ok(Some((3_000, 4_000))));
}
