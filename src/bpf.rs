//! The skeleton libbpf-cargo generates from bpf/flow.bpf.c, and the shared
//! types of bpf/flow.h as Rust sees them.

// Generated code: its lints are libbpf-cargo's business, not ours.
#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::undocumented_unsafe_blocks,
    unused_imports,
    unsafe_op_in_unsafe_fn
)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/flow.skel.rs"));
}

/// Empty programs on the send/recv hooks, the benchmarks' baseline
/// (bpf/empty.bpf.c); the exporter never loads them.
#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::undocumented_unsafe_blocks,
    unused_imports,
    unsafe_op_in_unsafe_fn
)]
pub mod empty {
    include!(concat!(env!("OUT_DIR"), "/empty.skel.rs"));
}

pub use skel::types::{
    cidr_key as CidrKey, connection_totals as ConnectionTotals, flow_bytes as FlowBytes,
    flow_key as FlowKey, probe_health as ProbeHealth, rodata as Rodata,
    socket_state as SocketState,
};
pub use skel::{FlowSkel, FlowSkelBuilder, OpenFlowSkel};

// SAFETY: both are generated `#[repr(C)]` structs made only of integers and
// integer arrays with no padding, so every byte pattern is a valid value.
unsafe impl plain::Plain for FlowKey {}
// SAFETY: as above.
unsafe impl plain::Plain for FlowBytes {}
// SAFETY: as above.
unsafe impl plain::Plain for ProbeHealth {}
// SAFETY: as above (two u64, a 40-byte key, two u64: no padding).
unsafe impl plain::Plain for ConnectionTotals {}
// SAFETY: as above (the key, seven u64, two u8 and six padding bytes that
// the struct spells out as a field).
unsafe impl plain::Plain for SocketState {}
// SAFETY: as above (a u32 followed by 16 bytes: no padding).
unsafe impl plain::Plain for CidrKey {}

/// Values of `enum flow_role` in flow.h.
pub const ROLE_CLIENT: u8 = 1;
pub const ROLE_SERVER: u8 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_structs_have_the_c_layout() {
        // flow.h: 16 + 16 address bytes, three u16 and two u8; three u64
        // counters; a u32 prefix length and 16 address bytes.
        assert_eq!(std::mem::size_of::<FlowKey>(), 40);
        assert_eq!(std::mem::size_of::<FlowBytes>(), 24);
        assert_eq!(std::mem::size_of::<CidrKey>(), 20);
        assert_eq!(std::mem::size_of::<ConnectionTotals>(), 72);
        assert_eq!(std::mem::size_of::<SocketState>(), 104);
    }
}
