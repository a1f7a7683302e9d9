//! Connection churn for the soak: many short connections a second and a
//! few long ones trickling bytes, each from a loopback address of its own
//! (127.1.0.1, 127.1.0.2, …), so no two connections share a flow's labels
//! and every flow's counter starts once and ends once. The bytes moved are
//! counted here, exactly, for the test to compare.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::traffic::{payload, read_exactly, sockaddr};

/// A fresh client address: 127.1.0.1 upwards, never .0 or .255.
fn next_client_ip() -> IpAddr {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let (high, low) = (n / 254, n % 254 + 1);
    Ipv4Addr::new(
        127,
        1 + (high / 254) as u8,
        (high % 254 + 1) as u8,
        low as u8,
    )
    .into()
}

/// A connection to `target` from a fresh client address, and the server's
/// end of it, accepted on `listener`.
pub fn connect_from_fresh_ip(listener: &TcpListener, target: SocketAddr) -> (TcpStream, TcpStream) {
    let (local, local_len) = sockaddr(SocketAddr::new(next_client_ip(), 0));
    let (remote, remote_len) = sockaddr(target);
    // SAFETY: plain socket syscalls on a fresh fd; both sockaddrs are valid
    // for their lengths.
    let client = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let sa = |s: &libc::sockaddr_storage| (s as *const libc::sockaddr_storage).cast();
        assert_eq!(libc::bind(fd, sa(&local), local_len), 0, "bind");
        assert_eq!(
            libc::connect(fd, sa(&remote), remote_len),
            0,
            "connect: {}",
            std::io::Error::last_os_error()
        );
        <TcpStream as std::os::fd::FromRawFd>::from_raw_fd(fd)
    };
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

/// Bytes moved (sent by one end, read by the other), and connections made.
#[derive(Default)]
pub struct Moved {
    pub bytes: AtomicU64,
    pub connections: AtomicU64,
}

/// The running churn; [`Churn::stop`] ends it and closes every connection.
pub struct Churn {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub moved: Arc<Moved>,
}

/// The churn's listeners, bound before the exporter starts so that it can
/// be told their ports, and the churn started once it runs.
pub struct Listeners {
    short: Vec<TcpListener>,
    long: TcpListener,
}

impl Listeners {
    /// One listener per thread of short connections, and one for the long.
    pub fn bind(short_threads: usize) -> Listeners {
        let bind = || TcpListener::bind("127.0.0.1:0").unwrap();
        Listeners {
            short: (0..short_threads).map(|_| bind()).collect(),
            long: bind(),
        }
    }

    /// The server ports, for --filter.port.include.
    pub fn ports(&self) -> Vec<u16> {
        let port = |l: &TcpListener| l.local_addr().unwrap().port();
        self.short.iter().chain([&self.long]).map(port).collect()
    }

    /// Short connections: `per_second` a second on each thread, a few
    /// bytes to 40 KB each way. Long ones: `long` held through the whole
    /// churn, and as many more that live 20–40 s each, all trickling a few
    /// hundred bytes each way four times a second.
    pub fn start(self, per_second: u32, long: usize) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let moved = Arc::new(Moved::default());
        let mut threads = Vec::new();
        for (thread, listener) in self.short.into_iter().enumerate() {
            let (stop, moved) = (stop.clone(), moved.clone());
            threads.push(std::thread::spawn(move || {
                short_connections(&listener, thread, per_second, &stop, &moved)
            }));
        }
        let (stop_long, moved_long, listener) = (stop.clone(), moved.clone(), self.long);
        threads.push(std::thread::spawn(move || {
            long_connections(&listener, long, &stop_long, &moved_long)
        }));
        Churn {
            stop,
            threads,
            moved,
        }
    }
}

impl Churn {
    /// Stops the churn; every connection is closed when this returns.
    pub fn stop(self) -> Arc<Moved> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().expect("a churn thread panicked");
        }
        self.moved
    }
}

fn short_connections(
    listener: &TcpListener,
    thread: usize,
    per_second: u32,
    stop: &AtomicBool,
    moved: &Moved,
) {
    let target = listener.local_addr().unwrap();
    let every = Duration::from_secs(1) / per_second;
    let mut next = Instant::now();
    for i in (thread * 7919).. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let (up, down) = (i * 37 % 5_000 + 1, i * 101 % 40_000 + 1);
        let (mut client, mut server) = connect_from_fresh_ip(listener, target);
        client.write_all(&payload(up)).unwrap();
        read_exactly(&mut server, up);
        server.write_all(&payload(down)).unwrap();
        read_exactly(&mut client, down);
        moved.bytes.fetch_add((up + down) as u64, Ordering::Relaxed);
        moved.connections.fetch_add(1, Ordering::Relaxed);
        next += every;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

struct Long {
    client: TcpStream,
    server: TcpStream,
    /// `None`: held until the churn stops.
    until: Option<Instant>,
}

fn long_connections(listener: &TcpListener, held: usize, stop: &AtomicBool, moved: &Moved) {
    let target = listener.local_addr().unwrap();
    let open = |until: Option<Instant>| {
        moved.connections.fetch_add(1, Ordering::Relaxed);
        let (client, server) = connect_from_fresh_ip(listener, target);
        Long {
            client,
            server,
            until,
        }
    };
    let lifetime = |n: u64| Some(Instant::now() + Duration::from_secs(20 + n * 7 % 21));
    let mut all: Vec<Long> = (0..held).map(|_| open(None)).collect();
    all.extend((0..held as u64).map(|n| open(lifetime(n))));
    for tick in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            return; // dropping `all` closes them
        }
        for (n, long) in all.iter_mut().enumerate() {
            let (up, down) = (tick as usize % 300 + 1, (tick as usize + n) % 500 + 1);
            long.client.write_all(&payload(up)).unwrap();
            read_exactly(&mut long.server, up);
            long.server.write_all(&payload(down)).unwrap();
            read_exactly(&mut long.client, down);
            moved.bytes.fetch_add((up + down) as u64, Ordering::Relaxed);
            if long.until.is_some_and(|until| Instant::now() >= until) {
                *long = open(lifetime(tick + n as u64));
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
