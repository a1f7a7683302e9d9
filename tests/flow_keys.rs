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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::traffic::{self, listener, short_connection, Pair};
use support::{assert_counted_or_reported, only_port, server_mode_flows, Exporter, Moved, Scrape};

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
    // 3 s, not the minimum of 1 s: the poller must see each run's final
    // value before it expires, and `last` below must come before the second
    // run expires. With 1 s, a TCG guest on a busy host missed both (a
    // scrape there can take most of a second).
    let exporter = Arc::new(Exporter::start(&[
        "--flows.idle-timeout=3s",
        &only_port(server.port()),
    ]));
    let start = exporter.scrape();
    let stop = Arc::new(AtomicBool::new(false));
    // Every scrape of the poller, in order.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let poller = {
        let (exporter, stop, seen) = (exporter.clone(), stop.clone(), seen.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let observation = observe(&exporter.scrape());
                seen.lock().unwrap().push(observation);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let (client, server_side) = server_mode_flows(server.ip(), server);
    let (client_labels, server_labels) = (client.labels(), server_side.labels());

    // Churn: the kernel entry of the one client flow is deleted at every
    // drain and created again by the next connection.
    // Returns the number of connections and when the last one began: no
    // byte moved before that instant, so none of the flows' bytes is older.
    let churn = |duration: Duration| {
        let started = Instant::now();
        let (mut n, mut last_began) = (0u64, started);
        while started.elapsed() < duration {
            last_began = Instant::now();
            short_connection(&listener, server, 100, 10);
            n += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        (n, last_began)
    };
    let (first, idle_since) = churn(Duration::from_millis(2500));
    // Idle until the poller has seen both series end, so that it sees the
    // series run twice: after the 3 s timeout, at the next drain (once a
    // second). Not before the timeout, and not much later.
    loop {
        let gone = seen.lock().unwrap().last().is_some_and(|latest| {
            !latest.contains_key(&client_labels) && !latest.contains_key(&server_labels)
        });
        if gone {
            break;
        }
        assert!(
            idle_since.elapsed() < Duration::from_secs(30),
            "flows idle for 30 s still exported (idle timeout 3 s)"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let idle = idle_since.elapsed();
    // Exact, with no allowance: the last bytes moved after `idle_since`,
    // and the exporter stamps them no earlier than it saw them.
    assert!(
        idle > Duration::from_secs(3),
        "flows expired {idle:?} after their last connection began, before the 3 s timeout"
    );
    let expired = exporter.scrape();
    assert_eq!(expired.flow(&client), None, "idle flow exported again");
    assert_eq!(expired.flow(&server_side), None, "idle flow exported again");
    assert!(
        expired
            .sample("tcp_flow_exporter_flows_expired_total", "")
            .unwrap()
            >= 2
    );
    let (second, _) = churn(Duration::from_millis(500));
    // Churned on this thread: one more call reveals a missed last return.
    traffic::reveal_missed_return(&Pair::on("127.0.0.1").client);
    let last = exporter.scrape();
    stop.store(true, Ordering::Relaxed);
    poller.join().unwrap();
    let mut seen = std::mem::take(&mut *seen.lock().unwrap());
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
    let mut runs: Vec<Vec<(u64, u64)>> = vec![];
    let mut present = false;
    for observation in &seen {
        match observation.get(&client_labels) {
            Some(v) if present => runs.last_mut().unwrap().push(*v),
            Some(v) => runs.push(vec![*v]),
            None => {}
        }
        present = observation.contains_key(&client_labels);
    }
    assert_eq!(runs.len(), 2, "{runs:?}");
    // The first run ended at the first churn's bytes; after expiry the flow
    // started again from nothing. Each connection's calls move at most 100
    // bytes (the client's one write, the server's reads of it) or 10 (the
    // answer).
    let (big, small) = (100, 10);
    let checks: Vec<Moved> = [
        Moved::flow(
            "client, first run",
            runs[0].last().copied(),
            (first * big, first * small),
            (big, small),
        ),
        Moved::flow(
            "client, after expiry",
            last.flow(&client),
            (second * big, second * small),
            (big, small),
        ),
        Moved::flow(
            "server, after expiry",
            last.flow(&server_side),
            (second * small, second * big),
            (small, big),
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert_counted_or_reported(&start, &last, &checks);
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
    // Bytes of one write, and the most one read takes.
    const WRITE: usize = 4096;
    const READ: usize = 64 << 10;
    let (listener, server) = listener("127.0.0.1");
    let exporter = Arc::new(Exporter::start(&[
        "--flows.ports=all",
        &only_port(server.port()),
    ]));
    let start = exporter.scrape();
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
                    let mut buf = vec![0u8; READ];
                    let mut total = 0u64;
                    loop {
                        match server.read(&mut buf).unwrap() {
                            0 => break,
                            n => total += n as u64,
                        }
                    }
                    traffic::reveal_missed_return(&server);
                    total
                });
                // Small writes until the scraper is done: many events, each
                // a chance to race a swap.
                let chunk = traffic::payload(WRITE);
                let mut sent = 0u64;
                while !done.load(Ordering::Relaxed) {
                    client.write_all(&chunk).unwrap();
                    sent += chunk.len() as u64;
                }
                client.shutdown(std::net::Shutdown::Write).unwrap();
                traffic::reveal_missed_return(&client);
                let received = reader.join().unwrap();
                assert_eq!(sent, received);
                sent
            })
        })
        .collect();
    let sent: Vec<u64> = streams.into_iter().map(|s| s.join().unwrap()).collect();
    scraper.join().unwrap();
    let scrape = exporter.scrape();
    // Linux skips kprobe programs on a CPU while a BPF map syscall runs
    // there (bpf_prog_active), and the task in that syscall can be
    // preempted: a socket call on that CPU then passes one probe or both
    // unseen. The scrapes' reads and the drains are such syscalls (Linux
    // 5.10 lost 44% here with 30 back-to-back drains). The kprobe backend
    // may lose those calls, but only calls it reports.
    let checks: Vec<Moved> = pairs
        .iter()
        .zip(sent)
        .flat_map(|(pair, bytes)| {
            let (client, server) = (pair.client_flow(), pair.server_flow());
            let per_call = (WRITE as u64, READ as u64);
            let client = Moved::flow(&client.labels(), scrape.flow(&client), (bytes, 0), per_call);
            let server = Moved::flow(&server.labels(), scrape.flow(&server), (0, bytes), per_call);
            client.into_iter().chain(server)
        })
        .collect();
    assert_counted_or_reported(&start, &scrape, &checks);
}
