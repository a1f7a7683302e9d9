//! Root test: the per-program self-metrics count real program runs.

mod support;

use std::io::Write;

use support::traffic::Pair;
use support::{Exporter, Scrape};

/// The program that sees sends, whatever the backend (for the socket
/// backend, its discovery program), from the programs listed with a run
/// count.
fn send_program(scrape: &Scrape) -> String {
    scrape
        .text
        .lines()
        .filter_map(|l| l.strip_prefix(r#"tcp_flow_exporter_program_runs_total{program=""#))
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .find(|name| name.contains("send") && !name.starts_with("kprobe_"))
        .unwrap_or_else(|| panic!("no send program listed:\n{}", scrape.text))
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_bpf_stats_count_program_runs() {
    support::require_root();
    let exporter = Exporter::start(&["--bpf.stats"]);
    let before = exporter.scrape();
    assert_eq!(
        before.sample("tcp_flow_exporter_bpf_stats_enabled", ""),
        Some(1)
    );
    let program = send_program(&before);
    let labels = format!(r#"program="{program}""#);
    let runs = |s: &Scrape| {
        s.sample("tcp_flow_exporter_program_runs_total", &labels)
            .unwrap()
    };

    let mut pair = Pair::on("127.0.0.1");
    for _ in 0..200 {
        pair.client.write_all(b"x").unwrap();
    }
    support::traffic::read_exactly(&mut pair.server, 200);

    let after = exporter.scrape();
    // Other sockets on the node send too, so at least our 200 sends.
    assert!(
        runs(&after) - runs(&before) >= 200,
        "{} -> {}",
        runs(&before),
        runs(&after)
    );
    let seconds = |s: &Scrape| {
        s.text
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "tcp_flow_exporter_program_run_seconds_total{{{labels}}} "
                ))
            })
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    assert!(seconds(&after) > seconds(&before));
}
