//! The soak as a benchmark-style command: connection churn with flows
//! expiring, scraped by a real Prometheus every second, for as long as
//! asked (tests/soak/run.rs has what it checks and the bounds). Needs root
//! and PROMETHEUS (scripts/fetch-prometheus.sh unpacks it).
//!
//!   cargo bench --bench soak -- 30m

#[path = "../tests/soak/run.rs"]
mod run;
#[path = "../tests/prometheus/server.rs"]
#[allow(dead_code)]
mod server;
#[path = "../tests/support/mod.rs"]
mod support;

fn main() {
    support::require_root();
    let duration = std::env::args()
        .skip(1)
        .find(|a| a != "--bench")
        .map(|a| humantime::parse_duration(&a).expect("a duration such as 30m"))
        .unwrap_or(std::time::Duration::from_secs(30 * 60));
    let prometheus = support::tools::prometheus().expect("set PROMETHEUS");
    let report = run::run(&prometheus, duration);
    println!("{report}");
    let failed = report.failures();
    if !failed.is_empty() {
        eprintln!("FAILED:\n{}", failed.join("\n"));
        std::process::exit(1);
    }
}
