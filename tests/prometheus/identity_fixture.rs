//! A stand-in exporter for the identity dashboard: an HTTP server on
//! 127.0.0.1 whose /metrics holds fixed flows with every identity label the
//! real exporter sets (the label order of tcp_flow_*_bytes_total included),
//! covering every dst_kind, every path, a plain host's unit, a local end
//! with no identity at all, and one Service connection seen from both ends.
//! It needs no root and no cluster: it proves the dashboard's PromQL
//! against ground truth written here, while the root test proves the real
//! exporter feeds it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};

/// One flow: its labels after the four address labels, and its two
/// counters. Counters never move: the tests read them back through the
/// dashboard's expressions with `rate` turned into `last_over_time`.
pub struct Flow {
    pub addresses: [&'static str; 4],
    pub role: &'static str,
    /// src_namespace, src_pod, src_workload.
    pub local: [&'static str; 3],
    /// dst_kind, dst_namespace, dst_name, dst_workload.
    pub peer: [&'static str; 4],
    pub path: &'static str,
    pub sent: u64,
    pub received: u64,
}

const fn flow(
    addresses: [&'static str; 4],
    role: &'static str,
    local: [&'static str; 3],
    peer: [&'static str; 4],
    path: &'static str,
    (sent, received): (u64, u64),
) -> Flow {
    Flow {
        addresses,
        role,
        local,
        peer,
        path,
        sent,
        received,
    }
}

const API: [&str; 3] = ["shop", "api-7d9f-x2x", "api"];

pub const FLOWS: &[Flow] = &[
    // shop/api calls shop/db across zones; db's node sees the other end.
    flow(
        ["10.0.1.5", "", "10.0.2.7", "5432"],
        "client",
        API,
        ["pod", "shop", "db-0", "db"],
        "cross_zone",
        (1_000, 5_000),
    ),
    flow(
        ["10.0.2.7", "5432", "10.0.1.5", ""],
        "server",
        ["shop", "db-0", "db"],
        ["pod", "shop", "api-7d9f-x2x", "api"],
        "cross_zone",
        (5_000, 1_000),
    ),
    // shop/api calls the Service pay/payments: the client end's path is
    // unknown (no conntrack), the backend's server end knows it.
    flow(
        ["10.0.1.5", "", "10.96.0.10", "443"],
        "client",
        API,
        ["service", "pay", "payments", ""],
        "unknown",
        (300, 700),
    ),
    flow(
        ["10.0.3.3", "8443", "10.0.1.5", ""],
        "server",
        ["pay", "payments-5c4-q8q", "payments"],
        ["pod", "shop", "api-7d9f-x2x", "api"],
        "same_zone",
        (700, 300),
    ),
    flow(
        ["10.0.1.5", "", "10.20.1.1", "443"],
        "client",
        API,
        ["network", "", "vpc-payments", ""],
        "cross_region",
        (2_000, 100),
    ),
    flow(
        ["10.0.1.5", "", "93.184.216.34", "443"],
        "client",
        API,
        ["internet", "", "", ""],
        "internet",
        (50, 4_000),
    ),
    flow(
        ["10.0.1.5", "", "10.9.9.9", "6379"],
        "client",
        API,
        ["private", "", "", ""],
        "unknown",
        (60, 80),
    ),
    // A plain host: nginx.service serves a client on the internet.
    flow(
        ["192.168.1.10", "80", "203.0.113.9", ""],
        "server",
        ["", "", "nginx.service"],
        ["internet", "", "", ""],
        "internet",
        (9_000, 400),
    ),
    // Nothing is known of the local end: the graph names it by address.
    flow(
        ["192.168.1.10", "", "192.168.1.11", "10250"],
        "client",
        ["", "", ""],
        ["node", "", "node-b", ""],
        "same_zone",
        (10, 20),
    ),
    flow(
        ["127.0.0.1", "", "127.0.0.1", "8080"],
        "client",
        ["kube-system", "coredns-1", "coredns"],
        ["loopback", "", "", ""],
        "loopback",
        (1, 2),
    ),
];

/// The exposition text: both counters for every flow, and the self-metrics
/// the dashboard reads.
pub fn exposition() -> String {
    let mut text = String::from(
        "# TYPE tcp_flow_exporter_build_info gauge\n\
         tcp_flow_exporter_build_info{version=\"fixture\"} 1\n\
         # TYPE tcp_flow_exporter_unresolved_flows gauge\n\
         tcp_flow_exporter_unresolved_flows{end=\"src\"} 1\n\
         tcp_flow_exporter_unresolved_flows{end=\"dst\"} 0\n\
         # TYPE tcp_flow_exporter_labels_networks gauge\n\
         tcp_flow_exporter_labels_networks 1\n",
    );
    for (counter, pick) in [
        ("sent", (|f: &Flow| f.sent) as fn(&Flow) -> u64),
        ("received", |f: &Flow| f.received),
    ] {
        text += &format!("# TYPE tcp_flow_{counter}_bytes_total counter\n");
        for f in FLOWS {
            let [src_ip, src_port, dst_ip, dst_port] = f.addresses;
            let [src_namespace, src_pod, src_workload] = f.local;
            let [dst_kind, dst_namespace, dst_name, dst_workload] = f.peer;
            text += &format!(
                "tcp_flow_{counter}_bytes_total{{src_ip=\"{src_ip}\",src_port=\"{src_port}\",\
                 dst_ip=\"{dst_ip}\",dst_port=\"{dst_port}\",role=\"{}\",\
                 src_namespace=\"{src_namespace}\",src_pod=\"{src_pod}\",\
                 src_workload=\"{src_workload}\",dst_kind=\"{dst_kind}\",\
                 dst_namespace=\"{dst_namespace}\",dst_name=\"{dst_name}\",\
                 dst_workload=\"{dst_workload}\",path=\"{}\"}} {}\n",
                f.role,
                f.path,
                pick(f)
            );
        }
    }
    text
}

/// Serves [`exposition`] on a free port of 127.0.0.1 for as long as the test
/// process lives, one connection at a time.
pub fn serve() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let body = exposition();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            // The request is small; reading its head is enough for HTTP/1.1
            // with Connection: close.
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}
