//! The soak: connection churn (support/churn.rs) counted by the exporter
//! with a 10 s idle timeout, so flows keep expiring, scraped by a real
//! Prometheus every second. tests/soak.rs runs it for 3 minutes,
//! `cargo bench --bench soak -- 30m` for as long as asked.
//!
//! What must hold, each against ground truth or a stated bound:
//! - no counter series ever went down: `resets()` summed over every
//!   tcp_flow_*_total series of the whole run is 0;
//! - every byte the churn moved is in Prometheus, once: the sum over flow
//!   series of their highest value equals the bytes moved (each connection
//!   has labels of its own, so each series is one connection's total);
//! - every scrape worked (`up` never 0);
//! - memory stays flat: after a warm-up, the least-squares line through the
//!   exporter's RSS grows by at most [`RSS_GROWTH_BOUND_KIB`] over the rest;
//! - nothing leaks: open fds at the end are at most [`FD_SLACK`] above
//!   those after the warm-up; once the churn stops and its flows expire,
//!   the exporter shows no flow and its kernel flow table is empty. (The
//!   socket map's count is shown, not checked: it holds every TCP socket of
//!   the node, whatever the filters, and other tests share the node.)

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::server::Prometheus;
use crate::support::{churn, Exporter};

/// Most growth of the fitted RSS line over the run after the warm-up.
pub const RSS_GROWTH_BOUND_KIB: f64 = 1024.0;
/// The share of Prometheus's scrapes that may time out on a loaded machine.
pub const FAILED_SCRAPE_SHARE: f64 = 0.01;
/// Most new open fds at the end compared with after the warm-up.
pub const FD_SLACK: usize = 2;
const IDLE_TIMEOUT: &str = "--flows.idle-timeout=10s";

#[derive(Debug, Default)]
pub struct Report {
    pub churn: Duration,
    pub connections: u64,
    pub moved: u64,
    /// What Prometheus has: highest value of every flow series, summed.
    pub stored_sent: f64,
    pub stored_received: f64,
    pub series: f64,
    pub resets: f64,
    pub scrapes: f64,
    pub failed_scrapes: f64,
    /// (seconds since the churn started, RSS KiB).
    pub rss: Vec<(f64, f64)>,
    pub warm_up: Duration,
    pub rss_slope_kib_per_min: f64,
    pub fds_warm: usize,
    pub fds_end: usize,
    pub flows_at_end: usize,
    pub table_entries_at_end: u64,
    pub sockets_tracked: (u64, u64),
}

impl Report {
    pub fn fitted_growth_kib(&self) -> f64 {
        let measured = self.churn.saturating_sub(self.warm_up).as_secs_f64();
        self.rss_slope_kib_per_min * measured / 60.0
    }

    /// Every failed check, one per line; empty if all held.
    pub fn failures(&self) -> Vec<String> {
        let mut failed = Vec::new();
        let mut check = |ok: bool, what: String| {
            if !ok {
                failed.push(what);
            }
        };
        check(self.series > 0.0, "Prometheus stored no series".into());
        check(
            self.resets == 0.0,
            format!("{} counter resets", self.resets),
        );
        let moved = self.moved as f64;
        check(
            self.stored_sent == moved && self.stored_received == moved,
            format!(
                "stored sent {} and received {}, but {moved} bytes were moved",
                self.stored_sent, self.stored_received
            ),
        );
        // Prometheus gives a 1 s scrape 1 s to finish: on a shared 2-vCPU
        // machine running a kernel VM beside this test, one in 198 scrapes
        // once missed that (2026-12-02) while every byte was still stored
        // exactly. A lost scrape costs resolution, not counts: allow 1%.
        check(
            self.failed_scrapes <= (self.scrapes * FAILED_SCRAPE_SHARE).floor().max(1.0),
            format!(
                "{} of {} scrapes failed (at most 1% may)",
                self.failed_scrapes, self.scrapes
            ),
        );
        check(
            self.fitted_growth_kib() <= RSS_GROWTH_BOUND_KIB,
            format!(
                "RSS grows {:.0} KiB after the warm-up",
                self.fitted_growth_kib()
            ),
        );
        check(
            self.fds_end <= self.fds_warm + FD_SLACK,
            format!(
                "fds {} after warm-up, {} at the end",
                self.fds_warm, self.fds_end
            ),
        );
        check(
            self.flows_at_end == 0 && self.table_entries_at_end == 0,
            format!(
                "{} flows and {} kernel table entries left after expiry",
                self.flows_at_end, self.table_entries_at_end
            ),
        );
        failed
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (min, max) = self
            .rss
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), &(_, r)| (lo.min(r), hi.max(r)));
        writeln!(
            f,
            "churn {:?}: {} connections, {} bytes moved; Prometheus: {} series, {} resets, \
             {} scrapes ({} failed), stored sent {} received {}",
            self.churn,
            self.connections,
            self.moved,
            self.series,
            self.resets,
            self.scrapes,
            self.failed_scrapes,
            self.stored_sent,
            self.stored_received
        )?;
        writeln!(
            f,
            "RSS {min:.0}-{max:.0} KiB; after a {:?} warm-up slope {:.2} KiB/min, fitted growth \
             {:.0} KiB (bound {RSS_GROWTH_BOUND_KIB} KiB)",
            self.warm_up,
            self.rss_slope_kib_per_min,
            self.fitted_growth_kib()
        )?;
        write!(
            f,
            "fds {} after warm-up, {} at end; after expiry {} flows, {} kernel table entries; \
             sockets tracked {} before churn, {} at end",
            self.fds_warm,
            self.fds_end,
            self.flows_at_end,
            self.table_entries_at_end,
            self.sockets_tracked.0,
            self.sockets_tracked.1
        )
    }
}

