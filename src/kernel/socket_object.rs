//! The socket backend's object (bpf/socket.bpf.c): opened, sized, given
//! the programs this kernel supports and loaded.

use std::os::fd::{AsFd, OwnedFd};

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapHandle};

use super::backend::Backend;
use super::features::KernelFeatures;
use super::loader::{
    autoload_none, failed, fill_cidr_tries, object_storage, size_cidr_tries, ProbeConfig,
    ProbeError,
};
use super::skel::socket::{OpenSocketProgs, SocketSkel, SocketSkelBuilder};
use super::skel::{as_bytes, from_bytes};
use super::socket_shards::{create_all, max_shards, ShardTypes, SocketShards};
use super::SocketMaps;

const BACKEND: Backend = Backend::Socket;

/// Opens and loads the object; also returns its walk program, which every
/// scrape runs and nothing attaches.
pub(super) fn load(
    features: &KernelFeatures,
    config: &ProbeConfig,
) -> Result<(SocketSkel<'static>, OwnedFd), ProbeError> {
    // The walk reads sockets with plain loads where the kernel can cast an
    // address to a typed pointer (Linux 6.2+).
    let cast_walk = features.rdonly_cast;
    // Discovery of connections older than the exporter goes on the
    // cheapest hooks that see every send and receive call: the tracepoints
    // where sendfile() passes through them too (Linux 6.5+), fentry
    // elsewhere. The tracepoints fire after the call they report.
    let discovery_on_tracepoints = features.sock_length_tracepoints && !features.tcp_sendpage;
    let mut open = SocketSkelBuilder::default()
        .open(object_storage())
        .map_err(failed(BACKEND, "open the BPF object"))?;
    let maps = &mut open.maps;
    maps.socket_shards
        .set_max_entries(max_shards(config.sockets_max))
        .map_err(failed(BACKEND, "size the socket maps"))?;
    maps.closed_sockets
        .set_max_entries(config.sockets_max)
        .map_err(failed(BACKEND, "size the socket maps"))?;
    size_cidr_tries(
        BACKEND,
        &mut maps.cidr_include,
        &mut maps.cidr_exclude,
        &config.filter,
    )?;
    let rodata = maps
        .rodata_data
        .as_deref_mut()
        .expect("the object has read-only data");
    // bpf/flow.h's filter_settings, from the per-event skeleton's copy.
    rodata.filter = from_bytes(as_bytes(&config.filter.settings()));
    rodata.discovery_after_call = discovery_on_tracepoints;

    autoload_none(open.open_object_mut());
    choose_programs(
        &mut open.progs,
        cast_walk,
        discovery_on_tracepoints,
        features.tcp_sendpage,
    );
    let mut skel = open.load().map_err(failed(BACKEND, "load"))?;
    // Discovery recognises the backend's own marks by the mark map's id.
    let marks_id = skel
        .maps
        .socket_marks
        .info()
        .map_err(failed(BACKEND, "read the mark map's id"))?
        .info
        .id;
    skel.maps
        .bss_data
        .as_deref_mut()
        .expect("the object has .bss")
        .marks_map_id = marks_id;
    fill_cidr_tries(
        BACKEND,
        &skel.maps.cidr_include,
        &skel.maps.cidr_exclude,
        &config.filter,
    )?;
    // Every shard goes in before any program is attached.
    create_shards(&skel).map_err(failed(BACKEND, "create the socket shards"))?;
    let walk = if cast_walk {
        &skel.progs.walk_shard_cast
    } else {
        &skel.progs.walk_shard
    };
    let walk = walk
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| failed(BACKEND, "keep a handle on the walk")(e.into()))?;
    Ok((skel, walk))
}

/// Creates the object's shards (kernel/socket_shards.rs).
fn create_shards(skel: &SocketSkel<'_>) -> Result<(), libbpf_rs::Error> {
    let maps = &skel.maps;
    let types = ShardTypes::of(skel.object())?;
    create_all(
        &MapHandle::try_from(&maps.socket_shards)?,
        &MapHandle::try_from(&maps.shard_counts)?,
        &types,
    )?;
    Ok(())
}

/// Switches on the programs this kernel supports.
fn choose_programs(
    p: &mut OpenSocketProgs<'_>,
    cast_walk: bool,
    discovery_on_tracepoints: bool,
    tcp_sendpage: bool,
) {
    p.socket_set_state.set_autoload(true);
    p.socket_destroy.set_autoload(true);
    p.walk_shard_cast.set_autoload(cast_walk);
    p.walk_shard.set_autoload(!cast_walk);
    if discovery_on_tracepoints {
        p.discover_tp_send.set_autoload(true);
        p.discover_tp_recv.set_autoload(true);
    } else {
        p.discover_fentry_sendmsg.set_autoload(true);
        p.discover_fentry_recvmsg.set_autoload(true);
        // Before Linux 6.5, sendfile() and splice() call tcp_sendpage().
        p.discover_fentry_sendpage.set_autoload(tcp_sendpage);
    }
}

pub(super) fn maps(skel: &SocketSkel<'_>, walk: OwnedFd) -> Result<SocketMaps, libbpf_rs::Error> {
    let maps = &skel.maps;
    Ok(SocketMaps {
        walk,
        shards: SocketShards::open(MapHandle::try_from(&maps.shard_counts)?),
        walk_out: MapHandle::try_from(&maps.walk_out)?,
        closed: MapHandle::try_from(&maps.closed_sockets)?,
        health: MapHandle::try_from(&maps.health)?,
    })
}
