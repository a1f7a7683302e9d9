//! Scrapes of the exporter timed one by one, each with the memory it took
//! and what the walk cost the kernel, read from the exporter's own
//! self-metrics in the body of the same scrape.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::{self, load::status_kib};

/// The walk's programs: refresh_sockets(_cast), one run over every
/// connection (before the walk in shards), or walk_shard(_cast), one run per
/// shard of connections.
const WALK_PROGRAMS: [&str; 2] = ["refresh_sockets", "walk_shard"];

/// The longest single walk run, where the exporter says so.
const LONGEST_PIECE: &str = "tcp_flow_exporter_socket_walk_longest_run_seconds";

/// What one timed scrape saw.
pub struct Timed {
    /// Connect to last byte.
    pub took: Duration,
    pub body: usize,
    /// VmHWM during the scrape (reset just before it) and VmRSS before it.
    pub peak: u64,
    pub rss_before: u64,
    /// The walk programs' total (runs, kernel ns) as this scrape reports.
    pub walk: (u64, f64),
    /// LONGEST_PIECE, if the exporter has it.
    pub longest_piece: Option<Duration>,
}

/// One timed scrape of the exporter `pid` at `addr`.
pub fn timed(addr: SocketAddr, pid: u32, response: &mut Vec<u8>) -> Timed {
    // Writing 5 to clear_refs resets VmHWM to the current RSS.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
    let rss_before = status_kib(pid, "VmRSS:") * 1024;
    let (took, body) = support::timed_scrape(addr, false, response);
    let peak = status_kib(pid, "VmHWM:") * 1024;
    let text = body_text(response);
    Timed {
        took,
        body,
        peak,
        rss_before,
        walk: walk_stats(&text),
        longest_piece: value(&text, LONGEST_PIECE).map(Duration::from_secs_f64),
    }
}

/// The body of a raw chunked response.
fn body_text(response: &[u8]) -> String {
    let head = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head")
        + 4;
    let body = support::dechunk(&response[head..]).expect("a complete body");
    String::from_utf8(body).expect("UTF-8")
}

/// The value of the sample `series` (name and labels, as written).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Total (runs, kernel ns) of the walk's programs, from the exporter's
/// program statistics (it runs with --bpf.stats).
fn walk_stats(text: &str) -> (u64, f64) {
    let prefix = r#"tcp_flow_exporter_program_runs_total{program=""#;
    let programs = text
        .lines()
        .filter_map(|l| l.strip_prefix(prefix)?.split('"').next())
        .filter(|name| WALK_PROGRAMS.iter().any(|w| name.starts_with(w)));
    let (mut runs, mut ns) = (0, 0.0);
    for program in programs {
        let labels = format!(r#"{{program="{program}"}}"#);
        let count = value(
            text,
            &format!("tcp_flow_exporter_program_runs_total{labels}"),
        );
        let seconds = value(
            text,
            &format!("tcp_flow_exporter_program_run_seconds_total{labels}"),
        );
        runs += count.expect("runs of a walk program") as u64;
        ns += seconds.expect("run time of a walk program") * 1e9;
    }
    assert!(runs > 0, "no walk program ran: is the socket backend on?");
    (runs, ns)
}

/// The walk's kernel time between two scrapes, and its longest single run:
/// the exporter's LONGEST_PIECE where it has one (`true`), else the mean
/// run between them, which is the one run when the walk is one run.
pub fn walk_between(before: &Timed, after: &Timed) -> (Duration, Duration, bool) {
    let runs = after.walk.0 - before.walk.0;
    let ns = after.walk.1 - before.walk.1;
    let total = Duration::from_nanos(ns.max(0.0) as u64);
    match after.longest_piece {
        Some(longest) => (total, longest, true),
        None => (total, total / runs.max(1) as u32, false),
    }
}
