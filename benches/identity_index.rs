//! The Kubernetes identity index at cluster scale: 10,000 pods owned
//! through ReplicaSets by 1,000 Deployments, 1,000 Services and 500 Nodes.
//! Measures the heap the index holds (target: 20 MB), the time to build and
//! publish a snapshot, and the time of one `peer()` lookup. No network.
//!
//!   cargo bench --bench identity_index

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tcp_flow_exporter::identity::kubernetes::{
    ControllerRef, IndexBuilder, KubeIndex, NodeFacts, OwnerFacts, PodFacts, PodPhase,
    ResourceKind, ServiceFacts,
};
use tcp_flow_exporter::identity::Place;

/// Counts the bytes live on the heap, so a before/after difference is what
/// a structure holds (allocator overhead and fragmentation aside).
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const PODS: u32 = 10_000;
const DEPLOYMENTS: u32 = 1_000;
const SERVICES: u32 = 1_000;
const NODES: u32 = 500;
const NAMESPACES: u32 = 50;
const ZONES: [&str; 3] = ["eu-west-1a", "eu-west-1b", "eu-west-1c"];

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn uid(kind: u32, n: u32) -> String {
    format!("{n:08x}-{kind:04x}-4abc-8def-{:012x}", u64::from(n) * 7919)
}

fn namespace(deployment: u32) -> String {
    format!("team-{:02}", deployment % NAMESPACES)
}

fn pod_ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a40_0000 + n)) // 10.64.0.0/16
}

fn service_ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a60_0000 + n)) // 10.96.0.0/16
}

fn node_ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0xc0a8_0000 + n)) // 192.168.0.0/16
}

/// As the watchers do at start: every kind is one list, Init .. InitDone.
fn feed(builder: &mut IndexBuilder) {
    for kind in ResourceKind::ALL {
        builder.begin_relist(kind);
    }
    for n in 0..NODES {
        let zone = ZONES[n as usize % ZONES.len()];
        builder.apply_node(NodeFacts {
            uid: uid(1, n),
            name: format!(
                "ip-192-168-{}-{}.eu-west-1.compute.internal",
                n / 256,
                n % 256
            ),
            addresses: vec![node_ip(n)],
            place: Place {
                zone: Some(zone.into()),
                region: Some("eu-west-1".into()),
            },
        });
    }
    for d in 0..DEPLOYMENTS {
        builder.apply_replica_set(OwnerFacts {
            uid: uid(2, d),
            namespace: namespace(d),
            name: format!("service-{d:04}-7c9f6d8b5"),
            controller: Some(ControllerRef {
                kind: "Deployment".into(),
                name: format!("service-{d:04}"),
                uid: uid(3, d),
            }),
        });
    }
    for s in 0..SERVICES {
        builder.apply_service(ServiceFacts {
            uid: uid(4, s),
            namespace: namespace(s),
            name: format!("service-{s:04}"),
            cluster_ips: vec![service_ip(s)],
        });
    }
    for p in 0..PODS {
        let d = p % DEPLOYMENTS;
        let node = p % NODES;
        builder.apply_pod(PodFacts {
            uid: uid(5, p),
            namespace: namespace(d),
            name: format!("service-{d:04}-7c9f6d8b5-{:05x}", p * 31),
            controller: Some(ControllerRef {
                kind: "ReplicaSet".into(),
                name: format!("service-{d:04}-7c9f6d8b5"),
                uid: uid(2, d),
            }),
            node_name: Some(format!(
                "ip-192-168-{}-{}.eu-west-1.compute.internal",
                node / 256,
                node % 256
            )),
            host_network: false,
            phase: PodPhase::Running,
            ips: vec![pod_ip(p)],
            start_time: Some(1_714_557_600 + i64::from(p)),
        });
    }
    for kind in ResourceKind::ALL {
        builder.finish_relist(kind);
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn mb(bytes: isize) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

fn main() {
    let before = live();
    let mut builder = IndexBuilder::new("ip-192-168-0-0.eu-west-1.compute.internal");
    let started = Instant::now();
    feed(&mut builder);
    let feed_time = started.elapsed();
    let builder_bytes = live() - before;

    let (publish, watch) = tokio::sync::watch::channel(Arc::new(KubeIndex::empty("n")));
    let mut build_times = Vec::new();
    for _ in 0..11 {
        let started = Instant::now();
        publish.send_replace(Arc::new(builder.snapshot()));
        build_times.push(started.elapsed());
    }
    // The channel holds exactly one snapshot now: measure one more in place.
    let before_snapshot = live();
    let extra = builder.snapshot();
    let snapshot_bytes = live() - before_snapshot;
    drop(extra);

    let index = watch.borrow().clone();
    let probes: Vec<IpAddr> = (0..4096u32)
        .map(|n| match n % 8 {
            0..=4 => pod_ip(n * 2 % PODS),
            5 => service_ip(n % SERVICES),
            6 => node_ip(n % NODES),
            _ => IpAddr::V4(Ipv4Addr::new(203, 0, 113, n as u8)), // nobody
        })
        .collect();
    let found = probes
        .iter()
        .filter(|ip| index.peer(**ip).is_some())
        .count();
    assert_eq!(found, 4096 - 512, "every probe but the misses resolves");
    let rounds = 250;
    let mut lookup_times = Vec::new();
    for _ in 0..9 {
        let started = Instant::now();
        for _ in 0..rounds {
            for ip in &probes {
                black_box(index.peer(black_box(*ip)));
            }
        }
        lookup_times.push(started.elapsed() / (rounds * probes.len() as u32));
    }

    println!("identity index: {PODS} pods (ReplicaSet → Deployment owners), {SERVICES} Services, {NODES} Nodes");
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| builder heap (all objects, by uid) | {} |",
        mb(builder_bytes)
    );
    println!(
        "| snapshot heap (strings shared with the builder) | {} |",
        mb(snapshot_bytes)
    );
    println!(
        "| index memory, builder + published snapshot | {} (target ≤ 20 MB) |",
        mb(builder_bytes + snapshot_bytes)
    );
    println!(
        "| apply all objects to the builder | {:.1} ms |",
        feed_time.as_secs_f64() * 1e3
    );
    println!(
        "| build + publish a snapshot (median of 11) | {:.2} ms |",
        median(build_times).as_secs_f64() * 1e3
    );
    println!(
        "| peer() lookup (median of 9, 5/8 pods, 1/8 each Service, Node, miss) | {} ns |",
        median(lookup_times).as_nanos()
    );
    if builder_bytes + snapshot_bytes > 20_000_000 {
        eprintln!("index memory is over the 20 MB target");
        std::process::exit(1);
    }
}
