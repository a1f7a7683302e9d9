//! Scraping the exporter: a bare HTTP/1.1 client, and a scrape parsed into
//! samples and flows.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

// The labels of the overflow flow: the exporter's own, written once there.
pub use tcp_flow_exporter::exposition::OVERFLOW_LABELS;

/// A minimal HTTP/1.1 GET: status and body. No client library, so the test
/// sees exactly the bytes the server sent.
pub fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, Vec<u8>)> {
    let (status, _, body) = http_get_full(addr, path, headers)?;
    Ok((status, body))
}

/// Like [`http_get`], also returning the response headers (lowercased names).
pub fn http_get_full(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, HashMap<String, String>, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = &response[split + 4..];
    let body = match headers.get("transfer-encoding").map(String::as_str) {
        Some("chunked") => dechunk(body)?,
        _ => body.to_vec(),
    };
    Ok((status, headers, body))
}

/// One full /metrics scrape for the benchmarks, timed from connect to the
/// last byte, and the body's length; `response` is kept
/// between scrapes so that the client does not fault in fresh memory.
pub fn timed_scrape(addr: SocketAddr, gzip: bool, response: &mut Vec<u8>) -> (Duration, usize) {
    let encoding = if gzip {
        "Accept-Encoding: gzip\r\n"
    } else {
        ""
    };
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{encoding}\r\n"
    )
    .unwrap();
    let mut buf = vec![0u8; 1 << 20];
    response.clear();
    loop {
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        if response.is_empty() && std::env::var_os("TFE_BENCH_TTFB").is_some() {
            eprintln!("first byte after {:?}", started.elapsed());
        }
        response.extend_from_slice(&buf[..n]);
    }
    let elapsed = started.elapsed();
    assert!(response.starts_with(b"HTTP/1.1 200"), "scrape failed");
    let head = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head")
        + 4;
    let body = dechunk(&response[head..]).expect("a complete body");
    (elapsed, body.len())
}

