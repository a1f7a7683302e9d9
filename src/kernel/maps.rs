//! Reads a whole BPF hash map with BPF_MAP_LOOKUP_BATCH, or reads and
//! empties it with BPF_MAP_LOOKUP_AND_DELETE_BATCH.
//!
//! libbpf-rs 0.27's `lookup_batch` stops at the first short batch and so
//! silently returns only part of a big hash map (65,535 of 100,000 entries in
//! our measurements). This loop follows the kernel's contract instead: a batch
//! may be short at any time, ENOENT alone means the walk is over, and ENOSPC
//! means one hash bucket holds more entries than the buffer has room for.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{MapCore, MapHandle};

use super::skel::{from_bytes, KernelType};

/// Entries requested per syscall. Large enough that 100k flows take a dozen
/// syscalls; the buffer grows past it only for a pathological bucket.
const BATCH: u32 = 8192;

/// Every entry of a map at the moment of reading, as packed key and value bytes.
#[derive(Debug, Default)]
pub struct MapEntries {
    pub keys: Vec<u8>,
    pub values: Vec<u8>,
    pub key_size: usize,
    pub value_size: usize,
}

impl MapEntries {
    pub fn len(&self) -> usize {
        self.keys.len().checked_div(self.key_size).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.keys
            .chunks_exact(self.key_size)
            .zip(self.values.chunks_exact(self.value_size))
    }
}

/// Reads every entry of a (non per-CPU) hash map.
pub fn read_hash_map(map: &MapHandle, size_hint: usize) -> io::Result<MapEntries> {
    walk_hash_map(map, size_hint, false)
}

/// Reads and deletes every entry of a (non per-CPU) hash map. Only exact
/// while nothing else writes to the map: a concurrent update may land in a
/// bucket already walked and stay behind.
pub fn take_hash_map(map: &MapHandle, size_hint: usize) -> io::Result<MapEntries> {
    walk_hash_map(map, size_hint, true)
}

fn walk_hash_map(map: &MapHandle, size_hint: usize, delete: bool) -> io::Result<MapEntries> {
    let key_size = map.key_size() as usize;
    let value_size = map.value_size() as usize;
    let mut out = MapEntries {
        keys: Vec::with_capacity(size_hint * key_size),
        values: Vec::with_capacity(size_hint * value_size),
        key_size,
        value_size,
    };
    // The hash map's batch cursor is a bucket index (u32); give it room anyway
    // for map types whose cursor is a key.
    let cursor_size = key_size.max(8);
    let mut in_batch = vec![0u8; cursor_size];
    let mut out_batch = vec![0u8; cursor_size];
    let mut first = true;
    let mut want = BATCH;
    let opts = libbpf_sys::bpf_map_batch_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
        elem_flags: 0,
        flags: 0,
    };

    loop {
        let have = out.len();
        out.keys.resize((have + want as usize) * key_size, 0);
        out.values.resize((have + want as usize) * value_size, 0);
        let mut count = want;
        let batch = if delete {
            libbpf_sys::bpf_map_lookup_and_delete_batch
        } else {
            libbpf_sys::bpf_map_lookup_batch
        };
        // SAFETY: the key and value buffers have room for `count` more entries
        // past `have`; the cursors are `cursor_size` bytes, at least what the
        // kernel writes; `opts` is a valid, sized options struct. libbpf reads
        // `in_batch` only when it is non-null.
        let ret = unsafe {
            batch(
                map.as_fd().as_raw_fd(),
                if first {
                    std::ptr::null_mut()
                } else {
                    in_batch.as_mut_ptr().cast()
                },
                out_batch.as_mut_ptr().cast(),
                out.keys.as_mut_ptr().add(have * key_size).cast(),
                out.values.as_mut_ptr().add(have * value_size).cast(),
                &mut count,
                &opts,
            )
        };
        let got = have + count as usize;
        out.keys.truncate(got * key_size);
        out.values.truncate(got * value_size);
        match -ret {
            0 => {
                first = false;
                std::mem::swap(&mut in_batch, &mut out_batch);
            }
            libc::ENOENT => return Ok(out),
            // One bucket does not fit into `want` entries: retry it, bigger.
            // The kernel deleted nothing of it.
            libc::ENOSPC if count == 0 => want = want.saturating_mul(2),
            errno => return Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

/// Reads one slot of a per-CPU array: one value per possible CPU.
fn read_percpu_slot(map: &MapHandle, index: u32) -> io::Result<Vec<Vec<u8>>> {
    map.lookup_percpu(&index.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
        .map_err(io::Error::other)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "per-CPU slot missing"))
}

/// Every CPU's value of one slot of a per-CPU array, as `T`.
pub fn read_percpu<T: KernelType>(map: &MapHandle, index: u32) -> io::Result<Vec<T>> {
    Ok(read_percpu_slot(map, index)?
        .iter()
        .map(|value| from_bytes(value))
        .collect())
}
