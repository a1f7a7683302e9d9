//! The skeletons libbpf-cargo generates from bpf/per_event.bpf.c,
//! bpf/socket.bpf.c and bpf/empty.bpf.c (build.rs), and the types of
//! bpf/flow.h as Rust sees them.
//!
//! bpf/flow.h is compiled into both exporter objects, so each skeleton
//! carries its own copy of the shared types. Rust names the per-event
//! skeleton's copy; the socket object's copies have the same layout (checked
//! below at compile time) and are read as bytes.

use std::mem::size_of;

// Generated code: its lints are libbpf-cargo's business, not ours.
macro_rules! skeleton {
    ($(#[$doc:meta])* $module:ident, $file:literal) => {
        $(#[$doc])*
        #[allow(
            clippy::all,
            clippy::pedantic,
            clippy::undocumented_unsafe_blocks,
            unused_imports,
            unsafe_op_in_unsafe_fn
        )]
        pub mod $module {
            include!(concat!(env!("OUT_DIR"), "/", $file));
        }
    };
}

skeleton!(
    /// The tracepoint, fentry and kprobe backends (bpf/per_event.bpf.c).
    per_event,
    "per_event.skel.rs"
);
skeleton!(
    /// The socket backend (bpf/socket.bpf.c).
    socket,
    "socket.skel.rs"
);
skeleton!(
    /// Empty programs on the exporter's hooks, the benchmarks' baseline
    /// (bpf/empty.bpf.c); the exporter never loads them.
    empty,
    "empty.skel.rs"
);

pub use per_event::types::{
    capacity as Capacity, cidr_key as CidrKey, filter_settings as FilterSettings,
    flow_bytes as FlowBytes, flow_key as FlowKey, flow_role as FlowRole,
    per_event_health as PerEventHealth,
};
pub use socket::types::{
    closed_key as ClosedKey, connection_totals as ConnectionTotals, socket_flag as SocketFlag,
    socket_health as SocketHealth, socket_state as SocketState, walk_output as WalkOutput,
    walk_record as WalkRecord,
};

/// A flow key as the kernel stores it: the exporter keeps keys in this form
/// and decodes them only when a scrape writes them out.
pub type FlowKeyBytes = [u8; size_of::<FlowKey>()];

// The socket object's copies of the shared types are read as the per-event
// object's: both come from bpf/flow.h, and their sizes must agree.
const _: () = assert!(size_of::<socket::types::flow_key>() == size_of::<FlowKey>());
const _: () = assert!(size_of::<socket::types::cidr_key>() == size_of::<CidrKey>());
const _: () = assert!(size_of::<socket::types::filter_settings>() == size_of::<FilterSettings>());

/// The types of bpf/flow.h as the skeletons generate them: `#[repr(C)]`
/// structs of integers, integer arrays and `#[repr(transparent)]` integer
/// enums, with no padding the C side does not spell out as a field. Every
/// byte pattern is a valid value and every byte of a value is initialized,
/// so their bytes may be read and written freely. Sealed: only the list
/// below.
pub trait KernelType: plain::Plain + Default + sealed::Sealed {}

mod sealed {
    pub trait Sealed {}
}

macro_rules! kernel_types {
    ($($ty:ty),* $(,)?) => {
        $(
            // SAFETY: see `KernelType`.
            unsafe impl plain::Plain for $ty {}
            impl sealed::Sealed for $ty {}
            impl KernelType for $ty {}
        )*
    };
}

kernel_types!(
    FlowKey,
    FlowBytes,
    CidrKey,
    FilterSettings,
    PerEventHealth,
    ConnectionTotals,
    ClosedKey,
    SocketHealth,
    SocketState,
    WalkOutput,
    WalkRecord,
    socket::types::flow_key,
    socket::types::cidr_key,
    socket::types::filter_settings,
);

/// `bytes` as a `T` of the same size: map entries read as bytes, and one
/// skeleton's copy of a shared type as the other's.
///
/// # Panics
/// If `bytes` is not exactly `size_of::<T>()` long: map key and value sizes
/// are checked against these types when the objects load.
pub fn from_bytes<T: KernelType>(bytes: &[u8]) -> T {
    let mut value = T::default();
    assert_eq!(bytes.len(), size_of::<T>(), "a BPF value of the wrong size");
    plain::copy_from_bytes(&mut value, bytes).expect("sizes are equal");
    value
}

/// The bytes of a value, as the kernel reads them.
pub fn as_bytes<T: KernelType>(value: &T) -> &[u8] {
    // SAFETY: a KernelType has no implicit padding, so all of its bytes
    // are initialized.
    unsafe { plain::as_bytes(value) }
}

/// The flow key bytes of either skeleton's `flow_key`.
pub fn key_bytes<K: KernelType>(key: &K) -> FlowKeyBytes {
    as_bytes(key).try_into().expect("a flow_key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_structs_have_the_c_layout() {
        // flow.h: 16 + 16 address bytes, three u16, two u8 and the u64
        // cgroup id; three u64 counters; a u32 prefix length and 16 address
        // bytes.
        assert_eq!(size_of::<FlowKey>(), 48);
        assert_eq!(size_of::<FlowBytes>(), 24);
        assert_eq!(size_of::<CidrKey>(), 20);
        assert_eq!(size_of::<ConnectionTotals>(), 80);
        assert_eq!(size_of::<SocketState>(), 136);
        assert_eq!(size_of::<WalkRecord>(), 64);
        assert_eq!(size_of::<WalkOutput>(), 16 + 64 * 1024);
        assert_eq!(size_of::<FlowRole>(), 1);
        assert_eq!(size_of::<SocketFlag>(), 1);
    }
}
