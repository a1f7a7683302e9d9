//! The external programs the end-to-end tests drive: headless Chromium,
//! Prometheus and promtool.

use std::path::PathBuf;

use super::in_ci;

/// $CHROMIUM, or chromium on PATH.
pub fn chromium() -> Option<PathBuf> {
    find_program(
        "CHROMIUM",
        &["chromium", "chromium-browser"],
        "scripts/install-deps.sh --test installs it",
    )
}

/// The prometheus binary: $PROMETHEUS (scripts/test.sh sets it), or PATH.
pub fn prometheus() -> Option<PathBuf> {
    find_program(
        "PROMETHEUS",
        &["prometheus"],
        "set PROMETHEUS (scripts/test.sh does)",
    )
}

/// promtool: $PROMTOOL (scripts/test.sh unpacks Debian's), or PATH.
pub fn promtool() -> Option<PathBuf> {
    find_program(
        "PROMTOOL",
        &["promtool"],
        "set PROMTOOL (scripts/test.sh does)",
    )
}

/// The program named by the environment variable `var`, or the first of
/// `names` on PATH. CI must have it (`how` says where it comes from);
/// elsewhere its absence is a loud skip.
fn find_program(var: &str, names: &[&str], how: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        return Some(path.into());
    }
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|p| p.is_file());
    if found.is_none() {
        if in_ci() {
            panic!("no {} on PATH: {how}", names[0]);
        }
        eprintln!(
            "\n*** SKIPPED: no {} on PATH ({how}); run scripts/test.sh ***\n",
            names[0]
        );
    }
    found
}

/// bpftool: $BPFTOOL, or PATH (scripts/install-deps.sh --test installs it).
pub fn bpftool() -> Option<PathBuf> {
    find_program(
        "BPFTOOL",
        &["bpftool"],
        "scripts/install-deps.sh --test installs it",
    )
}
