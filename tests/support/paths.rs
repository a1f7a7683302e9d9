//! The ways an application moves TCP bytes besides read() and write():
//! splice() both ways, MSG_ZEROCOPY with its error-queue completions, TCP
//! Fast Open. Each returns, or is given, the exact bytes it moved.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

fn check(what: &str, rc: isize) -> usize {
    assert!(rc >= 0, "{what}: {}", io::Error::last_os_error());
    rc as usize
}

/// setsockopt(2) of one int option; panics naming `what` on failure.
fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
    what: &str,
) {
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` is an int that outlives the call, and `len` its size.
    let rc =
        unsafe { libc::setsockopt(fd, level, name, (&value as *const libc::c_int).cast(), len) };
    check(what, rc as isize);
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    check(
        "pipe2",
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } as isize,
    );
    // SAFETY: pipe2 just opened both and nothing else owns them.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> usize {
    // SAFETY: both fds are open; null offsets are allowed for pipes and sockets.
    let n = unsafe { libc::splice(from, std::ptr::null_mut(), to, std::ptr::null_mut(), len, 0) };
    check("splice", n as isize)
}

/// Receives exactly `len` bytes from `socket` with splice() into a pipe
/// (tcp_splice_read -> tcp_read_sock, never recvmsg), emptying the pipe
/// with read() as it goes.
pub fn splice_receive(socket: &TcpStream, len: usize) {
    let (read_end, write_end) = pipe();
    let mut buf = vec![0u8; 64 << 10];
    let mut left = len;
    while left > 0 {
        let n = splice(
            socket.as_raw_fd(),
            write_end.as_raw_fd(),
            left.min(64 << 10),
        );
        assert!(n > 0, "peer closed with {left} bytes outstanding");
        let mut drained = 0;
        while drained < n {
            // SAFETY: `buf` is writable for its length.
            let got = unsafe {
                libc::read(
                    read_end.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    (n - drained).min(buf.len()),
                )
            };
            drained += check("read(pipe)", got);
        }
        left -= n;
    }
}

/// Sends `len` bytes to `socket` with splice() from a pipe, which write()
/// fills: splice_to_socket (6.5+) or tcp_sendpage (before).
pub fn splice_send(socket: &TcpStream, len: usize) {
    let (read_end, write_end) = pipe();
    let chunk = vec![0x5au8; 16 << 10];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        // SAFETY: `chunk` is readable for `n` bytes.
        let wrote = unsafe { libc::write(write_end.as_raw_fd(), chunk.as_ptr().cast(), n) };
        assert_eq!(check("write(pipe)", wrote), n);
        let mut moved = 0;
        while moved < n {
            moved += splice(read_end.as_raw_fd(), socket.as_raw_fd(), n - moved);
        }
        left -= n;
    }
}

const SO_ZEROCOPY: libc::c_int = 60;
const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
const MSG_ZEROCOPY: libc::c_int = 0x4000000;

/// Sends `len` bytes with MSG_ZEROCOPY, then reads the kernel's completion
/// notifications off the error queue (recvmsg(MSG_ERRQUEUE)) until every
/// send is confirmed: error-queue reads carry no payload and must not be
/// counted as received.
pub fn zerocopy_send(socket: &TcpStream, len: usize) {
    let fd = socket.as_raw_fd();
    set_int_option(fd, libc::SOL_SOCKET, SO_ZEROCOPY, 1, "SO_ZEROCOPY");
    let data = vec![0x33u8; len];
    let (mut sent, mut calls) = (0, 0u32);
    while sent < len {
        // SAFETY: `data` stays alive, unchanged, until every completion below.
        let n = unsafe { libc::send(fd, data[sent..].as_ptr().cast(), len - sent, MSG_ZEROCOPY) };
        sent += check("send(MSG_ZEROCOPY)", n as isize);
        calls += 1;
    }
    let mut confirmed = 0u32;
    let deadline = Instant::now() + Duration::from_secs(30);
    while confirmed < calls {
        assert!(
            Instant::now() < deadline,
            "{confirmed} of {calls} zerocopy completions"
        );
        confirmed += read_completions(fd);
    }
}

/// One recvmsg(MSG_ERRQUEUE): how many sends the notification on it
/// completes (its range ee_info..=ee_data), or 0 if none is queued yet.
fn read_completions(fd: RawFd) -> u32 {
    let mut control = [0u64; 16];
    // SAFETY: an all-zero msghdr is valid; control points at our buffer.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: `msg` and its control buffer are valid for the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
    if n < 0 {
        let err = io::Error::last_os_error();
        assert_eq!(
            err.raw_os_error(),
            Some(libc::EAGAIN),
            "recvmsg(MSG_ERRQUEUE): {err}"
        );
        std::thread::sleep(Duration::from_millis(1));
        return 0;
    }
    // SAFETY: the kernel filled `control` with msg_controllen bytes of cmsgs.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        assert!(!cmsg.is_null(), "an error-queue message without its cmsg");
        let ee = libc::CMSG_DATA(cmsg)
            .cast::<libc::sock_extended_err>()
            .read_unaligned();
        assert_eq!(
            ee.ee_origin, SO_EE_ORIGIN_ZEROCOPY,
            "not a zerocopy completion"
        );
        ee.ee_data - ee.ee_info + 1
    }
}

const TCP_FASTOPEN: libc::c_int = 23;
const MSG_FASTOPEN: libc::c_int = 0x20000000;

/// Lets `listener` accept data in the SYN (TCP Fast Open, server side).
pub fn fastopen_server(listener: &TcpListener) {
    let fd = listener.as_raw_fd();
    set_int_option(fd, libc::IPPROTO_TCP, TCP_FASTOPEN, 16, "TCP_FASTOPEN");
}

/// Connects to the IPv4 `server` with sendto(MSG_FASTOPEN) carrying `data`:
/// in the SYN once the client holds the server's cookie, after the
/// handshake before that.
pub fn fastopen_connect(server: SocketAddr, data: &[u8]) -> TcpStream {
    let SocketAddr::V4(v4) = server else {
        panic!("IPv4 only")
    };
    // SAFETY: all-zero is a valid sockaddr_in; fields set below.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = v4.port().to_be();
    sa.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
    // SAFETY: plain socket calls on a fresh fd, with a valid sockaddr_in.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        check("socket", fd as isize);
        let stream = TcpStream::from_raw_fd(fd);
        let n = libc::sendto(
            fd,
            data.as_ptr().cast(),
            data.len(),
            MSG_FASTOPEN,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(check("sendto(MSG_FASTOPEN)", n as isize), data.len());
        stream
    }
}

/// Runs `f` on a thread inside the network namespace `name`; sockets it
/// creates stay in that namespace, usable from any thread after.
pub fn inside<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{name}");
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).expect("open the namespace");
        // SAFETY: setns on a valid namespace fd; it only affects this thread.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

/// A TcpExt counter of /proc/net/netstat in the namespace `name`.
pub fn netstat(name: &str, counter: &str) -> u64 {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", name, "cat", "/proc/net/netstat"])
        .output()
        .expect("run ip netns exec");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        if let Some(i) = names.split_whitespace().position(|n| n == counter) {
            return values.split_whitespace().nth(i).unwrap().parse().unwrap();
        }
    }
    panic!("no TcpExt {counter} in /proc/net/netstat of {name}");
}

const SO_TIMESTAMPING: libc::c_int = 37;
/// SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE: every sent
/// segment's clone comes back, with its data, on the error queue.
const TX_TIMESTAMPS: libc::c_int = (1 << 1) | (1 << 4);

/// Asks for software transmit timestamps on `socket`.
pub fn transmit_timestamps(socket: &TcpStream) {
    let fd = socket.as_raw_fd();
    set_int_option(
        fd,
        libc::SOL_SOCKET,
        SO_TIMESTAMPING,
        TX_TIMESTAMPS,
        "SO_TIMESTAMPING",
    );
}

/// One recvmsg(MSG_ERRQUEUE), waiting up to 10 s for a message; returns
/// the bytes it returned, which are no payload received.
pub fn read_error_queue(socket: &TcpStream) -> usize {
    let mut buf = [0u8; 4096];
    let mut control = [0u64; 64];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: an all-zero msghdr is valid; iov and control point at ours.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: `msg` and the buffers it points at are valid for the call.
        let n = unsafe {
            libc::recvmsg(
                socket.as_raw_fd(),
                &mut msg,
                libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return n as usize;
        }
        assert!(Instant::now() < deadline, "nothing on the error queue");
        std::thread::sleep(Duration::from_millis(5));
    }
}
