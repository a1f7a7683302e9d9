//! Many scrapers at once: `clients` threads, each scraping /metrics
//! `per_client` times back to back, every other scrape with gzip, while the
//! exporter's memory is sampled. Each body must arrive complete (the last
//! chunk, a gzip stream that decodes) and, where asked, parse line by line
//! with the planted bytes in it, exactly.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::scrape::http_get_full;

#[derive(Debug, Default)]
pub struct Load {
    pub scrapes: usize,
    pub errors: Vec<String>,
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
    /// VmHWM over the load alone (reset before it), and VmRSS after.
    pub peak_kib: u64,
    pub rss_after_kib: u64,
    pub text_len: usize,
    pub gzip_len: usize,
}

impl Load {
    pub fn latency_percentile(&self, p: f64) -> Duration {
        let mut all = self.latencies.clone();
        all.sort();
        all.get(((all.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or_default()
    }
}

pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The sum of every tcp_flow_sent_bytes_total sample of `text`, or why a
/// line is not a sample: `name{labels} value`, a comment, or nothing.
pub fn sent_total(text: &str) -> Result<u64, String> {
    let mut sum = 0;
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let bad = || format!("not a sample: {line:?}");
        let (series, value) = line.rsplit_once(' ').ok_or_else(bad)?;
        let value: f64 = value.parse().map_err(|_| bad())?;
        let name = series.split('{').next().unwrap_or("");
        if name.is_empty() || series.contains('{') != series.ends_with('}') {
            return Err(bad());
        }
        if name == "tcp_flow_sent_bytes_total" {
            sum += value as u64;
        }
    }
    if !text.ends_with('\n') {
        return Err("the body does not end with a newline".into());
    }
    Ok(sum)
}

/// One scrape: its text body, checked for completeness.
fn scrape(addr: SocketAddr, gzip: bool) -> Result<(Vec<u8>, usize), String> {
    let headers: &[(&str, &str)] = if gzip {
        &[("Accept-Encoding", "gzip")]
    } else {
        &[]
    };
    // http_get_full fails on a chunked body without its last chunk.
    let (status, head, body) =
        http_get_full(addr, "/metrics", headers).map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("status {status}"));
    }
    let wire = body.len();
    if !gzip {
        return Ok((body, wire));
    }
    if head.get("content-encoding").map(String::as_str) != Some("gzip") {
        return Err("asked for gzip, got none".into());
    }
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_end(&mut text)
        .map_err(|e| format!("gzip: {e}"))?;
    Ok((text, wire))
}

/// Runs the load against the exporter `pid` at `addr`. Every
/// `parse_every`-th body of each client (and its first) is parsed and must
/// hold `planted_sent` bytes sent; every body must be complete.
pub fn concurrent_scrapes(
    addr: SocketAddr,
    pid: u32,
    clients: usize,
    per_client: usize,
    parse_every: usize,
    planted_sent: u64,
) -> Load {
    // Writing 5 to clear_refs resets VmHWM to the current RSS.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
    let result = Arc::new(Mutex::new(Load::default()));
    let (text_len, gzip_len) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|client| {
            let (result, text_len, gzip_len) = (result.clone(), text_len.clone(), gzip_len.clone());
            std::thread::spawn(move || {
                for i in 0..per_client {
                    let gzip = (client + i) % 2 == 1;
                    let began = Instant::now();
                    let checked = scrape(addr, gzip).and_then(|(text, wire)| {
                        let len = if gzip { &gzip_len } else { &text_len };
                        len.fetch_max(wire as u64, Ordering::Relaxed);
                        if i % parse_every != 0 {
                            return Ok(());
                        }
                        let text = String::from_utf8(text).map_err(|_| "not UTF-8".to_string())?;
                        match sent_total(&text)? {
                            sum if sum == planted_sent => Ok(()),
                            sum => Err(format!("{sum} bytes sent, {planted_sent} planted")),
                        }
                    });
                    let mut result = result.lock().unwrap();
                    result.scrapes += 1;
                    result.latencies.push(began.elapsed());
                    if let Err(e) = checked {
                        result
                            .errors
                            .push(format!("client {client} scrape {i}: {e}"));
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a scraper panicked");
    }
    let mut load = std::mem::take(&mut *result.lock().unwrap());
    load.elapsed = started.elapsed();
    load.peak_kib = status_kib(pid, "VmHWM:");
    load.rss_after_kib = status_kib(pid, "VmRSS:");
    load.text_len = text_len.load(Ordering::Relaxed) as usize;
    load.gzip_len = gzip_len.load(Ordering::Relaxed) as usize;
    load
}
