//! Root tests: real bytes over loopback, compared with the exporter's
//! counters for exactly the flows each test created. Every test listens on a
//! port of its own, so under the default --flows.ports=server its flows are
//! still its own.

mod common;

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::net::TcpListener;

use common::traffic::{self, Pair};
use common::{root_or_skip, Exporter, FlowId, Scrape};

/// Checks one flow as the default --flows.ports=server labels it.
fn assert_flow(scrape: &Scrape, flow: FlowId, sent: u64, received: u64) {
    assert_exact_flow(scrape, flow.server_port_only(), sent, received);
}

fn assert_exact_flow(scrape: &Scrape, flow: FlowId, sent: u64, received: u64) {
    assert_eq!(
        scrape.flow(&flow),
        Some((sent, received)),
        "flow {} (sent, received)",
        flow.labels()
    );
}

fn exchange_on(ip: &str) {
    let exporter = Exporter::start(&[]);
    let mut pair = Pair::on(ip);
    pair.exchange(100_000, 54_321);
    let scrape = exporter.scrape();
    assert_flow(&scrape, pair.client_flow(), 100_000, 54_321);
    assert_flow(&scrape, pair.server_flow(), 54_321, 100_000);
}

#[test]
fn root_ipv4_counts_both_directions_exactly() {
    if root_or_skip("root_ipv4_counts_both_directions_exactly") {
        exchange_on("127.0.0.1");
    }
}

#[test]
fn root_ipv6_counts_both_directions_exactly() {
    if root_or_skip("root_ipv6_counts_both_directions_exactly") {
        exchange_on("::1");
    }
}

#[test]
fn root_ipv4_mapped_ipv6_socket_counts_as_ipv4() {
    if !root_or_skip("root_ipv4_mapped_ipv6_socket_counts_as_ipv4") {
        return;
    }
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
fn root_many_connections_each_exact() {
    if !root_or_skip("root_many_connections_each_exact") {
        return;
    }
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
fn root_large_transfer_exact() {
    if !root_or_skip("root_large_transfer_exact") {
        return;
    }
    let exporter = Exporter::start(&[]);
    let mut pair = Pair::on("127.0.0.1");
    let len = 256 << 20;
    pair.exchange(len, 0);
    let scrape = exporter.scrape();
    assert_flow(&scrape, pair.client_flow(), len as u64, 0);
    assert_flow(&scrape, pair.server_flow(), 0, len as u64);
}

#[test]
fn root_connections_closed_before_the_scrape_stay_counted() {
    if !root_or_skip("root_connections_closed_before_the_scrape_stay_counted") {
        return;
    }
    // Pair::on's listener closes at once, so a later pair may get the same
    // server port, and --flows.ports=server would rightly add them up. One
    // flow per connection keeps the pairs apart.
    let exporter = Exporter::start(&["--flows.ports=all"]);
    let flows: Vec<_> = (0..20)
        .map(|i| {
            let mut pair = Pair::on("127.0.0.1");
            pair.exchange(1000 + i, 2000 + i);
            let flows = (
                pair.client_flow(),
                pair.server_flow(),
                1000 + i as u64,
                2000 + i as u64,
            );
            drop(pair);
            flows
        })
        .collect();
    let scrape = exporter.scrape();
    for (client, server, up, down) in flows {
        assert_exact_flow(&scrape, client, up, down);
        assert_exact_flow(&scrape, server, down, up);
    }
}

#[test]
fn root_huge_receive_buffer_counts_bytes_received_not_buffer_size() {
    if !root_or_skip("root_huge_receive_buffer_counts_bytes_received_not_buffer_size") {
        return;
    }
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
fn root_msg_peek_is_not_counted() {
    if !root_or_skip("root_msg_peek_is_not_counted") {
        return;
    }
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
fn root_sendfile_is_counted() {
    if !root_or_skip("root_sendfile_is_counted") {
        return;
    }
    let exporter = Exporter::start(&[]);
    let path = common::temp_path("sendfile");
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
fn root_vectored_io_is_counted() {
    if !root_or_skip("root_vectored_io_is_counted") {
        return;
    }
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

#[test]
fn root_concurrent_blocked_receivers_are_counted_or_reported() {
    if !root_or_skip("root_concurrent_blocked_receivers_are_counted_or_reported") {
        return;
    }
    // More receivers blocked at once than a kretprobe tracks by default
    // (max(10, 2 x CPUs)): the kprobe backend may miss some returns, and must
    // then report each in tcp_flow_exporter_missed_calls_total. Every other
    // backend must count every byte.
    const RECEIVERS: usize = 48;
    // Server ports may repeat across pairs (see above): one flow per connection.
    let exporter = Exporter::start(&["--flows.ports=all"]);
    let missed_before = exporter
        .scrape()
        .sample("tcp_flow_exporter_missed_calls_total", "")
        .unwrap();
    let pairs: Vec<Pair> = (0..RECEIVERS).map(|_| Pair::on("127.0.0.1")).collect();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(RECEIVERS + 1));
    let readers: Vec<_> = pairs
        .iter()
        .map(|p| {
            let mut server = p.server.try_clone().unwrap();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                for _ in 0..2 {
                    barrier.wait();
                    assert_eq!(server.read(&mut buf).unwrap(), 1);
                }
                // A third call, so that a missed return of the second shows.
                server.set_nonblocking(true).unwrap();
                assert!(server.read(&mut buf).is_err());
            })
        })
        .collect();
    for _ in 0..2 {
        barrier.wait();
        // Let every reader block inside recv() before the byte arrives.
        std::thread::sleep(std::time::Duration::from_millis(500));
        for p in &pairs {
            (&p.client).write_all(b"x").unwrap();
        }
    }
    readers.into_iter().for_each(|r| r.join().unwrap());

    let scrape = exporter.scrape();
    let missed = scrape
        .sample("tcp_flow_exporter_missed_calls_total", "")
        .unwrap()
        - missed_before;
    let mut uncounted = 0;
    for p in &pairs {
        let flow = p.server_flow();
        let received = scrape.flow(&flow).map_or(0, |(_, r)| r);
        assert!(received <= 2, "{}: {received}", flow.labels());
        uncounted += 2 - received;
    }
    if common::probe_under_test() == "kprobe" {
        assert!(
            uncounted <= missed,
            "{uncounted} bytes uncounted but only {missed} calls reported missed"
        );
    } else {
        assert_eq!((uncounted, missed), (0, 0));
    }
}

/// Sets SO_LINGER to {on, 0 s}: close() then resets the connection at once
/// (tcp_disconnect) instead of sending a FIN.
fn linger_zero(socket: &std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt with a valid fd and a correctly sized option.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
}

#[test]
fn root_fin_and_end_of_stream_are_not_bytes() {
    if !root_or_skip("root_fin_and_end_of_stream_are_not_bytes") {
        return;
    }
    // Both ends shut down their sending side and read the other's to EOF: a
    // FIN takes a sequence number on each side, but it is not payload.
    let exporter = Exporter::start(&[]);
    let mut pair = Pair::on("127.0.0.1");
    let (client, server) = (pair.client_flow(), pair.server_flow());
    pair.client.write_all(&traffic::payload(3_000)).unwrap();
    pair.client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = Vec::new();
    pair.server.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), 3_000);
    pair.server.write_all(&traffic::payload(4_000)).unwrap();
    pair.server.shutdown(std::net::Shutdown::Write).unwrap();
    got.clear();
    pair.client.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), 4_000);
    // Both sockets are in TCP_CLOSE now, still open in this process, and the
    // client read the server's bytes after its socket closed.
    let scrape = exporter.scrape();
    assert_flow(&scrape, client, 3_000, 4_000);
    assert_flow(&scrape, server, 4_000, 3_000);
    drop(pair);
    let scrape = exporter.scrape();
    assert_flow(&scrape, client, 3_000, 4_000);
    assert_flow(&scrape, server, 4_000, 3_000);
}

