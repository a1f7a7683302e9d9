//! Chooses a hook backend, loads the BPF object for it and attaches it.
//!
//! A backend is only taken after it really loaded and attached: a kernel's
//! version says little about what a distribution enabled or a lockdown allows.

use std::fmt;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapHandle, OpenObject};
use thiserror::Error;
use tracing::{debug, info, warn};

use crate::bpf::{FlowBytes, FlowKey, FlowSkel, FlowSkelBuilder};
use crate::cli::ProbeChoice;
use crate::collector::{FlowMaps, SocketMaps};
use crate::filter::{cidr_key, FlowFilter};
use crate::kernel::KernelFeatures;
use crate::program_stats::ProgramHandle;
use crate::socket_walk::{run_refresh, SocketWalker};

/// A set of hooks that together count every send and receive.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    Socket,
    Tracepoint,
    Fentry,
    Kprobe,
}

impl Backend {
    /// What `--probe=auto` tries, cheapest first: nothing per event, then
    /// one tp_btf program per direction, then fexit trampolines, then
    /// kprobe/kretprobe pairs with a map between them.
    pub const AUTO: [Backend; 4] = [
        Backend::Socket,
        Backend::Tracepoint,
        Backend::Fentry,
        Backend::Kprobe,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Socket => "socket",
            Backend::Tracepoint => "tracepoint",
            Backend::Fentry => "fentry",
            Backend::Kprobe => "kprobe",
        }
    }

    /// The BPF programs this backend needs on a kernel with `features`, or
    /// why it cannot count everything there.
    pub fn programs(self, features: &KernelFeatures) -> Result<Vec<&'static str>, String> {
        let recv_nonblock = features.tcp_recvmsg_has_nonblock;
        let programs = match self {
            Backend::Socket => {
                if !features.socket_storage_from_tracing || !features.for_each_map_elem {
                    return Err("it needs BPF socket storage from tracing programs \
                                (Linux 5.11) and bpf_for_each_map_elem (Linux 5.13)"
                        .into());
                }
                // The walk reads sockets with plain loads where the kernel
                // can cast an address to a typed pointer (Linux 6.2+).
                let refresh = if features.rdonly_cast {
                    "refresh_sockets_cast"
                } else {
                    "refresh_sockets"
                };
                let mut p = vec!["socket_set_state", "socket_destroy", refresh];
                // Discovery of connections older than the exporter, on the
                // cheapest hook that sees every send and receive call.
                if features.sock_length_tracepoints && !features.tcp_sendpage {
                    p.extend(["discover_tp_send", "discover_tp_recv"]);
                } else {
                    p.extend(["discover_fentry_sendmsg", "discover_fentry_recvmsg"]);
                    if features.tcp_sendpage {
                        p.push("discover_fentry_sendpage");
                    }
                }
                p
            }
            Backend::Tracepoint => {
                if !features.sock_length_tracepoints {
                    return Err("the kernel has no sock:sock_send_length tracepoint \
                                (added in Linux 6.3)"
                        .into());
                }
                if features.tcp_sendpage {
                    return Err("sendfile() bypasses sock_sendmsg() on this kernel \
                                (tcp_sendpage exists; before Linux 6.5), so the \
                                tracepoints would miss its bytes"
                        .into());
                }
                vec!["tp_sock_send_length", "tp_sock_recv_length"]
            }
            Backend::Fentry => {
                let mut p = vec!["fexit_tcp_sendmsg"];
                p.push(if recv_nonblock {
                    "fexit_tcp_recvmsg_nonblock"
                } else {
                    "fexit_tcp_recvmsg"
                });
                if features.tcp_sendpage {
                    p.push("fexit_tcp_sendpage");
                }
                p
            }
            Backend::Kprobe => {
                let mut p = vec!["kprobe_tcp_sendmsg", "kretprobe_tcp_sendmsg"];
                p.push(if recv_nonblock {
                    "kprobe_tcp_recvmsg_nonblock"
                } else {
                    "kprobe_tcp_recvmsg"
                });
                p.push("kretprobe_tcp_recvmsg");
                if features.tcp_sendpage {
                    p.extend(["kprobe_tcp_sendpage", "kretprobe_tcp_sendpage"]);
                }
                p
            }
        };
        Ok(programs)
    }
}

