//! The socket backend's shards (bpf/socket.bpf.c, socket_shards): hash maps
//! of at most SOCKET_SHARD_ENTRIES connections each, all created at load, as
//! many as --sockets.max needs. The programs bring one more into use when
//! the last one in use is full, and the walk runs over those in use only, so
//! its cost follows the most connections the node has had, not
//! --sockets.max. (Creating shards from user space as they were needed, once
//! a second, lost 350,000 of 200,000 connections' attempts to be tracked
//! when they opened at 80,000 a second: only the programs react in time.)

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};

use super::skel::{Capacity, SocketState};

/// Connections one shard holds at most.
pub const SHARD_ENTRIES: u32 = Capacity::SOCKET_SHARD_ENTRIES.0;

/// shard_counts' keys (bpf/socket.bpf.c).
const IN_USE: u32 = 0;
const CREATED: u32 = 1;

/// Shards for `sockets_max` connections. New connections fill shards in
/// use at random first, so shards in use are rarely all full to the last
/// entry: a sixteenth of room more than `sockets_max` absorbs that.
pub fn max_shards(sockets_max: u32) -> u32 {
    let wanted = u64::from(sockets_max) + u64::from(sockets_max / 16);
    wanted.div_ceil(u64::from(SHARD_ENTRIES)).max(1) as u32
}

/// The object's BTF and the shard template's key and value types in it.
/// Before Linux 6.2 an inner map must match its template in more than sizes
/// and flags (bpf_map_meta_equal() compares timer_off, which only a map
/// created with BTF has), so the shards are created with the same BTF.
#[derive(Debug)]
pub struct ShardTypes {
    /// A handle of its own on the object's BTF.
    pub btf: OwnedFd,
    pub key_type_id: u32,
    pub value_type_id: u32,
}

impl ShardTypes {
    /// From the loaded object: the key is `__u64`, the value `struct
    /// socket_state` (bpf/socket.bpf.c's socket_shard).
    pub fn of(object: &libbpf_rs::Object) -> io::Result<ShardTypes> {
        use libbpf_rs::AsRawLibbpf;
        let object = object.as_libbpf_object().as_ptr();
        // SAFETY: `object` is a loaded bpf_object the caller keeps alive;
        // libbpf returns its BTF (or NULL) and looks names up in it.
        unsafe {
            let btf = libbpf_sys::bpf_object__btf(object);
            let btf_fd = libbpf_sys::bpf_object__btf_fd(object);
            if btf.is_null() || btf_fd < 0 {
                return Err(io::Error::other("the socket object has no BTF"));
            }
            let find = |name: &std::ffi::CStr, kind: u32| {
                let id = libbpf_sys::btf__find_by_name_kind(btf, name.as_ptr(), kind);
                u32::try_from(id).map_err(|_| io::Error::other(format!("no {name:?} in BTF")))
            };
            let btf_fd = std::os::fd::BorrowedFd::borrow_raw(btf_fd).try_clone_to_owned()?;
            Ok(ShardTypes {
                btf: btf_fd,
                key_type_id: find(c"__u64", libbpf_sys::BTF_KIND_TYPEDEF)?,
                value_type_id: find(c"socket_state", libbpf_sys::BTF_KIND_STRUCT)?,
            })
        }
    }
}

/// Creates every shard, puts it in socket_shards (`outer`), and brings the
/// first into use: before any program is attached. An empty shard costs 17
/// KiB of kernel memory (its 1,024 buckets), about 17 bytes per
/// --sockets.max.
pub fn create_all(outer: &MapHandle, counts: &MapHandle, types: &ShardTypes) -> io::Result<()> {
    // SAFETY: zeroed bpf_map_create_opts with its size set is valid input.
    let mut opts: libbpf_sys::bpf_map_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = size_of::<libbpf_sys::bpf_map_create_opts>() as _;
    // Entries are allocated on insert, as in bpf/socket.bpf.c's template.
    opts.map_flags = libbpf_sys::BPF_F_NO_PREALLOC;
    opts.btf_fd = types.btf.as_raw_fd() as u32;
    opts.btf_key_type_id = types.key_type_id;
    opts.btf_value_type_id = types.value_type_id;
    let shards = outer.max_entries();
    for index in 0..shards {
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
    for (key, value) in [(CREATED, shards), (IN_USE, 1)] {
        counts
            .update(&key.to_ne_bytes(), &value.to_ne_bytes(), MapFlags::ANY)
            .map_err(io::Error::other)?;
    }
    Ok(())
}

/// The shards in use, which the programs raise (shard_counts).
#[derive(Debug)]
pub struct SocketShards {
    counts: MapHandle,
}

impl SocketShards {
    pub fn open(counts: MapHandle) -> SocketShards {
        SocketShards { counts }
    }

    /// Shards in use now: the walk runs over these.
    pub fn in_use(&self) -> io::Result<u32> {
        let value = self
            .counts
            .lookup(&IN_USE.to_ne_bytes(), MapFlags::ANY)
            .map_err(io::Error::other)?
            .ok_or_else(|| io::Error::other("shard_counts has no entry"))?;
        let bytes = value
            .try_into()
            .map_err(|_| io::Error::other("shard_counts: not a u32"))?;
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
