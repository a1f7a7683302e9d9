//! Runs the socket backend's iter/tcp program over every TCP socket.
//!
//! The program writes nothing: it adds each live connection's growth since
//! the last walk to the kernel flow table, so a scrape that walks and then
//! drains reports live connections up to the moment of the scrape. A read of
//! the iterator runs the program over sockets until its output buffer fills
//! or the walk ends; with no output, one read walks them all. A walk past a
//! million sockets without output returns EAGAIN, and the next read goes on
//! from there (kernel/bpf/bpf_iter.c, MAX_ITER_OBJECTS).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[derive(Debug)]
pub struct SocketWalker {
    /// The iter/tcp link; each walk opens a new iterator on it.
    link: OwnedFd,
}

impl SocketWalker {
    pub fn new(link: OwnedFd) -> SocketWalker {
        SocketWalker { link }
    }

    /// Walks every TCP socket once.
    pub fn walk(&self) -> io::Result<()> {
        // SAFETY: plain syscall wrapper on a link fd we own.
        let fd = unsafe { libbpf_sys::bpf_iter_create(self.link.as_raw_fd()) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: bpf_iter_create returned a new fd that nothing else owns.
        let mut iterator = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut buf = [0u8; 64];
        loop {
            match iterator.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            }
        }
    }
}
