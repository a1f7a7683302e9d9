//! A NETLINK_NETFILTER socket, made in a chosen network namespace.
//!
//! setns() moves only the calling thread, and a socket belongs for life to
//! the namespace it was made in. So the socket is made on a short-lived
//! thread that joins the namespace and then ends, and the exporter's own
//! threads never move.

use std::fs::File;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

/// How long a lookup waits for the kernel: a scrape must never hang on
/// one. The kernel answers a get synchronously, in microseconds.
pub(super) const ANSWER_TIMEOUT: Duration = Duration::from_millis(100);

pub(super) struct NetlinkSocket {
    fd: OwnedFd,
}

/// Why a socket in a namespace could not be made.
pub(super) enum OpenFailure {
    /// Opening the path.
    Path(io::Error),
    /// setns() into it.
    Setns(io::Error),
    /// socket() or setsockopt().
    Socket(io::Error),
}

impl NetlinkSocket {
    pub(super) fn open(netns: Option<&Path>) -> Result<NetlinkSocket, OpenFailure> {
        let Some(path) = netns else {
            return Self::here().map_err(OpenFailure::Socket);
        };
        let ns = File::open(path).map_err(OpenFailure::Path)?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns on an open fd with CLONE_NEWNET only moves
                    // this thread, which ends right after making the socket.
                    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(OpenFailure::Setns(io::Error::last_os_error()));
                    }
                    Self::here().map_err(OpenFailure::Socket)
                })
                .join()
                .unwrap_or_else(|_| {
                    Err(OpenFailure::Socket(io::Error::other(
                        "the setns thread panicked",
                    )))
                })
        })
    }

    /// A socket in the calling thread's network namespace.
    fn here() -> io::Result<NetlinkSocket> {
        // SAFETY: plain socket(2); the fd is owned right after.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a new socket that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let socket = NetlinkSocket { fd };
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: ANSWER_TIMEOUT.as_micros() as libc::suseconds_t,
        };
        // SAFETY: the option value is a timeval of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                socket.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(socket)
    }

    /// Sends one request to the kernel (port id 0).
    pub(super) fn send(&self, message: &[u8]) -> io::Result<()> {
        let kernel = kernel_address();
        loop {
            // SAFETY: message and the address are valid for their lengths.
            let sent = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    message.as_ptr().cast(),
                    message.len(),
                    0,
                    (&kernel as *const libc::sockaddr_nl).cast(),
                    size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            match sent {
                n if n as usize == message.len() => return Ok(()),
                n if n >= 0 => {
                    return Err(io::Error::other(format!(
                        "netlink sent {n} of {} bytes",
                        message.len()
                    )))
                }
                _ => match io::Error::last_os_error() {
                    e if e.kind() == io::ErrorKind::Interrupted => continue,
                    e => return Err(e),
                },
            }
        }
    }

    /// The next datagram from the kernel into `buf`. Datagrams from other
    /// sockets (any process can send to our port id) are skipped. Times out
    /// after [`ANSWER_TIMEOUT`]; a datagram bigger than `buf` is an error.
    pub(super) fn receive<'b>(&self, buf: &'b mut [u8]) -> io::Result<&'b [u8]> {
        loop {
            // SAFETY: sockaddr_nl is plain data; all zeroes is valid.
            let mut from: libc::sockaddr_nl = unsafe { zeroed() };
            let mut from_len = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            // MSG_TRUNC makes recvfrom return the datagram's real length,
            // so one too big for buf is noticed rather than cut short.
            // SAFETY: buf and from are valid for the lengths passed.
            let got = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_TRUNC,
                    (&mut from as *mut libc::sockaddr_nl).cast(),
                    &mut from_len,
                )
            };
            if got < 0 {
                let error = io::Error::last_os_error();
                match error.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "conntrack did not answer within {} ms",
                                ANSWER_TIMEOUT.as_millis()
                            ),
                        ))
                    }
                    _ => return Err(error),
                }
            }
            let got = got as usize;
            if from.nl_pid != 0 {
                continue;
            }
            if got > buf.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "conntrack answer of {got} bytes does not fit {} bytes",
                        buf.len()
                    ),
                ));
            }
            return Ok(&buf[..got]);
        }
    }
}

fn kernel_address() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain data; all zeroes is the kernel's address
    // but for the family.
    let mut address: libc::sockaddr_nl = unsafe { zeroed() };
    address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    address
}
