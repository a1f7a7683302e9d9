//! Every way start-up can fail ends in one clear line and a non-zero exit.

mod support;

use std::net::TcpListener;
use std::process::{Command, Output};

use support::{in_ci, temp_path, Exporter, BIN};

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(std::process::Stdio::null())
        .output()
        .expect("run")
}

/// The one line the exporter printed about the failure.
fn error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("tcp-flow-exporter: "))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "want exactly one error line, got:\n{stderr}"
    );
    lines[0].to_owned()
}

/// The exporter failed to start (exit 1) with one error line saying `want`.
fn assert_fails_saying(out: &Output, want: &str) {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = error_line(out);
    assert!(line.contains(want), "{line}");
}

#[test]
fn bad_flags_exit_2_with_one_line() {
    for args in [
        &["--flows.max=0"][..],
        &["--probe=magic"],
        &["--web.listen-address=nonsense"],
        &["--web.telemetry-path=no-slash"],
        &["--no-such-flag"],
        &["--flows.idle-timeout=0s"],
        &["--filter.cidr.include=10.0.0.0/99"],
        &["--filter.port.exclude=http"],
        &["--flows.labels=src_ip,dst_zone"],
        &["--flows.labels="],
        &["--flows.labels=path,path"],
    ] {
        let out = run(Command::new(BIN).args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let line = error_line(&out);
        assert!(
            line.starts_with("tcp-flow-exporter: usage error: "),
            "{line}"
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).lines().count(),
            1,
            "{args:?}"
        );
    }
}

#[test]
fn help_and_version_exit_0() {
    let help = run(Command::new(BIN).arg("--help"));
    assert_eq!(help.status.code(), Some(0));
    // What the help says is checked in src/cli.rs; here, that it prints and exits 0.
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage: tcp-flow-exporter"));
    let version = run(Command::new(BIN).arg("--version"));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("tcp-flow-exporter {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_without_capabilities_names_the_missing_ones() {
    support::require_root();
    // Drop to nobody with no capabilities; the binary must be reachable for it.
    let copy = temp_path("bin");
    std::fs::copy(BIN, &copy).unwrap();
    let out = run(Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&copy));
    std::fs::remove_file(&copy).unwrap();
    assert_fails_saying(&out, "missing capability CAP_BPF and CAP_PERFMON");
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_without_kernel_btf_says_so() {
    support::require_root();
    // Hide /sys/kernel/btf in a private mount namespace.
    let out = run(Command::new("unshare")
        .args(["--mount", "--propagation=private", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs none /sys/kernel/btf && exec {BIN} --web.listen-address=127.0.0.1:0"
        )));
    assert_fails_saying(&out, "kernel BTF not found at /sys/kernel/btf/vmlinux");
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_port_in_use_says_so() {
    support::require_root();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = run(Command::new(BIN).arg(format!("--web.listen-address={addr}")));
    assert_fails_saying(
        &out,
        &format!("cannot listen on {addr}: address already in use"),
    );
}

/// An expectation about this kernel that scripts/test.sh and the kernel
/// matrix take from tests/kernels.conf. Unset, the test cannot know what to
/// expect: a failure in CI, a loud skip elsewhere.
fn expectation(var: &str, test: &str) -> Option<String> {
    if let Ok(value) = std::env::var(var) {
        return Some(value);
    }
    if in_ci() {
        panic!("{test}: {var} is unset; scripts/test.sh sets it from tests/kernels.conf");
    }
    eprintln!("\n*** SKIPPED {test}: {var} is unset (scripts/test.sh sets it from tests/kernels.conf) ***\n");
    None
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_unsupported_backends_fail_cleanly() {
    support::require_root();
    let test = "root_unsupported_backends_fail_cleanly";
    let Some(unsupported) = expectation("TFE_UNSUPPORTED", test) else {
        return;
    };
    for backend in unsupported.split(',').filter(|b| !b.is_empty()) {
        let probe = format!("--probe={backend}");
        let out = run(Command::new(BIN).args([probe.as_str(), "--web.listen-address=127.0.0.1:0"]));
        assert_eq!(out.status.code(), Some(1), "{backend}: {out:?}");
        let line = error_line(&out);
        let want = format!("tcp-flow-exporter: error: the {backend} backend ");
        assert!(line.starts_with(&want), "{line}");
    }
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_auto_picks_the_expected_backend() {
    support::require_root();
    let test = "root_auto_picks_the_expected_backend";
    let Some(expected) = expectation("TFE_EXPECT_AUTO", test) else {
        return;
    };
    let exporter = Exporter::start_raw(&["--probe=auto"]);
    let scrape = exporter.scrape();
    let info = format!(
        r#"tcp_flow_exporter_build_info{{version="{}",backend="{expected}"}} 1"#,
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        scrape.text.lines().any(|l| l == info),
        "want {info}:\n{}",
        scrape.text
    );
}
