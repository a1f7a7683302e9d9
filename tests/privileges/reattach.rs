//! A program whose link is closed under the exporter: the kernel says it is
//! no longer attached, and it is attached again and counts.

use std::io::Write;
use std::os::fd::AsRawFd;

use tcp_flow_exporter::kernel::programs::{self, Attachment};
use tcp_flow_exporter::kernel::{Backend, Probe, ProbeConfig};

use crate::support::{self, traffic::Pair};

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_detached_program_is_seen_from_the_kernel_and_reattached() {
    support::require_root();
    let name = support::probe_under_test();
    let backend = Backend::AUTO.into_iter().find(|b| b.name() == name);
    let mut probe = Probe::attach(backend, &ProbeConfig::default()).unwrap();
    let probe_name = probe.backend().name();
    let _stats = programs::enable().unwrap();
    let mut handles = probe.take_program_handles().unwrap();
    let sends = handles
        .iter()
        .position(|h| matches!(h.attachment, Attachment::Tracing(_)) && h.name.contains("send"))
        .expect("a tp_btf or fexit program on sends");
    assert_eq!(handles[sends].attached(), Some(true));

    // Another fd over the link's: the kernel frees the link, and with it
    // the attachment, as when a link is detached from outside.
    let link = handles[sends].link().unwrap().as_raw_fd();
    let null = std::fs::File::open("/dev/null").unwrap();
    // SAFETY: replaces an fd this test owns through `handles`.
    assert_eq!(unsafe { libc::dup2(null.as_raw_fd(), link) }, link);
    assert_eq!(handles[sends].attached(), Some(false));

    programs::keep_attached(&mut handles);
    if probe_name == "fentry" && kernel_below(5, 19) {
        // Before Linux 5.19 ("bpf: Allow trampoline re-attach for tracing
        // and lsm programs") a loaded fentry/fexit program attaches once:
        // the attempt fails, is retried each second, and the kernel's
        // answer keeps showing it detached.
        assert_eq!(handles[sends].attached(), Some(false));
        assert_eq!(handles[sends].reattached, 0);
        return;
    }
    assert_eq!(handles[sends].attached(), Some(true));
    assert_eq!(handles[sends].reattached, 1);
    programs::keep_attached(&mut handles);
    assert_eq!(handles[sends].reattached, 1, "re-attached once only");

    let runs = |h: &[programs::ProgramHandle]| {
        let stats = programs::read(h);
        stats
            .iter()
            .find(|s| s.name == h[sends].name)
            .unwrap()
            .run_count
    };
    let before = runs(&handles);
    let mut pair = Pair::on("127.0.0.1");
    for _ in 0..200 {
        pair.client.write_all(b"x").unwrap();
    }
    support::traffic::read_exactly(&mut pair.server, 200);
    // Other sockets on the node send too: at least our 200 sends.
    let after = runs(&handles);
    assert!(after - before >= 200, "{before} -> {after}");
}

/// Whether the running kernel is older than `major.minor`.
fn kernel_below(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let running = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    running < (major, minor)
}
