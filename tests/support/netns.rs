//! A network namespace joined to this one by a veth pair, for traffic that
//! does not go over loopback. Addresses come from 198.18.0.0/15 (RFC 2544,
//! reserved for benchmarking), one /30 per namespace, and never leave the
//! pair.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};

pub struct Netns {
    pub name: String,
    /// This namespace's end of the veth pair.
    pub host_ip: Ipv4Addr,
    /// The other namespace's end.
    pub inner_ip: Ipv4Addr,
}

/// Runs ip(8), failing the test with its error output.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip(8)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// Creates the namespace and the veth pair, both up and addressed.
    pub fn new() -> Netns {
        static N: AtomicU8 = AtomicU8::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("tfe-{pid}-{n}");
        // Interface names are at most 15 bytes.
        let (outer, inner) = (
            format!("tfe{}o{n}", pid % 100_000),
            format!("tfe{}i{n}", pid % 100_000),
        );
        // Within 198.18.0.0/15 for any pid, and apart for concurrent tests.
        let base = (pid % 500) * 256 + 4 * u32::from(n % 64);
        let host_ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 1)) + base);
        let inner_ip = Ipv4Addr::from(u32::from(host_ip) + 1);
        ip(&["netns", "add", &name]);
        let ns = Netns {
            name,
            host_ip,
            inner_ip,
        };
        ip(&[
            "link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns", &ns.name,
        ]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &outer]);
        ip(&["link", "set", &outer, "up"]);
        let exec = |args: &[&str]| {
            let mut all = vec!["netns", "exec", ns.name.as_str(), "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        exec(&["addr", "add", &format!("{inner_ip}/30"), "dev", &inner]);
        exec(&["link", "set", &inner, "up"]);
        exec(&["link", "set", "lo", "up"]);
        ns
    }

    /// A listener on the inner address, created inside the namespace. A
    /// socket stays in the namespace it was created in, so the thread that
    /// creates it switches in and the socket is used from anywhere after.
    pub fn listen(&self) -> TcpListener {
        let addr = SocketAddr::new(IpAddr::V4(self.inner_ip), 0);
        super::paths::inside(&self.name, move || {
            TcpListener::bind(addr).expect("listen inside the namespace")
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and with it the pair.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
