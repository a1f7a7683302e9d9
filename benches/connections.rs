//! A million open connections (issue 17): what the socket backend's walk
//! costs per open connection at each scrape. For each count N it starts the
//! exporter (socket backend, BPF statistics on), then opens N idle loopback
//! connections (2N tracked sockets), held by child processes, so that the
//! exporter tracks each from its handshake; checks that it counts every one
//! exactly; then measures, with the connections idle:
//!   - full /metrics scrapes, connect to last byte (median and max of 11);
//!   - the walk's kernel time per scrape (bpf_stats), and its longest single
//!     run: the exporter's tcp_flow_exporter_socket_walk_longest_run_seconds
//!     where it has it ("piece"), else the mean run of a scrape ("mean run",
//!     which is the one run when the walk is one run);
//!   - the worst wake-up delay of a real-time thread on each CPU (cyclictest,
//!     20 s) with no scrape, then while scrapes run back to back, then, as
//!     a control, while one thread spins in user space back to back: a
//!     load the real-time thread preempts at once in the guest, so what it
//!     adds comes from below the guest (the hypervisor taking the vCPU);
//!   - exporter RSS before the connections, with them open, and at its peak
//!     during a scrape; and a scrape's memory beyond its response body
//!     (peak during the scrape - RSS before it - body).
//!
//! Per-socket figures divide by 2N: each connection is two sockets, both
//! tracked and both walked. Each row is printed as it is measured, as
//! markdown for BENCHMARKS.md. Needs root and cyclictest:
//!
//!   scripts/install-deps.sh --bench
//!   sudo cargo bench --bench connections -- 100000 250000 500000 [1000000]
//!
//! Counts the machine has no memory for (16 KB each) are skipped. fs.file-max
//! is raised for the run and restored after it.

#[path = "connections/cyclictest.rs"]
mod cyclictest;
#[path = "connections/hold.rs"]
mod hold;
#[path = "connections/limits.rs"]
mod limits;
#[path = "connections/scrapes.rs"]
mod scrapes;
#[path = "../tests/support/mod.rs"]
mod support;

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use hold::Holders;
use support::{load::status_kib, Exporter};

const SCRAPES: usize = 11;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("--hold") {
        hold::serve(args[1].parse().expect("--hold <connections>"));
        return;
    }
    support::require_root();
    let counts: Vec<usize> = if args.is_empty() {
        vec![100_000, 250_000, 500_000]
    } else {
        let count = |a: &String| a.parse().expect("connection counts, e.g. 100000 250000");
        args.iter().map(count).collect()
    };
    let cyclictest = cyclictest::find();
    stop_exporter_when_interrupted();
    let _raised = limits::raise(counts.iter().copied().max().unwrap_or(0));
    let listed: Vec<String> = counts.iter().map(usize::to_string).collect();
    println!(
        "`sudo cargo bench --bench connections -- {}`\n",
        listed.join(" ")
    );
    println!(
        "| connections (tracked sockets) | opening | scrape median (max) | scrape per socket \
         | walk kernel time per scrape, per socket | longest kernel run | worst RT wake-up \
         per CPU: idle → scraping | the same with a user-space spin instead of scrapes \
         (control) | exporter RSS: before, open, scrape peak | RSS per socket \
         | scrape memory beyond body per socket |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for n in counts {
        if !limits::room_for(n) {
            eprintln!("{n} connections: skipped, not enough memory");
            continue;
        }
        println!("{}", measure(n, &cyclictest).markdown());
    }
}

/// The running exporter, to stop if the bench is interrupted: the holders
/// die with the bench (PR_SET_PDEATHSIG), the exporter would not.
static EXPORTER: AtomicI32 = AtomicI32::new(0);

extern "C" fn interrupted(signal: libc::c_int) {
    let pid = EXPORTER.load(Ordering::Relaxed);
    // SAFETY: kill and _exit are async-signal-safe; pid is our child's.
    unsafe {
        if pid > 0 {
            libc::kill(pid, libc::SIGTERM);
        }
        libc::_exit(128 + signal);
    }
}

fn stop_exporter_when_interrupted() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler makes only async-signal-safe calls.
        unsafe { libc::signal(signal, interrupted as *const () as libc::sighandler_t) };
    }
}

/// What one connection count measured.
struct Measured {
    connections: usize,
    tracked: u64,
    opening: Duration,
    scrapes: Vec<scrapes::Timed>,
    /// The walk's kernel time per scrape, its longest single run, and
    /// whether that came from the exporter's own longest-piece gauge.
    walk: Duration,
    longest: Duration,
    from_piece: bool,
    /// cyclictest's worst per CPU: without scrapes, with them, and with a
    /// user-space spin instead.
    idle: Vec<Duration>,
    busy: Vec<Duration>,
    spin: Vec<Duration>,
    rss_empty: u64,
    rss_open: u64,
}

