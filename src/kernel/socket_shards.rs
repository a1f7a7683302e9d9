//! The socket backend's shards (bpf/socket.bpf.c, socket_shards): hash maps
//! of at most SOCKET_SHARD_ENTRIES connections each. The programs bring one
//! more into use when the last one in use is full; user space creates them
//! ahead of that, a few more each second, up to as many as --sockets.max
//! needs. The walk runs over those in use only. So the maps' fixed memory
//! and the walk's cost follow the most connections the node has had, not
//! --sockets.max.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};

use super::least_privilege;
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

/// Shards to have created while `in_use` are in use: room for an eighth
/// more connections, and for 8 shards' worth (8,192) at least, which the
/// next second's new connections take before user space looks again.
pub fn shards_ahead(in_use: u32, max: u32) -> u32 {
    in_use.saturating_add((in_use / 8).max(8)).min(max)
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

#[derive(Debug)]
pub struct SocketShards {
    /// socket_shards: ARRAY_OF_MAPS of `max` slots, the first `created`
    /// filled.
    outer: MapHandle,
    /// shard_counts: in use (the programs raise it), created (only here).
    counts: MapHandle,
    types: ShardTypes,
    created: u32,
    max: u32,
}

impl SocketShards {
    /// Creates the first shards and brings one into use: before any program
    /// is attached.
    pub fn create(outer: MapHandle, counts: MapHandle, types: ShardTypes) -> io::Result<Self> {
        let max = outer.max_entries();
        let mut shards = SocketShards {
            outer,
            counts,
            types,
            created: 0,
            max,
        };
        shards.create_up_to(shards_ahead(1, max))?;
        shards.set(IN_USE, 1)?;
        Ok(shards)
    }

    /// Takes over shards already created (by [`SocketShards::create`]).
    pub fn open(outer: MapHandle, counts: MapHandle, types: ShardTypes) -> io::Result<Self> {
        let max = outer.max_entries();
        let mut shards = SocketShards {
            outer,
            counts,
            types,
            created: 0,
            max,
        };
        shards.created = shards.get(CREATED)?;
        Ok(shards)
    }

    /// Shards in use now: the walk runs over these.
    pub fn in_use(&self) -> io::Result<u32> {
        self.get(IN_USE)
    }

    fn get(&self, key: u32) -> io::Result<u32> {
        let value = self
            .counts
            .lookup(&key.to_ne_bytes(), MapFlags::ANY)
            .map_err(io::Error::other)?
            .ok_or_else(|| io::Error::other("shard_counts has no entry"))?;
        let bytes = value
            .try_into()
            .map_err(|_| io::Error::other("shard_counts: not a u32"))?;
        Ok(u32::from_ne_bytes(bytes))
    }

    /// Creates shards ahead of those in use. Creating a map needs the BPF
    /// capabilities the exporter keeps permitted only.
    pub fn keep_ahead(&mut self) -> io::Result<()> {
        let wanted = shards_ahead(self.in_use()?, self.max);
        if wanted <= self.created {
            return Ok(());
        }
        least_privilege::with_bpf_caps(|| self.create_up_to(wanted))
    }

    /// Creates shards up to `wanted`, puts them in socket_shards, and only
    /// then counts them as created, so no program picks an empty slot.
    fn create_up_to(&mut self, wanted: u32) -> io::Result<()> {
        // SAFETY: zeroed bpf_map_create_opts with its size set is valid input.
        let mut opts: libbpf_sys::bpf_map_create_opts = unsafe { std::mem::zeroed() };
        opts.sz = size_of::<libbpf_sys::bpf_map_create_opts>() as _;
        // Entries are allocated on insert, as in bpf/socket.bpf.c's template.
        opts.map_flags = libbpf_sys::BPF_F_NO_PREALLOC;
        opts.btf_fd = self.types.btf.as_raw_fd() as u32;
        opts.btf_key_type_id = self.types.key_type_id;
        opts.btf_value_type_id = self.types.value_type_id;
        for index in self.created..wanted {
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
            self.outer
                .update(&index.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
                .map_err(io::Error::other)?;
            self.created = index + 1;
        }
        self.set(CREATED, self.created)
    }

    fn set(&self, key: u32, value: u32) -> io::Result<()> {
        self.counts
            .update(&key.to_ne_bytes(), &value.to_ne_bytes(), MapFlags::ANY)
            .map_err(io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_created_an_eighth_and_at_least_eight_ahead() {
        assert_eq!(shards_ahead(1, 1088), 9);
        assert_eq!(shards_ahead(64, 1088), 72);
        assert_eq!(shards_ahead(800, 1088), 900);
        assert_eq!(shards_ahead(1080, 1088), 1088, "never past the most");
        assert_eq!(shards_ahead(1, 2), 2);
    }

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
