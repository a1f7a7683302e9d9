//! Compiles bpf/flow.bpf.c with clang and generates its Rust skeleton into OUT_DIR.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SOURCE: &str = "bpf/flow.bpf.c";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok("aarch64") => "arm64",
        Ok(other) => panic!("no vmlinux.h for target arch {other}; see vmlinux/README.md"),
        Err(_) => panic!("cargo sets CARGO_CFG_TARGET_ARCH"),
    };
    let vmlinux = format!("vmlinux/{arch}");

    SkeletonBuilder::new()
        .source(SOURCE)
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
        .build_and_generate(out.join("flow.skel.rs"))
        .unwrap_or_else(|e| panic!("building {SOURCE}: {e:#}"));

    for path in [SOURCE, "bpf/flow.h", &format!("{vmlinux}/vmlinux.h")] {
        println!("cargo:rerun-if-changed={path}");
    }
}