/// The body of a response sent with `Transfer-Encoding: chunked`; an error
/// if it does not end with the last (empty) chunk.
pub fn dechunk(mut raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let bad = |what: &str| std::io::Error::other(format!("chunked body: {what}"));
    let mut body = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("no chunk size line (truncated?)"))?;
        let size = std::str::from_utf8(&raw[..line_end])
            .ok()
            .and_then(|l| usize::from_str_radix(l.split(';').next()?.trim(), 16).ok())
            .ok_or_else(|| bad("bad chunk size"))?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if raw.len() < size + 2 || &raw[size..size + 2] != b"\r\n" {
            return Err(bad("chunk shorter than its size"));
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// One scrape, indexed by metric name and label set.
#[derive(Debug)]
pub struct Scrape {
    pub text: String,
    /// Flow series by their flow labels alone (src_ip … role), summed over
    /// identities, and every other sample as it is.
    samples: HashMap<(String, String), u64>,
    /// Flow series with every label, identity included.
    full: HashMap<(String, String), u64>,
}

/// A flow series' own labels (src_ip … role), without the identity labels
/// that follow them.
pub fn flow_part(labels: &str) -> &str {
    let Some(role) = labels.find(",role=\"") else {
        return labels;
    };
    let value = role + ",role=\"".len();
    match labels[value..].find('"') {
        Some(end) => &labels[..value + end + 1],
        None => labels,
    }
}

/// Whether a series is a flow counter's.
fn is_flow_family(name: &str) -> bool {
    name == "tcp_flow_sent_bytes_total" || name == "tcp_flow_received_bytes_total"
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let (mut samples, mut full) = (HashMap::new(), HashMap::new());
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            if let Ok(v) = value.parse::<u64>() {
                if is_flow_family(name) {
                    full.insert((name.to_owned(), labels.to_owned()), v);
                    *samples
                        .entry((name.to_owned(), flow_part(labels).to_owned()))
                        .or_default() += v;
                } else {
                    samples.insert((name.to_owned(), labels.to_owned()), v);
                }
            }
        }
        Scrape {
            text: text.to_owned(),
            samples,
            full,
        }
    }

    pub fn sample(&self, name: &str, labels: &str) -> Option<u64> {
        self.samples
            .get(&(name.to_owned(), labels.to_owned()))
            .copied()
    }

    /// Sent and received bytes of one flow.
    pub fn flow(&self, flow: &FlowId) -> Option<(u64, u64)> {
        let labels = flow.labels();
        Some((
            self.sample("tcp_flow_sent_bytes_total", &labels)?,
            self.sample("tcp_flow_received_bytes_total", &labels)?,
        ))
    }

    /// Every flow series of `name` with all its labels, identity included.
    pub fn identity_series(&self, name: &str) -> Vec<(String, u64)> {
        let mut all: Vec<_> = self
            .full
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, labels), v)| (labels.clone(), *v))
            .collect();
        all.sort();
        all
    }

    /// A flow series' sample by all its labels, identity included.
    pub fn full_sample(&self, name: &str, labels: &str) -> Option<u64> {
        self.full
            .get(&(name.to_owned(), labels.to_owned()))
            .copied()
    }

    /// Sent and received bytes of the overflow flow.
    pub fn overflow_flow(&self) -> (u64, u64) {
        let labels = flow_part(OVERFLOW_LABELS);
        (
            self.sample("tcp_flow_sent_bytes_total", labels).unwrap(),
            self.sample("tcp_flow_received_bytes_total", labels)
                .unwrap(),
        )
    }

    pub fn series(&self, name: &str) -> usize {
        self.samples.keys().filter(|(n, _)| n == name).count()
    }

    /// Every flow series but the overflow flow: labels, sent, received.
    pub fn flows(&self) -> Vec<(String, u64, u64)> {
        let mut flows: Vec<_> = self
            .samples
            .iter()
            .filter(|((name, labels), _)| {
                name == "tcp_flow_sent_bytes_total" && labels != flow_part(OVERFLOW_LABELS)
            })
            .map(|((_, labels), sent)| {
                let received = self
                    .sample("tcp_flow_received_bytes_total", labels)
                    .expect("every flow has both counters");
                (labels.clone(), *sent, received)
            })
            .collect();
        flows.sort();
        flows
    }

    /// The backend in use, from `tcp_flow_exporter_build_info`.
    pub fn backend(&self) -> String {
        self.text
            .lines()
            .find(|l| l.starts_with("tcp_flow_exporter_build_info{"))
            .and_then(|l| l.split(r#"backend=""#).nth(1))
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no backend in build_info:\n{}", self.text))
            .to_owned()
    }

    /// What the exporter reports about socket calls it did not count, as
    /// totals since it started.
    pub fn loss_reports(&self) -> LossReports {
        let misses = |kind: &str| {
            self.samples
                .iter()
                .filter(|((name, labels), _)| {
                    name == "tcp_flow_exporter_program_recursion_misses_total"
                        && labels.starts_with(&format!(r#"program="{kind}_"#))
                })
                .map(|(_, v)| v)
                .sum()
        };
        LossReports {
            missed_calls: self
                .sample("tcp_flow_exporter_missed_calls_total", "")
                .expect("tcp_flow_exporter_missed_calls_total"),
            entry_misses: misses("kprobe"),
            return_misses: misses("kretprobe"),
        }
    }
}

/// The exporter's own reports of socket calls it did not count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LossReports {
    /// `tcp_flow_exporter_missed_calls_total`: calls the kprobe backend saw
    /// only half of (a missed kretprobe, or one of the two probes skipped).
    pub missed_calls: u64,
    /// `tcp_flow_exporter_program_recursion_misses_total` of the kprobe
    /// backend's entry (`kprobe_*`) and return (`kretprobe_*`) programs.
    pub entry_misses: u64,
    pub return_misses: u64,
}

impl LossReports {
    /// The most socket calls whose bytes the exporter says it lost between
    /// `before` and `self`. A call seen only half is a missed call. A call
    /// the kernel hid from both probes (it skips kprobe programs on a CPU
    /// while a BPF syscall runs there) is no missed call, but one recursion
    /// miss of an entry program and one of a return program (Linux 6.7+
    /// counts them; older kernels report such a call nowhere).
    pub fn lost_calls_since(&self, before: &LossReports) -> u64 {
        let entry = self.entry_misses - before.entry_misses;
        let ret = self.return_misses - before.return_misses;
        self.missed_calls - before.missed_calls + entry.min(ret)
    }
}

/// A flow as the exporter labels it. Port 0 is an aggregated port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowId {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub role: &'static str,
}

impl FlowId {
    pub fn labels(&self) -> String {
        let port = |p: u16| if p == 0 { String::new() } else { p.to_string() };
        format!(
            r#"src_ip="{}",src_port="{}",dst_ip="{}",dst_port="{}",role="{}""#,
            self.local.ip(),
            port(self.local.port()),
            self.remote.ip(),
            port(self.remote.port()),
            self.role
        )
    }

    /// The flow under --flows.ports=server (the default): the client's port
    /// is dropped.
    pub fn server_port_only(mut self) -> FlowId {
        match self.role {
            "client" => self.local.set_port(0),
            "server" => self.remote.set_port(0),
            _ => {}
        }
        self
    }
}

/// The client and server flows of connections from `client_ip` to `server`
/// under --flows.ports=server.
pub fn server_mode_flows(client_ip: IpAddr, server: SocketAddr) -> (FlowId, FlowId) {
    (
        FlowId {
            local: SocketAddr::new(client_ip, 0),
            remote: server,
            role: "client",
        },
        FlowId {
            local: server,
            remote: SocketAddr::new(client_ip, 0),
            role: "server",
        },
    )
}

/// Checks one flow as the default --flows.ports=server labels it.
pub fn assert_flow(scrape: &Scrape, flow: FlowId, sent: u64, received: u64) {
    assert_exact_flow(scrape, flow.server_port_only(), sent, received);
}

pub fn assert_exact_flow(scrape: &Scrape, flow: FlowId, sent: u64, received: u64) {
    assert_eq!(
        scrape.flow(&flow),
        Some((sent, received)),
        "flow {} (sent, received)",
        flow.labels()
    );
}

/// One byte counter a test checks: the bytes the test moved, what the
/// exporter counted (`None`: no such series), and the most bytes one socket
/// call of the test moved on it.
#[derive(Clone, Debug)]
pub struct Moved {
    pub what: String,
    pub moved: u64,
    pub counted: Option<u64>,
    pub per_call: u64,
}

impl Moved {
    /// Both counters of one flow: `moved` and `per_call` are (sent,
    /// received), `counted` the flow's series, if any.
    pub fn flow(
        what: &str,
        counted: Option<(u64, u64)>,
        moved: (u64, u64),
        per_call: (u64, u64),
    ) -> [Moved; 2] {
        let one = |direction: &str, moved, counted, per_call| Moved {
            what: format!("{what} {direction}"),
            moved,
            counted,
            per_call,
        };
        [
            one("sent", moved.0, counted.map(|c| c.0), per_call.0),
            one("received", moved.1, counted.map(|c| c.1), per_call.1),
        ]
    }

    /// Socket calls needed to lose what was not counted: each lost call
    /// takes at most `per_call` bytes with it.
    fn calls_lost(&self) -> u64 {
        assert!(self.per_call > 0, "{}: per_call must be > 0", self.what);
        (self.moved - self.counted.unwrap_or(0)).div_ceil(self.per_call)
    }
}

/// Every byte of `checks` counted, exactly, between the scrapes `before`
/// and `after` of one exporter. The kprobe backend may miss calls, but only
/// calls it reports: the bytes it did not count must fit in the calls it
/// reported lost in between, each holding at most its `per_call` bytes. A
/// kprobe backend that counts nothing and reports nothing fails here.
/// Nothing is ever counted twice.
pub fn assert_counted_or_reported(before: &Scrape, after: &Scrape, checks: &[Moved]) {
    let backend = after.backend();
    let (was, now) = (before.loss_reports(), after.loss_reports());
    let table = || {
        checks
            .iter()
            .map(|c| format!("  {}: moved {}, counted {:?}", c.what, c.moved, c.counted))
            .collect::<Vec<_>>()
            .join("\n")
    };
    if backend != "kprobe" {
        for c in checks {
            assert_eq!(
                c.counted,
                Some(c.moved),
                "{backend}: {} not counted exactly:\n{}",
                c.what,
                table()
            );
        }
        assert_eq!(
            now.missed_calls, was.missed_calls,
            "{backend} reports missed calls, which only the kprobe backend can have"
        );
        return;
    }
    for c in checks {
        assert!(
            c.counted.unwrap_or(0) <= c.moved,
            "kprobe: {} counted more than was moved:\n{}",
            c.what,
            table()
        );
    }
    let lost: u64 = checks.iter().map(Moved::calls_lost).sum();
    let reported = now.lost_calls_since(&was);
    let uncounted: u64 = checks
        .iter()
        .map(|c| c.moved - c.counted.unwrap_or(0))
        .sum();
    eprintln!(
        "kprobe: {uncounted} bytes uncounted, at least {lost} calls' worth; \
         {reported} calls reported lost ({was:?} -> {now:?})"
    );
    assert!(
        lost <= reported,
        "kprobe: {uncounted} bytes uncounted need at least {lost} lost calls, but the exporter \
         reported only {reported} ({was:?} -> {now:?}):\n{}",
        table()
    );
}
