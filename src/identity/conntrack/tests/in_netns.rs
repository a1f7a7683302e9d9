//! Root: a real DNAT in a network namespace of the test's own (see
//! [`super::stand_in`]), read back through ctnetlink.

use std::net::{SocketAddr, TcpListener};

use super::addr;
use super::stand_in::{connect_from, drop_all_capabilities, require_root, Namespace};
use crate::identity::conntrack::{Conntrack, Entry, Tuple};

/// Connects `client` to `service`, accepts on the backend, and checks what
/// conntrack says about each end: the Service connection was sent to
/// `backend`; the backend's own socket and a direct connection were not
/// translated; a tuple nobody used has no entry.
fn check_family(
    ns: &Namespace,
    conntrack: &mut Conntrack,
    client: &str,
    service: &str,
    backend: &str,
) {
    let (client_ip, service, backend) = (addr(client), addr(service), addr(backend));
    let listener = ns.inside(|| TcpListener::bind(backend).expect("listen on the backend"));

    let to_service = ns.inside(|| connect_from(client_ip, service));
    let local = to_service.local_addr().expect("local address");
    let (accepted, seen_from) = listener.accept().expect("accept the Service connection");
    assert_eq!(
        seen_from, local,
        "the backend sees the client unchanged (DNAT only)"
    );
    assert_eq!(
        accepted.local_addr().expect("backend address"),
        backend,
        "the DNAT reached the backend"
    );

    assert_eq!(
        conntrack.translated(local, service).expect("lookup"),
        Some(backend)
    );
    assert_eq!(
        conntrack.entry(local, service).expect("lookup"),
        Some(Entry {
            original: Tuple {
                src: local,
                dst: service
            },
            reply: Tuple {
                src: backend,
                dst: local
            },
        })
    );
    // The backend's accepted socket finds the same entry by its reply
    // direction; its replies go to the client unchanged.
    assert_eq!(conntrack.translated(backend, local).expect("lookup"), None);

    let direct = ns.inside(|| connect_from(client_ip, backend));
    let direct_local = direct.local_addr().expect("local address");
    let _accepted = listener.accept().expect("accept the direct connection");
    assert_eq!(
        conntrack.entry(direct_local, backend).expect("lookup"),
        Some(Entry {
            original: Tuple {
                src: direct_local,
                dst: backend
            },
            reply: Tuple {
                src: backend,
                dst: direct_local
            },
        }),
        "a direct connection is tracked too"
    );
    assert_eq!(
        conntrack.translated(direct_local, backend).expect("lookup"),
        None
    );

    // A port no connection used: the kernel says ENOENT.
    let unused = SocketAddr::new(client_ip.ip(), 9);
    assert_eq!(conntrack.entry(unused, service).expect("lookup"), None);
    assert_eq!(conntrack.translated(unused, service).expect("lookup"), None);
}

#[test]
#[ignore = "needs root to use conntrack: scripts/test.sh runs it"]
fn dnat_in_a_namespace_is_resolved_to_the_backend() {
    require_root();
    let ns = Namespace::with_dnat();
    let mut conntrack = Conntrack::open(Some(&ns.path())).expect("open conntrack in the namespace");
    check_family(
        &ns,
        &mut conntrack,
        "198.18.77.1:0",
        "198.18.77.10:80",
        "198.18.77.20:8080",
    );
    check_family(
        &ns,
        &mut conntrack,
        "[2001:db8:77::1]:0",
        "[2001:db8:77::10]:80",
        "[2001:db8:77::20]:8080",
    );

    // An IPv6 socket talking to the IPv4 Service: it names both ends
    // IPv4-mapped, while conntrack tracks IPv4.
    let listener =
        ns.inside(|| TcpListener::bind(addr("198.18.77.20:8080")).expect("listen again"));
    let to_service = ns.inside(|| {
        connect_from(
            addr("[::ffff:198.18.77.1]:0"),
            addr("[::ffff:198.18.77.10]:80"),
        )
    });
    let local = to_service.local_addr().expect("local address");
    let (_accepted, seen_from) = listener.accept().expect("accept the mapped connection");
    assert_eq!(seen_from, addr(&format!("198.18.77.1:{}", local.port())));
    assert_eq!(
        conntrack
            .translated(local, addr("[::ffff:198.18.77.10]:80"))
            .expect("lookup"),
        Some(addr("[::ffff:198.18.77.20]:8080"))
    );
    let local = seen_from;

    // Each namespace has its own table: the test's own namespace has no
    // such entry.
    let mut here = Conntrack::open(None).expect("open conntrack here");
    assert_eq!(
        here.entry(local, addr("198.18.77.10:80")).expect("lookup"),
        None
    );
}

#[test]
#[ignore = "needs root to use conntrack: scripts/test.sh runs it"]
fn missing_capabilities_are_named() {
    require_root();
    let ns = Namespace::new();
    let path = ns.path();
    let errors = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                drop_all_capabilities();
                let here = Conntrack::open(None).err().map(|e| e.to_string());
                let there = Conntrack::open(Some(&path)).err().map(|e| e.to_string());
                (here, there)
            })
            .join()
            .expect("the unprivileged thread")
    });
    assert_eq!(
        errors.0.as_deref(),
        Some("no permission to read conntrack in this network namespace: needs CAP_NET_ADMIN")
    );
    let want = format!(
        "no permission to join the network namespace {}: needs CAP_SYS_ADMIN",
        path.display()
    );
    assert_eq!(errors.1.as_deref(), Some(want.as_str()));
}
