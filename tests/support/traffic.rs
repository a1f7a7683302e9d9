//! Real TCP traffic over loopback with byte counts the test knows exactly.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use super::scrape::FlowId;

/// A listener on a free port of `ip`, and its address.
pub fn listener(ip: &str) -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind((ip.parse::<IpAddr>().unwrap(), 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Both ends of one loopback TCP connection.
pub struct Pair {
    pub client: TcpStream,
    pub server: TcpStream,
    /// Held so that no other listener, of this test or a concurrent one, gets
    /// the same server port while the pair lives: under --flows.ports=server
    /// their flows would rightly add up.
    _listener: Option<TcpListener>,
}

impl Pair {
    /// Connects to a fresh listener bound on `ip`.
    pub fn on(ip: &str) -> Pair {
        let ip: IpAddr = ip.parse().unwrap();
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).unwrap();
        let mut pair = Self::through(&listener, listener.local_addr().unwrap());
        pair._listener = Some(listener);
        pair
    }

    /// Connects to `target`, which `listener` accepts.
    pub fn through(listener: &TcpListener, target: SocketAddr) -> Pair {
        let client = TcpStream::connect(target).unwrap();
        let (server, _) = listener.accept().unwrap();
        Pair {
            client,
            server,
            _listener: None,
        }
    }

    /// The client's flow with both ports, as --flows.ports=all labels it.
    pub fn client_flow(&self) -> FlowId {
        FlowId {
            local: self.client.local_addr().unwrap(),
            remote: self.client.peer_addr().unwrap(),
            role: "client",
        }
    }

    /// The server's flow with both ports, with IPv4-mapped addresses shown
    /// as IPv4 as the exporter does.
    pub fn server_flow(&self) -> FlowId {
        FlowId {
            local: canonical(self.server.local_addr().unwrap()),
            remote: canonical(self.server.peer_addr().unwrap()),
            role: "server",
        }
    }

    /// Client sends `up` bytes, server sends `down` bytes back, each side
    /// reading everything the other wrote.
    pub fn exchange(&mut self, up: usize, down: usize) {
        transfer(&mut self.client, &mut self.server, up);
        transfer(&mut self.server, &mut self.client, down);
    }
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Deterministic payload: position-dependent bytes, so a short read shows.
pub fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

/// Writes `len` bytes on `from` and reads all of them on `to`, concurrently
/// so that large transfers cannot deadlock on full socket buffers.
pub fn transfer(from: &mut TcpStream, to: &mut TcpStream, len: usize) {
    let mut writer = from.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let data = payload(len.min(1 << 20));
        let mut left = len;
        while left > 0 {
            let n = left.min(data.len());
            writer.write_all(&data[..n]).unwrap();
            left -= n;
        }
    });
    read_exactly(to, len);
    sender.join().unwrap();
}

/// Reads exactly `len` bytes with a 64 KiB buffer.
pub fn read_exactly(stream: &mut TcpStream, len: usize) {
    let mut buf = vec![0u8; 64 << 10];
    let mut left = len;
    while left > 0 {
        let n = stream.read(&mut buf[..left.min(64 << 10)]).unwrap();
        assert!(n > 0, "peer closed with {left} bytes outstanding");
        left -= n;
    }
}

/// sendfile(2) of the whole of `file` to `socket`; returns the bytes sent.
pub fn sendfile_all(socket: &TcpStream, file: &std::fs::File, len: usize) -> usize {
    let mut offset: libc::off_t = 0;
    let mut sent = 0;
    while sent < len {
        // SAFETY: both fds are open for the duration of the call and `offset`
        // is a valid, writable off_t.
        let n = unsafe {
            libc::sendfile(
                socket.as_raw_fd(),
                file.as_raw_fd(),
                &mut offset,
                len - sent,
            )
        };
        assert!(n > 0, "sendfile: {}", io::Error::last_os_error());
        sent += n as usize;
    }
    sent
}

/// recv(2) with MSG_PEEK: look at up to `len` queued bytes without taking them.
pub fn peek(socket: &TcpStream, len: usize) -> usize {
    let mut buf = vec![0u8; len];
    // SAFETY: `buf` is writable for `len` bytes.
    let n = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            len,
            libc::MSG_PEEK | libc::MSG_WAITALL,
        )
    };
    assert!(n >= 0, "recv(MSG_PEEK): {}", io::Error::last_os_error());
    n as usize
}

/// One receive call on `socket` that must find nothing to read (the peer
/// sent nothing more, or closed): recv(2) with MSG_DONTWAIT. The kprobe
/// backend learns that a call's return probe never ran only when the same
/// thread makes its next socket call; a test ends its threads' calls with
/// this one, so that a return missed by their last real call is reported.
pub fn reveal_missed_return(socket: &TcpStream) {
    let mut byte = 0u8;
    // SAFETY: `byte` is writable for the 1 byte asked for.
    let n = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_DONTWAIT,
        )
    };
    let err = io::Error::last_os_error();
    assert!(
        n == 0 || (n < 0 && err.kind() == io::ErrorKind::WouldBlock),
        "recv(MSG_DONTWAIT) must find nothing to read: {n}, {err}"
    );
}

