//! What the kernel offers and how the exporter talks to it: kernel BTF and
//! privileges, the BPF objects and their loading, and reading their maps.
//!
//! Nothing here knows what the bytes mean above the map level: the loader
//! hands out typed map handles ([`BackendMaps`]), and the sources of bytes
//! (src/source/) turn them into flows.

pub mod backend;
pub mod features;
pub mod filter;
pub mod least_privilege;
pub mod links;
pub mod loader;
pub mod maps;
mod per_event_object;
pub mod privileges;
pub mod programs;
pub mod skel;
mod socket_object;
pub mod socket_shards;
pub mod walk_output;

use std::os::fd::OwnedFd;

use libbpf_rs::MapHandle;

pub use backend::Backend;
pub use loader::{Probe, ProbeConfig, ProbeError};

/// The maps a loaded backend family fills, for user space to read.
#[derive(Debug)]
pub enum BackendMaps {
    PerEvent(PerEventMaps),
    Socket(SocketMaps),
}

/// bpf/per_event.bpf.c: per-flow byte counts, in two tables the probes
/// take turns writing.
#[derive(Debug)]
pub struct PerEventMaps {
    /// ARRAY_OF_MAPS with one slot: the table the probes write.
    pub active: MapHandle,
    /// The two flow tables, `flows_even` and `flows_odd`.
    pub tables: [MapHandle; 2],
    /// Per-CPU bytes of flows that found the flow table full.
    pub overflow: MapHandle,
    /// Per-CPU `struct per_event_health`.
    pub health: MapHandle,
}

/// bpf/socket.bpf.c: per-connection totals.
#[derive(Debug)]
pub struct SocketMaps {
    /// The walk (walk_shard or walk_shard_cast), run with BPF_PROG_TEST_RUN
    /// once per shard: it reports what each live connection of the shard
    /// moved since the last run into `walk_out`.
    pub walk: OwnedFd,
    /// socket_shards: the shards the walk runs over, added as connections
    /// grow.
    pub shards: socket_shards::SocketShards,
    /// walk_out: one memory-mapped `struct walk_output`.
    pub walk_out: MapHandle,
    /// closed_sockets: final totals of destroyed connections.
    pub closed: MapHandle,
    /// Per-CPU `struct socket_health`.
    pub health: MapHandle,
}

/// CLOCK_MONOTONIC in nanoseconds, the clock of bpf_ktime_get_ns().
pub fn monotonic_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
