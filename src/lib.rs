//! tcp-flow-exporter: exact per-flow TCP byte counters for Prometheus.
//!
//! The modules follow the data, each using only those before it:
//!
//! 1. [`kernel`]: what the kernel offers, and the BPF objects (bpf/), loaded
//!    and attached; typed handles on their maps.
//! 2. [`source`]: one source of bytes per backend family, turning what the
//!    kernel counted into per-flow deltas.
//! 3. [`flows`]: the running totals per flow, idle expiry, the series limit,
//!    and the snapshot each scrape reports.
//! 4. [`exposition`]: metric families in the negotiated format, written into
//!    a body that is sent while it is written.
//! 5. [`web`]: the HTTP server, landing page and /api/flows.
//!
//! `main.rs` (with [`cli`]) wires them together.

pub mod cli;
pub mod config_file;
pub mod cost;
pub mod exposition;
pub mod flows;
pub mod identity;
pub mod kernel;
mod lock;
pub mod source;
#[cfg(test)]
mod test_support;
pub mod web;
