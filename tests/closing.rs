//! Root tests of closing: what a connection moved stays counted however it
//! ends, and the end itself is not counted as bytes: connections closed
//! before the scrape, FIN and end of stream, unread data dropped by a reset,
//! and an abortive close (SO_LINGER 0). Every test listens on a port of its
//! own, so under the default --flows.ports=server its flows are still its
//! own.

mod support;

use std::io::{Read, Write};

use support::traffic::{self, linger_zero, Pair};
use support::{assert_exact_flow, assert_flow, Exporter};

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_connections_closed_before_the_scrape_stay_counted() {
    support::require_root();
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
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_fin_and_end_of_stream_are_not_bytes() {
    support::require_root();
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
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_unread_data_dropped_by_a_reset_is_not_received() {
    support::require_root();
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
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_abortive_close_counts_what_was_moved() {
    support::require_root();
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
