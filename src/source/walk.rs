//! Reads what every live connection the socket backend counts moved since
//! the last walk, in every network namespace.
//!
//! The walk program (walk_shard, bpf/socket_walk.bpf.h) is never attached:
//! each walk runs it with BPF_PROG_TEST_RUN once per shard of the
//! connections, and reads the run's records from the memory-mapped
//! walk_out. One run covers at most SOCKET_SHARD_ENTRIES connections, so it
//! holds its CPU well under a millisecond, and the scheduler is free
//! between runs.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use libbpf_rs::MapHandle;

use super::FlowSink;
use crate::kernel::monotonic_now_ns;
use crate::kernel::programs::test_run_with;
use crate::kernel::skel::{key_bytes, WalkOutput};
use crate::kernel::socket_shards::SocketShards;
use crate::kernel::walk_output::MappedOutput;

/// Runs a shard again at most this often in one walk when its run stopped
/// early (entries replaced under it); what is left then waits for the next
/// walk, or the connection's end.
const RERUNS_PER_SHARD: u32 = 4;

#[derive(Debug)]
pub struct SocketWalker {
    /// The walk program.
    walk: OwnedFd,
    shards: SocketShards,
    output: MappedOutput,
    /// How the last walk went.
    pub last: WalkStats,
}

/// One walk's pieces: every run of the program, each over one shard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalkStats {
    pub runs: u32,
    /// The longest single run, as the kernel timed it.
    pub longest_run: Duration,
    /// All runs together, as the kernel timed them.
    pub kernel_time: Duration,
    /// Connections that moved since the walk before.
    pub records: u64,
}

impl SocketWalker {
    pub fn new(
        walk: OwnedFd,
        shards: SocketShards,
        walk_out: MapHandle,
    ) -> io::Result<SocketWalker> {
        Ok(SocketWalker {
            walk,
            shards,
            output: MappedOutput::map(walk_out)?,
            last: WalkStats::default(),
        })
    }

    /// Adds what every counted live connection moved since the last walk.
    /// Each shard's growth is stamped when its run ended, never earlier:
    /// bytes that moved during a slow walk must not look older than they
    /// are, or a flow could expire before its idle timeout.
    pub fn walk(&mut self, sink: &mut dyn FlowSink) -> io::Result<()> {
        let mut stats = WalkStats::default();
        for shard in 0..self.shards.in_use()? {
            for _ in 0..=RERUNS_PER_SHARD {
                test_run_with(self.walk.as_fd(), &[u64::from(shard)])?;
                let now = monotonic_now_ns();
                let output: &WalkOutput = self.output.get();
                let took = Duration::from_nanos(output.run_ns);
                stats.runs += 1;
                stats.kernel_time += took;
                stats.longest_run = stats.longest_run.max(took);
                let records = &output.record[..(output.records as usize).min(output.record.len())];
                for r in records {
                    sink.add(&key_bytes(&r.key), r.sent, r.received, now);
                }
                stats.records += records.len() as u64;
                if output.more == 0 {
                    break;
                }
            }
        }
        self.last = stats;
        Ok(())
    }
}
