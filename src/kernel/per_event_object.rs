//! The per-event backends' object (bpf/per_event.bpf.c): opened, sized,
//! given the chosen backend's programs and loaded.

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::MapHandle;

use super::backend::Backend;
use super::features::KernelFeatures;
use super::loader::{
    autoload_none, failed, fill_cidr_tries, object_storage, size_cidr_tries, ProbeConfig,
    ProbeError,
};
use super::skel::per_event::{OpenPerEventProgs, PerEventSkel, PerEventSkelBuilder};
use super::PerEventMaps;

/// Opens and loads the object with `backend`'s programs on a kernel with
/// `features`; with `None`, with no program at all (the maps alone).
pub(super) fn load(
    backend: Backend,
    features: Option<&KernelFeatures>,
    config: &ProbeConfig,
) -> Result<PerEventSkel<'static>, ProbeError> {
    let mut open = PerEventSkelBuilder::default()
        .open(object_storage())
        .map_err(failed(backend, "open the BPF object"))?;
    let maps = &mut open.maps;
    for table in [&mut maps.flows_even, &mut maps.flows_odd] {
        table
            .set_max_entries(config.flows_max)
            .map_err(failed(backend, "size the flow tables"))?;
    }
    maps.socket_roles
        .set_max_entries(config.sockets_max)
        .map_err(failed(backend, "size the socket role map"))?;
    // Only the kprobe backend carries sockets from entry to return.
    maps.kprobe_inflight
        .set_autocreate(backend == Backend::Kprobe)
        .map_err(failed(backend, "leave out the kprobe map"))?;
    // Only the tracepoint backend counts receives by position.
    let rx_by_position = backend == Backend::Tracepoint;
    maps.rx_positions
        .set_autocreate(rx_by_position)
        .map_err(failed(backend, "leave out the receive position map"))?;
    size_cidr_tries(
        backend,
        &mut maps.cidr_include,
        &mut maps.cidr_exclude,
        &config.filter,
    )?;
    maps.rodata_data
        .as_deref_mut()
        .expect("the object has read-only data")
        .filter = config.filter.settings();
    maps.rodata_data
        .as_deref_mut()
        .expect("the object has read-only data")
        .rx_by_position = rx_by_position;

    autoload_none(open.open_object_mut());
    if let Some(features) = features {
        choose_programs(&mut open.progs, backend, features);
    }
    let skel = open.load().map_err(failed(backend, "load"))?;
    fill_cidr_tries(
        backend,
        &skel.maps.cidr_include,
        &skel.maps.cidr_exclude,
        &config.filter,
    )?;
    Ok(skel)
}

/// Switches on `backend`'s programs, in the versions this kernel needs.
fn choose_programs(p: &mut OpenPerEventProgs<'_>, backend: Backend, features: &KernelFeatures) {
    // Every per-event backend learns each connection's role. tp_btf needs
    // no trampoline, so these attach wherever kernel BTF exists.
    p.tp_inet_sock_set_state.set_autoload(true);
    p.tp_tcp_destroy_sock.set_autoload(true);
    // Linux 5.19 dropped tcp_recvmsg()'s `nonblock` argument; before 6.5,
    // sendfile() and splice() go through tcp_sendpage().
    let nonblock = features.tcp_recvmsg_has_nonblock;
    let sendpage = features.tcp_sendpage;
    match backend {
        Backend::Tracepoint => {
            p.tp_sock_send_length.set_autoload(true);
            p.tp_sock_recv_length.set_autoload(true);
            // splice() and other reads that bypass sock_recvmsg().
            p.tp_tcp_rcv_space_adjust.set_autoload(true);
        }
        Backend::Fentry => {
            p.fexit_tcp_sendmsg.set_autoload(true);
            p.fexit_tcp_recvmsg_nonblock.set_autoload(nonblock);
            p.fexit_tcp_recvmsg.set_autoload(!nonblock);
            p.fexit_tcp_sendpage.set_autoload(sendpage);
            // splice() reads, which bypass tcp_recvmsg().
            p.fexit_tcp_splice_read.set_autoload(true);
        }
        Backend::Kprobe => {
            p.kprobe_tcp_sendmsg.set_autoload(true);
            p.kretprobe_tcp_sendmsg.set_autoload(true);
            p.kprobe_tcp_recvmsg_nonblock.set_autoload(nonblock);
            p.kprobe_tcp_recvmsg.set_autoload(!nonblock);
            p.kretprobe_tcp_recvmsg.set_autoload(true);
            p.kprobe_tcp_sendpage.set_autoload(sendpage);
            p.kretprobe_tcp_sendpage.set_autoload(sendpage);
            p.kprobe_tcp_splice_read.set_autoload(true);
            p.kretprobe_tcp_splice_read.set_autoload(true);
        }
        // Not in this object: bpf/socket.bpf.c.
        Backend::Socket => {}
    }
}

pub(super) fn maps(skel: &PerEventSkel<'_>) -> Result<PerEventMaps, libbpf_rs::Error> {
    let maps = &skel.maps;
    Ok(PerEventMaps {
        active: MapHandle::try_from(&maps.active_flows)?,
        tables: [
            MapHandle::try_from(&maps.flows_even)?,
            MapHandle::try_from(&maps.flows_odd)?,
        ],
        overflow: MapHandle::try_from(&maps.flow_overflow)?,
        health: MapHandle::try_from(&maps.health)?,
    })
}
