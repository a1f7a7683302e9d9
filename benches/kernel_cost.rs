//! The exporter's cost on the data path: kernel time per send/recv event of
//! its programs against empty programs on the same hooks, and loopback
//! throughput with and without it. Needs root; `scripts/bench.sh` runs it.
//! Not part of the test pass/fail.
//!
//!   cargo bench --bench kernel_cost               both
//!   cargo bench --bench kernel_cost -- events     only the per-event cost

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use common::traffic::Pair;
use common::{Exporter, Scrape};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use tcp_flow_exporter::bpf::empty::EmptySkelBuilder;
use tcp_flow_exporter::program_stats::{self, ProgramHandle};

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("the kernel cost benchmarks load BPF: run them as root (scripts/bench.sh)");
        std::process::exit(1);
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let only = |name: &str| args.is_empty() || args[0] == name;
    if only("events") {
        events();
    }
    if only("throughput") {
        throughput();
    }
}

/// (runs, run time in ns) of one program, from its fd.
fn stats(handle: &ProgramHandle) -> (u64, u64) {
    let s = &program_stats::read(std::slice::from_ref(handle))[0];
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

/// Per-event kernel time of the exporter's send and recv programs and of
/// empty programs attached to the same hooks at the same time, so both see
/// exactly the same events, under 64-byte ping-pong over loopback.
fn events() {
    let _stats = program_stats::enable().expect("BPF_ENABLE_STATS (Linux 5.8+)");
    let exporter = Exporter::start_raw(&[]);
    let backend = exporter
        .scrape()
        .text
        .lines()
        .find_map(|l| l.split("backend=\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let (ours, empties) = match backend.as_str() {
        "tracepoint" => (
            ["tp_sock_send_length", "tp_sock_recv_length"],
            ["empty_tp_send", "empty_tp_recv"],
        ),
        "fentry" => (
            ["fexit_tcp_sendmsg", "fexit_tcp_recvmsg"],
            ["empty_fexit_send", "empty_fexit_recv"],
        ),
        other => panic!("no empty twin for the {other} backend"),
    };

    let mut storage = MaybeUninit::uninit();
    let mut open = EmptySkelBuilder::default().open(&mut storage).unwrap();
    for mut prog in open.open_object_mut().progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        prog.set_autoload(empties.contains(&name.as_str()));
    }
    let skel = open.load().expect("load the empty programs");
    let mut links = Vec::new();
    let mut handles = Vec::new();
    for prog in skel.object().progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        if let Some(&empty) = empties.iter().find(|e| **e == name) {
            links.push(prog.attach().expect("attach an empty program"));
            handles.push(ProgramHandle {
                name: empty,
                fd: prog.as_fd().try_clone_to_owned().unwrap(),
            });
        }
    }
    handles.sort_by_key(|h| empties.iter().position(|e| *e == h.name));

    let before_ours: Vec<_> = {
        let s = exporter.scrape();
        ours.iter().map(|p| exporter_stats(&s, p)).collect()
    };
    let before_empty: Vec<_> = handles.iter().map(stats).collect();
    let mut pair = Pair::on("127.0.0.1");
    let mut buf = [0u8; 64];
    const ROUNDS: usize = 200_000;
    for _ in 0..ROUNDS {
        pair.client.write_all(&buf).unwrap();
        pair.server.read_exact(&mut buf).unwrap();
        pair.server.write_all(&buf).unwrap();
        pair.client.read_exact(&mut buf).unwrap();
    }
    let after = exporter.scrape();
    println!("| hook | events | exporter ns/event | empty ns/event | ratio |");
    println!("|---|---|---|---|---|");
    for (i, handle) in handles.iter().enumerate() {
        let (runs, ns) = exporter_stats(&after, ours[i]);
        let (runs, ns) = (runs - before_ours[i].0, ns - before_ours[i].1);
        let (eruns, ens) = stats(handle);
        let (eruns, ens) = (eruns - before_empty[i].0, ens - before_empty[i].1);
        let (per, eper) = (ns as f64 / runs as f64, ens as f64 / eruns as f64);
        println!(
            "| {} ({backend}) | {runs} | {per:.1} | {eper:.1} | {:.2}x |",
            ours[i],
            per / eper
        );
    }
    drop(links);
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
fn throughput() {
    const ROUNDS: usize = 15;
    let run = Duration::from_millis(400);
    println!("| write size | without exporter, median (min-max) | with exporter, median (min-max) | with / without |");
    println!("|---|---|---|---|");
    for chunk in [64, 16 << 10] {
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            for attached in [round % 2 == 0, round % 2 != 0] {
                if attached {
                    let _exporter = Exporter::start_raw(&[]);
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
