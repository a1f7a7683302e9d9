//! Compiles the BPF objects with clang and generates their Rust skeletons into
//! OUT_DIR, one per backend family: bpf/per_event.bpf.c (tracepoint, fentry and
//! kprobe backends), bpf/socket.bpf.c (the socket backend), and
//! bpf/empty.bpf.c, the benchmarks' baseline.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

/// (source, skeleton written to OUT_DIR, BPF instruction set)
///
/// The socket backend publishes with fetching atomics (BPF ISA v3, Linux
/// 5.12+; the backend needs 5.13 anyway). The per-event object also loads
/// on 5.10 and keeps clang's default.
const OBJECTS: [(&str, &str, Option<&str>); 3] = [
    ("bpf/per_event.bpf.c", "per_event.skel.rs", None),
    ("bpf/socket.bpf.c", "socket.skel.rs", Some("-mcpu=v3")),
    ("bpf/empty.bpf.c", "empty.skel.rs", None),
];

/// Every header an object includes; a change to one rebuilds them all.
const HEADERS: [&str; 6] = [
    "bpf/flow.h",
    "bpf/common.bpf.h",
    "bpf/filter.bpf.h",
    "bpf/socket_positions.bpf.h",
    "bpf/socket_marks.bpf.h",
    "bpf/socket_walk.bpf.h",
];

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok("aarch64") => "arm64",
        Ok(other) => panic!("no vmlinux.h for target arch {other}; see vmlinux/README.md"),
        Err(_) => panic!("cargo sets CARGO_CFG_TARGET_ARCH"),
    };
    let vmlinux = format!("vmlinux/{arch}");
    if !PathBuf::from(&vmlinux).join("vmlinux.h").exists() {
        panic!(
            "no {vmlinux}/vmlinux.h: this tree ships kernel types for x86_64 only, and \
             the socket backend's memory ordering is only tested there; see vmlinux/README.md"
        );
    }

    for (source, skeleton, cpu) in OBJECTS {
        let mut args = vec![
            "-I",
            vmlinux.as_str(),
            "-I",
            "bpf",
            "-Wall",
            "-Werror",
            "-O2",
            "-g",
        ];
        args.extend(cpu);
        SkeletonBuilder::new()
            .source(source)
            .clang_args(args)
            .build_and_generate(out.join(skeleton))
            .unwrap_or_else(|e| panic!("building {source}: {e:#}"));
        println!("cargo:rerun-if-changed={source}");
    }
    for header in HEADERS {
        println!("cargo:rerun-if-changed={header}");
    }
    println!("cargo:rerun-if-changed={vmlinux}/vmlinux.h");
}