/// Attached with every backend: they learn each connection's role.
/// tp_btf needs no trampoline, so they attach wherever kernel BTF exists.
const ROLE_PROGRAMS: [&str; 2] = ["tp_inet_sock_set_state", "tp_tcp_destroy_sock"];

/// The socket backend's refresh of every connection's totals, in either
/// version: loaded, never attached, run by every scrape.
const SOCKET_REFRESH: [&str; 2] = ["refresh_sockets", "refresh_sockets_cast"];

/// What the loaded object counts and how much room it has.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// max_entries of each kernel flow table (--flows.max).
    pub flows_max: u32,
    /// max_entries of the socket role map (--sockets.max).
    pub sockets_max: u32,
    pub filter: FlowFilter,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            flows_max: 65536,
            sockets_max: 262_144,
            filter: FlowFilter::default(),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("reading kernel BTF: {0}")]
    Btf(String),
    #[error("the {backend} backend cannot be used on this kernel: {reason}")]
    Unsupported { backend: Backend, reason: String },
    #[error("the {backend} backend failed to {step}: {}{}", tidy(.error), hint(*.backend, .error))]
    Libbpf {
        backend: Backend,
        step: String,
        error: libbpf_rs::Error,
    },
    #[error("no backend works on this kernel: {0}")]
    NoBackend(String),
}

/// One attached BPF program.
#[derive(Debug)]
pub struct AttachedProgram {
    pub name: &'static str,
    pub id: u32,
    fd: OwnedFd,
    /// None for a program user space runs itself.
    _link: Option<Link>,
}

/// The loaded BPF object with its programs attached. Dropping it detaches
/// every program and frees the maps.
pub struct Probe {
    // Links go first so that programs detach before the object closes.
    programs: Vec<AttachedProgram>,
    skel: FlowSkel<'static>,
    backend: Backend,
}

impl fmt::Debug for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probe")
            .field("backend", &self.backend)
            .field("programs", &self.programs)
            .finish_non_exhaustive()
    }
}

impl Probe {
    /// Loads and attaches the chosen backend, or under `auto` the cheapest one
    /// that works, logging why each cheaper one was passed over.
    pub fn attach(choice: ProbeChoice, config: &ProbeConfig) -> Result<Probe, ProbeError> {
        let features = KernelFeatures::detect().map_err(ProbeError::Btf)?;
        debug!(?features, "kernel features");
        let explicit = match choice {
            ProbeChoice::Auto => None,
            ProbeChoice::Socket => Some(Backend::Socket),
            ProbeChoice::Tracepoint => Some(Backend::Tracepoint),
            ProbeChoice::Fentry => Some(Backend::Fentry),
            ProbeChoice::Kprobe => Some(Backend::Kprobe),
        };
        if let Some(backend) = explicit {
            return Self::try_backend(backend, &features, config);
        }
        let mut reasons = Vec::new();
        for backend in Backend::AUTO {
            match Self::try_backend(backend, &features, config) {
                Ok(probe) => return Ok(probe),
                Err(e) => {
                    warn!(backend = backend.name(), error = %e, "backend unusable, trying the next");
                    reasons.push(e.to_string());
                }
            }
        }
        Err(ProbeError::NoBackend(reasons.join("; ")))
    }

    /// Creates the maps without loading any program: for tests and
    /// benchmarks that plant flows from user space.
    pub fn maps_only(config: &ProbeConfig) -> Result<Probe, ProbeError> {
        Self::load(Backend::Tracepoint, &[], config)
    }

    /// Loads and attaches `backend`'s programs.
    pub fn try_backend(
        backend: Backend,
        features: &KernelFeatures,
        config: &ProbeConfig,
    ) -> Result<Probe, ProbeError> {
        let mut wanted = backend
            .programs(features)
            .map_err(|reason| ProbeError::Unsupported { backend, reason })?;
        if backend != Backend::Socket {
            wanted.extend(ROLE_PROGRAMS);
        }
        Self::load(backend, &wanted, config)
    }

