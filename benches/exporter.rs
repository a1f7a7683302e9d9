//! Benchmarks of the exporter as operators run it: start-up time, idle
//! memory, and full /metrics scrapes at 1k to 1M flows. Needs root (it loads
//! BPF); `scripts/bench.sh` runs it. Not part of the test pass/fail.
//!
//!   cargo bench --bench exporter                 everything
//!   cargo bench --bench exporter -- scrape 1000  only the scrape at 1k flows
//!   cargo bench --bench exporter -- gzip         gzip on one core and on several
//!   cargo bench --bench exporter -- concurrent 100000 50 100
//!       50 scrapers × 100 scrapes at once at 100k flows, and one alone
//!   cargo bench --bench exporter -- scrape 100000 --cost --flows.labels=dst_ip,role
//!       the scrape with prices on (--cost), and any exporter flags after
//!   cargo bench --bench exporter -- hold 100000   an exporter with 100k
//!       planted flows, kept until Ctrl-C, to profile by hand

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::plant::{flows, plant, writing_table};
use support::{http_get_full, Exporter};
use tcp_flow_exporter::flows::FlowTable;
use tcp_flow_exporter::source::FlowSink;

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("the exporter benchmarks load BPF: run them as root (scripts/bench.sh)");
        std::process::exit(1);
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let only = |name: &str| args.is_empty() || args[0] == name;
    if only("startup") {
        startup();
    }
    if only("encode") {
        for n in [100_000, 1_000_000] {
            encode(n);
        }
    }
    if only("gzip") {
        gzip(100_000);
    }
    if args.first().map(String::as_str) == Some("hold") {
        // For profiling by hand: perf record -p <pid>, then curl.
        let n = args
            .get(1)
            .map_or(100_000, |a| a.parse().expect("flow count"));
        let exporter = planted_exporter(n, &exporter_flags(args.get(2..).unwrap_or_default()));
        println!(
            "{n} flows at http://{}/metrics, exporter pid {}; Ctrl-C ends",
            exporter.addr,
            exporter.pid()
        );
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    if only("concurrent") {
        let arg = |i: usize, default: usize| args.get(i).map_or(default, |a| a.parse().unwrap());
        concurrent(arg(1, 100_000) as u32, arg(2, 50), arg(3, 100));
    }
    if only("scrape") {
        let sizes: Vec<u32> = match args.get(1) {
            Some(n) => vec![n.parse().expect("flow count")],
            None => vec![1_000, 10_000, 100_000, 1_000_000],
        };
        let flags = exporter_flags(args.get(2..).unwrap_or_default());
        println!("| flows | scrape (text) | per flow | scrape with curl, per flow (the same body from a static server) | scrape (gzip) | body | body gzip | RSS after | RSS per flow beyond body |");
        println!("|---|---|---|---|---|---|---|---|---|");
        for n in sizes {
            scrape(n, &flags);
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// Start-up (spawn to a served /healthz: BTF check, load, attach, bind) and
/// idle memory, over several starts.
fn startup() {
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..7 {
        let started = Instant::now();
        let exporter = Exporter::start_raw(&[]);
        times.push(started.elapsed());
        std::thread::sleep(Duration::from_secs(2));
        rss.push(rss_kib(exporter.pid(), "VmRSS:"));
    }
    rss.sort();
    println!(
        "startup (spawn to serving, median of {}): {:.0} ms, spread {:.0}-{:.0} ms; idle RSS median {} KiB",
        times.len(),
        median(times.clone()).as_secs_f64() * 1e3,
        times.iter().min().unwrap().as_secs_f64() * 1e3,
        times.iter().max().unwrap().as_secs_f64() * 1e3,
        rss[rss.len() / 2]
    );
}

/// An in-process table of `n` flows, and how long adding them took.
fn filled_table(n: u32) -> (FlowTable, Duration) {
    let (keys, values) = flows(n);
    let mut table = FlowTable::new(n as usize, u64::MAX);
    let started = Instant::now();
    for (key, value) in keys.iter().zip(&values) {
        table.settle(key, value);
    }
    (table, started.elapsed())
}

/// The flow families alone, from an in-process table: the encoder's share
/// of a scrape.
fn encode(n: u32) {
    use tcp_flow_exporter::exposition::chunked::WarmBuffers;
    use tcp_flow_exporter::exposition::flow_families::{body_estimate, write, OverflowTotals};
    use tcp_flow_exporter::exposition::Format;
    let (table, added) = filled_table(n);
    let mut times = Vec::new();
    let mut len = 0;
    // One set of buffers for all rounds, as in the exporter: warm after the
    // first.
    let buffers = WarmBuffers::default();
    for _ in 0..7 {
        let started = Instant::now();
        let (mut out, body) = buffers.writer(body_estimate(table.len()), false);
        write(&mut out, &table, OverflowTotals::default(), Format::Text);
        buffers.finish(out);
        times.push(started.elapsed());
        len = body.written().expect("a finished body").len();
    }
    let t = median(times);
    println!(
        "encode {n} flows: {:.1} ms ({:.3} µs per flow), {:.1} MB; adding them to the table: {:.1} ms",
        t.as_secs_f64() * 1e3,
        t.as_secs_f64() * 1e6 / f64::from(n),
        len as f64 / 1e6,
        added.as_secs_f64() * 1e3
    );
}

/// Gzip of a real body, interleaved: flate2 on one core (what the exporter
/// did before) and the exporter's gzp compressor on several.
/// BENCHMARKS.md has the run that compared both with a pool of our own.
fn gzip(n: u32) {
    use bytes::Bytes;
    use gzp::ZWriter;
    use std::io::Write;
    use tcp_flow_exporter::exposition::chunked::{
        gzip_compressor, gzip_threads, WarmBuffers, GZIP_BLOCK,
    };
    use tcp_flow_exporter::exposition::flow_families::{body_estimate, write, OverflowTotals};
    use tcp_flow_exporter::exposition::Format;

    let (table, _) = filled_table(n);
    let buffers = WarmBuffers::default();
    let (mut out, body) = buffers.writer(body_estimate(table.len()), false);
    write(&mut out, &table, OverflowTotals::default(), Format::Text);
    buffers.finish(out);
    let text = Bytes::from(body.written().expect("a finished body"));
    let threads = gzip_threads();

    let one_core = |text: &Bytes| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text).unwrap();
        gz.finish().unwrap()
    };
    let gzp = |text: &Bytes| {
        let mut gz = gzip_compressor(Vec::new());
        // In chunks, as the exporter writes them.
        for chunk in text.chunks(GZIP_BLOCK) {
            gz.write_all(chunk).unwrap();
        }
        gz.finish().unwrap()
    };
    type Compressor<'a> = &'a dyn Fn(&Bytes) -> Vec<u8>;
    let ways: [(&str, Compressor); 2] =
        [("flate2, one core", &one_core), ("gzp ParCompress", &gzp)];
    let mut times = vec![Vec::new(); ways.len()];
    let mut sizes = vec![0; ways.len()];
    for round in 0..11 {
        // A different way goes first each round.
        for i in (0..ways.len()).map(|i| (i + round) % ways.len()) {
            let started = Instant::now();
            let gz = ways[i].1(&text);
            times[i].push(started.elapsed());
            sizes[i] = gz.len();
            let mut back = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back)
                .unwrap();
            assert!(back == text, "{} does not decode to the text", ways[i].0);
        }
    }
    println!(
        "gzip of the {n}-flow body ({:.1} MB), {threads} threads, median of 11 (min-max):",
        text.len() as f64 / 1e6
    );
    for (i, (name, _)) in ways.iter().enumerate() {
        let (min, max) = (
            times[i].iter().min().unwrap(),
            times[i].iter().max().unwrap(),
        );
        println!(
            "  {name}: {:.1} ms ({:.1}-{:.1}), {:.2} MB",
            median(times[i].clone()).as_secs_f64() * 1e3,
            min.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            sizes[i] as f64 / 1e6
        );
    }
}

