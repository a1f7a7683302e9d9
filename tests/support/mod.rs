//! The one place for what the integration tests (and the benchmarks) share:
//! the root gate, a running exporter and its flags, scrapes and the flows in
//! them, traffic generators, a network namespace, and the external tools the
//! end-to-end tests drive.
#![allow(dead_code)]

pub mod churn;
pub mod exporter;
pub mod kube_api;
pub mod load;
pub mod netns;
pub mod paths;
pub mod pki;
pub mod plant;
pub mod scrape;
pub mod stand_in;
pub mod tools;
pub mod traffic;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

// What most tests (and the benchmarks) use, at the top; each crate uses
// only some of it.
#[allow(unused_imports)]
pub use exporter::{only_port, Exporter};
#[allow(unused_imports)]
pub use scrape::{
    assert_counted_or_reported, assert_exact_flow, assert_flow, dechunk, http_get, http_get_full,
    server_mode_flows, timed_scrape, FlowId, Moved, Scrape, OVERFLOW_LABELS,
};

pub const BIN: &str = env!("CARGO_BIN_EXE_tcp-flow-exporter");

/// Fails the test unless it runs as root. Every test that calls it loads BPF
/// (or drops root's privileges), and is marked
/// `#[ignore = "needs root to load BPF: scripts/test.sh runs it"]`, so that a
/// plain `cargo test` lists it as ignored, never as passed; scripts/test.sh
/// and the kernel matrix run it as root with `--include-ignored`.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        panic!(
            "this test needs root to load BPF, and runs as euid {euid}: \
             scripts/test.sh runs the tests as root"
        );
    }
}

/// True under CI (CI set, and neither empty nor "false"), where whatever a
/// test needs must be there: a missing piece fails instead of skipping.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// The backend the tests run the exporter with: `TFE_PROBE` (the kernel
/// matrix sets it per cell), or `auto`.
pub fn probe_under_test() -> String {
    std::env::var("TFE_PROBE").unwrap_or_else(|_| "auto".into())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn temp_path(what: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "tfe-test-{}-{}-{what}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Starts the exporter with `args` on a free loopback port and asserts that
/// it exits 1 with the line `want` on stderr.
pub fn assert_start_fails_with(args: &[&str], want: &str) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .arg(format!("--web.listen-address=127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.lines().any(|l| l == want),
        "want {want:?} in:\n{stderr}"
    );
}
