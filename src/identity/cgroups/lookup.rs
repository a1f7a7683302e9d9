//! From a cgroup id to the cgroup's path below the cgroup2 mount.
//!
//! On cgroup2 the id the kernel puts in the flow key
//! (`sk->sk_cgrp_data.cgroup->kn->id`) is the kernfs node id, which on a
//! 64-bit kernel is also the inode number of the cgroup's directory. Two
//! ways get from one to the other:
//!
//! - **A file handle.** kernfs exports its nodes with handles of type
//!   `FILEID_KERNFS` whose 8 bytes are the id, so `open_by_handle_at` on
//!   the mount opens the directory in one system call, and the path is the
//!   link `/proc/self/fd/N`. It needs `CAP_DAC_READ_SEARCH` and a kernel
//!   whose cgroup2 supports handles (4.15 and later).
//! - **A walk** of the whole tree, matching directory inode numbers, when
//!   handles are refused. One walk maps every cgroup at once.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::CgroupError;

/// kernfs's handle type (`include/linux/exportfs.h`).
const FILEID_KERNFS: i32 = 0xfe;

/// `include/uapi/linux/magic.h`; libc's constant has a different integer
/// type on each target, like `f_type` itself.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// A walk lists every directory of the tree, a few milliseconds on a busy
/// node. A scrape meets many ids at once, and an id that is gone (a
/// short-lived process's cgroup, removed before the scrape) is in no walk;
/// without a limit each scrape would walk again for it. One walk per
/// second bounds that cost, and a cgroup newer than the last walk waits at
/// most a second to be found.
const WALK_INTERVAL: Duration = Duration::from_secs(1);

/// cgroup2 nests no deeper than this in practice (systemd and kubelet stay
/// under ten levels); the bound only guards the walk against a loop.
const MAX_DEPTH: usize = 64;

/// How ids are being turned into paths.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LookupMethod {
    Handle,
    Walk,
}

/// The answer for one id.
pub(super) enum Found {
    /// The path relative to the root; empty for the root itself.
    Path(PathBuf),
    /// The cgroup certainly no longer exists: ids are never reused, so the
    /// answer stands for good.
    Gone,
    /// Not found now (a walk was not allowed yet, or an unexpected error).
    NotNow,
}

pub(super) struct Lookup {
    root: PathBuf,
    mount: OwnedFd,
    pub(super) method: LookupMethod,
    walked: HashMap<u64, PathBuf>,
    last_walk: Option<Instant>,
    pub(super) walks: u64,
}

