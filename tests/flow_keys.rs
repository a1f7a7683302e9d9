//! Root tests of how flows are keyed, kept and dropped: server-port
//! aggregation, one flow per connection under --flows.ports=all, overflow,
//! idle expiry, and exact sums while scrapes and drains race the probes.
//! Each test scopes its exporter to its own listener port with
//! --filter.port.include, so the node's other traffic cannot add to the sums
//! it checks.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::traffic::{self, listener, short_connection, Pair};
use support::{only_port, server_mode_flows, Exporter, Scrape};

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_server_port_mode_folds_5000_connections_into_two_flows() {
    support::require_root();
    let (listener, server) = listener("127.0.0.1");
    let exporter = Exporter::start(&[&only_port(server.port())]);
    let (mut up_total, mut down_total) = (0u64, 0u64);
    for i in 0..5000 {
        let (up, down) = (1 + i % 100, 2 + i % 7);
        short_connection(&listener, server, up, down);
        up_total += up as u64;
        down_total += down as u64;
    }
    let scrape = exporter.scrape();
    let (client, server_side) = server_mode_flows(server.ip(), server);
    assert_eq!(scrape.flow(&client), Some((up_total, down_total)));
    assert_eq!(scrape.flow(&server_side), Some((down_total, up_total)));
    let flows = scrape.flows();
    assert!(flows.len() <= 4, "{} series: {flows:?}", flows.len());
    assert_eq!(flows.len(), 2, "{flows:?}");
    assert_eq!(scrape.overflow_flow(), (0, 0));
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_all_ports_mode_keeps_one_flow_per_connection() {
    support::require_root();
    let (listener, server) = listener("127.0.0.1");
    let exporter = Exporter::start(&["--flows.ports=all", &only_port(server.port())]);
    let pairs: Vec<(Pair, u64, u64)> = (0..500)
        .map(|i| {
            let mut pair = Pair::through(&listener, server);
            let (up, down) = (1 + i * 3, 1 + i % 11);
            pair.exchange(up, down);
            (pair, up as u64, down as u64)
        })
        .collect();
    let scrape = exporter.scrape();
    for (pair, up, down) in &pairs {
        assert_eq!(scrape.flow(&pair.client_flow()), Some((*up, *down)));
        assert_eq!(scrape.flow(&pair.server_flow()), Some((*down, *up)));
    }
    assert_eq!(scrape.flows().len(), 2 * pairs.len());
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_overflow_keeps_the_sum_over_all_series_exact() {
    support::require_root();
    let (listener, server) = listener("127.0.0.1");
    let exporter = Exporter::start(&[
        "--flows.max=8",
        "--flows.ports=all",
        &only_port(server.port()),
    ]);
    let (mut up_total, mut down_total) = (0u64, 0u64);
    for i in 0..200 {
        let (up, down) = (100 + i, 1000 + 3 * i);
        short_connection(&listener, server, up, down);
        up_total += up as u64;
        down_total += down as u64;
    }
    let scrape = exporter.scrape();
    let flows = scrape.flows();
    assert!(flows.len() <= 8, "{} series", flows.len());
    let (overflow_sent, overflow_received) = scrape.overflow_flow();
    // Each byte is sent by one end and received by the other, both counted.
    let sent: u64 = flows.iter().map(|f| f.1).sum::<u64>() + overflow_sent;
    let received: u64 = flows.iter().map(|f| f.2).sum::<u64>() + overflow_received;
    assert_eq!(sent, up_total + down_total);
    assert_eq!(received, up_total + down_total);
    assert!(overflow_sent > 0 && overflow_received > 0);
    let reasons: u64 = ["flow_table_full", "series_limit"]
        .iter()
        .map(|reason| {
            scrape
                .sample(
                    "tcp_flow_exporter_overflow_bytes_total",
                    &format!(r#"direction="sent",reason="{reason}""#),
                )
                .unwrap()
        })
        .sum();
    assert_eq!(reasons, overflow_sent);
}

/// Every flow's (sent, received) in one scrape.
type Observation = HashMap<String, (u64, u64)>;

fn observe(scrape: &Scrape) -> Observation {
    scrape
        .flows()
        .into_iter()
        .map(|(labels, sent, received)| (labels, (sent, received)))
        .collect()
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_idle_flows_expire_and_no_series_ever_decreases() {
    support::require_root();
    let (listener, server) = listener("127.0.0.1");
    let exporter = Arc::new(Exporter::start(&[
        "--flows.idle-timeout=1s",
        &only_port(server.port()),
    ]));
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (exporter, stop) = (exporter.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                seen.push(observe(&exporter.scrape()));
                std::thread::sleep(Duration::from_millis(100));
            }
            seen
        })
    };
    let (client, server_side) = server_mode_flows(server.ip(), server);

    // Churn: the kernel entry of the one client flow is deleted at every
    // drain and created again by the next connection.
    let churn = |duration: Duration| {
        let started = Instant::now();
        let mut n = 0u64;
        while started.elapsed() < duration {
            short_connection(&listener, server, 100, 10);
            n += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        n
    };
    let first = churn(Duration::from_millis(2500));
    // Idle for longer than the timeout plus a drain interval.
    std::thread::sleep(Duration::from_millis(3500));
    let expired = exporter.scrape();
    assert_eq!(expired.flow(&client), None, "idle flow still exported");
    assert_eq!(expired.flow(&server_side), None, "idle flow still exported");
    assert!(
        expired
            .sample("tcp_flow_exporter_flows_expired_total", "")
            .unwrap()
            >= 2
    );
    let second = churn(Duration::from_millis(500));
    let last = exporter.scrape();
    stop.store(true, Ordering::Relaxed);
    let mut seen = poller.join().unwrap();
    seen.push(observe(&last));

    // While a series is exported, no scrape shows it lower than before.
    for pair in seen.windows(2) {
        for (labels, now) in &pair[1] {
            if let Some(before) = pair[0].get(labels) {
                assert!(
                    now.0 >= before.0 && now.1 >= before.1,
                    "{labels} went from {before:?} to {now:?}"
                );
            }
        }
    }
    // The series was exported in two runs: the first ended at exactly the
    // first churn's bytes, then it expired, then it came back.
    let labels = client.labels();
    let mut runs: Vec<Vec<(u64, u64)>> = vec![];
    let mut present = false;
    for observation in &seen {
        match observation.get(&labels) {
            Some(v) if present => runs.last_mut().unwrap().push(*v),
            Some(v) => runs.push(vec![*v]),
            None => {}
        }
        present = observation.contains_key(&labels);
    }
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_counted(runs[0].last().copied(), (first * 100, first * 10));
    // After expiry the flow started again from nothing.
    assert_counted(last.flow(&client), (second * 100, second * 10));
    assert_counted(last.flow(&server_side), (second * 10, second * 100));
}

/// Exactly `expected`; with the kprobe backend, which Linux skips while a
/// BPF map syscall runs on the same CPU (see the swap test below), at most
/// `expected`.
fn assert_counted(actual: Option<(u64, u64)>, expected: (u64, u64)) {
    if support::probe_under_test() == "kprobe" {
        let (sent, received) = actual.unwrap_or((0, 0));
        assert!(
            sent <= expected.0 && received <= expected.1,
            "kprobe: counted {actual:?}, more than {expected:?}"
        );
    } else {
        assert_eq!(actual, Some(expected));
    }
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_counts_stay_exact_while_scrapes_read_and_drains_swap_the_tables_under_load() {
    support::require_root();
    // Every scrape reads the kernel table the probes write, and the drain
    // once a second switches the probes to the other table and empties the
    // old one, all while senders keep writing: not a byte may fall between
    // or count twice. (The race the swap prevents, an add to an entry being
    // deleted, is a window of nanoseconds: this test would rarely catch its
    // return, but it does catch a drain that loses or repeats a table, or
    // repeats what a scrape already took.)
    const STREAMS: usize = 4;
    const SCRAPES: usize = 30;
    // Long enough for at least two drains (one a second) between scrapes.
    const LASTING: Duration = Duration::from_millis(2500);
    let (listener, server) = listener("127.0.0.1");
    let exporter = Arc::new(Exporter::start(&[
        "--flows.ports=all",
        &only_port(server.port()),
    ]));
    let pairs: Vec<Pair> = (0..STREAMS)
        .map(|_| Pair::through(&listener, server))
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let scraper = {
        let (exporter, done) = (exporter.clone(), done.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            for _ in 0..SCRAPES {
                exporter.scrape();
                // Spread the scrapes over LASTING, so drains fall between.
                std::thread::sleep(LASTING / SCRAPES as u32);
            }
            while started.elapsed() < LASTING {
                std::thread::sleep(Duration::from_millis(10));
            }
            done.store(true, Ordering::Relaxed);
        })
    };
    let streams: Vec<_> = pairs
        .iter()
        .map(|pair| {
            let mut client = pair.client.try_clone().unwrap();
            let mut server = pair.server.try_clone().unwrap();
            let done = done.clone();
            std::thread::spawn(move || {
                let reader = std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 << 10];
                    let mut total = 0u64;
                    loop {
                        match server.read(&mut buf).unwrap() {
                            0 => return total,
                            n => total += n as u64,
                        }
                    }
                });
                // Small writes until the scraper is done: many events, each
                // a chance to race a swap.
                let chunk = traffic::payload(4096);
                let mut sent = 0u64;
                while !done.load(Ordering::Relaxed) {
                    client.write_all(&chunk).unwrap();
                    sent += chunk.len() as u64;
                }
                client.shutdown(std::net::Shutdown::Write).unwrap();
                let received = reader.join().unwrap();
                assert_eq!(sent, received);
                sent
            })
        })
        .collect();
    let sent: Vec<u64> = streams.into_iter().map(|s| s.join().unwrap()).collect();
    scraper.join().unwrap();
    let scrape = exporter.scrape();
    if support::probe_under_test() == "kprobe" {
        // Linux skips kprobe programs on a CPU while a BPF map syscall runs
        // there (bpf_prog_active), and the task in that syscall can be
        // preempted: a socket call on that CPU then passes both probes
        // unseen. The scrapes' reads and the drains are such syscalls (Linux
        // 5.10 lost 44% here with 30 back-to-back drains). The kprobe
        // backend may undercount then; never overcount.
        for (pair, bytes) in pairs.iter().zip(sent) {
            let (client, server) = (
                scrape.flow(&pair.client_flow()).unwrap_or((0, 0)),
                scrape.flow(&pair.server_flow()).unwrap_or((0, 0)),
            );
            assert!(client.0 <= bytes && client.1 == 0, "{client:?} of {bytes}");
            assert!(server.1 <= bytes && server.0 == 0, "{server:?} of {bytes}");
            eprintln!(
                "kprobe: counted {} and {} of {bytes} bytes",
                client.0, server.1
            );
        }
        return;
    }
    for (pair, bytes) in pairs.iter().zip(sent) {
        assert_eq!(scrape.flow(&pair.client_flow()), Some((bytes, 0)));
        assert_eq!(scrape.flow(&pair.server_flow()), Some((0, bytes)));
    }
}
