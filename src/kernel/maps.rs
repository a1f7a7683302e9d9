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

/// A take that failed after earlier batches had already deleted entries
/// from the map: those entries, which now exist nowhere else, and the error.
/// What the map still holds is intact; a later take gets it.
#[derive(Debug)]
pub struct PartialTake {
    pub entries: MapEntries,
    pub error: io::Error,
}

impl PartialTake {
    /// A take's outcome as the entries it got, all or only part, and
    /// whether it emptied the map: a caller uses the entries either way.
    pub fn split(taken: Result<MapEntries, PartialTake>) -> (MapEntries, io::Result<()>) {
        match taken {
            Ok(entries) => (entries, Ok(())),
            Err(PartialTake { entries, error }) => (entries, Err(error)),
        }
    }
}

/// Reads every entry of a (non per-CPU) hash map.
pub fn read_hash_map(map: &MapHandle, size_hint: usize) -> io::Result<MapEntries> {
    // Reading deletes nothing: a partial read is of no use.
    walk_hash_map(map, size_hint, false).map_err(|partial| partial.error)
}

/// Reads and deletes every entry of a (non per-CPU) hash map. Only exact
/// while nothing else writes to the map: a concurrent update may land in a
/// bucket already walked and stay behind.
pub fn take_hash_map(map: &MapHandle, size_hint: usize) -> Result<MapEntries, PartialTake> {
    walk_hash_map(map, size_hint, true)
}

fn walk_hash_map(
    map: &MapHandle,
    size_hint: usize,
    delete: bool,
) -> Result<MapEntries, PartialTake> {
    let key_size = map.key_size() as usize;
    let value_size = map.value_size() as usize;
    let fd = map.as_fd().as_raw_fd();
    let syscall = if delete {
        libbpf_sys::bpf_map_lookup_and_delete_batch
    } else {
        libbpf_sys::bpf_map_lookup_batch
    };
    let opts = libbpf_sys::bpf_map_batch_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
        elem_flags: 0,
        flags: 0,
    };
    // The kernel reads and writes a cursor of at most this many bytes: a
    // hash map's is its u32 bucket index, other maps' a key.
    let cursor_size = key_size.max(size_of::<u32>());
    let batch = |call: BatchCall| {
        let room = *call.count as usize;
        assert!(
            call.keys.len() >= room * key_size
                && call.values.len() >= room * value_size
                && call.out_batch.len() >= cursor_size
                && call.in_batch.map_or(cursor_size, <[u8]>::len) >= cursor_size
        );
        // SAFETY: the key and value buffers have room for `count` entries
        // and the cursors for what the kernel reads or writes (all checked
        // above); `opts` is a valid, sized options struct. libbpf reads
        // `in_batch` only when it is non-null, and never writes it.
        unsafe {
            syscall(
                fd,
                call.in_batch
                    .map_or(std::ptr::null_mut(), |c| c.as_ptr().cast_mut().cast()),
                call.out_batch.as_mut_ptr().cast(),
                call.keys.as_mut_ptr().cast(),
                call.values.as_mut_ptr().cast(),
                call.count,
                &opts,
            )
        }
    };
    walk_batches(key_size, value_size, size_hint, BATCH, batch)
}

/// One batch call's arguments. The call starts at the cursor `in_batch`
/// (None: at the start), writes up to `*count` entries into `keys` and
/// `values`, sets `*count` to how many it wrote and `out_batch` to the next
/// cursor, and returns 0 or a negative errno, as libbpf does.
pub(crate) struct BatchCall<'a> {
    pub in_batch: Option<&'a [u8]>,
    pub out_batch: &'a mut [u8],
    pub keys: &'a mut [u8],
    pub values: &'a mut [u8],
    pub count: &'a mut u32,
}

