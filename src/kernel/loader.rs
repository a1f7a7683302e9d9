//! Chooses a backend, loads the BPF object of its family and attaches it.
//!
//! A backend is only taken after it really loaded and attached: a kernel's
//! version says little about what a distribution enabled or a lockdown
//! allows. Each family's object is opened, sized and given its programs in
//! its own module ([`super::per_event_object`], [`super::socket_object`]);
//! what they share is here.

use std::fmt;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use libbpf_rs::skel::Skel;
use libbpf_rs::{Link, MapCore, MapMut, Object, OpenMapMut, OpenObject, ProgramType};
use thiserror::Error;
use tracing::{debug, info, warn};

use super::backend::Backend;
use super::features::KernelFeatures;
use super::filter::{cidr_key, FlowFilter};
use super::links::{attach_tracing, is_link_of};
use super::programs::{test_run_with, Attachment, ProgramHandle};
use super::skel::{as_bytes, per_event::PerEventSkel, socket::SocketSkel, Capacity};
use super::{per_event_object, socket_object, BackendMaps};

/// What the loaded object counts and how much room it has.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// max_entries of each kernel flow table (--flows.max).
    pub flows_max: u32,
    /// max_entries of the socket maps (--sockets.max).
    pub sockets_max: u32,
    pub filter: FlowFilter,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            flows_max: Capacity::FLOWS_MAX_DEFAULT.0,
            sockets_max: Capacity::SOCKETS_MAX_DEFAULT.0,
            filter: FlowFilter::default(),
        }
    }
}

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("reading kernel BTF: {0}")]
    Btf(String),
    #[error("the {backend} backend cannot be used on this kernel: {reason}")]
    Unsupported { backend: Backend, reason: String },
    #[error("the {backend} backend failed to {step}: {}{}", tidy(.error), .backend.hint(.error))]
    Libbpf {
        backend: Backend,
        step: String,
        error: libbpf_rs::Error,
    },
    #[error("no backend works on this kernel: {0}")]
    NoBackend(String),
}

/// A libbpf error, as the step of loading `backend` that failed.
pub(super) fn failed(backend: Backend, step: &str) -> impl FnOnce(libbpf_rs::Error) -> ProbeError {
    let step = step.to_owned();
    move |error| ProbeError::Libbpf {
        backend,
        step,
        error,
    }
}

/// One loaded BPF program: attached, or run by user space.
#[derive(Debug)]
pub struct AttachedProgram {
    pub name: String,
    pub id: u32,
    fd: OwnedFd,
    /// How it is attached, until handed to whoever watches it.
    attachment: Option<Attachment>,
    /// A kprobe's link as libbpf made it (with its perf event); None for
    /// a program user space runs itself, or one attached by fd.
    _libbpf_link: Option<Link>,
}