    fn load(
        backend: Backend,
        wanted: &[&'static str],
        config: &ProbeConfig,
    ) -> Result<Probe, ProbeError> {
        let libbpf = |step: &str| {
            let step = step.to_owned();
            move |error| ProbeError::Libbpf {
                backend,
                step,
                error,
            }
        };

        // The skeleton borrows its object storage for as long as it lives; the
        // probe lives until shutdown, so the (pointer-sized) storage is leaked
        // once per load attempt. The object itself is freed with the skeleton.
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = FlowSkelBuilder::default()
            .open(storage)
            .map_err(libbpf("open the BPF object"))?;
        let filter = &config.filter;
        // The flow tables are preallocated; only the per-event backends
        // write them, so the socket backend keeps one entry each.
        let table_entries = if backend == Backend::Socket {
            1
        } else {
            config.flows_max
        };
        for table in [&mut open.maps.flows_even, &mut open.maps.flows_odd] {
            table
                .set_max_entries(table_entries)
                .map_err(libbpf("size the flow tables"))?;
        }
        open.maps
            .sockets
            .set_max_entries(config.sockets_max)
            .map_err(libbpf("size the socket map"))?;
        for (trie, nets) in [
            (&mut open.maps.cidr_include, &filter.cidr_include),
            (&mut open.maps.cidr_exclude, &filter.cidr_exclude),
        ] {
            trie.set_max_entries(nets.len().max(1) as u32)
                .map_err(libbpf("size the CIDR filters"))?;
        }
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .expect("the object has read-only data");
        filter.write_rodata(rodata);
        rodata.discovery_after_call = wanted.contains(&"discover_tp_send");
        if backend != Backend::Kprobe {
            // Only the kprobe backend carries sockets from entry to return.
            open.maps
                .kprobe_inflight
                .set_max_entries(1)
                .map_err(libbpf("size the kprobe map"))?;
        }
        for mut prog in open.open_object_mut().progs_mut() {
            let name = prog.name().to_string_lossy();
            prog.set_autoload(wanted.iter().any(|w| *w == name));
        }
        let mut skel = open.load().map_err(libbpf("load"))?;
        // The socket backend's discovery recognises its own marks by map id.
        let marks_id = skel
            .maps
            .socket_marks
            .info()
            .map_err(libbpf("read the mark map's id"))?
            .info
            .id;
        skel.maps
            .bss_data
            .as_deref_mut()
            .expect("the object has .bss")
            .marks_map_id = marks_id;
        check_shared_layout(&skel).map_err(|reason| ProbeError::Unsupported { backend, reason })?;
        for (trie, nets) in [
            (&skel.maps.cidr_include, &filter.cidr_include),
            (&skel.maps.cidr_exclude, &filter.cidr_exclude),
        ] {
            for net in nets {
                let key = cidr_key(net);
                // SAFETY: a Plain struct viewed as its bytes.
                let key = unsafe { plain::as_bytes(&key) };
                trie.update(key, &[1], libbpf_rs::MapFlags::ANY)
                    .map_err(libbpf(&format!("add {net} to the CIDR filter")))?;
            }
        }

        let mut programs = Vec::with_capacity(wanted.len());
        for prog in skel.object().progs_mut() {
            let Some(name) = wanted
                .iter()
                .copied()
                .find(|w| *w == prog.name().to_string_lossy())
            else {
                continue;
            };
            let link = if SOCKET_REFRESH.contains(&name) {
                // Run once now, so that a kernel or policy refusing
                // BPF_PROG_TEST_RUN fails here, where auto can move on.
                run_refresh(prog.as_fd())
                    .map_err(|e| libbpf(&format!("run {name} (BPF_PROG_TEST_RUN)"))(e.into()))?;
                None
            } else {
                Some(prog.attach().map_err(libbpf(&format!("attach {name}")))?)
            };
            let id = libbpf_rs::Program::id_from_fd(prog.as_fd()).unwrap_or(0);
            let fd = prog
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| libbpf(&format!("keep a handle on {name}"))(e.into()))?;
            programs.push(AttachedProgram {
                name,
                id,
                fd,
                _link: link,
            });
        }
        info!(
            backend = backend.name(),
            programs = ?programs.iter().map(|p| format!("{}(id {})", p.name, p.id)).collect::<Vec<_>>(),
            flows_max = config.flows_max,
            sockets_max = config.sockets_max,
            "BPF programs loaded"
        );
        Ok(Probe {
            programs,
            skel,
            backend,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn programs(&self) -> &[AttachedProgram] {
        &self.programs
    }

    /// Handles on the attached programs, for their run statistics.
    pub fn program_handles(&self) -> std::io::Result<Vec<ProgramHandle>> {
        self.programs
            .iter()
            .map(|p| {
                Ok(ProgramHandle {
                    name: p.name,
                    fd: p.fd.try_clone()?,
                })
            })
            .collect()
    }

    /// Handles on the maps the exporter reads; they stay valid after the
    /// probe is dropped, but the programs no longer write to them then.
    pub fn flow_maps(&self) -> Result<FlowMaps, libbpf_rs::Error> {
        let maps = &self.skel.maps;
        Ok(FlowMaps {
            active: MapHandle::try_from(&maps.active_flows)?,
            tables: [
                MapHandle::try_from(&maps.flows_even)?,
                MapHandle::try_from(&maps.flows_odd)?,
            ],
            overflow: MapHandle::try_from(&self.skel.maps.flow_overflow)?,
            health: MapHandle::try_from(&self.skel.maps.probe_health)?,
            sockets: self.socket_maps()?,
        })
    }
}

impl Probe {
    /// The socket backend's walk and closed-connection map, if that is the
    /// backend.
    fn socket_maps(&self) -> Result<Option<SocketMaps>, libbpf_rs::Error> {
        let Some(program) = self
            .programs
            .iter()
            .find(|p| SOCKET_REFRESH.contains(&p.name))
        else {
            return Ok(None);
        };
        let maps = &self.skel.maps;
        Ok(Some(SocketMaps {
            walker: SocketWalker::new(
                program.fd.try_clone()?,
                MapHandle::try_from(&maps.socket_states)?,
            ),
            closed: MapHandle::try_from(&maps.closed_sockets)?,
        }))
    }
}

/// libbpf-rs repeats a context when it wraps an error ("failed to attach BPF
/// program: failed to attach BPF program: ..."); print each part once.
fn tidy(error: &libbpf_rs::Error) -> String {
    let text = format!("{error:#}");
    let mut parts: Vec<&str> = Vec::new();
    for part in text.split(": ") {
        if parts.last() != Some(&part) {
            parts.push(part);
        }
    }
    parts.join(": ")
}

/// The likely cause of the errors each backend meets most often.
fn hint(backend: Backend, error: &libbpf_rs::Error) -> &'static str {
    use libbpf_rs::ErrorKind;
    match (backend, error.kind()) {
        (Backend::Fentry, ErrorKind::PermissionDenied) => {
            " (the kernel refuses BPF trampolines here; try --probe=tracepoint or kprobe)"
        }
        (Backend::Kprobe, ErrorKind::NotFound) => {
            " (this kernel has no kprobe support, CONFIG_KPROBES, or cannot probe that function)"
        }
        _ => "",
    }
}

/// The skeleton's Rust types come from the same header as the C structs, but
/// the map is what the kernel really created; refuse to misread it.
fn check_shared_layout(skel: &FlowSkel<'_>) -> Result<(), String> {
    let map = &skel.maps.flows_even;
    let (key, value) = (map.key_size() as usize, map.value_size() as usize);
    if key != std::mem::size_of::<FlowKey>() || value != std::mem::size_of::<FlowBytes>() {
        return Err(format!(
            "flow map has key/value sizes {key}/{value}, expected 40/24"
        ));
    }
    Ok(())
}