/// The batch loop, with the syscall injected (`batch`: libbpf's
/// bpf_map_lookup_batch or bpf_map_lookup_and_delete_batch, or a test's
/// fake), asking for `batch_len` entries per call unless a bucket needs
/// more.
///
/// If a call fails after earlier ones succeeded, the entries those got are
/// returned with the error: when deleting, the kernel no longer has them.
pub(crate) fn walk_batches(
    key_size: usize,
    value_size: usize,
    size_hint: usize,
    batch_len: u32,
    mut batch: impl FnMut(BatchCall) -> i32,
) -> Result<MapEntries, PartialTake> {
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
    let mut want = batch_len;

    loop {
        let have = out.len();
        out.keys.resize((have + want as usize) * key_size, 0);
        out.values.resize((have + want as usize) * value_size, 0);
        let mut count = want;
        let ret = batch(BatchCall {
            in_batch: (!first).then_some(in_batch.as_slice()),
            out_batch: &mut out_batch,
            keys: &mut out.keys[have * key_size..],
            values: &mut out.values[have * value_size..],
            count: &mut count,
        });
        let errno = -ret;
        // libbpf copies the kernel's count back whatever the outcome. A call
        // that fails midway (ENOMEM growing the kernel's bucket buffer) sets
        // it to the entries it already copied to us and, when deleting,
        // deleted: they are kept. A call refused before walking (or whose
        // copy to us failed) leaves it as it was, `want`, and wrote nothing:
        // a failing call never fills the whole buffer.
        let written = if matches!(errno, 0 | libc::ENOENT) || count < want {
            count
        } else {
            0
        };
        let got = have + written as usize;
        out.keys.truncate(got * key_size);
        out.values.truncate(got * value_size);
        match errno {
            0 => {
                first = false;
                std::mem::swap(&mut in_batch, &mut out_batch);
            }
            libc::ENOENT => return Ok(out),
            // One bucket does not fit into `want` entries: retry it, bigger.
            // The kernel deleted nothing of it.
            libc::ENOSPC if count == 0 => want = want.saturating_mul(2),
            errno => {
                return Err(PartialTake {
                    entries: out,
                    error: io::Error::from_raw_os_error(errno),
                })
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::FakeHashMap;

    /// Entries each call asks for: a few entries take several calls.
    const BATCH_LEN: u32 = 2;

    /// A map whose bucket `b` holds `sizes[b]` entries; keys (u32) count up
    /// from 0 in bucket order, and each value (u64) is 100 times its key.
    fn map_with_buckets(sizes: &[usize]) -> FakeHashMap {
        let mut map = FakeHashMap::new(sizes.len(), 4, 8);
        let mut key = 0u32;
        for (bucket, &size) in sizes.iter().enumerate() {
            for _ in 0..size {
                let value = u64::from(key) * 100;
                map.insert_in(bucket, &key.to_ne_bytes(), &value.to_ne_bytes());
                key += 1;
            }
        }
        map
    }

    /// (key, value) pairs, sorted.
    fn pairs(entries: &MapEntries) -> Vec<(u32, u64)> {
        let mut pairs: Vec<_> = entries
            .iter()
            .map(|(k, v)| {
                let key = u32::from_ne_bytes(k.try_into().unwrap());
                (key, u64::from_ne_bytes(v.try_into().unwrap()))
            })
            .collect();
        pairs.sort();
        pairs
    }

    /// Keys `range`, with their values.
    fn expected(range: std::ops::Range<u32>) -> Vec<(u32, u64)> {
        range.map(|key| (key, u64::from(key) * 100)).collect()
    }

    #[test]
    fn a_walk_reads_every_entry_over_several_calls() {
        let mut map = map_with_buckets(&[2, 2, 0, 2, 2, 2]);
        let read = map.walk(0, BATCH_LEN, false).unwrap();
        assert_eq!(pairs(&read), expected(0..10));
        assert_eq!(map.len(), 10, "reading deletes nothing");
        assert_eq!(map.calls, 5, "one call per full bucket");
        let taken = map.walk(0, BATCH_LEN, true).unwrap();
        assert_eq!(pairs(&taken), expected(0..10));
        assert_eq!(map.len(), 0);
    }

    #[test]
    fn a_bucket_bigger_than_the_batch_is_retried_with_room_for_it() {
        let mut map = map_with_buckets(&[1, 5, 1]);
        let taken = map.walk(0, BATCH_LEN, true).unwrap();
        assert_eq!(pairs(&taken), expected(0..7));
        assert_eq!(map.len(), 0);
        // Bucket 0; ENOSPC with room for 2, then for 4; buckets 1 and 2.
        assert_eq!(map.calls, 4);
    }

    #[test]
    fn a_take_failing_at_call_n_returns_exactly_what_earlier_calls_deleted() {
        for n in 1..=5u32 {
            let mut map = map_with_buckets(&[2; 5]);
            map.fail_call(n as usize, libc::EIO);
            let partial = map.walk(0, BATCH_LEN, true).unwrap_err();
            assert_eq!(partial.error.raw_os_error(), Some(libc::EIO));
            let before = 2 * (n - 1);
            assert_eq!(pairs(&partial.entries), expected(0..before), "call {n}");
            // The rest is still in the map, for the next take.
            let rest = map.walk(0, BATCH_LEN, true).unwrap();
            assert_eq!(pairs(&rest), expected(before..10), "call {n}");
        }
    }

    #[test]
    fn a_call_failing_midway_keeps_what_it_copied() {
        // As the kernel does when growing its bucket buffer fails (ENOMEM):
        // the buckets copied before are deleted, and `count` says so.
        let call = |call: BatchCall| {
            call.keys[..4].copy_from_slice(&7u32.to_ne_bytes());
            call.values[..8].copy_from_slice(&700u64.to_ne_bytes());
            *call.count = 1;
            -libc::ENOMEM
        };
        let partial = walk_batches(4, 8, 0, BATCH_LEN, call).unwrap_err();
        assert_eq!(partial.error.raw_os_error(), Some(libc::ENOMEM));
        assert_eq!(pairs(&partial.entries), [(7, 700)]);
    }
}
