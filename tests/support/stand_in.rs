//! Stand-ins for what identity names: a network namespace holding every
//! address of a small "cluster" (pods, a Service, a node, named networks, a
//! TEST-NET "internet" peer) on its loopback, one server that answers on all
//! of them, and cgroups standing in for pods and systemd units, with
//! clients run inside them.
//!
//! Every connection follows one exchange: the client sends `up` bytes and
//! shuts its sending side; the server reads to the end and answers `up / 2`
//! bytes, then closes. So a client end moves (up, up / 2) and its server end
//! (up / 2, up), exactly.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;

use tcp_flow_exporter::identity::cgroups::find_cgroup2_mount;

use super::netns::ip;
use super::paths::inside;

/// A namespace whose loopback carries every address given.
pub struct StandIn {
    pub name: String,
    pub port: u16,
}

impl StandIn {
    /// The namespace with `addresses`, and a server on every one of them.
    pub fn new(addresses: &[Ipv4Addr]) -> StandIn {
        // One per test: tests of one binary run at once, in one process.
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("tfe-id-{}-{n}", std::process::id());
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        for address in addresses {
            ip(&[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{address}/32"),
                "dev",
                "lo",
            ]);
        }
        let listener = inside(&name, || {
            TcpListener::bind("0.0.0.0:0").expect("listen inside the namespace")
        });
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || serve(listener));
        StandIn { name, port }
    }

    /// A connection from `from` to `to`, made by this process, for an
    /// exchange the test drives itself (see [`exchange_open`]).
    pub fn connect(&self, from: Ipv4Addr, to: Ipv4Addr) -> TcpStream {
        let target = SocketAddr::new(IpAddr::V4(to), self.port);
        inside(&self.name, move || {
            let socket = BoundSocket::bind(from)?;
            socket.connect(target).map(|()| socket)
        })
        .map(TcpStream::from)
        .expect("connect inside the namespace")
    }

    /// Exchanges run by a new process placed in `cgroup` first, so that
    /// its sockets are that cgroup's: (from, to, up) each.
    pub fn exchanges_in(&self, cgroup: &Path, exchanges: &[(Ipv4Addr, Ipv4Addr, usize)]) {
        // The shell moves itself into the cgroup, then becomes the client:
        // every socket the client makes is created in that cgroup.
        let script = r#"cg=$1; ns=$2; shift 2; echo $$ > "$cg/cgroup.procs" && exec ip netns exec "$ns" python3 -c "$CLIENT" "$@""#;
        let mut args = vec!["-c".to_owned(), script.to_owned(), "sh".to_owned()];
        args.push(cgroup.display().to_string());
        args.push(self.name.clone());
        args.push(self.port.to_string());
        for (from, to, up) in exchanges {
            args.push(format!("{from},{to},{up}"));
        }
        let out = Command::new("sh")
            .args(&args)
            .env("CLIENT", CLIENT)
            .output()
            .expect("run sh");
        assert!(
            out.status.success(),
            "client in {}: {}",
            cgroup.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl StandIn {
    /// Connections from inside the namespace to `service` go to `backend`
    /// instead, as kube-proxy's DNAT sends them (nftables, output hook: the
    /// clients are local to the namespace).
    pub fn dnat(&self, service: Ipv4Addr, backend: Ipv4Addr) {
        let rules = format!(
            "table ip tfe_nat {{\n chain out {{\n  type nat hook output priority -100;\n  \
             ip daddr {service} tcp dport {port} dnat to {backend}:{port}\n }}\n}}\n",
            port = self.port
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("run nft (scripts/install-deps.sh --test installs it)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "nft -f: {rules}");
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The client the cgroup-bound processes run: one exchange per argument.
const CLIENT: &str = r#"
import socket, sys
port = int(sys.argv[1])
for spec in sys.argv[2:]:
    src, dst, up = spec.split(",")
    s = socket.socket()
    s.bind((src, 0))
    s.connect((dst, port))
    s.sendall(b"x" * int(up))
    s.shutdown(socket.SHUT_WR)
    got = 0
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += len(b)
    assert got == int(up) // 2, (spec, got)
    s.close()
"#;

/// Finishes an exchange on a stream from [`StandIn::connect`] after the
/// test sent what it wanted: shuts the sending side and reads the answer.
pub fn exchange_open(mut stream: TcpStream, sent_before: usize, up: usize) {
    stream.write_all(&vec![b'x'; up]).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    assert_eq!(answer.len(), (sent_before + up) / 2);
}

/// A TCP socket bound to a source address before it connects (std's
/// TcpStream::connect cannot pick the source).
pub struct BoundSocket(std::os::fd::OwnedFd);

impl BoundSocket {
    fn bind(from: Ipv4Addr) -> std::io::Result<BoundSocket> {
        use std::os::fd::FromRawFd;
        // SAFETY: socket() has no preconditions; the fd is owned at once.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by socket() and nothing else owns it.
        let socket = BoundSocket(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
        let addr = sockaddr(SocketAddr::new(IpAddr::V4(from), 0));
        // SAFETY: a valid socket, and a sockaddr_in of the length given.
        let rc = unsafe { libc::bind(socket.fd(), addr.as_ptr(), SOCKADDR_LEN) };
        check(rc)?;
        Ok(socket)
    }

    fn connect(&self, to: SocketAddr) -> std::io::Result<()> {
        let addr = sockaddr(to);
        // SAFETY: as in bind.
        check(unsafe { libc::connect(self.fd(), addr.as_ptr(), SOCKADDR_LEN) })
    }

    fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.0.as_raw_fd()
    }
}

const SOCKADDR_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;

fn check(rc: i32) -> std::io::Result<()> {
    match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// An IPv4 socket address as the socket calls take it.
struct SockaddrIn(libc::sockaddr_in);

impl SockaddrIn {
    fn as_ptr(&self) -> *const libc::sockaddr {
        (&self.0 as *const libc::sockaddr_in).cast()
    }
}

impl From<BoundSocket> for TcpStream {
    fn from(socket: BoundSocket) -> TcpStream {
        TcpStream::from(socket.0)
    }
}

fn sockaddr(addr: SocketAddr) -> SockaddrIn {
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only")
    };
    SockaddrIn(libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(v4.ip().octets()),
        },
        sin_zero: [0; 8],
    })
}

/// Answers every connection: reads to the end, writes half as much back.
fn serve(listener: TcpListener) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { return };
        std::thread::spawn(move || {
            let mut got = Vec::new();
            if stream.read_to_end(&mut got).is_ok() {
                let _ = stream.write_all(&vec![b'y'; got.len() / 2]);
            }
        });
    }
}

/// The cgroup2 hierarchy, mounted here if nothing has (a virtme-ng guest
/// may boot without it): the kernel has it either way.
pub fn cgroup2_root() -> PathBuf {
    if let Some(root) = find_cgroup2_mount() {
        return root;
    }
    let root = PathBuf::from("/run/tfe-test-cgroup2");
    std::fs::create_dir_all(&root).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "cgroup2", "none"])
        .arg(&root)
        .status()
        .expect("run mount(8)");
    assert!(status.success(), "mount -t cgroup2 on {}", root.display());
    root
}

/// A cgroup made for a test under the cgroup2 mount, removed with its
/// children when dropped (after the processes in it have exited).
pub struct TestCgroup {
    pub path: PathBuf,
    /// The test's own directory under the mount, removed last.
    base: PathBuf,
}

impl TestCgroup {
    /// `relative` under a directory of its own in the cgroup2 mount, so
    /// that tests running at once never share (or remove) each other's.
    pub fn new(root: &Path, relative: &str) -> TestCgroup {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = root.join(format!("tfe-test-{}-{n}", std::process::id()));
        let path = base.join(relative);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TestCgroup { path, base }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Innermost first: rmdir of a cgroup fails while it has children, so
        // a directory another TestCgroup still uses stays.
        let mut dir = self.path.clone();
        while dir.starts_with(&self.base) && std::fs::remove_dir(&dir).is_ok() {
            dir.pop();
        }
    }
}
