//! The loaded BPF programs as user space holds them: their run statistics,
//! read at scrape time, and test runs of programs user space runs itself.
//!
//! The kernel counts runs and run time only while BPF statistics are on:
//! `sysctl kernel.bpf_stats_enabled=1`, or a BPF_ENABLE_STATS file
//! descriptor, which the exporter holds with `--bpf.stats`. Either way it
//! costs two clock reads per program run for every BPF program on the node.
//! Recursion misses (runs the kernel skipped, Linux 5.12+) are always counted.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::links::is_link_of;
pub use super::links::{keep_attached, Attachment};

/// One loaded program the exporter reports on, and its link.
#[derive(Debug)]
pub struct ProgramHandle {
    pub name: String,
    pub fd: OwnedFd,
    /// The program's id, which its link must name.
    pub id: u32,
    pub attachment: Attachment,
    /// Times it was found detached and attached again.
    pub reattached: u64,
    /// Its current detach has been logged.
    pub detach_reported: bool,
}

impl ProgramHandle {
    /// A program whose attachment someone else looks after.
    pub fn unwatched(name: String, fd: OwnedFd) -> ProgramHandle {
        ProgramHandle::new(name, fd, Attachment::Unwatched)
    }

    pub fn new(name: String, fd: OwnedFd, attachment: Attachment) -> ProgramHandle {
        let id = libbpf_rs::Program::id_from_fd(fd.as_fd()).unwrap_or(0);
        ProgramHandle {
            name,
            fd,
            id,
            attachment,
            reattached: 0,
            detach_reported: false,
        }
    }

    /// Whether the kernel runs it at its hook now; None for a program
    /// user space runs itself.
    pub fn attached(&self) -> Option<bool> {
        match &self.attachment {
            Attachment::Unwatched => None,
            Attachment::Tracing(link) | Attachment::Kprobe(link) => {
                Some(is_link_of(link.as_fd(), self.id))
            }
        }
    }

    /// The fd of its link, if it has one.
    pub fn link(&self) -> Option<BorrowedFd<'_>> {
        match &self.attachment {
            Attachment::Unwatched => None,
            Attachment::Tracing(link) | Attachment::Kprobe(link) => Some(link.as_fd()),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgramStats {
    pub name: String,
    pub run_count: u64,
    pub run_time_ns: u64,
    pub recursion_misses: u64,
    /// Whether the kernel runs it at its hook; None for the walk.
    pub attached: Option<bool>,
    pub reattached: u64,
}

/// Reads the counters of each program; a program whose info cannot be read
/// is left out rather than failing the scrape.
pub fn read(programs: &[ProgramHandle]) -> Vec<ProgramStats> {
    programs
        .iter()
        .filter_map(|p| {
            let mut info = libbpf_sys::bpf_prog_info::default();
            let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
            // SAFETY: `info` is a zeroed bpf_prog_info of `len` bytes; with no
            // array pointers set, the kernel writes only scalar fields.
            let ret = unsafe {
                libbpf_sys::bpf_prog_get_info_by_fd(p.fd.as_raw_fd(), &mut info, &mut len)
            };
            (ret == 0).then(|| ProgramStats {
                name: p.name.clone(),
                run_count: info.run_cnt,
                run_time_ns: info.run_time_ns,
                recursion_misses: info.recursion_misses,
                attached: p.attached(),
                reattached: p.reattached,
            })
        })
        .collect()
}

/// Asks the kernel about `program` (BPF_OBJ_GET_INFO_BY_FD): the cheapest
/// of the bpf() calls each scrape makes.
pub fn ask_kernel(program: &ProgramHandle) -> io::Result<()> {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: as in `read`.
    let rc =
        unsafe { libbpf_sys::bpf_prog_get_info_by_fd(program.fd.as_raw_fd(), &mut info, &mut len) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    Ok(())
}

/// Whether BPF statistics are on system-wide (the sysctl).
pub fn sysctl_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|v| v.trim() == "1")
}

/// Turns BPF run-time statistics on for as long as the returned fd lives.
pub fn enable() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall wrapper; a non-negative return is a new fd we own.
    let fd = unsafe { libbpf_sys::bpf_enable_stats(libbpf_sys::BPF_STATS_RUN_TIME) };
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: `fd` was just returned to us and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Runs a program once with BPF_PROG_TEST_RUN, with `args` as its context
/// (a raw tracepoint's arguments): for programs that are never attached,
/// such as the socket backend's walk.
pub fn test_run_with(program: BorrowedFd<'_>, args: &[u64]) -> io::Result<()> {
    // SAFETY: a zeroed bpf_test_run_opts with its size set is valid input.
    let mut opts: libbpf_sys::bpf_test_run_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _;
    opts.ctx_in = args.as_ptr().cast();
    opts.ctx_size_in = std::mem::size_of_val(args) as u32;
    // SAFETY: plain syscall wrapper on a program fd the caller holds; the
    // kernel only reads `ctx_size_in` bytes of `args`, which outlives the call.
    let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(program.as_raw_fd(), &mut opts) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    Ok(())
}
