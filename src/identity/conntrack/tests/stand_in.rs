//! The root tests' stand-in for a node: a network namespace whose lo has
//! a client, a "Service" and a "backend" address, and an nftables rule
//! that sends the Service's port 80 to the backend's 8080, as kube-proxy's
//! rules do for locally generated traffic. Also the raw socket and
//! capability calls std does not offer.

use std::io;
use std::mem::size_of;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

const NEEDS_ROOT: &str = "needs root to use conntrack: scripts/test.sh runs it";

/// The network namespace, removed (with its rules and conntrack table)
/// when dropped.
pub(super) struct Namespace {
    pub(super) name: String,
}

impl Namespace {
    /// An empty namespace with its lo up.
    pub(super) fn new() -> Namespace {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("tfe-ct-{}-{n}", std::process::id());
        run("ip", &["netns", "add", &name]);
        let ns = Namespace { name };
        run("ip", &["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// A client, a Service and a backend address on lo, in each family,
    /// and the Service's port 80 sent to the backend's 8080.
    pub(super) fn with_dnat() -> Namespace {
        let ns = Namespace::new();
        for address in ["198.18.77.1/32", "198.18.77.10/32", "198.18.77.20/32"] {
            run("ip", &["-n", &ns.name, "addr", "add", address, "dev", "lo"]);
        }
        for address in [
            "2001:db8:77::1/128",
            "2001:db8:77::10/128",
            "2001:db8:77::20/128",
        ] {
            run(
                "ip",
                &["-n", &ns.name, "addr", "add", address, "dev", "lo", "nodad"],
            );
        }
        // A nat chain on the output hook: connections made inside the
        // namespace are rewritten on their first packet. Adding it also
        // starts connection tracking in the namespace.
        let rules = "\
table ip tfe_ct {
    chain output {
        type nat hook output priority -100; policy accept;
        ip daddr 198.18.77.10 tcp dport 80 dnat to 198.18.77.20:8080
    }
}
table ip6 tfe_ct {
    chain output {
        type nat hook output priority -100; policy accept;
        ip6 daddr 2001:db8:77::10 tcp dport 80 dnat to [2001:db8:77::20]:8080
    }
}
";
        let file = std::env::temp_dir().join(format!("{}.nft", ns.name));
        std::fs::write(&file, rules).expect("write the nftables rules");
        let path = file.to_str().expect("a UTF-8 temporary path").to_owned();
        let loaded = std::panic::catch_unwind(|| {
            run("ip", &["netns", "exec", &ns.name, "nft", "-f", &path])
        });
        let _ = std::fs::remove_file(&file);
        if let Err(panic) = loaded {
            std::panic::resume_unwind(panic);
        }
        ns
    }

    pub(super) fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Runs `work` on a thread that has joined the namespace, so sockets it
    /// makes live there.
    pub(super) fn inside<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        let ns = std::fs::File::open(self.path()).expect("open the namespace");
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns moves only this thread, which ends after `work`.
                    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(rc, 0, "setns: {}", io::Error::last_os_error());
                    work()
                })
                .join()
                .expect("the thread in the namespace")
        })
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("run {program}: {e} (scripts/install-deps.sh --test installs it)")
        });
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A TCP connection from exactly `local` (std cannot bind before
/// connecting, and the test must know the client address).
pub(super) fn connect_from(local: SocketAddr, remote: SocketAddr) -> TcpStream {
    let domain = if local.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2); the fd is owned by the stream right after.
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
    // SAFETY: fd is a new socket nothing else owns.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let (sockaddr, len) = sockaddr(local);
    // SAFETY: sockaddr is valid for len bytes.
    let rc = unsafe { libc::bind(fd, (&sockaddr as *const libc::sockaddr_storage).cast(), len) };
    assert_eq!(rc, 0, "bind {local}: {}", io::Error::last_os_error());
    let (sockaddr, len) = self::sockaddr(remote);
    // SAFETY: as above.
    let rc = unsafe { libc::connect(fd, (&sockaddr as *const libc::sockaddr_storage).cast(), len) };
    assert_eq!(
        rc,
        0,
        "connect {local} -> {remote}: {}",
        io::Error::last_os_error()
    );
    stream
}

fn sockaddr(address: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all zeroes is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match address {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is big and aligned enough for any sockaddr.
            let sin = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above.
            let sin6 = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Clears this thread's effective and permitted capabilities (Linux keeps them per
/// thread), so what runs after on it is unprivileged.
pub(super) fn drop_all_capabilities() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Copy, Clone)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capget/capset with a v3 header and two data structs.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()),
            0,
            "capget"
        );
        // Permitted too: conntrack raises a permitted CAP_NET_ADMIN around
        // each request (kernel/least_privilege.rs), as the exporter does
        // after attach.
        for half in &mut data {
            half.effective = 0;
            half.permitted = 0;
        }
        assert_eq!(
            libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()),
            0,
            "capset"
        );
    }
}

pub(super) fn require_root() {
    // SAFETY: geteuid cannot fail.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test {NEEDS_ROOT}");
}
