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
    let probe = support::probe_under_test();
    let backend = Backend::AUTO.into_iter().find(|b| b.name() == probe);
    let mut probe = Probe::attach(backend, &ProbeConfig::default()).unwrap();
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