/// Prices for every path, as a user with a cost file has them.
const PRICES: &str = "currency: USD
unit: GB
prices:
  same_zone:    {egress: 0.001}
  cross_zone:   {egress: 0.01, ingress: 0.01}
  cross_region: {egress: 0.02}
  internet:     {egress: 0.09}
  unknown:      {egress: 0.01, ingress: 0.01}
";

/// The exporter flags after the flow count: `--cost` becomes a cost file
/// with [`PRICES`]; the rest pass through.
fn exporter_flags(args: &[String]) -> Vec<String> {
    args.iter()
        .map(|arg| match arg.as_str() {
            "--cost" => {
                let path = std::env::temp_dir()
                    .join(format!("tfe-bench-cost-{}.yaml", std::process::id()));
                std::fs::write(&path, PRICES).expect("write the cost file");
                format!("--cost.file={}", path.display())
            }
            other => other.to_owned(),
        })
        .collect()
}

/// The sum of every tcp_flow_sent_bytes_total sample of a scrape.
fn sent_total(text: &str) -> u64 {
    text.lines()
        .filter(|line| line.starts_with("tcp_flow_sent_bytes_total{"))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}

/// Request to last byte of one scrape, read into a reused buffer so that the
/// client's own copying stays out of the time. Returns the body length.
fn scrape(n: u32, flags: &[String]) {
    let exporter = planted_exporter(n, flags);
    scrape_rounds(n, &exporter);
}

/// An exporter showing `n` planted flows, every byte of them.
fn planted_exporter(n: u32, flags: &[String]) -> Exporter {
    // Port 1 is never used: the node's own traffic stays out of the numbers.
    // The flows are planted into the table the per-event backends write; the
    // socket backend's own cost per connection is in `kernel_cost walk`.
    let max = format!("--flows.max={}", n.max(1024));
    let mut args = vec![
        max.as_str(),
        "--filter.port.include=1",
        "--probe=tracepoint",
    ];
    args.extend(flags.iter().map(String::as_str));
    let exporter = Exporter::start_raw(&args);
    plant(&writing_table(), n);
    // A drain may switch tables while we plant: the flows then surface one
    // drain later. Wait until the exporter shows all of their bytes (a
    // label choice may add them into fewer series).
    let planted: u64 = flows(n).1.iter().map(|v| v.sent).sum();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, _, body) = http_get_full(exporter.addr, "/metrics", &[]).unwrap();
        if sent_total(&String::from_utf8_lossy(&body)) == planted {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "planted flows missing from the scrape"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    exporter
}