fn rss_kib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Least-squares slope of `points`, per unit of x.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(x, y), p| (x + p.0 / n, y + p.1 / n));
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(sxy, sxx), p| {
        (sxy + (p.0 - mx) * (p.1 - my), sxx + (p.0 - mx).powi(2))
    });
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

pub fn run(prometheus_binary: &Path, churn_for: Duration) -> Report {
    let listeners = churn::Listeners::bind(2);
    let ports: Vec<String> = listeners.ports().iter().map(u16::to_string).collect();
    let filter = format!("--filter.port.include={}", ports.join(","));
    let exporter = Exporter::start(&[IDLE_TIMEOUT, &filter]);
    let prometheus = Prometheus::start(prometheus_binary, &[exporter.addr]);
    let prometheus_started = Instant::now();
    prometheus.wait_for(Duration::from_secs(30), "scraping", || {
        prometheus.value("up") == Some(1)
    });
    let sockets = || {
        exporter
            .scrape()
            .sample("tcp_flow_exporter_map_entries", r#"map="sockets""#)
            .unwrap_or(0)
    };
    let pid = exporter.pid();
    let mut report = Report {
        churn: churn_for,
        warm_up: (churn_for / 5).max(Duration::from_secs(30)),
        ..Report::default()
    };
    report.sockets_tracked.0 = sockets();

    let churn = listeners.start(10, 4);
    let started = Instant::now();
    let mut warm = false;
    while started.elapsed() < churn_for {
        std::thread::sleep(Duration::from_secs(2));
        report
            .rss
            .push((started.elapsed().as_secs_f64(), rss_kib(pid)));
        if !warm && started.elapsed() >= report.warm_up {
            warm = true;
            report.fds_warm = open_fds(pid);
        }
    }
    let moved = churn.stop();
    report.fds_end = open_fds(pid);
    report.connections = moved.connections.load(std::sync::atomic::Ordering::Relaxed);
    report.moved = moved.bytes.load(std::sync::atomic::Ordering::Relaxed);
    let after_warm_up: Vec<_> = report
        .rss
        .iter()
        .filter(|(t, _)| *t >= report.warm_up.as_secs_f64())
        .copied()
        .collect();
    report.rss_slope_kib_per_min = slope(&after_warm_up) * 60.0;

    // Every flow idles out 10 s after its connection closed, and the next
    // drain leaves the kernel table empty.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let scrape = exporter.scrape();
        report.flows_at_end = scrape.flows().len();
        report.table_entries_at_end = scrape
            .sample("tcp_flow_exporter_map_entries", r#"map="flows""#)
            .expect("map_entries of the flow table");
        if (report.flows_at_end, report.table_entries_at_end) == (0, 0) || Instant::now() > deadline
        {
            break;
        }
    }
    report.sockets_tracked.1 = sockets();

    // Everything Prometheus scraped since it started.
    let range = format!("[{}s]", prometheus_started.elapsed().as_secs() + 5);
    let counters = r#"{__name__=~"tcp_flow_.+_total"}"#;
    let float = |q: String| prometheus.float(&q).unwrap_or(f64::NAN);
    report.series = float(format!("count(last_over_time({counters}{range}))"));
    // resets() drops the name, so it runs per family: two families' series
    // with the same labels would otherwise clash.
    let families = prometheus
        .query(&format!(
            "count by (__name__) (last_over_time({counters}{range}))"
        ))
        .unwrap_or_default();
    report.resets = families
        .iter()
        .filter_map(|family| family["metric"]["__name__"].as_str())
        .map(|name| {
            prometheus
                .float(&format!("sum(resets({name}{range}))"))
                .unwrap_or(f64::NAN)
        })
        .sum();
    report.stored_sent = float(format!(
        "sum(max_over_time(tcp_flow_sent_bytes_total{range}))"
    ));
    report.stored_received = float(format!(
        "sum(max_over_time(tcp_flow_received_bytes_total{range}))"
    ));
    report.scrapes = float(format!("sum(count_over_time(up{range}))"));
    // `up` is 1 for a scrape that worked, 0 for one that failed.
    report.failed_scrapes = report.scrapes - float(format!("sum(sum_over_time(up{range}))"));
    report
}
