//! Root soak test, 3 minutes: connection churn with flows expiring, scraped
//! by a real Prometheus every second; no counter resets, every byte stored
//! once, flat memory, no leaked fds or kernel table entries (soak/run.rs
//! has the checks and their bounds). `cargo bench --bench soak -- 30m` runs
//! the same for longer; BENCHMARKS.md has its numbers.

mod support;

#[path = "soak/run.rs"]
mod run;
#[path = "prometheus/server.rs"]
#[allow(dead_code)]
mod server;

use std::time::Duration;

use support::tools;

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_three_minutes_of_churn_scraped_every_second_leaves_no_trace() {
    support::require_root();
    let Some(prometheus) = tools::prometheus() else {
        return;
    };
    let report = run::run(&prometheus, Duration::from_secs(180));
    eprintln!("{report}");
    let failed = report.failures();
    assert!(failed.is_empty(), "{}\n{report}", failed.join("\n"));
}
