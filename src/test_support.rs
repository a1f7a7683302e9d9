//! Fixtures for the unit tests: kernel keys and entries, and flow tables
//! built from them. The one place tests make kernel data by hand.

use std::net::SocketAddr;

use crate::flows::key::encode_key;
pub use crate::flows::key::Role;
use crate::flows::FlowTable;
use crate::kernel::maps::{walk_batches, BatchCall, MapEntries, PartialTake};
use crate::kernel::skel::{from_bytes, key_bytes, FlowBytes, FlowKey, FlowKeyBytes};
use crate::source::FlowSink;

/// The kernel's key of a flow, from `"ip:port"` texts.
pub fn key(local: &str, remote: &str, role: Role) -> FlowKey {
    let addr = |text: &str| text.parse::<SocketAddr>().expect("ip:port");
    encode_key(addr(local), addr(remote), role)
}

/// The key of flow number `port`: 127.0.0.1:`port` to 127.0.0.2:80.
pub fn key_with_port(port: u16) -> FlowKeyBytes {
    key_bytes(&key(
        &format!("127.0.0.1:{port}"),
        "127.0.0.2:80",
        Role::Unknown,
    ))
}

/// A kernel flow table's value.
pub fn counted(sent: u64, received: u64, last_seen_ns: u64) -> FlowBytes {
    FlowBytes {
        sent,
        received,
        last_seen_ns,
    }
}

/// A table of the given flows and their (sent, received) bytes, each as one
/// drained kernel entry.
pub fn table_of(flows: &[(FlowKey, u64, u64)]) -> FlowTable {
    let mut table = FlowTable::new(100, u64::MAX);
    for (key, sent, received) in flows {
        table.settle(&key_bytes(key), &counted(*sent, *received, 1));
    }
    table
}

/// Every flow of `table` as (local port, sent, received), sorted.
pub fn totals_by_port(table: &FlowTable) -> Vec<(u16, u64, u64)> {
    let mut all: Vec<_> = table
        .flows()
        .iter()
        .map(|f| (f.local.port(), f.sent, f.received))
        .collect();
    all.sort();
    all
}

/// A BPF hash map in memory that answers batch calls as the kernel's does
/// (kernel/bpf/hashtab.c): whole buckets per call, the cursor the index of
/// the next bucket, ENOSPC with nothing copied when the first bucket with
/// entries does not fit, ENOENT with the last bucket. A call can be made to
/// fail as one the kernel refuses: nothing copied or deleted, and `count`
/// left as it was.
#[derive(Clone, Debug)]
pub struct FakeHashMap {
    buckets: Vec<Vec<(Vec<u8>, Vec<u8>)>>,
    key_size: usize,
    value_size: usize,
    /// Batch calls answered or refused so far.
    pub calls: usize,
    /// The call (counted from the first) to refuse, and its errno.
    fail: Option<(usize, i32)>,
}

impl FakeHashMap {
    pub fn new(buckets: usize, key_size: usize, value_size: usize) -> FakeHashMap {
        FakeHashMap {
            buckets: vec![Vec::new(); buckets],
            key_size,
            value_size,
            calls: 0,
            fail: None,
        }
    }

    /// Puts an entry into the given bucket, for tests that lay out batches.
    pub fn insert_in(&mut self, bucket: usize, key: &[u8], value: &[u8]) {
        self.buckets[bucket].push((key.to_vec(), value.to_vec()));
    }

    /// Creates or replaces `key`'s entry, in the bucket its hash picks.
    pub fn update(&mut self, key: &[u8], value: &[u8]) {
        // FNV-1a: spreads keys differing in a byte or two over the buckets.
        let hash = key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let index = (hash % self.buckets.len() as u64) as usize;
        let bucket = &mut self.buckets[index];
        match bucket.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.to_vec(),
            None => bucket.push((key.to_vec(), value.to_vec())),
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.buckets
            .iter()
            .flatten()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    pub fn len(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum()
    }

    /// Makes the `n`th call from now (1: the next) fail with `errno`.
    pub fn fail_call(&mut self, n: usize, errno: i32) {
        self.fail = Some((self.calls + n, errno));
    }

    /// Reads (and with `delete` empties) the map through the real batch
    /// loop, asking for `batch_len` entries per call at first.
    pub fn walk(
        &mut self,
        size_hint: usize,
        batch_len: u32,
        delete: bool,
    ) -> Result<MapEntries, PartialTake> {
        let (key_size, value_size) = (self.key_size, self.value_size);
        let batch = |call: BatchCall| self.batch(call, delete);
        walk_batches(key_size, value_size, size_hint, batch_len, batch)
    }

    /// One BPF_MAP_LOOKUP(_AND_DELETE)_BATCH call, with libbpf's arguments
    /// and return value.
    fn batch(&mut self, call: BatchCall, delete: bool) -> i32 {
        let BatchCall {
            in_batch,
            out_batch,
            keys,
            values,
            count,
        } = call;
        self.calls += 1;
        if let Some((call, errno)) = self.fail {
            if call == self.calls {
                return -errno;
            }
        }
        let cursor = |c: &[u8]| u32::from_ne_bytes(c[..4].try_into().unwrap()) as usize;
        let mut bucket = in_batch.map_or(0, cursor);
        let (room, mut total, mut ret) = (*count as usize, 0, -libc::ENOENT);
        while bucket < self.buckets.len() {
            let entries = &self.buckets[bucket];
            if entries.len() > room - total {
                ret = if total == 0 { -libc::ENOSPC } else { 0 };
                break;
            }
            for (k, v) in entries {
                keys[total * self.key_size..][..self.key_size].copy_from_slice(k);
                values[total * self.value_size..][..self.value_size].copy_from_slice(v);
                total += 1;
            }
            if delete {
                self.buckets[bucket].clear();
            }
            bucket += 1;
        }
        *count = total as u32;
        out_batch[..4].copy_from_slice(&(bucket as u32).to_ne_bytes());
        ret
    }
}

/// [`key_with_port`]'s flow, its socket created in cgroup `cgroup`.
pub fn key_in_cgroup(port: u16, cgroup: u64) -> FlowKeyBytes {
    let mut key: FlowKey = from_bytes(&key_with_port(port));
    key.cgroup = cgroup;
    key_bytes(&key)
}
