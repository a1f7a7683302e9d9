//! The socket backend's shards (bpf/socket.bpf.c, socket_shards): hash maps
//! of at most SOCKET_SHARD_ENTRIES connections each. All of them are created
//! at load, as many as --sockets.max needs; the programs bring one more into
//! use when the last one in use is full, and the walk runs over those in
//! use only, so its cost follows the most connections the node has had,
//! not --sockets.max.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};

use super::skel::{Capacity, SocketState};

/// Connections one shard holds at most.
pub const SHARD_ENTRIES: u32 = Capacity::SOCKET_SHARD_ENTRIES.0;

/// Shards for `sockets_max` connections. New connections fill shards in
/// use at random first, so shards in use are rarely all full to the last
/// entry: a sixteenth of room more than `sockets_max` absorbs that.
pub fn max_shards(sockets_max: u32) -> u32 {
    let wanted = u64::from(sockets_max) + u64::from(sockets_max / 16);
    wanted.div_ceil(u64::from(SHARD_ENTRIES)).max(1) as u32
}

#[derive(Debug)]
pub struct SocketShards {
    /// shards_in_use: one u32, which only the programs raise after load.
    in_use: MapHandle,
}

impl SocketShards {
    /// Creates every shard, puts it in socket_shards, and brings the first
    /// into use: before any program is attached.
    pub fn create(outer: &MapHandle, in_use: MapHandle) -> io::Result<SocketShards> {
        // SAFETY: zeroed bpf_map_create_opts with its size set is valid input.
        let mut opts: libbpf_sys::bpf_map_create_opts = unsafe { std::mem::zeroed() };
        opts.sz = size_of::<libbpf_sys::bpf_map_create_opts>() as _;
        // Entries are allocated on insert, as in bpf/socket.bpf.c's template.
        opts.map_flags = libbpf_sys::BPF_F_NO_PREALLOC;
        for index in 0..outer.max_entries() {
            let shard = MapHandle::create(
                MapType::Hash,
                Some("socket_shard"),
                size_of::<u64>() as u32,
                size_of::<SocketState>() as u32,
                SHARD_ENTRIES,
                &opts,
            )
            .map_err(io::Error::other)?;
            // socket_shards keeps the shard alive once it holds it.
            let fd = shard.as_fd().as_raw_fd() as u32;
            outer
                .update(&index.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
                .map_err(io::Error::other)?;
        }
        in_use
            .update(&0u32.to_ne_bytes(), &1u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(io::Error::other)?;
        Ok(SocketShards { in_use })
    }

    /// Takes over shards already created.
    pub fn open(in_use: MapHandle) -> SocketShards {
        SocketShards { in_use }
    }

    /// Shards in use now: the walk runs over these.
    pub fn in_use(&self) -> io::Result<u32> {
        let value = self
            .in_use
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(io::Error::other)?
            .ok_or_else(|| io::Error::other("shards_in_use has no entry"))?;
        let bytes = value
            .try_into()
            .map_err(|_| io::Error::other("shards_in_use: not a u32"))?;
        Ok(u32::from_ne_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_hold_sockets_max_and_a_sixteenth_more() {
        assert_eq!(max_shards(262_144), 272);
        assert_eq!(max_shards(1_048_576), 1088);
        assert_eq!(max_shards(964), 1);
        assert_eq!(max_shards(965), 2);
        assert_eq!(max_shards(1), 1);
        assert_eq!(max_shards(u32::MAX), 4_456_448);
    }
}