/// Waits until thread `tid` of this process sleeps inside a receive
/// syscall on `fd` (recvfrom, recvmsg or read): /proc/self/task/<tid>/stat
/// says `S` (asleep; the kernel reads .../syscall only from a task off its
/// CPU) and .../syscall names the call and its fd. On a TCP socket with
/// nothing to read that is sk_wait_data(), inside tcp_recvmsg(). Panics
/// after `timeout`, with what the thread was doing.
pub fn wait_blocked_in_recv(tid: libc::pid_t, fd: i32, timeout: std::time::Duration) {
    let task = format!("/proc/self/task/{tid}");
    let blocked = || {
        let stat = std::fs::read_to_string(format!("{task}/stat")).unwrap_or_default();
        // The state follows the command name, which is in parentheses.
        let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
        let syscall = std::fs::read_to_string(format!("{task}/syscall")).unwrap_or_default();
        let mut fields = syscall.split_whitespace();
        let nr = fields.next().and_then(|n| n.parse::<i64>().ok());
        let first_arg = fields
            .next()
            .and_then(|a| i64::from_str_radix(a.trim_start_matches("0x"), 16).ok());
        let receiving = matches!(
            nr,
            Some(libc::SYS_recvfrom | libc::SYS_recvmsg | libc::SYS_read)
        );
        let ok = state == Some("S") && receiving && first_arg == Some(i64::from(fd));
        (ok, format!("state {state:?}, syscall {:?}", syscall.trim()))
    };
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let (ok, what) = blocked();
        if ok {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "thread {tid} not blocked receiving on fd {fd} after {timeout:?}: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// sendmsg(2) with several iovecs; returns what the kernel accepted.
pub fn sendmsg_iov(socket: &TcpStream, parts: &[&[u8]]) -> usize {
    let mut iov: Vec<libc::iovec> = parts
        .iter()
        .map(|p| libc::iovec {
            iov_base: p.as_ptr() as *mut _,
            iov_len: p.len(),
        })
        .collect();
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len();
    // SAFETY: `msg` points at iovecs that stay alive across the call.
    let n = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, 0) };
    assert!(n >= 0, "sendmsg: {}", io::Error::last_os_error());
    n as usize
}

/// recvmsg(2) into several buffers of `sizes`; returns the bytes received.
pub fn recvmsg_iov(socket: &TcpStream, sizes: &[usize]) -> usize {
    let mut bufs: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![0u8; n]).collect();
    let mut iov: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: as in sendmsg_iov.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len();
    // SAFETY: the iovecs point into `bufs`, alive across the call.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, 0) };
    assert!(n >= 0, "recvmsg: {}", io::Error::last_os_error());
    n as usize
}

/// Sets SO_LINGER to {on, 0 s}: close() then resets the connection at once
/// (tcp_disconnect) instead of sending a FIN.
pub fn linger_zero(socket: &TcpStream) {
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
    assert_eq!(rc, 0, "SO_LINGER: {}", io::Error::last_os_error());
}

/// One short connection through `listener`: the client sends `up` bytes, the
/// server answers `down`, both close.
pub fn short_connection(listener: &TcpListener, target: SocketAddr, up: usize, down: usize) {
    let mut pair = Pair::through(listener, target);
    pair.client.write_all(&payload(up)).unwrap();
    read_exactly(&mut pair.server, up);
    pair.server.write_all(&payload(down)).unwrap();
    read_exactly(&mut pair.client, down);
}

/// A TCP socket connected to itself: bound to `ip` on a free port, then
/// connected to that same address (a simultaneous open on one socket).
pub fn self_connected(ip: IpAddr) -> TcpStream {
    // Ask the kernel for a free port, then let it go for our socket.
    let port = TcpListener::bind(SocketAddr::new(ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = SocketAddr::new(ip, port);
    let (storage, len) = sockaddr(addr);
    let family = if ip.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket syscalls on a fresh fd; `storage` holds a valid
    // sockaddr of `len` bytes for `addr`'s family.
    unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
        let sa = (&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr>();
        assert_eq!(
            libc::bind(fd, sa, len),
            0,
            "bind {addr}: {}",
            io::Error::last_os_error()
        );
        assert_eq!(
            libc::connect(fd, sa, len),
            0,
            "connect to self {addr}: {}",
            io::Error::last_os_error()
        );
        std::os::fd::FromRawFd::from_raw_fd(fd)
    }
}

pub fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}