/// Opens `n` connections under a fresh exporter and measures them.
fn measure(n: usize, cyclictest: &Path) -> Measured {
    let sockets = 2 * n;
    // Room for the node's own connections too.
    let sockets_max = (sockets + 65_536).next_multiple_of(65_536);
    let exporter = Exporter::start_raw(&[
        "--probe=socket",
        "--bpf.stats",
        &format!("--sockets.max={sockets_max}"),
    ]);
    let pid = exporter.pid();
    EXPORTER.store(pid as i32, Ordering::Relaxed);
    exporter.scrape();
    let rss_empty = status_kib(pid, "VmRSS:") * 1024;
    let available = limits::available();
    let holders = Holders::open(n);
    eprintln!(
        "{n} connections: opened in {:.1} s by {} holders; MemAvailable fell {} B per connection",
        holders.opening.as_secs_f64(),
        holders.listeners.len(),
        available.saturating_sub(limits::available()) / n as u64,
    );
    let tracked = await_exact_counts(&exporter, &holders, sockets);
    let rss_open = status_kib(pid, "VmRSS:") * 1024;

    // The first scrape is the baseline of the walk's statistics.
    let mut response = Vec::new();
    let timed: Vec<_> = (0..=SCRAPES)
        .map(|_| scrapes::timed(exporter.addr, pid, &mut response))
        .collect();
    let walks: Vec<_> = timed
        .windows(2)
        .map(|w| scrapes::walk_between(&w[0], &w[1]))
        .collect();
    let walk = walks.iter().map(|w| w.0).sum::<Duration>() / SCRAPES as u32;
    let (_, longest, from_piece) = *walks.iter().max_by_key(|w| w.1).unwrap();

    let (idle, _) = cyclictest::worst_per_cpu(cyclictest, || {
        std::thread::sleep(Duration::from_millis(100))
    });
    let (busy, runs) = cyclictest::worst_per_cpu(cyclictest, || {
        support::timed_scrape(exporter.addr, false, &mut response);
    });
    eprintln!("{n} connections: {runs} scrapes back to back during cyclictest");
    let (spin, _) = cyclictest::worst_per_cpu(cyclictest, || {
        let until = Instant::now() + Duration::from_millis(100);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    });
    let opening = holders.opening;
    // The exporter first, so that closing the connections does not run its
    // programs two million times.
    drop(exporter);
    drop(holders);
    Measured {
        connections: n,
        tracked,
        opening,
        scrapes: timed.into_iter().skip(1).collect(),
        walk,
        longest,
        from_piece,
        idle,
        busy,
        spin,
        rss_empty,
        rss_open,
    }
}

impl Measured {
    fn markdown(&self) -> String {
        let sockets = 2 * self.connections as u64;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let per_socket = |d: Duration| d.as_nanos() as f64 / sockets as f64;
        let mb = |b: u64| b as f64 / 1e6;
        let mut took: Vec<Duration> = self.scrapes.iter().map(|t| t.took).collect();
        took.sort();
        let median = took[took.len() / 2];
        let peak = self.scrapes.iter().map(|t| t.peak).max().unwrap();
        let beyond = self
            .scrapes
            .iter()
            .map(|t| t.peak as f64 - t.rss_before as f64 - t.body as f64)
            .fold(f64::MIN, f64::max);
        let worst = |v: &[Duration]| {
            let each: Vec<_> = v.iter().map(|d| format!("{:.2}", ms(*d))).collect();
            each.join(" / ")
        };
        let max = |v: &[Duration]| v.iter().copied().max().unwrap_or_default();
        format!(
            "| {} ({}) | {:.1} s | {:.1} ms ({:.1} ms) | {:.0} ns | {:.1} ms, {:.0} ns \
             | {:.2} ms ({}) | {} → {} ms (+{:.2} ms) | {} ms (+{:.2} ms) \
             | {:.1}, {:.1}, {:.1} MB | {:.0} B | {:.0} B |",
            self.connections,
            self.tracked,
            self.opening.as_secs_f64(),
            ms(median),
            ms(*took.last().unwrap()),
            per_socket(median),
            ms(self.walk),
            per_socket(self.walk),
            ms(self.longest),
            if self.from_piece { "piece" } else { "mean run" },
            worst(&self.idle),
            worst(&self.busy),
            ms(max(&self.busy).saturating_sub(max(&self.idle))),
            worst(&self.spin),
            ms(max(&self.spin).saturating_sub(max(&self.idle))),
            mb(self.rss_empty),
            mb(self.rss_open),
            mb(peak),
            self.rss_open.saturating_sub(self.rss_empty) as f64 / sockets as f64,
            beyond / sockets as f64,
        )
    }
}

/// Waits until the exporter tracks at least `sockets` sockets and counts
/// every held connection exactly (one byte each way, both ends); returns
/// how many it tracks.
fn await_exact_counts(exporter: &Exporter, holders: &Holders, sockets: usize) -> u64 {
    let loopback = IpAddr::from([127, 0, 0, 1]);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let scrape = exporter.scrape();
        let tracked = scrape
            .sample("tcp_flow_exporter_map_entries", r#"map="sockets""#)
            .expect("tcp_flow_exporter_map_entries{map=\"sockets\"}");
        let mut wrong = Vec::new();
        for &(addr, count) in &holders.listeners {
            let (client, server) = support::server_mode_flows(loopback, addr);
            for flow in [client, server] {
                if scrape.flow(&flow) != Some((count as u64, count as u64)) {
                    wrong.push(format!("{} not {count} each way", flow.labels()));
                }
            }
        }
        if tracked >= sockets as u64 && wrong.is_empty() {
            return tracked;
        }
        if Instant::now() > deadline {
            panic!(
                "after 120 s the exporter tracks {tracked} sockets of {sockets}; \
                 {} flows are off, e.g. {:?}",
                wrong.len(),
                wrong.first()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
