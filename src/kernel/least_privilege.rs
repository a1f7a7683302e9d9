//! Least privilege after attach: once the programs are loaded and attached,
//! the exporter gives up every capability it no longer needs, and keeps the
//! few that re-attaching a program (or a conntrack lookup) needs in the
//! permitted set only, raised into the effective set around that one call.
//!
//! Capabilities belong to threads, not processes: [`drop_after_attach`]
//! changes the calling thread, and threads created later inherit its sets.
//! It refuses to run while other threads exist, which would keep theirs.
//!
//! The `caps` crate would wrap the same three calls (capget/capset and
//! prctl); libc is already a dependency and the calls are few, so they are
//! made directly.

use std::io;

use tracing::info;

pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// A set of capabilities, one bit per capability number.
pub type Caps = u64;

pub const fn bit(cap: u32) -> Caps {
    1 << cap
}

/// A thread's capability sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapSets {
    pub effective: Caps,
    pub permitted: Caps,
    pub inheritable: Caps,
}

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set.
const VERSION_3: u32 = 0x2008_0522;

/// The calling thread's sets.
pub fn current() -> io::Result<CapSets> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget writes two Data words for version 3 into `data`.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let join = |low: u32, high: u32| u64::from(low) | (u64::from(high) << 32);
    Ok(CapSets {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

/// Sets the calling thread's sets (only lowering, or raising into effective
/// what is permitted).
fn set(sets: CapSets) -> io::Result<()> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let split = |s: Caps| (s as u32, (s >> 32) as u32);
    let (e0, e1) = split(sets.effective);
    let (p0, p1) = split(sets.permitted);
    let (i0, i1) = split(sets.inheritable);
    let data = [
        Data {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        Data {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: capset reads the header and two Data words for version 3.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn prctl(option: i32, arg: u64) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(option, arg, 0u64, 0u64, 0u64) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What loading and attaching BPF needed and re-attaching needs again:
/// CAP_BPF and CAP_PERFMON where the kernel has them (5.8+) and the process
/// holds them, CAP_SYS_ADMIN otherwise.
pub fn bpf_caps(permitted: Caps) -> Caps {
    let split = bit(CAP_BPF) | bit(CAP_PERFMON);
    if permitted & split == split {
        split
    } else {
        bit(CAP_SYS_ADMIN)
    }
}

/// The sets after [`drop_after_attach`], for the log and the tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dropped {
    pub sets: CapSets,
    pub bounding: Caps,
}

/// Gives up every capability but `keep`, which stays permitted (not
/// effective), and forbids gaining any back through execve.
///
/// `steady` is one BPF call of the kind the exporter makes at every scrape;
/// it runs with an empty effective set. Kernels before 6.5 with
/// kernel.unprivileged_bpf_disabled set refuse every bpf() call without
/// CAP_BPF (CAP_SYS_ADMIN before 5.8), so there that one stays effective.
pub fn drop_after_attach(keep: Caps, steady: impl Fn() -> io::Result<()>) -> io::Result<Dropped> {
    let threads = std::fs::read_dir("/proc/self/task")?.count();
    if threads != 1 {
        return Err(io::Error::other(format!(
            "{threads} threads run; capabilities can only be dropped for all of them from the only one"
        )));
    }
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1)?;
    // Ambient capabilities exist from Linux 4.3; none is ever needed.
    if let Err(e) = prctl_ambient_clear() {
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(e);
        }
    }
    let before = current()?;
    // The bounding set limits what an execve as root could regain. Dropping
    // from it needs CAP_SETPCAP, which a container granted only what the
    // exporter needs does not have: there the runtime already bounded it.
    for cap in 0..=last_cap() {
        if keep & bit(cap) == 0 && bounding() & bit(cap) != 0 {
            if let Err(e) = prctl(libc::PR_CAPBSET_DROP, u64::from(cap)) {
                if before.effective & bit(SETPCAP) != 0 {
                    return Err(e);
                }
                break;
            }
        }
    }
    let permitted = before.permitted & keep;
    let mut sets = CapSets {
        effective: 0,
        permitted,
        inheritable: 0,
    };
    set(sets)?;
    if let Err(e) = steady() {
        if e.raw_os_error() != Some(libc::EPERM) {
            return Err(e);
        }
        sets.effective = bpf_caps(permitted) & permitted & !bit(CAP_PERFMON);
        set(sets)?;
        info!("this kernel needs CAP_BPF for every bpf() call (Linux < 6.5 with kernel.unprivileged_bpf_disabled), so it stays effective");
    }
    let dropped = Dropped {
        sets,
        bounding: bounding(),
    };
    info!(
        effective = %names(dropped.sets.effective),
        permitted = %names(dropped.sets.permitted),
        bounding = %names(dropped.bounding),
        "dropped capabilities after attach"
    );
    Ok(dropped)
}

const SETPCAP: u32 = 8;

fn prctl_ambient_clear() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as u64,
            0u64,
            0u64,
            0u64,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The highest capability number this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(CAP_BPF)
}

/// The calling thread's bounding set.
pub fn bounding() -> Caps {
    (0..=last_cap())
        // SAFETY: prctl with integer arguments only.
        .filter(|&cap| unsafe { libc::prctl(libc::PR_CAPBSET_READ, u64::from(cap), 0, 0, 0) } == 1)
        .fold(0, |set, cap| set | bit(cap))
}

/// Runs `f` with `caps` raised into the calling thread's effective set, as
/// far as they are permitted, and lowers them again after.
pub fn raised<T>(caps: Caps, f: impl FnOnce() -> T) -> T {
    let Ok(before) = current() else {
        return f();
    };
    let missing = caps & before.permitted & !before.effective;
    if missing == 0 {
        return f();
    }
    let raised = CapSets {
        effective: before.effective | missing,
        ..before
    };
    let was_raised = set(raised).is_ok();
    let result = f();
    if was_raised {
        // Lowering what was just raised cannot fail.
        let _ = set(before);
    }
    result
}

/// The BPF capabilities kept permitted after the drop, for the bpf() calls
/// that need them later: re-attaching a program, adding a socket shard.
static KEPT_BPF_CAPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn keep_bpf_caps(caps: Caps) {
    KEPT_BPF_CAPS.store(caps, std::sync::atomic::Ordering::Relaxed);
}

/// Runs `f` with the kept BPF capabilities raised (see [`raised`]).
pub fn with_bpf_caps<T>(f: impl FnOnce() -> T) -> T {
    raised(KEPT_BPF_CAPS.load(std::sync::atomic::Ordering::Relaxed), f)
}

/// "CAP_BPF,CAP_PERFMON": the names of the capabilities in `set`.
pub fn names(set: Caps) -> String {
    let named = [
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
        (CAP_PERFMON, "CAP_PERFMON"),
        (CAP_BPF, "CAP_BPF"),
    ];
    let mut parts: Vec<String> = (0..64)
        .filter(|&cap| set & bit(cap) != 0)
        .map(|cap| {
            named
                .iter()
                .find(|(n, _)| *n == cap)
                .map_or_else(|| format!("cap_{cap}"), |(_, name)| (*name).to_owned())
        })
        .collect();
    if parts.is_empty() {
        parts.push("none".into());
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpf_caps_prefers_the_split_capabilities() {
        let all = u64::MAX >> 24;
        assert_eq!(bpf_caps(all), bit(CAP_BPF) | bit(CAP_PERFMON));
        assert_eq!(bpf_caps(bit(CAP_SYS_ADMIN)), bit(CAP_SYS_ADMIN));
        assert_eq!(bpf_caps(bit(CAP_BPF)), bit(CAP_SYS_ADMIN));
    }

    #[test]
    fn names_lists_capabilities_in_order() {
        assert_eq!(names(0), "none");
        assert_eq!(
            names(bit(CAP_BPF) | bit(CAP_PERFMON) | bit(CAP_NET_ADMIN) | bit(1)),
            "cap_1,CAP_NET_ADMIN,CAP_PERFMON,CAP_BPF"
        );
    }
}
