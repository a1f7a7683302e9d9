//! Reads the totals of every live connection the socket backend counts, in
//! every network namespace.
//!
//! The walk program (refresh_sockets, bpf/socket_walk.bpf.h) is never attached:
//! each walk runs it once with BPF_PROG_TEST_RUN, and it leaves every
//! connection's current totals in its socket_states entry. The entries are
//! then read in batches. (A BPF iterator over the map would do both in one
//! pass, but map-element iterators fail to load with EPERM on some
//! locked-down kernels, the project's own CI machine among them.)

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use libbpf_rs::MapHandle;

use crate::kernel::maps::read_hash_map;
use crate::kernel::programs::test_run;
use crate::kernel::skel::{from_bytes, ConnectionTotals, SocketFlag, SocketState};

#[derive(Debug)]
pub struct SocketWalker {
    /// The walk program.
    walk: OwnedFd,
    /// socket_states.
    states: MapHandle,
    /// Entries the last walk read, to size the next read.
    last_len: usize,
}

impl SocketWalker {
    pub fn new(walk: OwnedFd, states: MapHandle) -> SocketWalker {
        SocketWalker {
            walk,
            states,
            last_len: 0,
        }
    }

    /// The current totals of every counted live connection.
    pub fn walk(&mut self) -> io::Result<Vec<ConnectionTotals>> {
        test_run(self.walk.as_fd())?;
        let entries = read_hash_map(&self.states, self.last_len + 64)?;
        self.last_len = entries.len();
        let wanted = u32::from(SocketFlag::SOCKET_COUNTING.0);
        let seen =
            wanted | u32::from(SocketFlag::SOCKET_IGNORED.0) | u32::from(SocketFlag::SOCKET_DEAD.0);
        let mut live = Vec::with_capacity(entries.len());
        for (key, value) in entries.iter() {
            let s: SocketState = from_bytes(value);
            if s.flags & seen != wanted {
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
