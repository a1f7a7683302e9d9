//! The socket backend's walk output (bpf/flow.h `struct walk_output`), read
//! in place through a read-only mapping of the walk_out array map.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::ptr::NonNull;

use libbpf_rs::MapHandle;

use super::skel::WalkOutput;

#[derive(Debug)]
pub struct MappedOutput {
    /// Keeps the map alive for as long as it is mapped.
    _map: MapHandle,
    address: NonNull<WalkOutput>,
    len: usize,
}

// SAFETY: the mapping is owned by this value alone and only read.
unsafe impl Send for MappedOutput {}

impl MappedOutput {
    /// Maps walk_out, a BPF_F_MMAPABLE array of one `struct walk_output`.
    pub fn map(map: MapHandle) -> io::Result<MappedOutput> {
        let len = size_of::<WalkOutput>().next_multiple_of(page_size());
        // SAFETY: a new shared read-only mapping of the map's value area,
        // which the kernel sizes to whole pages; nothing else aliases it
        // as Rust memory.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                map.as_fd().as_raw_fd(),
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(MappedOutput {
            _map: map,
            address: NonNull::new(address.cast()).expect("mmap never maps page 0"),
            len,
        })
    }

    /// The last run's output. Only the walk program writes it, inside
    /// BPF_PROG_TEST_RUN calls this process makes one at a time, so it does
    /// not change while borrowed.
    pub fn get(&self) -> &WalkOutput {
        // SAFETY: the mapping is page-aligned, at least as long as a
        // WalkOutput, and every byte pattern is a valid WalkOutput
        // (KernelType); it is not written while the borrow lives (above).
        unsafe { self.address.as_ref() }
    }
}

impl Drop for MappedOutput {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`.
        unsafe { libc::munmap(self.address.as_ptr().cast(), self.len) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}
