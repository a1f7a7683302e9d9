//! The worst wake-up delay of a real-time thread on each CPU, measured by
//! cyclictest (Debian package rt-tests; `scripts/install-deps.sh --bench`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long each cyclictest run lasts.
pub const SECONDS: u32 = 20;

/// cyclictest on PATH, or why the bench cannot run.
pub fn find() -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("cyclictest"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            eprintln!("no cyclictest on PATH: scripts/install-deps.sh --bench installs rt-tests");
            std::process::exit(1);
        })
}

/// The worst wake-up delay per CPU, over `SECONDS`, of one SCHED_FIFO
/// thread per CPU (priority 95, pinned, woken every 200 µs), while `load`
/// runs again and again; returns them and how many times `load` ran.
pub fn worst_per_cpu(cyclictest: &Path, mut load: impl FnMut()) -> (Vec<Duration>, usize) {
    let json = std::env::temp_dir().join(format!("tfe-cyclictest-{}.json", std::process::id()));
    let mut child = Command::new(cyclictest)
        .args(["-m", "-q", "-p", "95", "-t", "-a", "-d", "0", "-i", "200"])
        .arg(format!("-D{SECONDS}s"))
        .arg(format!("--json={}", json.display()))
        .stdout(Stdio::null())
        .spawn()
        .expect("run cyclictest");
    let mut runs = 0;
    while child.try_wait().unwrap().is_none() {
        load();
        runs += 1;
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "cyclictest: {status}");
    let text = std::fs::read_to_string(&json).expect("cyclictest's JSON");
    let _ = std::fs::remove_file(&json);
    (worst_of(&text), runs)
}

/// Each thread's "max" (µs) from cyclictest's JSON, in CPU order.
fn worst_of(json: &str) -> Vec<Duration> {
    let report: serde_json::Value = serde_json::from_str(json).expect("cyclictest's JSON");
    let threads = report["thread"].as_object().expect("threads");
    let mut worst: Vec<(u64, Duration)> = threads
        .values()
        .map(|t| {
            let cpu = t["cpu"].as_u64().expect("cpu");
            let max = t["max"].as_u64().expect("max");
            (cpu, Duration::from_micros(max))
        })
        .collect();
    worst.sort();
    worst.into_iter().map(|(_, max)| max).collect()
}
