//! The exporter's cost on the data path, per backend: kernel time of all its
//! programs per send/recv event and per connection, against empty programs
//! on the same hooks measured in the same run; the socket backend's walk per
//! socket; and loopback throughput with and without the exporter. Needs
//! root. Not part of the test pass/fail.
//!
//!   cargo bench --bench kernel_cost                         everything, socket and tracepoint
//!   cargo bench --bench kernel_cost -- events socket        one part, one backend
//!
//! Parts: events, connections, walk, throughput.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::Link;
use support::traffic::Pair;
use support::{Exporter, Scrape};
use tcp_flow_exporter::kernel::programs::{self, ProgramHandle};
use tcp_flow_exporter::kernel::skel::empty::EmptySkelBuilder;

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("the kernel cost benchmarks load BPF: run them as root");
        std::process::exit(1);
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let part = args.first().map(String::as_str);
    let backends: Vec<&str> = match args.get(1) {
        Some(b) => vec![b.as_str()],
        None => vec!["socket", "tracepoint"],
    };
    let only = |name: &str| part.is_none() || part == Some(name);
    let _stats = programs::enable().expect("BPF_ENABLE_STATS (Linux 5.8+)");
    if only("events") {
        events(&backends);
    }
    if only("connections") {
        connections(&backends);
    }
    if only("walk") {
        walk();
    }
    if only("throughput") {
        throughput(&backends);
    }
}

/// (runs, run time in ns) of one program, from its fd.
fn stats(handle: &ProgramHandle) -> (u64, u64) {
    let s = &programs::read(std::slice::from_ref(handle))[0];
    (s.run_count, s.run_time_ns)
}

/// (runs, run time in ns) of one of the exporter's programs, from its metrics.
fn exporter_stats(scrape: &Scrape, program: &str) -> (u64, u64) {
    let labels = format!(r#"program="{program}""#);
    let runs = scrape
        .sample("tcp_flow_exporter_program_runs_total", &labels)
        .unwrap_or_else(|| panic!("no {program}"));
    let seconds: f64 = scrape
        .text
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "tcp_flow_exporter_program_run_seconds_total{{{labels}}} "
            ))
        })
        .and_then(|v| v.parse().ok())
        .unwrap();
    (runs, (seconds * 1e9).round() as u64)
}

/// The empty programs `names` (bpf/empty.bpf.c), attached; their links
/// must outlive the measurement.
fn empty_programs(names: &[&'static str]) -> (Vec<Link>, Vec<ProgramHandle>) {
    let storage = Box::leak(Box::new(MaybeUninit::uninit()));
    let mut open = EmptySkelBuilder::default().open(storage).unwrap();
    for mut prog in open.open_object_mut().progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        prog.set_autoload(names.contains(&name.as_str()));
    }
    let skel = Box::leak(Box::new(open.load().expect("load the empty programs")));
    let (mut links, mut handles) = (Vec::new(), Vec::new());
    for prog in skel.object().progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        if let Some(&empty) = names.iter().find(|e| **e == name) {
            links.push(prog.attach().expect("attach an empty program"));
            handles.push(ProgramHandle::unwatched(
                empty.to_string(),
                prog.as_fd().try_clone_to_owned().unwrap(),
            ));
        }
    }
    (links, handles)
}

/// Sum of (runs, ns) over `handles`.
fn empty_totals(handles: &[ProgramHandle]) -> (u64, u64) {
    handles
        .iter()
        .map(stats)
        .fold((0, 0), |(r, n), (r2, n2)| (r + r2, n + n2))
}