fn scrape_rounds(n: u32, exporter: &Exporter) {
    let rounds = if n >= 1_000_000 { 5 } else { 11 };
    let mut response = Vec::new();
    let (mut text, mut gz) = (Vec::new(), Vec::new());
    let (mut body, mut body_gz) = (0, 0);
    for _ in 0..rounds {
        let (t, len) = support::timed_scrape(exporter.addr, false, &mut response);
        text.push(t);
        body = len;
        let (t, len) = support::timed_scrape(exporter.addr, true, &mut response);
        gz.push(t);
        body_gz = len;
    }
    let pid = exporter.pid();
    let hwm = rss_kib(pid, "VmHWM:") * 1024;
    let rss = rss_kib(pid, "VmRSS:") * 1024;
    let text = median(text);
    let curl = median((0..rounds).map(|_| curl_scrape(exporter.addr)).collect());
    let floor = static_body_floor(exporter.addr, rounds);
    println!(
        "| {n} | {:.1} ms | {:.3} µs | {:.1} ms, {:.3} µs (static body: {:.1} ms) | {:.1} ms | {:.1} MB | {:.1} MB | {:.1} MB (peak {:.1} MB) | {:.0} B |",
        text.as_secs_f64() * 1e3,
        text.as_secs_f64() * 1e6 / f64::from(n),
        curl.as_secs_f64() * 1e3,
        curl.as_secs_f64() * 1e6 / f64::from(n),
        floor.as_secs_f64() * 1e3,
        median(gz).as_secs_f64() * 1e3,
        body as f64 / 1e6,
        body_gz as f64 / 1e6,
        rss as f64 / 1e6,
        hwm as f64 / 1e6,
        (hwm.saturating_sub(body as u64)) as f64 / f64::from(n),
    );
}

/// One text scrape as curl sees it, connect to last byte (`time_total`),
/// the body thrown away: how operators and issue 17 measure it.
fn curl_scrape(addr: std::net::SocketAddr) -> Duration {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{time_total}"])
        .arg(format!("http://{addr}/metrics"))
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "curl failed: {out:?}");
    let seconds: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    Duration::from_secs_f64(seconds)
}

/// The floor under a scrape on this machine: the same body, already in
/// memory, sent by the simplest server (one `write` per 256 KiB, as the
/// exporter's chunks) and timed by curl the same way. Median of `rounds`.
fn static_body_floor(exporter: std::net::SocketAddr, rounds: usize) -> Duration {
    use std::io::{Read, Write};
    let (_, _, body) = http_get_full(exporter, "/metrics", &[]).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        for _ in 0..rounds {
            let (mut client, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = client.read(&mut request);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            client.write_all(head.as_bytes()).unwrap();
            for chunk in body.chunks(256 * 1024) {
                client.write_all(chunk).unwrap();
            }
        }
    });
    let times = (0..rounds).map(|_| curl_scrape(addr)).collect();
    server.join().unwrap();
    median(times)
}

/// `clients` scrapers × `per_client` scrapes at once (every other one with
/// gzip), after the same mix from one scraper alone: errors, latency,
/// throughput and the exporter's peak memory in each.
fn concurrent(n: u32, clients: usize, per_client: usize) {
    use support::load::concurrent_scrapes;
    use tcp_flow_exporter::web::SCRAPES_IN_FLIGHT;
    // The planted flows see no traffic: keep them through a long load.
    let exporter = planted_exporter(n, &["--flows.idle-timeout=24h".into()]);
    let planted: u64 = flows(n).1.iter().map(|v| v.sent).sum();
    let pid = exporter.pid();
    println!(
        "| scrapers × scrapes | errors | scrapes/s | p50 | p99 | peak RSS | RSS before | bound |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (clients, per_client) in [(1, 20), (clients, per_client)] {
        let before = rss_kib(pid, "VmRSS:");
        // Every 10th body of each client is parsed in full; all are
        // checked complete.
        let load = concurrent_scrapes(exporter.addr, pid, clients, per_client, 10, planted);
        let bound = before * 1024 + (SCRAPES_IN_FLIGHT + 1) as u64 * load.text_len as u64;
        println!(
            "| {clients} × {per_client} | {} | {:.1} | {:.0} ms | {:.0} ms | {:.1} MB | {:.1} MB | {:.1} MB |",
            load.errors.len(),
            load.scrapes as f64 / load.elapsed.as_secs_f64(),
            load.latency_percentile(0.5).as_secs_f64() * 1e3,
            load.latency_percentile(0.99).as_secs_f64() * 1e3,
            load.peak_kib as f64 * 1024.0 / 1e6,
            before as f64 * 1024.0 / 1e6,
            bound as f64 / 1e6,
        );
        for e in load.errors.iter().take(5) {
            println!("  error: {e}");
        }
    }
}
