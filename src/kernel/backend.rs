//! The backends: sets of hooks that together count every send and receive,
//! and what each needs from the kernel.

use std::fmt;

use super::features::KernelFeatures;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// TCP's own sequence positions, read at close and at every scrape
    /// (bpf/socket.bpf.c).
    Socket,
    /// tp_btf on sock_send_length / sock_recv_length (bpf/per_event.bpf.c).
    Tracepoint,
    /// fexit on tcp_sendmsg / tcp_recvmsg (bpf/per_event.bpf.c).
    Fentry,
    /// kprobe + kretprobe pairs on the same functions (bpf/per_event.bpf.c).
    Kprobe,
}

impl Backend {
    /// What `--probe=auto` tries, cheapest first: nothing per event, then
    /// one tp_btf program per direction, then fexit trampolines, then
    /// kprobe/kretprobe pairs with a map between them.
    pub const AUTO: [Backend; 4] = [
        Backend::Socket,
        Backend::Tracepoint,
        Backend::Fentry,
        Backend::Kprobe,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Socket => "socket",
            Backend::Tracepoint => "tracepoint",
            Backend::Fentry => "fentry",
            Backend::Kprobe => "kprobe",
        }
    }

    /// Why this backend cannot count everything on a kernel with
    /// `features`, if it cannot.
    pub fn unsupported(self, features: &KernelFeatures) -> Option<&'static str> {
        match self {
            Backend::Socket
                if !(features.socket_storage_from_tracing && features.for_each_map_elem) =>
            {
                Some(
                    "it needs BPF socket storage from tracing programs (Linux 5.11) \
                 and bpf_for_each_map_elem (Linux 5.13)",
                )
            }
            Backend::Tracepoint if !features.sock_length_tracepoints => {
                Some("the kernel has no sock:sock_send_length tracepoint (added in Linux 6.3)")
            }
            Backend::Tracepoint if features.tcp_sendpage => Some(
                "sendfile() bypasses sock_sendmsg() on this kernel (tcp_sendpage \
                 exists; before Linux 6.5), so the tracepoints would miss its bytes",
            ),
            _ => None,
        }
    }

    /// The likely cause of the errors each backend meets most often.
    pub fn hint(self, error: &libbpf_rs::Error) -> &'static str {
        use libbpf_rs::ErrorKind;
        match (self, error.kind()) {
            (Backend::Fentry, ErrorKind::PermissionDenied) => {
                " (the kernel refuses BPF trampolines here; try --probe=tracepoint or kprobe)"
            }
            (Backend::Kprobe, ErrorKind::NotFound) => {
                " (this kernel has no kprobe support, CONFIG_KPROBES, or cannot probe that function)"
            }
            _ => "",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
