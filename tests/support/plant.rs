//! Flows written straight into the kernel table a running exporter reads,
//! for tests and benchmarks that need many flows (100k) without as many
//! connections. The table is the one the per-event backends write
//! (`--probe=tracepoint` and the like).

use libbpf_rs::{MapCore, MapFlags, MapHandle};
use tcp_flow_exporter::flows::key::{encode_key, Role};
use tcp_flow_exporter::kernel::skel::{as_bytes, key_bytes, FlowBytes, FlowKeyBytes};

/// The kernel table the running exporter's probes write now: the one
/// `active_flows` points at. The newest exporter's maps have the highest ids.
pub fn writing_table() -> MapHandle {
    let active = libbpf_rs::query::MapInfoIter::default()
        .filter(|m| m.name.to_str() == Some("active_flows"))
        .map(|m| m.id)
        .max()
        .expect("a running exporter");
    let active = MapHandle::from_map_id(active).unwrap();
    let inner = active
        .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
        .unwrap()
        .expect("slot 0");
    MapHandle::from_map_id(u32::from_ne_bytes(inner[..4].try_into().unwrap())).unwrap()
}

/// Writes `n` distinct IPv4 flows with realistic label lengths.
pub fn plant(table: &MapHandle, n: u32) {
    let (keys, values) = flows(n);
    let keys: Vec<u8> = keys.iter().flatten().copied().collect();
    let values: Vec<u8> = values.iter().flat_map(as_bytes).copied().collect();
    table
        .update_batch(&keys, &values, n, MapFlags::ANY, MapFlags::ANY)
        .expect("plant flows");
}

/// `n` distinct IPv4 flows as kernel keys and values.
pub fn flows(n: u32) -> (Vec<FlowKeyBytes>, Vec<FlowBytes>) {
    let now = tcp_flow_exporter::kernel::monotonic_now_ns();
    (0..n)
        .map(|i| {
            let local = std::net::Ipv4Addr::new(10, 244, (i >> 16) as u8, (i >> 8) as u8);
            let remote = std::net::Ipv4Addr::new(172, 16, (i >> 8) as u8, i as u8);
            let port = [443, 5432, 8080, 6379][(i % 4) as usize];
            let key = encode_key((local, 0).into(), (remote, port).into(), Role::Client);
            let value = FlowBytes {
                sent: u64::from(i) * 1_000 + 7,
                received: u64::from(i) * 31_337 + 1,
                last_seen_ns: now,
            };
            (key_bytes(&key), value)
        })
        .unzip()
}