/// Sum of (runs, ns) over every program the exporter loaded.
fn exporter_totals(scrape: &Scrape) -> (u64, u64) {
    scrape
        .text
        .lines()
        .filter_map(|l| l.strip_prefix(r#"tcp_flow_exporter_program_runs_total{program=""#))
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .map(|p| exporter_stats(scrape, &p))
        .fold((0, 0), |(r, n), (r2, n2)| (r + r2, n + n2))
}

fn backend_of(exporter: &Exporter) -> String {
    exporter
        .scrape()
        .text
        .lines()
        .find_map(|l| l.split("backend=\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned()
}

/// Kernel time of all the exporter's programs per send/recv event, under
/// 64-byte ping-pong over loopback, against empty programs on the send/recv
/// hooks, which also count the events. Two scrapes bracket the run, so the
/// socket backend's walks are in its figure.
fn events(backends: &[&str]) {
    println!("| backend | send/recv events | exporter ns/event (all programs) | empty ns/event | ratio |");
    println!("|---|---|---|---|---|");
    for backend in backends {
        let exporter = Exporter::start_raw(&[&format!("--probe={backend}")]);
        let name = backend_of(&exporter);
        let (_links, handles) = empty_programs(&["empty_tp_send", "empty_tp_recv"]);
        let ours_before = exporter_totals(&exporter.scrape());
        let empty_before = empty_totals(&handles);
        let mut pair = Pair::on("127.0.0.1");
        let mut buf = [0u8; 64];
        const ROUNDS: usize = 200_000;
        for _ in 0..ROUNDS {
            pair.client.write_all(&buf).unwrap();
            pair.server.read_exact(&mut buf).unwrap();
            pair.server.write_all(&buf).unwrap();
            pair.client.read_exact(&mut buf).unwrap();
        }
        let ours = exporter_totals(&exporter.scrape());
        let empty = empty_totals(&handles);
        let events = empty.0 - empty_before.0;
        let per = (ours.1 - ours_before.1) as f64 / events as f64;
        let eper = (empty.1 - empty_before.1) as f64 / events as f64;
        println!(
            "| {name} | {events} | {per:.1} | {eper:.1} | {:.2}x |",
            per / eper
        );
    }
}

/// Kernel time of all the exporter's programs per short connection (connect,
/// 64 bytes each way, close, both ends on this node), against empty programs
/// on the state-change and destroy hooks.
fn connections(backends: &[&str]) {
    println!("| backend | connections | exporter ns/connection | empty ns/connection (state changes + destroys) | ratio |");
    println!("|---|---|---|---|---|");
    const CONNECTIONS: usize = 5_000;
    for backend in backends {
        let exporter = Exporter::start_raw(&[&format!("--probe={backend}")]);
        let name = backend_of(&exporter);
        let (_links, handles) = empty_programs(&["empty_set_state", "empty_destroy_sock"]);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let ours_before = exporter_totals(&exporter.scrape());
        let empty_before = empty_totals(&handles);
        for _ in 0..CONNECTIONS {
            support::traffic::short_connection(&listener, target, 64, 64);
        }
        let ours = exporter_totals(&exporter.scrape());
        let empty = empty_totals(&handles);
        let per = (ours.1 - ours_before.1) as f64 / CONNECTIONS as f64;
        let eper = (empty.1 - empty_before.1) as f64 / CONNECTIONS as f64;
        println!(
            "| {name} | {CONNECTIONS} | {per:.0} | {eper:.0} | {:.2}x |",
            per / eper
        );
    }
}

/// The socket backend's walk: kernel time of its runs (walk_shard, one per
/// shard in use) per connection and walk, and scrape time, with many open
/// connections.
fn walk() {
    raise_open_files(50_000);
    println!("| open connections | walk ns/connection | scrape (median of 5) |");
    println!("|---|---|---|");
    for connections in [1_000usize, 9_000] {
        let exporter = Exporter::start_raw(&["--probe=socket", "--flows.ports=all"]);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let pairs: Vec<Pair> = (0..connections)
            .map(|_| {
                let mut p = Pair::through(&listener, target);
                p.exchange(1, 1);
                p
            })
            .collect();
        let first = exporter.scrape();
        // walk_shard, or walk_shard_cast where the kernel has
        // bpf_rdonly_cast (6.2+).
        let program = first
            .text
            .lines()
            .filter_map(|l| l.strip_prefix(r#"tcp_flow_exporter_program_runs_total{program=""#))
            .map(|rest| rest.split('"').next().unwrap().to_owned())
            .find(|name| name.starts_with("walk_shard"))
            .expect("the socket backend's walk program");
        let program = program.as_str();
        let mut times = Vec::new();
        let mut response = Vec::new();
        let before = exporter_stats(&first, program);
        let walks_before = walks(&first);
        for _ in 0..5 {
            let (took, _) = support::timed_scrape(exporter.addr, false, &mut response);
            times.push(took.as_secs_f64());
        }
        let last = exporter.scrape();
        let after = exporter_stats(&last, program);
        // Both ends of every pair are connections; the node has a few more.
        let walked = (walks(&last) - walks_before) as f64 * (2 * connections) as f64;
        println!(
            "| {connections} | {:.0} | {:.1} ms |",
            (after.1 - before.1) as f64 / walked,
            median(times) * 1e3
        );
        drop(pairs);
    }
}

/// Walks the exporter made over its open connections, one per scrape.
fn walks(scrape: &Scrape) -> u64 {
    scrape
        .sample("tcp_flow_exporter_socket_walks_total", "")
        .expect("the socket backend's walk count")
}

/// Raises the soft limit on open files (two per connection) to `want`, or
/// to the hard limit.
fn raise_open_files(want: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = want.min(limit.rlim_max);
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

/// Bytes per second over one loopback connection for `duration`, writing
/// `chunk` bytes at a time.
fn loopback_rate(chunk: usize, duration: Duration) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut client = TcpStream::connect(addr).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        while let Ok(n) = server.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total
    });
    let data = vec![7u8; chunk];
    let started = Instant::now();
    while started.elapsed() < duration {
        for _ in 0..64 {
            client.write_all(&data).unwrap();
        }
    }
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let total = reader.join().unwrap();
    total as f64 / started.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Loopback throughput with the exporter attached and not, interleaved
/// (the order alternates every round) so that drift hits both alike.
fn throughput(backends: &[&str]) {
    for backend in backends {
        println!("\nbackend {backend}:");
        throughput_of(backend);
    }
}

fn throughput_of(backend: &str) {
    const ROUNDS: usize = 15;
    let run = Duration::from_millis(400);
    println!("| write size | without exporter, median (min-max) | with exporter, median (min-max) | with / without |");
    println!("|---|---|---|---|");
    for chunk in [64, 16 << 10] {
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            for attached in [round % 2 == 0, round % 2 != 0] {
                if attached {
                    let _exporter = Exporter::start_raw(&[&format!("--probe={backend}")]);
                    on.push(loopback_rate(chunk, run));
                } else {
                    off.push(loopback_rate(chunk, run));
                }
            }
        }
        let fmt = |v: &[f64]| {
            let (lo, hi) = v
                .iter()
                .fold((f64::MAX, 0f64), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
            format!(
                "{:.0} MB/s ({:.0}-{:.0})",
                median(v.to_vec()) / 1e6,
                lo / 1e6,
                hi / 1e6
            )
        };
        println!(
            "| {chunk} B | {} | {} | {:.3} |",
            fmt(&off),
            fmt(&on),
            median(on.clone()) / median(off.clone())
        );
    }
}
