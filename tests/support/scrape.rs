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
    samples: HashMap<(String, String), u64>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut samples = HashMap::new();
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
                samples.insert((name.to_owned(), labels.to_owned()), v);
            }
        }
        Scrape {
            text: text.to_owned(),
            samples,
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

    /// Sent and received bytes of the overflow flow.
    pub fn overflow_flow(&self) -> (u64, u64) {
        let labels = OVERFLOW_LABELS;
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
                name == "tcp_flow_sent_bytes_total" && labels != OVERFLOW_LABELS
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
