//! Root tests: real bytes over loopback, compared with the exporter's
//! counters for exactly the flows each test created: both directions over
//! IPv4, IPv6 and IPv4-mapped sockets, many connections, a large transfer,
//! and every way of moving bytes (a huge receive buffer, MSG_PEEK, sendfile,
//! vectored I/O, many receivers blocked at once). Every test listens on a
//! port of its own, so under the default --flows.ports=server its flows are
//! still its own.

mod support;

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::time::Duration;

use support::traffic::{self, Pair};
use support::{assert_counted_or_reported, assert_exact_flow, assert_flow, Exporter, Moved};

fn exchange_on(ip: &str) {
    let exporter = Exporter::start(&[]);
    let mut pair = Pair::on(ip);
    pair.exchange(100_000, 54_321);
    let scrape = exporter.scrape();
    assert_flow(&scrape, pair.client_flow(), 100_000, 54_321);
    assert_flow(&scrape, pair.server_flow(), 54_321, 100_000);
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_ipv4_counts_both_directions_exactly() {
    support::require_root();
    exchange_on("127.0.0.1");
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_ipv6_counts_both_directions_exactly() {
    support::require_root();
    exchange_on("::1");
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_ipv4_mapped_ipv6_socket_counts_as_ipv4() {
    support::require_root();
    let exporter = Exporter::start(&[]);
    // A dual-stack listener accepts the IPv4 client on an AF_INET6 socket
    // whose addresses are ::ffff:127.0.0.1.
    let listener = TcpListener::bind("[::]:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut pair = Pair::through(&listener, format!("127.0.0.1:{port}").parse().unwrap());
    assert!(
        pair.server.local_addr().unwrap().is_ipv6(),
        "server socket must be AF_INET6"
    );
    pair.exchange(4_321, 1_234);
    let scrape = exporter.scrape();
    let flow = pair.server_flow();
    assert!(flow.local.is_ipv4() && flow.remote.is_ipv4());
    assert_flow(&scrape, flow, 1_234, 4_321);
    assert!(
        !scrape.text.contains("::ffff:"),
        "v4-mapped address leaked into labels"
    );
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_many_connections_each_exact() {
    support::require_root();
    let exporter = Exporter::start(&["--flows.ports=all"]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap();
    let pairs: Vec<(Pair, usize, usize)> = (0..300)
        .map(|i| {
            let mut pair = Pair::through(&listener, target);
            let (up, down) = (1 + i * 131, 7 + i * 17);
            pair.exchange(up, down);
            (pair, up, down)
        })
        .collect();
    let scrape = exporter.scrape();
    for (pair, up, down) in &pairs {
        assert_exact_flow(&scrape, pair.client_flow(), *up as u64, *down as u64);
        assert_exact_flow(&scrape, pair.server_flow(), *down as u64, *up as u64);
    }
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_large_transfer_exact() {
    support::require_root();
    let exporter = Exporter::start(&[]);
    let mut pair = Pair::on("127.0.0.1");
    let len = 256 << 20;
    pair.exchange(len, 0);
    let scrape = exporter.scrape();
    assert_flow(&scrape, pair.client_flow(), len as u64, 0);
    assert_flow(&scrape, pair.server_flow(), 0, len as u64);
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_huge_receive_buffer_counts_bytes_received_not_buffer_size() {
    support::require_root();
    let exporter = Exporter::start(&[]);
    let mut pair = Pair::on("127.0.0.1");
    let mut huge = vec![0u8; 1 << 20];
    for _ in 0..50 {
        pair.client.write_all(b"0123456789").unwrap();
        assert_eq!(pair.server.read(&mut huge).unwrap(), 10);
        pair.server.write_all(b"k").unwrap();
        assert_eq!(pair.client.read(&mut huge).unwrap(), 1);
    }
    let scrape = exporter.scrape();
    assert_flow(&scrape, pair.server_flow(), 50, 500);
    assert_flow(&scrape, pair.client_flow(), 500, 50);
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_msg_peek_is_not_counted() {
    support::require_root();
    let exporter = Exporter::start(&[]);
    let mut pair = Pair::on("127.0.0.1");
    pair.client.write_all(&traffic::payload(1000)).unwrap();
    for _ in 0..3 {
        assert_eq!(traffic::peek(&pair.server, 1000), 1000);
    }
    assert_eq!(pair.server.peek(&mut [0u8; 100]).unwrap(), 100);
    traffic::read_exactly(&mut pair.server, 1000);
    let scrape = exporter.scrape();
    assert_flow(&scrape, pair.server_flow(), 0, 1000);
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_sendfile_is_counted() {
    support::require_root();
    let exporter = Exporter::start(&[]);
    let path = support::temp_path("sendfile");
    let len = (3 << 20) + 17;
    std::fs::write(&path, traffic::payload(len)).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let mut pair = Pair::on("127.0.0.1");
    let mut server = pair.server.try_clone().unwrap();
    let reader = std::thread::spawn(move || traffic::read_exactly(&mut server, len));
    assert_eq!(traffic::sendfile_all(&pair.client, &file, len), len);
    reader.join().unwrap();
    std::fs::remove_file(&path).unwrap();
    let scrape = exporter.scrape();
    assert_flow(&scrape, pair.client_flow(), len as u64, 0);
    assert_flow(&scrape, pair.server_flow(), 0, len as u64);
    pair.client.flush().unwrap();
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_vectored_io_is_counted() {
    support::require_root();
    let exporter = Exporter::start(&[]);
    let mut pair = Pair::on("127.0.0.1");
    let (a, b, c) = (
        traffic::payload(100),
        traffic::payload(2000),
        traffic::payload(30_000),
    );
    // writev/readv through std's vectored I/O.
    let written = pair
        .client
        .write_vectored(&[IoSlice::new(&a), IoSlice::new(&b), IoSlice::new(&c)])
        .unwrap();
    assert_eq!(written, 32_100, "loopback buffers take 32 KiB at once");
    let mut got = 0;
    while got < written {
        let (mut x, mut y) = (vec![0u8; 50], vec![0u8; 40_000]);
        got += pair
            .server
            .read_vectored(&mut [IoSliceMut::new(&mut x), IoSliceMut::new(&mut y)])
            .unwrap();
    }
    assert_eq!(got, written);
    // sendmsg/recvmsg with iovecs, the other way.
    assert_eq!(traffic::sendmsg_iov(&pair.server, &[&a, &b]), 2_100);
    let mut received = 0;
    while received < 2_100 {
        received += traffic::recvmsg_iov(&pair.client, &[7, 5000]);
    }
    let scrape = exporter.scrape();
    assert_flow(&scrape, pair.client_flow(), 32_100, 2_100);
    assert_flow(&scrape, pair.server_flow(), 2_100, 32_100);
}

/// The kernel's default kretprobe `maxactive`, the number of calls of one
/// function a kretprobe follows at once: max(10, 2 x possible CPUs)
/// (register_kretprobe(); without CONFIG_PREEMPTION older kernels use the
/// possible CPUs, fewer).
fn kretprobe_default_maxactive() -> usize {
    let possible = std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .expect("/sys/devices/system/cpu/possible");
    (10).max(2 * cpu_list_len(possible.trim()))
}

/// How many CPUs a kernel CPU list such as `0-3,8,10-11` names.
fn cpu_list_len(list: &str) -> usize {
    list.split(',')
        .map(|range| match range.split_once('-') {
            Some((a, b)) => b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1,
            None => {
                range.parse::<usize>().unwrap();
                1
            }
        })
        .sum()
}

#[test]
fn cpu_lists_are_counted() {
    assert_eq!(cpu_list_len("0"), 1);
    assert_eq!(cpu_list_len("0-1"), 2);
    assert_eq!(cpu_list_len("0-3,8,10-11"), 7);
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_concurrent_blocked_receivers_are_counted_or_reported() {
    support::require_root();
    // Twice as many receivers blocked in recv() at once as a kretprobe
    // follows by default on this machine: the kprobe backend then misses
    // returns (Linux 6.12 on 2 CPUs: 10 of 20 in each round), and must report
    // each in tcp_flow_exporter_missed_calls_total. Every other backend must
    // count every byte.
    let receivers = 2 * kretprobe_default_maxactive();
    // Server ports may repeat across pairs (see closing.rs): one flow per connection.
    let exporter = Exporter::start(&["--flows.ports=all"]);
    let before = exporter.scrape();
    let pairs: Vec<Pair> = (0..receivers).map(|_| Pair::on("127.0.0.1")).collect();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(receivers + 1));
    let (tids, readers): (Vec<_>, Vec<_>) = pairs
        .iter()
        .map(|p| {
            let mut server = p.server.try_clone().unwrap();
            let fd = server.as_raw_fd();
            let barrier = barrier.clone();
            let (tid_tx, tid_rx) = std::sync::mpsc::channel();
            let reader = std::thread::spawn(move || {
                // SAFETY: gettid has no preconditions and cannot fail.
                tid_tx.send(unsafe { libc::gettid() }).unwrap();
                let mut buf = [0u8; 64];
                for _ in 0..2 {
                    barrier.wait();
                    assert_eq!(server.read(&mut buf).unwrap(), 1);
                }
                // A third call, so that a missed return of the second shows.
                traffic::reveal_missed_return(&server);
            });
            ((tid_rx.recv().unwrap(), fd), reader)
        })
        .unzip();
    for _ in 0..2 {
        barrier.wait();
        // Every reader asleep inside recv() before any byte arrives.
        for &(tid, fd) in &tids {
            traffic::wait_blocked_in_recv(tid, fd, Duration::from_secs(60));
        }
        for p in &pairs {
            (&p.client).write_all(b"x").unwrap();
        }
    }
    readers.into_iter().for_each(|r| r.join().unwrap());
    // The writers' calls too: one more call on the sending thread.
    traffic::reveal_missed_return(&pairs[0].client);

    let after = exporter.scrape();
    let checks: Vec<Moved> = pairs
        .iter()
        .flat_map(|p| {
            let (client, server) = (p.client_flow(), p.server_flow());
            // Two one-byte writes and two one-byte reads per pair.
            let one = (1, 1);
            let client = Moved::flow(&client.labels(), after.flow(&client), (2, 0), one);
            let server = Moved::flow(&server.labels(), after.flow(&server), (0, 2), one);
            client.into_iter().chain(server)
        })
        .collect();
    assert_counted_or_reported(&before, &after, &checks);
}
