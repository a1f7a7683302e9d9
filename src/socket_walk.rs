//! Reads the totals of every live connection the socket backend counts, in
//! every network namespace.
//!
//! refresh_sockets (bpf/socket_backend.bpf.h) is never attached: each walk
//! runs it once with BPF_PROG_TEST_RUN, and it leaves every connection's
//! current totals in its socket_states entry. The entries are then read in
//! batches. (A BPF iterator over the map would do both in one pass, but
//! map-element iterators fail to load with EPERM on some locked-down
//! kernels, the project's own CI machine among them.)

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use libbpf_rs::MapHandle;

use crate::bpf::{ConnectionTotals, SocketState};
use crate::map_reader::read_hash_map;

/// socket_state.flags, from bpf/flow.h.
const SOCKET_COUNTING: u8 = 1;
const SOCKET_IGNORED: u8 = 2;
const SOCKET_DEAD: u8 = 16;

/// Runs refresh_sockets once (BPF_PROG_TEST_RUN).
pub fn run_refresh(program: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a zeroed bpf_test_run_opts with its size set is valid input.
    let mut opts: libbpf_sys::bpf_test_run_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _;
    // SAFETY: plain syscall wrapper on a program fd the caller holds.
    let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(program.as_raw_fd(), &mut opts) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    Ok(())
}

#[derive(Debug)]
pub struct SocketWalker {
    /// The refresh_sockets program.
    refresh: OwnedFd,
    /// socket_states.
    states: MapHandle,
    /// Entries the last walk read, to size the next read.
    last_len: usize,
}

impl SocketWalker {
    pub fn new(refresh: OwnedFd, states: MapHandle) -> SocketWalker {
        SocketWalker {
            refresh,
            states,
            last_len: 0,
        }
    }

    /// The current totals of every counted live connection.
    pub fn walk(&mut self) -> io::Result<Vec<ConnectionTotals>> {
        run_refresh(self.refresh.as_fd())?;
        let entries = read_hash_map(&self.states, self.last_len + 64)?;
        self.last_len = entries.len();
        let mut live = Vec::with_capacity(entries.len());
        for (key, value) in entries.iter() {
            let mut s = SocketState::default();
            plain::copy_from_bytes(&mut s, value).expect("value is a socket_state");
            if s.flags & (SOCKET_COUNTING | SOCKET_IGNORED | SOCKET_DEAD) != SOCKET_COUNTING {
                continue;
            }
            live.push(ConnectionTotals {
                socket: u64::from_ne_bytes(key.try_into().expect("key is a u64")),
                id: s.id,
                key: s.key,
                sent: s.walk_sent,
                received: s.walk_received,
            });
        }
        Ok(live)
    }
}
