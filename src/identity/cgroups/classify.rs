//! What a cgroup path says about the workload in it, from the names alone.
//!
//! Kubelet, the container runtimes and systemd each name their cgroups in
//! a recognisable way, so a path relative to the cgroup2 root tells who
//! runs there without asking any of them. The rules, innermost first:
//!
//! 1. **A Kubernetes pod** is recognised anywhere in the path (kind and
//!    k3d nodes nest a whole kubelet inside a Docker container, kubelet's
//!    `--cgroup-root` adds prefixes such as `kubelet.slice/kubelet-kubepods.slice`):
//!    - systemd driver: `kubepods[-<qos>]-pod<uid with _>.slice`;
//!    - cgroupfs driver: `pod<uid>` below a `kubepods*` directory.
//!
//!    The uid is a UUID, or for a static pod the 32-hex hash of its
//!    manifest (the API's mirror pod carries that hash in its
//!    `kubernetes.io/config.mirror` annotation, not in its uid).
//! 2. **A container** is the innermost component that names one:
//!    `cri-containerd-`, `crio-`, `crio-conmon-`, `docker-`, `libpod-`,
//!    `libpod-conmon-`, `nerdctl-` followed by its hex id (with `.scope`
//!    under systemd, without under cgroupfs), or a bare 64-hex directory
//!    (cgroupfs: `docker/<id>`, `kubepods/.../pod<uid>/<id>`,
//!    containerd's `<namespace>/<id>`). A container wins over any systemd
//!    unit around it or inside it: units inside a container (a kind node's
//!    `containerd.service`) are not this host's units.
//! 3. **A systemd unit** otherwise:
//!    - the innermost `*.service` (`getty@tty1.service`; `user@1000.service`
//!      for a user's own manager and the apps it starts in scopes);
//!    - a login session (`session-3.scope`) is named by its user's slice,
//!      `user-1000.slice`: session numbers change at every login, so they
//!      would make a new series each time while saying no more than
//!      "user 1000's shell";
//!    - any other scope by its own name (`init.scope` is systemd itself,
//!      `machine-qemu\x2d1\x2dvm.scope` a libvirt VM), kept escaped as
//!      `systemctl` accepts it.
//! 4. **Anything else** (a cgroup made by hand or another manager) is named
//!    by its last component; the root cgroup (`""`) by nothing.

#[cfg(test)]
mod tests;

/// The container runtime a cgroup name points to.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    Containerd,
    CriO,
    Docker,
    Podman,
    /// A bare id directory whose parent does not say which runtime made it.
    Unknown,
}

/// A container named by a cgroup path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContainerRef {
    /// Lower-case hex, as the runtime shows it.
    pub id: String,
    pub runtime: Runtime,
}

/// What [`classify`] found in a path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Classified {
    /// The pod's uid as the API shows it (dashes), or a static pod's hash.
    pub pod_uid: Option<String>,
    pub container: Option<ContainerRef>,
    /// The systemd unit (or last component) naming the workload when no
    /// container does; `None` for the root cgroup and inside containers.
    pub unit: Option<String>,
}

/// Prefixes of container cgroups, longest first so `crio-conmon-` is not
/// taken for `crio-` followed by a non-hex id.
const CONTAINER_PREFIXES: [(&str, Runtime); 7] = [
    ("cri-containerd-", Runtime::Containerd),
    ("libpod-conmon-", Runtime::Podman),
    ("crio-conmon-", Runtime::CriO),
    ("nerdctl-", Runtime::Containerd),
    ("docker-", Runtime::Docker),
    ("libpod-", Runtime::Podman),
    ("crio-", Runtime::CriO),
];

/// Reads the workload out of a path relative to the cgroup2 root, such as
/// `system.slice/nginx.service`. Pure: no file is read.
pub fn classify(relative_path: &str) -> Classified {
    let components: Vec<&str> = relative_path.split('/').filter(|c| !c.is_empty()).collect();
    let pod_uid = pod_uid_in(&components);
    let container = components
        .iter()
        .enumerate()
        .rev()
        .find_map(|(at, name)| container_in(name, &components[..at]));
    let unit = match container {
        Some(_) => None,
        None if pod_uid.is_some() => None,
        None => unit_in(&components),
    };
    Classified {
        pod_uid,
        container,
        unit,
    }
}

/// The innermost pod uid, if a kubepods hierarchy holds this path.
fn pod_uid_in(components: &[&str]) -> Option<String> {
    components.iter().enumerate().rev().find_map(|(at, name)| {
        let under_kubepods = components[..=at].iter().any(|c| c.contains("kubepods"));
        if !under_kubepods {
            return None;
        }
        let raw = match name.strip_suffix(".slice") {
            // systemd driver: the uid is after the last "-pod", with its
            // dashes turned into underscores because "-" is systemd's
            // slice nesting separator.
            Some(slice) => slice.rsplit_once("-pod")?.1,
            None => name.strip_prefix("pod")?,
        };
        pod_uid_from(raw)
    })
}

/// A UUID (with `_` or `-`) or a 32-hex static pod hash, in the API's form.
fn pod_uid_from(raw: &str) -> Option<String> {
    let uid = raw.replace('_', "-");
    let is_uuid = uid.len() == 36
        && uid.char_indices().all(|(at, c)| match at {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    let is_static_hash = uid.len() == 32 && uid.chars().all(|c| c.is_ascii_hexdigit());
    (is_uuid || is_static_hash).then(|| uid.to_ascii_lowercase())
}

/// A container named by one component; `parents` are the components above
/// it, which say whose a bare id directory is.
fn container_in(name: &str, parents: &[&str]) -> Option<ContainerRef> {
    let base = name.strip_suffix(".scope").unwrap_or(name);
    for (prefix, runtime) in CONTAINER_PREFIXES {
        if let Some(id) = base.strip_prefix(prefix).filter(|id| is_hex_id(id, 12)) {
            return Some(ContainerRef {
                id: id.to_ascii_lowercase(),
                runtime,
            });
        }
    }
    // Bare ids are cgroupfs layouts; a unit is never 64 hex, so this cannot
    // mistake a systemd name for a container.
    if base.len() != name.len() || !is_hex_id(base, 64) {
        return None;
    }
    let runtime = match parents.last() {
        Some(&"docker") => Runtime::Docker,
        Some(&"libpod_parent") => Runtime::Podman,
        // kubelet's cgroupfs driver names no runtime, nor does containerd's
        // `<namespace>/<id>`.
        _ => Runtime::Unknown,
    };
    Some(ContainerRef {
        id: base.to_ascii_lowercase(),
        runtime,
    })
}

fn is_hex_id(id: &str, min_len: usize) -> bool {
    id.len() >= min_len && id.len() <= 64 && id.chars().all(|c| c.is_ascii_hexdigit())
}

/// The systemd unit naming a path without containers (rules 3 and 4).
fn unit_in(components: &[&str]) -> Option<String> {
    if let Some(service) = components.iter().rev().find(|c| c.ends_with(".service")) {
        return Some(service.to_string());
    }
    let last = components.last()?;
    if last.starts_with("session-") && last.ends_with(".scope") {
        let user = components
            .iter()
            .rev()
            .find(|c| c.starts_with("user-") && c.ends_with(".slice"));
        return Some(user.unwrap_or(last).to_string());
    }
    Some(last.to_string())
}
