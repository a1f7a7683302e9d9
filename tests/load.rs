//! Root load test: 20 scrapers × 10 scrapes at once of an exporter holding
//! 10k planted flows, text and gzip mixed. Every scrape succeeds, every
//! body is complete, parses, and holds exactly the planted bytes; and the
//! exporter's peak memory during the load stays under what it held before
//! plus [`SCRAPES_IN_FLIGHT`] + 1 text bodies: at most that many bodies are
//! in flight, and the one being written may hold its full estimate.
//! `cargo bench --bench exporter -- concurrent 100000 50 100` runs the same
//! at scale; BENCHMARKS.md has its numbers.

mod support;

use std::time::{Duration, Instant};

use support::load::{concurrent_scrapes, sent_total, status_kib};
use support::plant::{flows, plant, writing_table};
use support::{http_get, Exporter};
use tcp_flow_exporter::web::SCRAPES_IN_FLIGHT;

const FLOWS: u32 = 10_000;

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_twenty_concurrent_scrapers_get_complete_exact_bodies_in_bounded_memory() {
    support::require_root();
    // Port 1 is never used: only the planted flows are counted.
    let exporter = Exporter::start_raw(&[
        "--flows.max=20000",
        "--filter.port.include=1",
        "--probe=tracepoint",
    ]);
    plant(&writing_table(), FLOWS);
    let planted: u64 = flows(FLOWS).1.iter().map(|v| v.sent).sum();
    // A drain may switch tables while we plant: wait for every byte.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = http_get(exporter.addr, "/metrics", &[]).unwrap();
        if sent_total(&String::from_utf8(body).unwrap()) == Ok(planted) {
            break;
        }
        assert!(Instant::now() < deadline, "planted flows missing");
        std::thread::sleep(Duration::from_millis(200));
    }
    let before_kib = status_kib(exporter.pid(), "VmRSS:");

    let load = concurrent_scrapes(exporter.addr, exporter.pid(), 20, 10, 1, planted);

    assert_eq!(load.scrapes, 200);
    assert!(load.errors.is_empty(), "{:#?}", load.errors);
    let bound_kib = before_kib + ((SCRAPES_IN_FLIGHT + 1) * load.text_len / 1024) as u64;
    eprintln!(
        "{} scrapes in {:?}, p50 {:?}, p99 {:?}; body {} B text, {} B gzip; \
         RSS {before_kib} KiB before, peak {} KiB (bound {bound_kib} KiB), {} KiB after",
        load.scrapes,
        load.elapsed,
        load.latency_percentile(0.5),
        load.latency_percentile(0.99),
        load.text_len,
        load.gzip_len,
        load.peak_kib,
        load.rss_after_kib,
    );
    assert!(
        load.peak_kib <= bound_kib,
        "peak RSS {} KiB above {bound_kib} KiB",
        load.peak_kib
    );
}
