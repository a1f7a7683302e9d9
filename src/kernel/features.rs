//! What the running kernel offers, read from its BTF rather than guessed from
//! its version number.

use std::path::Path;

use libbpf_rs::btf::types::{Func, FuncProto, Typedef};
use libbpf_rs::btf::{Btf, ReferencesType};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelFeatures {
    /// tp_btf targets sock:sock_send_length / sock:sock_recv_length (Linux 6.3+).
    pub sock_length_tracepoints: bool,
    /// tcp_sendpage() exists: sendfile()/splice() use it instead of
    /// tcp_sendmsg() (Linux before 6.5).
    pub tcp_sendpage: bool,
    /// tcp_recvmsg() still takes `int nonblock` before `flags` (before 5.19).
    pub tcp_recvmsg_has_nonblock: bool,
    /// What the socket backend needs: BPF socket storage from tracing
    /// programs (Linux 5.11) and bpf_for_each_map_elem (Linux 5.13).
    pub socket_storage_from_tracing: bool,
    pub for_each_map_elem: bool,
    /// The bpf_rdonly_cast kfunc (Linux 6.2+).
    pub rdonly_cast: bool,
}

impl KernelFeatures {
    pub fn detect() -> Result<KernelFeatures, String> {
        require_kernel_btf(Path::new(VMLINUX_BTF))?;
        let btf = Btf::from_vmlinux().map_err(|e| format!("{VMLINUX_BTF}: {e}"))?;
        let recvmsg = btf
            .type_by_name::<Func<'_>>("tcp_recvmsg")
            .ok_or("the kernel BTF has no tcp_recvmsg function")?;
        let proto = FuncProto::try_from(recvmsg.referenced_type())
            .map_err(|_| "tcp_recvmsg in the kernel BTF is not a function prototype")?;
        Ok(KernelFeatures {
            sock_length_tracepoints: btf
                .type_by_name::<Typedef<'_>>("btf_trace_sock_send_length")
                .is_some(),
            tcp_sendpage: btf.type_by_name::<Func<'_>>("tcp_sendpage").is_some(),
            tcp_recvmsg_has_nonblock: proto.len() == 6,
            socket_storage_from_tracing: btf
                .type_by_name::<Func<'_>>("bpf_sk_storage_get_tracing")
                .is_some(),
            for_each_map_elem: btf
                .type_by_name::<Func<'_>>("bpf_for_each_map_elem")
                .is_some(),
            rdonly_cast: btf.type_by_name::<Func<'_>>("bpf_rdonly_cast").is_some(),
        })
    }
}

/// CO-RE needs the kernel's own type information; say so plainly when it is
/// missing instead of letting libbpf fail with ENOENT later.
pub fn require_kernel_btf(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "kernel BTF not found at {}: this kernel was built without \
             CONFIG_DEBUG_INFO_BTF, which tcp-flow-exporter needs",
            path.display()
        )),
        Err(e) => Err(format!("cannot read kernel BTF at {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_btf_is_named() {
        let err = require_kernel_btf(Path::new("/nonexistent/btf/vmlinux")).unwrap_err();
        assert!(
            err.starts_with("kernel BTF not found at /nonexistent/btf/vmlinux"),
            "{err}"
        );
        assert!(err.contains("CONFIG_DEBUG_INFO_BTF"), "{err}");
    }
}
