//! Compiles the BPF programs with clang and generates their Rust skeletons
//! into OUT_DIR: bpf/flow.bpf.c, the exporter's, and bpf/empty.bpf.c, the
//! benchmarks' baseline.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SOURCES: [(&str, &str); 2] = [
    ("bpf/flow.bpf.c", "flow.skel.rs"),
    ("bpf/empty.bpf.c", "empty.skel.rs"),
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

    for (source, skeleton) in SOURCES {
        SkeletonBuilder::new()
            .source(source)
            .clang_args([
                "-I",
                vmlinux.as_str(),
                "-I",
                "bpf",
                "-Wall",
                "-Werror",
                "-O2",
                "-g",
            ])
            .build_and_generate(out.join(skeleton))
            .unwrap_or_else(|e| panic!("building {source}: {e:#}"));
        println!("cargo:rerun-if-changed={source}");
    }
    for path in [
        "bpf/flow.h",
        "bpf/filter.bpf.h",
        "bpf/socket_backend.bpf.h",
        &format!("{vmlinux}/vmlinux.h"),
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
}
