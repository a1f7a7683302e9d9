//! Abuse that must not stop a well-behaved scrape, measured as a new user
//! would meet it: 30,000 idle connections, 1 MiB headers, and a client that
//! stops reading a 100k-flow body. Each bounds the exporter's memory.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::one_at_a_time;
use crate::support::{self, http_get, Exporter};

/// VmRSS of `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// A full scrape, within `limit`, with the body's flow count checked.
fn scrape_ok(exporter: &Exporter, flows: usize, limit: Duration) {
    let started = Instant::now();
    let (status, body) = http_get(exporter.addr, "/metrics", &[]).expect("a scrape");
    let elapsed = started.elapsed();
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains(&format!("\ntcp_flow_exporter_flow_series {flows}\n")),
        "the scrape lacks its {flows} flows"
    );
    assert!(elapsed < limit, "a scrape took {elapsed:?}");
}

const MIB: u64 = 1 << 20;

/// Opens `n` connections from `source` to `target` and holds them until
/// stdin closes; prints how many it opened. A process of its own: the
/// per-process file limit (20,000 here) is below what the test holds.
fn holder(source: &str, target: SocketAddr, n: usize) -> std::process::Child {
    let script = "import socket, sys\n\
        src, host, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])\n\
        held = []\n\
        for _ in range(n):\n\
        \x20   s = socket.socket()\n\
        \x20   s.bind((src, 0))\n\
        \x20   s.connect((host, port))\n\
        \x20   held.append(s)\n\
        print(len(held), flush=True)\n\
        sys.stdin.read()\n";
    Command::new("python3")
        .args(["-c", script, source, &target.ip().to_string()])
        .arg(target.port().to_string())
        .arg(n.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/install-deps.sh --test installs it)")
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_thirty_thousand_idle_connections_leave_room_for_a_scrape() {
    support::require_root();
    let _serial = one_at_a_time();
    // Default limits: this is what a new user runs.
    let exporter = Exporter::start(&["--filter.port.include=1"]);
    let pid = exporter.pid();
    scrape_ok(&exporter, 0, Duration::from_secs(5));
    let (rss_before, fds_before) = (rss(pid), open_fds(pid));
    // 2 × 15,000 from two source addresses: each address has ~28,000
    // ephemeral ports, each process 20,000 files.
    let mut holders: Vec<_> = ["127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|src| holder(src, exporter.addr, 15_000))
        .collect();
    // Scrapes while the connections pile up, and once all are held.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut during = 0;
    for h in &mut holders {
        let stdout = h.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
            line
        });
        while !reader.is_finished() {
            assert!(Instant::now() < deadline, "the holders did not connect");
            scrape_ok(&exporter, 0, Duration::from_secs(5));
            during += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(reader.join().unwrap().trim(), "15000");
    }
    for _ in 0..10 {
        scrape_ok(&exporter, 0, Duration::from_secs(5));
    }
    let (rss_after, fds_after) = (rss(pid), open_fds(pid));
    eprintln!(
        "30,000 idle connections: {during} scrapes while they opened; RSS {} → {} KiB, \
         open files {fds_before} → {fds_after}",
        rss_before / 1024,
        rss_after / 1024
    );
    assert!(fds_after <= fds_before + 512 + 8, "{fds_after} open files");
    assert!(rss_after <= rss_before + 64 * MIB, "RSS {rss_after}");
    assert!(
        !exporter.log().contains("Too many open files"),
        "{}",
        exporter.log()
    );
    for mut h in holders {
        drop(h.stdin.take());
        let _ = h.kill();
        let _ = h.wait();
    }
}

/// Sends a request whose one header is 1 MiB long, and returns the status
/// line if any answer came before the exporter closed the connection.
fn one_mib_header(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    request.resize(request.len() + (1 << 20), b'a');
    request.extend_from_slice(b"\r\n\r\n");
    // The exporter stops reading long before the end: writing fails then.
    let _ = stream.write_all(&request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().map(str::to_owned)
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_one_mib_headers_are_refused_without_memory_growth() {
    support::require_root();
    let _serial = one_at_a_time();
    let exporter = Exporter::start(&["--filter.port.include=1"]);
    let pid = exporter.pid();
    scrape_ok(&exporter, 0, Duration::from_secs(5));
    let rss_before = rss(pid);
    // 64 clients at once, 64 MiB of headers in all.
    let addr = exporter.addr;
    let clients: Vec<_> = (0..64)
        .map(|_| std::thread::spawn(move || one_mib_header(addr)))
        .collect();
    for _ in 0..5 {
        scrape_ok(&exporter, 0, Duration::from_secs(5));
    }
    let answers: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let rss_after = rss(pid);
    eprintln!(
        "64 × 1 MiB headers: answers {:?}; RSS {} → {} KiB",
        answers.iter().take(3).collect::<Vec<_>>(),
        rss_before / 1024,
        rss_after / 1024
    );
    // Each got 431, or a reset that cut it off before reading it.
    for answer in &answers {
        assert!(
            answer.is_none()
                || answer.as_deref() == Some("HTTP/1.1 431 Request Header Fields Too Large"),
            "{answer:?}"
        );
    }
    assert!(rss_after <= rss_before + 16 * MIB, "RSS {rss_after}");
    scrape_ok(&exporter, 0, Duration::from_secs(5));
}

/// Flows planted in the kernel table, exported.
const PLANTED: u32 = 100_000;

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_a_reader_that_stops_mid_body_is_dropped_and_scrapes_go_on() {
    support::require_root();
    let _serial = one_at_a_time();
    // Planting needs a per-event backend's flow table. Port 1 keeps the
    // node's own traffic out.
    let exporter = Exporter::start_raw(&[
        "--probe=tracepoint",
        "--flows.max=131072",
        "--filter.port.include=1",
        "--web.write-timeout=5s",
    ]);
    let pid = exporter.pid();
    support::plant::plant(&support::plant::writing_table(), PLANTED);
    let deadline = Instant::now() + Duration::from_secs(30);
    let full = loop {
        let (_, body) = http_get(exporter.addr, "/metrics", &[]).unwrap();
        let text = String::from_utf8_lossy(&body);
        if text.contains(&format!("\ntcp_flow_exporter_flow_series {PLANTED}\n")) {
            break body.len();
        }
        assert!(Instant::now() < deadline, "planted flows missing");
        std::thread::sleep(Duration::from_millis(200));
    };
    scrape_ok(&exporter, PLANTED as usize, Duration::from_secs(10));
    let rss_before = rss(pid);

    // Reads 1 MiB of a body of about 25 MB, then nothing.
    let mut stalled = TcpStream::connect(exporter.addr).unwrap();
    stalled
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut first = vec![0; 1 << 20];
    stalled.read_exact(&mut first).unwrap();
    let stalled_at = Instant::now();

    // Meanwhile, whole scrapes as usual.
    let mut rss_peak = 0;
    for _ in 0..3 {
        scrape_ok(&exporter, PLANTED as usize, Duration::from_secs(10));
        rss_peak = rss_peak.max(rss(pid));
    }
    // After the write timeout the exporter closes the connection: the rest
    // of what the socket buffers held arrives, then the end, well short of
    // the whole body.
    stalled
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    std::thread::sleep(Duration::from_secs(7).saturating_sub(stalled_at.elapsed()));
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest);
    let got = first.len() + rest.len();
    let rss_after = rss(pid);
    eprintln!(
        "stalled reader: body {full} B, the stalled client got {got} B; RSS {} KiB before, \
         {} KiB peak while stalled, {} KiB after",
        rss_before / 1024,
        rss_peak / 1024,
        rss_after / 1024
    );
    assert!(got < full, "the stalled client got the whole body");
    // One stalled body at most in memory beside the scrapes'.
    assert!(
        rss_peak <= rss_before + full as u64 + 16 * MIB,
        "RSS peaked at {rss_peak}"
    );
    scrape_ok(&exporter, PLANTED as usize, Duration::from_secs(10));
}