/// The loaded object of one backend family. Keeping it alive keeps the
/// programs attached and the maps alive.
pub(super) enum Skeleton {
    PerEvent(PerEventSkel<'static>),
    /// With the walk, which is run, never attached.
    Socket {
        skel: SocketSkel<'static>,
        walk: OwnedFd,
    },
}

/// The loaded BPF object with its programs attached. Dropping it detaches
/// every program and frees the maps.
pub struct Probe {
    // Links go first so that programs detach before the object closes.
    programs: Vec<AttachedProgram>,
    skeleton: Skeleton,
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
    /// Loads and attaches `backend`, or with `None` the cheapest one that
    /// works, logging why each cheaper one was passed over.
    pub fn attach(backend: Option<Backend>, config: &ProbeConfig) -> Result<Probe, ProbeError> {
        let features = KernelFeatures::detect().map_err(ProbeError::Btf)?;
        debug!(?features, "kernel features");
        if let Some(backend) = backend {
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

    /// Creates the per-event maps without loading any program: for tests
    /// and benchmarks that plant flows from user space.
    pub fn maps_only(config: &ProbeConfig) -> Result<Probe, ProbeError> {
        let skel = per_event_object::load(Backend::Tracepoint, None, config)?;
        Self::finish(Backend::Tracepoint, Skeleton::PerEvent(skel), config)
    }

    /// Loads and attaches `backend`'s programs.
    pub fn try_backend(
        backend: Backend,
        features: &KernelFeatures,
        config: &ProbeConfig,
    ) -> Result<Probe, ProbeError> {
        if let Some(reason) = backend.unsupported(features) {
            return Err(ProbeError::Unsupported {
                backend,
                reason: reason.into(),
            });
        }
        let skeleton = match backend {
            Backend::Socket => {
                let (skel, walk) = socket_object::load(features, config)?;
                Skeleton::Socket { skel, walk }
            }
            _ => Skeleton::PerEvent(per_event_object::load(backend, Some(features), config)?),
        };
        Self::finish(backend, skeleton, config)
    }

    /// Attaches every program the object loaded but the socket backend's
    /// walk, which it runs once instead, so that a kernel or policy refusing
    /// BPF_PROG_TEST_RUN fails here, where auto can move on.
    fn finish(
        backend: Backend,
        skeleton: Skeleton,
        config: &ProbeConfig,
    ) -> Result<Probe, ProbeError> {
        let (object, walk) = match &skeleton {
            Skeleton::PerEvent(skel) => (skel.object(), None),
            Skeleton::Socket { skel, walk } => (skel.object(), Some(walk.as_fd())),
        };
        let programs = attach_all(backend, object, walk)?;
        info!(
            backend = backend.name(),
            programs = ?programs.iter().map(|p| format!("{}(id {})", p.name, p.id)).collect::<Vec<_>>(),
            flows_max = config.flows_max,
            sockets_max = config.sockets_max,
            "BPF programs loaded"
        );
        Ok(Probe {
            programs,
            skeleton,
            backend,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Handles on the loaded programs, for their run statistics and
    /// attached state. The links of tp_btf and fentry programs move into
    /// them: dropping the handles detaches those.
    pub fn take_program_handles(&mut self) -> std::io::Result<Vec<ProgramHandle>> {
        self.programs
            .iter_mut()
            .map(|p| {
                let attachment = p.attachment.take().unwrap_or(Attachment::Unwatched);
                Ok(ProgramHandle::new(
                    p.name.clone(),
                    p.fd.try_clone()?,
                    attachment,
                ))
            })
            .collect()
    }

    /// Handles on the maps the exporter reads; they stay valid after the
    /// probe is dropped, but the programs no longer write to them then.
    pub fn maps(&self) -> Result<BackendMaps, ProbeError> {
        let handles = match &self.skeleton {
            Skeleton::PerEvent(skel) => per_event_object::maps(skel).map(BackendMaps::PerEvent),
            Skeleton::Socket { skel, walk } => walk
                .try_clone()
                .map_err(libbpf_rs::Error::from)
                .and_then(|walk| socket_object::maps(skel, walk))
                .map(BackendMaps::Socket),
        };
        handles.map_err(failed(self.backend, "open its maps"))
    }
}

/// Leaves only the programs the backend needs to be loaded; they are then
/// switched on by the family's module through the skeleton's typed fields.
pub(super) fn autoload_none(object: &mut libbpf_rs::OpenObject) {
    for mut program in object.progs_mut() {
        program.set_autoload(false);
    }
}

/// Storage for a skeleton's object, which borrows it for as long as it
/// lives. The probe lives until shutdown, so the (pointer-sized) storage is
/// leaked once per load attempt; the object itself is freed with the
/// skeleton.
pub(super) fn object_storage() -> &'static mut MaybeUninit<OpenObject> {
    Box::leak(Box::new(MaybeUninit::uninit()))
}

/// Sizes the --filter.cidr.* tries to the networks given (LPM tries must
/// not preallocate, and an empty one still needs one entry).
pub(super) fn size_cidr_tries<'obj>(
    backend: Backend,
    include: &mut OpenMapMut<'obj>,
    exclude: &mut OpenMapMut<'obj>,
    filter: &FlowFilter,
) -> Result<(), ProbeError> {
    for (trie, nets) in [
        (include, &filter.cidr_include),
        (exclude, &filter.cidr_exclude),
    ] {
        trie.set_max_entries(nets.len().max(1) as u32)
            .map_err(failed(backend, "size the CIDR filters"))?;
    }
    Ok(())
}

/// Writes the --filter.cidr.* networks into the loaded tries.
pub(super) fn fill_cidr_tries(
    backend: Backend,
    include: &MapMut<'_>,
    exclude: &MapMut<'_>,
    filter: &FlowFilter,
) -> Result<(), ProbeError> {
    for (trie, nets) in [
        (include, &filter.cidr_include),
        (exclude, &filter.cidr_exclude),
    ] {
        for net in nets {
            trie.update(as_bytes(&cidr_key(net)), &[1], libbpf_rs::MapFlags::ANY)
                .map_err(failed(backend, &format!("add {net} to the CIDR filter")))?;
        }
    }
    Ok(())
}

/// Attaches every program `object` loaded, and runs `walk` instead.
fn attach_all(
    backend: Backend,
    object: &Object,
    walk: Option<BorrowedFd<'_>>,
) -> Result<Vec<AttachedProgram>, ProbeError> {
    let id_of = |fd: BorrowedFd<'_>| libbpf_rs::Program::id_from_fd(fd).ok();
    let walk = walk.and_then(id_of);
    let mut programs = Vec::new();
    for program in object.progs_mut() {
        if !program.autoload() {
            continue;
        }
        let name = program.name().to_string_lossy().into_owned();
        let id = id_of(program.as_fd());
        let attach_failed =
            |e: std::io::Error| failed(backend, &format!("attach {name}"))(e.into());
        let (attachment, libbpf_link) = if walk.is_some() && walk == id {
            // Shard 0, which every socket object has.
            test_run_with(program.as_fd(), &[0]).map_err(|e| {
                failed(backend, &format!("run {name} (BPF_PROG_TEST_RUN)"))(e.into())
            })?;
            (Attachment::Unwatched, None)
        } else if program.prog_type() == ProgramType::Tracing {
            // By fd, so that a detached program can be attached again
            // from its fd alone (kernel/links.rs).
            let link = attach_tracing(program.as_fd()).map_err(attach_failed)?;
            (Attachment::Tracing(link), None)
        } else {
            let link = program
                .attach()
                .map_err(failed(backend, &format!("attach {name}")))?;
            let fd = link.as_fd().try_clone_to_owned().map_err(attach_failed)?;
            // Before Linux 5.15 libbpf attaches a kprobe through a perf
            // event, not a BPF link, and the kernel has nothing to ask.
            let attachment = if id.is_some_and(|id| is_link_of(fd.as_fd(), id)) {
                Attachment::Kprobe(fd)
            } else {
                Attachment::Unwatched
            };
            (attachment, Some(link))
        };
        let fd = program
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| failed(backend, &format!("keep a handle on {name}"))(e.into()))?;
        programs.push(AttachedProgram {
            name,
            id: id.unwrap_or(0),
            fd,
            attachment: Some(attachment),
            _libbpf_link: libbpf_link,
        });
    }
    Ok(programs)
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
