//! Whether each program is attached, as the kernel says, and re-attaching
//! one it no longer runs.
//!
//! The attached state is asked of the kernel through the link's own fd
//! (BPF_OBJ_GET_INFO_BY_FD): the fd must still be a BPF link, of this
//! program. On Linux 5.10 to 6.18 the links the exporter makes (raw
//! tracepoint links for tp_btf, tracing links for fentry/fexit, perf event
//! links for kprobes) have no BPF_LINK_DETACH: `bpftool link detach` gets
//! EOPNOTSUPP, and such a link lasts as long as an fd to it is open. What
//! can still end one is its fd being closed under the exporter; then the
//! kernel answers that the fd is no link of this program, and the program
//! is attached again.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use tracing::warn;

use super::least_privilege;
use super::programs::ProgramHandle;

/// How a program runs.
#[derive(Debug)]
pub enum Attachment {
    /// Run by user space (the socket backend's walk), or attached by
    /// someone else (benchmarks): nothing to check.
    Unwatched,
    /// A tp_btf or fentry/fexit program, attached with
    /// BPF_RAW_TRACEPOINT_OPEN, which the exporter can redo.
    Tracing(OwnedFd),
    /// A kprobe, attached by libbpf with a perf event: its link is checked;
    /// re-attaching it would need the kprobe's name and libbpf's object.
    Kprobe(OwnedFd),
}

/// Attaches a tp_btf or fentry/fexit program where its BTF says.
pub fn attach_tracing(program: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: a NULL name asks the kernel to attach a BTF-typed tracing
    // program at the target it was loaded for.
    let fd = unsafe { libbpf_sys::bpf_raw_tracepoint_open(std::ptr::null(), program.as_raw_fd()) };
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: the kernel just returned this fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// True while `link` is a BPF link of the program `program_id`.
pub fn is_link_of(link: BorrowedFd<'_>, program_id: u32) -> bool {
    let mut info = libbpf_sys::bpf_link_info::default();
    let mut len = std::mem::size_of::<libbpf_sys::bpf_link_info>() as u32;
    // SAFETY: `info` is a zeroed bpf_link_info of `len` bytes; with no
    // buffer pointers set, the kernel writes only scalar fields.
    let rc = unsafe { libbpf_sys::bpf_link_get_info_by_fd(link.as_raw_fd(), &mut info, &mut len) };
    rc == 0 && info.prog_id == program_id
}

/// The capabilities re-attaching needs, kept permitted after the drop:
/// set once at start-up.
/// Checks every watched program with the kernel and re-attaches the tracing
/// programs it no longer runs. Each detach is logged once.
pub fn keep_attached(programs: &mut [ProgramHandle]) {
    for program in programs {
        if program.attached() != Some(false) {
            continue;
        }
        let Attachment::Tracing(_) = &program.attachment else {
            if !program.detach_reported {
                warn!(program = %program.name, "BPF program detached from outside; a kprobe is not re-attached");
                program.detach_reported = true;
            }
            continue;
        };
        match least_privilege::with_bpf_caps(|| attach_tracing(program.fd.as_fd())) {
            Ok(link) => {
                program.attachment = Attachment::Tracing(link);
                program.reattached += 1;
                program.detach_reported = false;
                warn!(program = %program.name, "BPF program detached from outside; re-attached it (bytes moved meanwhile are not counted)");
            }
            Err(e) if !program.detach_reported => {
                warn!(program = %program.name, error = %e, "BPF program detached from outside; re-attaching failed, retrying every second");
                program.detach_reported = true;
            }
            Err(_) => {}
        }
    }
}