#[test]
fn root_unread_data_dropped_by_a_reset_is_not_received() {
    if !root_or_skip("root_unread_data_dropped_by_a_reset_is_not_received") {
        return;
    }
    // The server reads 1,000 of 5,000 bytes and closes: Linux answers the
    // unread data with a reset and drops it. The client sent 5,000; the
    // server application received 1,000.
    let exporter = Exporter::start(&[]);
    let mut pair = Pair::on("127.0.0.1");
    let (client, server) = (pair.client_flow(), pair.server_flow());
    pair.client.write_all(&traffic::payload(5_000)).unwrap();
    traffic::read_exactly(&mut pair.server, 1_000);
    // Everything has arrived in the server's receive queue before it closes.
    while traffic::peek(&pair.server, 4_000) < 4_000 {}
    drop(pair.server);
    let mut rest = Vec::new();
    let _ = pair.client.read_to_end(&mut rest); // ECONNRESET
    drop(pair.client);
    let scrape = exporter.scrape();
    assert_flow(&scrape, client, 5_000, 0);
    assert_flow(&scrape, server, 0, 1_000);
}

#[test]
fn root_abortive_close_counts_what_was_moved() {
    if !root_or_skip("root_abortive_close_counts_what_was_moved") {
        return;
    }
    // SO_LINGER 0: close() goes through tcp_disconnect(), which resets the
    // socket's sequence state. Both ends have read everything first, and
    // the client has even read the server's FIN.
    let exporter = Exporter::start(&[]);
    let mut pair = Pair::on("127.0.0.1");
    let (client, server) = (pair.client_flow(), pair.server_flow());
    pair.exchange(2_500, 1_500);
    pair.server.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    pair.client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    linger_zero(&pair.client);
    drop(pair.client);
    let mut rest = Vec::new();
    let _ = pair.server.read_to_end(&mut rest); // reset
    drop(pair.server);
    let scrape = exporter.scrape();
    assert_flow(&scrape, client, 2_500, 1_500);
    assert_flow(&scrape, server, 1_500, 2_500);
}