impl Lookup {
    /// Opens `root`, checks it is a cgroup2 mount, and tries a handle on
    /// the root itself to choose the method once, up front.
    pub(super) fn open(root: &Path) -> Result<Lookup, CgroupError> {
        let bad = |error: io::Error| CgroupError::Root {
            root: root.to_path_buf(),
            error,
        };
        let root = fs::canonicalize(root).map_err(bad)?;
        let file = fs::File::open(&root).map_err(bad)?;
        check_cgroup2(&file, &root)?;
        let root_id = file.metadata().map_err(bad)?.ino();
        let mut lookup = Lookup {
            root,
            mount: OwnedFd::from(file),
            method: LookupMethod::Handle,
            walked: HashMap::new(),
            last_walk: None,
            walks: 0,
        };
        if let Err(error) = lookup.by_handle(root_id) {
            lookup.give_up_handles(&error);
        }
        Ok(lookup)
    }

    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    pub(super) fn find(&mut self, id: u64) -> Found {
        if self.method == LookupMethod::Handle {
            match self.by_handle(id) {
                Ok(path) => return Found::Path(path),
                Err(error) => match error.raw_os_error() {
                    // ESTALE: the handle is well formed but its node was
                    // removed; ENOENT: readlink raced the removal.
                    Some(libc::ESTALE) | Some(libc::ENOENT) => return Found::Gone,
                    Some(libc::EPERM | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => {
                        self.give_up_handles(&error);
                    }
                    _ => return Found::NotNow,
                },
            }
        }
        self.by_walk(id)
    }

    /// Whether the cgroup at `relative` is still the one with this id
    /// (a removed cgroup's name can be taken by a new one).
    pub(super) fn still_exists(&self, id: u64, relative: &Path) -> bool {
        fs::metadata(self.root.join(relative)).is_ok_and(|meta| meta.ino() == id)
    }

    /// Forgets the last walk's map, which holds every cgroup of the host.
    pub(super) fn forget_walk(&mut self) {
        self.walked = HashMap::new();
    }

    #[cfg(test)]
    pub(super) fn force_walk(&mut self) {
        self.method = LookupMethod::Walk;
    }

    fn give_up_handles(&mut self, error: &io::Error) {
        tracing::info!(
            "cgroup ids: open_by_handle_at on {} is refused ({error}); finding cgroups by walking the tree instead",
            self.root.display()
        );
        self.method = LookupMethod::Walk;
    }

    fn by_handle(&self, id: u64) -> io::Result<PathBuf> {
        let mut handle = KernfsHandle {
            handle_bytes: 8,
            handle_type: FILEID_KERNFS,
            id: id.to_ne_bytes(),
        };
        // SAFETY: `handle` is a `struct file_handle` header followed by
        // exactly `handle_bytes` bytes, which is all the kernel reads; the
        // mount fd is open for as long as `self`.
        let fd = unsafe {
            libc::open_by_handle_at(
                self.mount.as_raw_fd(),
                (&mut handle as *mut KernfsHandle).cast::<libc::file_handle>(),
                libc::O_PATH | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let link = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        // The link is the path through our mount. A removed directory gets
        // " (deleted)" appended and one outside the mount's root (a mount of
        // a subtree) is not below it: both are checked by the inode, which
        // must be the id itself.
        let relative = link
            .strip_prefix(&self.root)
            .map_err(|_| io::Error::from_raw_os_error(libc::ENOENT))?;
        if !self.still_exists(id, relative) {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        Ok(relative.to_path_buf())
    }

    fn by_walk(&mut self, id: u64) -> Found {
        if let Some(path) = self.walked.get(&id) {
            return Found::Path(path.clone());
        }
        if self
            .last_walk
            .is_some_and(|at| at.elapsed() < WALK_INTERVAL)
        {
            return Found::NotNow;
        }
        self.walked = walk(&self.root);
        self.last_walk = Some(Instant::now());
        self.walks += 1;
        match self.walked.get(&id) {
            Some(path) => Found::Path(path.clone()),
            // Not in a full walk: gone, or newer than the walk. Only the
            // next walk can tell, so this is not remembered as gone.
            None => Found::NotNow,
        }
    }
}

/// `struct file_handle` with room for kernfs's 8-byte id.
#[repr(C)]
struct KernfsHandle {
    handle_bytes: u32,
    handle_type: i32,
    id: [u8; 8],
}

fn check_cgroup2(file: &fs::File, root: &Path) -> Result<(), CgroupError> {
    // SAFETY: statfs is plain old data; all zeros is a valid value.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: the fd is open and `stat` is a valid, writable statfs.
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut stat) } != 0 {
        return Err(CgroupError::Root {
            root: root.to_path_buf(),
            error: io::Error::last_os_error(),
        });
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs per libc
    let magic = stat.f_type as i64;
    if magic == CGROUP2_SUPER_MAGIC {
        return Ok(());
    }
    Err(CgroupError::NotCgroup2 {
        root: root.to_path_buf(),
        magic,
        hint: find_cgroup2_mount(),
    })
}

/// Every cgroup below `root` by id (its directory's inode number, which
/// readdir gives without a stat per directory).
fn walk(root: &Path) -> HashMap<u64, PathBuf> {
    let mut found = HashMap::new();
    if let Ok(meta) = fs::metadata(root) {
        found.insert(meta.ino(), PathBuf::new());
    }
    let mut pending = vec![(PathBuf::new(), 0)];
    while let Some((relative, depth)) = pending.pop() {
        // A cgroup removed during the walk is simply not listed.
        let Ok(entries) = fs::read_dir(root.join(&relative)) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                continue;
            }
            let child = relative.join(entry.file_name());
            found.insert(entry.ino(), child.clone());
            if depth + 1 < MAX_DEPTH {
                pending.push((child, depth + 1));
            }
        }
    }
    found
}

/// Where this system mounts cgroup2, from `/proc/self/mountinfo`: on a
/// host with systemd's hybrid hierarchy it is `/sys/fs/cgroup/unified`,
/// not `/sys/fs/cgroup`.
pub fn find_cgroup2_mount() -> Option<PathBuf> {
    let mountinfo = fs::read("/proc/self/mountinfo").ok()?;
    mountinfo.split(|&b| b == b'\n').find_map(|line| {
        // "id parent major:minor root mount-point options - fstype source ..."
        let line = std::str::from_utf8(line).ok()?;
        let (fields, after) = line.split_once(" - ")?;
        if after.split(' ').next()? != "cgroup2" {
            return None;
        }
        let point = fields.split(' ').nth(4)?;
        Some(PathBuf::from(unescape_octal(point)))
    })
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let octal = bytes
            .get(at + 1..at + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[at], octal) {
            (b'\\', Some(digits)) => {
                out.push(
                    digits
                        .iter()
                        .fold(0u8, |n, d| n.wrapping_mul(8) + (d - b'0')),
                );
                at += 4;
            }
            (byte, _) => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
